//! Compiled functions against the reference interpreter.

use kiln::compiler::compile::lower_to_kernels;
use kiln::compiler::kernel::Evaluator;
use kiln::compiler::random;
use kiln::prelude::*;

/// Standard-normal `f32` values of `shape`, reproducible from `seed`.
fn normal(shape: &[usize], seed: u64) -> Value {
    let key = random::draw_key(seed, 17);
    let n: usize = shape.iter().product();
    Value::f32(shape.to_vec(), (0..n as u64).map(|i| random::normal(key, i) as f32).collect())
}

/// Runs `outputs` compiled and interpreted on the same inputs and params, and compares every
/// element within `tolerance` (relative to the magnitude, absolute below 1).
fn assert_matches_interpreter(g: &Graph, inputs: &[Tensor], values: &[Value], outputs: &[Tensor], tolerance: f64) {
    let mut f = function(g, inputs, outputs, &[]).expect("compiles");
    let compiled = f.call(values).expect("runs compiled");
    let mut feeds = Feeds::new();
    for (input, value) in inputs.iter().zip(values) {
        feeds.insert(&input.name().expect("inputs have names"), value.clone());
    }
    let reference = Interpreter::new(g).run(&feeds, &f.params(), outputs).expect("runs interpreted");
    for (i, (c, r)) in compiled.iter().zip(&reference).enumerate() {
        assert_eq!(c.shape(), r.shape(), "output {i}");
        assert_eq!(c.dtype(), r.dtype(), "output {i}");
        for (k, (x, y)) in c.to_f64_vec().iter().zip(r.to_f64_vec()).enumerate() {
            let ok = (x - y).abs() <= tolerance * y.abs().max(1.0) || (x.is_nan() && y.is_nan());
            assert!(ok, "output {i} element {k}: compiled {x} vs interpreter {y}\n{}", f.listing());
        }
    }
    // The kernel program by the kernel IR's reference evaluator: the same within `tolerance`.
    let program = lower_to_kernels(g, outputs, &[]).expect("lowers");
    let evaluated = Evaluator::new(&program, &f.params()).and_then(|mut e| e.run(&feeds)).expect("runs evaluated");
    for (i, ((e, r), c)) in evaluated.iter().zip(&reference).zip(&compiled).enumerate() {
        assert_eq!((e.shape(), e.dtype()), (r.shape(), r.dtype()), "evaluated output {i}");
        for (k, ((x, y), z)) in e.to_f64_vec().iter().zip(r.to_f64_vec()).zip(c.to_f64_vec()).enumerate() {
            for (other, against) in [(y, "interpreter"), (z, "compiled")] {
                let ok = (x - other).abs() <= tolerance * other.abs().max(1.0) || (x.is_nan() && other.is_nan());
                assert!(ok, "output {i} element {k}: kernel evaluator {x} vs {against} {other}\n{}", program.listing());
            }
        }
    }
}

#[test]
fn an_elementwise_chain_with_broadcasts() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 7.into()])?;
    let b = g.input("b", [7])?;
    let y = ((x + b) * 2.0 - x.abs()?).maximum(b)?.div(x.square()?.add(1.0)?)?;
    for batch in [1, 7, 1000] {
        assert_matches_interpreter(&g, &[x, b], &[normal(&[batch, 7], 1), normal(&[7], 2)], &[y], 1e-6);
    }
    Ok(())
}

#[test]
fn a_linear_layer_with_relu_and_reductions() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 5.into()])?;
    let layer = layers::Linear::new(&g, "layer", 5, 9)?;
    let h = layers::relu(layer.forward(x)?)?;
    let total = h.sum(&[0], false)?;
    let peak = h.max(&[1], true)?;
    for batch in [1, 3, 257] {
        assert_matches_interpreter(&g, &[x], &[normal(&[batch, 5], 3)], &[h, total, peak], 1e-5);
    }
    Ok(())
}

mod random_graphs {
    //! proptest-generated graphs: chains of elementwise ops with broadcasting, reductions,
    //! matmuls and their gradients, compiled and checked against the interpreter.

    use super::*;
    use proptest::prelude::*;

    /// One step of a random graph: an op and the pool slots of its operands.
    #[derive(Clone, Debug)]
    enum Step {
        Unary(u8, usize),
        Binary(u8, usize, usize),
        Select(usize, usize, usize),
        Reduce(bool, usize, usize),
        MatMul(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0u8..10, any::<usize>()).prop_map(|(op, a)| Step::Unary(op, a)),
            (0u8..6, any::<usize>(), any::<usize>()).prop_map(|(op, a, b)| Step::Binary(op, a, b)),
            (any::<usize>(), any::<usize>(), any::<usize>()).prop_map(|(m, a, b)| Step::Select(m, a, b)),
            (any::<bool>(), 0usize..2, any::<usize>()).prop_map(|(max, axis, a)| Step::Reduce(max, axis, a)),
            any::<usize>().prop_map(Step::MatMul),
        ]
    }

    /// Builds the graph: inputs `x [B, n]`, `y [n]`, `z [B, 1]`, then each step on the pool.
    /// Every pool entry has a shape among `[B, n]`, `[n]`, `[B, 1]`, `[1, n]`, so any two
    /// broadcast. Unary ops are guarded so their inputs stay in their domains.
    fn build<'g>(g: &'g Graph, n: usize, steps: &[Step]) -> Result<(Vec<Tensor<'g>>, Tensor<'g>)> {
        let x = g.input("x", [Dim::sym("B"), n.into()])?;
        let y = g.input("y", [n])?;
        let z = g.input("z", [Dim::sym("B"), 1.into()])?;
        let w = g.param("w", [n, n], Init::XavierUniform)?;
        let mut pool = vec![x, y, z];
        for step in steps {
            let pick = |i: usize| pool[i % pool.len()];
            let next = match *step {
                Step::Unary(op, a) => {
                    let a = pick(a);
                    match op {
                        0 => a.neg()?,
                        1 => a.tanh()?.mul(3.0)?.exp()?,
                        2 => a.abs()?.add(0.5)?.log()?,
                        3 => a.abs()?.sqrt()?,
                        4 => a.sin()?,
                        5 => a.cos()?,
                        6 => a.tanh()?,
                        7 => a.square()?.add(0.5)?.recip()?,
                        8 => a.abs()?.add(0.1)?.powf(1.5)?,
                        _ => layers::sigmoid(a)?,
                    }
                }
                Step::Binary(op, a, b) => {
                    let (a, b) = (pick(a), pick(b));
                    match op {
                        0 => a.add(b)?,
                        1 => a.sub(b)?,
                        2 => a.mul(b)?,
                        3 => a.div(b.square()?.add(1.0)?)?,
                        4 => a.maximum(b)?,
                        _ => a.minimum(b)?,
                    }
                }
                Step::Select(m, a, b) => pick(m).gt(pick(a))?.select(pick(a), pick(b))?,
                Step::Reduce(max, axis, a) => {
                    let a = pick(a);
                    let axis = axis.min(a.rank().saturating_sub(1));
                    if a.rank() == 0 {
                        a
                    } else if max {
                        a.max(&[axis], true)?
                    } else {
                        a.sum(&[axis], true)?
                    }
                }
                Step::MatMul(a) => {
                    let a = pick(a);
                    if a.shape().dims().last() == Some(&Dim::Static(n)) && a.rank() == 2 { a.matmul(w)? } else { a }
                }
            };
            pool.push(next);
        }
        let last = *pool.last().expect("the pool starts with inputs");
        let loss = last.broadcast_to(x.shape())?.square()?.sum_all()?;
        Ok((vec![x, y, z], loss))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn random_graphs_and_their_gradients_match(
            n in 1usize..7,
            batch in prop_oneof![Just(1usize), Just(5), Just(33)],
            steps in proptest::collection::vec(step(), 1..8),
            seed in 0u64..1000,
        ) {
            let g = Graph::new();
            let (inputs, loss) = build(&g, n, &steps).expect("builds");
            let w = g.leaf("w").expect("w");
            let mut wanted = vec![loss];
            wanted.extend(g.grad(loss, &[inputs[0], inputs[1], w]).expect("differentiates"));
            let values = [normal(&[batch, n], seed), normal(&[n], seed + 1), normal(&[batch, 1], seed + 2)];
            // Transcendentals are polynomial approximations (a few ulp), and sums run in another
            // order than the interpreter's f64 accumulation: compare at 1e-3 relative.
            assert_matches_interpreter(&g, &inputs, &values, &wanted, 1e-3);
        }
    }
}

/// The notebook's MLP training step (batch drawn in the graph, SGD updates) compiled, run for
/// a few steps, and compared with the same steps in the interpreter.
#[test]
fn the_notebook_training_step_matches_the_interpreter_over_several_steps() -> Result<()> {
    let g = Graph::new();
    let step = g.typed_input("step", Shape::scalar(), DType::I64)?;
    let points = g.random_normal([500, 2], 5, step)?;
    let (x, y) = (points.slice(1, 0, 1)?, points.slice(1, 1, 2)?);
    let labels = y.gt((x * 3.0).sin()?)?.cast(DType::I64)?.reshape([500])?;
    let l1 = layers::Linear::new(&g, "layer1", 2, 20)?;
    let l2 = layers::Linear::new(&g, "layer2", 20, 20)?;
    let l3 = layers::Linear::new(&g, "layer3", 20, 2)?;
    let h = layers::relu(l1.forward(points)?)?;
    let h = layers::relu(l2.forward(h)?)?;
    let loss = layers::cross_entropy(l3.forward(h)?, labels)?;
    let params: Vec<Tensor> = g.params().iter().map(|(t, _, _)| *t).collect();
    let grads = g.grad(loss, &params)?;
    let updates: Vec<(Tensor, Tensor)> =
        params.iter().zip(&grads).map(|(p, d)| Ok((*p, p.sub(d.mul(0.1)?)?))).collect::<Result<_>>()?;
    let mut f = function(&g, &[step], &[loss], &updates)?;
    assert!(f.compile_time().as_millis() < 1000, "compiled in {:?}", f.compile_time());

    let mut reference = f.params();
    let interpreter = Interpreter::new(&g);
    let new_values: Vec<Tensor> = updates.iter().map(|(_, v)| *v).collect();
    for s in 0..5 {
        let inputs = [Value::i64([], vec![s])];
        let compiled_loss = f.call(&inputs)?[0].item().expect("scalar");
        let feeds = Feeds::from([("step", inputs[0].clone())]);
        let mut wanted = vec![loss];
        wanted.extend(&new_values);
        let out = interpreter.run(&feeds, &reference, &wanted)?;
        let reference_loss = out[0].item().expect("scalar");
        assert!((compiled_loss - reference_loss).abs() < 1e-4, "step {s}: {compiled_loss} vs {reference_loss}");
        for ((param, _), value) in updates.iter().zip(&out[1..]) {
            reference.set(&param.name().expect("named"), value.clone());
        }
    }
    let compiled = f.params();
    for (name, value) in reference.iter() {
        let got = compiled.get(name).expect("same params");
        for (a, b) in got.to_f64_vec().iter().zip(value.to_f64_vec()) {
            assert!((a - b).abs() < 1e-4, "{name}: {a} vs {b}");
        }
    }
    Ok(())
}
