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
    // The JIT compiles in milliseconds; the native tier (KILN_TIER=native) runs the C compiler,
    // within its own bound of 3 s cold.
    let bound = if f.tier() == kiln::Tier::Native { 3000 } else { 1000 };
    assert!(f.compile_time().as_millis() < bound, "compiled on {:?} in {:?}", f.tier(), f.compile_time());

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

mod random_construction {
    //! Random graph construction as an adversary would do it: random ops from the whole op set
    //! on random shapes and dtypes (many of them invalid), compiled, then called with random
    //! feeds (bad ones included: indices out of range, zero divisors, empty batches, wrong
    //! shapes). Every case must end in `Ok` or `Err`, never a panic or a crash; where both the
    //! compiled function and the interpreter succeed, their results must agree.
    //!
    //! `KILN_FUZZ_CASES=N` sets the number of cases (default: what CI affords in seconds).
    //! A failing case prints its number; `KILN_FUZZ_FIRST=N` starts there. (A float cast to an
    //! integer right at a rounding boundary may differ by one between the evaluators, whose sums
    //! round differently: such a case is noise, not a bug.)

    use super::*;

    /// SplitMix64: a tiny deterministic generator, so a case is reproduced by its number.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    /// What one case ended in.
    #[derive(Default, Debug)]
    struct Tally {
        build_errors: usize,
        compile_errors: usize,
        call_errors: usize,
        compared: usize,
        interpreter_only_errors: usize,
    }

    /// One random op on the pool (its operands picked by `rng`); `Err` when the op refuses them.
    fn random_op<'g>(rng: &mut Rng, pool: &[Tensor<'g>]) -> Result<Tensor<'g>> {
        let pick = |rng: &mut Rng| pool[rng.below(pool.len())];
        let a = pick(rng);
        let b = pick(rng);
        let axis = rng.below(3);
        match rng.below(29) {
            24 => {
                // A zero table of 1 to 3 rows, each shaped as the updates' rows would be.
                let row = b.shape().dims().get(a.rank()..).map(<[Dim]>::to_vec).unwrap_or_default();
                let shape = Shape(std::iter::once(Dim::Static(1 + rng.below(3))).chain(row).collect());
                a.graph().fill(shape, b.dtype(), 0.0).scatter_add(a, b)
            }
            25 => a.permute(&[1, 0]),
            // The counter comes from the integer `ids`: a float rounded to a counter could round
            // differently in the two evaluators and draw entirely different numbers.
            26 => {
                pool[2].sum_all()?.cast(DType::I64).and_then(|counter| a.graph().random_uniform(a.shape(), 7, counter))
            }
            27 => layers::mean(a, &[axis], false),
            28 => layers::log_softmax(a, axis),
            0 => a.neg(),
            1 => a.tanh()?.mul(2.0)?.exp(),
            2 => a.abs()?.add(0.5)?.log(),
            3 => a.abs()?.sqrt(),
            4 => a.sin(),
            5 => a.add(b),
            6 => a.sub(b),
            7 => a.mul(b),
            8 => a.div(b),
            9 => a.maximum(b),
            10 => a.gt(b)?.select(a, b),
            11 => a.sum(&[axis], rng.chance(50)),
            12 => a.max(&[axis], rng.chance(50)),
            13 => a.matmul(b),
            14 => a.t(),
            15 => a.cast([DType::F32, DType::I64, DType::I32, DType::Bool][rng.below(4)]),
            16 => a.one_hot(1 + rng.below(4)),
            17 => a.gather(b),
            18 => {
                let end = rng.below(4);
                a.slice(axis, rng.below(end + 1), end)
            }
            19 => Tensor::concat(&[a, b], axis),
            20 => a.reshape([Dim::sym("B"), Dim::Static(rng.below(4))]),
            21 => a.broadcast_to([Dim::sym("B"), Dim::Static(rng.below(4)), Dim::Static(3)]),
            22 => layers::softmax(a, axis),
            _ => layers::cross_entropy(a, b),
        }
    }

    /// A feed for `input`: usually of its shape at batch `batch`, sometimes not (a bad feed).
    fn random_feed(rng: &mut Rng, shape: &Shape, dtype: DType, batch: usize) -> Value {
        let mut dims: Vec<usize> = shape.dims().iter().map(|d| d.as_static().unwrap_or(batch)).collect();
        if rng.chance(3) && !dims.is_empty() {
            dims[0] += 1;
        }
        let n: usize = dims.iter().product();
        match dtype {
            DType::I64 => Value::i64(dims, (0..n).map(|_| rng.below(6) as i64 - 1).collect()),
            DType::I32 => Value::i32(dims, (0..n).map(|_| rng.below(6) as i32 - 1).collect()),
            _ => {
                let seed = rng.next() % 1000;
                let value = normal(&dims, seed);
                if rng.chance(3) { value.cast(DType::I64) } else { value }
            }
        }
    }

    /// Builds, compiles and calls one random case; panics only on a disagreement.
    fn run_case(case: u64, tally: &mut Tally) {
        let mut rng = Rng(case.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed);
        let g = Graph::new();
        let n = 1 + rng.below(3);
        let x = g.input("x", [Dim::sym("B"), n.into()]).expect("x");
        let y = g.input("y", [if rng.chance(50) { 1 } else { n }]).expect("y");
        let ids = g.typed_input("ids", [Dim::sym("B")], [DType::I64, DType::I32][rng.below(2)]).expect("ids");
        let rows = rng.below(4);
        let table = g.param("table", [rows.max(1), n], Init::XavierUniform).expect("table");
        let inputs = vec![x, y, ids];
        let mut pool = vec![x, y, ids, table];
        for _ in 0..1 + rng.below(6) {
            match random_op(&mut rng, &pool) {
                Ok(t) => pool.push(t),
                Err(_) => tally.build_errors += 1,
            }
        }
        if rows == 0 && layers::Embedding::new(&g, "empty", 0, n).is_ok() {
            panic!("case {case}: an embedding of 0 rows was accepted");
        }
        let outputs: Vec<Tensor> = pool[pool.len().saturating_sub(2)..].to_vec();
        let compiled = function(&g, &inputs, &outputs, &[]);
        let mut f = match compiled {
            Ok(f) => f,
            Err(Error::Bug(bug)) => panic!("case {case}: compiling hit a bug in kiln: {bug}"),
            Err(_) => {
                tally.compile_errors += 1;
                return;
            }
        };
        for _ in 0..2 {
            let batch = [0, 1, 3, 9, 40][rng.below(5)];
            let values: Vec<Value> =
                inputs.iter().map(|t| random_feed(&mut rng, &t.shape(), t.dtype(), batch)).collect();
            let mut feeds = Feeds::new();
            for (input, value) in inputs.iter().zip(&values) {
                feeds.insert(&input.name().expect("named"), value.clone());
            }
            let compiled = f.call(&values);
            let interpreted = Interpreter::new(&g).run(&feeds, &f.params(), &outputs);
            match (compiled, interpreted) {
                (Ok(compiled), Ok(reference)) => {
                    tally.compared += 1;
                    let context = format!("case {case}, feeds {values:?}\n{}{}", g.listing(), f.listing());
                    compare(&context, &compiled, &reference);
                }
                (Err(error), Ok(_)) => panic!("case {case}: compiled failed where the interpreter ran: {error}"),
                // A fused gather or one-hot computes only the elements its reader needs, so
                // an index the result never uses is not checked by the compiled function.
                (Ok(_), Err(_)) => tally.interpreter_only_errors += 1,
                (Err(Error::Bug(bug)), _) => panic!("case {case}: the call hit a bug in kiln: {bug}"),
                (_, Err(Error::Bug(bug))) => panic!("case {case}: the interpreter hit a bug in kiln: {bug}"),
                (Err(_), Err(_)) => tally.call_errors += 1,
            }
        }
    }

    fn compare(case: &str, compiled: &[Value], reference: &[Value]) {
        for (i, (c, r)) in compiled.iter().zip(reference).enumerate() {
            assert_eq!(c.shape(), r.shape(), "case {case}: output {i}");
            assert_eq!(c.dtype(), r.dtype(), "case {case}: output {i}");
            for (k, (a, b)) in c.to_f64_vec().iter().zip(r.to_f64_vec()).enumerate() {
                let close = (a - b).abs() <= 1e-3 * b.abs().max(1.0) || a.to_bits() == b.to_bits();
                let both_nan = a.is_nan() && b.is_nan();
                assert!(close || both_nan, "case {case}: output {i} element {k}: compiled {a} vs interpreter {b}");
            }
        }
    }

    #[test]
    fn random_graphs_and_feeds_end_in_a_result_or_an_error_never_a_crash() {
        let cases: u64 = std::env::var("KILN_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(2000);
        let first: u64 = std::env::var("KILN_FUZZ_FIRST").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
        let mut tally = Tally::default();
        for case in first..first + cases {
            // A panic anywhere (in kiln or in Cranelift) names the case that reproduces it.
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(case, &mut tally)));
            assert!(outcome.is_ok(), "case {case} panicked (rerun it with KILN_FUZZ_FIRST={case} KILN_FUZZ_CASES=1)");
        }
        eprintln!("{cases} random cases: {tally:?}");
        assert!(tally.compared > 0, "no case got as far as comparing results: {tally:?}");
    }
}
