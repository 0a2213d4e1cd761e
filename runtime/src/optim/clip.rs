//! Gradient clipping, in graph ops applied to the gradients before an optimizer sees them.
//!
//! In: gradients. Out: the gradients scaled (by norm) or clamped (by value).

use kiln_compiler::{Result, Tensor};

/// The gradients scaled so their global L2 norm is at most `max_norm` (PyTorch's
/// `clip_grad_norm_`: scale `max_norm / (norm + 1e-6)` when the norm exceeds `max_norm`), and
/// the norm before clipping.
#[track_caller]
pub fn clip_by_global_norm<'g>(grads: &[Tensor<'g>], max_norm: f64) -> Result<(Vec<Tensor<'g>>, Tensor<'g>)> {
    let Some((&first, rest)) = grads.split_first() else {
        let detail = "no gradients to clip".to_string();
        return Err(kiln_compiler::Error::Argument {
            op: "clip_by_global_norm",
            detail,
            location: kiln_compiler::Location::caller(),
        });
    };
    let mut squares = first.square()?.sum_all()?;
    for grad in rest {
        squares = squares.add(grad.square()?.sum_all()?)?;
    }
    let norm = squares.sqrt()?;
    let scale = norm.add(1e-6)?.recip()?.mul(max_norm)?.minimum(1.0)?;
    let clipped = grads.iter().map(|grad| grad.mul(scale)).collect::<Result<Vec<_>>>()?;
    Ok((clipped, norm))
}

/// Every gradient element clamped to `[-limit, limit]` (PyTorch's `clip_grad_value_`).
#[track_caller]
pub fn clip_by_value<'g>(grads: &[Tensor<'g>], limit: f64) -> Result<Vec<Tensor<'g>>> {
    grads.iter().map(|grad| grad.minimum(limit)?.maximum(-limit)).collect()
}
