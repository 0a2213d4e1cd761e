//! kiln-runtime: runs compiled programs.
//!
//! In: graphs and compiled programs from kiln-compiler. Out: [`Function`]s, [`Trainer`]s,
//! checkpoints, diagnostics and packaged artifacts.
//!
//! [`function`] compiles a graph (through kiln-compiler's passes, lowering and Cranelift code
//! generation) into a [`Function`] that owns its buffers and params and runs its kernels on a
//! small thread pool. The runtime never inspects op semantics: it sizes buffers, checks what
//! callers feed, splits kernel ranges across threads and reports kernel statuses.
//!
//! [`optim`] holds the optimizers, as update rules in graph ops that compile with the step.
//!
//! [`text`] holds vocabularies and word vectors (GloVe, word2vec, fastText files) for
//! embedding tables.
//!
//! [`reduce`] schedules the sums across processes of a data-parallel step between its kernels;
//! [`ShardedSampler`] gives each process its part of every global batch; with the `mpi`
//! feature, `distributed` runs them over MPI (`Ranks`, `Trainer::data_parallel`).
//!
//! [`export`] packages a trained model's forward half as a standalone artifact: an object
//! file, a static library with its C header, a command-line executable, Rust bindings.

#![warn(missing_docs)]

mod checkpoint;
#[cfg(feature = "mpi")]
pub mod distributed;
pub mod export;
mod function;
pub mod optim;
pub mod plot;
mod pool;
pub mod reduce;
mod sampler;
mod split;
pub mod text;
mod trainer;

pub use checkpoint::{Checkpoint, IfDiverged};
pub use function::{
    AUTO_START_CALL, AUTO_SWITCH_CALL, DEFAULT_SPLIT_THRESHOLD, Function, function, function_on, function_reducing,
    function_with,
};
pub use kiln_compiler::ParamStore;
pub use sampler::ShardedSampler;
pub use trainer::{Diagnostics, Histogram, Objective, ParamScale, Report, Settings, Trainer, occasionally};
