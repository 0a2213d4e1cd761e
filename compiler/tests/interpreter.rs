//! The reference interpreter against values worked out by hand: every primitive op, the
//! composites of `layers`, precisions, symbolic dims and output handling.

use std::f64::consts::{E, FRAC_1_SQRT_2, LN_2, SQRT_2};

use kiln_compiler::Data;
use kiln_compiler::prelude::*;

/// Runs `outputs` with `feeds` and params drawn from each param's initializer.
fn run(g: &Graph, feeds: &Feeds, outputs: &[Tensor]) -> Result<Vec<Value>> {
    Interpreter::new(g).run(feeds, &ParamStore::init(g, 0), outputs)
}

/// Runs one output.
fn run1(g: &Graph, feeds: &Feeds, output: Tensor) -> Result<Value> {
    Ok(run(g, feeds, &[output])?.remove(0))
}

/// Checks shape and elements, each to 1e-6 (relative beyond 1); NaN must match NaN and
/// infinities must match exactly.
#[track_caller]
fn assert_close(actual: &Value, shape: &[usize], expected: &[f64]) {
    assert_eq!(actual.shape(), shape, "shape of {actual}");
    let got = actual.to_f64_vec();
    assert_eq!(got.len(), expected.len(), "element count of {actual}");
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        if e.is_nan() {
            assert!(g.is_nan(), "element {i}: got {g}, expected NaN in {actual}");
        } else if e.is_infinite() {
            assert_eq!(g, e, "element {i} of {actual}");
        } else {
            assert!((g - e).abs() <= 1e-6 * e.abs().max(1.0), "element {i}: got {g}, expected {e} in {actual}");
        }
    }
}

fn mask(shape: impl Into<Vec<usize>>, values: Vec<bool>) -> Value {
    Value::new(shape, Data::Bool(values)).expect("mask of the right size")
}

fn f32s(shape: impl Into<Vec<usize>>, values: &[f32]) -> Value {
    Value::f32(shape, values.to_vec())
}

// ---- elementwise -----------------------------------------------------------------------

#[test]
fn unary_ops() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [3])?;
    let outputs = [x.neg()?, x.exp()?, x.log()?, x.sqrt()?, x.sin()?, x.cos()?, x.tanh()?, x.recip()?, -x];
    let feeds = Feeds::from([("x", f32s([3], &[0.5, 1.0, 2.0]))]);
    let out = run(&g, &feeds, &outputs)?;
    assert_close(&out[0], &[3], &[-0.5, -1.0, -2.0]);
    assert_close(&out[1], &[3], &[1.6487212707, E, 7.3890560989]);
    assert_close(&out[2], &[3], &[-LN_2, 0.0, LN_2]);
    assert_close(&out[3], &[3], &[FRAC_1_SQRT_2, 1.0, SQRT_2]);
    assert_close(&out[4], &[3], &[0.4794255386, 0.8414709848, 0.9092974268]);
    assert_close(&out[5], &[3], &[0.8775825619, 0.5403023059, -0.4161468365]);
    assert_close(&out[6], &[3], &[0.4621171573, 0.7615941560, 0.9640275801]);
    assert_close(&out[7], &[3], &[2.0, 1.0, 0.5]);
    assert_close(&out[8], &[3], &[-0.5, -1.0, -2.0]);
    for value in &out {
        assert_eq!(value.dtype(), DType::F32);
    }
    Ok(())
}

#[test]
fn unary_ops_at_special_points() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [4])?;
    let outputs = [x.abs()?, x.log()?, x.sqrt()?, x.recip()?, x.tanh()?];
    let feeds = Feeds::from([("x", f32s([4], &[-1.5, 0.0, 2.0, -100.0]))]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], f32s([4], &[1.5, 0.0, 2.0, 100.0]));
    assert_close(&out[1], &[4], &[f64::NAN, f64::NEG_INFINITY, LN_2, f64::NAN]);
    assert_close(&out[2], &[4], &[f64::NAN, 0.0, SQRT_2, f64::NAN]);
    assert_close(&out[3], &[4], &[-0.6666666667, f64::INFINITY, 0.5, -0.01]);
    assert_close(&out[4], &[4], &[-0.9051482536, 0.0, 0.9640275801, -1.0]);
    Ok(())
}

#[test]
fn integer_neg_and_abs_wrap() -> Result<()> {
    let g = Graph::new();
    let x = g.typed_input("x", [4], DType::I32)?;
    let feeds = Feeds::from([("x", Value::i32([4], vec![-3, 0, 5, i32::MIN]))]);
    let out = run(&g, &feeds, &[x.neg()?, x.abs()?])?;
    assert_eq!(out[0], Value::i32([4], vec![3, 0, -5, i32::MIN]));
    assert_eq!(out[1], Value::i32([4], vec![3, 0, 5, i32::MIN]));
    Ok(())
}

#[test]
fn pow_with_a_constant_exponent() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [3])?;
    let feeds = Feeds::from([("x", f32s([3], &[4.0, 9.0, 2.0]))]);
    let out = run(&g, &feeds, &[x.powf(0.5)?, x.powf(3.0)?, x.powf(-1.0)?, x.powf(0.0)?, x.square()?])?;
    assert_close(&out[0], &[3], &[2.0, 3.0, SQRT_2]);
    assert_close(&out[1], &[3], &[64.0, 729.0, 8.0]);
    assert_close(&out[2], &[3], &[0.25, 0.1111111111, 0.5]);
    assert_close(&out[3], &[3], &[1.0, 1.0, 1.0]);
    assert_close(&out[4], &[3], &[16.0, 81.0, 4.0]);
    Ok(())
}

#[test]
fn binary_ops_broadcast_a_row() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 3])?;
    let b = g.input("b", [3])?;
    let c = g.input("c", [3])?;
    let outputs = [a.add(b)?, a.sub(b)?, a.mul(b)?, a.div(b)?, a.maximum(c)?, a.minimum(c)?, b.sub(a)?];
    let feeds = Feeds::from([
        ("a", f32s([2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
        ("b", f32s([3], &[10.0, 20.0, 30.0])),
        ("c", f32s([3], &[2.0, 2.0, 7.0])),
    ]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], f32s([2, 3], &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0]));
    assert_eq!(out[1], f32s([2, 3], &[-9.0, -18.0, -27.0, -6.0, -15.0, -24.0]));
    assert_eq!(out[2], f32s([2, 3], &[10.0, 40.0, 90.0, 40.0, 100.0, 180.0]));
    assert_close(&out[3], &[2, 3], &[0.1, 0.1, 0.1, 0.4, 0.25, 0.2]);
    assert_eq!(out[4], f32s([2, 3], &[2.0, 2.0, 7.0, 4.0, 5.0, 7.0]));
    assert_eq!(out[5], f32s([2, 3], &[1.0, 2.0, 3.0, 2.0, 2.0, 6.0]));
    assert_eq!(out[6], f32s([2, 3], &[9.0, 18.0, 27.0, 6.0, 15.0, 24.0]));
    Ok(())
}

#[test]
fn binary_ops_broadcast_a_column_against_a_row() -> Result<()> {
    let g = Graph::new();
    let p = g.input("p", [2, 1])?;
    let q = g.input("q", [1, 3])?;
    let outputs = [p.add(q)?, p.sub(q)?, p.mul(q)?, q.div(p)?, p.maximum(q)?, p.minimum(q)?];
    let feeds = Feeds::from([("p", f32s([2, 1], &[1.0, 25.0])), ("q", f32s([1, 3], &[10.0, 20.0, 30.0]))]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], f32s([2, 3], &[11.0, 21.0, 31.0, 35.0, 45.0, 55.0]));
    assert_eq!(out[1], f32s([2, 3], &[-9.0, -19.0, -29.0, 15.0, 5.0, -5.0]));
    assert_eq!(out[2], f32s([2, 3], &[10.0, 20.0, 30.0, 250.0, 500.0, 750.0]));
    assert_close(&out[3], &[2, 3], &[10.0, 20.0, 30.0, 0.4, 0.8, 1.2]);
    assert_eq!(out[4], f32s([2, 3], &[10.0, 20.0, 30.0, 25.0, 25.0, 30.0]));
    assert_eq!(out[5], f32s([2, 3], &[1.0, 1.0, 1.0, 10.0, 20.0, 25.0]));
    Ok(())
}

#[test]
fn binary_ops_with_scalars() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 3])?;
    let s = g.input("s", Shape::scalar())?;
    let outputs = [a * 2.0, 1.0 - a, a / 2.0, a + 0.5, a.maximum(s)?, s.sub(a)?, a.minimum(3)?];
    let feeds = Feeds::from([("a", f32s([2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])), ("s", f32s([], &[3.5]))]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], f32s([2, 3], &[2.0, 4.0, 6.0, 8.0, 10.0, 12.0]));
    assert_eq!(out[1], f32s([2, 3], &[0.0, -1.0, -2.0, -3.0, -4.0, -5.0]));
    assert_eq!(out[2], f32s([2, 3], &[0.5, 1.0, 1.5, 2.0, 2.5, 3.0]));
    assert_eq!(out[3], f32s([2, 3], &[1.5, 2.5, 3.5, 4.5, 5.5, 6.5]));
    assert_eq!(out[4], f32s([2, 3], &[3.5, 3.5, 3.5, 4.0, 5.0, 6.0]));
    assert_eq!(out[5], f32s([2, 3], &[2.5, 1.5, 0.5, -0.5, -1.5, -2.5]));
    assert_eq!(out[6], f32s([2, 3], &[1.0, 2.0, 3.0, 3.0, 3.0, 3.0]));
    // Two scalars give a scalar.
    let out = run1(&g, &feeds, s.mul(s)?)?;
    assert_eq!(out, f32s([], &[12.25]));
    Ok(())
}

#[test]
fn max_and_min_propagate_nan() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [4])?;
    let b = g.input("b", [4])?;
    let nan = f32::NAN;
    let feeds = Feeds::from([("a", f32s([4], &[nan, 1.0, 2.0, nan])), ("b", f32s([4], &[0.0, nan, 1.0, nan]))]);
    let out = run(&g, &feeds, &[a.maximum(b)?, a.minimum(b)?, b.maximum(a)?, b.minimum(a)?])?;
    let n = f64::NAN;
    assert_close(&out[0], &[4], &[n, n, 2.0, n]);
    assert_close(&out[1], &[4], &[n, n, 1.0, n]);
    assert_close(&out[2], &[4], &[n, n, 2.0, n]);
    assert_close(&out[3], &[4], &[n, n, 1.0, n]);
    Ok(())
}

#[test]
fn reduce_max_propagates_nan() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [3, 2])?;
    let nan = f32::NAN;
    let feeds = Feeds::from([("x", f32s([3, 2], &[1.0, nan, nan, 4.0, 5.0, 6.0]))]);
    let out = run(&g, &feeds, &[x.max(&[1], false)?, x.max(&[0], false)?, x.max(&[0, 1], false)?])?;
    let n = f64::NAN;
    assert_close(&out[0], &[3], &[n, n, 6.0]);
    assert_close(&out[1], &[2], &[n, n]);
    assert_close(&out[2], &[], &[n]);
    Ok(())
}

// ---- integers --------------------------------------------------------------------------

#[test]
fn i32_arithmetic_wraps_and_divides_toward_zero() -> Result<()> {
    let g = Graph::new();
    let a = g.typed_input("a", [5], DType::I32)?;
    let b = g.typed_input("b", [5], DType::I32)?;
    let outputs = [a.add(b)?, a.sub(b)?, a.mul(b)?, a.div(b)?, a.maximum(b)?, a.minimum(b)?];
    let feeds = Feeds::from([
        ("a", Value::i32([5], vec![i32::MAX, -7, 7, -7, i32::MIN])),
        ("b", Value::i32([5], vec![1, 2, -2, -2, -1])),
    ]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], Value::i32([5], vec![i32::MIN, -5, 5, -9, i32::MAX]));
    assert_eq!(out[1], Value::i32([5], vec![i32::MAX - 1, -9, 9, -5, i32::MIN + 1]));
    assert_eq!(out[2], Value::i32([5], vec![i32::MAX, -14, -14, 14, i32::MIN]));
    assert_eq!(out[3], Value::i32([5], vec![i32::MAX, -3, -3, 3, i32::MIN]));
    assert_eq!(out[4], Value::i32([5], vec![i32::MAX, 2, 7, -2, -1]));
    assert_eq!(out[5], Value::i32([5], vec![1, -7, -2, -7, i32::MIN]));
    Ok(())
}

#[test]
fn i32_multiplication_wraps_modulo_2_to_the_32() -> Result<()> {
    let g = Graph::new();
    let a = g.typed_input("a", [3], DType::I32)?;
    let feeds = Feeds::from([("a", Value::i32([3], vec![65536, 46341, -65536]))]);
    let out = run1(&g, &feeds, a.mul(a)?)?;
    // 2^32 wraps to 0; 46341^2 = 2147488281 = 2^31 + 4633 wraps to -2^31 + 4633.
    assert_eq!(out, Value::i32([3], vec![0, -2147479015, 0]));
    Ok(())
}

#[test]
fn i64_arithmetic_wraps_and_broadcasts() -> Result<()> {
    let g = Graph::new();
    let a = g.typed_input("a", [2, 2], DType::I64)?;
    let one = g.typed_scalar(1.0, DType::I64);
    let feeds = Feeds::from([("a", Value::i64([2, 2], vec![i64::MAX, -9, 9, i64::MIN]))]);
    let out = run(&g, &feeds, &[a.add(one)?, a.div(4)?, a.sub(1)?, a.sum(&[1], false)?])?;
    assert_eq!(out[0], Value::i64([2, 2], vec![i64::MIN, -8, 10, i64::MIN + 1]));
    assert_eq!(out[1], Value::i64([2, 2], vec![i64::MAX / 4, -2, 2, i64::MIN / 4]));
    assert_eq!(out[2], Value::i64([2, 2], vec![i64::MAX - 1, -10, 8, i64::MAX]));
    assert_eq!(out[3], Value::i64([2], vec![i64::MAX - 9, i64::MIN + 9]));
    Ok(())
}

// ---- comparisons, select, cast -----------------------------------------------------------

#[test]
fn comparisons_produce_masks() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [3])?;
    let b = g.input("b", [3])?;
    let outputs = [a.lt(b)?, a.le(b)?, a.gt(b)?, a.ge(b)?, a.eq(b)?, a.gt(1.5)?];
    let feeds = Feeds::from([("a", f32s([3], &[1.0, 2.0, 3.0])), ("b", f32s([3], &[2.0, 2.0, 2.0]))]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], mask([3], vec![true, false, false]));
    assert_eq!(out[1], mask([3], vec![true, true, false]));
    assert_eq!(out[2], mask([3], vec![false, false, true]));
    assert_eq!(out[3], mask([3], vec![false, true, true]));
    assert_eq!(out[4], mask([3], vec![false, true, false]));
    assert_eq!(out[5], mask([3], vec![false, true, true]));
    Ok(())
}

#[test]
fn comparisons_of_integers_nans_and_masks() -> Result<()> {
    let g = Graph::new();
    let i = g.typed_input("i", [2, 1], DType::I64)?;
    let j = g.typed_input("j", [3], DType::I64)?;
    let x = g.input("x", [2])?;
    let m = i.lt(j)?;
    let outputs = [m, x.lt(0.0)?, x.ge(0.0)?, x.eq(x)?, m.eq(i.ge(j)?)?];
    let feeds = Feeds::from([
        ("i", Value::i64([2, 1], vec![1, 5])),
        ("j", Value::i64([3], vec![0, 1, 6])),
        ("x", f32s([2], &[f32::NAN, 1.0])),
    ]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], mask([2, 3], vec![false, false, true, false, false, true]));
    assert_eq!(out[1], mask([2], vec![false, false]));
    assert_eq!(out[2], mask([2], vec![false, true]));
    assert_eq!(out[3], mask([2], vec![false, true]));
    // `lt` and `ge` are complements, so their masks are never equal.
    assert_eq!(out[4], mask([2, 3], vec![false; 6]));
    Ok(())
}

#[test]
fn select_picks_and_broadcasts() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [4])?;
    let keep_positive = x.gt(0.0)?.select(x, 0.0)?;
    let m = g.input("m", [2, 1])?.gt(0.0)?;
    let row = g.input("row", [1, 3])?;
    let broadcast = m.select(row, 9.0)?;
    let k = g.typed_input("k", [2], DType::I64)?;
    let ints = k.lt(0)?.select(k.neg()?, k)?;
    let feeds = Feeds::from([
        ("x", f32s([4], &[-1.0, 2.0, 0.0, 3.0])),
        ("m", f32s([2, 1], &[1.0, -1.0])),
        ("row", f32s([1, 3], &[1.0, 2.0, 3.0])),
        ("k", Value::i64([2], vec![-4, 5])),
    ]);
    let out = run(&g, &feeds, &[keep_positive, broadcast, ints])?;
    assert_eq!(out[0], f32s([4], &[0.0, 2.0, 0.0, 3.0]));
    assert_eq!(out[1], f32s([2, 3], &[1.0, 2.0, 3.0, 9.0, 9.0, 9.0]));
    assert_eq!(out[2], Value::i64([2], vec![4, 5]));
    Ok(())
}

#[test]
fn cast_truncates_floats_and_counts_masks() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [5])?;
    let positive = x.gt(0.0)?;
    let outputs = [
        x.cast(DType::I64)?,
        x.cast(DType::I32)?,
        positive.cast(DType::F32)?,
        positive.cast(DType::I64)?,
        x.cast(DType::Bool)?,
        x.cast(DType::I64)?.cast(DType::F32)?,
        x.cast(DType::F64)?,
    ];
    let feeds = Feeds::from([("x", f32s([5], &[2.7, -2.7, 0.5, -0.5, 0.0]))]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], Value::i64([5], vec![2, -2, 0, 0, 0]));
    assert_eq!(out[1], Value::i32([5], vec![2, -2, 0, 0, 0]));
    assert_eq!(out[2], f32s([5], &[1.0, 0.0, 1.0, 0.0, 0.0]));
    assert_eq!(out[3], Value::i64([5], vec![1, 0, 1, 0, 0]));
    assert_eq!(out[4], mask([5], vec![true, true, true, true, false]));
    assert_eq!(out[5], f32s([5], &[2.0, -2.0, 0.0, 0.0, 0.0]));
    assert_eq!(out[6], Value::f64([5], vec![2.7f32 as f64, -2.7f32 as f64, 0.5, -0.5, 0.0]));
    Ok(())
}

// ---- data movement -------------------------------------------------------------------------

#[test]
fn reshape_keeps_row_major_order() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 4.into()])?;
    let outputs = [x.reshape([Dim::sym("B"), 2.into(), 2.into()])?, x.reshape([4.into(), Dim::sym("B")])?];
    let data = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
    let feeds = Feeds::from([("x", f32s([2, 4], &data))]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], f32s([2, 2, 2], &data));
    assert_eq!(out[1], f32s([4, 2], &data));
    Ok(())
}

#[test]
fn permute_of_rank_3() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [2, 2, 3])?;
    // x[i, j, k] = 6i + 3j + k.
    let data: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let feeds = Feeds::from([("x", Value::f32([2, 2, 3], data))]);
    let out = run(&g, &feeds, &[x.permute(&[1, 2, 0])?, x.permute(&[2, 1, 0])?, x.t()?])?;
    // out[i, j, k] = x[k, i, j] = 6k + 3i + j.
    assert_eq!(out[0], f32s([2, 3, 2], &[0.0, 6.0, 1.0, 7.0, 2.0, 8.0, 3.0, 9.0, 4.0, 10.0, 5.0, 11.0]));
    // out[i, j, k] = x[k, j, i] = 6k + 3j + i.
    assert_eq!(out[1], f32s([3, 2, 2], &[0.0, 6.0, 3.0, 9.0, 1.0, 7.0, 4.0, 10.0, 2.0, 8.0, 5.0, 11.0]));
    // out[i, j, k] = x[i, k, j] = 6i + 3k + j.
    assert_eq!(out[2], f32s([2, 3, 2], &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0, 6.0, 9.0, 7.0, 10.0, 8.0, 11.0]));
    Ok(())
}

#[test]
fn broadcast_to_static_and_symbolic_shapes() -> Result<()> {
    let g = Graph::new();
    let v = g.input("v", [3])?;
    let c = g.input("c", [2, 1])?;
    let s = g.input("s", Shape::scalar())?;
    let x = g.input("x", [Dim::sym("B")])?;
    let outputs = [
        v.broadcast_to([2, 3])?,
        c.broadcast_to([2, 3])?,
        s.broadcast_to([2, 2])?,
        v.broadcast_to([Dim::sym("B"), 3.into()])?,
        c.broadcast_to([2, 2, 2])?,
    ];
    let feeds = Feeds::from([
        ("v", f32s([3], &[1.0, 2.0, 3.0])),
        ("c", f32s([2, 1], &[7.0, 8.0])),
        ("s", f32s([], &[5.0])),
        ("x", f32s([2], &[0.0, 0.0])),
    ]);
    let mut wanted = outputs.to_vec();
    wanted.push(x);
    let out = run(&g, &feeds, &wanted)?;
    assert_eq!(out[0], f32s([2, 3], &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]));
    assert_eq!(out[1], f32s([2, 3], &[7.0, 7.0, 7.0, 8.0, 8.0, 8.0]));
    assert_eq!(out[2], f32s([2, 2], &[5.0; 4]));
    assert_eq!(out[3], f32s([2, 3], &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0]));
    assert_eq!(out[4], f32s([2, 2, 2], &[7.0, 7.0, 8.0, 8.0, 7.0, 7.0, 8.0, 8.0]));
    Ok(())
}

#[test]
fn slice_along_each_axis() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [2, 3])?;
    let y = g.input("y", [2, 3, 2])?;
    let outputs = [x.slice(1, 1, 3)?, x.slice(0, 1, 2)?, x.slice(1, 2, 2)?, x.slice(1, 0, 3)?, y.slice(1, 1, 2)?];
    let feeds = Feeds::from([
        ("x", f32s([2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
        ("y", Value::f32([2, 3, 2], (0..12).map(|v| v as f32).collect())),
    ]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], f32s([2, 2], &[2.0, 3.0, 5.0, 6.0]));
    assert_eq!(out[1], f32s([1, 3], &[4.0, 5.0, 6.0]));
    assert_eq!(out[2], f32s([2, 0], &[]));
    assert_eq!(out[3], f32s([2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    // y[i, 1, k] = 6i + 2 + k.
    assert_eq!(out[4], f32s([2, 1, 2], &[2.0, 3.0, 8.0, 9.0]));
    Ok(())
}

#[test]
fn concat_along_axis_0_and_1() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [1, 3])?;
    let b = g.input("b", [2, 3])?;
    let c = g.input("c", [2, 1])?;
    let d = g.input("d", [2, 2])?;
    let outputs = [Tensor::concat(&[a, b], 0)?, Tensor::concat(&[c, d], 1)?, Tensor::concat(&[d, c, d], 1)?];
    let feeds = Feeds::from([
        ("a", f32s([1, 3], &[1.0, 2.0, 3.0])),
        ("b", f32s([2, 3], &[4.0, 5.0, 6.0, 7.0, 8.0, 9.0])),
        ("c", f32s([2, 1], &[1.0, 2.0])),
        ("d", f32s([2, 2], &[3.0, 4.0, 5.0, 6.0])),
    ]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], f32s([3, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]));
    assert_eq!(out[1], f32s([2, 3], &[1.0, 3.0, 4.0, 2.0, 5.0, 6.0]));
    assert_eq!(out[2], f32s([2, 5], &[3.0, 4.0, 1.0, 3.0, 4.0, 5.0, 6.0, 2.0, 5.0, 6.0]));
    Ok(())
}

#[test]
fn concat_of_integers_and_masks() -> Result<()> {
    let g = Graph::new();
    let i = g.typed_input("i", [2], DType::I32)?;
    let m = i.gt(0)?;
    let feeds = Feeds::from([("i", Value::i32([2], vec![-1, 1]))]);
    let out = run(&g, &feeds, &[Tensor::concat(&[i, i], 0)?, Tensor::concat(&[m, m.eq(m)?], 0)?])?;
    assert_eq!(out[0], Value::i32([4], vec![-1, 1, -1, 1]));
    assert_eq!(out[1], mask([4], vec![false, true, true, true]));
    Ok(())
}

// ---- reductions --------------------------------------------------------------------------

/// `x[i, j, k] = 6i + 2j + k` of shape `[2, 3, 2]`.
fn counting_feeds() -> Feeds {
    Feeds::from([("x", Value::f32([2, 3, 2], (0..12).map(|v| v as f32).collect()))])
}

#[test]
fn sum_over_several_axes() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [2, 3, 2])?;
    let outputs = [
        x.sum(&[1], false)?,
        x.sum(&[1], true)?,
        x.sum(&[0, 2], true)?,
        x.sum(&[2, 0, 0], false)?,
        x.sum_all()?,
        x.sum(&[0, 1, 2], true)?,
        x.sum(&[], false)?,
    ];
    let out = run(&g, &counting_feeds(), &outputs)?;
    // Σ_j (6i + 2j + k) = 18i + 6 + 3k.
    assert_eq!(out[0], f32s([2, 2], &[6.0, 9.0, 24.0, 27.0]));
    assert_eq!(out[1], f32s([2, 1, 2], &[6.0, 9.0, 24.0, 27.0]));
    // Σ_{i,k} (6i + 2j + k) = 12 + 8j + 2 = 14 + 8j.
    assert_eq!(out[2], f32s([1, 3, 1], &[14.0, 22.0, 30.0]));
    assert_eq!(out[3], f32s([3], &[14.0, 22.0, 30.0]));
    assert_eq!(out[4], f32s([], &[66.0]));
    assert_eq!(out[5], f32s([1, 1, 1], &[66.0]));
    assert_eq!(out[6], Value::f32([2, 3, 2], (0..12).map(|v| v as f32).collect()));
    Ok(())
}

#[test]
fn max_over_several_axes() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [2, 3, 2])?;
    let outputs = [x.max(&[1], true)?, x.max(&[1], false)?, x.max(&[0, 2], false)?, x.max(&[0, 1, 2], false)?];
    let out = run(&g, &counting_feeds(), &outputs)?;
    // max_j (6i + 2j + k) = 6i + 4 + k.
    assert_eq!(out[0], f32s([2, 1, 2], &[4.0, 5.0, 10.0, 11.0]));
    assert_eq!(out[1], f32s([2, 2], &[4.0, 5.0, 10.0, 11.0]));
    // max_{i,k} (6i + 2j + k) = 7 + 2j.
    assert_eq!(out[2], f32s([3], &[7.0, 9.0, 11.0]));
    assert_eq!(out[3], f32s([], &[11.0]));
    Ok(())
}

#[test]
fn max_of_negative_numbers_and_integers() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [2, 2])?;
    let i = g.typed_input("i", [2, 2], DType::I32)?;
    let outputs = [x.max(&[0], false)?, x.max(&[1], true)?, i.max(&[1], false)?, i.sum(&[0], false)?];
    let feeds = Feeds::from([
        ("x", f32s([2, 2], &[-5.0, -3.0, -1.0, -8.0])),
        ("i", Value::i32([2, 2], vec![-5, -3, i32::MAX, 1])),
    ]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], f32s([2], &[-1.0, -3.0]));
    assert_eq!(out[1], f32s([2, 1], &[-3.0, -1.0]));
    assert_eq!(out[2], Value::i32([2], vec![-3, i32::MAX]));
    // i32::MAX - 5 fits; -3 + 1 = -2.
    assert_eq!(out[3], Value::i32([2], vec![i32::MAX - 5, -2]));
    Ok(())
}

#[test]
fn sum_of_i32_wraps() -> Result<()> {
    let g = Graph::new();
    let i = g.typed_input("i", [2], DType::I32)?;
    let feeds = Feeds::from([("i", Value::i32([2], vec![i32::MAX, 1]))]);
    assert_eq!(run1(&g, &feeds, i.sum_all()?)?, Value::i32([], vec![i32::MIN]));
    Ok(())
}

// ---- matmul ------------------------------------------------------------------------------

#[test]
fn matmul_2d() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 3])?;
    let b = g.input("b", [3, 2])?;
    let feeds = Feeds::from([
        ("a", f32s([2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
        ("b", f32s([3, 2], &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0])),
    ]);
    let out = run(&g, &feeds, &[a.matmul(b)?, b.matmul(a)?])?;
    assert_eq!(out[0], f32s([2, 2], &[58.0, 64.0, 139.0, 154.0]));
    // [[7,8],[9,10],[11,12]] · [[1,2,3],[4,5,6]].
    assert_eq!(out[1], f32s([3, 3], &[39.0, 54.0, 69.0, 49.0, 68.0, 87.0, 59.0, 82.0, 105.0]));
    Ok(())
}

#[test]
fn matmul_batched_with_a_shared_matrix() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 2, 2])?;
    let b = g.input("b", [2, 2])?;
    let feeds = Feeds::from([
        ("a", f32s([2, 2, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 2.0, 3.0, 4.0])),
        ("b", f32s([2, 2], &[5.0, 6.0, 7.0, 8.0])),
    ]);
    let out = run(&g, &feeds, &[a.matmul(b)?, b.matmul(a)?])?;
    assert_eq!(out[0], f32s([2, 2, 2], &[5.0, 6.0, 7.0, 8.0, 19.0, 22.0, 43.0, 50.0]));
    // [[5,6],[7,8]] · I, then [[5,6],[7,8]] · [[1,2],[3,4]] = [[23,34],[31,46]].
    assert_eq!(out[1], f32s([2, 2, 2], &[5.0, 6.0, 7.0, 8.0, 23.0, 34.0, 31.0, 46.0]));
    Ok(())
}

#[test]
fn matmul_broadcasts_batch_dims() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [2, 1, 1, 2])?;
    let b = g.input("b", [3, 2, 1])?;
    let feeds = Feeds::from([
        ("a", f32s([2, 1, 1, 2], &[1.0, 2.0, 3.0, 4.0])),
        ("b", f32s([3, 2, 1], &[1.0, 1.0, 2.0, 1.0, 3.0, 1.0])),
    ]);
    let out = run1(&g, &feeds, a.matmul(b)?)?;
    // out[p, q] = a[p] · b[q] = a[p][0]·(q + 1) + a[p][1].
    assert_eq!(out, f32s([2, 3, 1, 1], &[3.0, 4.0, 5.0, 7.0, 10.0, 13.0]));
    Ok(())
}

#[test]
fn matmul_with_a_symbolic_batch() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    let w = g.param("w", [2, 3], Init::Values(f32s([2, 3], &[1.0, 0.0, 2.0, 0.0, 1.0, -1.0])))?;
    let feeds = Feeds::from([("x", f32s([3, 2], &[1.0, 2.0, 3.0, 4.0, -1.0, 0.5]))]);
    let out = run1(&g, &feeds, x.matmul(w)?)?;
    assert_eq!(out, f32s([3, 3], &[1.0, 2.0, 0.0, 3.0, 4.0, 2.0, -1.0, 0.5, -2.5]));
    Ok(())
}

// ---- indices -----------------------------------------------------------------------------

#[test]
fn gather_with_repeated_indices() -> Result<()> {
    let g = Graph::new();
    let table = g.input("table", [3, 2])?;
    let idx = g.typed_input("idx", [2, 2], DType::I64)?;
    let idx32 = g.typed_input("idx32", [4], DType::I32)?;
    let vector = g.input("vector", [3])?;
    let outputs = [table.gather(idx)?, table.gather(idx32)?, vector.gather(idx32)?];
    let feeds = Feeds::from([
        ("table", f32s([3, 2], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0])),
        ("idx", Value::i64([2, 2], vec![2, 0, 2, 2])),
        ("idx32", Value::i32([4], vec![1, 1, 0, 1])),
        ("vector", f32s([3], &[7.0, 8.0, 9.0])),
    ]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], f32s([2, 2, 2], &[4.0, 5.0, 0.0, 1.0, 4.0, 5.0, 4.0, 5.0]));
    assert_eq!(out[1], f32s([4, 2], &[2.0, 3.0, 2.0, 3.0, 0.0, 1.0, 2.0, 3.0]));
    assert_eq!(out[2], f32s([4], &[8.0, 8.0, 7.0, 8.0]));
    Ok(())
}

#[test]
fn scatter_add_with_repeated_indices() -> Result<()> {
    let g = Graph::new();
    let idx = g.typed_input("idx", [4], DType::I64)?;
    let updates = g.input("updates", [4, 2])?;
    let counts = g.typed_input("counts", [4], DType::I32)?;
    let outputs = [g.zeros([3, 2]).scatter_add(idx, updates)?, g.fill([2], DType::I32, 0.0).scatter_add(idx, counts)?];
    let feeds = Feeds::from([
        ("idx", Value::i64([4], vec![1, 0, 1, 1])),
        ("updates", f32s([4, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])),
        ("counts", Value::i32([4], vec![1, 10, 100, 1000])),
    ]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], f32s([3, 2], &[3.0, 4.0, 13.0, 16.0, 0.0, 0.0]));
    assert_eq!(out[1], Value::i32([2], vec![10, 1101]));
    Ok(())
}

#[test]
fn slice_nd_keeps_every_step_th_element_of_each_range() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [5, 4])?;
    // numpy: x[0:5:2, 1:4:2] and x[1:4:3, 0:4:1].
    let outputs = [x.slice_nd(&[(0, 5, 2), (1, 4, 2)])?, x.slice_nd(&[(1, 4, 3)])?];
    let values: Vec<f32> = (0..20).map(|v| v as f32).collect();
    let out = run(&g, &Feeds::from([("x", f32s([5, 4], &values))]), &outputs)?;
    assert_eq!(out[0], f32s([3, 2], &[1.0, 3.0, 9.0, 11.0, 17.0, 19.0]));
    assert_eq!(out[1], f32s([1, 4], &[4.0, 5.0, 6.0, 7.0]));
    // numpy's x[:, ::3] over a symbolic batch.
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 4.into()])?;
    let every_third = x.slice_nd(&[Tensor::WHOLE_AXIS, (0, 4, 3)])?;
    assert_eq!(every_third.shape(), Shape::from([Dim::sym("B"), 2.into()]));
    let out = run1(&g, &Feeds::from([("x", f32s([2, 4], &values[..8]))]), every_third)?;
    assert_eq!(out, f32s([2, 2], &[0.0, 3.0, 4.0, 7.0]));
    Ok(())
}

#[test]
fn transpose_permutes_as_numpy_and_t_swaps_the_last_two() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [2, 3])?;
    let cube = g.input("cube", [1, 2, 3])?;
    let outputs = [x.transpose(&[1, 0])?, x.t()?, cube.transpose(&[2, 0, 1])?, cube.t()?];
    let values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let feeds = Feeds::from([("x", f32s([2, 3], &values)), ("cube", f32s([1, 2, 3], &values))]);
    let out = run(&g, &feeds, &outputs)?;
    let transposed = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
    assert_eq!(out[0], f32s([3, 2], &transposed));
    assert_eq!(out[1], f32s([3, 2], &transposed));
    assert_eq!(out[2], f32s([3, 1, 2], &transposed));
    assert_eq!(out[3], f32s([1, 3, 2], &transposed));
    Ok(())
}

#[test]
fn min_reduces_and_minimum_is_elementwise() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [2, 3])?;
    let outputs = [x.min(&[1], false)?, x.minimum(0.0)?, x.max(&[0], true)?, x.maximum(0.0)?];
    let feeds = Feeds::from([("x", f32s([2, 3], &[3.0, -1.0, 2.0, 0.5, 4.0, -6.0]))]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], f32s([2], &[-1.0, -6.0]));
    assert_eq!(out[1], f32s([2, 3], &[0.0, -1.0, 0.0, 0.0, 0.0, -6.0]));
    assert_eq!(out[2], f32s([1, 3], &[3.0, 4.0, 2.0]));
    assert_eq!(out[3], f32s([2, 3], &[3.0, 0.0, 2.0, 0.5, 4.0, 0.0]));
    Ok(())
}

#[test]
fn scatter_add_keeps_the_table_s_rows() -> Result<()> {
    let g = Graph::new();
    let table = g.input("table", [3, 2])?;
    let idx = g.typed_input("idx", [3], DType::I32)?;
    let updates = g.input("updates", [3, 2])?;
    let feeds = Feeds::from([
        ("table", f32s([3, 2], &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0])),
        ("idx", Value::i32([3], vec![2, 0, 2])),
        ("updates", f32s([3, 2], &[10.0, 20.0, 30.0, 40.0, 50.0, 60.0])),
    ]);
    let out = run1(&g, &feeds, table.scatter_add(idx, updates)?)?;
    assert_eq!(out, f32s([3, 2], &[31.0, 41.0, 2.0, 2.0, 63.0, 83.0]));
    Ok(())
}

#[test]
fn scatter_add_into_a_symbolic_number_of_rows() -> Result<()> {
    let g = Graph::new();
    let table = g.input("table", [Dim::sym("N"), 1.into()])?;
    let idx = g.typed_input("idx", [2], DType::I64)?;
    // The table is the base: its rows stay, and the picked row gains itself twice.
    let rows = table.scatter_add(idx, table.gather(idx)?)?;
    let feeds = Feeds::from([("table", f32s([3, 1], &[1.0, 2.0, 3.0])), ("idx", Value::i64([2], vec![2, 2]))]);
    assert_eq!(run1(&g, &feeds, rows)?, f32s([3, 1], &[1.0, 2.0, 9.0]));
    Ok(())
}

#[test]
fn one_hot_rows() -> Result<()> {
    let g = Graph::new();
    let idx = g.typed_input("idx", [3], DType::I64)?;
    let grid = g.typed_input("grid", [2, 2], DType::I32)?;
    let feeds = Feeds::from([("idx", Value::i64([3], vec![2, 0, 1])), ("grid", Value::i32([2, 2], vec![0, 1, 1, 0]))]);
    let out = run(&g, &feeds, &[idx.one_hot(3)?, grid.one_hot(2)?, idx.one_hot(4)?])?;
    assert_eq!(out[0], f32s([3, 3], &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0]));
    assert_eq!(out[1], f32s([2, 2, 2], &[1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0]));
    assert_eq!(out[2], f32s([3, 4], &[0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]));
    Ok(())
}

// ---- constants, fills, sizes, random -------------------------------------------------------

#[test]
fn fill_zeros_and_ones_of_a_symbolic_shape() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B")])?;
    let b = Dim::sym("B");
    let outputs = [
        g.zeros([b.clone(), 2.into()]),
        g.ones([b.clone()]),
        g.fill([2.into(), b.clone()], DType::I64, 7.0),
        g.fill(Shape::scalar(), DType::F32, -1.5),
        x.add(g.ones([b]))?,
    ];
    let feeds = Feeds::from([("x", f32s([3], &[1.0, 2.0, 3.0]))]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], f32s([3, 2], &[0.0; 6]));
    assert_eq!(out[1], f32s([3], &[1.0; 3]));
    assert_eq!(out[2], Value::i64([2, 3], vec![7; 6]));
    assert_eq!(out[3], f32s([], &[-1.5]));
    assert_eq!(out[4], f32s([3], &[2.0, 3.0, 4.0]));
    Ok(())
}

#[test]
fn constants_of_every_dtype() -> Result<()> {
    let g = Graph::new();
    let outputs = [
        g.constant(f32s([2], &[1.5, -2.0])),
        g.constant(Value::i64([2], vec![3, -4])),
        g.constant(mask([2], vec![true, false])),
        g.typed_scalar(2.0, DType::I32),
        g.scalar(0.25),
    ];
    let out = run(&g, &Feeds::new(), &outputs)?;
    assert_eq!(out[0], f32s([2], &[1.5, -2.0]));
    assert_eq!(out[1], Value::i64([2], vec![3, -4]));
    assert_eq!(out[2], mask([2], vec![true, false]));
    assert_eq!(out[3], Value::i32([], vec![2]));
    assert_eq!(out[4], f32s([], &[0.25]));
    Ok(())
}

#[test]
fn dim_size_multiplies_runtime_sizes() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), Dim::sym("T")])?;
    let (b, t) = (Dim::sym("B"), Dim::sym("T"));
    let outputs = [
        g.dim_size(&[b.clone(), t.clone()], DType::F32)?,
        g.dim_size(std::slice::from_ref(&b), DType::I64)?,
        g.dim_size(&[5.into(), t], DType::F64)?,
        g.dim_size(&[], DType::I32)?,
        x.sum_all()?.div(g.dim_size(&[b], DType::F32)?)?,
    ];
    let feeds = Feeds::from([("x", Value::f32([3, 4], (0..12).map(|v| v as f32).collect()))]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], f32s([], &[12.0]));
    assert_eq!(out[1], Value::i64([], vec![3]));
    assert_eq!(out[2], Value::f64([], vec![20.0]));
    assert_eq!(out[3], Value::i32([], vec![1]));
    assert_eq!(out[4], f32s([], &[22.0]));
    Ok(())
}

#[test]
fn random_draws_repeat_by_seed_and_counter() -> Result<()> {
    let g = Graph::new();
    let step = g.typed_input("step", Shape::scalar(), DType::I64)?;
    let u = g.random_uniform([1000], 42, step)?;
    let u_again = g.random_uniform([1000], 42, step)?;
    let u_other_seed = g.random_uniform([1000], 43, step)?;
    let n = g.random_normal([1000], 42, step)?;
    let at = |counter: i64| -> Result<Vec<Value>> {
        let feeds = Feeds::from([("step", Value::i64([], vec![counter]))]);
        run(&g, &feeds, &[u, u_again, u_other_seed, n])
    };
    let first = at(0)?;
    let repeat = at(0)?;
    let next = at(1)?;
    assert_eq!(first, repeat);
    assert_eq!(first[0], first[1], "same seed and counter in one graph");
    for (i, value) in first.iter().enumerate() {
        assert_eq!(value.shape(), &[1000], "output {i}");
        assert_eq!(value.dtype(), DType::F32, "output {i}");
    }
    // A different counter or seed gives different numbers (here, almost all differ).
    let differing = |a: &Value, b: &Value| a.to_f64_vec().iter().zip(b.to_f64_vec()).filter(|(x, y)| **x != *y).count();
    assert!(differing(&first[0], &next[0]) > 990);
    assert!(differing(&first[0], &first[2]) > 990);
    assert!(differing(&first[3], &next[3]) > 990);
    // Uniform values lie in [0, 1) and fill it; normal values are finite and centred.
    for draw in [&first[0], &next[0], &first[2]] {
        let values = draw.to_f64_vec();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)), "uniform out of range");
        let mean = values.iter().sum::<f64>() / 1000.0;
        assert!((mean - 0.5).abs() < 0.05, "uniform mean {mean}");
        assert!(values.iter().any(|&v| v < 0.05) && values.iter().any(|&v| v > 0.95));
    }
    for draw in [&first[3], &next[3]] {
        let values = draw.to_f64_vec();
        assert!(values.iter().all(|v| v.is_finite() && v.abs() < 7.0), "normal out of range");
        let mean = values.iter().sum::<f64>() / 1000.0;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 1000.0;
        assert!(mean.abs() < 0.15, "normal mean {mean}");
        assert!((var - 1.0).abs() < 0.2, "normal variance {var}");
    }
    Ok(())
}

#[test]
fn random_of_a_symbolic_shape_is_a_prefix_of_a_longer_draw() -> Result<()> {
    // Element i depends only on (seed, counter, i), so the first elements of a longer draw
    // equal a shorter draw.
    let g = Graph::new();
    let step = g.typed_input("step", Shape::scalar(), DType::I32)?;
    let x = g.input("x", [Dim::sym("B")])?;
    let u = g.random_uniform([Dim::sym("B")], 7, step)?;
    let draw = |b: usize| -> Result<Vec<f64>> {
        let feeds = Feeds::from([("step", Value::i32([], vec![3])), ("x", Value::f32([b], vec![0.0; b]))]);
        Ok(run(&g, &feeds, &[u, x])?[0].to_f64_vec())
    };
    let (short, long) = (draw(5)?, draw(50)?);
    assert_eq!(short[..], long[..5]);
    Ok(())
}

// ---- composites --------------------------------------------------------------------------

#[test]
fn relu_sigmoid_softplus() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [6])?;
    let outputs = [layers::relu(x)?, layers::sigmoid(x)?, layers::softplus(x)?];
    let feeds = Feeds::from([("x", f32s([6], &[-1000.0, -1.0, 0.0, 1.0, 2.0, 1000.0]))]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], f32s([6], &[0.0, 0.0, 0.0, 1.0, 2.0, 1000.0]));
    // σ(1) = 1 / (1 + e^-1) = 0.7310585786; σ(-1) = 1 - σ(1); σ(2) = 0.8807970780.
    assert_close(&out[1], &[6], &[0.0, 0.2689414214, 0.5, 0.7310585786, 0.8807970780, 1.0]);
    // softplus(0) = ln 2, softplus(1) = ln(1 + e), softplus(-1) = ln(1 + e^-1),
    // softplus(2) = 2 + ln(1 + e^-2).
    assert_close(&out[2], &[6], &[0.0, 0.3132616875, LN_2, 1.3132616875, 2.1269280110, 1000.0]);
    for value in &out {
        assert!(value.to_f64_vec().iter().all(|v| v.is_finite()), "{value}");
    }
    Ok(())
}

#[test]
fn softmax_rows_sum_to_one() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 3.into()])?;
    let p = layers::softmax(x, 1)?;
    let outputs = [p, p.sum(&[1], false)?, layers::softmax(x, 0)?];
    let feeds = Feeds::from([("x", f32s([2, 3], &[1.0, 2.0, 3.0, 1000.0, 1000.0, 1000.0]))]);
    let out = run(&g, &feeds, &outputs)?;
    // e^-2, e^-1, 1 over 1 + e^-1 + e^-2 = 1.5032147244.
    let third = 1.0 / 3.0;
    assert_close(&out[0], &[2, 3], &[0.0900305732, 0.2447284711, 0.6652409558, third, third, third]);
    assert_close(&out[1], &[2], &[1.0, 1.0]);
    // Down the columns, the 1000s win completely.
    assert_close(&out[2], &[2, 3], &[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    Ok(())
}

#[test]
fn log_softmax_rows() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [2, 3])?;
    let feeds = Feeds::from([("x", f32s([2, 3], &[1.0, 2.0, 3.0, -1000.0, 0.0, 1000.0]))]);
    let out = run1(&g, &feeds, layers::log_softmax(x, 1)?)?;
    // ln(1 + e^-1 + e^-2) = 0.4076059644; the second row is exactly [-2000, -1000, 0].
    assert_close(&out, &[2, 3], &[-2.4076059644, -1.4076059644, -0.4076059644, -2000.0, -1000.0, 0.0]);
    Ok(())
}

#[test]
fn cross_entropy_against_a_hand_value() -> Result<()> {
    let g = Graph::new();
    let logits = g.input("logits", [Dim::sym("B"), 3.into()])?;
    let labels = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
    let loss = layers::cross_entropy(logits, labels)?;
    let feeds = Feeds::from([
        ("logits", f32s([2, 3], &[1.0, 2.0, 3.0, 0.0, 0.0, 0.0])),
        ("labels", Value::i64([2], vec![2, 0])),
    ]);
    let out = run1(&g, &feeds, loss)?;
    // Row 0: -log softmax = ln(1 + e^-1 + e^-2) = 0.4076059644; row 1: ln 3 = 1.0986122887.
    assert_close(&out, &[], &[(0.4076059644 + 1.0986122887) / 2.0]);
    Ok(())
}

#[test]
fn binary_cross_entropy_with_logits_against_a_hand_value() -> Result<()> {
    let g = Graph::new();
    let logits = g.input("logits", [3])?;
    let targets = g.input("targets", [3])?;
    let loss = layers::binary_cross_entropy_with_logits(logits, targets)?;
    let feeds = Feeds::from([("logits", f32s([3], &[0.0, 2.0, -1.0])), ("targets", f32s([3], &[1.0, 0.0, 1.0]))]);
    let out = run1(&g, &feeds, loss)?;
    // ln 2, softplus(2), softplus(-1) + 1.
    assert_close(&out, &[], &[(LN_2 + 2.1269280110 + 1.3132616875) / 3.0]);
    // Extreme logits stay finite: x = 1000 with t = 1 costs nothing, with t = 0 costs 1000.
    let feeds =
        Feeds::from([("logits", f32s([3], &[1000.0, 1000.0, -1000.0])), ("targets", f32s([3], &[1.0, 0.0, 0.0]))]);
    assert_close(&run1(&g, &feeds, loss)?, &[], &[1000.0 / 3.0]);
    Ok(())
}

#[test]
fn mse_against_a_hand_value() -> Result<()> {
    let g = Graph::new();
    let prediction = g.input("prediction", [Dim::sym("B")])?;
    let target = g.input("target", [Dim::sym("B")])?;
    let loss = layers::mse(prediction, target)?;
    let feeds = Feeds::from([("prediction", f32s([3], &[1.0, 2.0, 3.0])), ("target", f32s([3], &[1.0, 0.0, 5.0]))]);
    assert_close(&run1(&g, &feeds, loss)?, &[], &[8.0 / 3.0]);
    Ok(())
}

#[test]
fn mean_over_a_symbolic_dim() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    let outputs = [layers::mean(x, &[0], false)?, layers::mean(x, &[1], true)?, layers::mean_all(x)?];
    let feeds = Feeds::from([("x", f32s([3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], f32s([2], &[3.0, 4.0]));
    assert_eq!(out[1], f32s([3, 1], &[1.5, 3.5, 5.5]));
    assert_eq!(out[2], f32s([], &[3.5]));
    // The same graph with B = 1.
    let feeds = Feeds::from([("x", f32s([1, 2], &[1.0, 4.0]))]);
    let out = run(&g, &feeds, &outputs)?;
    assert_eq!(out[0], f32s([2], &[1.0, 4.0]));
    assert_eq!(out[2], f32s([], &[2.5]));
    Ok(())
}

#[test]
fn var_is_the_biased_variance() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [2, 3])?;
    let outputs = [layers::var(x, &[1], false)?, layers::var(x, &[0, 1], false)?, layers::var(x, &[0], true)?];
    let feeds = Feeds::from([("x", f32s([2, 3], &[1.0, 2.0, 3.0, 2.0, 4.0, 9.0]))]);
    let out = run(&g, &feeds, &outputs)?;
    // Row means 2 and 5: (1 + 0 + 1) / 3 and (9 + 1 + 16) / 3.
    assert_close(&out[0], &[2], &[2.0 / 3.0, 26.0 / 3.0]);
    // Mean 3.5; squared deviations sum to 41.5.
    assert_close(&out[1], &[], &[41.5 / 6.0]);
    // Columns: (1, 2), (2, 4), (3, 9): half-differences squared.
    assert_close(&out[2], &[1, 3], &[0.25, 1.0, 9.0]);
    Ok(())
}

#[test]
fn layer_norm_against_hand_values() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [2, 4])?;
    let gamma = g.param("ln.weight", [4], Init::Values(f32s([4], &[1.0, 1.0, 2.0, 2.0])))?;
    let beta = g.param("ln.bias", [4], Init::Values(f32s([4], &[0.0, 0.0, 0.0, 1.0])))?;
    let plain = layers::layer_norm_affine(x, gamma, beta, 0.0)?;
    let smoothed = layers::layer_norm_affine(x, gamma, beta, 1.0)?;
    let feeds = Feeds::from([("x", f32s([2, 4], &[1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0]))]);
    let out = run(&g, &feeds, &[plain, smoothed])?;
    // Row 0: mean 2.5, variance 1.25, so (x - 2.5) / 1.1180339887 = ±1.3416407865, ±0.4472135955.
    let (a, b) = (1.3416407865, 0.4472135955);
    // With eps = 0 the constant row divides 0 by 0.
    let n = f64::NAN;
    assert_close(&out[0], &[2, 4], &[-a, -b, 2.0 * b, 2.0 * a + 1.0, n, n, n, n]);
    // With eps = 1: row 0 divides by sqrt(2.25) = 1.5; the constant row gives beta.
    assert_close(&out[1], &[2, 4], &[-1.0, -1.0 / 3.0, 2.0 / 3.0, 3.0, 0.0, 0.0, 0.0, 1.0]);
    // Without scale and shift: the normalised rows alone.
    let normalised = run1(&g, &feeds, layers::layer_norm(x, 1.0)?)?;
    assert_close(&normalised, &[2, 4], &[-1.0, -1.0 / 3.0, 1.0 / 3.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    // The layer module uses eps = 1e-5 and starts at weight 1, bias 0.
    let g = Graph::new();
    let x = g.input("x", [1, 4])?;
    let layer = layers::LayerNorm::new(&g, "ln", 4)?;
    let feeds = Feeds::from([("x", f32s([1, 4], &[1.0, 2.0, 3.0, 4.0]))]);
    let std = (1.25f64 + 1e-5).sqrt();
    assert_close(&run1(&g, &feeds, layer.forward(x)?)?, &[1, 4], &[-1.5 / std, -0.5 / std, 0.5 / std, 1.5 / std]);
    Ok(())
}

#[test]
fn linear_against_hand_values() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 2.into()])?;
    let weight = Init::Values(f32s([3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 1.0]));
    let bias = Init::Values(f32s([3], &[0.5, -1.0, 0.0]));
    let layer = layers::Linear::with_init(&g, "fc", 2, 3, weight, bias)?;
    let with_bias = layer.forward(x)?;
    let without_bias = layers::linear(x, layer.weight, None)?;
    let feeds = Feeds::from([("x", f32s([2, 2], &[1.0, 2.0, 3.0, 4.0]))]);
    let out = run(&g, &feeds, &[with_bias, without_bias])?;
    // x · weightᵀ = [[1, 2, 3], [3, 4, 7]].
    assert_eq!(out[0], f32s([2, 3], &[1.5, 1.0, 3.0, 3.5, 3.0, 7.0]));
    assert_eq!(out[1], f32s([2, 3], &[1.0, 2.0, 3.0, 3.0, 4.0, 7.0]));
    Ok(())
}

// ---- precision, symbolic sizes, outputs ------------------------------------------------------

#[test]
fn precision_f64_computes_f32_nodes_in_f64() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [2])?;
    let i = g.typed_input("i", [2], DType::I32)?;
    let third = x.div(3.0)?;
    let summed = x.mul(g.constant(f32s([2], &[0.1, 0.2])))?.sum_all()?;
    let ints = i.mul(2)?;
    let feeds = Feeds::from([("x", f32s([2], &[1.0, 2.0])), ("i", Value::i32([2], vec![1, -2]))]);
    let params = ParamStore::new();

    let declared =
        Interpreter::new(&g).precision(Precision::Declared).run(&feeds, &params, &[third, summed, ints, x])?;
    assert_eq!(declared[0], f32s([2], &[1.0 / 3.0, 2.0 / 3.0]));
    assert_eq!(declared[1], f32s([], &[(0.1f32 as f64 + 2.0 * 0.2f32 as f64) as f32]));
    assert_eq!(declared[2], Value::i32([2], vec![2, -4]));
    assert_eq!(declared[3], f32s([2], &[1.0, 2.0]));
    assert_eq!(Interpreter::new(&g).run(&feeds, &params, &[third])?[0], declared[0]);

    let wide = Interpreter::new(&g).precision(Precision::F64).run(&feeds, &params, &[third, summed, ints, x])?;
    assert_eq!(wide[0], Value::f64([2], vec![1.0 / 3.0, 2.0 / 3.0]));
    // The constant was stored as f32, then computed on in f64.
    assert_eq!(wide[1], Value::f64([], vec![0.1f32 as f64 + 2.0 * 0.2f32 as f64]));
    assert_eq!(wide[2], Value::i32([2], vec![2, -4]));
    assert_eq!(wide[3], Value::f64([2], vec![1.0, 2.0]));

    // Under F64 an f32 input also accepts f64 values, kept at full precision.
    let feeds = Feeds::from([("x", Value::f64([2], vec![0.1, 1.0])), ("i", Value::i32([2], vec![0, 0]))]);
    let wide = Interpreter::new(&g).precision(Precision::F64).run(&feeds, &params, &[third])?;
    assert_eq!(wide[0], Value::f64([2], vec![0.1 / 3.0, 1.0 / 3.0]));
    Ok(())
}

/// Row `i` of the batch fed to the symbolic-batch model.
fn batch_row(i: usize) -> [f32; 3] {
    let t = i as f32;
    [(t * 0.37).sin(), (t * 0.11).cos() - 0.5, (t % 7.0) - 3.0]
}

#[test]
fn one_graph_serves_every_batch_size() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 3.into()])?;
    let w = g.param("w", [3, 2], Init::Values(f32s([3, 2], &[0.5, -1.0, 1.0, 0.25, -0.5, 2.0])))?;
    let h = layers::relu(x.matmul(w)?)?;
    let per_row = h.sum(&[1], false)?;
    let mean = layers::mean_all(per_row)?;
    let batch_mean = layers::mean(x, &[0], false)?;
    let evaluate = |b: usize| -> Result<Vec<Value>> {
        let data: Vec<f32> = (0..b).flat_map(batch_row).collect();
        let feeds = Feeds::from([("x", Value::f32([b, 3], data))]);
        run(&g, &feeds, &[per_row, mean, batch_mean])
    };
    let big = evaluate(10_000)?;
    assert_eq!(big[0].shape(), &[10_000]);
    let rows = big[0].to_f64_vec();
    // Each row by hand: relu(x · w) summed.
    for (i, &got) in rows.iter().enumerate().step_by(997) {
        let [a, b, c] = batch_row(i).map(f64::from);
        let expected = (0.5 * a + b - 0.5 * c).max(0.0) + (-a + 0.25 * b + 2.0 * c).max(0.0);
        assert!((got - expected).abs() < 1e-5, "row {i}: {got} vs {expected}");
    }
    let total: f64 = rows.iter().sum();
    assert_close(&big[1], &[], &[total / 10_000.0]);
    for b in [1, 7] {
        let small = evaluate(b)?;
        // Rows are computed independently: a smaller batch gives exactly the same rows.
        assert_eq!(small[0].to_f64_vec()[..], rows[..b], "B = {b}");
        let mean_of_prefix = rows[..b].iter().sum::<f64>() / b as f64;
        assert_close(&small[1], &[], &[mean_of_prefix]);
        let column_means: Vec<f64> =
            (0..3).map(|c| (0..b).map(|i| f64::from(batch_row(i)[c])).sum::<f64>() / b as f64).collect();
        assert_close(&small[2], &[3], &column_means);
    }
    Ok(())
}

#[test]
fn outputs_may_be_leaves() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [2])?;
    let w = g.param("w", [2], Init::Values(f32s([2], &[3.0, 4.0])))?;
    let k = g.typed_input("k", [1], DType::I64)?;
    let y = x.mul(w)?;
    let feeds = Feeds::from([("x", f32s([2], &[1.0, 2.0])), ("k", Value::i64([1], vec![9]))]);
    let out = run(&g, &feeds, &[x, w, y, k])?;
    assert_eq!(out[0], f32s([2], &[1.0, 2.0]));
    assert_eq!(out[1], f32s([2], &[3.0, 4.0]));
    assert_eq!(out[2], f32s([2], &[3.0, 8.0]));
    assert_eq!(out[3], Value::i64([1], vec![9]));
    // A leaf alone.
    assert_eq!(run(&g, &feeds, &[w])?, vec![f32s([2], &[3.0, 4.0])]);
    Ok(())
}

#[test]
fn the_same_node_may_be_requested_twice() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [2])?;
    let e = x.exp()?;
    let y = e.add(x)?;
    let z = y.mul(e)?;
    let feeds = Feeds::from([("x", f32s([2], &[0.0, 1.0]))]);
    let out = run(&g, &feeds, &[y, e, y, z, x, e])?;
    let e_values = [1.0, E];
    let y_values = [1.0, 1.0 + E];
    assert_close(&out[0], &[2], &y_values);
    assert_close(&out[1], &[2], &e_values);
    assert_eq!(out[0], out[2]);
    assert_close(&out[3], &[2], &[1.0, (1.0 + E) * E]);
    assert_eq!(out[4], f32s([2], &[0.0, 1.0]));
    assert_eq!(out[1], out[5]);
    // An intermediate requested together with a later node that reads it.
    let out = run(&g, &feeds, &[z, e])?;
    assert_close(&out[1], &[2], &e_values);
    Ok(())
}

#[test]
fn unneeded_inputs_and_params_may_be_missing() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [2])?;
    let unused = g.input("unused", [2])?;
    let w = g.param("w", [2], Init::ONES)?;
    let _ = unused.mul(w)?;
    let y = x.mul(2.0)?;
    let feeds = Feeds::from([("x", f32s([2], &[1.0, 2.0]))]);
    let out = Interpreter::new(&g).run(&feeds, &ParamStore::new(), &[y])?;
    assert_eq!(out[0], f32s([2], &[2.0, 4.0]));
    Ok(())
}

#[test]
fn gradients_evaluate_to_hand_values() -> Result<()> {
    // d/dx Σ x² = 2x, d/dw Σ (x·w) = x, through a broadcast and a reduction.
    let g = Graph::new();
    let x = g.input("x", [2, 2])?;
    let w = g.param("w", [2], Init::Values(f32s([2], &[1.0, -1.0])))?;
    let loss = x.square()?.sum_all()?.add(x.mul(w)?.sum_all()?)?;
    let grads = g.grad(loss, &[x, w])?;
    let feeds = Feeds::from([("x", f32s([2, 2], &[1.0, 2.0, 3.0, 4.0]))]);
    let out = run(&g, &feeds, &grads)?;
    assert_eq!(out[0], f32s([2, 2], &[3.0, 3.0, 7.0, 7.0]));
    assert_eq!(out[1], f32s([2], &[4.0, 6.0]));
    Ok(())
}

// ---- masks and dtypes ------------------------------------------------------------------

#[test]
fn ne_is_true_where_values_differ_and_wherever_a_nan_is() -> Result<()> {
    let g = Graph::new();
    let a = g.constant(Value::f32([4], vec![1.0, f32::NAN, 2.0, -0.0]));
    let b = g.constant(Value::f32([4], vec![1.0, f32::NAN, 3.0, 0.0]));
    let labels = g.constant(Value::i64([3], vec![0, 1, 2]));
    let out = run(&g, &Feeds::new(), &[a.ne(b)?, labels.ne(1)?])?;
    assert_eq!(out[0].data(), &Data::Bool(vec![false, true, true, false]));
    assert_eq!(out[1].data(), &Data::Bool(vec![true, false, true]));
    Ok(())
}

#[test]
fn a_mask_in_arithmetic_becomes_the_float_it_meets() -> Result<()> {
    let g = Graph::new();
    let x = g.constant(Value::f64([3], vec![-1.5, 0.25, 2.0]));
    let positive = x.gt(0.0)?;
    let (masked, flipped, doubled) = (positive * x, 1.0 - x.lt(0.0)?, x.gt(0.0)? * 2.0);
    assert_eq!((masked.dtype(), flipped.dtype(), doubled.dtype()), (DType::F64, DType::F32, DType::F32));
    let out = run(&g, &Feeds::new(), &[masked, flipped, doubled])?;
    assert_eq!(out[0].data(), &Data::F64(vec![0.0, 0.25, 2.0]));
    assert_eq!(out[1].data(), &Data::F32(vec![0.0, 1.0, 1.0]));
    assert_eq!(out[2].data(), &Data::F32(vec![0.0, 2.0, 2.0]));
    Ok(())
}

#[test]
fn a_mask_sums_to_an_i64_count() -> Result<()> {
    let g = Graph::new();
    let x = g.constant(Value::f32([2, 3], vec![1.0, -1.0, 2.0, -3.0, -4.0, 5.0]));
    let (rows, all) = (x.gt(0.0)?.sum(&[1], false)?, x.gt(0.0)?.sum_all()?);
    assert_eq!((rows.dtype(), all.dtype()), (DType::I64, DType::I64));
    let out = run(&g, &Feeds::new(), &[rows, all])?;
    assert_eq!(out[0].data(), &Data::I64(vec![2, 1]));
    assert_eq!(out[1].data(), &Data::I64(vec![3]));
    Ok(())
}

#[test]
fn the_mean_of_a_mask_is_the_f32_fraction_true_and_integers_average_untruncated() -> Result<()> {
    let g = Graph::new();
    let x = g.constant(Value::f32([2, 3], vec![1.0, -1.0, 2.0, -3.0, -4.0, 5.0]));
    let ids = g.constant(Value::i64([2, 2], vec![1, 2, 3, 3]));
    let (rows, all) = (layers::mean(x.gt(0.0)?, &[1], false)?, layers::mean_all(x.gt(0.0)?)?);
    let halves = layers::mean(ids, &[1], false)?;
    assert_eq!((rows.dtype(), all.dtype(), halves.dtype()), (DType::F32, DType::F32, DType::F32));
    let out = run(&g, &Feeds::new(), &[rows, all, halves])?;
    assert_close(&out[0], &[2], &[2.0 / 3.0, 1.0 / 3.0]);
    assert_close(&out[1], &[], &[0.5]);
    assert_eq!(out[2].data(), &Data::F32(vec![1.5, 3.0]));
    Ok(())
}

#[test]
fn select_reads_a_number_mask_as_nonzero_is_true() -> Result<()> {
    let g = Graph::new();
    let mask = g.constant(Value::f64([5], vec![1.0, 0.0, -0.0, f64::NAN, 0.5]));
    let counts = g.constant(Value::i32([5], vec![0, 3, 0, -1, 0]));
    let a = g.constant(Value::f64([5], vec![1.0, 2.0, 3.0, 4.0, 5.0]));
    let out = run(&g, &Feeds::new(), &[mask.select(a, -1.0)?, counts.select(a, 0.0)?])?;
    assert_eq!(out[0].data(), &Data::F64(vec![1.0, -1.0, -1.0, 4.0, 5.0]));
    assert_eq!(out[1].data(), &Data::F64(vec![0.0, 2.0, 0.0, 4.0, 0.0]));
    Ok(())
}

#[test]
fn constructors_of_a_dtype_make_that_dtype() -> Result<()> {
    let g = Graph::new();
    let x = g.input_of("x", [2], DType::F64)?;
    let (zeros, ones, half) = (g.zeros_of([2], DType::F64), g.ones_of([2], DType::I32), g.scalar_of(0.5, DType::F64));
    let labels = g.constant(Value::i64([2], vec![1, 0]));
    let rows = labels.one_hot_of(2, DType::F64)?;
    let dtypes = [x.dtype(), zeros.dtype(), ones.dtype(), half.dtype(), rows.dtype(), labels.one_hot(2)?.dtype()];
    assert_eq!(dtypes, [DType::F64, DType::F64, DType::I32, DType::F64, DType::F64, DType::F32]);
    let feeds = Feeds::from([("x", Value::f64([2], vec![3.0, 4.0]))]);
    let out = run(&g, &feeds, &[x * half + zeros, ones, rows])?;
    assert_eq!(out[0].data(), &Data::F64(vec![1.5, 2.0]));
    assert_eq!(out[1].data(), &Data::I32(vec![1, 1]));
    assert_eq!(out[2].data(), &Data::F64(vec![0.0, 1.0, 1.0, 0.0]));
    Ok(())
}

/// A constant is the number written, in `f64` graphs and in `f32` graphs computed at
/// `Precision::F64`, and its `f32` rounding (the same bits as an `f32` literal) at `f32`.
#[test]
fn constants_keep_their_f64_value_until_computed() -> Result<()> {
    let g = Graph::new();
    let x = g.input_of("x", [2], DType::F64)?;
    let y = g.input("y", [2])?;
    let in_f64 = [x + 1e-5, x * 0.1, x + g.scalar_of(1e-5, DType::F64)];
    let in_f32 = [y + 1e-5, y * 0.1];
    let feeds = Feeds::from([("x", Value::f64([2], vec![0.0, 1.0])), ("y", Value::f32([2], vec![0.0, 1.0]))]);
    let declared = run(&g, &feeds, &[in_f64[0], in_f64[1], in_f64[2], in_f32[0], in_f32[1]])?;
    assert_eq!(declared[0].data(), &Data::F64(vec![1e-5, 1.0 + 1e-5]));
    assert_eq!(declared[1].data(), &Data::F64(vec![0.0, 0.1]));
    assert_eq!(declared[2].data(), &Data::F64(vec![1e-5, 1.0 + 1e-5]));
    assert_eq!(declared[3].data(), &Data::F32(vec![1e-5f32, 1.0 + 1e-5f32]));
    assert_eq!(declared[4].data(), &Data::F32(vec![0.0, 0.1f32]));
    let wide = Interpreter::new(&g).precision(Precision::F64).run(&feeds, &ParamStore::new(), &in_f32)?;
    assert_eq!(wide[0].data(), &Data::F64(vec![1e-5, 1.0 + 1e-5]));
    assert_eq!(wide[1].data(), &Data::F64(vec![0.0, 0.1]));
    Ok(())
}
