//! Split-k: a small product with a long contraction, cut into parts that threads share.
//!
//! In: a program after epilogue fusion. Out: the same program where every [`MatMulKernel`]
//! whose result is small and whose contraction is long (a weight gradient `[20, 10000] x
//! [10000, 20]`, a bias gradient summed over the batch) computes [`PARTS`] partial products
//! instead, each over one consecutive part of `k`, into a temporary `[PARTS, m, n]` (a
//! batched product whose batch is the part), followed by a loop kernel that adds the
//! partials in order of part into the result.
//!
//! Without it such a product is one block of rows, so one thread streams the whole batch
//! while the others wait. The parts are fixed, not a function of the thread count: a program
//! gives the same bits on any number of threads, and every element is `((p0 + p1) + p2) + p3`
//! of partial sums each summed in order of `k`.

use super::{Buffer, Expr, Index, Kernel, LoopKernel, MatMulKernel, Program, Role, Size};
use crate::graph::{Binary, DType, Shape};

/// The parts a split contraction is cut into.
pub const PARTS: i64 = 4;

/// Contractions at least this long are split...
pub const SPLIT_MIN_K: i64 = 4096;

/// ...when the result has at most this many elements (one narrow register tile's worth).
pub const SPLIT_MAX_RESULT: i64 = 64 * 32;

/// Splits the products described in the module comment; returns how many.
pub fn split_contractions(program: &mut Program) -> usize {
    let mut count = 0;
    let mut number = 0;
    while number < program.kernels.len() {
        let Kernel::MatMul(matmul) = &program.kernels[number] else {
            number += 1;
            continue;
        };
        let Some((m, k, n)) = splittable(program, matmul) else {
            number += 1;
            continue;
        };
        let matmul = matmul.clone();
        let (split, combine) = split(program, &matmul, m, k, n);
        program.kernels[number] = Kernel::MatMul(Box::new(split));
        program.kernels.insert(number + 1, Kernel::Loop(combine));
        count += 1;
        number += 2;
    }
    count
}

/// `(m, k, n)` if `matmul` is split: unbatched, no epilogue, static sizes, a small f32 result
/// and a long contraction that the parts divide.
fn splittable(program: &Program, matmul: &MatMulKernel) -> Option<(i64, i64, i64)> {
    let (m, k, n) = (matmul.m.as_fixed()?, matmul.k.as_fixed()?, matmul.n.as_fixed()?);
    let small = m >= 1 && n >= 1 && m * n <= SPLIT_MAX_RESULT;
    let long = k >= SPLIT_MIN_K && k % PARTS == 0;
    let plain = matmul.batch.as_fixed() == Some(1) && matmul.epilogue.is_none();
    (small && long && plain && program.buffers[matmul.out].dtype == DType::F32).then_some((m, k, n))
}

/// The partial products of `matmul` and the kernel adding them into its result.
fn split(program: &mut Program, matmul: &MatMulKernel, m: i64, k: i64, n: i64) -> (MatMulKernel, LoopKernel) {
    let part = Size::fixed(k / PARTS);
    program.buffers.push(Buffer {
        shape: Shape::of([PARTS as usize, m as usize, n as usize]),
        dtype: DType::F32,
        role: Role::Temporary,
    });
    program.slots.push(None);
    let partials = program.buffers.len() - 1;
    // Part `p` reads `a[:, p·k/PARTS ..]` and `b[p·k/PARTS .., :]`: one step of `k` per batch.
    let [_, am, ak] = matmul.a.1.clone();
    let [_, bk, bn] = matmul.b.1.clone();
    let products = MatMulKernel {
        name: format!("{}/{PARTS}", matmul.name),
        batch: Size::fixed(PARTS),
        m: matmul.m.clone(),
        k: part.clone(),
        n: matmul.n.clone(),
        a: (matmul.a.0, [part.times(&ak), am, ak]),
        b: (matmul.b.0, [part.times(&bk), bk, bn]),
        out: partials,
        epilogue: None,
        accumulate: None,
    };
    let element = |offset: i64| Index {
        base: if offset == 0 { Vec::new() } else { vec![Size::fixed(offset)] },
        strides: vec![Size::fixed(1)],
    };
    let mut body = vec![(Expr::Load { buffer: partials, index: element(0) }, DType::F32)];
    for p in 1..PARTS {
        body.push((Expr::Load { buffer: partials, index: element(p * m * n) }, DType::F32));
        let sum = Expr::Binary(Binary::Add, body.len() - 2, body.len() - 1);
        body.push((sum, DType::F32));
    }
    let combine = LoopKernel {
        name: format!("{}+parts", matmul.name),
        loops: vec![Size::fixed(m * n)],
        reduce: None,
        kept_inside: 0,
        stores: vec![(body.len() - 1, matmul.out, element(0))],
        body,
    };
    (products, combine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Dim, Graph};
    use crate::kernel::lower;

    /// The kernels of `aᵀ · b` for `a: [k, m]`, `b: [k, n]`, as (name, batch, k) of matmuls
    /// and names of loop kernels.
    fn kernels(k: Dim, m: usize, n: usize) -> Vec<String> {
        let g = Graph::new();
        let a = g.input("a", [k.clone(), m.into()]).unwrap();
        let b = g.input("b", [k, n.into()]).unwrap();
        let product = a.t().unwrap().matmul(b).unwrap();
        let (program, _) = lower(&g, &[product.id().unwrap()], &[], &[]).unwrap();
        program
            .kernels
            .iter()
            .map(|kernel| match kernel {
                Kernel::MatMul(k) => format!("matmul batch={} k={}", k.batch.factor, k.k.factor),
                Kernel::Loop(k) => {
                    format!("loop {} over {}", k.name.split('+').next_back().unwrap_or(""), k.loops[0].factor)
                }
                Kernel::Scatter(_) => "scatter".into(),
                Kernel::Rows(k) => format!("rows {}", k.name),
            })
            .collect()
    }

    #[test]
    fn a_weight_gradient_over_a_long_batch_is_four_partial_products_and_their_sum() {
        assert_eq!(kernels(Dim::from(8192), 20, 20), ["matmul batch=4 k=2048", "loop parts over 400"]);
        assert_eq!(kernels(Dim::from(10000), 1, 32), ["matmul batch=4 k=2500", "loop parts over 32"]);
    }

    #[test]
    fn short_odd_symbolic_or_wide_contractions_are_not_split() {
        // (k, m, n, the factor of k in the listing: a symbolic `K` is 1 · K).
        let cases = [
            (Dim::from(4092), 20, 20, 4092),
            (Dim::from(8194), 20, 20, 8194),
            (Dim::sym("K"), 20, 20, 1),
            (Dim::from(8192), 64, 64, 8192),
        ];
        for (k, m, n, factor) in cases {
            assert_eq!(kernels(k.clone(), m, n), [format!("matmul batch=1 k={factor}")], "{k} x {m} x {n}");
        }
    }
}
