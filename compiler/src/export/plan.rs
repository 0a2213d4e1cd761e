//! Export, compiler side (the plan and the printers; packaging is `kiln_runtime::export`).
//!
//! The artifact plan: the buffers of a forward program placed in the caller's memory.
//!
//! In: a forward program, its input names and the trained params. Out: an [`ArtifactPlan`]: where
//! every buffer lives (caller's input or output, weights, scratch) and the weights' bytes.

use crate::error::{Error, Result};
use crate::graph::{DType, Dim, Shape};
use crate::kernel::{Program, Role};
use crate::value::ParamStore;

/// Scratch slots start at multiples of this many bytes from the caller's scratch pointer.
pub const SCRATCH_ALIGN: i64 = 64;

/// A byte count that grows linearly with the batch: `per_row · batch + fixed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearBytes {
    /// Bytes per batch row.
    pub per_row: i64,
    /// Bytes whatever the batch.
    pub fixed: i64,
}

impl LinearBytes {
    /// The byte count at `batch` (the plan's [`ArtifactPlan::max_batch`] keeps it in range).
    pub fn at(&self, batch: i64) -> i64 {
        self.per_row * batch + self.fixed
    }
}

/// Where a buffer's memory is during a call of `<name>_infer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The caller's input `i` (see [`ArtifactPlan::inputs`]).
    Input(usize),
    /// The caller's output `i`: the last kernel writing it writes there directly.
    Output(usize),
    /// Read-only data inside the artifact: [`ArtifactPlan::weights`]`[i]`.
    Weight(usize),
    /// Scratch slot `i` of the caller's scratch memory (see [`ArtifactPlan::slot_offsets`]).
    Scratch(usize),
    /// Nowhere (a null address): a param or constant no kernel reads (a weight replaced by its
    /// transposed copy, see `pretranspose_weights`).
    Unused,
}

/// A param's trained values or a constant, stored in the artifact.
#[derive(Clone, Debug, PartialEq)]
pub struct Weight {
    /// The param's name, or `constant{buffer}`.
    pub name: String,
    /// The buffer it fills.
    pub buffer: usize,
    /// Its dtype.
    pub dtype: DType,
    /// Its elements, little-endian.
    pub bytes: Vec<u8>,
}

/// One input or output of the artifact: a pointer and a length in the entry point's arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct Port {
    /// The graph input's name, or `output{i}`.
    pub name: String,
    /// The buffer it is (for an output, the storage the last kernel writes).
    pub buffer: usize,
    /// Its shape: `[B, static dims...]` (batched) or static dims only (fixed).
    pub shape: Shape,
    /// Its element type.
    pub dtype: DType,
    /// Whether its first dim is the batch.
    pub batched: bool,
    /// Elements per batch row when batched, else all its elements.
    pub row: i64,
}

impl Port {
    /// The elements it holds at `batch` (`batch` within [`ArtifactPlan::max_batch`]).
    pub fn elements(&self, batch: i64) -> i64 {
        if self.batched { self.row * batch } else { self.row }
    }
}

/// The nonzero codes `<name>_infer` returns. A kernel's data-dependent status `s` (see
/// `codegen::STATUS_*`) comes back as `KERNEL_STATUS + s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// An input or output pointer is null, or `scratch` is null while the batch needs scratch memory.
    NullPointer = 1,
    /// `batch` is negative.
    NegativeBatch = 2,
    /// `batch` is above `<name>_max_batch()`: a size would overflow.
    BatchTooLarge = 3,
    /// An input's length (in elements) is below what the batch needs.
    InputTooShort = 4,
    /// An output's length (in elements) is below what the batch needs.
    OutputTooShort = 5,
    /// `scratch_len` (in bytes) is below `<name>_scratch_bytes(batch)`.
    ScratchTooShort = 6,
    /// A kernel stopped on bad data (10 + its status: 11 an index out of range, 12 an integer
    /// division by zero).
    KernelStatus = 10,
}

/// Where every buffer of a forward program lives when the artifact's entry point runs.
#[derive(Clone, Debug)]
pub struct ArtifactPlan {
    /// The artifact's name: the prefix of every exported symbol (a C identifier).
    pub name: String,
    /// The batch dim's symbol (index into the program's symbols).
    pub batch_symbol: usize,
    /// The batch dim's name.
    pub batch_name: String,
    /// The inputs, in the order the entry point takes them.
    pub inputs: Vec<Port>,
    /// The outputs, in the order the entry point takes them (the program's outputs).
    pub outputs: Vec<Port>,
    /// For every buffer of the program (aliases resolved): where it lives.
    pub placements: Vec<Placement>,
    /// For every scratch slot: the sizes of the buffers sharing it (it holds the largest).
    pub slots: Vec<Vec<LinearBytes>>,
    /// The data stored in the artifact, one per param or constant buffer.
    pub weights: Vec<Weight>,
    /// The largest batch the artifact accepts: every byte count, scratch total and the
    /// inputs' and outputs' included, stays below `i64::MAX / 8` up to it.
    pub max_batch: i64,
}

/// Checks that `name` can prefix C symbols: `[A-Za-z_][A-Za-z0-9_]*`, at most 64 characters.
pub fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && name.len() <= 64 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Ok(());
    }
    let detail =
        format!("the artifact name `{name}` is not a C identifier ([A-Za-z_][A-Za-z0-9_]*, at most 64 characters)");
    Err(Error::Export { detail })
}

fn refuse<T>(detail: impl Into<String>) -> Result<T> {
    Err(Error::Export { detail: detail.into() })
}

/// Bytes of one element of `dtype`.
pub fn element_bytes(dtype: DType) -> i64 {
    match dtype {
        DType::F32 | DType::I32 => 4,
        DType::F64 | DType::I64 => 8,
        DType::Bool => 1,
    }
}

/// `buffer` as a port: its shape must be `[batch, static...]` or static.
fn port(program: &Program, name: &str, buffer: usize, shape: &Shape, batch_name: &str) -> Result<Port> {
    let dtype = program.buffers[buffer].dtype;
    let (batched, rest) = match shape.dims().split_first() {
        Some((Dim::Sym(b), rest)) if b == batch_name => (true, rest),
        _ => (false, shape.dims()),
    };
    let mut row = 1i64;
    for dim in rest {
        let Dim::Static(n) = dim else {
            return refuse(format!(
                "`{name}` has shape {shape}: an artifact's inputs and outputs are [{batch_name}, static dims...] \
                 or static, with the batch `{batch_name}` as the only symbolic dim"
            ));
        };
        row = i64::try_from(*n)
            .ok()
            .and_then(|n| row.checked_mul(n))
            .ok_or_else(|| Error::Export { detail: format!("`{name}` of shape {shape} has too many elements") })?;
    }
    Ok(Port { name: name.to_string(), buffer, shape: shape.clone(), dtype, batched, row })
}

impl ArtifactPlan {
    /// Plans `program` (see the module comment of `export`), fed through the graph inputs
    /// `input_names` (in the entry point's order), with the params' values from `params`.
    /// Refuses, with the reason, programs the ABI cannot express.
    pub fn new(name: &str, program: &Program, input_names: &[String], params: &ParamStore) -> Result<ArtifactPlan> {
        check_name(name)?;
        if !program.updates.is_empty() {
            return refuse("an artifact computes outputs only; the program updates params");
        }
        if input_names.is_empty() || program.outputs.is_empty() {
            return refuse("an artifact has at least one input and one output");
        }
        for (i, input) in input_names.iter().enumerate() {
            if input_names[..i].contains(input) {
                return refuse(format!("the input `{input}` is listed twice"));
            }
        }
        let mut input_buffers = Vec::with_capacity(input_names.len());
        for input in input_names {
            let is_input = |b: usize| matches!(&program.buffers[b].role, Role::Input(n) if n == input);
            let Some(buffer) = (0..program.buffers.len()).find(|&b| is_input(b)) else {
                return refuse(format!("the outputs do not depend on the input `{input}`"));
            };
            input_buffers.push(buffer);
        }
        // Other graph inputs may have buffers, but no kernel may read them.
        let listed = input_names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        for kernel in &program.kernels {
            for buffer in kernel.accesses().0 {
                if let Role::Input(other) = &program.buffers[program.storage(buffer)].role
                    && !input_names.contains(other)
                {
                    return refuse(format!("the outputs need the input `{other}` besides {listed}"));
                }
            }
        }
        let batch_name = input_buffers.iter().find_map(|&b| match program.buffers[b].shape.dims().first() {
            Some(Dim::Sym(symbol)) => Some(symbol.clone()),
            _ => None,
        });
        let Some(batch_name) = batch_name else {
            let shape = &program.buffers[input_buffers[0]].shape;
            return refuse(format!(
                "an artifact needs a symbolic batch dim (like `B`) as an input's first dim; the input `{}` has \
                 shape {shape}",
                input_names[0]
            ));
        };
        let batch_symbol = program.symbols.iter().position(|s| *s == batch_name);
        let batch_symbol = batch_symbol.ok_or_else(|| Error::Bug(format!("symbol `{batch_name}` is not declared")))?;
        let mut inputs = Vec::with_capacity(input_names.len());
        for (input, &buffer) in input_names.iter().zip(&input_buffers) {
            inputs.push(port(program, input, buffer, &program.buffers[buffer].shape, &batch_name)?);
        }
        let mut outputs: Vec<Port> = Vec::with_capacity(program.outputs.len());
        for (i, &output) in program.outputs.iter().enumerate() {
            let storage = program.storage(output);
            if program.buffers[storage].role != Role::Temporary {
                return refuse(format!(
                    "output {i} must be computed by a kernel (it is an input, a param or a constant itself)"
                ));
            }
            if let Some(same) = outputs.iter().position(|o| o.buffer == storage) {
                return refuse(format!("outputs {same} and {i} are the same tensor; export it once"));
            }
            let mut output_port =
                port(program, &format!("output{i}"), output, &program.buffers[output].shape, &batch_name)?;
            output_port.buffer = storage;
            outputs.push(output_port);
        }
        for port in inputs.iter().chain(&outputs) {
            if port.dtype == DType::Bool {
                return refuse(format!(
                    "`{}` is bool; an artifact's inputs and outputs are f32, f64, i32 or i64",
                    port.name
                ));
            }
        }
        let mut weights = Vec::new();
        let mut placements = vec![None; program.buffers.len()];
        let mut slots: Vec<Vec<LinearBytes>> = Vec::new();
        let mut used = vec![false; program.buffers.len()];
        for kernel in &program.kernels {
            let (reads, writes) = kernel.accesses();
            for buffer in reads.into_iter().chain(writes) {
                used[program.storage(buffer)] = true;
            }
        }
        // Owners first, then every alias where its storage is.
        for owner in (0..program.buffers.len()).filter(|&b| program.storage(b) == b) {
            let declared = &program.buffers[owner];
            let output = outputs.iter().position(|o| o.buffer == owner);
            let placement = match &declared.role {
                _ if let Some(j) = output => Placement::Output(j),
                Role::Param(_) | Role::Constant(_) if !used[owner] => Placement::Unused,
                Role::Input(_) => match input_buffers.iter().position(|&b| b == owner) {
                    Some(i) => Placement::Input(i),
                    // Another graph input that no kernel reads.
                    None => Placement::Unused,
                },
                Role::Param(name) => {
                    let value = declared.param_value(name, params)?;
                    let bytes = value.cast(declared.dtype).data().to_le_bytes();
                    weights.push(Weight { name: name.clone(), buffer: owner, dtype: declared.dtype, bytes });
                    Placement::Weight(weights.len() - 1)
                }
                Role::Constant(value) => {
                    let bytes = value.cast(declared.dtype).data().to_le_bytes();
                    let name = format!("constant{owner}");
                    weights.push(Weight { name, buffer: owner, dtype: declared.dtype, bytes });
                    Placement::Weight(weights.len() - 1)
                }
                Role::Temporary => {
                    let slot =
                        program.slots[owner].ok_or_else(|| Error::Bug(format!("temporary {owner} has no slot")))?;
                    if slots.len() <= slot {
                        slots.resize(slot + 1, Vec::new());
                    }
                    slots[slot].push(bytes_of(&declared.shape, declared.dtype, &batch_name)?);
                    Placement::Scratch(slot)
                }
                Role::Alias(_) => return Err(Error::Bug("storage() returned an alias".into())),
            };
            placements[owner] = Some(placement);
        }
        let placements: Vec<Placement> = (0..program.buffers.len())
            .map(|b| placements[program.storage(b)].ok_or_else(|| Error::Bug(format!("buffer {b} has no place"))))
            .collect::<Result<_>>()?;
        let ports = || inputs.iter().chain(&outputs);
        let port_bytes = |batched: bool| -> i64 {
            ports().filter(|p| p.batched == batched).map(|p| p.row.saturating_mul(element_bytes(p.dtype))).sum()
        };
        let per_row: i64 =
            slots.iter().map(|s| s.iter().map(|b| b.per_row).max().unwrap_or(0)).sum::<i64>() + port_bytes(true);
        let fixed: i64 =
            slots.iter().map(|s| s.iter().map(|b| b.fixed).max().unwrap_or(0) + SCRATCH_ALIGN).sum::<i64>()
                + port_bytes(false);
        if fixed >= i64::MAX / 8 {
            return refuse(format!("the model needs {fixed} bytes whatever the batch, too many for one artifact"));
        }
        let max_batch = (i64::MAX / 8 - fixed) / per_row.max(1);
        Ok(ArtifactPlan {
            name: name.to_string(),
            batch_symbol,
            batch_name,
            inputs,
            outputs,
            placements,
            slots,
            weights,
            max_batch,
        })
    }

    /// `[B, 2] -> [B, 2]`: the inputs' and outputs' shapes (with their dtype when not f32),
    /// for the version string.
    pub fn summary(&self) -> String {
        let list = |ports: &[Port]| {
            let shown: Vec<String> = ports
                .iter()
                .map(|p| if p.dtype == DType::F32 { p.shape.to_string() } else { format!("{} {}", p.dtype, p.shape) })
                .collect();
            shown.join(", ")
        };
        format!("{} -> {}", list(&self.inputs), list(&self.outputs))
    }

    /// The byte offset of every scratch slot from the scratch pointer at `batch`, and the
    /// scratch bytes needed in all; `None` if `batch` is negative or above the maximum. Each
    /// slot is rounded up to [`SCRATCH_ALIGN`] bytes; the entry point computes the same.
    pub fn slot_offsets(&self, batch: i64) -> Option<(Vec<i64>, i64)> {
        if !(0..=self.max_batch).contains(&batch) {
            return None;
        }
        let mut offset = 0;
        let mut offsets = Vec::with_capacity(self.slots.len());
        for slot in &self.slots {
            offsets.push(offset);
            let bytes = slot.iter().map(|b| b.at(batch)).max().unwrap_or(0);
            offset += (bytes + SCRATCH_ALIGN - 1) / SCRATCH_ALIGN * SCRATCH_ALIGN;
        }
        Some((offsets, offset))
    }

    /// The scratch bytes `<name>_infer` needs at `batch` (what `<name>_scratch_bytes` returns:
    /// 0 for a batch it rejects).
    pub fn scratch_bytes(&self, batch: i64) -> i64 {
        self.slot_offsets(batch).map_or(0, |(_, total)| total)
    }

    /// Bytes of weight data in the artifact.
    pub fn weight_bytes(&self) -> usize {
        self.weights.iter().map(|w| w.bytes.len()).sum()
    }
}

/// The bytes of a buffer of `shape`, linear in the batch.
fn bytes_of(shape: &Shape, dtype: DType, batch: &str) -> Result<LinearBytes> {
    let size = element_bytes(dtype);
    let (mut elements, mut batch_dims) = (1i64, 0);
    for dim in shape.dims() {
        match dim {
            Dim::Static(n) => elements = elements.saturating_mul(*n as i64),
            Dim::Sym(s) if s == batch => batch_dims += 1,
            Dim::Sym(s) => {
                return refuse(format!("a buffer of shape {shape} has a symbolic dim `{s}` besides the batch"));
            }
        }
    }
    match batch_dims {
        0 => Ok(LinearBytes { per_row: 0, fixed: elements * size }),
        1 => Ok(LinearBytes { per_row: elements * size, fixed: 0 }),
        _ => refuse(format!("a buffer of shape {shape} grows faster than linearly with the batch")),
    }
}
