//! Export, compiler side (the plan and the printers; packaging is `kiln_runtime::export`).
//!
//! Ahead-of-time code generation: a forward program and its artifact plan to a relocatable
//! object file (ELF on Linux, Mach-O on macOS) with cranelift-object.
//!
//! In: a [`Program`] and its [`ArtifactPlan`]. Out: the bytes of an object file holding every
//! kernel as a local function (the same builders as the JIT, without the GEMM shim, so
//! every matmul is the register tile and the code calls nothing), the weights as read-only
//! data, and the exported entry points of the C ABI (see `entry`). The object has no
//! undefined symbols: it links against nothing, not even libc.
//!
//! The instruction set is fixed by [`ObjectTarget`], not by the machine that exports, so an
//! artifact runs on every CPU of its target: by default x86-64-v2 (SSE4.2 and POPCNT, no
//! AVX, no FMA: every x86-64 CPU since 2009) or the aarch64 base (NEON and FMA).

use std::sync::{Arc, Mutex};

use cranelift_codegen::isa::{self, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_module::{DataDescription, Linkage, Module};
use cranelift_object::{ObjectBuilder, ObjectModule};

use super::{ArtifactPlan, entry};
use crate::codegen::{Target, define_kernels};
use crate::error::{Error, Result};
use crate::kernel::Program;
use crate::settings::Settings;

/// Which instructions an artifact may use beyond its architecture's baseline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cpu {
    /// Every CPU of the architecture: x86-64-v2 (SSE4.2, POPCNT; multiply-adds are a multiply
    /// then an add) or aarch64's base (NEON, with fused multiply-add).
    #[default]
    Baseline,
    /// x86-64-v3: AVX2, BMI and fused multiply-add (Intel Haswell and AMD Zen or newer).
    X86_64V3,
    /// The exporting machine's own features (only when the target is the host).
    Host,
}

/// The machine an artifact is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectTarget {
    /// A target triple, such as `x86_64-unknown-linux-gnu` or `aarch64-unknown-linux-gnu`.
    pub triple: String,
    /// Instructions beyond the baseline.
    pub cpu: Cpu,
}

impl ObjectTarget {
    /// The exporting machine's architecture and OS, at the baseline CPU.
    pub fn host() -> ObjectTarget {
        ObjectTarget { triple: host_triple(), cpu: Cpu::Baseline }
    }

    /// `triple` at the baseline CPU.
    pub fn triple(triple: &str) -> ObjectTarget {
        ObjectTarget { triple: triple.to_string(), cpu: Cpu::Baseline }
    }

    /// Whether this is the exporting machine's architecture and OS.
    pub fn is_host(&self) -> bool {
        self.triple == host_triple()
    }

    /// Whether multiply-adds are fused on this target (what a JIT must use to compute the
    /// same bits, see `codegen::Options::fma`).
    pub fn fma(&self) -> Result<bool> {
        Ok(self.isa()?.1.fma)
    }

    /// The ISA and what the kernel builders need to know of it.
    fn isa(&self) -> Result<(OwnedTargetIsa, Target)> {
        let unsupported = |detail: String| Error::Export { detail };
        let mut flags = settings::builder();
        let mut set = |name: &str, value: &str| {
            flags.set(name, value).map_err(|e| Error::Bug(format!("cranelift flag {name}={value}: {e}")))
        };
        set("opt_level", "speed")?;
        // Static libraries are linked into position-independent executables by default.
        set("is_pic", "true")?;
        set("enable_verifier", if cfg!(debug_assertions) { "true" } else { "false" })?;
        // Probes inline, never a call to a probestack routine the artifact does not have.
        set("enable_probestack", "true")?;
        set("probestack_strategy", "inline")?;
        let flags = settings::Flags::new(flags);
        let arch = self.triple.split('-').next().unwrap_or_default();
        let mut builder = match self.cpu {
            Cpu::Host if !self.is_host() => {
                let detail = format!("Cpu::Host needs the host's triple ({}), not {}", host_triple(), self.triple);
                return Err(unsupported(detail));
            }
            Cpu::Host => cranelift_native::builder().map_err(|e| unsupported(format!("host not supported: {e}")))?,
            _ => isa::lookup_by_name(&self.triple)
                .map_err(|e| unsupported(format!("target `{}` is not supported by Cranelift: {e}", self.triple)))?,
        };
        let fma = match (arch, self.cpu) {
            ("x86_64", Cpu::Baseline) => {
                builder.enable("x86-64-v2").map_err(|e| Error::Bug(format!("x86-64-v2: {e}")))?;
                false
            }
            ("x86_64", Cpu::X86_64V3) => {
                // Cranelift's preset leaves `has_avx` off, and its FMA lowering needs it.
                for flag in ["x86-64-v3", "has_avx"] {
                    builder.enable(flag).map_err(|e| Error::Bug(format!("{flag}: {e}")))?;
                }
                true
            }
            ("x86_64", Cpu::Host) => crate::codegen::host_has_fma(),
            ("aarch64", Cpu::Baseline | Cpu::Host) => true,
            _ => {
                let detail = format!(
                    "kiln exports for x86_64 (Baseline, X86_64V3, Host) and aarch64 (Baseline, Host), not {} with {:?}",
                    self.triple, self.cpu
                );
                return Err(unsupported(detail));
            }
        };
        let isa =
            builder.finish(flags).map_err(|e| unsupported(format!("building the ISA of {}: {e}", self.triple)))?;
        if isa.pointer_bits() != 64 || isa.endianness() != cranelift_codegen::ir::Endianness::Little {
            return Err(unsupported(format!("{} is not a 64-bit little-endian target", self.triple)));
        }
        Ok((isa, Target { fma, gemm_min_work: i64::MAX, dump_clif: Settings::current().dump.clif }))
    }
}

/// The host's triple, as Cranelift names it.
pub fn host_triple() -> String {
    cranelift_native::builder().map(|b| b.triple().to_string()).unwrap_or_else(|_| "unknown".into())
}

/// Compiles `program`, placed by `plan`, to the bytes of an object file for `target`.
pub fn emit_object(program: &Program, plan: &ArtifactPlan, target: &ObjectTarget) -> Result<Vec<u8>> {
    let (isa, code_target) = target.isa()?;
    // Every libcall Cranelift would need: there must be none, the artifact links against nothing.
    let libcalls = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&libcalls);
    let names = Box::new(move |call: cranelift_codegen::ir::LibCall| {
        let name = cranelift_module::default_libcall_names()(call);
        seen.lock().unwrap_or_else(|e| e.into_inner()).push(name.clone());
        name
    });
    let builder = ObjectBuilder::new(isa, plan.name.as_bytes().to_vec(), names)
        .map_err(|e| Error::Bug(format!("object builder: {e}")))?;
    let mut module = ObjectModule::new(builder);
    let prefix = format!("{}_", plan.name);
    let kernels = define_kernels(&mut module, program, code_target, None, &prefix)?;
    let mut weights = Vec::with_capacity(plan.weights.len());
    for weight in &plan.weights {
        let symbol = format!("{}_weight_{}", plan.name, weight.name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"));
        weights.push(define_data(&mut module, &symbol, &weight.bytes)?);
    }
    let version = format!("{} {} (kiln {}, {})\0", plan.name, plan.summary(), env!("CARGO_PKG_VERSION"), target.triple);
    let version = define_data(&mut module, &format!("{}_version_string", plan.name), version.as_bytes())?;
    entry::define_entry_points(&mut module, program, plan, &kernels, &weights, version)?;
    let product = module.finish();
    let mut libcalls = libcalls.lock().unwrap_or_else(|e| e.into_inner()).clone();
    libcalls.sort();
    libcalls.dedup();
    if !libcalls.is_empty() {
        let detail =
            format!("the code calls {} for {}, which an artifact cannot link", libcalls.join(", "), target.triple);
        return Err(Error::Bug(detail));
    }
    product.emit().map_err(|e| Error::Bug(format!("writing the object: {e}")))
}

fn define_data(module: &mut ObjectModule, symbol: &str, bytes: &[u8]) -> Result<cranelift_module::DataId> {
    let id = module
        .declare_data(symbol, Linkage::Local, false, false)
        .map_err(|e| Error::Bug(format!("declaring {symbol}: {e}")))?;
    let mut description = DataDescription::new();
    // At least one 16-byte word, so an empty constant still has an address.
    let mut contents = bytes.to_vec();
    contents.resize(bytes.len().max(16), 0);
    description.define(contents.into_boxed_slice());
    description.set_align(16);
    module.define_data(id, &description).map_err(|e| Error::Bug(format!("defining {symbol}: {e}")))?;
    Ok(id)
}
