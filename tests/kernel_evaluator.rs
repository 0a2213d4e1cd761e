//! The kernel IR's reference evaluator on its own terms: bit for bit with the compiled code
//! where both compute in the same order with the same roundings (no FMA, no tuned GEMM), and
//! the data-dependent errors and bad feeds reported as the compiled function reports them.
//! (Its agreement with the interpreter over every op is checked in `compiled_ops.rs`, over
//! the workloads in `bench/tests/evaluator.rs`.)

use kiln::compiler::codegen::Options;
use kiln::compiler::compile::lower_to_kernels;
use kiln::compiler::kernel::Evaluator;
use kiln::compiler::random;
use kiln::prelude::*;
use kiln_runtime::function_with;

fn normal(shape: &[usize], seed: u64) -> Value {
    let key = random::draw_key(seed, 31);
    let n: usize = shape.iter().product();
    Value::f32(shape.to_vec(), (0..n as u64).map(|i| random::normal(key, i) as f32).collect())
}

fn feeds(inputs: &[Tensor], values: &[Value]) -> Feeds {
    let mut feeds = Feeds::new();
    for (input, value) in inputs.iter().zip(values) {
        feeds.insert(&input.name().expect("inputs are named"), value.clone());
    }
    feeds
}

/// Elementwise `f32` arithmetic, selects, casts, uniform draws and products in the register
/// tile (which sums in order of `k`) round exactly as the evaluator does once FMA and the
/// tuned GEMM are off.
#[test]
fn same_order_kernels_match_the_compiled_code_bit_for_bit() -> Result<()> {
    let g = Graph::new();
    let a = g.input("a", [Dim::sym("B"), 5.into()])?;
    let b = g.input("b", [5, 6])?;
    let step = g.typed_input("step", Shape::scalar(), DType::I64)?;
    let arithmetic = (a * 3.0 - 1.5) / (a.abs()? + 0.5);
    let masked = a.gt(0.25)?.select(a * a, a.neg()?)?;
    let cast = (a * 10.0).cast(DType::I32)?.cast(DType::F32)?;
    let product = layers::relu(a.matmul(b)? + 0.125)?;
    let draws = g.random_uniform([7, 3], 9, step)?;
    let outputs = [arithmetic, masked, cast, product, draws];
    let inputs = [a, b, step];
    let options = Options { gemm: false, fma: false, ..Options::default() };
    let mut f = function_with(&g, &inputs, &outputs, &[], &options)?;
    let program = lower_to_kernels(&g, &outputs, &[])?;
    let mut evaluator = Evaluator::new(&program, &f.params())?;
    for batch in [1, 9, 64] {
        let values = [normal(&[batch, 5], 1), normal(&[5, 6], 2), Value::i64([], vec![batch as i64])];
        let compiled = f.call(&values)?;
        let evaluated = evaluator.run(&feeds(&inputs, &values))?;
        for (i, (e, c)) in evaluated.iter().zip(&compiled).enumerate() {
            let (e, c) = (e.to_f32_vec(), c.to_f32_vec());
            for (k, (x, y)) in e.iter().zip(&c).enumerate() {
                assert_eq!(
                    x.to_bits(),
                    y.to_bits(),
                    "batch {batch}: output {i} element {k}: evaluator {x}, compiled {y}"
                );
            }
        }
    }
    Ok(())
}

/// Runs `output` of `g` on `values` through the evaluator and the compiled function and
/// checks that both fail saying `expected`.
fn both_fail(what: &str, g: &Graph, inputs: &[Tensor], values: &[Value], output: Tensor, expected: &str) -> Result<()> {
    let program = lower_to_kernels(g, &[output], &[])?;
    let evaluated = Evaluator::new(&program, &ParamStore::new())?.run(&feeds(inputs, values));
    let compiled = function(g, inputs, &[output], &[])?.call(values);
    for (who, result) in [("evaluator", evaluated), ("compiled", compiled)] {
        let message = result.expect_err("an out-of-range index or a zero divisor is an error").to_string();
        assert!(message.contains(expected), "{what}: {who}: `{message}`");
    }
    Ok(())
}

/// A gather or scatter index outside the table and an integer division by zero are errors
/// naming the value, its position and the index tensor, as the compiled function's status
/// reports them.
#[test]
fn data_dependent_errors_name_the_index_and_its_position() -> Result<()> {
    let ids_value = Value::i64([2], vec![1, 4]);
    let g = Graph::new();
    let (table, ids) = (g.input("table", [4, 3])?, g.typed_input("ids", [2], DType::I64)?);
    let values = [normal(&[4, 3], 3), ids_value.clone()];
    let expected = "index 4 at position 1 of `ids` is out of range for 4 rows";
    both_fail("gather", &g, &[table, ids], &values, table.gather(ids)?, expected)?;
    let g = Graph::new();
    let (ids, rows) = (g.typed_input("ids", [2], DType::I64)?, g.input("rows", [2, 3])?);
    let values = [ids_value.clone(), normal(&[2, 3], 4)];
    let expected = "index 4 at position 1 of `ids` is out of range for 4 rows";
    both_fail("scatter_add", &g, &[ids, rows], &values, g.zeros([4, 3]).scatter_add(ids, rows)?, expected)?;
    let g = Graph::new();
    let (ids, divisor) = (g.typed_input("ids", [2], DType::I64)?, g.typed_input("divisor", [2], DType::I64)?);
    let values = [ids_value, Value::i64([2], vec![1, 0])];
    both_fail("division", &g, &[ids, divisor], &values, ids / divisor, "integer division by zero (4 / 0)")
}

/// Feeds are checked before any kernel runs: a missing input, a wrong dtype and a symbolic
/// dim bound twice to different sizes are errors naming the input.
#[test]
fn bad_feeds_are_errors_naming_the_input() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B"), 3.into()])?;
    let y = g.input("y", [Dim::sym("B")])?;
    let program = lower_to_kernels(&g, &[x.sum(&[1], false)? + y], &[])?;
    let mut evaluator = Evaluator::new(&program, &ParamStore::new())?;
    let cases = [
        (Feeds::new().with("x", Value::f32([2, 3], vec![0.0; 6])), "`y`"),
        (Feeds::new().with("x", Value::i64([2, 3], vec![0; 6])).with("y", Value::f32([2], vec![0.0; 2])), "`x`"),
        (
            Feeds::new().with("x", Value::f32([2, 3], vec![0.0; 6])).with("y", Value::f32([3], vec![0.0; 3])),
            "bound by an earlier input",
        ),
    ];
    for (feeds, expected) in cases {
        let error = evaluator.run(&feeds).expect_err("a bad feed is an error");
        assert!(error.to_string().contains(expected), "`{error}` does not mention {expected}");
    }
    let fine = Feeds::new().with("x", Value::f32([2, 3], vec![1.0; 6])).with("y", Value::f32([2], vec![0.5; 2]));
    assert_eq!(evaluator.run(&fine)?[0].to_f64_vec(), vec![3.5, 3.5]);
    Ok(())
}
