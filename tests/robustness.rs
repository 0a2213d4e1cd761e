//! Regression tests of bad input found by adversarial use: each case ends in a clear error
//! (naming the op, the input and the caller's line), never a crash or a silently wrong number,
//! in the compiled function and in the interpreter alike.

use kiln::prelude::*;

/// Runs `outputs` through the interpreter on `feeds` (with the graph's initial params).
fn interpret<'g>(g: &'g Graph, feeds: Feeds, outputs: &[Tensor<'g>]) -> Result<Vec<Value>> {
    Interpreter::new(g).run(&feeds, &ParamStore::init(g, 0), outputs)
}

#[test]
fn a_static_empty_table_is_an_error_when_built() -> Result<()> {
    let g = Graph::new();
    let error = layers::Embedding::new(&g, "e", 0, 1_000_000).expect_err("an embedding needs rows");
    assert!(error.to_string().contains("`e` would have no rows"), "{error}");
    let table = g.param("table", [0, 3], Init::ZEROS)?;
    let ids = g.typed_input("ids", [2], DType::I64)?;
    let error = table.gather(ids).expect_err("no row to pick");
    assert!(error.to_string().contains("shape mismatch in `gather`"), "{error}");
    assert!(error.to_string().contains("robustness.rs"), "names the caller: {error}");
    Ok(())
}

#[test]
fn a_fed_table_with_no_rows_is_a_reported_error_not_a_load() -> Result<()> {
    for width in [3, 4_000_000] {
        let g = Graph::new();
        let table = g.input("table", [Dim::sym("N"), width.into()])?;
        let ids = g.typed_input("ids", [2], DType::I64)?;
        let picked = table.gather(ids)?.sum_all()?;
        let mut f = function(&g, &[table, ids], &[picked], &[])?;
        let values = [Value::f32([0, width], vec![]), Value::i64([2], vec![0, 1])];
        let error = f.call(&values).expect_err("an empty table has no row 0");
        let message = error.to_string();
        assert!(message.contains("index 0 at position 0 of `ids` is out of range for 0 rows of `table`"), "{message}");
        let feeds = Feeds::from([("table", values[0].clone()), ("ids", values[1].clone())]);
        let error = interpret(&g, feeds, &[picked]).expect_err("the interpreter agrees");
        assert!(error.to_string().contains("index 0 at position 0 of `ids` is out of range for 0 rows"), "{error}");
        // The function still runs on a table with rows.
        let rows = Value::f32([2, width], vec![1.0; 2 * width]);
        assert_eq!(f.call(&[rows, Value::i64([2], vec![1, 1])])?[0].item(), Some(2.0 * width as f64));
    }
    Ok(())
}

#[test]
fn a_static_shape_whose_count_overflows_is_a_shape_error() -> Result<()> {
    let g = Graph::new();
    let error = g.param("w", [1 << 32, 1 << 32], Init::ZEROS).expect_err("2^64 elements");
    assert!(error.to_string().contains("shape mismatch in `param`"), "{error}");
    let a = g.input("a", [1 << 32, 1])?;
    let b = g.input("b", [1, 1 << 32])?;
    let error = a.add(b).expect_err("the broadcast holds 2^64 elements");
    assert!(error.to_string().contains("shape mismatch in `add`"), "{error}");
    let error = a.reshape([1 << 16, 1 << 16, 1 << 16, 1 << 16]).expect_err("the target overflows");
    assert!(error.to_string().contains("reshape"), "{error}");
    Ok(())
}

#[test]
fn symbols_whose_product_overflows_are_a_shape_error_at_the_call() -> Result<()> {
    let g = Graph::new();
    let symbols = ["P", "Q", "R", "S"];
    let mut inputs = Vec::new();
    let mut total = None;
    for (axis, symbol) in symbols.iter().enumerate() {
        let input = g.input(&symbol.to_lowercase(), [Dim::sym(symbol)])?;
        let mut dims = vec![Dim::Static(1); 4];
        dims[axis] = Dim::sym(symbol);
        let spread = input.reshape(dims)?;
        total = Some(match total {
            None => spread,
            Some(sum) => sum + spread,
        });
        inputs.push(input);
    }
    let sum = total.expect("four inputs").sum_all()?;
    let mut f = function(&g, &inputs, &[sum], &[])?;
    let values: Vec<Value> = (0..4).map(|_| Value::f32([65536], vec![1.0; 65536])).collect();
    let error = f.call(&values).expect_err("[65536; 4] holds 2^64 elements");
    let message = error.to_string();
    assert!(message.contains("shape mismatch in `add`") && message.contains("P = 65536"), "{message}");
    // The interpreter computes every intermediate (`[P, Q, 1, 1]` alone is 2^32 elements), so
    // its case is a fill of the whole shape, refused before anything is allocated.
    let whole = g.fill(symbols.map(Dim::sym), DType::F32, 1.0).sum_all()?;
    let feeds = Feeds::from([
        ("p", values[0].clone()),
        ("q", values[1].clone()),
        ("r", values[2].clone()),
        ("s", values[3].clone()),
    ]);
    let error = interpret(&g, feeds, &[whole]).expect_err("the interpreter agrees");
    assert!(error.to_string().contains("(`fill`)") && error.to_string().contains("more than"), "{error}");
    let mut filled = function(&g, &inputs, &[whole], &[])?;
    let error = filled.call(&values).expect_err("so does the compiled fill");
    assert!(error.to_string().contains("shape mismatch in `fill`"), "{error}");
    // Small sizes still run.
    let small: Vec<Value> = (0..4).map(|_| Value::f32([2], vec![1.0; 2])).collect();
    assert_eq!(f.call(&small)?[0].item(), Some(64.0));
    Ok(())
}

#[test]
fn a_value_whose_shape_overflows_is_refused() {
    assert!(Value::new(vec![1 << 32, 1 << 32], kiln::Data::F32(vec![])).is_none());
}

/// Cross-entropy over `classes` classes of a batch whose label at `position` is `label`, compiled:
/// the label check runs in whichever loop one-hot fused into (rows in lanes for 2 classes).
fn cross_entropy_error(classes: usize, batch: usize, position: usize, label: i64) -> Result<(String, String)> {
    let g = Graph::new();
    let logits = g.input("logits", [Dim::sym("B"), classes.into()])?;
    let labels = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
    let loss = layers::cross_entropy(logits, labels)?;
    let grad = g.grad(loss, &[logits])?[0];
    let mut f = function(&g, &[logits, labels], &[loss, grad], &[])?;
    let mut values = vec![0i64; batch];
    values[position] = label;
    let inputs = [Value::f32([batch, classes], vec![0.5; batch * classes]), Value::i64([batch], values)];
    let compiled = f.call(&inputs).expect_err("a label outside the classes").to_string();
    let feeds = Feeds::from([("logits", inputs[0].clone()), ("labels", inputs[1].clone())]);
    let interpreted = interpret(&g, feeds, &[loss, grad]).expect_err("the interpreter agrees").to_string();
    Ok((compiled, interpreted))
}

#[test]
fn compiled_one_hot_and_cross_entropy_range_check_their_labels() -> Result<()> {
    for (classes, batch) in [(2, 3), (2, 37), (5, 1000), (12, 9)] {
        for label in [classes as i64 + 5, -1, i64::MAX, classes as i64] {
            let position = batch - 1 - batch / 3;
            let (compiled, interpreted) = cross_entropy_error(classes, batch, position, label)?;
            let expected =
                format!("index {label} at position {position} of `labels` is out of range for {classes} classes");
            assert!(compiled.contains(&expected) && compiled.contains("`one_hot`"), "{compiled}");
            assert!(compiled.contains("robustness.rs"), "names the caller's line: {compiled}");
            assert!(interpreted.contains(&expected), "{interpreted}");
        }
    }
    Ok(())
}

#[test]
fn a_one_hot_of_a_computed_label_reports_its_position() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 3.into()])?;
    let labels = x.slice(1, 0, 1)?.reshape([Dim::sym("B")])?.cast(DType::I64)?.named("labels");
    let onehot = labels.one_hot(3)?.mul(x)?;
    let mut f = function(&g, &[x], &[onehot], &[])?;
    let mut data = vec![1.0f32; 30];
    data[15] = 5.0;
    let error = f.call(&[Value::f32([10, 3], data)]).expect_err("label 5 of 3 classes").to_string();
    assert!(error.contains("index 5 at position 5 of `labels` is out of range for 3 classes"), "{error}");
    Ok(())
}

#[test]
fn function_refuses_an_input_of_another_graph_or_listed_twice() -> Result<()> {
    let g = Graph::new();
    let other = Graph::new();
    let x = g.input("x", [2])?;
    let _padding = other.input("padding", [1])?;
    let stranger = other.input("stranger", [2])?;
    let error = function(&g, &[stranger], &[x.sum_all()?], &[]).expect_err("a foreign input");
    assert!(error.to_string().contains("input `stranger` belongs to another graph"), "{error}");
    let error = function(&g, &[x, x], &[x.sum_all()?], &[]).expect_err("an input twice");
    assert!(error.to_string().contains("input `x` is listed twice"), "{error}");
    Ok(())
}

#[test]
fn run_time_errors_name_the_callers_line() -> Result<()> {
    let g = Graph::new();
    let table = g.param("table", [4, 2], Init::ONES)?;
    let ids = g.typed_input("ids", [Dim::sym("B")], DType::I64)?;
    let mut f = function(&g, &[ids], &[table.gather(ids)?], &[])?;
    let line = line!() + 1;
    let error = f.call(&[Value::i64([3], vec![0, 9, 1])]).expect_err("row 9 of 4");
    let message = error.to_string();
    assert!(message.contains(&format!("robustness.rs:{line}")), "{message}");
    assert!(message.contains("index 9 at position 1 of `ids` is out of range for 4 rows of `table`"), "{message}");
    Ok(())
}

#[test]
fn a_maximum_over_an_empty_symbolic_axis_is_an_error_like_a_static_one() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 3.into()])?;
    let other = Graph::new();
    let fixed = other.input("fixed", [0, 3])?;
    assert!(fixed.max(&[0], false).is_err(), "a static empty axis is refused when built");
    let peak = x.max(&[0], false)?;
    let mut f = function(&g, &[x], &[peak], &[])?;
    let error = f.call(&[Value::f32([0, 3], vec![])]).expect_err("B = 0").to_string();
    assert!(error.contains("`reduce_max`") && error.contains("axis 0 of [B, 3] is empty"), "{error}");
    let feeds = Feeds::from([("x", Value::f32([0, 3], vec![]))]);
    let error = interpret(&g, feeds, &[peak]).expect_err("the interpreter agrees").to_string();
    assert!(error.contains("is empty; its maximum is undefined"), "{error}");
    assert_eq!(f.call(&[Value::f32([1, 3], vec![1.0, 5.0, 2.0])])?[0].to_f64_vec(), vec![1.0, 5.0, 2.0]);
    Ok(())
}

#[test]
fn layer_errors_name_the_layer_the_user_called() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 4.into()])?;
    let norm = layers::LayerNorm::new(&g, "norm", 3)?;
    let error = norm.forward(x).expect_err("width 4 is not 3").to_string();
    assert!(error.contains("shape mismatch in `layer_norm`") && error.contains("robustness.rs"), "{error}");
    let error = layers::softmax(x, 2).expect_err("no axis 2").to_string();
    assert!(error.contains("in `softmax`"), "{error}");
    let float_labels = g.input("labels", [Dim::sym("B")])?;
    let error = layers::cross_entropy(x, float_labels).expect_err("labels must be integers").to_string();
    assert!(error.contains("dtype mismatch in `cross_entropy`"), "{error}");
    Ok(())
}

#[test]
fn a_trainer_refuses_a_learning_rate_that_is_not_a_finite_number() -> Result<()> {
    let g = Graph::new();
    let w = g.param("w", [2], Init::ONES)?;
    let loss = w.square()?.sum_all()?;
    let objective = Objective { loss, inputs: vec![], metrics: vec![] };
    let sgd = Sgd::momentum(0.0);
    for lr in [f64::NAN, f64::INFINITY, -0.1] {
        let Err(error) = Trainer::new(&g, &objective, &Settings::new(&sgd, lr)) else {
            panic!("the learning rate {lr} was accepted")
        };
        assert!(error.to_string().contains("learning rate"), "{error}");
    }
    assert!(Trainer::new(&g, &objective, &Settings::new(&sgd, 0.1)).is_ok());
    Ok(())
}

/// Found by the random construction test (case 375): the identity of an `i32` maximum was
/// `i64::MIN` truncated to 32 bits, which is 0, so the maximum of `[-1]` came out as 0.
#[test]
fn an_i32_maximum_of_negative_numbers_is_negative() -> Result<()> {
    let g = Graph::new();
    let ids = g.typed_input("ids", [Dim::sym("B")], DType::I32)?;
    let mut f = function(&g, &[ids], &[ids.max(&[0], false)?], &[])?;
    assert_eq!(f.call(&[Value::i32([3], vec![-7, -1, -3])])?[0].to_f64_vec(), vec![-1.0]);
    Ok(())
}

/// Found by the random construction test (case 956): an integer that does not change along the
/// vector loop stays a scalar there, and its store took lanes out of it (a Cranelift panic
/// when compiling `max(s, s)` of an `i64` sum) or, along rows, wrote one element of every four.
#[test]
fn integers_uniform_along_the_vector_loop_are_stored_in_every_lane() -> Result<()> {
    let g = Graph::new();
    let ids = g.typed_input("ids", [Dim::sym("B")], DType::I64)?;
    let total = ids.sum(&[0], false)?;
    let larger = total.maximum(total)?;
    let rows = ids.reshape([Dim::sym("B"), 1.into()])?.broadcast_to([Dim::sym("B"), 8.into()])?;
    let filled = g.fill([Dim::sym("B"), 8.into()], DType::I64, 3.0).add(total)?;
    let mut f = function(&g, &[ids], &[larger, rows, filled], &[])?;
    let out = f.call(&[Value::i64([2], vec![4, -1])])?;
    assert_eq!(out[0].to_f64_vec(), vec![3.0]);
    assert_eq!(out[1].to_f64_vec(), [vec![4.0; 8], vec![-1.0; 8]].concat());
    assert_eq!(out[2].to_f64_vec(), vec![6.0; 16]);
    Ok(())
}

/// Found by the random construction test (case 4595): a float that is the same along the
/// vector loop (a splat) cast to an integer asked Cranelift to convert a whole vector to one
/// `i64`, a compile error reported as a bug in kiln; a splat cast to a mask used the float's
/// bits as the mask.
#[test]
fn casts_of_values_uniform_along_the_vector_loop_compile_and_agree() -> Result<()> {
    let g = Graph::new();
    let y = g.input("y", [1])?;
    let x = g.input("x", [Dim::sym("B"), 8.into()])?;
    let as_int = y.broadcast_to([Dim::sym("B"), 8.into()])?.cast(DType::I64)?;
    let mask = y.cast(DType::Bool)?.select(x, x * 10.0)?;
    let mut f = function(&g, &[y, x], &[as_int, mask], &[])?;
    for scale in [0.0f32, 2.5] {
        let out = f.call(&[Value::f32([1], vec![scale]), Value::f32([2, 8], vec![1.0; 16])])?;
        assert_eq!(out[0].to_f64_vec(), vec![f64::from(scale).trunc(); 16]);
        assert_eq!(out[1].to_f64_vec(), vec![if scale == 0.0 { 10.0 } else { 1.0 }; 16]);
    }
    Ok(())
}

/// Found by the random construction test (case 583 with scatter-adds): the scatter kernel adds
/// `f32` rows, and an `i64` scatter-add was compiled as if its rows were `f32` (wrong sums).
/// It is refused at compilation now, and the interpreter runs it.
#[test]
fn an_integer_scatter_add_is_refused_by_the_compiler_not_miscomputed() -> Result<()> {
    let g = Graph::new();
    let ids = g.typed_input("ids", [Dim::sym("B")], DType::I64)?;
    let sums = g.fill([3], DType::I64, 0.0).scatter_add(ids, ids)?;
    let error = function(&g, &[ids], &[sums], &[]).expect_err("an i64 scatter-add").to_string();
    assert!(error.contains("`scatter_add`") && error.contains("f32 rows only, not i64"), "{error}");
    let out = interpret(&g, Feeds::from([("ids", Value::i64([2], vec![2, 2]))]), &[sums])?;
    assert_eq!(out[0].to_f64_vec(), vec![0.0, 0.0, 4.0]);
    Ok(())
}

/// A value that does not fit its input, fed to a compiled function, is an error naming the
/// input and the caller's line (the interpreter, which has no call site, names the input only).
#[test]
fn a_bad_feed_to_a_call_names_the_input_and_the_callers_line() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    let mut f = function(&g, &[x], &[x * 2.0], &[])?;
    let line = line!() + 1;
    let error = f.call(&[Value::f32([3, 3], vec![0.0; 9])]).expect_err("a [3, 3] value for [B, 2] is refused");
    let expected = format!("bad value for input `x` in the call at {}:{line}: expected shape [B, 2]", file!());
    assert!(error.to_string().starts_with(&expected), "`{error}` does not start with `{expected}`");
    Ok(())
}

/// A step that fails inside `Trainer::fit` (a label out of range) names the line that called
/// `fit`, not a line of kiln.
#[test]
fn an_error_inside_fit_names_the_line_that_called_fit() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    let labels = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
    let loss = layers::cross_entropy(layers::Linear::new(&g, "out", 2, 2)?.forward(x)?, labels)?;
    let objective = Objective { loss, inputs: vec![x, labels], metrics: vec![] };
    let sgd = Sgd::new();
    let mut trainer = Trainer::new(&g, &objective, &Settings::new(&sgd, 0.1))?;
    let feeds = |_| vec![Value::f32([2, 2], vec![0.5; 4]), Value::i64([2], vec![0, 7])];
    let line = line!() + 1;
    let error = trainer.fit(3, feeds, |_, _| {}).expect_err("label 7 for 2 classes is refused");
    let at = format!("{}:{line}", file!());
    assert!(error.to_string().contains(&at), "`{error}` does not name {at}");
    Ok(())
}

#[test]
fn a_scatter_add_into_a_fed_table_with_no_rows_is_a_reported_error() -> Result<()> {
    let g = Graph::new();
    let table = g.input("table", [Dim::sym("N"), 3.into()])?;
    let ids = g.typed_input("ids", [2], DType::I64)?;
    let updates = g.input("updates", [2, 3])?;
    let added = table.scatter_add(ids, updates)?;
    let mut f = function(&g, &[table, ids, updates], &[added], &[])?;
    let values = [Value::f32([0, 3], vec![]), Value::i64([2], vec![0, 1]), Value::f32([2, 3], vec![1.0; 6])];
    let error = f.call(&values).expect_err("an empty table has no row 0");
    let message = error.to_string();
    assert!(message.contains("index 0 at position 0 of `ids` is out of range for 0 rows"), "{message}");
    let feeds = Feeds::from([("table", values[0].clone()), ("ids", values[1].clone()), ("updates", values[2].clone())]);
    let error = interpret(&g, feeds, &[added]).expect_err("the interpreter agrees");
    assert!(error.to_string().contains("index 0 at position 0 of `ids` is out of range for 0 rows"), "{error}");
    // The function still runs on a table with rows.
    let rows = Value::f32([2, 3], vec![1.0; 6]);
    let out = f.call(&[rows, Value::i64([2], vec![1, 1]), Value::f32([2, 3], vec![1.0; 6])])?;
    assert_eq!(out[0].to_f64_vec(), [1.0, 1.0, 1.0, 3.0, 3.0, 3.0]);
    Ok(())
}

#[test]
fn a_scatter_add_into_a_static_table_with_no_rows_is_an_error_when_built() -> Result<()> {
    let g = Graph::new();
    let ids = g.typed_input("ids", [2], DType::I64)?;
    let updates = g.input("updates", [2, 3])?;
    let error = g.zeros([0, 3]).scatter_add(ids, updates).expect_err("no row to add into");
    assert!(error.to_string().contains("shape mismatch in `scatter_add`"), "{error}");
    assert!(error.to_string().contains("has no rows"), "{error}");
    assert!(error.to_string().contains("robustness.rs"), "names the caller: {error}");
    Ok(())
}
