//! The native tier: the kernel IR printed as vector C, built by the system C compiler, loaded
//! as a shared library.
//!
//! In: a [`Program`]. Out: a [`CompiledProgram`] whose kernels have the JIT's ABI
//! (`codegen::KernelFn`: buffers, sizes, start, end, status) and the same range layouts, so the
//! runtime's feed checks, memory plan, in-place updates and thread pool serve both tiers
//! unchanged. The printer ([`print`]) writes explicit SIMD with GCC/Clang vector extensions, as
//! wide as the host allows ([`lanes`]: 16 `f32` lanes with AVX-512, 8 with AVX2, 4 otherwise),
//! kiln's own polynomial exp/log/sin/cos/tanh and counter-based random numbers, and calls the
//! process's tuned GEMM (`codegen::gemm`) through a function pointer for big matmuls. The
//! library is built once per distinct source, compiler and flags, and cached (see [`build`]).
//!
//! Results: each kernel computes every element with the same instructions whatever the range
//! it is given, so a program gives the same bits on any number of threads. They differ from
//! the JIT's within float rounding: the C compiler contracts `a * b + c` where the JIT
//! rounds twice (unless `Options::fma` is off: then neither contracts), reductions sum in `lanes()` lanes where the JIT sums in 4, and the
//! transcendentals are the JIT's polynomials with the contraction chosen by the compiler
//! (a few ulp). While a native kernel runs, denormal operands read as zero and denormal
//! results flush to zero (x86's DAZ and FTZ modes, as XLA runs its CPU kernels; the caller's
//! mode is restored on return): a model that separates its classes well drives softmax
//! probabilities below `f32`'s normal range, and each denormal then costs a microcode assist
//! in every matmul of the backward pass (W2 ran ~25% slower than W1 for this alone). Values
//! below 1.2e-38 become zero; nothing else changes.
//!
//! `KILN_DUMP=native` prints the path of each library as it is built or loaded.

pub mod artifact;
mod body;
pub mod build;
mod narrow;
mod print;

use std::sync::Once;

use crate::codegen::{self, CompiledKernel, CompiledProgram, KernelFn, Options, Tier};
use crate::error::{Error, Result};
use crate::kernel::Program;

pub use build::{CCompiler, c_compiler};

/// A loaded kernel library (kept open as long as its program lives).
pub type Library = libloading::Library;

/// `f32` lanes per vector on this host: 16 with AVX-512, 8 with AVX2, 4 otherwise.
pub fn lanes() -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return 16;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return 8;
        }
    }
    4
}

/// The C source of `program` for this host (what [`compile`] builds).
pub fn source(program: &Program, options: &Options) -> Result<String> {
    let gemm = options.gemm.then(|| codegen::gemm::min_work(options));
    Ok(print::print(program, lanes(), gemm)?.0)
}

/// Compiles `program` on `tier`: the JIT for [`Tier::Jit`] and [`Tier::Auto`] (whose native
/// half the runtime starts later), the native tier for [`Tier::Native`], or the JIT with a
/// note (once per process) when this machine has no C compiler.
pub fn compile_on(program: Program, options: &Options, tier: Tier) -> Result<CompiledProgram> {
    match tier {
        Tier::Native if c_compiler().is_some() => compile(program, options),
        Tier::Native => {
            say_no_compiler();
            codegen::compile_with(program, options)
        }
        Tier::Jit | Tier::Auto => codegen::compile_with(program, options),
    }
}

/// Prints, once per process, that the native tier is unavailable.
pub fn say_no_compiler() {
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        eprintln!("kiln: no C compiler (`$CC` or `cc`) runs on this machine; the native tier is off, kernels stay on Cranelift")
    });
}

/// Compiles `program` on the native tier: prints it, builds it (or finds it in the cache) and
/// loads it. A C compiler error is an [`Error::Toolchain`] with the compiler's message and the
/// source's path.
pub fn compile(program: Program, options: &Options) -> Result<CompiledProgram> {
    let program = codegen::prepare(program, options);
    let compiler = c_compiler()
        .ok_or_else(|| Error::Toolchain { tool: "cc".into(), detail: "no C compiler runs (set `CC`)".into() })?;
    let gemm = options.gemm.then(|| codegen::gemm::min_work(options));
    let (source, shapes) = print::print(&program, lanes(), gemm)?;
    let flags = build::flags(options.fma);
    let path = build::library_path(compiler, &source, &flags, &options.settings);
    let cached = path.exists();
    build::build(compiler, &source, &flags, &path)?;
    if options.settings.dump.native {
        eprintln!("== native tier: {} {}", if cached { "loaded" } else { "built" }, path.display());
    }
    let dlopen = |detail: String| Error::Toolchain { tool: "dlopen".into(), detail };
    // SAFETY: the library was built by kiln from kiln's source; loading it runs no
    // initialisers beyond the C runtime's.
    let library = unsafe { Library::new(&path) }.map_err(|e| dlopen(format!("{}: {e}", path.display())))?;
    // SAFETY: `kiln_set_gemm` is defined by the prelude with this signature; the GEMM shim has
    // the C ABI the prelude declares (`codegen::gemm::Layout` is eleven `int64_t`s).
    unsafe {
        let set_gemm = library
            .get::<unsafe extern "C" fn(*const u8)>(b"kiln_set_gemm")
            .map_err(|e| dlopen(format!("{}: {e}", path.display())))?;
        set_gemm(codegen::gemm::kiln_sgemm as *const u8);
    }
    let mut kernels = Vec::with_capacity(shapes.len());
    for (number, shape) in shapes.into_iter().enumerate() {
        let symbol = format!("kiln_kernel{number}");
        // SAFETY: every `kiln_kernel{n}` is printed with `KernelFn`'s signature.
        let function: KernelFn = unsafe {
            *library.get::<KernelFn>(symbol.as_bytes()).map_err(|e| dlopen(format!("{}: {e}", path.display())))?
        };
        kernels.push(CompiledKernel::native(shape.name, shape.chunks, shape.splittable, function));
    }
    Ok(CompiledProgram::native(program, kernels, library))
}
