//! Export, compiler side (the plan and the printers; packaging is `kiln_runtime::export`).
//!
//! Ahead-of-time export at the level of the kernel IR: what an artifact does with a program,
//! whichever printer emits its code.
//!
//! In: a forward-only kernel [`Program`](crate::kernel::Program) (no updates; one or more
//! inputs and outputs of f32, f64, i32 or i64, each `[B, static dims...]` over one symbolic
//! batch dim `B` or fully static) and the trained values of its params. Out: an
//! [`ArtifactPlan`]: where every buffer lives when the entry point
//! `<name>_infer(input0, input0_len, ..., batch, output0, output0_len, ..., scratch, scratch_len)`
//! runs (the caller's inputs and outputs, read-only weight data, or a slot of the caller's
//! scratch memory, at offsets that are a function of `batch` alone), the error codes (a null
//! pointer, a bad batch, a length below what the batch needs), and the largest batch whose
//! sizes cannot overflow. Before planning, [`pretranspose_weights`] stores the right operands
//! of matmuls that are weights in the layout the register tile reads fastest. The Cranelift
//! object printer ([`object`], with the entry points of `entry`) and the C printer ([`c_source`]) both follow the plan,
//! so both artifacts have the same ABI.

pub mod c_source;
mod entry;
mod layout;
pub mod object;
mod plan;

pub use layout::pretranspose_weights;
pub use plan::{
    ArtifactPlan, ErrorCode, LinearBytes, Placement, Port, SCRATCH_ALIGN, Weight, check_name, element_bytes,
};

/// The version of the artifact ABI (the entry points and their error codes): `<name>_abi_version()`.
/// Version 2 passes every buffer with its length and takes several inputs and outputs.
pub const ABI_VERSION: i32 = 2;
