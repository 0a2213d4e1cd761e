//! Register tiles of narrow matrix products: which dim goes in the vector lanes and how many
//! accumulators a tile keeps, decided once for every printer.
//!
//! In: a [`MatMulKernel`], the vector width in `f32` lanes and the number of vector
//! registers. Out: a [`NarrowTile`] for products whose result is narrow (`n` static and at
//! most [`NARROW_COLUMNS`]), or `None` (the general tile, or the tuned GEMM, serves them).
//!
//! A narrow tile holds every column of its rows in registers, loops over `k` with one
//! broadcast per step, runs the product's epilogue on the accumulators and stores each result
//! once. Its rows come either from a short contraction (`k` below [`LONG_K`]: a layer on a big
//! batch, `[10000, 20] x [20, 20]`) or from a result of few rows (`m` static, at most
//! [`FEW_ROWS`]) whatever `k` is: a weight gradient `[20, 10000] x [10000, 20]`, whose
//! whole result stays in registers while `k` streams. A wide result with a long contraction
//! (`[128, 784] x [784, 256]`) is the GEMM's.
//!
//! Each element of a tile is summed over `k` in order by one accumulator lane, so results do
//! not depend on the tile's size, the lanes or the thread count.

use super::{MatMulKernel, Program};

/// The widest result (columns) a narrow tile takes.
pub const NARROW_COLUMNS: i64 = 32;

/// Contractions at least this long go to the GEMM unless the result has few rows...
pub const LONG_K: i64 = 64;

/// ...at most this many.
pub const FEW_ROWS: i64 = 64;

/// Which dim of the result fills the vector lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lanes {
    /// Consecutive columns of one row: `vectors` vectors cover all `n` columns (the last one
    /// partial), `rows` rows per tile.
    Columns {
        /// Rows per tile.
        rows: usize,
        /// Vectors per row (`⌈n / lanes⌉`).
        vectors: usize,
    },
    /// Consecutive rows of one column: `vectors` vectors of rows per tile, every column.
    Rows {
        /// Vectors of rows per tile.
        vectors: usize,
    },
}

/// The register tile of a narrow product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NarrowTile {
    /// The dim in the lanes and the tile's size.
    pub lanes: Lanes,
    /// Columns of the result (static).
    pub n: usize,
}

/// The narrow tile of `kernel` for vectors of `lanes` `f32`s and `registers` vector
/// registers, or `None` if the product is not narrow (`n` symbolic or wide, a long
/// contraction over many rows, or a batch other than a static one of few-row products
/// without an epilogue).
pub fn narrow_tile(kernel: &MatMulKernel, lanes: usize, registers: usize) -> Option<NarrowTile> {
    let n = kernel.n.as_fixed().filter(|&n| (1..=NARROW_COLUMNS).contains(&n))? as usize;
    let few_rows = kernel.m.as_fixed().filter(|&m| m <= FEW_ROWS).map(|m| m.max(1) as usize);
    // A batch of products (the parts of a split contraction, see `split`) is tiled product
    // by product: each of few rows and without an epilogue.
    let batched = kernel.batch.as_fixed() != Some(1);
    if batched && (kernel.batch.as_fixed().is_none() || few_rows.is_none() || kernel.epilogue.is_some()) {
        return None;
    }
    let long_k = kernel.k.as_fixed().is_none_or(|k| k >= LONG_K);
    if long_k && few_rows.is_none() {
        return None;
    }
    // Registers left for accumulators: the rest hold operands and the epilogue's values.
    let budget = registers.saturating_sub(8).max(4);
    let vectors = n.div_ceil(lanes);
    let unit = |stride: &super::Size| stride.as_fixed() == Some(1);
    // Columns in lanes waste the lanes past `n`; rows in lanes need a load of `a`'s column
    // per step (a gather unless `a` is stored column by column) and store each result
    // column with a stride. Rows win when columns would leave three quarters of the lanes
    // idle, or, for a result of few rows read column by column, when they need fewer
    // multiply-adds per step.
    let rows_in_lanes =
        4 * n <= lanes || few_rows.is_some_and(|m| unit(&kernel.a.1[1]) && n * m.div_ceil(lanes) < m * vectors);
    // A result of few rows is covered by tiles of equal size (20 rows: two of 10, not 12 and 8).
    let balanced = |most: usize, total: Option<usize>| total.map_or(most, |total| total.div_ceil(total.div_ceil(most)));
    let tile = if rows_in_lanes {
        let most = (budget / n).clamp(1, 4);
        NarrowTile { lanes: Lanes::Rows { vectors: balanced(most, few_rows.map(|m| m.div_ceil(lanes))) }, n }
    } else {
        let most = (budget / vectors).clamp(1, 12);
        NarrowTile { lanes: Lanes::Columns { rows: balanced(most, few_rows), vectors }, n }
    };
    Some(tile)
}

/// True if the product of matmul `kernel` (a kernel number of `program`) must be stored: it
/// has no epilogue, or something other than its epilogue reads it (a later kernel, the
/// caller, a sum across processes). A product read only by its epilogue lives in registers.
pub fn product_is_stored(program: &Program, kernel: usize) -> bool {
    let super::Kernel::MatMul(matmul) = &program.kernels[kernel] else {
        return true;
    };
    if matmul.epilogue.is_none() {
        return true;
    }
    let product = program.storage(matmul.out);
    let listed = |buffers: &[usize]| buffers.iter().any(|&b| program.storage(b) == product);
    let updated: Vec<usize> = program.updates.iter().flat_map(|&(param, value)| [param, value]).collect();
    if listed(&program.outputs) || listed(&program.reduced) || listed(&updated) {
        return true;
    }
    program.kernels.iter().enumerate().any(|(number, other)| number != kernel && listed(&other.accesses().0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::Size;

    fn product(m: Size, k: i64, n: i64, a_strides: [i64; 3]) -> MatMulKernel {
        MatMulKernel {
            name: "matmul".into(),
            batch: Size::fixed(1),
            m,
            k: Size::fixed(k),
            n: Size::fixed(n),
            a: (0, a_strides.map(Size::fixed)),
            b: (1, [Size::fixed(0), Size::fixed(n), Size::fixed(1)]),
            out: 2,
            epilogue: None,
            accumulate: None,
        }
    }

    fn batch() -> Size {
        Size { factor: 1, symbols: vec![0] }
    }

    #[test]
    fn a_layer_on_a_batch_puts_its_twenty_columns_in_lanes_and_two_columns_rows_in_lanes() {
        let wide = narrow_tile(&product(batch(), 20, 20, [0, 20, 1]), 16, 32);
        assert_eq!(wide, Some(NarrowTile { lanes: Lanes::Columns { rows: 12, vectors: 2 }, n: 20 }));
        let two = narrow_tile(&product(batch(), 20, 2, [0, 20, 1]), 16, 32);
        assert_eq!(two, Some(NarrowTile { lanes: Lanes::Rows { vectors: 4 }, n: 2 }));
        let avx2 = narrow_tile(&product(batch(), 20, 20, [0, 20, 1]), 8, 16);
        assert_eq!(avx2, Some(NarrowTile { lanes: Lanes::Columns { rows: 2, vectors: 3 }, n: 20 }));
    }

    #[test]
    fn a_weight_gradient_keeps_its_whole_result_and_streams_the_batch() {
        // [20, 10000] x [10000, 2], `a` read column by column: the 20 rows in lanes.
        let tile = narrow_tile(&product(Size::fixed(20), 10000, 2, [0, 1, 20]), 16, 32);
        assert_eq!(tile, Some(NarrowTile { lanes: Lanes::Rows { vectors: 2 }, n: 2 }));
        // [2, 10000] x [10000, 20]: both rows, twenty columns in lanes.
        let tile = narrow_tile(&product(Size::fixed(2), 10000, 20, [0, 1, 2]), 16, 32);
        assert_eq!(tile, Some(NarrowTile { lanes: Lanes::Columns { rows: 2, vectors: 2 }, n: 20 }));
    }

    #[test]
    fn wide_results_long_contractions_over_many_rows_and_batches_are_not_narrow() {
        assert_eq!(narrow_tile(&product(batch(), 20, 33, [0, 20, 1]), 16, 32), None);
        assert_eq!(narrow_tile(&product(Size::fixed(256), 128, 10, [0, 1, 256]), 16, 32), None);
        let mut batched = product(batch(), 20, 20, [20, 20, 1]);
        batched.batch = Size::fixed(3);
        assert_eq!(narrow_tile(&batched, 16, 32), None);
    }
}
