//! Folding a momentum into the product of its gradient: `v ← c·v + a·b` as one GEMM call.
//!
//! In: a program whose memory is planned. Out: the same program where a big product whose only
//! reader is a param's in-place update `v_new = c·v + product` (SGD's momentum) writes `v`
//! itself, through the GEMM's `out = c·out + a·b`: the update kernel then reads the new `v`
//! where it read `v_new`, and the product is never stored. The gradient of a wide layer is
//! written once instead of written and read back (W4's first layer: 330 µs for its weight
//! gradient and update, 292 µs folded, in isolation).
//!
//! Only the GEMM computes `c·out + a·b` (its `alpha`), so the code generator applies this pass
//! when it calls the GEMM, to products the GEMM takes whatever their size allows: static,
//! unbatched, at least `min_work` multiply-adds, wider than the narrow tiles. The product may
//! then write `v` early only if nothing from it on reads the old `v` and no kernel from it on
//! can stop the call (a failed call leaves the params as they were).

use super::{Binary, Expr, ExprId, Index, Kernel, LoopKernel, NARROW_COLUMNS, Program, Role, Size};

/// The products the GEMM takes: at least `min_work` multiply-adds over a contraction of at
/// least `min_k` (the code generator's thresholds).
#[derive(Clone, Copy, Debug)]
pub struct GemmTakes {
    /// Multiply-adds of one product (`m·k·n`).
    pub min_work: i64,
    /// The contraction `k`.
    pub min_k: i64,
}

/// Folds every momentum update it can into its gradient's product (see the module comment).
pub fn fold_accumulations(program: &mut Program, gemm: GemmTakes) {
    for position in 0..program.kernels.len() {
        if let Some((reader, fold)) = find(program, position, gemm) {
            apply(program, position, reader, fold);
        }
    }
}

/// What a fold changes: the product's buffer, the param `v` (its storage), the constant `c`, and in the reader the
/// store of `v_new` and the expression computing it.
struct Fold {
    /// The product's buffer (storage).
    product: usize,
    param: usize,
    scale: f64,
    store: usize,
    value: ExprId,
    index: Index,
}

fn find(program: &Program, position: usize, gemm: GemmTakes) -> Option<(usize, Fold)> {
    let Kernel::MatMul(matmul) = &program.kernels[position] else { return None };
    if matmul.epilogue.is_some() || matmul.accumulate.is_some() || matmul.batch.as_fixed() != Some(1) {
        return None;
    }
    let (m, k, n) = (matmul.m.as_fixed()?, matmul.k.as_fixed()?, matmul.n.as_fixed()?);
    if m.checked_mul(k)?.checked_mul(n)? < gemm.min_work || k < gemm.min_k || n <= NARROW_COLUMNS {
        return None;
    }
    let product = program.storage(matmul.out);
    let updated = program.updates.iter().flat_map(|&(param, value)| [param, value]);
    let mut listed = program.outputs.iter().chain(&program.reduced).copied().chain(updated);
    if program.buffers[product].role != Role::Temporary || listed.any(|b| program.storage(b) == product) {
        return None;
    }
    // The one kernel that reads the product, a loop kernel; no other touches it.
    let touches = |kernel: &Kernel, buffer: usize| {
        let (reads, writes) = kernel.accesses();
        reads.iter().chain(&writes).any(|&b| program.storage(b) == buffer)
    };
    let mut others =
        program.kernels.iter().enumerate().filter(|&(j, kernel)| j != position && touches(kernel, product));
    let (reader, Kernel::Loop(update)) = others.next()? else { return None };
    if others.next().is_some() || reader < position {
        return None;
    }
    let fold = momentum(program, update, product, m * n)?;
    // Nothing between the product and the update touches `v`, nor the product's operands are
    // `v`, and no kernel from the product on can fail.
    let between = program.kernels[position + 1..reader].iter().any(|kernel| touches(kernel, fold.param));
    let operands = [matmul.a.0, matmul.b.0].iter().any(|&b| program.storage(b) == fold.param);
    if between || operands || program.kernels[position..].iter().any(Kernel::can_fail) {
        return None;
    }
    Some((reader, fold))
}

/// The store of `update` computing `v_new = c·v + product` in place of the param `v`, at the
/// same contiguous index as its loads, over all `elements` of the product; its other stores
/// remain, and nothing else in it reads `v` or the product.
fn momentum(program: &Program, update: &LoopKernel, product: usize, elements: i64) -> Option<Fold> {
    if update.reduce.is_some() || !contiguous(update, elements) {
        return None;
    }
    let load = |id: ExprId| match &update.body[id].0 {
        Expr::Load { buffer, index } => Some((program.storage(*buffer), index)),
        _ => None,
    };
    let constant = |id: ExprId| match update.body[id].0 {
        Expr::Const(c) => Some(c),
        _ => None,
    };
    let uses = uses(update);
    for (store, (value, buffer, index)) in update.stores.iter().enumerate() {
        let param = program.storage(*buffer);
        if !matches!(program.buffers[param].role, Role::Param(_)) || update.stores.len() < 2 {
            continue;
        }
        let Expr::Binary(Binary::Add, x, y) = update.body[*value].0 else { continue };
        for (gradient, scaled) in [(x, y), (y, x)] {
            let Expr::Binary(Binary::Mul, p, q) = update.body[scaled].0 else { continue };
            let Some((old, scale)) = [(p, q), (q, p)].into_iter().find_map(|(l, c)| Some((l, constant(c)?))) else {
                continue;
            };
            if load(gradient) != Some((product, index)) || load(old) != Some((param, index)) {
                continue;
            }
            // The load of the gradient, the scaled old value and its load serve this sum only;
            // no other expression loads `v` (it would see the new value) or the product.
            let only_here = uses[gradient] == 1 && uses[scaled] == 1 && uses[old] == 1;
            let others = update.body.iter().enumerate().any(|(id, (expr, _))| {
                id != gradient
                    && id != old
                    && matches!(expr, Expr::Load { buffer, .. } | Expr::Gather { buffer, .. }
                        if [param, product].contains(&program.storage(*buffer)))
            });
            if only_here && !others {
                return Some(Fold { product, param, scale, store, value: *value, index: index.clone() });
            }
        }
    }
    None
}

/// True if `kernel` visits each of `elements` elements once, row-major: one loop nest whose
/// extents multiply to `elements`, every store at the contiguous index of its loops.
fn contiguous(kernel: &LoopKernel, elements: i64) -> bool {
    let extents: Option<Vec<i64>> = kernel.loops.iter().map(Size::as_fixed).collect();
    let Some(extents) = extents else { return false };
    if extents.iter().product::<i64>() != elements {
        return false;
    }
    let mut strides = vec![0i64; extents.len()];
    let mut stride = 1;
    for (level, extent) in extents.iter().enumerate().rev() {
        strides[level] = stride;
        stride *= extent;
    }
    let expected = Index { base: Vec::new(), strides: strides.into_iter().map(Size::fixed).collect() };
    kernel.stores.iter().all(|(_, _, index)| *index == expected)
}

/// How many expressions and stores use each expression of `kernel`.
fn uses(kernel: &LoopKernel) -> Vec<usize> {
    let mut uses = vec![0; kernel.body.len()];
    for (expr, _) in &kernel.body {
        for operand in expr.operands() {
            uses[operand] += 1;
        }
    }
    for (value, _, _) in &kernel.stores {
        uses[*value] += 1;
    }
    uses
}

fn apply(program: &mut Program, position: usize, reader: usize, fold: Fold) {
    let Kernel::MatMul(matmul) = &mut program.kernels[position] else { return };
    matmul.out = fold.param;
    matmul.accumulate = Some(fold.scale);
    matmul.name = format!("{}+momentum", matmul.name);
    let Kernel::Loop(update) = &mut program.kernels[reader] else { return };
    // The new `v` is in memory already: read it where it was computed.
    update.body[fold.value].0 = Expr::Load { buffer: fold.param, index: fold.index };
    update.stores.remove(fold.store);
    drop_dead_expressions(update);
    // The product is never stored: no slot.
    program.buffers[fold.product].role = Role::Alias(fold.param);
    program.slots[fold.product] = None;
}

/// Removes the expressions no store depends on, keeping the order of the others.
fn drop_dead_expressions(kernel: &mut LoopKernel) {
    let mut live = vec![false; kernel.body.len()];
    for (value, _, _) in &kernel.stores {
        live[*value] = true;
    }
    for id in (0..kernel.body.len()).rev() {
        if live[id] {
            for operand in kernel.body[id].0.operands() {
                live[operand] = true;
            }
        }
    }
    let mut renumbered = vec![usize::MAX; kernel.body.len()];
    let mut body = Vec::with_capacity(kernel.body.len());
    for (id, (expr, dtype)) in kernel.body.drain(..).enumerate() {
        if live[id] {
            renumbered[id] = body.len();
            body.push((super::merge::remap(&expr, &renumbered), dtype));
        }
    }
    kernel.body = body;
    for (value, _, _) in &mut kernel.stores {
        *value = renumbered[*value];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Dim, Graph, Init, Tensor};
    use crate::kernel::{Evaluator, lower};
    use crate::value::{Feeds, Value};

    /// The code generator's defaults.
    const GEMM: GemmTakes = GemmTakes { min_work: 4096, min_k: 8 };

    /// The program of `outputs` and `updates`, optimised as `compile` does.
    fn lower_to_kernels(g: &Graph, outputs: &[Tensor], updates: &[(Tensor, Tensor)]) -> crate::Result<Program> {
        let ids = |t: &Tensor| t.id().unwrap();
        let roots: Vec<_> = outputs.iter().map(ids).chain(updates.iter().map(|(_, v)| ids(v))).collect();
        let rooted = crate::passes::optimize(g, &roots);
        let (kept, values) = rooted.outputs.split_at(outputs.len());
        let pairs: Vec<_> = updates.iter().map(|(p, _)| ids(p)).zip(values.iter().copied()).collect();
        Ok(lower(&rooted.graph, kept, &pairs, &[])?.0)
    }

    /// A linear layer's weight `[n, k]` trained by SGD with momentum `v ← 0.9·v + g`,
    /// `w ← w − 0.1·v`, over a batch of `batch`: the program, lowered.
    fn momentum_step(g: &Graph, batch: usize, k: usize, n: usize) -> Program {
        let x = g.input("x", [Dim::from(batch), k.into()]).unwrap();
        let w = g.param("w", [n, k], Init::Normal { mean: 0.0, std: 0.1 }).unwrap();
        let v = g.param("v", [n, k], Init::Normal { mean: 0.0, std: 0.1 }).unwrap();
        let loss = x.matmul(w.t().unwrap()).unwrap().tanh().unwrap().sum(&[0, 1], false).unwrap();
        let grad = g.grad(loss, &[w]).unwrap()[0];
        let v_new = v.mul(0.9).unwrap().add(grad).unwrap();
        let w_new = w.sub(v_new.mul(0.1).unwrap()).unwrap();
        lower_to_kernels(g, &[loss], &[(v, v_new), (w, w_new)]).unwrap()
    }

    #[test]
    fn a_momentum_is_folded_into_its_gradient_s_product_and_computes_the_same_updates() {
        let g = Graph::new();
        let program = momentum_step(&g, 64, 48, 40);
        let mut folded = program.clone();
        fold_accumulations(&mut folded, GEMM);
        let accumulating: Vec<f64> = folded
            .kernels
            .iter()
            .filter_map(|kernel| match kernel {
                Kernel::MatMul(m) => m.accumulate,
                _ => None,
            })
            .collect();
        assert!(accumulating.len() == 1 && (accumulating[0] - 0.9).abs() < 1e-6, "{}", folded.listing());
        let params = crate::value::ParamStore::init(&g, 3);
        let (mut plain, mut fused) =
            (Evaluator::new(&program, &params).unwrap(), Evaluator::new(&folded, &params).unwrap());
        for step in 0..3u64 {
            let x: Vec<f32> = (0..64 * 48).map(|i| ((i as u64 * 7 + step) % 13) as f32 / 13.0 - 0.5).collect();
            let feeds = Feeds::from([("x", Value::f32([64, 48], x))]);
            assert_eq!(plain.run(&feeds).unwrap(), fused.run(&feeds).unwrap(), "loss of step {step}");
            for name in ["v", "w"] {
                let (a, b) =
                    (plain.params().get(name).unwrap().to_f64_vec(), fused.params().get(name).unwrap().to_f64_vec());
                assert_eq!(a, b, "{name} after step {step}");
            }
        }
    }

    #[test]
    fn small_narrow_or_shared_products_are_not_folded() {
        // The weight gradient `[n, k]` over the batch: too little work for the GEMM, and too few
        // columns (the narrow tiles).
        for (batch, k, n) in [(4, 8, 40), (64, 16, 40)] {
            let g = Graph::new();
            let mut program = momentum_step(&g, batch, k, n);
            let before = program.clone();
            fold_accumulations(&mut program, GEMM);
            assert_eq!(program, before, "{batch}x{k}x{n}");
        }
        // The gradient also returned: it must be stored.
        let g = Graph::new();
        let x = g.input("x", [64, 48]).unwrap();
        let w = g.param("w", [40, 48], Init::Normal { mean: 0.0, std: 0.1 }).unwrap();
        let v = g.param("v", [40, 48], Init::Normal { mean: 0.0, std: 0.1 }).unwrap();
        let loss = x.matmul(w.t().unwrap()).unwrap().sum(&[0, 1], false).unwrap();
        let grad = g.grad(loss, &[w]).unwrap()[0];
        let v_new = v.mul(0.9).unwrap().add(grad).unwrap();
        let w_new = w.sub(v_new.mul(0.1).unwrap()).unwrap();
        let mut program = lower_to_kernels(&g, &[loss, grad], &[(v, v_new), (w, w_new)]).unwrap();
        let before = program.clone();
        fold_accumulations(&mut program, GEMM);
        assert_eq!(program, before);
    }
}
