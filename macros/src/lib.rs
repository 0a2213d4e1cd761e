//! kiln-macros: the `model!` macro and other procedural macros of kiln.
//!
//! The crate is a placeholder in the workspace layout until `model!` is built on the graph
//! API; it exports nothing yet.
