//! The native tier (vector C built by the system C compiler) against the JIT and the
//! interpreter, the automatic switch between them, the cache and the C compiler's errors.
//!
//! Every op class and workload also runs on the native tier through the compiled-vs-interpreter
//! suites with `KILN_TIER=native` (see `.ci/run`); this file checks what only the tiers have.

use kiln::compiler::codegen::Options;
use kiln::compiler::native;
use kiln::optim::{Schedule, Sgd};
use kiln::prelude::*;
use kiln::{Tier, function_on};

/// The notebook's MLP step (W1's model) on a batch of `batch` fixed points.
struct Notebook<'g> {
    inputs: Vec<Tensor<'g>>,
    loss: Tensor<'g>,
    updates: Vec<(Tensor<'g>, Tensor<'g>)>,
}

fn notebook(g: &Graph) -> Result<Notebook<'_>> {
    let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    let labels = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
    let mut h = x;
    for (i, (from, to)) in [(2, 20), (20, 20), (20, 2)].into_iter().enumerate() {
        h = layers::Linear::new(g, &format!("layer{}", i + 1), from, to)?.forward(h)?;
        if i < 2 {
            h = layers::relu(h)?;
        }
    }
    let loss = layers::cross_entropy(h, labels)?;
    let params: Vec<Tensor> = g.params().iter().map(|(t, _, _)| *t).collect();
    let grads = g.grad(loss, &params)?;
    let schedule = Schedule::inputs(g)?;
    let updates = Sgd::new().updates(g, &params, &grads, &schedule)?;
    Ok(Notebook { inputs: vec![x, labels, schedule.lr, schedule.step], loss, updates })
}

/// Points of two classes (inside or outside a circle), reproducible from `seed`.
fn batch(n: usize, seed: u64) -> (Value, Value) {
    let key = kiln::compiler::random::draw_key(seed, 5);
    let points: Vec<f32> = (0..2 * n as u64).map(|i| kiln::compiler::random::normal(key, i) as f32).collect();
    let labels = points.chunks(2).map(|p| i64::from(p[0] * p[0] + p[1] * p[1] < 1.0)).collect();
    (Value::f32([n, 2], points), Value::i64([n], labels))
}

fn feed(step: u64) -> Vec<Value> {
    let (x, labels) = batch(1000, step % 4);
    let [lr, t] = Schedule::values(0.1, step + 1);
    vec![x, labels, lr, t]
}

fn has_compiler() -> bool {
    native::c_compiler().is_some()
}

#[test]
fn the_native_step_matches_the_jit_and_gives_the_same_bits_on_one_and_two_threads() -> Result<()> {
    if !has_compiler() {
        return Ok(());
    }
    let g = Graph::new();
    let step = notebook(&g)?;
    let on = |tier| function_on(tier, &g, &step.inputs, &[step.loss], &step.updates, &Options::default());
    let (mut jit, mut one, mut two) = (on(Tier::Jit)?, on(Tier::Native)?, on(Tier::Native)?);
    assert_eq!((jit.tier(), one.tier()), (Tier::Jit, Tier::Native));
    one.set_threads(1);
    two.set_threads(2);
    // Most of this step's kernels are below the default split threshold at a batch of 1000:
    // without forcing, "two threads" would run them on one and prove nothing.
    two.set_split_threshold(0);
    for s in 0..5 {
        let (a, b, c) = (jit.call(&feed(s))?, one.call(&feed(s))?, two.call(&feed(s))?);
        let (a, b, c) = (a[0].item().unwrap_or(f64::NAN), b[0].item().unwrap_or(f64::NAN), c[0].item().unwrap_or(0.0));
        assert_eq!(b.to_bits(), c.to_bits(), "step {s}: loss {b} on 1 thread, {c} on 2");
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "step {s}: JIT loss {a}, native {b}");
    }
    for (name, value) in jit.params().iter() {
        let native = one.params();
        let got = native.get(name).expect("the same params").to_f64_vec();
        for (k, (a, b)) in value.to_f64_vec().iter().zip(got).enumerate() {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{name}[{k}]: JIT {a}, native {b}");
        }
    }
    Ok(())
}

#[test]
fn training_on_auto_switches_at_the_same_call_and_the_loss_curve_continues() -> Result<()> {
    if !has_compiler() {
        return Ok(());
    }
    let g = Graph::new();
    let step = notebook(&g)?;
    let options = Options::default();
    let mut auto = function_on(Tier::Auto, &g, &step.inputs, &[step.loss], &step.updates, &options)?;
    let mut jit = function_on(Tier::Jit, &g, &step.inputs, &[step.loss], &step.updates, &options)?;
    let switch = kiln_runtime::AUTO_SWITCH_CALL;
    let mut losses = Vec::new();
    for s in 0..switch + 40 {
        assert_eq!(auto.tier(), if s <= switch { Tier::Jit } else { Tier::Native }, "tier before call {}", s + 1);
        let (a, j) = (auto.call(&feed(s))?[0].item().unwrap_or(f64::NAN), jit.call(&feed(s))?[0].item().unwrap_or(0.0));
        if s < switch {
            assert_eq!(a.to_bits(), j.to_bits(), "call {}: both on the JIT", s + 1);
        } else {
            assert!((a - j).abs() <= 1e-4 * j.abs().max(1.0), "call {}: auto {a}, JIT {j}", s + 1);
        }
        losses.push(a);
    }
    assert_eq!(auto.tier(), Tier::Native);
    // The curve goes on from where the JIT left it: no jump at the switch, and still falling.
    let at_switch = switch as usize;
    let jump = (losses[at_switch] - losses[at_switch - 1]).abs();
    let typical = (losses[at_switch - 1] - losses[at_switch - 5]).abs() / 4.0 + 1e-3;
    assert!(jump <= 4.0 * typical, "loss jumps by {jump} at the switch (steps move it by {typical})");
    assert!(losses[losses.len() - 1] < losses[at_switch - 1], "loss {losses:?}");
    Ok(())
}

#[test]
fn a_program_built_once_loads_from_the_cache_unchanged() -> Result<()> {
    let Some(compiler) = native::c_compiler() else { return Ok(()) };
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 3.into()])?;
    let y = (x.tanh()? * 2.0).sum_all()?;
    let program = kiln::compiler::compile::lower_to_kernels(&g, &[y], &[])?;
    let source = native::source(&program, &Options::default())?;
    let flags = native::build::flags(Options::default().fma);
    let library = native::build::library_path(compiler, &source, &flags, &Options::default().settings);
    native::compile(program.clone(), &Options::default())?;
    let built = std::fs::metadata(&library).and_then(|m| m.modified()).expect("the library is in the cache");
    assert!(library.with_extension("c").exists(), "the source is kept beside the library");
    native::compile(program, &Options::default())?;
    let loaded = std::fs::metadata(&library).and_then(|m| m.modified()).expect("still in the cache");
    assert_eq!(built, loaded, "the second compile rebuilt {}", library.display());
    Ok(())
}

#[test]
fn a_c_compiler_error_names_the_source_and_carries_the_message() {
    let Some(compiler) = native::c_compiler() else { return };
    let folder = std::env::temp_dir().join(format!("kiln-native-error-{}", std::process::id()));
    let library = folder.join("broken.so");
    let error = native::build::build(compiler, "int broken = ;\n", &native::build::flags(true), &library)
        .expect_err("the source is not C");
    let text = error.to_string();
    assert!(matches!(error, Error::Toolchain { .. }), "{error:?}");
    assert!(text.contains(&folder.join("broken.c").display().to_string()), "no source path in: {text}");
    assert!(text.contains("error"), "no compiler message in: {text}");
    assert!(!library.exists());
    let _ = std::fs::remove_dir_all(&folder);
}

/// The distance between two `f32`s in units in the last place (±0 are one value).
fn ulps(a: f32, b: f32) -> u32 {
    let ordered = |x: f32| {
        let bits = x.to_bits() as i32;
        if bits < 0 { i32::MIN.wrapping_sub(bits) } else { bits }
    };
    ordered(a).abs_diff(ordered(b))
}

#[test]
fn the_transcendentals_of_the_two_tiers_agree_within_two_ulp_except_denormals_the_native_tier_flushes() -> Result<()> {
    if !has_compiler() {
        return Ok(());
    }
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("N")])?;
    let positive = (x.abs()? + 1e-30).log()?;
    let outputs = [x.exp()?, positive, x.sin()?, x.cos()?, x.tanh()?];
    let n = 200_000;
    let values: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 1e-3).collect();
    let feed = [Value::f32([n], values)];
    let options = Options::default();
    let jit = function_on(Tier::Jit, &g, &[x], &outputs, &[], &options)?.call(&feed)?;
    let native = function_on(Tier::Native, &g, &[x], &outputs, &[], &options)?.call(&feed)?;
    for (function, (a, b)) in ["exp", "log", "sin", "cos", "tanh"].iter().zip(jit.iter().zip(&native)) {
        let (a, b) = (a.to_f64_vec(), b.to_f64_vec());
        // exp(-100) is denormal: the JIT returns it, the native tier (flushing) zero.
        let normal = |x: &f64| !(*x as f32).is_subnormal();
        let worst = a.iter().zip(&b).filter(|(x, _)| normal(x)).map(|(x, y)| ulps(*x as f32, *y as f32)).max();
        assert!(worst.unwrap_or(0) <= 2, "{function}: the tiers differ by {worst:?} ulp");
        let flushed = a.iter().zip(&b).filter(|(x, _)| !normal(x)).all(|(_, y)| *y == 0.0);
        assert!(flushed, "{function}: a denormal result of the JIT is not zero on the native tier");
        if *function == "exp" {
            assert!(a.iter().any(|x| !normal(x)), "the inputs reach exp's denormal range");
        }
    }
    Ok(())
}

/// Standard-normal `f32` values of `shape`, reproducible from `seed`.
fn normal(shape: &[usize], seed: u64) -> Value {
    let key = kiln::compiler::random::draw_key(seed, 31);
    let count: usize = shape.iter().product();
    Value::f32(shape.to_vec(), (0..count as u64).map(|i| kiln::compiler::random::normal(key, i) as f32).collect())
}

/// Runs `outputs` on the native tier on 1 and 2 threads (every kernel split) and checks that
/// the runs agree bit for bit and match the interpreter within 1e-4 (another order of sums).
fn check_native(what: &str, g: &Graph, inputs: &[Tensor], values: &[Value], outputs: &[Tensor]) -> Result<()> {
    check_on(Tier::Native, what, g, inputs, values, outputs, 1.0)
}

/// [`check_native`] on `tier`, within 1e-4 of the larger of the interpreter's magnitude and
/// `scale` (the typical size of a long sum's terms' total, where another order rounds more).
fn check_on(
    tier: Tier,
    what: &str,
    g: &Graph,
    inputs: &[Tensor],
    values: &[Value],
    outputs: &[Tensor],
    scale: f64,
) -> Result<()> {
    let mut f = function_on(tier, g, inputs, outputs, &[], &Options::default())?;
    assert_eq!(f.tier(), tier);
    f.set_split_threshold(0);
    f.set_threads(1);
    let one = f.call(values)?;
    f.set_threads(2);
    let two = f.call(values)?;
    let mut feeds = Feeds::new();
    for (input, value) in inputs.iter().zip(values) {
        feeds.insert(&input.name().expect("inputs have names"), value.clone());
    }
    let reference = Interpreter::new(g).run(&feeds, &f.params(), outputs)?;
    for (i, ((a, b), r)) in one.iter().zip(&two).zip(&reference).enumerate() {
        assert_eq!(a.shape(), r.shape(), "{what}: output {i}");
        for (e, ((x, y), z)) in a.to_f64_vec().iter().zip(b.to_f64_vec()).zip(r.to_f64_vec()).enumerate() {
            assert_eq!(x.to_bits(), y.to_bits(), "{what}: output {i} element {e}: {x} on 1 thread, {y} on 2");
            assert!(
                (x - z).abs() <= 1e-4 * z.abs().max(scale),
                "{what}: output {i} element {e}: native {x}, interpreter {z}"
            );
        }
    }
    Ok(())
}

/// Layers on a batch (`n` ≤ 32 columns: the narrow register tiles, columns or rows in the
/// lanes, bias and ReLU applied in registers), with odd widths, short contractions and
/// batches that end inside a tile, a vector and a block; some products also returned, so
/// they are stored beside their epilogue's results, and one width past the narrow tiles.
#[test]
fn narrow_layers_of_odd_sizes_match_the_interpreter_on_one_and_two_threads() -> Result<()> {
    if !has_compiler() {
        return Ok(());
    }
    let (widths, contractions) = ([1usize, 2, 3, 17, 20, 33], [1usize, 2, 7, 20]);
    let g = Graph::new();
    let (mut inputs, mut outputs, mut shapes) = (Vec::new(), Vec::new(), Vec::new());
    for &k in &contractions {
        let x = g.input(&format!("x{k}"), [Dim::sym("M"), k.into()])?;
        inputs.push(x);
        shapes.push(vec![0, k]);
        for &n in &widths {
            let w = g.input(&format!("w{k}_{n}"), [k, n])?;
            let b = g.input(&format!("b{k}_{n}"), [n])?;
            inputs.extend([w, b]);
            shapes.extend([vec![k, n], vec![n]]);
            let product = x.matmul(w)?;
            outputs.push(layers::relu(product + b)?);
            if n == 3 || n == 20 {
                outputs.push(product);
            }
        }
    }
    for rows in [1usize, 15, 37, 300] {
        let values: Vec<Value> = shapes
            .iter()
            .enumerate()
            .map(|(i, shape)| {
                let shape: Vec<usize> = shape.iter().map(|&d| if d == 0 { rows } else { d }).collect();
                normal(&shape, 100 + i as u64)
            })
            .collect();
        check_native(&format!("layers on {rows} rows"), &g, &inputs, &values, &outputs)?;
    }
    Ok(())
}

/// Weight gradients `aᵀ · b` with few static rows and a long symbolic contraction (the batch):
/// the whole result stays in registers while `k` streams, rows in the lanes when `a` is read
/// column by column and the result is narrow, columns otherwise.
#[test]
fn weight_gradients_of_few_rows_match_the_interpreter_on_one_and_two_threads() -> Result<()> {
    if !has_compiler() {
        return Ok(());
    }
    let g = Graph::new();
    let (mut inputs, mut outputs, mut widths) = (Vec::new(), Vec::new(), Vec::new());
    for m in [1usize, 3, 20, 33] {
        let a = g.input(&format!("a{m}"), [Dim::sym("K"), m.into()])?;
        inputs.push(a);
        widths.push(m);
        for n in [2usize, 17, 20, 33] {
            let b = g.input(&format!("b{m}_{n}"), [Dim::sym("K"), n.into()])?;
            inputs.push(b);
            widths.push(n);
            outputs.push(a.t()?.matmul(b)?);
        }
    }
    for batch in [1usize, 7, 1000] {
        let values: Vec<Value> =
            widths.iter().enumerate().map(|(i, &width)| normal(&[batch, width], 200 + i as u64)).collect();
        check_native(&format!("weight gradients over {batch}"), &g, &inputs, &values, &outputs)?;
    }
    Ok(())
}

/// Weight and bias gradients over a long static batch, which `kernel::split_contractions` cuts
/// into four partial products summed in order (m = 1 is a bias gradient's shape; n = 33 is
/// past the narrow tiles; k = 8194 is not divided by four parts and stays whole), on both
/// tiers.
#[test]
fn split_contractions_match_the_interpreter_on_one_and_two_threads_on_both_tiers() -> Result<()> {
    let g = Graph::new();
    let (mut inputs, mut outputs, mut shapes) = (Vec::new(), Vec::new(), Vec::new());
    for k in [8192usize, 8194] {
        for m in [1usize, 3, 20] {
            let a = g.input(&format!("a{k}_{m}"), [k, m])?;
            inputs.push(a);
            shapes.push([k, m]);
            for n in [2usize, 20, 33] {
                let b = g.input(&format!("b{k}_{m}_{n}"), [k, n])?;
                inputs.push(b);
                shapes.push([k, n]);
                outputs.push(a.t()?.matmul(b)?);
            }
        }
    }
    let values: Vec<Value> = shapes.iter().enumerate().map(|(i, shape)| normal(shape, 300 + i as u64)).collect();
    let mut tiers = vec![Tier::Jit];
    if has_compiler() {
        tiers.push(Tier::Native);
    }
    for tier in tiers {
        // Sums of ~8192 products of standard normals are ~90 in size.
        check_on(tier, &format!("split contractions on {tier:?}"), &g, &inputs, &values, &outputs, 90.0)?;
    }
    Ok(())
}

/// Sums and maxima over the 12 positions of `[B, 12, D]` (an embedding's features summed over
/// positions): with `D` up to 64 the results stay in registers across the positions, in whole
/// and partial vectors; 65 is past that and accumulates in place.
#[test]
fn reductions_over_positions_keep_short_rows_in_registers_and_match_the_interpreter() -> Result<()> {
    if !has_compiler() {
        return Ok(());
    }
    let g = Graph::new();
    let (mut inputs, mut outputs, mut shapes) = (Vec::new(), Vec::new(), Vec::new());
    for d in [1usize, 3, 16, 17, 33, 64, 65] {
        let x = g.input(&format!("x{d}"), [Dim::sym("B"), 12.into(), d.into()])?;
        inputs.push(x);
        shapes.push(d);
        outputs.push(x.sum(&[1], false)?);
        outputs.push((x * 2.0).max(&[1], false)?);
    }
    for batch in [1usize, 5, 40] {
        let values: Vec<Value> =
            shapes.iter().enumerate().map(|(i, &d)| normal(&[batch, 12, d], 400 + i as u64)).collect();
        check_native(&format!("reductions over positions, batch {batch}"), &g, &inputs, &values, &outputs)?;
    }
    Ok(())
}

/// An `f64` graph's constants reach the native tier's C as the doubles written (`1e-5`, `0.1`),
/// and the JIT gives the same bits.
#[test]
fn f64_constants_are_exact_on_the_native_tier_and_the_jit() -> Result<()> {
    if !has_compiler() {
        return Ok(());
    }
    let g = Graph::new();
    let x = g.input_of("x", [Dim::sym("B")], DType::F64)?;
    let outputs = [x + 1e-5, x * 0.1, g.scalar_of(1e-5, DType::F64) - x];
    let feed = [Value::f64([3], vec![0.0, 1.0, -2.0])];
    let expected = [vec![1e-5, 1.0 + 1e-5, -2.0 + 1e-5], vec![0.0, 0.1, -0.2], vec![1e-5, 1e-5 - 1.0, 2.0 + 1e-5]];
    for tier in [Tier::Native, Tier::Jit] {
        let mut f = function_on(tier, &g, &[x], &outputs, &[], &Options::default())?;
        assert_eq!(f.tier(), tier);
        let out = f.call(&feed)?;
        for (value, expected) in out.iter().zip(&expected) {
            assert_eq!(value.dtype(), DType::F64, "{tier:?}");
            assert_eq!(&value.to_f64_vec(), expected, "{tier:?}");
        }
    }
    Ok(())
}
