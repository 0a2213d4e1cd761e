//! Cranelift code generation: kernel IR to native code, in memory (JIT) or in an object file
//! (ahead of time, see [`object`]).
//!
//! In: a [`Program`]. Out: a [`CompiledProgram`] holding one native function per kernel (or an
//! object file holding the same functions, see [`object`]), with
//! the C ABI `fn(buffers, sizes, start, end, status)`:
//! - `buffers: *const *mut u8`: the base address of every buffer, by buffer number;
//! - `sizes: *const i64`: the value of every symbolic dim, by symbol number;
//! - `start..end`: the range of the kernel's outermost parallel loop this call runs
//!   (see [`CompiledKernel::range`]);
//! - `status: *mut i64`: [`STATUS_WORDS`] slots, zero on entry; a kernel that meets a
//!   data-dependent error (a gather, one-hot or scatter index out of range, an integer division
//!   by zero) sets `status[0]` to the error's code and `status[1]` to the offending value, and
//!   for a range check `status[2]` to the index's position in its tensor and `status[3]` to
//!   the number of the program's `IndexCheck` plus one; then it goes on safely.
//!
//! Generated code trusts its caller for everything else: every buffer holds exactly the
//! elements its declared shape gives under `sizes`. The runtime checks that before each call.
//! `KILN_DUMP=clif` prints the Cranelift IR of every kernel.

mod body;
mod emitter;
pub mod gemm;
mod loops;
pub(crate) mod math;
mod matmul;
mod random;
mod scatter;

use cranelift_codegen::ir::{self, InstBuilder};
use cranelift_codegen::ir::{AbiParam, Function, Signature, UserFuncName, types};
use cranelift_codegen::isa::{CallConv, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module, default_libcall_names};

use crate::error::{Error, Result};
use crate::kernel::{Kernel, Program, Size};
use crate::settings::Settings;
pub use crate::settings::Tier;

/// The status code of an index outside its table (`status[1]` holds the index).
pub const STATUS_INDEX_OUT_OF_RANGE: i64 = 1;
/// The status code of an integer division by zero.
pub const STATUS_DIVISION_BY_ZERO: i64 = 2;
/// The status code of a failure inside the tuned GEMM (a bug in kiln or in the `gemm` crate).
pub const STATUS_GEMM_FAILED: i64 = 3;

/// Number of `i64` status slots a kernel may write: code, value, position, check.
pub const STATUS_WORDS: usize = 4;

/// The status slots of one kernel call (see the module comment), zero before the call.
pub type KernelStatus = [i64; STATUS_WORDS];

/// The signature of every kernel.
pub type KernelFn = unsafe extern "C" fn(*const *mut u8, *const i64, i64, i64, *mut i64);

/// One compiled kernel.
#[derive(Clone, Debug)]
pub struct CompiledKernel {
    /// The kernel's name (as in the program listing).
    pub name: String,
    /// How the range `start..end` counts work: the product, over these `(extent, chunk)`
    /// pairs, of the number of chunks of `chunk` iterations that cover `extent` (see
    /// [`CompiledKernel::range`]). A loop kernel has one pair (its outermost loop, chunks of
    /// 1); a matmul has two (chunks of rows, chunks of columns).
    pub chunks: Vec<(Size, i64)>,
    /// False if the whole range must run in one call (a reduction to a scalar).
    pub splittable: bool,
    function: KernelFn,
}

/// How a kernel's range is laid out, as its builder reports it.
pub(crate) struct KernelShape {
    pub chunks: Vec<(Size, i64)>,
    pub splittable: bool,
}

impl CompiledKernel {
    /// The length of the range `0..range` the kernel accepts under the symbol values
    /// `symbols`; the runtime may split it into sub-ranges and run them on different threads.
    pub fn range(&self, symbols: &[i64]) -> i64 {
        let chunks = |(extent, chunk): &(Size, i64)| (extent.evaluate(symbols) + chunk - 1) / chunk;
        self.chunks.iter().map(chunks).product()
    }

    /// Runs the kernel over `start..end`.
    ///
    /// # Safety
    /// `buffers` must point to one valid pointer per program buffer, each to as many elements
    /// as the buffer's shape holds under `sizes`; `sizes` must hold every symbol's value;
    /// `start..end` must lie within `0..range(sizes)` (all of it unless `splittable`).
    pub unsafe fn run(
        &self,
        buffers: *const *mut u8,
        sizes: *const i64,
        start: i64,
        end: i64,
        status: &mut KernelStatus,
    ) {
        // SAFETY: the caller upholds the contract above, which is all the generated code
        // assumes; `status` holds every slot a kernel writes.
        unsafe { (self.function)(buffers, sizes, start, end, status.as_mut_ptr()) }
    }
}

/// A program compiled to native code. Owns the code: its kernels stay valid as long as it lives.
pub struct CompiledProgram {
    /// The program the kernels implement.
    pub program: Program,
    /// One compiled kernel per program kernel, in execution order.
    pub kernels: Vec<CompiledKernel>,
    /// Which tier made the code.
    pub tier: Tier,
    /// Keeps the code alive; never used after compilation.
    _code: Code,
}

/// What owns a compiled program's machine code (held, never read: dropping it frees the code).
#[allow(dead_code)]
pub(crate) enum Code {
    /// Cranelift's executable memory.
    Jit(Box<JITModule>),
    /// A shared library built by the native tier (loaded there; codegen only keeps it open).
    Native(libloading::Library),
}

impl CompiledKernel {
    /// A kernel of the native tier: `function` lives in a library the program keeps loaded.
    pub(crate) fn native(name: String, chunks: Vec<(Size, i64)>, splittable: bool, function: KernelFn) -> Self {
        CompiledKernel { name, chunks, splittable, function }
    }
}

impl CompiledProgram {
    /// A program of the native tier, owning the library its kernels live in.
    pub(crate) fn native(program: Program, kernels: Vec<CompiledKernel>, library: libloading::Library) -> Self {
        CompiledProgram { program, kernels, tier: Tier::Native, _code: Code::Native(library) }
    }
}

impl std::fmt::Debug for CompiledProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledProgram").field("kernels", &self.kernels).finish_non_exhaustive()
    }
}

// SAFETY: the JIT module is only kept to own the executable memory; after compilation it is
// never touched, and the finished machine code is immutable and callable from any thread.
unsafe impl Send for CompiledProgram {}
// SAFETY: as above, shared access only ever calls the immutable finished code.
unsafe impl Sync for CompiledProgram {}

/// What the code generator knows about the host.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    /// Fused multiply-add is a native instruction (not a libcall).
    pub fma: bool,
    /// Matmuls of at least this many multiply-adds call the tuned GEMM.
    pub gemm_min_work: i64,
    /// Print each kernel's Cranelift IR (`KILN_DUMP=clif`).
    pub dump_clif: bool,
}

/// Choices of the code generator that change the instructions it emits but not what they
/// compute, up to the order and rounding of float operations.
#[derive(Clone, Debug)]
pub struct Options {
    /// Matmuls big enough to pay for it call the tuned GEMM ([`gemm::kiln_sgemm`]); without,
    /// every matmul runs the register tile, which sums each element in order of `k`, as the
    /// exported artifact does. Default: on.
    pub gemm: bool,
    /// Multiply-adds are fused (one rounding) when the host has FMA; without, they are a
    /// multiply then an add, as an artifact for the x86-64 baseline computes them. Default: on.
    pub fma: bool,
    /// The settings from the environment (the GEMM threshold, what to dump). Default: the
    /// process's, read once ([`Settings::current`]); a test sets its own.
    pub settings: Settings,
}

impl Default for Options {
    fn default() -> Options {
        Options { gemm: true, fma: true, settings: Settings::current().clone() }
    }
}

/// Compiles every kernel of `program` for the host.
pub fn compile(program: Program) -> Result<CompiledProgram> {
    compile_with(program, &Options::default())
}

/// `program` as both tiers compile it: with the GEMM on, momenta folded into the products of
/// their gradients (`kernel::fold_accumulations`), which only the GEMM computes.
pub(crate) fn prepare(mut program: Program, options: &Options) -> Program {
    if options.gemm {
        let takes = crate::kernel::GemmTakes { min_work: gemm::min_work(options), min_k: gemm::GEMM_MIN_K };
        crate::kernel::fold_accumulations(&mut program, takes);
    }
    program
}

/// Compiles every kernel of `program` for the host, with `options`.
pub fn compile_with(program: Program, options: &Options) -> Result<CompiledProgram> {
    let program = prepare(program, options);
    let isa = host_isa()?;
    let target = Target {
        fma: options.fma && host_has_fma(),
        gemm_min_work: gemm::min_work(options),
        dump_clif: options.settings.dump.clif,
    };
    let mut jit = JITBuilder::with_isa(isa, default_libcall_names());
    jit.symbol(gemm::SYMBOL, gemm::kiln_sgemm as *const u8);
    let mut module = JITModule::new(jit);
    let gemm_id = if options.gemm {
        let id = module
            .declare_function(gemm::SYMBOL, Linkage::Import, &gemm_signature(&module))
            .map_err(|e| Error::Bug(format!("declaring {}: {e}", gemm::SYMBOL)))?;
        Some(id)
    } else {
        None
    };
    let declared = define_kernels(&mut module, &program, target, gemm_id, "")?;
    module.finalize_definitions().map_err(|e| Error::Bug(format!("finalizing kernels: {e}")))?;
    let kernels = declared
        .into_iter()
        .map(|kernel| {
            let code = module.get_finalized_function(kernel.id);
            // SAFETY: the function was defined with `kernel_signature`, which is `KernelFn`'s ABI.
            let function = unsafe { std::mem::transmute::<*const u8, KernelFn>(code) };
            let KernelShape { chunks, splittable } = kernel.shape;
            CompiledKernel { name: kernel.name, chunks, splittable, function }
        })
        .collect();
    Ok(CompiledProgram { program, kernels, tier: Tier::Jit, _code: Code::Jit(Box::new(module)) })
}

/// A kernel defined in a module, not yet finalized.
pub(crate) struct DefinedKernel {
    /// Its function in the module.
    pub id: FuncId,
    /// The kernel's name (as in the program listing).
    pub name: String,
    /// How its range is laid out.
    pub shape: KernelShape,
}

/// Defines one local function per kernel of `program` in `module` (a JIT or an object), named
/// `{prefix}kernel{number}_{name}` (with `_` for what is not alphanumeric). With `gemm`, big matmuls call that imported function.
pub(crate) fn define_kernels<M: Module>(
    module: &mut M,
    program: &Program,
    target: Target,
    gemm: Option<FuncId>,
    prefix: &str,
) -> Result<Vec<DefinedKernel>> {
    let dump = target.dump_clif;
    let frontend_config = module.target_config();
    let mut context = module.make_context();
    let mut builder_context = FunctionBuilderContext::new();
    let mut declared = Vec::with_capacity(program.kernels.len());
    for (number, kernel) in program.kernels.iter().enumerate() {
        if let (Kernel::MatMul(k), None) = (kernel, gemm)
            && k.accumulate.is_some()
        {
            return Err(Error::Bug(format!("{}: a folded momentum needs the GEMM", k.name)));
        }
        let signature = kernel_signature(module);
        let name = format!("{prefix}kernel{number}_{}", kernel_name(kernel))
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_");
        let id = module
            .declare_function(&name, Linkage::Local, &signature)
            .map_err(|e| Error::Bug(format!("declaring {name}: {e}")))?;
        context.func = Function::with_name_signature(UserFuncName::user(0, number as u32), signature);
        let shape = {
            let gemm_shim = gemm.map(|gemm| module.declare_func_in_func(gemm, &mut context.func));
            let mut builder = FunctionBuilder::new(&mut context.func, &mut builder_context);
            let shape = match kernel {
                Kernel::Loop(k) => loops::build(&mut builder, k, program, target),
                Kernel::MatMul(k) => matmul::build(&mut builder, k, program, gemm_shim, target),
                Kernel::Scatter(k) => scatter::build(&mut builder, k, program, target),
                Kernel::Rows(k) => loops::build_rows(&mut builder, k, program, target),
            };
            builder.seal_all_blocks();
            builder.finalize(frontend_config);
            shape
        };
        if dump {
            eprintln!("== clif of {name}\n{}", context.func.display());
        }
        module.define_function(id, &mut context).map_err(|e| Error::Bug(format!("compiling {name}: {e:?}")))?;
        module.clear_context(&mut context);
        declared.push(DefinedKernel { id, name: kernel_name(kernel), shape });
    }
    Ok(declared)
}

fn kernel_name(kernel: &Kernel) -> String {
    kernel.name().replace('%', "")
}

pub(crate) fn kernel_signature<M: Module>(module: &M) -> Signature {
    let mut signature = module.make_signature();
    signature.call_conv = CallConv::triple_default(module.isa().triple());
    let pointer = module.target_config().pointer_type();
    for param in [pointer, pointer, types::I64, types::I64, pointer] {
        signature.params.push(AbiParam::new(param));
    }
    signature
}

/// `kiln_sgemm(layout, a, b, out, first, last) -> failed`.
fn gemm_signature<M: Module>(module: &M) -> Signature {
    let mut signature = module.make_signature();
    let pointer = module.target_config().pointer_type();
    for param in [pointer, pointer, pointer, pointer, types::I64, types::I64] {
        signature.params.push(AbiParam::new(param));
    }
    signature.returns.push(AbiParam::new(types::I64));
    signature
}

fn host_isa() -> Result<OwnedTargetIsa> {
    let mut flags = settings::builder();
    let set = |flags: &mut settings::Builder, name: &str, value: &str| {
        flags.set(name, value).map_err(|e| Error::Bug(format!("cranelift flag {name}={value}: {e}")))
    };
    set(&mut flags, "opt_level", "speed")?;
    set(&mut flags, "is_pic", "false")?;
    set(&mut flags, "enable_verifier", if cfg!(debug_assertions) { "true" } else { "false" })?;
    let isa_builder =
        cranelift_native::builder().map_err(|e| Error::Bug(format!("this host is not supported by Cranelift: {e}")))?;
    isa_builder.finish(settings::Flags::new(flags)).map_err(|e| Error::Bug(format!("building the host ISA: {e}")))
}

pub(crate) fn host_has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// The kernel's parameters, read in the entry block.
pub(crate) struct Params {
    pub buffers: ir::Value,
    pub sizes: ir::Value,
    pub start: ir::Value,
    pub end: ir::Value,
    pub status: ir::Value,
}

/// Creates the entry block and reads the parameters.
pub(crate) fn entry(builder: &mut FunctionBuilder) -> Params {
    let block = builder.create_block();
    builder.append_block_params_for_function_params(block);
    builder.switch_to_block(block);
    let p = builder.block_params(block).to_vec();
    Params { buffers: p[0], sizes: p[1], start: p[2], end: p[3], status: p[4] }
}

/// Flags for loads and stores of buffers the runtime has checked: in bounds, never trapping.
/// Not `aligned`: a vector of 4 lanes may start at any element, and an SSE instruction that
/// folds an "aligned" load would fault on such an address.
pub(crate) fn trusted() -> ir::MemFlagsData {
    ir::MemFlagsData::new().with_notrap()
}

/// Flags for loads of buffers the kernel reads: trusted, and also never written during the
/// call (a kernel never writes a buffer it reads), so Cranelift may hoist and merge them.
pub(crate) fn read_only() -> ir::MemFlagsData {
    trusted().with_readonly().with_can_move()
}

/// The value of a size, from the symbol values in `sizes`.
pub(crate) fn size_value(builder: &mut FunctionBuilder, sizes: ir::Value, size: &Size) -> ir::Value {
    let mut value = builder.ins().iconst(types::I64, size.factor);
    for &symbol in &size.symbols {
        let symbol_value = builder.ins().load(types::I64, read_only(), sizes, (symbol * 8) as i32);
        value = builder.ins().imul(value, symbol_value);
    }
    value
}

/// The base address of buffer `buffer` (resolving aliases happens in the runtime's table).
pub(crate) fn buffer_address(builder: &mut FunctionBuilder, buffers: ir::Value, buffer: usize) -> ir::Value {
    builder.ins().load(types::I64, read_only(), buffers, (buffer * 8) as i32)
}
