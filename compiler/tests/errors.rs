//! Every kind of error, with its full message. Build errors must name the caller's
//! `file:line`, which each test computes with `line!()` on the line of the failing call.
//! Every failure must come back as an `Err`, never as a panic.

use kiln_compiler::prelude::*;

/// `file:line` of this test file.
fn at(line: u32) -> String {
    format!("{}:{line}", file!())
}

#[track_caller]
fn run(g: &Graph, feeds: &Feeds, params: &ParamStore, outputs: &[Tensor]) -> Error {
    Interpreter::new(g).run(feeds, params, outputs).expect_err("the run must fail")
}

// ---- shapes ----------------------------------------------------------------------------

#[test]
fn shape_mismatch_in_broadcast_binary_method() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 3])?;
    let b = g.input("b", [4])?;
    let (err, line) = (a.add(b).unwrap_err(), line!());
    let expected = format!("shape mismatch in `add` at {}: cannot broadcast [2, 3] with [4]", at(line));
    assert_eq!(err.to_string(), expected);
    assert!(matches!(err, Error::Shape { op: "add", .. }), "{err:?}");
    Ok(())
}

#[test]
fn shape_mismatch_in_broadcast_with_symbolic_dims() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [Dim::sym("B"), 3.into()])?;
    let b = g.input("b", [Dim::sym("C"), 3.into()])?;
    let (err, line) = (a.mul(b).unwrap_err(), line!());
    let expected = format!("shape mismatch in `mul` at {}: cannot broadcast [B, 3] with [C, 3]", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn shape_mismatch_in_matmul() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 3])?;
    let b = g.input("b", [4, 5])?;
    let (err, line) = (a.matmul(b).unwrap_err(), line!());
    let expected = format!("shape mismatch in `matmul` at {}: cannot multiply [2, 3] by [4, 5]", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn shape_mismatch_in_matmul_of_a_vector() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [3])?;
    let b = g.input("b", [3, 5])?;
    let (err, line) = (a.matmul(b).unwrap_err(), line!());
    let expected = format!("shape mismatch in `matmul` at {}: cannot multiply [3] by [3, 5]", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn shape_mismatch_in_matmul_batch_dims() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 2, 3])?;
    let b = g.input("b", [3, 3, 4])?;
    let (err, line) = (a.matmul(b).unwrap_err(), line!());
    let expected = format!("shape mismatch in `matmul` at {}: cannot multiply [2, 2, 3] by [3, 3, 4]", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn shape_mismatch_in_concat() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 3])?;
    let b = g.input("b", [2, 4])?;
    let (err, line) = (Tensor::concat(&[a, b], 0).unwrap_err(), line!());
    let expected = format!("shape mismatch in `concat` at {}: cannot join [2, 3] and [2, 4] along axis 0", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn shape_mismatch_in_concat_of_different_ranks() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 3])?;
    let b = g.input("b", [3])?;
    let (err, line) = (Tensor::concat(&[a, b], 1).unwrap_err(), line!());
    let expected = format!("shape mismatch in `concat` at {}: cannot join [2, 3] and [3] along axis 1", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn concat_of_nothing_is_an_argument_error() {
    let (err, line) = (Tensor::concat(&[], 0).unwrap_err(), line!());
    let expected = format!("invalid argument to `concat` at {}: needs at least one tensor", at(line));
    assert_eq!(err.to_string(), expected);
}

#[test]
fn shape_mismatch_in_select() -> Result<()> {
    let g = Graph::new();
    let mask = g.input("x", [2])?.gt(0.0)?;
    let a = g.input("a", [3])?;
    let (err, line) = (mask.select(a, 0.0).unwrap_err(), line!());
    let expected = format!("shape mismatch in `select` at {}: cannot broadcast mask [2] with [3] and []", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn shape_mismatch_in_broadcast_to() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [3])?;
    let (err, line) = (a.broadcast_to([2, 4]).unwrap_err(), line!());
    let expected = format!("shape mismatch in `broadcast_to` at {}: cannot broadcast [3] to [2, 4]", at(line));
    assert_eq!(err.to_string(), expected);
    // Broadcasting never drops dims, even of size 1.
    let b = g.input("b", [1, 3])?;
    let (err, line) = (b.broadcast_to([3]).unwrap_err(), line!());
    let expected = format!("shape mismatch in `broadcast_to` at {}: cannot broadcast [1, 3] to [3]", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn symbolic_param_shape_is_a_shape_error() {
    let g = Graph::new();
    let (err, line) = (g.param("w", [Dim::sym("B")], Init::ZEROS).unwrap_err(), line!());
    let expected = format!("shape mismatch in `param` at {}: param `w` has shape [B]; params must be static", at(line));
    assert_eq!(err.to_string(), expected);
}

// ---- dtypes ----------------------------------------------------------------------------

#[test]
fn dtype_mismatch_f32_plus_i64() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [3])?;
    let b = g.typed_input("b", [3], DType::I64)?;
    let (err, line) = (a.add(b).unwrap_err(), line!());
    let expected = format!("dtype mismatch in `add` at {}: operands have dtypes f32 and i64; cast one first", at(line));
    assert_eq!(err.to_string(), expected);
    assert!(matches!(err, Error::DType { op: "add", .. }), "{err:?}");
    Ok(())
}

#[test]
fn dtype_mismatch_exp_of_an_integer() -> Result<()> {
    let g = Graph::new();
    let a = g.typed_input("a", [3], DType::I64)?;
    let (err, line) = (a.exp().unwrap_err(), line!());
    let expected = format!("dtype mismatch in `exp` at {}: `exp` needs a float operand, got i64", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn dtype_mismatch_matmul_of_integers() -> Result<()> {
    let g = Graph::new();
    let a = g.typed_input("a", [2, 3], DType::I32)?;
    let b = g.typed_input("b", [3, 2], DType::I32)?;
    let (err, line) = (a.matmul(b).unwrap_err(), line!());
    let expected =
        format!("dtype mismatch in `matmul` at {}: operands must share a float dtype, got i32 and i32", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn dtype_mismatch_arithmetic_on_masks() -> Result<()> {
    let g = Graph::new();
    let mask = g.input("a", [3])?.gt(0.0)?;
    let (err, line) = (mask.add(mask).unwrap_err(), line!());
    let detail = "two masks (bool) only support `eq` and `ne`; cast one to a number first";
    let expected = format!("dtype mismatch in `add` at {}: {detail}", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

/// Masks promote to floats only: counting into an integer tensor stays an explicit cast.
#[test]
fn dtype_mismatch_mask_plus_integers() -> Result<()> {
    let g = Graph::new();
    let mask = g.input("a", [3])?.gt(0.0)?;
    let counts = g.input_of("counts", [3], DType::I64)?;
    let (err, line) = (mask.add(counts).unwrap_err(), line!());
    let expected =
        format!("dtype mismatch in `add` at {}: operands have dtypes bool and i64; cast one first", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn dtype_mismatch_maximum_of_a_mask() -> Result<()> {
    let g = Graph::new();
    let mask = g.input("a", [3])?.gt(0.0)?;
    let (err, line) = (mask.max(&[0], false).unwrap_err(), line!());
    let detail = "cannot take the maximum of a mask; cast it to a number first";
    assert_eq!(err.to_string(), format!("dtype mismatch in `reduce_max` at {}: {detail}", at(line)));
    Ok(())
}

#[test]
fn dtype_mismatch_select_branches() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [3])?;
    let b = g.input_of("b", [3], DType::F64)?;
    let (err, line) = (a.select(a, b).unwrap_err(), line!());
    let expected = format!("dtype mismatch in `select` at {}: the branches have dtypes f32 and f64", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

// ---- axes ------------------------------------------------------------------------------

#[test]
fn axis_out_of_range_in_sum() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 3])?;
    let (err, line) = (a.sum(&[0, 2], false).unwrap_err(), line!());
    let expected = format!("axis out of range in `sum` at {}: axis 2 does not exist in [2, 3] (rank 2)", at(line));
    assert_eq!(err.to_string(), expected);
    assert!(matches!(err, Error::Axis { op: "sum", .. }), "{err:?}");
    Ok(())
}

#[test]
fn axis_out_of_range_in_max() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 3])?;
    let (err, line) = (a.max(&[5], true).unwrap_err(), line!());
    let expected =
        format!("axis out of range in `reduce_max` at {}: axis 5 does not exist in [2, 3] (rank 2)", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn permute_with_a_non_permutation() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 3])?;
    let (err, line) = (a.permute(&[0, 0]).unwrap_err(), line!());
    let expected =
        format!("axis out of range in `permute` at {}: [0, 0] is not a permutation of the dims of [2, 3]", at(line));
    assert_eq!(err.to_string(), expected);
    let (err, line) = (a.permute(&[1, 2]).unwrap_err(), line!());
    let expected =
        format!("axis out of range in `permute` at {}: [1, 2] is not a permutation of the dims of [2, 3]", at(line));
    assert_eq!(err.to_string(), expected);
    let (err, line) = (a.permute(&[1, 0, 2]).unwrap_err(), line!());
    let expected =
        format!("axis out of range in `permute` at {}: [1, 0, 2] is not a permutation of the dims of [2, 3]", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn axis_out_of_range_in_slice() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 3])?;
    let (err, line) = (a.slice(2, 0, 1).unwrap_err(), line!());
    let expected = format!("axis out of range in `slice` at {}: axis 2 does not exist in [2, 3] (rank 2)", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn axis_out_of_range_in_concat() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 3])?;
    let (err, line) = (Tensor::concat(&[a, a], 2).unwrap_err(), line!());
    let expected = format!("axis out of range in `concat` at {}: axis 2 does not exist in [2, 3] (rank 2)", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn t_of_a_vector() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [3])?;
    let (err, line) = (a.t().unwrap_err(), line!());
    let expected =
        format!("axis out of range in `t` at {}: swapping the last two dims needs at least 2 dims, got [3]", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn transpose_with_a_bad_permutation_names_transpose() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 3, 4])?;
    let (err, line) = (a.transpose(&[0, 2]).unwrap_err(), line!());
    let expected = format!(
        "axis out of range in `transpose` at {}: [0, 2] is not a permutation of the dims of [2, 3, 4]",
        at(line)
    );
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn slice_nd_with_a_zero_step_names_the_axis() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [4, 6])?;
    let (err, line) = (x.slice_nd(&[(0, 4, 1), (0, 6, 0)]).unwrap_err(), line!());
    let expected =
        format!("invalid argument to `slice_nd` at {}: the step for axis 1 is 0; a step must be at least 1", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn slice_nd_out_of_bounds_names_the_axis_and_its_size() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [4, 6])?;
    let (err, line) = (x.slice_nd(&[(0, 4, 2), (2, 7, 1)]).unwrap_err(), line!());
    let expected =
        format!("invalid argument to `slice_nd` at {}: range 2..7 does not fit axis 1 of [4, 6] (size 6)", at(line));
    assert_eq!(err.to_string(), expected);
    let (err, line) = (x.slice_nd(&[(3, 1, 1)]).unwrap_err(), line!());
    let expected =
        format!("invalid argument to `slice_nd` at {}: range 3..1 does not fit axis 0 of [4, 6] (size 4)", at(line));
    assert_eq!(err.to_string(), expected);
    let (err, line) = (x.slice_nd(&[(0, 1, 1), (0, 1, 1), (0, 1, 1)]).unwrap_err(), line!());
    let expected =
        format!("axis out of range in `slice_nd` at {}: 3 ranges given for [4, 6], which has 2 axes", at(line));
    assert_eq!(err.to_string(), expected);
    let b = g.input("b", [Dim::sym("B"), 2.into()])?;
    let (err, line) = (b.slice_nd(&[(0, 1, 1)]).unwrap_err(), line!());
    let expected = format!(
        "invalid argument to `slice_nd` at {}: axis 0 of [B, 2] is symbolic; only static axes can be sliced (keep it with WHOLE_AXIS)",
        at(line)
    );
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn min_of_integers_asks_for_a_cast() -> Result<()> {
    let g = Graph::new();
    let x = g.typed_input("x", [3], DType::I32)?;
    let (err, line) = (x.min(&[0], false).unwrap_err(), line!());
    let expected = format!(
        "dtype mismatch in `reduce_min` at {}: the minimum over axes needs a float operand, got i32; cast it first",
        at(line)
    );
    assert_eq!(err.to_string(), expected);
    let y = g.input("y", [3])?;
    let (err, line) = (y.min(&[1], false).unwrap_err(), line!());
    let expected = format!("axis out of range in `reduce_min` at {}: axis 1 does not exist in [3] (rank 1)", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

// ---- reshape ---------------------------------------------------------------------------

#[test]
fn reshape_size_mismatch_static() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 3])?;
    let (err, line) = (a.reshape([4]).unwrap_err(), line!());
    let expected = format!("reshape size mismatch at {}: cannot reshape [2, 3] into [4]", at(line));
    assert_eq!(err.to_string(), expected);
    assert!(matches!(err, Error::ReshapeSize { .. }), "{err:?}");
    Ok(())
}

#[test]
fn reshape_size_mismatch_symbolic() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [Dim::sym("B"), 4.into()])?;
    let (err, line) = (a.reshape([Dim::sym("C"), 4.into()]).unwrap_err(), line!());
    let expected = format!("reshape size mismatch at {}: cannot reshape [B, 4] into [C, 4]", at(line));
    assert_eq!(err.to_string(), expected);
    // A symbolic dim cannot become a static one, even if B might happen to be 2.
    let (err, line) = (a.reshape([8]).unwrap_err(), line!());
    let expected = format!("reshape size mismatch at {}: cannot reshape [B, 4] into [8]", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

// ---- indices ---------------------------------------------------------------------------

#[test]
fn gather_with_float_indices() -> Result<()> {
    let g = Graph::new();
    let table = g.param("table", [5, 2], Init::ZEROS)?;
    let idx = g.input("idx", [3])?;
    let (err, line) = (table.gather(idx).unwrap_err(), line!());
    let expected = format!("dtype mismatch in `gather` at {}: indices must be i32 or i64, got f32", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn scatter_add_with_float_indices() -> Result<()> {
    let g = Graph::new();
    let idx = g.input("idx", [3])?;
    let updates = g.input("updates", [3, 2])?;
    let (err, line) = (g.zeros([5, 2]).scatter_add(idx, updates).unwrap_err(), line!());
    let expected = format!("dtype mismatch in `scatter_add` at {}: indices must be i32 or i64, got f32", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn scatter_add_into_a_table_of_other_rows() -> Result<()> {
    let g = Graph::new();
    let table = g.input("table", [5, 3])?;
    let idx = g.typed_input("idx", [4], DType::I64)?;
    let updates = g.input("updates", [4, 2])?;
    let (err, line) = (table.scatter_add(idx, updates).unwrap_err(), line!());
    let expected = format!(
        "shape mismatch in `scatter_add` at {}: updates [4, 2] at indices [4] give rows of [2], but the table is [5, 3]",
        at(line)
    );
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn scatter_add_into_a_table_of_another_dtype() -> Result<()> {
    let g = Graph::new();
    let table = g.typed_input("table", [5, 2], DType::F64)?;
    let idx = g.typed_input("idx", [4], DType::I64)?;
    let updates = g.input("updates", [4, 2])?;
    let (err, line) = (table.scatter_add(idx, updates).unwrap_err(), line!());
    let expected = format!("dtype mismatch in `scatter_add` at {}: the table is f64 but the updates are f32", at(line));
    assert_eq!(err.to_string(), expected);
    let scalar = g.scalar(1.0);
    let (err, line) = (scalar.scatter_add(idx, updates).unwrap_err(), line!());
    let expected =
        format!("shape mismatch in `scatter_add` at {}: the table must have at least one dim, got a scalar", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn scatter_add_with_updates_of_the_wrong_shape() -> Result<()> {
    let g = Graph::new();
    let idx = g.typed_input("idx", [3], DType::I64)?;
    let updates = g.input("updates", [4, 2])?;
    let (err, line) = (g.zeros([5, 2]).scatter_add(idx, updates).unwrap_err(), line!());
    let expected = format!(
        "shape mismatch in `scatter_add` at {}: updates [4, 2] must start with the indices' shape [3]",
        at(line)
    );
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn one_hot_with_float_indices() -> Result<()> {
    let g = Graph::new();
    let idx = g.input("idx", [3])?;
    let (err, line) = (idx.one_hot(4).unwrap_err(), line!());
    let expected = format!("dtype mismatch in `one_hot` at {}: indices must be i32 or i64, got f32", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn one_hot_of_depth_zero() -> Result<()> {
    let g = Graph::new();
    let idx = g.typed_input("idx", [3], DType::I64)?;
    let (err, line) = (idx.one_hot(0).unwrap_err(), line!());
    let expected = format!("invalid argument to `one_hot` at {}: depth must be at least 1", at(line));
    assert_eq!(err.to_string(), expected);
    assert!(matches!(err, Error::Argument { op: "one_hot", .. }), "{err:?}");
    Ok(())
}

// ---- slices ----------------------------------------------------------------------------

#[test]
fn slice_range_out_of_bounds() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 3])?;
    let (err, line) = (a.slice(1, 1, 4).unwrap_err(), line!());
    let expected = format!("invalid argument to `slice` at {}: range 1..4 does not fit axis 1 of [2, 3]", at(line));
    assert_eq!(err.to_string(), expected);
    let (err, line) = (a.slice(1, 2, 1).unwrap_err(), line!());
    let expected = format!("invalid argument to `slice` at {}: range 2..1 does not fit axis 1 of [2, 3]", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn slice_of_a_symbolic_axis() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [Dim::sym("B"), 3.into()])?;
    let (err, line) = (a.slice(0, 0, 1).unwrap_err(), line!());
    let expected = format!(
        "invalid argument to `slice` at {}: axis 0 of [B, 3] is symbolic; only static axes can be sliced",
        at(line)
    );
    assert_eq!(err.to_string(), expected);
    Ok(())
}

// ---- names -----------------------------------------------------------------------------

#[test]
fn duplicate_input_name() -> Result<()> {
    let g = Graph::new();
    g.input("x", [3])?;
    let (err, line) = (g.input("x", [4]).unwrap_err(), line!());
    let expected = format!("name error at {}: the name `x` is already used by another input or param", at(line));
    assert_eq!(err.to_string(), expected);
    assert!(matches!(err, Error::Name { .. }), "{err:?}");
    Ok(())
}

#[test]
fn duplicate_param_name() -> Result<()> {
    let g = Graph::new();
    g.param("w", [3], Init::ZEROS)?;
    let (err, line) = (g.param("w", [3], Init::ONES).unwrap_err(), line!());
    let expected = format!("name error at {}: the name `w` is already used by another input or param", at(line));
    assert_eq!(err.to_string(), expected);
    // Inputs and params share one namespace.
    let (err, line) = (g.typed_input("w", [3], DType::I64).unwrap_err(), line!());
    let expected = format!("name error at {}: the name `w` is already used by another input or param", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn empty_leaf_name() {
    let g = Graph::new();
    let (err, line) = (g.input("", [3]).unwrap_err(), line!());
    let expected = format!("name error at {}: inputs and params need a non-empty name", at(line));
    assert_eq!(err.to_string(), expected);
}

#[test]
fn set_trainable_with_an_unknown_name() -> Result<()> {
    let g = Graph::new();
    g.param("w", [3], Init::ZEROS)?;
    g.input("x", [3])?;
    let (err, line) = (g.set_trainable("v", false).unwrap_err(), line!());
    let expected = format!("name error at {}: the graph has no param named `v`", at(line));
    assert_eq!(err.to_string(), expected);
    // An input is not a param.
    let (err, line) = (g.set_trainable("x", false).unwrap_err(), line!());
    let expected = format!("name error at {}: the graph has no param named `x`", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn leaf_with_an_unknown_name() -> Result<()> {
    let g = Graph::new();
    g.input("x", [3])?;
    let (err, line) = (g.leaf("y").unwrap_err(), line!());
    let expected = format!("name error at {}: the graph has no input or param named `y`", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

// ---- two graphs ------------------------------------------------------------------------

#[test]
fn tensors_of_two_graphs_combined() -> Result<()> {
    let g1 = Graph::new();
    let g2 = Graph::new();
    let a = g1.input("a", [3])?;
    let b = g2.input("b", [3])?;
    let (err, line) = (a.add(b).unwrap_err(), line!());
    assert_eq!(err.to_string(), format!("`add` at {} combines tensors from different graphs", at(line)));
    assert!(matches!(err, Error::ForeignTensor { op: "add", .. }), "{err:?}");

    let m1 = g1.input("m1", [3, 3])?;
    let m2 = g2.input("m2", [3, 3])?;
    let (err, line) = (m1.matmul(m2).unwrap_err(), line!());
    assert_eq!(err.to_string(), format!("`matmul` at {} combines tensors from different graphs", at(line)));
    let (err, line) = (Tensor::concat(&[a, b], 0).unwrap_err(), line!());
    assert_eq!(err.to_string(), format!("`concat` at {} combines tensors from different graphs", at(line)));

    let loss = a.sum_all()?;
    let (err, line) = (g1.grad(loss, &[b]).unwrap_err(), line!());
    assert_eq!(err.to_string(), format!("`grad` at {} combines tensors from different graphs", at(line)));

    let feeds = Feeds::from([("a", Value::f32([3], vec![1.0, 2.0, 3.0]))]);
    let (err, line) = (run(&g1, &feeds, &ParamStore::new(), &[b]), line!());
    assert_eq!(err.to_string(), format!("`run` at {} combines tensors from different graphs", at(line)));
    Ok(())
}

#[test]
fn a_failed_operator_of_two_graphs_poisons_the_left_graph() -> Result<()> {
    let g1 = Graph::new();
    let g2 = Graph::new();
    let a = g1.input("a", [3])?;
    let b = g2.input("b", [3])?;
    let (c, line) = (a * b, line!());
    let expected = format!("`mul` at {} combines tensors from different graphs", at(line));
    assert_eq!(c.id().unwrap_err().to_string(), expected);
    assert_eq!(g1.check().unwrap_err().to_string(), expected);
    Ok(())
}

// ---- operators poison the graph --------------------------------------------------------

#[test]
fn a_failed_operator_poisons_every_later_use() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 3])?;
    let b = g.input("b", [4])?;
    let w = g.param("w", [3], Init::ONES)?;
    let good = a.mul(w)?.sum_all()?;
    let (c, line) = (a + b, line!());
    let expected = format!("shape mismatch in `add` at {}: cannot broadcast [2, 3] with [4]", at(line));

    // The next method call on the result.
    assert_eq!(c.exp().unwrap_err().to_string(), expected);
    assert_eq!(c.sum_all().unwrap_err().to_string(), expected);
    assert_eq!(c.matmul(a).unwrap_err().to_string(), expected);
    assert_eq!(a.add(c).unwrap_err().to_string(), expected);
    assert_eq!(c.id().unwrap_err().to_string(), expected);
    // Further operators keep the first error.
    let d = c * 2.0;
    assert_eq!(d.id().unwrap_err().to_string(), expected);
    assert_eq!(d.exp().unwrap_err().to_string(), expected);
    // The graph as a whole.
    assert_eq!(g.check().unwrap_err().to_string(), expected);
    // grad refuses to work, even for a loss that does not touch the failed tensor.
    assert_eq!(g.grad(good, &[w]).unwrap_err().to_string(), expected);
    // So does the interpreter.
    let feeds = Feeds::from([("a", Value::f32([2, 3], vec![1.0; 6])), ("b", Value::f32([4], vec![1.0; 4]))]);
    let params = ParamStore::init(&g, 0);
    assert_eq!(run(&g, &feeds, &params, &[good]).to_string(), expected);
    Ok(())
}

#[test]
fn only_the_first_operator_error_is_reported_by_check() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2])?;
    let b = g.input("b", [3])?;
    let (_, line) = (a - b, line!());
    let _ = -g.typed_input("i", [2], DType::Bool)?;
    let expected = format!("shape mismatch in `sub` at {}: cannot broadcast [2] with [3]", at(line));
    assert_eq!(g.check().unwrap_err().to_string(), expected);
    Ok(())
}

#[test]
fn a_failed_negation_names_its_line() -> Result<()> {
    let g = Graph::new();
    let mask = g.input("a", [2])?.gt(0.0)?;
    let (c, line) = (-mask, line!());
    let expected = format!("dtype mismatch in `neg` at {}: `neg` needs a float operand, got bool", at(line));
    assert_eq!(c.id().unwrap_err().to_string(), expected);
    assert_eq!(g.check().unwrap_err().to_string(), expected);
    Ok(())
}

// ---- grad ------------------------------------------------------------------------------

#[test]
fn grad_of_a_non_scalar_loss() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [3])?;
    let y = x.exp()?;
    let (err, line) = (g.grad(y, &[x]).unwrap_err(), line!());
    let expected = format!(
        "cannot differentiate at {}: the loss must be a float scalar, got [3] f32 (reduce it with sum or mean first)",
        at(line)
    );
    assert_eq!(err.to_string(), expected);
    assert!(matches!(err, Error::Grad { .. }), "{err:?}");
    Ok(())
}

#[test]
fn grad_of_an_integer_loss() -> Result<()> {
    let g = Graph::new();
    let x = g.typed_input("x", [3], DType::I64)?;
    let y = x.sum_all()?;
    let (err, line) = (g.grad(y, &[x]).unwrap_err(), line!());
    let expected = format!(
        "cannot differentiate at {}: the loss must be a float scalar, got [] i64 (reduce it with sum or mean first)",
        at(line)
    );
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn grad_wrt_a_frozen_param() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [3])?;
    let w = g.param_with("w", [3], Init::ONES, false)?;
    let loss = x.mul(w)?.sum_all()?;
    let (err, line) = (g.grad(loss, &[w]).unwrap_err(), line!());
    let expected =
        format!("cannot differentiate at {}: param `w` is frozen (not trainable); it has no gradient", at(line));
    assert_eq!(err.to_string(), expected);

    // Freezing after the fact through `set_trainable` has the same effect.
    let v = g.param("v", [3], Init::ONES)?;
    let loss = x.mul(v)?.sum_all()?;
    assert!(g.grad(loss, &[v]).is_ok());
    g.set_trainable("v", false)?;
    let (err, line) = (g.grad(loss, &[x, v]).unwrap_err(), line!());
    let expected =
        format!("cannot differentiate at {}: param `v` is frozen (not trainable); it has no gradient", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn grad_wrt_an_integer_input() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [3])?;
    let labels = g.typed_input("labels", [3], DType::I64)?;
    let loss = x.mul(labels.cast(DType::F32)?)?.sum_all()?;
    let (err, line) = (g.grad(loss, &[labels]).unwrap_err(), line!());
    // The message names the input, not only its node id.
    let expected = format!(
        "cannot differentiate at {}: input `labels` (%1) has dtype i64; only float nodes have gradients",
        at(line)
    );
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn grad_wrt_a_node_built_after_the_loss_is_zero_not_a_panic() -> Result<()> {
    // The loss does not depend on nodes built after it, so their gradients are zeros.
    let g = Graph::new();
    let x = g.input("x", [3])?;
    let loss = x.sum_all()?;
    let later = x.exp()?;
    let y = g.input("y", [2])?;
    let grads = g.grad(loss, &[x, later, y])?;
    let feeds = Feeds::from([("x", Value::f32([3], vec![1.0, 2.0, 3.0])), ("y", Value::f32([2], vec![4.0, 5.0]))]);
    let out = Interpreter::new(&g).run(&feeds, &ParamStore::new(), &grads)?;
    assert_eq!(out[0], Value::f32([3], vec![1.0; 3]));
    assert_eq!(out[1], Value::f32([3], vec![0.0; 3]));
    assert_eq!(out[2], Value::f32([2], vec![0.0; 2]));
    Ok(())
}

// ---- other arguments -------------------------------------------------------------------

#[test]
fn dim_size_of_a_mask() {
    let g = Graph::new();
    let (err, line) = (g.dim_size(&[Dim::sym("B")], DType::Bool).unwrap_err(), line!());
    let expected = format!("dtype mismatch in `dim_size` at {}: dim_size produces a number, not bool", at(line));
    assert_eq!(err.to_string(), expected);
}

#[test]
fn random_with_a_float_counter() -> Result<()> {
    let g = Graph::new();
    let counter = g.input("step", Shape::scalar())?;
    let (err, line) = (g.random_uniform([2], 0, counter).unwrap_err(), line!());
    let expected = format!(
        "invalid argument to `random_uniform` at {}: the counter must be an integer scalar, got f32[]",
        at(line)
    );
    assert_eq!(err.to_string(), expected);
    let counter = g.typed_input("steps", [2], DType::I64)?;
    let (err, line) = (g.random_normal([2], 0, counter).unwrap_err(), line!());
    let expected = format!(
        "invalid argument to `random_normal` at {}: the counter must be an integer scalar, got i64[2]",
        at(line)
    );
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn param_with_initial_values_of_the_wrong_shape() {
    let g = Graph::new();
    let values = Init::Values(Value::f32([3], vec![1.0, 2.0, 3.0]));
    let (err, line) = (g.param("w", [2], values).unwrap_err(), line!());
    let expected = format!(
        "shape mismatch in `param` at {}: param `w` has shape [2] but its initial values have shape [3]",
        at(line)
    );
    assert_eq!(err.to_string(), expected);
}

// ---- composites report their caller --------------------------------------------------

#[test]
fn errors_inside_layers_name_the_callers_line() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 4.into()])?;
    let layer = layers::Linear::new(&g, "fc", 3, 2)?;
    let (err, line) = (layer.forward(x).unwrap_err(), line!());
    let expected = format!("shape mismatch in `matmul` at {}: cannot multiply [B, 4] by [3, 2]", at(line));
    assert_eq!(err.to_string(), expected);
    let (err, line) = (layers::softmax(x, 2).unwrap_err(), line!());
    // Named after the layer called, with the primitive that refused.
    let expected = format!(
        "axis out of range in `softmax` at {}: axis 2 does not exist in [B, 4] (rank 2) (in its `reduce_max`)",
        at(line)
    );
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn cross_entropy_with_labels_of_the_wrong_shape() -> Result<()> {
    let g = Graph::new();
    let logits = g.input("logits", [Dim::sym("B"), 3.into()])?;
    let labels = g.typed_input("labels", [Dim::sym("C")], DType::I64)?;
    let (err, line) = (layers::cross_entropy(logits, labels).unwrap_err(), line!());
    let expected = format!(
        "shape mismatch in `cross_entropy` at {}: logits [B, 3] need a static class dim last and labels of the leading dims, got labels [C]",
        at(line)
    );
    assert_eq!(err.to_string(), expected);
    Ok(())
}

#[test]
fn layer_norm_of_a_scalar() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", Shape::scalar())?;
    let w = g.param("w", Shape::scalar(), Init::ONES)?;
    let (err, line) = (layers::layer_norm_affine(x, w, w, 1e-5).unwrap_err(), line!());
    let expected = format!("shape mismatch in `layer_norm` at {}: needs at least one dim, got a scalar", at(line));
    assert_eq!(err.to_string(), expected);
    Ok(())
}

// ---- interpreter -----------------------------------------------------------------------

/// `y = x·w` summed, over a symbolic batch.
fn small_model(g: &Graph) -> Result<Tensor<'_>> {
    let x = g.input("x", [Dim::sym("B"), 3.into()])?;
    let w = g.param("w", [3, 2], Init::ONES)?;
    x.matmul(w)?.sum_all()
}

#[test]
fn missing_input() -> Result<()> {
    let g = Graph::new();
    let y = small_model(&g)?;
    let err = run(&g, &Feeds::new(), &ParamStore::init(&g, 0), &[y]);
    assert_eq!(err.to_string(), "input `x` was not fed");
    assert_eq!(err, Error::MissingInput { name: "x".into() });
    Ok(())
}

#[test]
fn missing_param() -> Result<()> {
    let g = Graph::new();
    let y = small_model(&g)?;
    let feeds = Feeds::from([("x", Value::f32([1, 3], vec![1.0, 2.0, 3.0]))]);
    let err = run(&g, &feeds, &ParamStore::new(), &[y]);
    assert_eq!(err.to_string(), "param `w` has no value");
    assert_eq!(err, Error::MissingParam { name: "w".into() });
    Ok(())
}

#[test]
fn wrong_dtype_fed() -> Result<()> {
    let g = Graph::new();
    let y = small_model(&g)?;
    let feeds = Feeds::from([("x", Value::i64([1, 3], vec![1, 2, 3]))]);
    let err = run(&g, &feeds, &ParamStore::init(&g, 0), &[y]);
    assert_eq!(err.to_string(), "bad value for input `x`: expected dtype f32, got dtype i64");
    // f64 values are only accepted for f32 inputs when computing in f64.
    let feeds = Feeds::from([("x", Value::f64([1, 3], vec![1.0, 2.0, 3.0]))]);
    let err = run(&g, &feeds, &ParamStore::init(&g, 0), &[y]);
    assert_eq!(err.to_string(), "bad value for input `x`: expected dtype f32, got dtype f64");
    Ok(())
}

#[test]
fn wrong_dtype_of_a_param_value() -> Result<()> {
    let g = Graph::new();
    let y = small_model(&g)?;
    let feeds = Feeds::from([("x", Value::f32([1, 3], vec![1.0, 2.0, 3.0]))]);
    let mut params = ParamStore::new();
    params.set("w", Value::i32([3, 2], vec![1; 6]));
    let err = run(&g, &feeds, &params, &[y]);
    assert_eq!(err.to_string(), "bad value for param `w`: expected dtype f32, got dtype i32");
    Ok(())
}

#[test]
fn wrong_rank_fed() -> Result<()> {
    let g = Graph::new();
    let y = small_model(&g)?;
    let feeds = Feeds::from([("x", Value::f32([3], vec![1.0, 2.0, 3.0]))]);
    let err = run(&g, &feeds, &ParamStore::init(&g, 0), &[y]);
    assert_eq!(err.to_string(), "bad value for input `x`: expected shape [B, 3], got shape [3]");
    Ok(())
}

#[test]
fn wrong_static_dim_fed() -> Result<()> {
    let g = Graph::new();
    let y = small_model(&g)?;
    let feeds = Feeds::from([("x", Value::f32([2, 4], vec![0.0; 8]))]);
    let err = run(&g, &feeds, &ParamStore::init(&g, 0), &[y]);
    assert_eq!(err.to_string(), "bad value for input `x`: expected shape [B, 3], got shape [2, 4]");
    // A param value of the wrong shape is refused the same way.
    let feeds = Feeds::from([("x", Value::f32([1, 3], vec![0.0; 3]))]);
    let mut params = ParamStore::new();
    params.set("w", Value::f32([2, 3], vec![0.0; 6]));
    let err = run(&g, &feeds, &params, &[y]);
    assert_eq!(err.to_string(), "bad value for param `w`: expected shape [3, 2], got shape [2, 3]");
    Ok(())
}

#[test]
fn symbol_bound_to_two_sizes() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    let y = g.input("y", [Dim::sym("B")])?;
    let z = x.sum(&[1], false)?.add(y)?;
    let feeds = Feeds::from([("x", Value::f32([3, 2], vec![0.0; 6])), ("y", Value::f32([4], vec![0.0; 4]))]);
    let err = run(&g, &feeds, &ParamStore::new(), &[z]);
    assert_eq!(
        err.to_string(),
        "bad value for input `y`: expected B = 3 (bound by an earlier input), got B = 4 in shape [4]"
    );
    // An input that is fed but not needed still binds its symbols.
    let feeds = Feeds::from([("x", Value::f32([3, 2], vec![0.0; 6])), ("y", Value::f32([4], vec![0.0; 4]))]);
    let err = run(&g, &feeds, &ParamStore::new(), &[x]);
    assert_eq!(
        err.to_string(),
        "bad value for input `y`: expected B = 3 (bound by an earlier input), got B = 4 in shape [4]"
    );
    Ok(())
}

#[test]
fn symbol_bound_to_two_sizes_within_one_input() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("N"), Dim::sym("N")])?;
    let feeds = Feeds::from([("x", Value::f32([2, 3], vec![0.0; 6]))]);
    let err = run(&g, &feeds, &ParamStore::new(), &[x]);
    assert_eq!(
        err.to_string(),
        "bad value for input `x`: expected N = 2 (bound by an earlier input), got N = 3 in shape [2, 3]"
    );
    Ok(())
}

#[test]
fn symbol_of_a_fill_bound_by_no_input() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B")])?;
    let z = g.zeros([Dim::sym("N")]);
    let y = z.sum_all()?;
    let feeds = Feeds::from([("x", Value::f32([2], vec![0.0; 2]))]);
    let err = run(&g, &feeds, &ParamStore::new(), &[y, x]);
    assert_eq!(err.to_string(), "evaluation failed at node %1 (`fill`): symbol `N` is not bound by any fed input");
    assert!(matches!(err, Error::Eval { node: 1, op: "fill", .. }), "{err:?}");
    Ok(())
}

#[test]
fn symbol_of_a_dim_size_bound_by_no_input() -> Result<()> {
    let g = Graph::new();
    let n = g.dim_size(&[Dim::sym("N")], DType::F32)?;
    let err = run(&g, &Feeds::new(), &ParamStore::new(), &[n]);
    assert_eq!(err.to_string(), "evaluation failed at node %0 (`dim_size`): symbol `N` is not bound by any fed input");
    Ok(())
}

fn gather_graph(g: &Graph) -> Result<Tensor<'_>> {
    let table = g.param("table", [3, 2], Init::Linspace { start: 0.0, end: 5.0 })?;
    let idx = g.typed_input("idx", [2], DType::I64)?;
    table.gather(idx)
}

#[test]
fn gather_index_out_of_range() -> Result<()> {
    let g = Graph::new();
    let y = gather_graph(&g)?;
    let feeds = Feeds::from([("idx", Value::i64([2], vec![0, 3]))]);
    let err = run(&g, &feeds, &ParamStore::init(&g, 0), &[y]);
    assert_eq!(
        err.to_string(),
        "evaluation failed at node %2 (`gather`): index 3 at position 1 of `idx` is out of range for 3 rows of `table`"
    );
    Ok(())
}

#[test]
fn gather_index_negative() -> Result<()> {
    let g = Graph::new();
    let y = gather_graph(&g)?;
    let feeds = Feeds::from([("idx", Value::i64([2], vec![-1, 0]))]);
    let err = run(&g, &feeds, &ParamStore::init(&g, 0), &[y]);
    assert_eq!(
        err.to_string(),
        "evaluation failed at node %2 (`gather`): index -1 at position 0 of `idx` is out of range for 3 rows of `table`"
    );
    Ok(())
}

#[test]
fn scatter_add_index_out_of_range() -> Result<()> {
    let g = Graph::new();
    let idx = g.typed_input("idx", [2], DType::I32)?;
    let updates = g.input("updates", [2])?;
    let y = g.zeros([4]).scatter_add(idx, updates)?;
    let feeds = Feeds::from([("idx", Value::i32([2], vec![1, 4])), ("updates", Value::f32([2], vec![1.0, 2.0]))]);
    let err = run(&g, &feeds, &ParamStore::new(), &[y]);
    assert_eq!(
        err.to_string(),
        "evaluation failed at node %3 (`scatter_add`): index 4 at position 1 of `idx` is out of range for 4 rows"
    );
    Ok(())
}

#[test]
fn one_hot_index_out_of_range() -> Result<()> {
    let g = Graph::new();
    let idx = g.typed_input("idx", [3], DType::I32)?;
    let y = idx.one_hot(3)?;
    let feeds = Feeds::from([("idx", Value::i32([3], vec![0, 2, 3]))]);
    let err = run(&g, &feeds, &ParamStore::new(), &[y]);
    assert_eq!(
        err.to_string(),
        "evaluation failed at node %1 (`one_hot`): index 3 at position 2 of `idx` is out of range for 3 classes"
    );
    let feeds = Feeds::from([("idx", Value::i32([3], vec![0, -2, 1]))]);
    let err = run(&g, &feeds, &ParamStore::new(), &[y]);
    assert_eq!(
        err.to_string(),
        "evaluation failed at node %1 (`one_hot`): index -2 at position 1 of `idx` is out of range for 3 classes"
    );
    Ok(())
}

#[test]
fn integer_division_by_zero() -> Result<()> {
    let g = Graph::new();
    let a = g.typed_input("a", [3], DType::I32)?;
    let b = g.typed_input("b", [3], DType::I32)?;
    let y = a.div(b)?;
    let feeds = Feeds::from([("a", Value::i32([3], vec![6, 7, 8])), ("b", Value::i32([3], vec![2, 0, 1]))]);
    let err = run(&g, &feeds, &ParamStore::new(), &[y]);
    assert_eq!(err.to_string(), "evaluation failed at node %2 (`div`): integer division by zero (7 / 0)");
    assert!(matches!(err, Error::Eval { node: 2, op: "div", .. }), "{err:?}");
    Ok(())
}

#[test]
fn float_division_by_zero_is_not_an_error() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2])?;
    let y = a.div(0.0)?;
    let feeds = Feeds::from([("a", Value::f32([2], vec![1.0, -1.0]))]);
    let out = Interpreter::new(&g).run(&feeds, &ParamStore::new(), &[y])?;
    assert_eq!(out[0], Value::f32([2], vec![f32::INFINITY, f32::NEG_INFINITY]));
    Ok(())
}
