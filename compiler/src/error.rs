//! The error type of kiln-compiler: every way building, differentiating or evaluating a graph
//! can fail because of what the caller asked for.
//!
//! In: nothing (the bottom of the crate). Out: [`Error`], [`Location`] and [`Result`], used by
//! every stage.

use std::fmt;
use std::panic::Location as CallerLocation;

/// Where in the user's source a graph operation was requested (`file:line`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Source file of the call.
    pub file: &'static str,
    /// Line of the call.
    pub line: u32,
}

impl Location {
    /// The location of the caller of the `#[track_caller]` function this is called from.
    #[track_caller]
    pub fn caller() -> Location {
        let caller = CallerLocation::caller();
        Location { file: caller.file(), line: caller.line() }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Everything that can go wrong when building, differentiating or evaluating a graph.
///
/// Errors raised while building a node carry the op's name and the caller's [`Location`]; they
/// are the user's fault (shapes or dtypes that do not fit). `Bug` marks a broken internal
/// invariant: it is kiln's fault, and its message says so.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Error {
    /// The operands' shapes do not fit the op (broadcasting, matmul inner dims, concat, ...).
    #[error("shape mismatch in `{op}` at {location}: {detail}")]
    Shape {
        /// The op that was being built.
        op: &'static str,
        /// What was wrong, with the shapes or dtypes involved.
        detail: String,
        /// The caller's source location.
        location: Location,
    },

    /// The operands' dtypes do not fit the op (mixed dtypes, float op on integers, ...).
    #[error("dtype mismatch in `{op}` at {location}: {detail}")]
    DType {
        /// The op that was being built.
        op: &'static str,
        /// What was wrong, with the shapes or dtypes involved.
        detail: String,
        /// The caller's source location.
        location: Location,
    },

    /// An axis (or permutation) names a dim the operand does not have.
    #[error("axis out of range in `{op}` at {location}: {detail}")]
    Axis {
        /// The op that was being built.
        op: &'static str,
        /// What was wrong, with the shapes or dtypes involved.
        detail: String,
        /// The caller's source location.
        location: Location,
    },

    /// A reshape whose target does not hold the same number of elements as its operand.
    #[error("reshape size mismatch at {location}: cannot reshape {from} into {to}")]
    ReshapeSize {
        /// The operand's shape.
        from: String,
        /// The requested shape.
        to: String,
        /// The caller's source location.
        location: Location,
    },

    /// An argument that is not a shape or dtype problem (a zero depth, a bad slice range, ...).
    #[error("invalid argument to `{op}` at {location}: {detail}")]
    Argument {
        /// The op that was being built.
        op: &'static str,
        /// What was wrong, with the shapes or dtypes involved.
        detail: String,
        /// The caller's source location.
        location: Location,
    },

    /// Two leaves share a name, or a name was looked up that the graph does not have.
    #[error("name error at {location}: {detail}")]
    Name {
        /// What was wrong, with the shapes or dtypes involved.
        detail: String,
        /// The caller's source location.
        location: Location,
    },

    /// Tensors from two different graphs were combined.
    #[error("`{op}` at {location} combines tensors from different graphs")]
    ForeignTensor {
        /// The op that was being built.
        op: &'static str,
        /// The caller's source location.
        location: Location,
    },

    /// `grad` was asked for something it cannot differentiate.
    #[error("cannot differentiate at {location}: {detail}")]
    Grad {
        /// What was wrong, with the shapes or dtypes involved.
        detail: String,
        /// The caller's source location.
        location: Location,
    },

    /// A graph input was not fed when the graph was run.
    #[error("input `{name}` was not fed")]
    MissingInput {
        /// The input or param name.
        name: String,
    },

    /// A param had no value when the graph was run.
    #[error("param `{name}` has no value")]
    MissingParam {
        /// The input or param name.
        name: String,
    },

    /// A fed input or param value does not match its declaration.
    #[error("bad value for {what} `{name}`{}: expected {expected}, got {got}", in_call(.location))]
    BadFeed {
        /// `input` or `param`.
        what: &'static str,
        /// The input or param name.
        name: String,
        /// What the graph declares.
        expected: String,
        /// What was given.
        got: String,
        /// The caller's source location, when the value was fed to a call (`Function::call`).
        location: Option<Location>,
    },

    /// Running the graph failed at a node (an index out of range, a symbol bound twice, ...).
    #[error("evaluation failed at node %{node} (`{op}`): {detail}")]
    Eval {
        /// The node's index in the graph.
        node: usize,
        /// The op that was being built.
        op: &'static str,
        /// What was wrong, with the shapes or dtypes involved.
        detail: String,
    },

    /// A call of a compiled function met data it cannot compute with: an index out of range
    /// of its table or classes, an integer division by zero. The caller's fault (the values
    /// fed), found by a kernel while running; the function's params are unchanged.
    #[error("`{op}` failed in the call at {location}: {detail}")]
    Run {
        /// The op whose data was bad (`gather`, `one_hot`, `scatter_add`, `div`).
        op: &'static str,
        /// The value, its position and what it had to fit.
        detail: String,
        /// The caller's source location.
        location: Location,
    },

    /// Training stopped: the loss or a gradient stopped being finite.
    #[error("training stopped at step {step}: {detail}")]
    Diverged {
        /// The step (from 1) whose result was not finite.
        step: u64,
        /// What went bad first (the loss, or the param whose gradient or value did).
        detail: String,
    },

    /// A checkpoint could not be written or read, or does not fit what it is loaded into.
    #[error("checkpoint {path}: {detail}")]
    Checkpoint {
        /// The checkpoint's file.
        path: String,
        /// What was wrong (every mismatch, when loading into a model).
        detail: String,
    },

    /// A model cannot be exported as asked (a graph the artifact's ABI cannot express, a param
    /// without a value, an unsupported target), or an artifact could not be written. The
    /// caller's fault, or the file system's.
    #[error("export: {detail}")]
    Export {
        /// What was wrong, and what would be accepted.
        detail: String,
    },

    /// An external tool that packaging needs (the system C compiler, `rustc`) is missing or
    /// failed. The machine's fault, not the model's: install the tool (or fix its input).
    #[error("{tool}: {detail}")]
    Toolchain {
        /// The tool's command name (`cc`, `rustc`).
        tool: String,
        /// What happened: not found, or its exit status and error output.
        detail: String,
    },

    /// Memory for a buffer or a value could not be allocated (a batch too big for the machine).
    /// The process goes on; nothing was changed.
    #[error("out of memory: {what} needs {bytes} bytes, which cannot be allocated")]
    OutOfMemory {
        /// The size asked for (`usize::MAX` when the size itself does not fit in a `usize`).
        bytes: usize,
        /// What the memory was for (`node %12 (mul)`, `scratch of kernel buffers`, ...).
        what: String,
    },

    /// A word-vector file (GloVe, word2vec text or binary, fastText `.vec`) is malformed, or its
    /// vectors do not fit what they are loaded into. The file's fault or the caller's; `detail`
    /// names the line or byte offset.
    #[error("word vectors {file}: {detail}")]
    Vectors {
        /// The file (or the name the caller gave the bytes).
        file: String,
        /// What was wrong, and where.
        detail: String,
    },

    /// A data-parallel run across processes cannot go on: the ranks built different graphs,
    /// another rank stopped answering within the timeout, or the message-passing library
    /// failed. The run's fault (or a machine's), not this rank's inputs.
    #[error("rank {rank}: {detail}")]
    Distributed {
        /// The rank (process number, from 0) reporting the error.
        rank: usize,
        /// What went wrong, naming the param or the collective operation concerned.
        detail: String,
    },

    /// A broken internal invariant: a bug in kiln, never the caller's fault.
    #[error("bug in kiln: {0}")]
    Bug(String),
}

/// The result type of kiln-compiler.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// ` in the call at <location>`, or nothing: where a bad feed was given, when it is known.
fn in_call(location: &Option<Location>) -> String {
    location.map(|location| format!(" in the call at {location}")).unwrap_or_default()
}
