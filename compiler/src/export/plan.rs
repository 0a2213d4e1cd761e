//! The artifact plan: the buffers of a forward program placed in the caller's memory.

use crate::error::{Error, Result};
use crate::graph::{DType, Dim, Shape};
use crate::interp::ParamStore;
use crate::kernel::{Program, Role};
use crate::value::Data;

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
    /// The caller's `input`.
    Input,
    /// The caller's `output`: the last kernel writing the output writes it there directly.
    Output,
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

/// The nonzero codes `<name>_infer` returns. A kernel's data-dependent status `s` (see
/// `codegen::STATUS_*`) comes back as `KERNEL_STATUS + s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// `input` or `output` is null, or `scratch` is null while the batch needs scratch memory.
    NullPointer = 1,
    /// `batch` is negative.
    NegativeBatch = 2,
    /// `batch` is above `<name>_max_batch()`: a size would overflow.
    BatchTooLarge = 3,
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
    /// The input buffer.
    pub input: usize,
    /// The output buffer's storage (a temporary).
    pub output: usize,
    /// The input's shape (`[B, ...]`).
    pub input_shape: Shape,
    /// The output's shape (`[B, ...]`).
    pub output_shape: Shape,
    /// `f32` elements per batch row of the input.
    pub input_row: i64,
    /// `f32` elements per batch row of the output.
    pub output_row: i64,
    /// For every buffer of the program (aliases resolved): where it lives.
    pub placements: Vec<Placement>,
    /// For every scratch slot: the sizes of the buffers sharing it (it holds the largest).
    pub slots: Vec<Vec<LinearBytes>>,
    /// The data stored in the artifact, one per param or constant buffer.
    pub weights: Vec<Weight>,
    /// The largest batch the artifact accepts: every byte count, scratch total included, stays
    /// below `i64::MAX / 8` up to it.
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

impl ArtifactPlan {
    /// Plans `program` (see the module comment of `export`), fed through the graph input
    /// `input_name`, with the params' values from `params`. Refuses, with the reason, programs the ABI cannot express.
    pub fn new(name: &str, program: &Program, input_name: &str, params: &ParamStore) -> Result<ArtifactPlan> {
        check_name(name)?;
        if !program.updates.is_empty() {
            return refuse("an artifact computes outputs only; the program updates params");
        }
        let is_input = |b: usize| matches!(&program.buffers[b].role, Role::Input(n) if n == input_name);
        let Some(input) = (0..program.buffers.len()).find(|&b| is_input(b)) else {
            return refuse(format!("the output does not depend on the input `{input_name}`"));
        };
        // Other graph inputs may have buffers, but no kernel may read them.
        for kernel in &program.kernels {
            for buffer in kernel.accesses().0 {
                if let Role::Input(other) = &program.buffers[program.storage(buffer)].role
                    && other != input_name
                {
                    return refuse(format!(
                        "an artifact takes one input; the output needs `{other}` besides `{input_name}`"
                    ));
                }
            }
        }
        let &[output] = program.outputs.as_slice() else {
            return refuse(format!("an artifact has exactly one output, not {}", program.outputs.len()));
        };
        let batch_name = match program.buffers[input].shape.dims().first() {
            Some(Dim::Sym(symbol)) => symbol.clone(),
            _ => {
                let shape = &program.buffers[input].shape;
                return refuse(format!(
                    "the input's first dim must be a symbolic batch dim (like `B`), its shape is {shape}"
                ));
            }
        };
        let batch_symbol = program.symbols.iter().position(|s| *s == batch_name);
        let batch_symbol = batch_symbol.ok_or_else(|| Error::Bug(format!("symbol `{batch_name}` is not declared")))?;
        let row = |buffer: usize, what: &str| -> Result<i64> {
            let declared = &program.buffers[buffer];
            if declared.dtype != DType::F32 {
                return refuse(format!("the {what} must be f32, it is {}", declared.dtype));
            }
            match declared.shape.dims().split_first() {
                Some((Dim::Sym(b), rest)) if *b == batch_name && rest.iter().all(|d| matches!(d, Dim::Static(_))) => {
                    Ok(rest.iter().map(|d| if let Dim::Static(n) = d { *n as i64 } else { 1 }).product())
                }
                _ => refuse(format!(
                    "the {what}'s shape must be [{batch_name}, static dims...], it is {}",
                    declared.shape
                )),
            }
        };
        let (input_row, output_row) = (row(input, &format!("input `{input_name}`"))?, row(output, "output")?);
        let output_storage = program.storage(output);
        if program.buffers[output_storage].role != Role::Temporary {
            return refuse("the output must be computed by a kernel (it is an input, a param or a constant itself)");
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
            let placement = match &declared.role {
                _ if owner == output_storage => Placement::Output,
                Role::Param(_) | Role::Constant(_) if !used[owner] => Placement::Unused,
                // The input, or another graph input that no kernel reads.
                Role::Input(_) => Placement::Input,
                Role::Param(name) => {
                    let value = params.get(name).ok_or_else(|| Error::MissingParam { name: name.clone() })?;
                    let shape = declared.shape.as_static().ok_or_else(|| Error::Bug("a symbolic param".into()))?;
                    if value.shape() != shape {
                        let (expected, got) = (format!("shape {shape:?}"), format!("shape {:?}", value.shape()));
                        return Err(Error::BadFeed { what: "param", name: name.clone(), expected, got });
                    }
                    let bytes = little_endian(value.cast(declared.dtype).data());
                    weights.push(Weight { name: name.clone(), buffer: owner, dtype: declared.dtype, bytes });
                    Placement::Weight(weights.len() - 1)
                }
                Role::Constant(value) => {
                    let bytes = little_endian(value.cast(declared.dtype).data());
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
        let per_row: i64 = slots.iter().map(|s| s.iter().map(|b| b.per_row).max().unwrap_or(0)).sum::<i64>()
            + 4 * (input_row + output_row);
        let fixed: i64 =
            slots.iter().map(|s| s.iter().map(|b| b.fixed).max().unwrap_or(0) + SCRATCH_ALIGN).sum::<i64>();
        let max_batch = (i64::MAX / 8 - fixed) / per_row.max(1);
        Ok(ArtifactPlan {
            name: name.to_string(),
            batch_symbol,
            batch_name,
            input,
            output: output_storage,
            input_shape: program.buffers[input].shape.clone(),
            output_shape: program.buffers[output].shape.clone(),
            input_row,
            output_row,
            placements,
            slots,
            weights,
            max_batch,
        })
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
    let size = match dtype {
        DType::F32 | DType::I32 => 4,
        DType::F64 | DType::I64 => 8,
        DType::Bool => 1,
    };
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

/// Typed data as little-endian bytes (every target kiln exports for is little-endian).
fn little_endian(data: &Data) -> Vec<u8> {
    match data {
        Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
    }
}
