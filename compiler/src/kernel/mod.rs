//! The kernel IR: a program of loop kernels over numbered buffers.
//!
//! In: an optimised graph and the nodes wanted from it (see `lower`). Out: a [`Program`]:
//! buffer declarations (shape, dtype, role), and kernels that read and write them.
//!
//! A [`LoopKernel`] is a loop nest over extents that may be symbolic; its body is a small SSA
//! expression DAG evaluated once per innermost iteration; it stores results through strided
//! indices, or (for reductions) accumulates over its innermost loops and stores once per outer
//! iteration. A [`MatMulKernel`] multiplies strided matrices; a [`ScatterKernel`] adds rows
//! at data-dependent indices. Every extent, stride and offset is a [`Size`]: a static factor
//! times a product of symbols, so one kernel serves every value of a symbolic dim.
//!
//! Invariants: buffers a kernel reads are written by earlier kernels or fed; a kernel never
//! writes a buffer it reads; the outermost loop of a kernel marked `parallel` can be split
//! into ranges that run independently.

mod accumulate;
mod collapse;
mod epilogue;
mod eval;
mod lower;
mod memory;
mod merge;
mod print;
mod rows;
mod split;
mod tile;

pub use accumulate::{GemmTakes, fold_accumulations};
pub use collapse::collapse_loops;
pub use epilogue::fuse_epilogues;
pub use eval::Evaluator;
pub use lower::{FusionNote, lower};
pub use memory::plan_memory;
pub use merge::merge_neighbours;
pub use rows::{BLOCK_ELEMENTS, group_rows};
pub use split::{PARTS, SPLIT_MAX_RESULT, SPLIT_MIN_K, split_contractions};
pub use tile::{FEW_ROWS, LONG_K, Lanes, NARROW_COLUMNS, NarrowTile, narrow_tile, product_is_stored};

use crate::error::{Error, Result};
use crate::graph::{Binary, Compare, DType, Distribution, Shape, Unary};
use crate::interp::ParamStore;
use crate::value::Value;

/// A size known up to the values of symbols: `factor · Π symbols`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Size {
    /// The static part.
    pub factor: i64,
    /// Indices into [`Program::symbols`], one per symbolic factor (repeats allowed).
    pub symbols: Vec<usize>,
}

impl Size {
    /// A static size.
    pub fn fixed(value: i64) -> Size {
        Size { factor: value, symbols: Vec::new() }
    }

    /// The static value, if there are no symbols.
    pub fn as_fixed(&self) -> Option<i64> {
        self.symbols.is_empty().then_some(self.factor)
    }

    /// The product of two sizes.
    pub fn times(&self, other: &Size) -> Size {
        let mut symbols = self.symbols.clone();
        symbols.extend(&other.symbols);
        symbols.sort_unstable();
        Size { factor: self.factor * other.factor, symbols }
    }

    /// The value under concrete symbol values.
    pub fn evaluate(&self, symbols: &[i64]) -> i64 {
        self.symbols.iter().fold(self.factor, |acc, &s| acc * symbols[s])
    }
}

/// Where an element lives in a buffer: `Σ base + Σ loop_index_l · strides[l]` elements.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Index {
    /// Constant offset terms (from slices).
    pub base: Vec<Size>,
    /// One stride per loop of the kernel (zero where the loop does not move this index).
    pub strides: Vec<Size>,
}

/// Identifies an expression in a kernel body.
pub type ExprId = usize;

/// One SSA expression of a loop kernel's body.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// An element of a buffer.
    Load {
        /// The buffer.
        buffer: usize,
        /// Its element index.
        index: Index,
    },
    /// A constant.
    Const(f64),
    /// The runtime value of a size.
    Size(Size),
    /// The current index of a loop (an `I64`).
    LoopIndex(usize),
    /// Elementwise unary op.
    Unary(Unary, ExprId),
    /// `x^p` for a constant `p`.
    Pow(f64, ExprId),
    /// Elementwise binary op.
    Binary(Binary, ExprId, ExprId),
    /// Comparison, a `Bool`.
    Compare(Compare, ExprId, ExprId),
    /// `mask ? a : b`.
    Select(ExprId, ExprId, ExprId),
    /// Conversion to the expression's dtype.
    Cast(ExprId),
    /// kiln's counter-based random number for the element at `index` (contiguous strides of the
    /// random node's own shape).
    Random {
        /// Seed of the stream.
        seed: u64,
        /// Uniform or normal.
        distribution: Distribution,
        /// The counter (an integer expression).
        counter: ExprId,
        /// The element's flat index in the random tensor.
        index: Index,
    },
    /// A row of a table picked by a data-dependent index: `buffer[row · row_stride + index]`.
    /// An index outside `0..rows` sets the kernel's status (naming `check` and the index's
    /// `position`) and reads a harmless address instead: the status words, never the table,
    /// which may have no rows at all.
    Gather {
        /// The table.
        buffer: usize,
        /// The row (an integer expression).
        row: ExprId,
        /// Number of rows.
        rows: Size,
        /// Elements per row.
        row_stride: Size,
        /// Index within the row.
        index: Index,
        /// Where the index sits in its own tensor (row-major), for the error message.
        position: Index,
        /// The program's [`IndexCheck`] this gather reports under.
        check: usize,
    },
    /// An integer `value`, passed through after checking that it lies in `0..limit`; outside,
    /// the kernel reports `check` with the value and its `position` (a one-hot's class).
    CheckIndex {
        /// The integer (an `I64`).
        value: ExprId,
        /// Number of valid values.
        limit: Size,
        /// Where the value sits in its own tensor (row-major), for the error message.
        position: Index,
        /// The program's [`IndexCheck`] this check reports under.
        check: usize,
    },
}

/// A data-dependent range check of a program (a gather's rows, a one-hot's classes, a
/// scatter's rows): what the runtime needs to word the error a kernel reports for it.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexCheck {
    /// The op whose index is checked (`gather`, `one_hot`, `scatter_add`).
    pub op: &'static str,
    /// The index tensor's name, if it has one.
    pub indices: Option<String>,
    /// What the index counts (`rows of `table``, `classes`).
    pub what: String,
    /// Number of valid values.
    pub limit: Size,
}

/// How a reduction kernel combines values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    /// Sum (starting from 0).
    Sum,
    /// Maximum (starting from -inf; NaN wins).
    Max,
}

/// A loop nest with an expression body.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopKernel {
    /// A short name for listings (the node it computes).
    pub name: String,
    /// Loop extents, outermost first.
    pub loops: Vec<Size>,
    /// For reductions: how, and the first reduction loop. The loops after it reduce too,
    /// except the last `kept_inside`.
    pub reduce: Option<(Reduce, usize)>,
    /// For reductions: the number of innermost loops that are not reduced. With none, each
    /// result is accumulated in registers and stored once; with some, the reduction loops run
    /// outside them and every result accumulates in the output buffer itself (initialised to
    /// the identity first), so the innermost kept loop can run 4 lanes at a time: summing
    /// `[B, P, D]` over `P` walks rows of `D`, not columns.
    pub kept_inside: usize,
    /// The body, in dependency order, with each expression's dtype.
    pub body: Vec<(Expr, DType)>,
    /// `(value, buffer, index)`: stored every innermost iteration, or, for reductions, the
    /// accumulated value stored once per iteration of the loops outside the reduction.
    pub stores: Vec<(ExprId, usize, Index)>,
}

/// `out[b, i, j] = Σ_k a[b, i, k] · b[b, k, j]` over strided operands.
#[derive(Clone, Debug, PartialEq)]
pub struct MatMulKernel {
    /// A short name for listings.
    pub name: String,
    /// Batch extent (1 if none), rows `m`, inner `k`, columns `n`.
    pub batch: Size,
    /// Rows of the result.
    pub m: Size,
    /// The contracted dim.
    pub k: Size,
    /// Columns of the result.
    pub n: Size,
    /// Left operand: buffer and strides along (batch, m, k).
    pub a: (usize, [Size; 3]),
    /// Right operand: buffer and strides along (batch, k, n).
    pub b: (usize, [Size; 3]),
    /// The result buffer, contiguous `[batch, m, n]`.
    pub out: usize,
    /// An elementwise kernel over `[m, n]` (bias, activation, mask) run on each block of the
    /// result right after the block is computed (see `fuse_epilogues`).
    pub epilogue: Option<LoopKernel>,
    /// With `Some(c)`: `out = c·out + a·b`, `out` holding its old value on entry (a momentum
    /// folded into the product of its gradient, see `fold_accumulations`).
    pub accumulate: Option<f64>,
}

/// Rows per block: the range of a matmul kernel counts blocks of this many rows (see
/// [`MatMulKernel::chunks`])...
pub const CHUNK_ROWS: i64 = 256;

/// ...by this many columns. Each block is computed the same way (one GEMM call, or the
/// register tiles) whatever range a thread was given, so every element is summed in the same
/// order for every thread count, and a product of few rows (a batch of 128) still splits
/// across threads by its columns.
pub const CHUNK_COLUMNS: i64 = 128;

impl MatMulKernel {
    /// Rows per block of this product's range: [`CHUNK_ROWS`], except that a static batch of
    /// products of few rows (the parts of a split contraction, see `split`) has one product
    /// per block, so its products run on different threads.
    pub fn chunk_rows(&self) -> i64 {
        match (self.batch.as_fixed(), self.m.as_fixed()) {
            (Some(batch), Some(m)) if batch > 1 && (1..=FEW_ROWS).contains(&m) => m,
            _ => CHUNK_ROWS,
        }
    }

    /// How the range of this product is laid out, for every printer: `(extent, chunk)` pairs,
    /// blocks of [`chunk_rows`](Self::chunk_rows) result rows (batches flattened) by blocks
    /// of [`CHUNK_COLUMNS`] columns, row-major.
    pub fn chunks(&self) -> Vec<(Size, i64)> {
        vec![(self.batch.times(&self.m), self.chunk_rows()), (self.n.clone(), CHUNK_COLUMNS)]
    }
}

/// `out = 0; out[indices[p]] += updates[p]` for rows of `row_len` elements.
#[derive(Clone, Debug, PartialEq)]
pub struct ScatterKernel {
    /// A short name for listings.
    pub name: String,
    /// The integer index buffer, `positions` elements.
    pub indices: usize,
    /// The updates buffer, `positions × row_len` elements.
    pub updates: usize,
    /// If present, the updates are computed, not read from `updates`: a loop kernel over the
    /// updates' shape (the indices' dims, then one row dim) whose first store's value is the
    /// update at that element. This spares writing a `[positions, row]` tensor only to add it
    /// up (an embedding's gradient).
    pub producer: Option<Box<LoopKernel>>,
    /// The result buffer, `rows × row_len` elements.
    pub out: usize,
    /// Number of indices.
    pub positions: Size,
    /// Rows of the result.
    pub rows: Size,
    /// Elements per row.
    pub row_len: Size,
    /// The program's [`IndexCheck`] this scatter reports under.
    pub check: usize,
}

/// One step of a program.
#[derive(Clone, Debug, PartialEq)]
pub enum Kernel {
    /// A loop nest.
    Loop(LoopKernel),
    /// A matrix product.
    MatMul(Box<MatMulKernel>),
    /// A scatter-add.
    Scatter(ScatterKernel),
    /// Loop kernels over the same rows, run one block of rows at a time.
    Rows(RowsKernel),
}

/// Loop kernels over the same outermost loop (the rows), each reading what the others write
/// only within the row being computed (see `group_rows`), run as one kernel: for each block
/// of [`RowsKernel::block`] rows, every member in order. A row's reduction (a softmax's
/// maximum and sum) is thus read back by its consumer from L1 right after it is computed,
/// and the group costs one dispatch instead of one per member. Running the members one after
/// another over all rows gives the same results: that is the reference order.
#[derive(Clone, Debug, PartialEq)]
pub struct RowsKernel {
    /// A short name for listings: the first and last members'.
    pub name: String,
    /// The rows: every member's outermost loop.
    pub rows: Size,
    /// Rows per block.
    pub block: i64,
    /// The loop kernels, in program order.
    pub members: Vec<LoopKernel>,
}

/// What a buffer holds and who fills it.
#[derive(Clone, Debug, PartialEq)]
pub enum Role {
    /// Fed by name on every call.
    Input(String),
    /// A param, persistent across calls.
    Param(String),
    /// A constant, filled once at compile time.
    Constant(Value),
    /// Computed by a kernel, held in a scratch slot shared with temporaries whose lifetimes
    /// do not overlap.
    Temporary,
    /// The same memory as another buffer, under this buffer's shape (a reshape).
    Alias(usize),
}

/// A buffer of the program.
#[derive(Clone, Debug, PartialEq)]
pub struct Buffer {
    /// Shape, possibly symbolic.
    pub shape: Shape,
    /// Element type.
    pub dtype: DType,
    /// Who fills it.
    pub role: Role,
}

/// A whole program: buffers, kernels in execution order, and what the caller gets back.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// The symbolic dims, by index.
    pub symbols: Vec<String>,
    /// Every buffer.
    pub buffers: Vec<Buffer>,
    /// Kernels in execution order.
    pub kernels: Vec<Kernel>,
    /// The buffer holding each requested output.
    pub outputs: Vec<usize>,
    /// `(param buffer, new value buffer)`: copied after every call (updates done in place
    /// are not listed: their value buffer is an alias of the param).
    pub updates: Vec<(usize, usize)>,
    /// For each buffer: the scratch slot holding it, for temporaries (see `plan_memory`).
    pub slots: Vec<Option<usize>>,
    /// The range checks kernels report under, by number.
    pub checks: Vec<IndexCheck>,
    /// Every shape a call computes (of each node, `op` name first): the runtime checks that
    /// none overflows under the bound symbols before any kernel runs.
    pub shapes: Vec<(&'static str, Shape)>,
    /// Symbolic axes a maximum is taken over (described for the error): the runtime refuses a
    /// call that makes one empty, as the builder refuses a static empty one.
    pub maximum_axes: Vec<(String, Size)>,
    /// Buffers the runtime sums across processes between kernels (the gradients of a
    /// data-parallel step), a subset of `outputs`. No kernel both writes one and reads it, so
    /// there is always a point between the kernel that finishes one and the first that reads
    /// it (`merge_neighbours` and `fuse_epilogues` keep it).
    pub reduced: Vec<usize>,
}

impl Expr {
    /// The expressions this one reads.
    pub fn operands(&self) -> Vec<ExprId> {
        match *self {
            Expr::Unary(_, x) | Expr::Pow(_, x) | Expr::Cast(x) => vec![x],
            Expr::Binary(_, x, y) | Expr::Compare(_, x, y) => vec![x, y],
            Expr::Select(mask, x, y) => vec![mask, x, y],
            Expr::Random { counter, .. } => vec![counter],
            Expr::Gather { row, .. } => vec![row],
            Expr::CheckIndex { value, .. } => vec![value],
            Expr::Load { .. } | Expr::Const(_) | Expr::Size(_) | Expr::LoopIndex(_) => vec![],
        }
    }

    /// True if computing this expression (of `dtype`) can report a data-dependent error that
    /// stops the call: a gather's or a checked index out of range, an integer division by zero.
    pub fn can_fail(&self, dtype: DType) -> bool {
        matches!(self, Expr::Gather { .. } | Expr::CheckIndex { .. })
            || (matches!(self, Expr::Binary(Binary::Div, ..)) && dtype.is_int())
    }
}

impl LoopKernel {
    /// True if the outermost loop can be split into ranges that run independently: it is not
    /// reduced over (a reduction to a scalar runs whole).
    pub fn splittable(&self) -> bool {
        self.reduce.is_none_or(|(_, from)| from > 0)
    }

    /// True if some expression of the body can fail ([`Expr::can_fail`]).
    pub fn can_fail(&self) -> bool {
        self.body.iter().any(|(expr, dtype)| expr.can_fail(*dtype))
    }

    /// The buffers the body reads (by number, with repeats).
    pub fn reads(&self) -> Vec<usize> {
        let loads = self.body.iter().filter_map(|(expr, _)| match expr {
            Expr::Load { buffer, .. } | Expr::Gather { buffer, .. } => Some(*buffer),
            _ => None,
        });
        loads.collect()
    }

    /// The buffers the kernel stores to (by number).
    pub fn writes(&self) -> Vec<usize> {
        self.stores.iter().map(|(_, buffer, _)| *buffer).collect()
    }
}

impl Kernel {
    /// True if the kernel can report a data-dependent error (an index out of range, an
    /// integer division by zero), which stops the call. A scatter checks its indices; a
    /// matmul's epilogue never fails (`fuse_epilogues` refuses one that could).
    pub fn can_fail(&self) -> bool {
        match self {
            Kernel::Loop(k) => k.can_fail(),
            Kernel::MatMul(_) => false,
            Kernel::Scatter(_) => true,
            Kernel::Rows(k) => k.members.iter().any(LoopKernel::can_fail),
        }
    }

    /// The kernel's name, as listings and profiles show it.
    pub fn name(&self) -> &str {
        match self {
            Kernel::Loop(k) => &k.name,
            Kernel::MatMul(k) => &k.name,
            Kernel::Scatter(k) => &k.name,
            Kernel::Rows(k) => &k.name,
        }
    }

    /// The buffers the kernel reads and those it writes (by number; aliases not resolved),
    /// a matmul's epilogue included.
    pub fn accesses(&self) -> (Vec<usize>, Vec<usize>) {
        match self {
            Kernel::Loop(k) => (k.reads(), k.writes()),
            Kernel::MatMul(k) => {
                let mut reads = vec![k.a.0, k.b.0];
                let mut writes = vec![k.out];
                if let Some(epilogue) = &k.epilogue {
                    reads.extend(epilogue.reads());
                    writes.extend(epilogue.writes());
                }
                (reads, writes)
            }
            Kernel::Scatter(k) => match &k.producer {
                Some(producer) => ([vec![k.indices], producer.reads()].concat(), vec![k.out]),
                None => (vec![k.indices, k.updates], vec![k.out]),
            },
            Kernel::Rows(k) => (
                k.members.iter().flat_map(LoopKernel::reads).collect(),
                k.members.iter().flat_map(LoopKernel::writes).collect(),
            ),
        }
    }
}

impl Buffer {
    /// The value of param `name` (this buffer's role) in `params`: an error if it is missing
    /// or its shape is not the buffer's, which is static for a param.
    pub fn param_value<'p>(&self, name: &str, params: &'p ParamStore) -> Result<&'p Value> {
        let value = params.get(name).ok_or_else(|| Error::MissingParam { name: name.to_string() })?;
        let shape = self.shape.as_static().ok_or_else(|| Error::Bug(format!("param `{name}` is symbolic")))?;
        if value.shape() != shape {
            let (expected, got) = (format!("shape {shape:?}"), format!("shape {:?}", value.shape()));
            return Err(Error::BadFeed { what: "param", name: name.to_string(), expected, got, location: None });
        }
        Ok(value)
    }
}

impl Program {
    /// The buffer whose memory `buffer` uses (itself unless it is an alias).
    pub fn storage(&self, mut buffer: usize) -> usize {
        while let Role::Alias(target) = self.buffers[buffer].role {
            buffer = target;
        }
        buffer
    }
}
