//! Export, runtime side (packaging; the plan and the printers are `kiln_compiler::export`).
//!
//! Packaging of exported models: a trained model's forward half as a standalone artifact.
//!
//! In: a graph, its input and output tensors, and trained params. Out: an [`Artifact`]: a
//! relocatable object file compiled ahead of time by Cranelift (kiln-compiler's
//! `kiln_compiler::export::object`) with the weights in its read-only data, and everything written around
//! it here: the C header (`header`), the static library `lib<name>.a` (`archive`, written by
//! kiln itself: no binutils needed), a command-line executable linked with the system C
//! compiler (`executable`, or `text` for models that read titles), Rust bindings (`bindings`).
//!
//! The artifact's C ABI (the header documents it), version 2:
//! `int <name>_infer(const T0 *input0, size_t input0_len, ..., int64_t batch, U0 *output0,
//! size_t output0_len, ..., void *scratch, size_t scratch_len)` (with one input and one output
//! the arguments are `input` and `output`), one pointer and length in elements per input and
//! output, of their own element type (f32, f64, i32 or i64 ids); `size_t
//! <name>_scratch_bytes(int64_t batch)`; `int <name>_input_count(void)`, `int64_t
//! <name>_input_size(int index)` (elements per row) and the same for outputs; `int64_t
//! <name>_max_batch(void)`, `const char *<name>_version(void)`, `int <name>_abi_version(void)`.
//! The entry point checks null pointers, the batch's range and every length against what the
//! batch needs (a short buffer is an error code, never a write past it); it cannot check that
//! a pointer addresses as much as its length says. It allocates nothing, calls nothing (not
//! even libc), is single-threaded and reentrant (distinct scratch per thread). The batch dim
//! stays symbolic: one artifact serves every batch size; other dims are static.
//!
//! Its outputs are bit-for-bit those of a [`Function`](crate::Function) compiled with
//! [`function_with`](crate::function_with) and `codegen::Options { gemm: false, fma, ..Default::default() }`, where
//! `fma` is the target's ([`ObjectTarget::fma`]): the artifact runs every matmul in the
//! register tile (the default JIT sends big ones to the `gemm` crate, which sums in another
//! order), and the x86-64 baseline has no fused multiply-add.
//!
//! ```no_run
//! use kiln_compiler::prelude::*;
//! use kiln_runtime::export::{ExportOptions, Model};
//! let g = Graph::new();
//! let x = g.input("x", [Dim::sym("B"), 2.into()])?;
//! let layer = layers::Linear::new(&g, "layer1", 2, 2)?;
//! let y = layer.forward(x)?;
//! let params = ParamStore::init(&g, 0);
//! let artifact = Model::new(&g, x, y).export(&params, &ExportOptions::new("tiny"))?;
//! let dir = std::env::temp_dir().join("tiny-artifact");
//! std::fs::create_dir_all(&dir).map_err(|e| Error::Export { detail: e.to_string() })?;
//! artifact.write_static_library(&dir)?; // libtiny.a and tiny.h
//! artifact.link_executable(&dir)?; // tiny, with the system `cc`
//! # Ok::<(), kiln_compiler::Error>(())
//! ```

mod archive;
mod bindings;
mod executable;
mod header;
mod text;
mod toolchain;

use std::path::{Path, PathBuf};

use kiln_compiler::compile::lower_to_kernels;
use kiln_compiler::export::ArtifactPlan;
use kiln_compiler::export::object::{self, ObjectTarget};
use kiln_compiler::graph::{MODE_STEP_INPUT, TRAINING_INPUT};
use kiln_compiler::kernel::{Program, Role};
use kiln_compiler::{DType, Error, Graph, Location, Op, ParamStore, Result, Tensor, Value};

pub use kiln_compiler::export::object::{Cpu, ObjectTarget as Target, host_triple};
pub use kiln_compiler::export::{ABI_VERSION, ErrorCode, Port};
pub use text::{CharacterTable, TextClassifier};
pub use toolchain::c_compiler;

/// How to export: the artifact's name (the prefix of its symbols and files) and its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    /// A C identifier: the symbols are `<name>_infer` etc., the files `<name>.o`,
    /// `lib<name>.a`, `<name>.h`, `<name>`.
    pub name: String,
    /// The machine the artifact runs on: by default the host's triple at the baseline CPU
    /// (x86-64-v2 or aarch64's base, see [`Cpu`]).
    pub target: Target,
}

impl ExportOptions {
    /// Options for an artifact called `name`, for the host at the baseline CPU.
    pub fn new(name: &str) -> ExportOptions {
        ExportOptions { name: name.to_string(), target: ObjectTarget::host() }
    }
}

impl Default for ExportOptions {
    fn default() -> ExportOptions {
        ExportOptions::new("model")
    }
}

/// A model to export: the forward computation of `outputs` from `inputs` in `graph`.
#[derive(Clone, Debug)]
pub struct Model<'g> {
    /// The graph.
    pub graph: &'g Graph,
    /// Its inputs, in the order the entry point takes them: graph inputs of shape `[B, ...]`
    /// (a symbolic batch dim `B`, then static dims) or static, f32, f64, i32 or i64.
    pub inputs: Vec<Tensor<'g>>,
    /// Its outputs, in the entry point's order: computed from the inputs and params, of shape
    /// `[B, ...]` or static, f32, f64, i32 or i64.
    pub outputs: Vec<Tensor<'g>>,
}

impl<'g> Model<'g> {
    /// The model computing `output` from `input`.
    pub fn new(graph: &'g Graph, input: Tensor<'g>, output: Tensor<'g>) -> Model<'g> {
        Model { graph, inputs: vec![input], outputs: vec![output] }
    }

    /// The model computing `outputs` from `inputs` (several of each, in the entry point's order).
    pub fn with_ports(graph: &'g Graph, inputs: &[Tensor<'g>], outputs: &[Tensor<'g>]) -> Model<'g> {
        Model { graph, inputs: inputs.to_vec(), outputs: outputs.to_vec() }
    }

    /// Compiles the model ahead of time with the params' values from `params`.
    #[track_caller]
    pub fn export(&self, params: &ParamStore, options: &ExportOptions) -> Result<Artifact> {
        export_ports(self.graph, &self.inputs, &self.outputs, params, options, Location::caller())
    }
}

/// Compiles the computation of `output` from `input` ahead of time, with the values of the
/// params taken from `params` (see the module documentation for the ABI; [`Model::with_ports`]
/// for several inputs or outputs).
#[track_caller]
pub fn export<'g>(
    graph: &'g Graph,
    input: Tensor<'g>,
    output: Tensor<'g>,
    params: &ParamStore,
    options: &ExportOptions,
) -> Result<Artifact> {
    export_ports(graph, &[input], &[output], params, options, Location::caller())
}

fn export_ports<'g>(
    graph: &'g Graph,
    inputs: &[Tensor<'g>],
    outputs: &[Tensor<'g>],
    params: &ParamStore,
    options: &ExportOptions,
    location: Location,
) -> Result<Artifact> {
    let mut input_names = Vec::with_capacity(inputs.len());
    for input in inputs {
        let Op::Input { name } = graph.node(input.id()?).op else {
            let detail =
                format!("the model's inputs must be graph inputs, not a `{}` node", graph.node(input.id()?).op.name());
            return Err(Error::Argument { op: "export", detail, location });
        };
        input_names.push(name);
    }
    let mut program = lower_to_kernels(graph, outputs, &[])?;
    // An artifact runs in eval mode: the mode inputs (dropout's) become constants, false and 0.
    for buffer in &mut program.buffers {
        let value = match &buffer.role {
            Role::Input(name) if input_names.contains(name) => continue,
            Role::Input(name) if name == TRAINING_INPUT => Value::scalar(DType::Bool, 0.0),
            Role::Input(name) if name == MODE_STEP_INPUT => Value::scalar(DType::I64, 0.0),
            _ => continue,
        };
        buffer.role = Role::Constant(value);
    }
    kiln_compiler::export::pretranspose_weights(&mut program, params)?;
    let plan = ArtifactPlan::new(&options.name, &program, &input_names, params)?;
    let object = object::emit_object(&program, &plan, &options.target)?;
    let header = header::header(&plan, &options.target);
    Ok(Artifact { plan, program, object, header, target: options.target.clone() })
}

/// An exported model: its object file and header, and ways to package them.
#[derive(Clone)]
pub struct Artifact {
    plan: ArtifactPlan,
    program: Program,
    object: Vec<u8>,
    header: String,
    target: Target,
}

impl std::fmt::Debug for Artifact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Artifact")
            .field("name", &self.plan.name)
            .field("target", &self.target)
            .field("kernels", &self.program.kernels.len())
            .field("object_bytes", &self.object.len())
            .field("weight_bytes", &self.plan.weight_bytes())
            .finish()
    }
}

/// The C symbols an artifact exports, in the order the header lists them.
pub const ENTRY_POINTS: [&str; 9] = [
    "infer",
    "scratch_bytes",
    "input_count",
    "output_count",
    "input_size",
    "output_size",
    "max_batch",
    "version",
    "abi_version",
];

impl Artifact {
    /// The artifact's name (the prefix of its symbols).
    pub fn name(&self) -> &str {
        &self.plan.name
    }

    /// The machine it runs on.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The inputs, in the entry point's order (`<name>_input_size(i)` is `inputs()[i].row`).
    pub fn inputs(&self) -> &[Port] {
        &self.plan.inputs
    }

    /// The outputs, in the entry point's order.
    pub fn outputs(&self) -> &[Port] {
        &self.plan.outputs
    }

    /// Elements per row of the first input (`<name>_input_size(0)`).
    pub fn input_size(&self) -> usize {
        self.plan.inputs.first().map_or(0, |p| p.row as usize)
    }

    /// Elements per row of the first output (`<name>_output_size(0)`).
    pub fn output_size(&self) -> usize {
        self.plan.outputs.first().map_or(0, |p| p.row as usize)
    }

    /// What `<name>_scratch_bytes(batch)` returns.
    pub fn scratch_bytes(&self, batch: i64) -> usize {
        self.plan.scratch_bytes(batch) as usize
    }

    /// The largest batch `<name>_infer` accepts.
    pub fn max_batch(&self) -> i64 {
        self.plan.max_batch
    }

    /// The exported symbols (`<name>_infer`, ...).
    pub fn symbols(&self) -> Vec<String> {
        ENTRY_POINTS.iter().map(|e| format!("{}_{e}", self.plan.name)).collect()
    }

    /// The plan the entry points follow (buffer placements, scratch slots, weights).
    pub fn plan(&self) -> &ArtifactPlan {
        &self.plan
    }

    /// The kernel program the artifact runs.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The object file's bytes.
    pub fn object(&self) -> &[u8] {
        &self.object
    }

    /// The C header's text.
    pub fn header(&self) -> &str {
        &self.header
    }

    /// Writes `dir/<name>.o`.
    pub fn write_object(&self, dir: &Path) -> Result<PathBuf> {
        write(&dir.join(format!("{}.o", self.plan.name)), &self.object)
    }

    /// Writes `dir/<name>.h`.
    pub fn write_header(&self, dir: &Path) -> Result<PathBuf> {
        write(&dir.join(format!("{}.h", self.plan.name)), self.header.as_bytes())
    }

    /// Writes the static library `dir/lib<name>.a` (one member, `<name>.o`, with the symbol
    /// index linkers need; GNU/System V format, read by GNU ld, gold, lld and mold) and its
    /// header `dir/<name>.h`. Returns the library's path.
    pub fn write_static_library(&self, dir: &Path) -> Result<PathBuf> {
        let member = format!("{}.o", self.plan.name);
        let library = archive::archive(&member, &self.object, &self.symbols());
        self.write_header(dir)?;
        write(&dir.join(format!("lib{}.a", self.plan.name)), &library)
    }

    /// The source of the command-line front end (`main`) that [`Artifact::link_executable`]
    /// compiles; an error for an artifact that is not one f32 input and one f32 output.
    pub fn executable_source(&self) -> Result<String> {
        let numeric =
            |ports: &[Port]| matches!(ports, [port] if port.dtype == kiln_compiler::DType::F32 && port.batched);
        if !numeric(&self.plan.inputs) || !numeric(&self.plan.outputs) {
            let detail = format!(
                "the numeric executable reads rows of f32 into one input and prints one output; `{}` is {} \
                 (for a text model, see link_text_executable)",
                self.plan.name,
                self.plan.summary()
            );
            return Err(Error::Export { detail });
        }
        Ok(executable::main_source(&self.plan.name))
    }

    /// Links the standalone executable `dir/<name>`, stripped, with the system C compiler
    /// (`$CC`, else `cc`): the object, plus a generated `main` that reads rows of numbers from
    /// a file or stdin and prints a prediction per row (`dir/<name> --help` says how).
    /// The target must be the host; for another, see [`Artifact::link_executable_with`].
    pub fn link_executable(&self, dir: &Path) -> Result<PathBuf> {
        self.check_host()?;
        self.link_executable_with(dir, &c_compiler())
    }

    /// [`Artifact::link_executable`] with the C compiler `compiler` (a cross compiler for
    /// another target, such as `aarch64-linux-gnu-gcc`).
    pub fn link_executable_with(&self, dir: &Path, compiler: &str) -> Result<PathBuf> {
        executable::link(self, dir, compiler, &self.executable_source()?)
    }

    /// The source of the text front end that [`Artifact::link_text_executable`] compiles.
    pub fn text_executable_source(&self, classifier: &TextClassifier) -> Result<String> {
        text::main_source(self, classifier)
    }

    /// Links `dir/<name>`, an executable that reads UTF-8 titles, one per line, turns each
    /// into ids with `classifier`'s character table (baked in) and prints the category and
    /// tags per line (see `text` for the exact behaviour). The artifact's input must be ids
    /// `[B, L]`, its outputs the category logits and, if `classifier` names tags, the tag logits.
    pub fn link_text_executable(&self, dir: &Path, classifier: &TextClassifier) -> Result<PathBuf> {
        self.check_host()?;
        executable::link(self, dir, &c_compiler(), &self.text_executable_source(classifier)?)
    }

    fn check_host(&self) -> Result<()> {
        if self.target.is_host() {
            return Ok(());
        }
        let detail = format!(
            "the artifact is for {}, not this host: link it with a cross compiler (link_executable_with)",
            self.target.triple
        );
        Err(Error::Export { detail })
    }

    /// A Rust module that links `lib<name>.a` and wraps `<name>_infer` in a safe
    /// `infer(input: &[f32], batch: usize) -> Result<Vec<f32>, Error>` (a slice per input, a
    /// tuple of `Vec`s for several outputs), for an application
    /// that embeds the model with no kiln dependency (see `bindings` for how to use it).
    pub fn rust_bindings(&self) -> String {
        bindings::bindings(&self.plan)
    }

    /// The same model as one self-contained C file with the same ABI (weights as `static
    /// const` arrays; see kiln-compiler's `export::c_source`), to build with any C compiler
    /// (`cc -O3 -march=native -c <name>.c`) next to `<name>.h`. Outputs agree with the object's
    /// within float rounding (sums in another order, libm's transcendentals), not bit for bit.
    /// Refuses, with the reason, programs with random draws or computed scatters.
    pub fn c_source(&self) -> Result<String> {
        kiln_compiler::export::c_source::print(&self.program, &self.plan)
    }

    /// Writes [`Artifact::c_source`] to `dir/<name>.c` and the header to `dir/<name>.h`;
    /// returns the source's path.
    pub fn write_c_source(&self, dir: &Path) -> Result<PathBuf> {
        let source = self.c_source()?;
        self.write_header(dir)?;
        write(&dir.join(format!("{}.c", self.plan.name)), source.as_bytes())
    }

    /// The same model as the native tier's vector C, for vectors of `lanes` `f32`s (16 for
    /// AVX-512, 8 for AVX2, 4 otherwise; `kiln::compiler::native::lanes()` is this machine's):
    /// one C file with the same ABI for GCC or Clang (see kiln-compiler's `native::artifact`).
    /// Every matmul runs in the native tier's register tiles. Outputs are the native tier's
    /// bits for the same lanes and compiler flags.
    #[track_caller]
    pub fn vector_c_source(&self, lanes: usize) -> Result<String> {
        if ![4, 8, 16].contains(&lanes) {
            let detail = format!("vector C has 4, 8 or 16 f32 lanes, not {lanes}");
            return Err(Error::Argument { op: "vector_c_source", detail, location: Location::caller() });
        }
        kiln_compiler::native::artifact::print(&self.program, &self.plan, lanes)
    }

    /// The native-tier artifact for this machine: [`Artifact::vector_c_source`] at this
    /// machine's vector width, built by the system C compiler (`$CC` or `cc`) with `-O3
    /// -march=native`, as the static library `dir/lib<name>.a` with the header `dir/<name>.h`
    /// and the source `dir/<name>.c` beside it. The library runs on machines with this one's
    /// instruction set. Creates `dir` if needed. Returns the library's path.
    pub fn write_native_static_library(&self, dir: &Path) -> Result<PathBuf> {
        let name = &self.plan.name;
        let source = self.vector_c_source(kiln_compiler::native::lanes())?;
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Export { detail: format!("cannot create {}: {e}", dir.display()) })?;
        self.write_header(dir)?;
        write(&dir.join(format!("{name}.c")), source.as_bytes())?;
        let (member, object_path) = (format!("{name}.o"), dir.join(format!("{name}.native.o")));
        let object_name = object_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let compiled = toolchain::run(
            &c_compiler(),
            &["-O3", "-march=native", "-fPIC", "-c", "-o", &object_name, &format!("{name}.c")],
            dir,
        );
        let object = compiled.and_then(|()| {
            std::fs::read(&object_path)
                .map_err(|e| Error::Export { detail: format!("cannot read {}: {e}", object_path.display()) })
        });
        let _ = std::fs::remove_file(&object_path);
        let library = archive::archive(&member, &object?, &self.symbols());
        write(&dir.join(format!("lib{name}.a")), &library)
    }

    /// Writes [`Artifact::rust_bindings`] to `dir/<name>.rs`.
    pub fn write_rust_bindings(&self, dir: &Path) -> Result<PathBuf> {
        write(&dir.join(format!("{}.rs", self.plan.name)), self.rust_bindings().as_bytes())
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    std::fs::write(path, bytes)
        .map_err(|e| Error::Export { detail: format!("cannot write {}: {e}", path.display()) })?;
    Ok(path.to_path_buf())
}
