//! The shape checks of a `model!`'s `forward`.
//!
//! In: the tensors of one call and the shapes its signature declares. Out: an error naming the
//! argument, its shape and the declaration when they disagree.

use crate::error::Result;
use crate::graph::Tensor;

/// A dim of a shape declared in a model's `forward` signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeclaredDim {
    /// Exactly this size.
    Static(usize),
    /// Any size, the same wherever the symbol appears in one call.
    Symbol(&'static str),
}

/// Checks the tensors of one `forward` call against the declared shapes, binding each symbol
/// to the dim it first meets.
pub struct ShapeCheck {
    op: &'static str,
    location: crate::error::Location,
    bound: Vec<(&'static str, crate::graph::Dim)>,
}

impl ShapeCheck {
    /// A check for the call of `op` (e.g. `Mlp.forward`) made at `location`.
    pub fn new(op: &'static str, location: crate::error::Location) -> ShapeCheck {
        ShapeCheck { op, location, bound: Vec::new() }
    }

    /// Checks `what` (an argument's name, or "the result") against `declared`.
    pub fn check(&mut self, what: &str, tensor: Tensor<'_>, declared: &[DeclaredDim]) -> Result<()> {
        let shape = tensor.shape();
        let show = |dims: &[DeclaredDim]| {
            let dims: Vec<String> = dims
                .iter()
                .map(|d| match d {
                    DeclaredDim::Static(n) => n.to_string(),
                    DeclaredDim::Symbol(s) => s.to_string(),
                })
                .collect();
            format!("[{}]", dims.join(", "))
        };
        let fail = |detail: String| Err(crate::Error::Shape { op: self.op, detail, location: self.location });
        if shape.rank() != declared.len() {
            return fail(format!("{what} has shape {shape}, but is declared {}", show(declared)));
        }
        for (actual, want) in shape.dims().iter().zip(declared) {
            match want {
                DeclaredDim::Static(n) if actual.as_static() != Some(*n) => {
                    return fail(format!("{what} has shape {shape}, but is declared {}", show(declared)));
                }
                DeclaredDim::Symbol(symbol) => match self.bound.iter().find(|(s, _)| s == symbol) {
                    Some((_, dim)) if dim != actual => {
                        return fail(format!(
                            "{what} has shape {shape}, declared {}, but {symbol} is already {dim} in this call",
                            show(declared)
                        ));
                    }
                    Some(_) => {}
                    None => self.bound.push((symbol, actual.clone())),
                },
                DeclaredDim::Static(_) => {}
            }
        }
        Ok(())
    }
}
