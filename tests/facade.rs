//! Integration tests of the `kiln` facade: what a user sees through `kiln::prelude`.

use kiln::prelude::*;

/// The reference notebook's MLP and its loss, over a symbolic batch.
fn notebook_mlp(g: &Graph) -> Result<Tensor<'_>> {
    let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    let labels = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
    let layer1 = layers::Linear::new(g, "layer1", 2, 20)?;
    let layer2 = layers::Linear::new(g, "layer2", 20, 20)?;
    let layer3 = layers::Linear::new(g, "layer3", 20, 2)?;
    let h = layers::relu(layer1.forward(x)?)?;
    let h = layers::relu(layer2.forward(h)?)?;
    layers::cross_entropy(layer3.forward(h)?, labels)
}

fn batch(points: usize, seed: u64) -> Feeds {
    let key = kiln::compiler::random::draw_key(seed, 0);
    let xs: Vec<f32> = (0..2 * points as u64).map(|i| kiln::compiler::random::normal(key, i) as f32).collect();
    let labels: Vec<i64> = xs.chunks(2).map(|p| i64::from(p[1] > (3.0 * p[0]).sin())).collect();
    Feeds::from([("x", Value::f32([points, 2], xs)), ("labels", Value::i64([points], labels))])
}

#[test]
fn sgd_steps_built_from_symbolic_gradients_lower_the_loss() -> Result<()> {
    let g = Graph::new();
    let loss = notebook_mlp(&g)?;
    let params = g.params();
    let handles: Vec<Tensor> = params.iter().map(|(t, _, _)| *t).collect();
    let grads = g.grad(loss, &handles)?;
    let updates = params
        .iter()
        .zip(&grads)
        .map(|((param, name, _), grad)| Ok((name.clone(), param.sub(grad.mul(0.5)?)?)))
        .collect::<Result<Vec<_>>>()?;

    let interpreter = Interpreter::new(&g);
    let feeds = batch(512, 3);
    let mut values = ParamStore::init(&g, 7);
    let mut wanted = vec![loss];
    wanted.extend(updates.iter().map(|(_, t)| *t));
    let mut losses = Vec::new();
    for _ in 0..20 {
        let out = interpreter.run(&feeds, &values, &wanted)?;
        losses.push(out[0].item().expect("scalar loss"));
        for ((name, _), value) in updates.iter().zip(out.into_iter().skip(1)) {
            values.set(name, value);
        }
    }
    assert!(losses[19] < 0.9 * losses[0], "losses did not fall: {losses:?}");
    Ok(())
}

#[test]
fn the_notebook_mlp_passes_the_gradient_check() -> Result<()> {
    let g = Graph::new();
    let loss = notebook_mlp(&g)?;
    let handles: Vec<Tensor> = g.params().iter().map(|(t, _, _)| *t).collect();
    let check = check_gradients(&g, loss, &handles, &batch(32, 5), &ParamStore::init(&g, 1), 1e-6)?;
    assert_eq!(check.elements, 20 * 2 + 20 + 20 * 20 + 20 + 2 * 20 + 2);
    assert!(check.max_error < 1e-6, "{check:?}");
    Ok(())
}

#[test]
fn one_graph_serves_every_batch_size() -> Result<()> {
    let g = Graph::new();
    let loss = notebook_mlp(&g)?;
    let values = ParamStore::init(&g, 0);
    for points in [1, 7, 1000] {
        let out = Interpreter::new(&g).run(&batch(points, 11), &values, &[loss])?;
        let loss = out[0].item().expect("scalar loss");
        assert!(loss.is_finite() && loss > 0.0, "batch {points}: loss {loss}");
    }
    Ok(())
}

#[test]
fn the_listing_shows_names_shapes_and_symbolic_dims() -> Result<()> {
    let g = Graph::new();
    notebook_mlp(&g)?;
    let listing = g.listing();
    assert!(listing.starts_with("%0 = input \"x\" : [B, 2] f32\n%1 = input \"labels\" : [B] i64\n"), "{listing}");
    assert!(listing.contains("param \"layer2.weight\" : [20, 20] f32 init=uniform(-0.223607, 0.223607)"), "{listing}");
    assert!(listing.contains("matmul(%0, %"), "{listing}");
    assert!(g.to_dot().starts_with("digraph kiln {"));
    Ok(())
}

/// The README's deploy section calls
/// `function_with(.., &codegen::Options { gemm: false, fma, ..Default::default() })`: both
/// names are reachable from `kiln::`, and a function built with them (and split on 2 threads
/// however small) computes what the interpreter does.
#[test]
fn function_with_and_codegen_options_are_reachable_from_the_facade() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 3.into()])?;
    let w = g.param("w", [3, 2], Init::ONES)?;
    let y = x.matmul(w)?;
    let options = kiln::codegen::Options { gemm: false, fma: false, ..Default::default() };
    let mut f = kiln::function_with(&g, &[x], &[y], &[], &options)?;
    f.set_threads(2);
    f.set_split_threshold(0);
    let input = Value::f32([2, 3], vec![1.0, 2.0, 3.0, -1.0, 0.5, 4.0]);
    let compiled = f.call(std::slice::from_ref(&input))?;
    let reference = Interpreter::new(&g).run(&Feeds::from([("x", input)]), &f.params(), &[y])?;
    assert_eq!(compiled[0].to_f64_vec(), reference[0].to_f64_vec());
    assert_eq!(compiled[0].to_f64_vec(), [6.0, 6.0, 3.5, 3.5]);
    Ok(())
}

/// The names the README and the examples call, each through `kiln::` alone: the tiers and
/// code generator options, the random numbers examples draw data with, `Location` for errors,
/// `gain`, the layers, the modes, and the interpreter without params; compiled results equal the
/// interpreter's.
#[test]
fn every_name_the_readme_calls_is_reachable_from_kiln() -> kiln::Result<()> {
    let g = kiln::Graph::new();
    let x = g.input("x", [kiln::Dim::sym("B"), 2.into()])?;
    let scale = g.scalar(kiln::gain("relu", 0.0));
    let y = (x * scale).tanh()?.sum(&[1], false)?;
    let key = kiln::random::draw_key(3, 0);
    let values: Vec<f32> = (0..6).map(|i| kiln::random::normal(key, i) as f32).collect();
    let feeds = kiln::Feeds::from([("x", kiln::Value::f32([3, 2], values.clone()))]);
    let reference = kiln::Interpreter::new(&g).run_without_params(&feeds, &[y])?;
    let options = kiln::codegen::Options::default();
    let mut f = kiln::function_on(kiln::Tier::Jit, &g, &[x], &[y], &[], &options)?;
    assert_eq!(f.tier(), kiln::Tier::Jit);
    let compiled = f.call(&[kiln::Value::f32([3, 2], values)])?;
    for (a, b) in compiled[0].to_f64_vec().iter().zip(reference[0].to_f64_vec()) {
        assert!((a - b).abs() < 1e-6, "compiled {a}, interpreter {b}");
    }
    assert_eq!(f.mode(), kiln::Mode::Train);
    assert!(kiln::occasionally(0) && kiln::occasionally(3) && !kiln::occasionally(4));
    const { assert!(kiln::AUTO_START_CALL < kiln::AUTO_SWITCH_CALL) };

    // A graph with params needs their values: the error names the param.
    let w = g.param("w", [2], kiln::Init::ONES)?;
    let z = x.mul(w)?;
    match kiln::Interpreter::new(&g).run_without_params(&feeds, &[z]) {
        Err(kiln::Error::MissingParam { name }) => assert_eq!(name, "w"),
        other => panic!("expected a missing param `w`, got {other:?}"),
    }
    let linear = kiln::layers::Linear::new(&g, "layer", 2, 1)?;
    let params: kiln::ParamStore = kiln::ParamStore::init(&g, 0);
    let out = kiln::Interpreter::new(&g).run(&feeds, &params, &[linear.forward(x)?])?;
    assert_eq!(out[0].shape(), &[3, 1]);
    let location = kiln::Location::caller();
    assert!(location.to_string().contains("facade.rs"), "{location}");
    Ok(())
}

/// The settings kiln otherwise reads once from `KILN_*` variables travel in `codegen::Options`,
/// so a program sets them without the environment: threads, profiling and the tier here.
#[test]
fn settings_in_the_options_replace_the_environment() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 3.into()])?;
    let y = (x * 2.0).sum_all()?;
    let mut options = kiln::codegen::Options::default();
    options.settings.threads = Some(3);
    options.settings.profile = true;
    options.settings.tier = kiln::Tier::Jit;
    let mut f = kiln::function_with(&g, &[x], &[y], &[], &options)?;
    assert_eq!((f.threads(), f.tier()), (3, kiln::Tier::Jit));
    let input = Value::f32([2, 3], vec![1.0; 6]);
    assert_eq!(f.call(std::slice::from_ref(&input))?[0].to_f64_vec(), [12.0]);
    assert!(f.profile().is_some(), "profiling was asked for in the settings");
    options.settings.profile = false;
    options.settings.threads = Some(1);
    let f = kiln::function_with(&g, &[x], &[y], &[], &options)?;
    assert_eq!(f.threads(), 1);
    assert!(f.profile().is_none(), "profiling is off in the settings");
    Ok(())
}
