//! kiln-runtime: runs compiled programs, trains models and packages artifacts.
//!
//! The runtime builds on the compiler's graphs and never inspects op semantics. For now it
//! re-exports the parameter store that holds a model's values between runs; execution of
//! compiled programs, the `Trainer` and optimizers arrive with the compiler's code generator.

#![warn(missing_docs)]

pub use kiln_compiler::ParamStore;
