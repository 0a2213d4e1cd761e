//! The `model!` macro: names, constructors, summaries, shape checks, nesting, the interpreter
//! twin and combined losses.

use kiln::prelude::*;
use kiln::{MODE_STEP_INPUT, TRAINING_INPUT};

// The notebook's MLP, as the examples declare it; this file uses only the model.
#[allow(dead_code)]
#[path = "../examples/support/notebook.rs"]
mod notebook;

use notebook::Mlp;

model! {
    /// A model with every built-in layer, using another model as a part.
    struct Tagger {
        embed: Embedding(50 => 8),
        norm: LayerNorm(8),
        drop: Dropout(0.5),
        head: Sequential(Linear(8 => 8), Tanh, Linear(8 => 2)),
        mlp: Mlp,
    }
    fn forward(&self, tokens: i64[B, T]) -> [B, 2] {
        let h = self.norm(self.embed(tokens));
        let h = self.drop(h);
        let h = self.head(h)?;
        self.mlp(h.sum(&[1], false)?)
    }
}

#[test]
fn params_are_named_as_pytorch_names_them() -> Result<()> {
    let g = Graph::new();
    let model = Mlp::new(&g)?;
    let names: Vec<String> = model.named_parameters().into_iter().map(|(name, _)| name).collect();
    let expected = ["layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias", "layer3.weight", "layer3.bias"];
    assert_eq!(names, expected);
    let shapes: Vec<Shape> = model.parameters().iter().map(|t| t.shape()).collect();
    assert_eq!(shapes[0], Shape::of([20, 2]));
    assert_eq!(shapes[5], Shape::of([2]));

    let g = Graph::new();
    let tagger = Tagger::new(&g)?;
    let names: Vec<String> = tagger.named_parameters().into_iter().map(|(name, _)| name).collect();
    let expected = [
        "embed.weight",
        "norm.weight",
        "norm.bias",
        "head.0.weight",
        "head.0.bias",
        "head.2.weight",
        "head.2.bias",
        "mlp.layer1.weight",
        "mlp.layer1.bias",
        "mlp.layer2.weight",
        "mlp.layer2.bias",
        "mlp.layer3.weight",
        "mlp.layer3.bias",
    ];
    assert_eq!(names, expected);
    Ok(())
}

#[test]
fn the_summary_prints_like_pytorch_with_param_counts() -> Result<()> {
    let g = Graph::new();
    let model = Mlp::new(&g)?;
    let expected = "\
Mlp(
  (layer1): Linear(in_features=2, out_features=20, bias=True)  # 60 params
  (layer2): Linear(in_features=20, out_features=20, bias=True)  # 420 params
  (layer3): Linear(in_features=20, out_features=2, bias=True)  # 42 params
)
522 params, 522 trainable";
    assert_eq!(model.to_string(), expected);

    let g = Graph::new();
    let tagger = Tagger::new(&g)?;
    g.set_trainable_prefix("embed", false)?;
    let expected = "\
Tagger(
  (embed): Embedding(50, 8)  # 400 params
  (norm): LayerNorm((8,), eps=1e-5, elementwise_affine=True)  # 16 params
  (drop): Dropout(p=0.5)
  (head): Sequential(
    (0): Linear(in_features=8, out_features=8, bias=True)  # 72 params
    (1): Tanh()
    (2): Linear(in_features=8, out_features=2, bias=True)  # 18 params
  )
  (mlp): Mlp(
    (layer1): Linear(in_features=2, out_features=20, bias=True)  # 60 params
    (layer2): Linear(in_features=20, out_features=20, bias=True)  # 420 params
    (layer3): Linear(in_features=20, out_features=2, bias=True)  # 42 params
  )
)
1028 params, 628 trainable, 400 frozen";
    assert_eq!(tagger.to_string(), expected);
    Ok(())
}

#[test]
fn the_init_rule_sees_every_param_in_order_and_may_replace_it() -> Result<()> {
    let g = Graph::new();
    let mut seen = Vec::new();
    let model = Mlp::with_init(&g, |param| {
        seen.push((param.index, param.name.to_string(), param.shape.to_vec()));
        param.name.ends_with("bias").then_some(Init::Constant(0.25))
    })?;
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[3], (3, "layer2.bias".to_string(), vec![20]));
    let params = ParamStore::init(&g, 0);
    let bias = params.get("layer2.bias").expect("declared");
    assert!(bias.to_f64_vec().iter().all(|&b| b == 0.25));
    let weight = params.get("layer2.weight").expect("declared").to_f64_vec();
    let bound = 1.0 / 20f64.sqrt();
    assert!(weight.iter().all(|w| w.abs() <= bound) && weight.iter().any(|&w| w != weight[0]));
    drop(model);
    Ok(())
}

#[test]
fn forward_checks_declared_shapes_at_run_time() -> Result<()> {
    let g = Graph::new();
    let model = Mlp::new(&g)?;
    let [x] = model.inputs(&g)?;
    assert_eq!(x.shape(), Shape::of([Dim::sym("B"), 2.into()]));
    assert_eq!(model.forward(x)?.shape(), Shape::of([Dim::sym("B"), 2.into()]));
    let wrong = g.input("wrong", [4, 3])?;
    let error = model.forward(wrong).expect_err("a [4, 3] input is not [B, 2]").to_string();
    assert!(
        error.contains("Mlp.forward") && error.contains("input `x` has shape [4, 3], but is declared [B, 2]"),
        "{error}"
    );
    assert!(error.contains("model_macro.rs"), "the error names the caller's line: {error}");
    Ok(())
}

#[test]
fn run_evaluates_forward_with_values_like_the_graph_does() -> Result<()> {
    let g = Graph::new();
    let model = Mlp::new(&g)?;
    let params = ParamStore::init(&g, 7);
    let x_value = Value::f32([3, 2], vec![0.5, -1.0, 2.0, 0.0, -0.3, 0.8]);
    let direct = model.run(&params, [x_value.clone()])?;

    let [x] = model.inputs(&g)?;
    let y = model.forward(x)?;
    let through_graph = Interpreter::new(&g).run(&Feeds::from([("x", x_value)]), &params, &[y])?;
    assert_eq!(direct, through_graph[0]);
    assert_eq!(direct.shape(), &[3, 2]);
    Ok(())
}

#[test]
fn dropout_drops_while_training_and_passes_through_in_eval_in_one_graph() -> Result<()> {
    let g = Graph::new();
    let tagger = Tagger::new(&g)?;
    let params = ParamStore::init(&g, 1);
    let tokens = Value::i64([2, 3], vec![1, 2, 3, 4, 5, 49]);
    // `run` is eval mode: deterministic, no step needed.
    let first = tagger.run(&params, [tokens.clone()])?;
    assert_eq!(first, tagger.run(&params, [tokens.clone()])?);
    assert_eq!(first.shape(), &[2, 2]);

    // One graph: dropout reads the mode inputs, fed here by hand, or from the graph's mode.
    let [t] = tagger.inputs(&g)?;
    let out = tagger.forward(t)?;
    assert!(g.leaf(TRAINING_INPUT).is_ok() && g.leaf(MODE_STEP_INPUT).is_ok());
    let run = |training: bool, step: i64| {
        let feeds = Feeds::from([
            ("tokens", tokens.clone()),
            (TRAINING_INPUT, Value::scalar(DType::Bool, f64::from(u8::from(training)))),
            (MODE_STEP_INPUT, Value::i64([], vec![step])),
        ]);
        Ok::<Value, Error>(Interpreter::new(&g).run(&feeds, &params, &[out])?.remove(0))
    };
    assert_eq!(run(false, 1)?, first, "eval mode is the identity, as `run` computes it");
    assert_eq!(run(false, 2)?, first, "eval mode draws nothing");
    assert_ne!(run(true, 1)?, first, "dropout changed the output while training");
    assert_ne!(run(true, 1)?, run(true, 2)?, "each step draws a fresh mask");

    // Unfed, the mode inputs follow the graph's mode (step 0), switched by the model.
    let unfed = Feeds::from([("tokens", tokens.clone())]);
    assert_eq!(g.mode(), Mode::Train);
    assert_eq!(Interpreter::new(&g).run(&unfed, &params, &[out])?[0], run(true, 0)?);
    tagger.eval();
    assert_eq!(g.mode(), Mode::Eval);
    assert_eq!(Interpreter::new(&g).run(&unfed, &params, &[out])?[0], first);
    tagger.train();
    assert_eq!(Interpreter::new(&g).run(&unfed, &params, &[out])?[0], run(true, 0)?);
    Ok(())
}

#[test]
fn losses_are_graph_expressions_and_combine() -> Result<()> {
    let g = Graph::new();
    let model = Mlp::new(&g)?;
    let [x] = model.inputs(&g)?;
    let labels = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
    let targets = g.input("targets", [Dim::sym("B"), 2.into()])?;
    let logits = model.forward(x)?;
    let ce = layers::cross_entropy(logits, labels)?;
    let mse = layers::mse(layers::softmax(logits, 1)?, targets)?;
    let total = ce + 0.1 * mse;
    let grads = g.grad(total, &model.parameters())?;

    let params = ParamStore::init(&g, 3);
    let feeds = Feeds::from([
        ("x", Value::f32([2, 2], vec![0.5, -1.0, 2.0, 0.0])),
        ("labels", Value::i64([2], vec![0, 1])),
        ("targets", Value::f32([2, 2], vec![1.0, 0.0, 0.0, 1.0])),
    ]);
    let mut outputs = vec![ce, mse, total];
    outputs.extend(&grads);
    let values = Interpreter::new(&g).run(&feeds, &params, &outputs)?;
    let scalar = |v: &Value| v.to_f64_vec()[0];
    let (ce, mse, combined) = (scalar(&values[0]), scalar(&values[1]), scalar(&values[2]));
    assert!((combined - (ce + 0.1 * mse)).abs() < 1e-6, "{combined} vs {ce} + 0.1 * {mse}");

    // The combined loss's gradients are those of its parts, weighted: check them in f64.
    let check = check_gradients(&g, total, &model.parameters(), &feeds, &params, 1e-6)?;
    assert!(check.max_error < 1e-6, "{check:?}");
    assert_eq!(values.len(), 9);
    Ok(())
}

#[test]
fn the_positional_encoding_follows_the_notes() -> Result<()> {
    let g = Graph::new();
    let table = layers::positional_encoding(&g, 4, 3);
    let values = Interpreter::new(&g).run(&Feeds::new(), &ParamStore::new(), &[table])?[0].to_f64_vec();
    for pos in 0..4 {
        for a in 1..=3 {
            let angle = pos as f64 / a as f64;
            let want = if pos % 2 == 0 { angle.cos() } else { angle.sin() };
            assert!((values[pos * 3 + a - 1] - want).abs() < 1e-6, "pos {pos}, a {a}");
        }
    }
    Ok(())
}

#[test]
fn a_one_input_model_exports_its_forward_half() -> Result<()> {
    let g = Graph::new();
    let model = Mlp::new(&g)?;
    let params = ParamStore::init(&g, 5);
    let artifact = model.export(&params, &ExportOptions::new("mlp"))?;
    assert_eq!((artifact.input_size(), artifact.output_size()), (2, 2));
    assert!(artifact.symbols().iter().any(|s| s == "mlp_infer"), "{:?}", artifact.symbols());
    assert!(artifact.header().contains("mlp_infer"));
    // The forward half only: no param update, no gradient in the program.
    let listing = artifact.program().to_string();
    assert_eq!(listing.matches(" matmul ").count(), 3, "{listing}");
    Ok(())
}

#[test]
fn exporting_a_model_with_a_symbolic_length_is_an_error_naming_the_input() -> Result<()> {
    // Integer ids export (see runtime/tests/export_text.rs); a second symbolic dim does not.
    let g = Graph::new();
    let tagger = Tagger::new(&g)?;
    let error = tagger.export(&ParamStore::init(&g, 0), &ExportOptions::new("tagger")).expect_err("[B, T] input");
    let message = error.to_string();
    assert!(message.contains("`tokens` has shape [B, T]"), "{message}");
    assert!(message.contains("the batch `B` as the only symbolic dim"), "{message}");
    Ok(())
}
