//! Sparse embeddings: row gradients against the dense gradient, the sparse rules' trajectories
//! against PyTorch's (`fixtures/sparse_optimizers.json`, made by
//! `fixtures/sparse_optimizers.py`), untouched rows and state kept bit for bit, and the errors.

use kiln_compiler::prelude::*;
use kiln_compiler::{RowGradient, SparseParam};
use kiln_runtime::optim::sparse::RowUpdates;
use kiln_runtime::optim::{Adagrad, Adam, Optimizer, Sgd, SparseAdam, SparseUpdates, WeightDecayGroups};
use kiln_runtime::{Objective, Settings, Trainer, function};
use serde_json::Value as Json;

fn matrix(json: &Json) -> (Vec<usize>, Vec<f64>) {
    match json {
        Json::Array(rows) if rows.first().is_some_and(Json::is_array) => {
            let parts: Vec<(Vec<usize>, Vec<f64>)> = rows.iter().map(matrix).collect();
            let mut shape = vec![rows.len()];
            shape.extend(&parts[0].0);
            (shape, parts.into_iter().flat_map(|(_, v)| v).collect())
        }
        Json::Array(values) => (vec![values.len()], values.iter().map(|v| v.as_f64().expect("a number")).collect()),
        other => panic!("not a matrix: {other}"),
    }
}

fn f32_value(json: &Json) -> Value {
    let (shape, data) = matrix(json);
    Value::f32(shape, data.into_iter().map(|x| x as f32).collect())
}

fn i64_value(json: &Json) -> Value {
    let (shape, data) = matrix(json);
    Value::i64(shape, data.into_iter().map(|x| x as i64).collect())
}

/// The fixture's model: `lookup` of ids `[4, 3]` in the sparse table `table.weight` [6, 3],
/// then `mean((features @ H - y)^2)`.
fn fixture_model<'g>(g: &'g Graph, fixture: &Json, lookup: &str) -> Result<(Tensor<'g>, Tensor<'g>, Tensor<'g>)> {
    let ids = g.typed_input("ids", [4, 3], DType::I64)?;
    let y = g.input("y", [4, 2])?;
    let features = match lookup {
        "embedding_mean" => {
            layers::mean(layers::Embedding::new(g, "table", 6, 3)?.sparse()?.forward(ids)?, &[1], false)?
        }
        bag => {
            let mode = if bag.starts_with("bag_mean") { layers::BagMode::Mean } else { layers::BagMode::Sum };
            layers::EmbeddingBag::new(g, "table", 6, 3, mode, Some(0), true)?.forward(ids)?
        }
    };
    let head = g.constant(f32_value(&fixture["h"]));
    Ok((layers::mse(features.matmul(head)?, y)?, ids, y))
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|x| x.to_bits()).collect()
}

/// Every case of the fixture through the `Trainer`: the table after every step within 2e-6 of
/// PyTorch's, the state at the end too; the rows a step does not touch keep their bits, and
/// the rows never touched (4 and 5) keep their initial bits and zero state.
#[test]
fn sparse_rules_follow_pytorch_and_leave_untouched_rows_bit_for_bit() -> Result<()> {
    let fixture: Json = serde_json::from_str(include_str!("fixtures/sparse_optimizers.json")).expect("valid JSON");
    let batches: Vec<Value> = fixture["batches"].as_array().expect("batches").iter().map(i64_value).collect();
    let initial = f32_value(&fixture["e0"]);
    for (case, expected) in fixture["cases"].as_object().expect("cases") {
        let g = Graph::new();
        let (loss, ids, y) = fixture_model(&g, &fixture, expected["lookup"].as_str().expect("lookup"))?;
        let rule: Box<dyn Optimizer> = match expected["optimizer"].as_str().expect("optimizer") {
            "sgd" => Box::new(Sgd::new()),
            "adagrad" => Box::new(Adagrad::default()),
            _ => Box::new(SparseAdam::new()),
        };
        let objective = Objective { loss, inputs: vec![ids, y], metrics: vec![] };
        let adam = Adam::new();
        let lr = expected["lr"].as_f64().expect("lr");
        let settings = Settings { diagnose: |_| false, sparse: Some(rule.as_ref()), ..Settings::new(&adam, lr) };
        let mut trainer = Trainer::new(&g, &objective, &settings)?;
        let mut store = ParamStore::new();
        store.set("table.weight", initial.clone());
        trainer.set_params(&store)?;
        let mut previous = initial.to_f32_vec();
        for (step, table) in expected["tables"].as_array().expect("tables").iter().enumerate() {
            let batch = &batches[step % batches.len()];
            trainer.step(&[batch.clone(), f32_value(&fixture["y"])])?;
            let got = trainer.params().get("table.weight").expect("the table").to_f32_vec();
            let (_, want) = matrix(table);
            for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!((*a as f64 - b).abs() <= 2e-6, "{case} step {step}: table[{k}] is {a}, PyTorch {b}");
            }
            let mut touched: Vec<i64> = (0..batch.numel()).map(|i| batch.data().get_i64(i)).collect();
            if expected["lookup"] != "embedding_mean" {
                touched.retain(|&id| id != 0);
            }
            for row in (0..6).filter(|row| !touched.contains(&(*row as i64))) {
                let (now, before) = (&got[row * 3..row * 3 + 3], &previous[row * 3..row * 3 + 3]);
                assert_eq!(bits(now), bits(before), "{case} step {step}: row {row} was not looked up but moved");
            }
            previous = got;
        }
        let params = trainer.params();
        let never = &initial.to_f32_vec()[12..];
        assert_eq!(bits(&previous[12..]), bits(never), "{case}: rows 4 and 5 were never looked up");
        for (name, state) in expected["state"].as_object().expect("state") {
            let got = params.get(name).unwrap_or_else(|| panic!("{case}: no state `{name}`")).to_f32_vec();
            let (_, want) = matrix(state);
            for (k, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!((*a as f64 - b).abs() <= 2e-6 * b.abs().max(1.0), "{case}: {name}[{k}] is {a}, PyTorch {b}");
            }
            assert!(got[12..].iter().all(|&x| x.to_bits() == 0), "{case}: {name} of rows 4 and 5 moved from zero");
        }
    }
    Ok(())
}

/// A sparse table read by two gathers (one with repeated ids): the compiled row gradients,
/// summed by id, equal the rows of the dense gradient (the interpreter's scatter-add, in f64)
/// and central differences of the loss; every row they do not name has a zero gradient.
#[test]
fn row_gradients_equal_the_dense_gradient_rows() -> Result<()> {
    let g = Graph::new();
    let ids = g.typed_input("ids", [5, 2], DType::I64)?;
    let extra = g.typed_input("extra", [3], DType::I32)?;
    let table = layers::Embedding::new(&g, "emb", 9, 4)?.sparse()?;
    let w = g.param("w", [4], Init::Uniform { low: -1.0, high: 1.0 })?;
    let pooled = table.forward(ids)?.tanh()?.sum(&[1], false)?;
    let loss = pooled.mul(w)?.sum_all()?.add(table.forward(extra)?.square()?.sum_all()?)?;
    let (dense_grads, rows) = g.grad_rows(loss, &[w], &[table.weight])?;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].parts.len(), 2, "one part per gather");
    let dense = g.grad(loss, &[table.weight])?[0];
    let mut outputs = vec![dense_grads[0]];
    outputs.extend(RowGradient::outputs(&rows[0]));
    let mut step = function(&g, &[ids, extra], &outputs, &[])?;
    let id_values = Value::i64([5, 2], vec![3, 3, 0, 7, 3, 1, 7, 7, 1, 0]);
    let extra_values = Value::i32([3], vec![7, 2, 2]);
    let out = step.call(&[id_values.clone(), extra_values.clone()])?;
    let parts = [(&out[1], &out[2]), (&out[3], &out[4])];
    let updates = RowUpdates::coalesce("emb.weight", &parts, 9, 4, None)?;
    assert_eq!(updates.ids, vec![0, 1, 2, 3, 7]);
    let feeds = Feeds::new().with("ids", id_values).with("extra", extra_values);
    let want = Interpreter::new(&g).precision(Precision::F64).run(&feeds, &step.params(), &[dense])?[0].to_f64_vec();
    for row in 0..9 {
        let got = updates.ids.iter().position(|&id| id == row).map(|k| updates.row(k).to_vec());
        for j in 0..4 {
            let (a, b) = (got.as_ref().map_or(0.0, |r| r[j] as f64), want[row * 4 + j]);
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "row {row}[{j}]: rows {a}, dense {b}");
        }
        if got.is_none() {
            assert!(want[row * 4..row * 4 + 4].iter().all(|&x| x == 0.0), "row {row} is not named but has a gradient");
        }
    }
    // And both against central differences of the loss in f64, element by element.
    let interpreter = Interpreter::new(&g).precision(Precision::F64);
    let params = step.params();
    let table_values = params.get("emb.weight").expect("the table").to_f64_vec();
    for element in 0..table_values.len() {
        let loss_at = |offset: f64| -> Result<f64> {
            let mut moved = table_values.clone();
            moved[element] += offset;
            let mut store = params.clone();
            store.set("emb.weight", Value::f64([9, 4], moved));
            Ok(interpreter.run(&feeds, &store, &[loss])?[0].item().expect("a scalar"))
        };
        let numeric = (loss_at(1e-6)? - loss_at(-1e-6)?) / 2e-6;
        let (row, j) = (element / 4, element % 4);
        let analytic = updates.ids.iter().position(|&id| id == row).map_or(0.0, |k| updates.row(k)[j] as f64);
        assert!(
            (analytic - numeric).abs() <= 1e-4 * numeric.abs().max(1.0),
            "[{row}, {j}]: rows {analytic}, numeric {numeric}"
        );
    }
    // The step holds no scatter-add: the table's gradient is never built.
    let (sparse_only, _) = {
        let (grads, rows) = g.grad_rows(loss, &[w], &[table.weight])?;
        let mut outputs = grads;
        outputs.extend(rows[0].outputs());
        (function(&g, &[ids, extra], &outputs, &[])?, ())
    };
    assert!(!sparse_only.listing().contains("scatter_add"), "{}", sparse_only.listing());
    Ok(())
}

/// Duplicates are summed by position whatever order the ids come in; padding and bad ids.
#[test]
fn coalescing_sums_duplicates_in_a_fixed_order_drops_padding_and_refuses_bad_ids() -> Result<()> {
    let ids = Value::i64([4], vec![2, 0, 2, 1]);
    let rows = Value::f32([4, 2], vec![1.0, 2.0, 10.0, 20.0, 0.5, 0.25, 3.0, 4.0]);
    let updates = RowUpdates::coalesce("t", &[(&ids, &rows)], 3, 2, Some(1))?;
    assert_eq!(updates, RowUpdates { dim: 2, ids: vec![0, 2], rows: vec![10.0, 20.0, 1.5, 2.25] });
    let bad = Value::i64([4], vec![2, 0, 3, 1]);
    let error = RowUpdates::coalesce("emb.weight", &[(&bad, &rows)], 3, 2, None).unwrap_err().to_string();
    assert!(error.contains("id 3") && error.contains("emb.weight"), "{error}");
    Ok(())
}

fn sparse_problem(g: &Graph) -> Result<(Tensor<'_>, Tensor<'_>)> {
    let ids = g.typed_input("ids", [2], DType::I64)?;
    let table = layers::Embedding::new(g, "words", 5, 2)?.sparse()?;
    let w = g.param("head.weight", [2, 2], Init::ONES)?;
    Ok((table.forward(ids)?.matmul(w)?.sum_all()?, ids))
}

fn trainer_error(optimizer: &dyn Optimizer, sparse: Option<&dyn Optimizer>) -> String {
    let g = Graph::new();
    let (loss, ids) = sparse_problem(&g).expect("the problem builds");
    let objective = Objective { loss, inputs: vec![ids], metrics: vec![] };
    let settings = Settings { sparse, ..Settings::new(optimizer, 0.1) };
    match Trainer::new(&g, &objective, &settings) {
        Ok(_) => "no error".to_string(),
        Err(error) => error.to_string(),
    }
}

#[test]
fn weight_decay_on_a_sparse_param_is_refused_pointing_to_the_skip_list() {
    let sgd = Sgd { weight_decay: 0.01, ..Sgd::new() };
    let error = trainer_error(&Adam::new(), Some(&sgd));
    assert!(error.contains("`words.weight`") && error.contains("skip list"), "{error}");
    let adagrad = Adagrad { weight_decay: 0.1, ..Adagrad::default() };
    let error = trainer_error(&adagrad, None);
    assert!(error.contains("`words.weight`") && error.contains("skip list"), "{error}");
    // With the table in the skip list, the groups give it the rule without decay.
    let groups =
        WeightDecayGroups::new(Adagrad { weight_decay: 0.1, ..Adagrad::default() }, Adagrad::default(), &["words"]);
    assert_eq!(trainer_error(&groups, None), "no error");
}

#[test]
fn rules_without_a_sparse_form_are_refused_naming_the_param() {
    let error = trainer_error(&Sgd::momentum(0.9), None);
    assert!(error.contains("`words.weight`") && error.contains("momentum"), "{error}");
    let error = trainer_error(&Adam::new(), None);
    assert!(error.contains("`words.weight`") && error.contains("SparseAdam"), "{error}");
    let error = trainer_error(&SparseAdam::new(), None);
    assert!(error.contains("`head.weight`") && error.contains("dense"), "{error}");
}

#[test]
fn a_sparse_param_read_by_anything_but_a_gather_is_refused() -> Result<()> {
    let g = Graph::new();
    let ids = g.typed_input("ids", [2], DType::I64)?;
    let table = layers::Embedding::new(&g, "words", 5, 2)?.sparse()?;
    let loss = table.forward(ids)?.sum_all()?.add(table.weight.square()?.sum_all()?)?;
    let error = g.grad_rows(loss, &[], &[table.weight]).unwrap_err().to_string();
    assert!(error.contains("`words.weight` is sparse") && error.contains("(`mul`) reads it"), "{error}");
    let dense = g.param("dense", [5, 2], Init::ONES)?;
    let error = g.grad_rows(loss, &[], &[dense]).unwrap_err().to_string();
    assert!(error.contains("`dense` is not sparse"), "{error}");
    let error = g.set_sparse("dense", SparseParam { padding: Some(5) }).unwrap_err().to_string();
    assert!(error.contains("padding id 5"), "{error}");
    Ok(())
}

/// The sparse rules' state is part of the trainer's params: a checkpoint taken mid-way and
/// loaded into a fresh trainer continues with the same bits; a state table of the wrong size
/// is refused.
#[test]
fn sparse_state_goes_through_checkpoints() -> Result<()> {
    let run = |steps: std::ops::Range<u64>, load: Option<&std::path::Path>, save: Option<&std::path::Path>| {
        let g = Graph::new();
        let (loss, ids) = sparse_problem(&g)?;
        let objective = Objective { loss, inputs: vec![ids], metrics: vec![] };
        let (adam, sparse_adam) = (Adam::new(), SparseAdam::new());
        let settings = Settings { diagnose: |_| false, sparse: Some(&sparse_adam), ..Settings::new(&adam, 0.1) };
        let mut trainer = Trainer::new(&g, &objective, &settings)?;
        if let Some(path) = load {
            trainer.load(path)?;
        }
        for step in steps {
            trainer.step(&[Value::i64([2], vec![step as i64 % 5, (step as i64 * 3 + 1) % 5])])?;
        }
        if let Some(path) = save {
            trainer.save(path, serde_json::json!({}))?;
        }
        Ok::<_, Error>(trainer.params())
    };
    // A state table of the wrong size is refused, and nothing changes.
    let g = Graph::new();
    let (loss, ids) = sparse_problem(&g)?;
    let objective = Objective { loss, inputs: vec![ids], metrics: vec![] };
    let (adam, sparse_adam) = (Adam::new(), SparseAdam::new());
    let settings = Settings { diagnose: |_| false, sparse: Some(&sparse_adam), ..Settings::new(&adam, 0.1) };
    let mut trainer = Trainer::new(&g, &objective, &settings)?;
    let before = trainer.params();
    let mut bad = ParamStore::new();
    bad.set("words.weight", Value::full([5, 2], DType::F32, 7.0));
    bad.set("optimizer.sparse_adam.m.words.weight", Value::full([4, 2], DType::F32, 1.0));
    let error = trainer.set_params(&bad).unwrap_err().to_string();
    assert!(error.contains("optimizer.sparse_adam.m.words.weight"), "{error}");
    assert_eq!(trainer.params(), before, "a refused set_params changed something");

    let dir = std::env::temp_dir().join(format!("kiln-sparse-checkpoint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join("step3");
    let straight = run(0..6, None, None)?;
    run(0..3, None, Some(&path))?;
    let resumed = run(3..6, Some(&path), None)?;
    std::fs::remove_dir_all(&dir).expect("removed");
    assert!(straight.get("optimizer.sparse_adam.m.words.weight").is_some());
    for (name, value) in straight.iter() {
        let other = resumed.get(name).unwrap_or_else(|| panic!("`{name}` after resuming"));
        assert_eq!(bits(&value.to_f32_vec()), bits(&other.to_f32_vec()), "`{name}` differs after resuming");
    }
    Ok(())
}

/// SparseUpdates used directly (the function API): the interpreter's store and the compiled
/// function's params take the same step.
#[test]
fn sparse_updates_apply_the_same_step_to_a_function_and_a_store() -> Result<()> {
    let g = Graph::new();
    let (loss, ids) = sparse_problem(&g)?;
    let table = g.leaf("words.weight")?;
    let (_, rows) = g.grad_rows(loss, &[], &[table])?;
    let mut compiled = SparseUpdates::new(&g, &rows, &SparseAdam::new())?;
    let mut interpreted = SparseUpdates::new(&g, &rows, &SparseAdam::new())?;
    let mut outputs = vec![loss];
    outputs.extend(compiled.outputs(&rows));
    let mut step = function(&g, &[ids], &outputs, &[])?;
    let mut store = step.params();
    for s in 0..3 {
        let batch = Value::i64([2], vec![s % 5, 4 - s % 5]);
        let out = step.call(std::slice::from_ref(&batch))?;
        compiled.apply_to_function(&mut step, &out[1..], 0.01, s as u64 + 1)?;
        let reference = Interpreter::new(&g).run(&Feeds::new().with("ids", batch), &store, &outputs)?;
        interpreted.apply_to_store(&mut store, &reference[1..], 0.01, s as u64 + 1)?;
    }
    let (a, b) = (step.params().get("words.weight").cloned(), store.get("words.weight").cloned());
    let (a, b) = (a.expect("compiled").to_f32_vec(), b.expect("interpreted").to_f32_vec());
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-6), "{a:?} vs {b:?}");
    assert_eq!(compiled.state().get("optimizer.sparse_adam.v.words.weight").map(|v| v.numel()), Some(10));
    Ok(())
}

/// An embedding bag with padding, compiled, gives the interpreter's loss and row gradients.
/// (Its mask is reshaped to `[..., length, 1]`: a kernel merge once read that alias across
/// iterations of the loop that wrote it.)
#[test]
fn embedding_bag_with_padding_compiles_to_the_interpreters_values() -> Result<()> {
    let fixture: Json = serde_json::from_str(include_str!("fixtures/sparse_optimizers.json")).expect("valid JSON");
    for lookup in ["bag_sum_padding0", "bag_mean_padding0"] {
        let g = Graph::new();
        let (loss, ids, y) = fixture_model(&g, &fixture, lookup)?;
        let (_, rows) = g.grad_rows(loss, &[], &[g.leaf("table.weight")?])?;
        let mut outputs = vec![loss];
        outputs.extend(rows[0].outputs());
        let mut store = ParamStore::new();
        store.set("table.weight", f32_value(&fixture["e0"]));
        let (batch, targets) = (i64_value(&fixture["batches"][0]), f32_value(&fixture["y"]));
        let feeds = Feeds::new().with("ids", batch.clone()).with("y", targets.clone());
        let want = Interpreter::new(&g).run(&feeds, &store, &outputs)?;
        let mut step = function(&g, &[ids, y], &outputs, &[])?;
        step.set_params(&store)?;
        let got = step.call(&[batch, targets])?;
        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
            for (x, w) in a.to_f64_vec().iter().zip(b.to_f64_vec()) {
                assert!(
                    (x - w).abs() <= 1e-5 * w.abs().max(1.0),
                    "{lookup}: output {k}: compiled {x}, interpreter {w}"
                );
            }
        }
    }
    Ok(())
}
