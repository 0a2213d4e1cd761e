//! The bridge from generated code to a tuned GEMM (the `gemm` crate) for big matrix products.
//!
//! In: a matmul's shapes and buffers at run time. Out: the product, computed by the `gemm` crate,
//! or a failure status.
//!
//! Cranelift lowers only 128-bit vectors on x86-64 and does not schedule for register
//! pressure, so its best register tile reaches a fraction of what a packing GEMM with
//! AVX-512 does on the same core (see CRANELIFT.md). Matmul kernels therefore branch at run
//! time: products of at least [`GEMM_MIN_WORK`] multiply-adds (and a contraction of at least
//! [`GEMM_MIN_K`]) call [`kiln_sgemm`]; smaller ones (batch-1 inference, tiny layers) stay in
//! the register tile, which has no call overhead.
//!
//! The shim is `extern "C"`, registered with the JIT under [`SYMBOL`], and never unwinds:
//! a panic inside the GEMM would abort through JIT frames, so it is caught and reported as a
//! status instead.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::kernel::CHUNK_COLUMNS;

/// The JIT symbol of [`kiln_sgemm`].
pub(crate) const SYMBOL: &str = "kiln_sgemm";

/// Products of fewer multiply-adds (`m·k·n` of one batch) run in the register tile.
///
/// Calibrated with `cargo run --release -p kiln-bench -- matmul` (medians, 1 thread): the
/// GEMM's setup makes it lose on a batch-1 layer (1×20×20: 0.71 µs against the tile's 0.53),
/// but from 16×16×16 up it wins (1.0 against 1.2 µs), and by 2.5–5× on W1's and W4's
/// shapes (10000×20×20: 0.41 against 1.0 ms; 128×784×256: 0.9 against 5.4 ms).
pub const GEMM_MIN_WORK: i64 = 4096;

/// ...and contractions shorter than this run in the tile whatever their size: with `k = 2`
/// (the first layer's input gradient in W1) packing costs more than it saves (10000×2×20:
/// the tile 151 µs, the GEMM 174, measured before this bound existed; `kiln-bench matmul`
/// now prints no GEMM time for such shapes, since the generated code never calls it there).
pub const GEMM_MIN_K: i64 = 8;

/// The threshold in force: [`GEMM_MIN_WORK`], or the settings' `gemm_min_work`
/// (`KILN_GEMM_MIN_WORK`; `0` sends every matmul to the GEMM, a huge value none; `kiln-bench
/// matmul` uses it to calibrate).
pub fn min_work(options: &super::Options) -> i64 {
    options.settings.gemm_min_work.unwrap_or(GEMM_MIN_WORK)
}

/// The layout of one product, as generated code stores it in a stack slot for [`kiln_sgemm`].
#[repr(C)]
pub(crate) struct Layout {
    pub m: i64,
    pub k: i64,
    pub n: i64,
    /// Rows of the result, batches included (`batch · m`).
    pub rows: i64,
    /// Strides of the left operand along (batch, row, inner), in elements.
    pub a: [i64; 3],
    /// Strides of the right operand along (batch, inner, column), in elements.
    pub b: [i64; 3],
    /// Rows per block of the range (`MatMulKernel::chunk_rows`).
    pub chunk_rows: i64,
    /// `MatMulKernel::accumulate`, as [`accumulate_word`] encodes it.
    pub accumulate: i64,
}

/// Number of `i64` fields of [`Layout`].
pub(crate) const LAYOUT_WORDS: usize = 12;

/// [`Layout::accumulate`] for `MatMulKernel::accumulate`: 0 to overwrite the result, or the
/// `f32` bits of `c` with bit 32 set for `out = c·out + a·b`.
pub(crate) fn accumulate_word(scale: Option<f64>) -> i64 {
    scale.map_or(0, |c| (1 << 32) | i64::from((c as f32).to_bits()))
}

/// Computes blocks `start..end` of `out = a · b` (see `MatMulKernel::chunks`), one GEMM call per
/// block. Returns 0, or 1 if the GEMM panicked.
///
/// # Safety
/// `layout` points to a valid [`Layout`]; `a`, `b` and `out` hold every element the layout
/// addresses; `out` is contiguous `[batch·m, n]` and overlaps neither operand.
pub(crate) unsafe extern "C" fn kiln_sgemm(
    layout: *const Layout,
    a: *const f32,
    b: *const f32,
    out: *mut f32,
    start: i64,
    end: i64,
) -> i64 {
    let run = AssertUnwindSafe(|| {
        // SAFETY: the caller's contract.
        let layout = unsafe { &*layout };
        let Layout { m, k, n, rows: total_rows, a: a_strides, b: b_strides, chunk_rows, accumulate } = *layout;
        // `out = scale·out + a·b` when accumulating, else `out = a·b`.
        let (read_out, scale) = (accumulate != 0, f32::from_bits(accumulate as u32));
        let column_chunks = (n + CHUNK_COLUMNS - 1) / CHUNK_COLUMNS;
        for block in start..end {
            let (first_row, first_column) = (block / column_chunks * chunk_rows, block % column_chunks * CHUNK_COLUMNS);
            let columns = CHUNK_COLUMNS.min(n - first_column);
            let block_end = (first_row + chunk_rows).min(total_rows);
            let mut row = first_row;
            // A block may span the end of one batch and the start of the next.
            while row < block_end {
                let (batch, i) = (row / m, row % m);
                let rows = (block_end - row).min(m - i);
                // SAFETY: every offset addresses an element the caller vouched for.
                unsafe {
                    let out = out.offset((row * n + first_column) as isize);
                    if k == 0 {
                        for r in 0..rows {
                            let row = out.offset((r * n) as isize);
                            if read_out {
                                for c in 0..columns as usize {
                                    *row.add(c) *= scale;
                                }
                            } else {
                                std::ptr::write_bytes(row, 0, columns as usize);
                            }
                        }
                    } else {
                        let a = a.offset((batch * a_strides[0] + i * a_strides[1]) as isize);
                        let b = b.offset((batch * b_strides[0] + first_column * b_strides[2]) as isize);
                        gemm::gemm(
                            rows as usize,
                            columns as usize,
                            k as usize,
                            out,
                            1,
                            n as isize,
                            read_out,
                            a,
                            a_strides[2] as isize,
                            a_strides[1] as isize,
                            b,
                            b_strides[2] as isize,
                            b_strides[1] as isize,
                            scale,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                }
                row += rows;
            }
        }
    });
    match catch_unwind(run) {
        Ok(()) => 0,
        Err(_) => 1,
    }
}
