//! Ahead-of-time export at the level of the kernel IR: what an artifact does with a program,
//! whichever printer emits its code.
//!
//! In: a forward-only kernel [`Program`](crate::kernel::Program) (one `f32` input and one
//! `f32` output, both `[B, ...]` over one symbolic batch dim, no updates) and the trained
//! values of its params. Out: an [`ArtifactPlan`]: where every buffer lives when the entry
//! point `<name>_infer(input, batch, output, scratch)` runs (the caller's input and output,
//! read-only weight data, or a slot of the caller's scratch memory, at offsets that are a
//! function of `batch` alone), the error codes, and the largest batch whose sizes cannot
//! overflow. Before planning, [`pretranspose_weights`] stores the right operands of matmuls
//! that are weights in the layout the register tile reads fastest. The Cranelift object printer (`codegen::object`) and the C printer
//! ([`c_source`]) both follow the plan, so both artifacts have the same ABI.

pub mod c_source;
mod layout;
mod plan;

pub use layout::pretranspose_weights;
pub use plan::{ArtifactPlan, ErrorCode, LinearBytes, Placement, SCRATCH_ALIGN, Weight, check_name};

/// The version of the artifact ABI (the entry points and their error codes): `<name>_abi_version()`.
pub const ABI_VERSION: i32 = 1;
