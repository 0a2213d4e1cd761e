//! Every primitive op, compiled, against the reference interpreter; matmuls of every shape
//! class (register tile and tuned GEMM, transposed operands, batches); results independent of
//! the thread count; bad feeds and data-dependent errors reported, not undefined.
//!
//! Tolerances, per op class (relative to the magnitude, absolute below 1):
//! - exact ops (movement, comparisons, selects, casts, integer arithmetic, gathers): 0;
//! - float arithmetic and sums of a few terms: 1e-6;
//! - transcendentals (polynomials in IR, a few ulp) and long sums or matmuls (another order
//!   of accumulation than the interpreter's): 1e-4.

use kiln::compiler::compile::lower_to_kernels;
use kiln::compiler::kernel::Evaluator;
use kiln::compiler::random;
use kiln::prelude::*;

const EXACT: f64 = 0.0;
const ARITHMETIC: f64 = 1e-6;
const APPROXIMATE: f64 = 1e-4;

/// Standard-normal `f32` values of `shape`, reproducible from `seed`.
fn normal(shape: &[usize], seed: u64) -> Value {
    let key = random::draw_key(seed, 23);
    let n: usize = shape.iter().product();
    Value::f32(shape.to_vec(), (0..n as u64).map(|i| random::normal(key, i) as f32).collect())
}

/// Integers uniform in `0..below`, as `i64`.
fn indices(shape: &[usize], below: u32, seed: u64) -> Value {
    let key = random::draw_key(seed, 29);
    let n: usize = shape.iter().product();
    Value::i64(shape.to_vec(), (0..n as u64).map(|i| i64::from(random::bits(key, i) % below)).collect())
}

/// Compiles `outputs`, runs them on 1 and on 2 threads and in the interpreter, and checks
/// that the two compiled runs agree bit for bit and match the interpreter within `tolerance`.
/// Every kernel that can split does so on 2 threads, however small (split threshold 0).
fn check(what: &str, g: &Graph, inputs: &[Tensor], values: &[Value], outputs: &[Tensor], tolerance: f64) {
    let mut f = function(g, inputs, outputs, &[]).unwrap_or_else(|e| panic!("{what}: does not compile: {e}"));
    f.set_split_threshold(0);
    f.set_threads(1);
    let one = f.call(values).unwrap_or_else(|e| panic!("{what}: fails on 1 thread: {e}"));
    f.set_threads(2);
    let two = f.call(values).unwrap_or_else(|e| panic!("{what}: fails on 2 threads: {e}"));
    let mut feeds = Feeds::new();
    for (input, value) in inputs.iter().zip(values) {
        feeds.insert(&input.name().expect("inputs have names"), value.clone());
    }
    let reference =
        Interpreter::new(g).run(&feeds, &f.params(), outputs).unwrap_or_else(|e| panic!("{what}: interpreter: {e}"));
    for (i, ((a, b), r)) in one.iter().zip(&two).zip(&reference).enumerate() {
        assert_eq!(a.shape(), r.shape(), "{what}: output {i} shape");
        assert_eq!(a.dtype(), r.dtype(), "{what}: output {i} dtype");
        let (a, b, r) = (a.to_f64_vec(), b.to_f64_vec(), r.to_f64_vec());
        for (k, ((x, y), z)) in a.iter().zip(&b).zip(&r).enumerate() {
            assert!(x.to_bits() == y.to_bits(), "{what}: output {i} element {k}: {x} on 1 thread, {y} on 2");
            let close = (x - z).abs() <= tolerance * z.abs().max(1.0) || (x.is_nan() && z.is_nan()) || x == z;
            assert!(close, "{what}: output {i} element {k}: compiled {x}, interpreter {z}\n{}", f.listing());
        }
    }
    check_kernel_evaluator(what, g, &feeds, &f.params(), outputs, &reference, &one, tolerance);
}

/// The kernel program evaluated by the kernel IR's reference evaluator matches the
/// interpreter and the compiled run within `tolerance`: a fusion bug fails here too, a code
/// generation bug only above.
#[allow(clippy::too_many_arguments)]
fn check_kernel_evaluator(
    what: &str,
    g: &Graph,
    feeds: &Feeds,
    params: &ParamStore,
    outputs: &[Tensor],
    reference: &[Value],
    compiled: &[Value],
    tolerance: f64,
) {
    let program = lower_to_kernels(g, outputs, &[]).unwrap_or_else(|e| panic!("{what}: does not lower: {e}"));
    let mut evaluator = Evaluator::new(&program, params).unwrap_or_else(|e| panic!("{what}: evaluator: {e}"));
    let evaluated = evaluator.run(feeds).unwrap_or_else(|e| panic!("{what}: evaluator fails: {e}"));
    for (i, ((e, r), c)) in evaluated.iter().zip(reference).zip(compiled).enumerate() {
        assert_eq!((e.shape(), e.dtype()), (r.shape(), r.dtype()), "{what}: evaluated output {i}");
        for (k, ((x, z), y)) in e.to_f64_vec().iter().zip(r.to_f64_vec()).zip(c.to_f64_vec()).enumerate() {
            for (other, against) in [(z, "interpreter"), (y, "compiled")] {
                let close = (x - other).abs() <= tolerance * other.abs().max(1.0) || (x.is_nan() && other.is_nan());
                assert!(close, "{what}: output {i} element {k}: kernel evaluator {x}, {against} {other}");
            }
        }
    }
}

#[test]
fn unary_ops() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 5.into()])?;
    let positive = x.abs()? + 0.25;
    let cases: Vec<(&str, Tensor, f64)> = vec![
        ("neg", x.neg()?, EXACT),
        ("abs", x.abs()?, EXACT),
        ("exp", x.exp()?, APPROXIMATE),
        ("log", positive.log()?, APPROXIMATE),
        ("sqrt", positive.sqrt()?, ARITHMETIC),
        ("sin", (x * 4.0).sin()?, APPROXIMATE),
        ("cos", (x * 4.0).cos()?, APPROXIMATE),
        ("tanh", (x * 3.0).tanh()?, APPROXIMATE),
        ("recip", positive.recip()?, ARITHMETIC),
        ("powf 3", x.powf(3.0)?, ARITHMETIC),
        ("powf -0.5", positive.powf(-0.5)?, ARITHMETIC),
        ("powf 1.7", positive.powf(1.7)?, APPROXIMATE),
    ];
    for batch in [1, 6, 333] {
        for (name, y, tolerance) in &cases {
            check(name, &g, &[x], &[normal(&[batch, 5], 1)], &[*y], *tolerance);
        }
    }
    Ok(())
}

#[test]
fn binary_ops_with_broadcasting_and_masks() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 6.into()])?;
    let row = g.input("row", [6])?;
    let column = g.input("column", [Dim::sym("B"), 1.into()])?;
    let cases: Vec<(&str, Tensor, f64)> = vec![
        ("add", x + row, ARITHMETIC),
        ("sub", column - x, ARITHMETIC),
        ("mul", x * row * column, ARITHMETIC),
        ("div", x / (row.square()? + 1.0), ARITHMETIC),
        ("maximum", x.maximum(column)?, EXACT),
        ("minimum", row.minimum(x)?, EXACT),
        ("lt", x.lt(row)?.cast(DType::F32)?, EXACT),
        ("le", x.le(column)?.cast(DType::F32)?, EXACT),
        ("gt", x.gt(0.0)?.select(x, row)?, EXACT),
        ("ge", x.ge(row)?.select(column, 2.0)?, EXACT),
        ("eq", x.eq(x.maximum(row)?)?.cast(DType::F32)?, EXACT),
    ];
    for batch in [1, 7, 100] {
        let values = [normal(&[batch, 6], 2), normal(&[6], 3), normal(&[batch, 1], 4)];
        for (name, y, tolerance) in &cases {
            check(name, &g, &[x, row, column], &values, &[*y], *tolerance);
        }
    }
    Ok(())
}

/// Masks used as numbers (promoted to the float they meet, summed into counts), `ne`, a float
/// mask in `select` and one-hot rows of each dtype, compiled against the interpreter.
#[test]
fn masks_as_numbers_ne_and_one_hot_of_each_dtype() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 6.into()])?;
    let row = g.input("row", [6])?;
    let labels = g.input_of("labels", [Dim::sym("B")], DType::I64)?;
    let positive = x.gt(0.0)?;
    let cases: Vec<(&str, Tensor, f64)> = vec![
        ("ne", x.ne(x.maximum(row)?)?.select(x, 0.0)?, EXACT),
        ("ne of integers", labels.ne(1)?.select(labels, 7)?, EXACT),
        ("mask times x", positive * x, EXACT),
        ("x times mask", x.mul(positive)?, EXACT),
        ("one minus mask", 1.0 - positive, EXACT),
        ("mask over x", positive.div(x.abs()? + 1.0)?, ARITHMETIC),
        ("mask plus row", positive.add(row)?, ARITHMETIC),
        ("mask sum", positive.sum(&[1], false)?, EXACT),
        ("mask sum of all", positive.sum_all()?, EXACT),
        ("float mask select", (positive * 3.0).select(x, row)?, EXACT),
        ("one_hot f32", labels.one_hot_of(3, DType::F32)?, EXACT),
        ("one_hot i32", labels.one_hot_of(4, DType::I32)?, EXACT),
        ("one_hot i64", labels.one_hot_of(3, DType::I64)?.sum(&[0], false)?, EXACT),
        ("one_hot bool", labels.one_hot_of(3, DType::Bool)?.select(g.ones_of([3], DType::F32), -1.0)?, EXACT),
    ];
    for batch in [1, 7, 100] {
        let values = [normal(&[batch, 6], 12), normal(&[6], 13), indices(&[batch], 3, 14)];
        for (name, y, tolerance) in &cases {
            check(name, &g, &[x, row, labels], &values, &[*y], *tolerance);
        }
    }
    Ok(())
}

/// An `f64` graph compiles (arithmetic, masks, selects, casts, reductions, one-hots) and gives
/// the interpreter's bits, its constants included: `1e-5` and `0.1` are the doubles written,
/// not `f32` roundings of them.
#[test]
fn f64_graphs_compile_with_exact_constants() -> Result<()> {
    let g = Graph::new();
    let x = g.input_of("x", [Dim::sym("B"), 3.into()], DType::F64)?;
    let labels = g.input_of("labels", [Dim::sym("B")], DType::I64)?;
    let eps = g.scalar_of(1e-5, DType::F64);
    let cases: Vec<(&str, Tensor, f64)> = vec![
        ("plus 1e-5", x + 1e-5, EXACT),
        ("times 0.1", x * 0.1, EXACT),
        ("plus eps", eps + x, EXACT),
        // The native tier's C compiler may fuse a product and a sum into one FMA.
        ("times 0.1 plus 1e-5", x * 0.1 + 1e-5, ARITHMETIC),
        ("division and sqrt", x / (x.square()? + eps).sqrt()?, ARITHMETIC),
        ("recip, abs, neg, maximum", (x.abs()? + 0.5).recip()?.neg()?.maximum(x)?, EXACT),
        ("mask times x", x.gt(0.1)? * x - x.ne(x)?, EXACT),
        ("float mask select", (x * 0.1).select(x, eps)?, EXACT),
        ("sum", (x * 0.1).sum(&[1], false)?, ARITHMETIC),
        ("max", (x + 1e-5).max(&[0], false)?, EXACT),
        ("casts", x.cast(DType::F32)?.cast(DType::F64)? + (x * 10.0).cast(DType::I64)?.cast(DType::F64)?, EXACT),
        ("one_hot f64", labels.one_hot_of(3, DType::F64)? * 0.1, EXACT),
        ("mask count", x.gt(0.0)?.sum_all()?, EXACT),
        ("column sums", (x * 0.1).sum(&[0], false)?, ARITHMETIC),
        ("a constant row", x * g.constant(Value::f64([3], vec![0.1, 1e-5, -3.0])), EXACT),
        ("gather", (x * 0.1).gather(labels)?, EXACT),
    ];
    for batch in [3, 7, 100] {
        let values = [normal(&[batch, 3], 15).cast(DType::F64), indices(&[batch], 3, 16)];
        for (name, y, tolerance) in &cases {
            check(name, &g, &[x, labels], &values, &[*y], *tolerance);
        }
    }
    let mut f = function(&g, &[x, labels], &[cases[0].1, cases[1].1], &[])?;
    let out = f.call(&[Value::f64([1, 3], vec![0.0, 1.0, -2.0]), Value::i64([1], vec![0])])?;
    assert_eq!((out[0].dtype(), out[0].to_f64_vec()), (DType::F64, vec![1e-5, 1.0 + 1e-5, -2.0 + 1e-5]));
    assert_eq!(out[1].to_f64_vec(), vec![0.0, 0.1, -0.2]);
    Ok(())
}

#[test]
fn f64_ops_without_code_are_refused_by_name() -> Result<()> {
    let g = Graph::new();
    let x = g.input_of("x", [3], DType::F64)?;
    for (name, y) in
        [("exp", x.exp()?), ("pow", x.powf(1.5)?), ("matmul", x.reshape([1, 3])?.matmul(x.reshape([3, 1])?)?)]
    {
        let error = function(&g, &[x], &[y], &[]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains(&format!("compute `{name}` in f32 only")), "{name}: {error}");
    }
    Ok(())
}

#[test]
fn movement_ops() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 6.into()])?;
    let grid = x.reshape([Dim::sym("B"), 2.into(), 3.into()])?;
    let cases: Vec<(&str, Tensor)> = vec![
        ("reshape", grid * 1.5),
        ("permute", grid.permute(&[2, 0, 1])? + 0.0),
        ("transpose", x.t()?.exp()?),
        (
            "broadcast_to",
            x.reshape([Dim::sym("B"), 1.into(), 6.into()])?.broadcast_to([Dim::sym("B"), 4.into(), 6.into()])?,
        ),
        ("slice", x.slice(1, 2, 5)?.neg()?),
        ("concat", Tensor::concat(&[x.slice(1, 4, 6)?, x, x.slice(1, 0, 1)?], 1)? * 2.0),
        ("concat of rows", Tensor::concat(&[x.t()?, x.t()?.neg()?], 0)?),
    ];
    for batch in [1, 5, 64] {
        for (name, y) in &cases {
            let tolerance = if *name == "transpose" { APPROXIMATE } else { EXACT };
            check(name, &g, &[x], &[normal(&[batch, 6], 5)], &[*y], tolerance);
        }
    }
    Ok(())
}

/// Strided slices over several axes (grouped ranges, and ranges whose last element is joined
/// on alone), numpy's `transpose(perm)`, `t()`, the minimum over axes and the plain layer norm,
/// compiled against the interpreter.
#[test]
fn strided_slices_transposes_minimums_and_plain_layer_norm() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 7.into(), 5.into()])?;
    let rows = x.transpose(&[1, 2, 0])?.slice_nd(&[(1, 7, 2), (0, 5, 3)])?;
    let cases: Vec<(&str, Tensor, f64)> = vec![
        ("slice_nd, steps that fit the axis", x.transpose(&[1, 2, 0])?.slice_nd(&[(0, 6, 3), (1, 5, 2)])?, EXACT),
        ("slice_nd, a last element joined on", x.transpose(&[1, 2, 0])?.slice_nd(&[(2, 7, 2), (0, 5, 4)])?, EXACT),
        ("slice_nd of a computed tensor", rows.exp()? * 2.0, APPROXIMATE),
        ("slice_nd past a whole batch axis", x.slice_nd(&[Tensor::WHOLE_AXIS, (1, 6, 2), (4, 5, 1)])?, EXACT),
        ("transpose(perm) then t()", x.transpose(&[2, 0, 1])?.t()? + 1.0, EXACT),
        ("min over axes", x.min(&[0, 2], true)?, EXACT),
        ("layer_norm without scale and shift", layers::layer_norm(x, 1e-5)?, APPROXIMATE),
    ];
    for batch in [1, 3] {
        for (name, y, tolerance) in &cases {
            check(name, &g, &[x], &[normal(&[batch, 7, 5], 11)], &[*y], *tolerance);
        }
    }
    Ok(())
}

#[test]
fn casts_and_integer_arithmetic() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 4.into()])?;
    let labels = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
    let scaled = x * 10.0;
    let cases: Vec<(&str, Tensor)> = vec![
        ("f32 to i32 and back", scaled.cast(DType::I32)?.cast(DType::F32)?),
        ("f32 to i64", scaled.cast(DType::I64)?),
        ("i64 to f32", labels.cast(DType::F32)? * 0.5),
        ("i64 arithmetic", (labels * 3.0 + 1.0 - labels) / 2.0),
        ("i64 max", labels.maximum(2.0)?),
        ("i32 from i64", labels.cast(DType::I32)? * 7.0),
        ("mask to f32", x.gt(0.0)?.cast(DType::F32)?),
    ];
    for batch in [1, 9, 50] {
        let values = [normal(&[batch, 4], 6), indices(&[batch], 5, 7)];
        for (name, y) in &cases {
            check(name, &g, &[x, labels], &values, &[*y], EXACT);
        }
    }
    Ok(())
}

#[test]
fn reductions_small_and_large_over_every_axis() -> Result<()> {
    let g = Graph::new();
    let small = g.input("small", [Dim::sym("B"), 3.into(), 2.into()])?;
    let large = g.input("large", [Dim::sym("B"), 37.into()])?;
    let mut cases: Vec<(String, Tensor, f64)> = Vec::new();
    for keepdims in [false, true] {
        for axes in [vec![0], vec![1], vec![2], vec![1, 2], vec![0, 2], vec![0, 1, 2]] {
            cases.push((format!("sum {axes:?} keepdims={keepdims}"), small.sum(&axes, keepdims)?, APPROXIMATE));
            cases.push((format!("max {axes:?} keepdims={keepdims}"), small.max(&axes, keepdims)?, EXACT));
        }
        for axes in [vec![0], vec![1], vec![0, 1]] {
            cases.push((
                format!("sum of [B, 37] {axes:?} keepdims={keepdims}"),
                large.sum(&axes, keepdims)?,
                APPROXIMATE,
            ));
            cases.push((format!("max of [B, 37] {axes:?} keepdims={keepdims}"), large.max(&axes, keepdims)?, EXACT));
        }
    }
    cases.push(("softmax".into(), layers::softmax(large, 1)?, APPROXIMATE));
    cases.push(("log_softmax of 2 classes".into(), layers::log_softmax(small, 2)?, APPROXIMATE));
    for batch in [1, 4, 300] {
        let values = [normal(&[batch, 3, 2], 8), normal(&[batch, 37], 9)];
        for (name, y, tolerance) in &cases {
            check(name, &g, &[small, large], &values, &[*y], *tolerance);
        }
    }
    Ok(())
}

/// Softmax, log-softmax and cross-entropy with their gradients over class counts on both sides
/// of the unrolled reductions (at most 8 classes) and batches that end inside a block: their
/// row kernels run as one kernel, block by block (`kernel::group_rows`). Also a row kernel
/// reading the last row of a group's result in every row, which must not join the group.
#[test]
fn row_wise_reductions_feed_their_consumers_in_one_kernel_over_any_number_of_classes() -> Result<()> {
    for (classes, batches) in [(3usize, [1usize, 5]), (10, [128, 300]), (37, [56, 130]), (1000, [1, 7]), (5000, [3, 4])]
    {
        let g = Graph::new();
        let x = g.input("x", [Dim::sym("B"), classes.into()])?;
        let labels = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
        let loss = layers::cross_entropy(x, labels)?;
        let probabilities = layers::softmax(x, 1)?;
        let log_probabilities = layers::log_softmax(x, 1)?;
        let wanted = [loss, g.grad(loss, &[x])?[0], probabilities, log_probabilities];
        let f = function(&g, &[x, labels], &wanted, &[])?;
        assert!(f.listing().contains(" rows [i0 < B] in blocks of"), "{classes} classes:\n{}", f.listing());
        for batch in batches {
            let values = [normal(&[batch, classes], 31), indices(&[batch], classes as u32, 32)];
            check(&format!("{classes} classes, batch {batch}"), &g, &[x, labels], &values, &wanted, APPROXIMATE);
        }
    }
    let g = Graph::new();
    let x = g.input("x", [130, 40])?;
    let shifted = x.sub(x.max(&[1], true)?)?;
    let y = x.mul(shifted.slice(0, 129, 130)?)?;
    check(
        "the last row of a group, read by every row",
        &g,
        &[x],
        &[normal(&[130, 40], 33)],
        &[y, shifted],
        APPROXIMATE,
    );
    Ok(())
}

/// A param updated by a member of a row group is written in place only if no other member
/// reads it (the group runs block by block: a later block would see the new value); either
/// way the update matches the interpreter.
#[test]
fn a_param_updated_in_a_row_group_is_written_in_place_only_if_no_other_member_reads_it() -> Result<()> {
    for read_by_the_group in [false, true] {
        let g = Graph::new();
        let x = g.input("x", [300, 10])?;
        let p = g.param("p", [300, 10], Init::Normal { mean: 0.0, std: 1.0 })?;
        // With `read_by_the_group`, the rows' maximum (a member of its own) reads `p`.
        let top = if read_by_the_group { x.add(p)?.max(&[1], true)? } else { x.max(&[1], true)? };
        let exp = x.sub(top)?.exp()?;
        let new_p = p.sub(exp.div(exp.sum(&[1], true)?)?.mul(0.5)?)?;
        let mut f = function(&g, &[x], &[new_p.sum(&[0, 1], false)?], &[(p, new_p)])?;
        let listing = f.listing();
        assert!(listing.contains(" rows [i0 < 300]"), "{listing}");
        assert_eq!(listing.contains("update: "), read_by_the_group, "{listing}");
        let values = [normal(&[300, 10], 36)];
        let mut feeds = Feeds::new();
        feeds.insert("x", values[0].clone());
        let expected = Interpreter::new(&g).run(&feeds, &f.params(), &[new_p])?[0].to_f64_vec();
        f.call(&values)?;
        let updated = f.params().get("p").map(Value::to_f64_vec).unwrap_or_default();
        for (k, (a, b)) in updated.iter().zip(&expected).enumerate() {
            assert!((a - b).abs() <= APPROXIMATE * b.abs().max(1.0), "element {k}: {a} against {b}");
        }
    }
    Ok(())
}

/// The first bad label in row order is the one reported, wherever the blocks of a row group
/// end, on 1 and 2 threads.
#[test]
fn a_bad_label_in_a_row_group_is_reported_at_its_position() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 37.into()])?;
    let labels = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
    let loss = layers::cross_entropy(x, labels)?;
    let mut f = function(&g, &[x, labels], &[loss], &[])?;
    let mut bad = indices(&[200], 37, 35).to_f64_vec().into_iter().map(|v| v as i64).collect::<Vec<_>>();
    (bad[150], bad[199]) = (37, -1);
    let values = [normal(&[200, 37], 34), Value::i64([200], bad)];
    for threads in [1, 2] {
        f.set_threads(threads);
        f.set_split_threshold(0);
        let error = f.call(&values).expect_err("a label of 37 for 37 classes").to_string();
        assert!(error.contains("index 37 at position 150 of `labels`"), "{threads} threads: {error}");
    }
    Ok(())
}

/// Kernels read inputs where the caller holds them; an input the call returns, or copies into
/// a param, is copied in instead. Each call sees its own feed, through reshapes too.
#[test]
fn inputs_read_in_place_and_inputs_returned_or_kept_as_params_see_each_call_s_values() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [2, 3])?;
    let ids = g.typed_input("ids", [Dim::sym("B")], DType::I64)?;
    let p = g.param("p", [2, 3], Init::Normal { mean: 0.0, std: 1.0 })?;
    let doubled = x.mul(2.0)?;
    let flat = x.reshape([6])?.add(1.0)?;
    let counted = ids.cast(DType::F32)?.sum(&[0], false)?;
    let mut f = function(&g, &[x, ids], &[x, doubled, flat, counted], &[(p, x)])?;
    for seed in [41, 42, 43] {
        let values = [normal(&[2, 3], seed), indices(&[5], 9, seed)];
        let out = f.call(&values)?;
        let fed = values[0].to_f64_vec();
        assert_eq!(out[0].to_f64_vec(), fed, "x returned");
        assert_eq!(out[1].to_f64_vec(), fed.iter().map(|v| v * 2.0).collect::<Vec<_>>(), "2x");
        let plus_one: Vec<f64> = fed.iter().map(|&v| f64::from(v as f32 + 1.0)).collect();
        assert_eq!(out[2].to_f64_vec(), plus_one, "x reshaped, plus 1");
        assert_eq!(out[3].item(), Some(values[1].to_f64_vec().iter().sum()), "ids summed");
        assert_eq!(f.params().get("p").map(Value::to_f64_vec), Some(fed), "p <- x");
    }
    Ok(())
}

#[test]
fn gather_scatter_and_one_hot() -> Result<()> {
    let g = Graph::new();
    let table = g.input("table", [10, 4])?;
    let ids = g.typed_input("ids", [Dim::sym("B"), 3.into()], DType::I64)?;
    let updates = g.input("updates", [Dim::sym("B"), 3.into(), 4.into()])?;
    let cases: Vec<(&str, Tensor, f64)> = vec![
        ("gather", table.gather(ids)? * 2.0, EXACT),
        ("scatter_add", g.zeros([10, 4]).scatter_add(ids, updates)?, APPROXIMATE),
        (
            "scatter_add of computed rows into the table",
            table.scatter_add(ids, (updates * 2.0).tanh()? + table.sum(&[0], false)?)?,
            APPROXIMATE,
        ),
        ("one_hot", ids.one_hot(10)?, EXACT),
        ("embedding sum", table.gather(ids)?.sum(&[1], false)?, APPROXIMATE),
    ];
    for batch in [1, 6, 200] {
        let values = [normal(&[10, 4], 10), indices(&[batch, 3], 10, 11), normal(&[batch, 3, 4], 12)];
        for (name, y, tolerance) in &cases {
            check(name, &g, &[table, ids, updates], &values, &[*y], *tolerance);
        }
    }
    Ok(())
}

#[test]
fn random_draws_are_the_interpreters() -> Result<()> {
    let g = Graph::new();
    let step = g.typed_input("step", Shape::scalar(), DType::I64)?;
    // Odd sizes so that vector loops have tails.
    let uniform = g.random_uniform([37, 3], 4, step)?;
    let normal_draws = g.random_normal([1001], 5, step)?;
    let transposed = g.random_normal([5, 7], 6, step)?.t()?;
    for s in [0, 1, 7, 1 << 40] {
        let values = [Value::i64([], vec![s])];
        check("random_uniform", &g, &[step], &values, &[uniform], EXACT);
        check("random_normal", &g, &[step], &values, &[normal_draws, transposed], APPROXIMATE);
    }
    Ok(())
}

#[test]
fn gradients_through_every_op_class() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 6.into()])?;
    let ids = g.typed_input("ids", [Dim::sym("B")], DType::I64)?;
    let table = g.param("table", [5, 6], Init::Normal { mean: 0.0, std: 1.0 })?;
    let layer = layers::Linear::new(&g, "layer", 6, 3)?;
    let h = (x + table.gather(ids)?).tanh()?;
    let h = Tensor::concat(&[h.slice(1, 3, 6)?, h.slice(1, 0, 3)?], 1)?;
    let logits = layer.forward(layers::relu(h)?)?;
    let loss =
        layers::cross_entropy(logits, ids.cast(DType::I32)?.minimum(2.0)?)? + layers::mean_all(h.max(&[1], false)?)?;
    let grads = g.grad(loss, &[x, table, layer.weight, layer.bias])?;
    let mut wanted = vec![loss];
    wanted.extend(&grads);
    for batch in [1, 3, 400] {
        let values = [normal(&[batch, 6], 13), indices(&[batch], 5, 14)];
        check("gradients", &g, &[x, ids], &values, &wanted, APPROXIMATE);
    }
    Ok(())
}

mod matmuls {
    //! Products of every shape class: the register tile below the GEMM threshold, the tuned
    //! GEMM above it, blocks that end inside a batch, transposed operands read in place.

    use super::*;
    use proptest::prelude::*;

    fn sizes() -> impl Strategy<Value = usize> {
        prop_oneof![1usize..6, 6usize..40, Just(129), Just(300)]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

        #[test]
        fn matmuls_of_every_shape_match(
            m in sizes(), k in sizes(), n in sizes(),
            batch in prop_oneof![Just(0usize), Just(1), Just(3)],
            transpose_a in any::<bool>(), transpose_b in any::<bool>(),
            seed in 0u64..1000,
        ) {
            let g = Graph::new();
            // Batch 0 means unbatched operands; otherwise `a` is batched and `b` shared.
            let a_shape: Vec<usize> = if transpose_a { vec![k, m] } else { vec![m, k] };
            let a_shape: Vec<usize> = if batch > 0 { [vec![batch], a_shape].concat() } else { a_shape };
            let b_shape: Vec<usize> = if transpose_b { vec![n, k] } else { vec![k, n] };
            let a = g.input("a", a_shape.clone()).expect("a");
            let b = g.input("b", b_shape.clone()).expect("b");
            let a_matrix = if transpose_a { a.t().expect("transposes") } else { a };
            let b_matrix = if transpose_b { b.t().expect("transposes") } else { b };
            let product = a_matrix.matmul(b_matrix).expect("multiplies");
            let values = [normal(&a_shape, seed), normal(&b_shape, seed + 1)];
            check(&format!("matmul {a_shape:?} {b_shape:?} (ta={transpose_a}, tb={transpose_b})"), &g, &[a, b], &values, &[product], APPROXIMATE);
        }
    }

    #[test]
    fn batched_products_with_blocks_spanning_batches() -> Result<()> {
        let g = Graph::new();
        let a = g.input("a", [Dim::sym("B"), 100.into(), 64.into()])?;
        let b = g.input("b", [Dim::sym("B"), 64.into(), 200.into()])?;
        let product = a.matmul(b)?;
        for batch in [1, 3] {
            let values = [normal(&[batch, 100, 64], 20), normal(&[batch, 64, 200], 21)];
            check("batched matmul", &g, &[a, b], &values, &[product], APPROXIMATE);
        }
        Ok(())
    }

    /// Up to 3 columns of a single-batch product run 4 rows per vector; a batch of several runs
    /// the scalar tile. Both sum each element in order of `k`, so equal rows give equal bits.
    #[test]
    fn narrow_products_in_lanes_match_the_scalar_tile_bit_for_bit() -> Result<()> {
        for n in 1..4 {
            let g = Graph::new();
            let single = g.input("single", [Dim::sym("M"), 20.into()])?;
            let batched = g.input("batched", [3.into(), Dim::sym("M"), 20.into()])?;
            let w = g.input("w", [20, n])?;
            let mut f = function(&g, &[single, batched, w], &[single.matmul(w)?, batched.matmul(w)?], &[])?;
            // 11 rows: two tiles of 4 in lanes, then 3 rows one at a time.
            let rows = normal(&[11, 20], 30 + n as u64);
            let stacked: Vec<f32> = rows.to_f64_vec().repeat(3).into_iter().map(|v| v as f32).collect();
            let out = f.call(&[rows, Value::f32([3, 11, 20], stacked), normal(&[20, n], 40)])?;
            let (one, three) = (out[0].to_f64_vec(), out[1].to_f64_vec());
            for batch in 0..3 {
                let part = &three[batch * 11 * n..(batch + 1) * 11 * n];
                let same = one.iter().zip(part).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "n = {n}, batch {batch}: {one:?} vs {part:?}");
            }
        }
        Ok(())
    }

    #[test]
    fn an_empty_contraction_gives_zeros() -> Result<()> {
        let g = Graph::new();
        let a = g.input("a", [Dim::sym("B"), 0.into()])?;
        let b = g.input("b", [0, 300])?;
        let product = a.matmul(b)?;
        check("k = 0", &g, &[a, b], &[Value::f32([400, 0], vec![]), Value::f32([0, 300], vec![])], &[product], EXACT);
        Ok(())
    }
}

#[test]
fn bad_feeds_are_errors_naming_the_input() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 3.into()])?;
    let ids = g.typed_input("ids", [Dim::sym("B")], DType::I64)?;
    let table = g.param("table", [4, 3], Init::ONES)?;
    let y = (x + table.gather(ids)?).sum_all()?;
    let mut f = function(&g, &[x, ids], &[y], &[])?;
    let ok_ids = Value::i64([2], vec![0, 3]);
    let cases = [
        (vec![Value::f32([2, 4], vec![0.0; 8]), ok_ids.clone()], "input `x`"),
        (vec![Value::i64([2, 3], vec![0; 6]), ok_ids.clone()], "dtype"),
        (vec![Value::f32([2, 3], vec![0.0; 6]), Value::i64([3], vec![0; 3])], "B = 2"),
        (vec![Value::f32([2, 3], vec![0.0; 6])], "expected 2 inputs"),
    ];
    for (values, expected) in cases {
        let error = f.call(&values).expect_err("a bad feed is an error");
        assert!(error.to_string().contains(expected), "`{error}` does not mention {expected}");
    }
    // An index outside the table is reported by the kernel, not read out of bounds.
    let error = f.call(&[Value::f32([2, 3], vec![0.0; 6]), Value::i64([2], vec![0, 4])]).expect_err("out of range");
    assert!(error.to_string().contains("index 4 at position 1 of `ids` is out of range for 4 rows"), "{error}");
    // And the function still works afterwards.
    assert_eq!(f.call(&[Value::f32([2, 3], vec![1.0; 6]), ok_ids])?[0].item(), Some(12.0));
    Ok(())
}

#[test]
fn integer_division_by_zero_is_reported() -> Result<()> {
    let g = Graph::new();
    let a = g.typed_input("a", [4], DType::I64)?;
    let b = g.typed_input("b", [4], DType::I64)?;
    let mut f = function(&g, &[a, b], &[a / b], &[])?;
    let error = f.call(&[Value::i64([4], vec![1, 2, 3, 4]), Value::i64([4], vec![1, 1, 0, 1])]).expect_err("div by 0");
    assert!(error.to_string().contains("division by zero"), "{error}");
    Ok(())
}

/// An empty batch runs every kind of kernel over nothing and gives empty results.
#[test]
fn an_empty_batch_gives_empty_results() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 3.into()])?;
    let ids = g.typed_input("ids", [Dim::sym("B")], DType::I64)?;
    let table = g.param("table", [5, 3], Init::ONES)?;
    let layer = layers::Linear::new(&g, "layer", 3, 4)?;
    let h = layers::relu(layer.forward(x + table.gather(ids)?)?)?;
    let total = h.sum(&[0], false)?;
    let scattered = g.zeros([5, 3]).scatter_add(ids, x * 2.0)?;
    let mut f = function(&g, &[x, ids], &[h, total, scattered], &[])?;
    let out = f.call(&[Value::f32([0, 3], vec![]), Value::i64([0], vec![])])?;
    assert_eq!(out[0].shape(), &[0, 4]);
    assert_eq!(out[1].to_f64_vec(), vec![0.0; 4]);
    assert_eq!(out[2].to_f64_vec(), vec![0.0; 15]);
    Ok(())
}
