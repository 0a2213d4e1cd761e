//! Operator overloading for [`Tensor`]: `a + b`, `a * 2.0`, `1.0 - a`, `-a`.
//!
//! In: tensors and numbers. Out: new nodes (a failed tensor carrying the error when the operands do
//! not fit).
//!
//! Operators cannot return a `Result`, so a failing operator records its error in the graph
//! and returns a failed tensor; the next fallible call on it (or `grad`, or an evaluation of
//! the graph) returns the error, which still names the operator's source line.

use std::ops::{Add, Div, Mul, Neg, Sub};

use super::build::number_like;
use super::{Binary, Op, Tensor, Unary};
use crate::error::{Location, Result};

impl<'g> Tensor<'g> {
    /// Turns a result into a tensor, recording an error in the graph.
    fn settle(self, result: Result<Tensor<'g>>) -> Tensor<'g> {
        result.unwrap_or_else(|error| self.graph.fail(error))
    }
}

macro_rules! binary_operator {
    ($trait:ident, $method:ident, $binary:ident) => {
        impl<'g> $trait<Tensor<'g>> for Tensor<'g> {
            type Output = Tensor<'g>;
            #[track_caller]
            fn $method(self, rhs: Tensor<'g>) -> Tensor<'g> {
                let result = self.binary_like(Op::Binary(Binary::$binary), rhs, Location::caller());
                self.settle(result)
            }
        }

        impl<'g> $trait<f64> for Tensor<'g> {
            type Output = Tensor<'g>;
            #[track_caller]
            fn $method(self, rhs: f64) -> Tensor<'g> {
                let rhs = number_like(rhs, self, Location::caller());
                let result = self.binary_like(Op::Binary(Binary::$binary), rhs, Location::caller());
                self.settle(result)
            }
        }

        impl<'g> $trait<Tensor<'g>> for f64 {
            type Output = Tensor<'g>;
            #[track_caller]
            fn $method(self, rhs: Tensor<'g>) -> Tensor<'g> {
                let lhs = number_like(self, rhs, Location::caller());
                let result = lhs.binary_like(Op::Binary(Binary::$binary), rhs, Location::caller());
                rhs.settle(result)
            }
        }
    };
}

binary_operator!(Add, add, Add);
binary_operator!(Sub, sub, Sub);
binary_operator!(Mul, mul, Mul);
binary_operator!(Div, div, Div);

impl<'g> Neg for Tensor<'g> {
    type Output = Tensor<'g>;
    #[track_caller]
    fn neg(self) -> Tensor<'g> {
        let result = self.unary(Unary::Neg, Location::caller());
        self.settle(result)
    }
}
