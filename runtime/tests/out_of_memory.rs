//! Allocation failure is an error, not an abort: a batch whose buffers cannot exist on any
//! machine (2^48 elements, 2^50 bytes and more, beyond a 47-bit address space) is reported as
//! `Error::OutOfMemory` by the compiled function and by the interpreter, and the process goes
//! on. Nothing here touches the huge memory: the allocation fails before any kernel runs.

use kiln_compiler::prelude::*;
use kiln_runtime::function;

/// `a · b` broadcast from `[P, 1]` and `[1, Q]` to `[P, Q]`, with P = Q = 2^24: 2^48 elements.
fn outer_product(g: &Graph) -> Result<(Tensor<'_>, Tensor<'_>, Tensor<'_>)> {
    let a = g.input("a", [Dim::sym("P"), 1.into()])?;
    let b = g.input("b", [1.into(), Dim::sym("Q")])?;
    Ok((a, b, a.mul(b)?))
}

fn feeds() -> [Value; 2] {
    let side = 1 << 24;
    [Value::f32([side, 1], vec![1.0; side]), Value::f32([1, side], vec![2.0; side])]
}

#[test]
fn a_batch_too_big_for_any_machine_is_an_out_of_memory_error_in_the_compiled_function() -> Result<()> {
    let g = Graph::new();
    let (a, b, product) = outer_product(&g)?;
    let mut f = function(&g, &[a, b], &[product], &[])?;
    let error = f.call(&feeds()).expect_err("2^50 bytes of output");
    match &error {
        Error::OutOfMemory { bytes, .. } => assert!(*bytes >= 1 << 50, "{error}"),
        other => panic!("expected OutOfMemory, got {other}"),
    }
    // The process lives and the function still works on a batch that fits.
    let small = [Value::f32([2, 1], vec![1.0, 2.0]), Value::f32([1, 3], vec![1.0, 10.0, 100.0])];
    assert_eq!(f.call(&small)?[0].to_f64_vec(), [1.0, 10.0, 100.0, 2.0, 20.0, 200.0]);
    Ok(())
}

#[test]
fn a_batch_too_big_for_any_machine_is_an_out_of_memory_error_in_the_interpreter() -> Result<()> {
    let g = Graph::new();
    let (_, _, product) = outer_product(&g)?;
    let [a, b] = feeds();
    let fed = Feeds::from([("a", a), ("b", b)]);
    let error = Interpreter::new(&g).run(&fed, &ParamStore::new(), &[product]).expect_err("2^48 elements");
    match &error {
        Error::OutOfMemory { bytes, what } => {
            assert!(*bytes >= 1 << 50 && what.contains("mul"), "{error}");
        }
        other => panic!("expected OutOfMemory, got {other}"),
    }
    Ok(())
}
