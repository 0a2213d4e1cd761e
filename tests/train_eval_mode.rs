//! Train and eval mode on one built model: dropout is a fed flag, so one graph and one compiled
//! function serve both, `model.eval()` switches functions already compiled, the `Trainer`'s
//! steps train and its `evaluate` evaluates; every compiled result against the interpreter.

use kiln::prelude::*;
use kiln::{Data, MODE_STEP_INPUT, TRAINING_INPUT, Tier};

model! {
    /// A small classifier with dropout between its layers.
    struct Net {
        hidden: Linear(4 => 16),
        drop: Dropout(0.5),
        out: Linear(16 => 3),
    }
    fn forward(&self, x: [B, 4]) -> [B, 3] {
        let h = relu(self.hidden(x));
        self.out(self.drop(h))
    }
}

fn points() -> Value {
    Value::f32([5, 4], (0..20).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect())
}

/// The interpreter's value of `output` on `points()` with the mode inputs fed explicitly.
fn reference(g: &Graph, output: Tensor<'_>, params: &ParamStore, training: bool, step: i64) -> Result<Value> {
    let feeds = Feeds::from([
        ("x", points()),
        (TRAINING_INPUT, Value::scalar(DType::Bool, f64::from(u8::from(training)))),
        (MODE_STEP_INPUT, Value::i64([], vec![step])),
    ]);
    Ok(Interpreter::new(g).run(&feeds, params, &[output])?.remove(0))
}

fn assert_close(compiled: &Value, reference: &Value) {
    assert_eq!(compiled.shape(), reference.shape());
    for (a, b) in compiled.to_f64_vec().iter().zip(reference.to_f64_vec()) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "compiled {a}, interpreter {b}");
    }
}

#[test]
fn one_compiled_function_drops_in_train_mode_and_is_the_identity_in_eval_mode() -> Result<()> {
    let g = Graph::new();
    let net = Net::new(&g)?;
    let [x] = net.inputs(&g)?;
    let logits = net.forward(x)?;
    let mut f = function(&g, &[x], &[logits], &[])?;
    let params = f.params();
    let eval = reference(&g, logits, &params, false, 0)?;

    // Training (the default): call n draws the masks of step n.
    assert_eq!(f.mode(), Mode::Train);
    let first = f.call(&[points()])?.remove(0);
    let second = f.call(&[points()])?.remove(0);
    assert_close(&first, &reference(&g, logits, &params, true, 1)?);
    assert_close(&second, &reference(&g, logits, &params, true, 2)?);
    assert_ne!(first, second, "each call draws fresh masks");
    assert_ne!(first.to_f64_vec(), eval.to_f64_vec(), "dropout changed the output while training");

    // `model.eval()` switches the function already compiled: no rebuild, no recompilation.
    net.eval();
    assert_eq!(f.mode(), Mode::Eval);
    let evaluated = f.call(&[points()])?.remove(0);
    assert_close(&evaluated, &eval);
    assert_eq!(evaluated, f.call(&[points()])?.remove(0), "eval mode draws nothing");
    assert_close(&evaluated, &net.run(&params, [points()])?);
    // One call in the other mode, whatever the graph's.
    assert_close(&f.call_in(Mode::Train, &[points()])?[0], &reference(&g, logits, &params, true, 5)?);
    net.train();
    assert_close(&f.call(&[points()])?[0], &reference(&g, logits, &params, true, 6)?);
    Ok(())
}

#[test]
fn trainer_steps_train_with_dropout_and_evaluate_runs_in_eval_mode() -> Result<()> {
    let g = Graph::new();
    let net = Net::new(&g)?;
    let [x] = net.inputs(&g)?;
    let labels = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
    let logits = net.forward(x)?;
    let loss = layers::cross_entropy(logits, labels)?;
    let objective = Objective { loss, inputs: vec![x, labels], metrics: vec![] };
    let sgd = Sgd::new();
    let mut trainer = Trainer::new(&g, &objective, &Settings::new(&sgd, 0.1))?;
    // The forward compiled from the training graph: the labels and the optimizer's inputs,
    // which it does not read, need not be listed; an input it reads must be.
    let mut predict = function(&g, &[x], &[logits], &[])?;
    match function(&g, &[], &[logits], &[]) {
        Err(Error::Argument { detail, .. }) => assert!(detail.contains("input `x`"), "{detail}"),
        other => panic!("expected an error naming input `x`, got {other:?}"),
    }
    let label_values = Value::i64([5], vec![0, 1, 2, 1, 0]);

    // The first step's loss is the interpreter's with dropout on and the masks of step 1.
    let start = trainer.params();
    let with_labels = |training: bool| {
        Feeds::from([
            ("x", points()),
            ("labels", label_values.clone()),
            (TRAINING_INPUT, Value::scalar(DType::Bool, f64::from(u8::from(training)))),
            (MODE_STEP_INPUT, Value::i64([], vec![1])),
        ])
    };
    let dropped = Interpreter::new(&g).run(&with_labels(true), &start, &[loss])?[0].item().unwrap_or(f64::NAN);
    let kept = Interpreter::new(&g).run(&with_labels(false), &start, &[loss])?[0].item().unwrap_or(f64::NAN);
    assert_ne!(dropped, kept);
    let report = trainer.step(&[points(), label_values.clone()])?;
    assert!((report.loss - dropped).abs() <= 1e-5 * (1.0 + dropped.abs()), "step {} vs {dropped}", report.loss);

    // The graph's mode is still Train, yet `evaluate` runs in eval mode, deterministically.
    assert_eq!(g.mode(), Mode::Train);
    let evaluated = trainer.evaluate(&mut predict, &[points()])?.remove(0);
    assert_close(&evaluated, &reference(&g, logits, &trainer.params(), false, 0)?);
    assert_eq!(evaluated, trainer.evaluate(&mut predict, &[points()])?.remove(0));
    // And the trainer's steps train even when the model was switched to eval.
    net.eval();
    let before = trainer.params();
    let report = trainer.step(&[points(), label_values.clone()])?;
    let mut feeds = with_labels(true);
    feeds.insert(MODE_STEP_INPUT, Value::i64([], vec![2]));
    let dropped = Interpreter::new(&g).run(&feeds, &before, &[loss])?[0].item().unwrap_or(f64::NAN);
    assert!((report.loss - dropped).abs() <= 1e-5 * (1.0 + dropped.abs()), "step {} vs {dropped}", report.loss);
    Ok(())
}

/// The mode flag is a bool input: bool inputs, uniform (a scalar) or one per element (across
/// the vector lanes and the tail), select and cast in compiled kernels as in the interpreter,
/// on both tiers.
#[test]
fn bool_inputs_select_and_cast_in_compiled_kernels_as_in_the_interpreter() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("N")])?;
    let flag = g.typed_input("flag", Shape::scalar(), DType::Bool)?;
    let mask = g.typed_input("mask", [Dim::sym("N")], DType::Bool)?;
    let outputs = [flag.select(x * 2.0, x)?, mask.select(x * 3.0, -x)?, mask.cast(DType::F32)? + x];
    let bits = [true, false, true, true, false, false, true, false, true];
    let values = [
        Value::f32([9], (0..9).map(|i| i as f32 - 4.0).collect()),
        Value::scalar(DType::Bool, 1.0),
        Value::new([9], Data::Bool(bits.to_vec())).expect("nine bits"),
    ];
    for tier in [Tier::Jit, Tier::Native] {
        let mut f = kiln::function_on(tier, &g, &[x, flag, mask], &outputs, &[], &Default::default())?;
        for on in [1.0, 0.0] {
            let mut values = values.clone();
            values[1] = Value::scalar(DType::Bool, on);
            let feeds =
                Feeds::from([("x", values[0].clone()), ("flag", values[1].clone()), ("mask", values[2].clone())]);
            let reference = Interpreter::new(&g).run_without_params(&feeds, &outputs)?;
            assert_eq!(f.call(&values)?, reference, "{tier:?}, flag {on}");
        }
    }
    Ok(())
}

/// An exported artifact is in eval mode: its only input is the model's, and its program (run
/// by the kernel evaluator) computes the interpreter's eval-mode output.
#[test]
fn an_exported_model_with_dropout_is_in_eval_mode() -> Result<()> {
    let g = Graph::new();
    let net = Net::new(&g)?;
    let params = ParamStore::init(&g, 4);
    let artifact = net.export(&params, &ExportOptions::new("net"))?;
    assert_eq!(artifact.inputs().len(), 1);
    let [x] = net.inputs(&g)?;
    let logits = net.forward(x)?;
    let evaluated =
        kiln::compiler::kernel::Evaluator::new(artifact.program(), &params)?.run(&Feeds::from([("x", points())]))?;
    assert_close(&evaluated[0], &reference(&g, logits, &params, false, 0)?);
    assert_ne!(evaluated[0].to_f64_vec(), reference(&g, logits, &params, true, 0)?.to_f64_vec());
    Ok(())
}
