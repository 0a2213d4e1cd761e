//! Compiled functions: Theano's `function(inputs, outputs, updates)`, run on native code.
//!
//! In: a graph, its inputs, outputs and updates, and `codegen::Options` (with the settings). Out: a
//! [`Function`] that owns buffers and params and runs the kernels on the pool.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kiln_compiler::codegen::{
    self, CompiledProgram, KernelStatus, STATUS_DIVISION_BY_ZERO, STATUS_GEMM_FAILED, STATUS_INDEX_OUT_OF_RANGE, Tier,
};
use kiln_compiler::compile::lower_reducing;
use kiln_compiler::graph::{MAX_ELEMENTS, checked_numel};
use kiln_compiler::graph::{MODE_STEP_INPUT, Mode, SharedMode, TRAINING_INPUT};
use kiln_compiler::kernel::{Kernel, Program, Role};
use kiln_compiler::native;
use kiln_compiler::{DType, Data, Dim, Error, Graph, Location, ParamStore, Result, Tensor, Value};

use crate::pool::{Call, Pool};
use crate::reduce::{Exchange, Reducer};
use crate::split::{Run, SplitChoices};

/// On [`Tier::Auto`], the calls after which the native tier starts compiling in the background:
/// a function called only a few times (a test, an evaluation) never runs the C compiler.
pub const AUTO_START_CALL: u64 = 8;

/// On [`Tier::Auto`], the calls run on the JIT before the native tier takes over.
pub const AUTO_SWITCH_CALL: u64 = 64;

/// A graph compiled to native code, called many times with fed values.
///
/// Params live inside the function between calls; `updates` overwrite them after each call,
/// as Theano's shared variables. One compilation serves every value of a symbolic dim.
///
/// ```
/// use kiln_compiler::prelude::*;
/// use kiln_runtime::function;
/// let g = Graph::new();
/// let x = g.input("x", [Dim::sym("B")])?;
/// let w = g.param("w", [1], Init::ONES)?;
/// let y = (x * w).sum_all()?;
/// let mut f = function(&g, &[x], &[y], &[(w, w * 2.0)])?;
/// let out = f.call(&[Value::f32([3], vec![1.0, 2.0, 3.0])])?;
/// assert_eq!(out[0].item(), Some(6.0));
/// let out = f.call(&[Value::f32([2], vec![1.0, 1.0])])?; // w is now 2
/// assert_eq!(out[0].item(), Some(4.0));
/// # Ok::<(), kiln_compiler::Error>(())
/// ```
pub struct Function {
    compiled: CompiledProgram,
    compile_time: Duration,
    /// For each positional input: its name and buffer.
    inputs: Vec<(String, usize)>,
    /// For each positional input: kernels read it where the caller holds it (no kernel writes
    /// an input), unless the call returns it or copies it into a param: then it is copied in.
    read_in_place: Vec<bool>,
    /// Memory of every input, param and constant buffer (temporaries live in `scratch`,
    /// aliases in their target's memory).
    memory: Vec<Vec<u128>>,
    /// Memory of every scratch slot of the memory plan.
    scratch: Vec<Vec<u128>>,
    /// Params the memory plan updates in place (their kernels write them during the call),
    /// with room for a copy taken before a checked call, so a refused call can put them back.
    in_place: Vec<(usize, Vec<u128>)>,
    pool: Pool,
    /// Kernels touching at least this many elements may split across the threads (`0`:
    /// every kernel that can split does, unmeasured).
    split_threshold: i64,
    /// Which kernels split, measured (see `split`).
    split_choices: SplitChoices,
    /// Time spent in each kernel over all calls, when the settings' `profile` (`KILN_PROFILE`) is set.
    profile: Option<Vec<Duration>>,
    calls: u64,
    /// The tier asked for at compilation, and the code generator options.
    tier: Tier,
    options: codegen::Options,
    /// On [`Tier::Auto`], the native tier compiling in the background.
    pending: Option<JoinHandle<Result<CompiledProgram>>>,
    /// How many of the program's outputs the caller gets (the rest are summed buffers).
    returned: usize,
    /// When to sum which buffers across processes, and who sums them (none: no sums).
    exchange: Exchange,
    reducer: Option<Box<dyn Reducer>>,
    /// The mode inputs the function feeds itself (those not among its inputs).
    mode: ModeFeed,
}

/// The mode inputs ([`TRAINING_INPUT`], [`MODE_STEP_INPUT`]) a function feeds itself because
/// its caller does not list them: the graph's mode at each call (or the mode of
/// [`Function::call_in`]) and the call's number.
struct ModeFeed {
    /// The mode of the graph the function was compiled from, switched by `model.eval()`.
    shared: SharedMode,
    /// The mode of the call under way, when [`Function::call_in`] chose it.
    call: Option<Mode>,
    /// The buffers of the mode inputs, if the function's outputs need them.
    training: Option<usize>,
    step: Option<usize>,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function").field("inputs", &self.inputs).field("kernels", &self.compiled.kernels.len()).finish()
    }
}

/// Kernels touching fewer elements than this run on the calling thread unless
/// [`Function::set_split_threshold`] says otherwise; the others split if measured faster so.
pub const DEFAULT_SPLIT_THRESHOLD: i64 = 16_384;

/// Compiles `outputs` of `graph` as a function of `inputs` (fed positionally on each call),
/// with `updates` (`(param, new value)`) applied after each call. Params start from their
/// initializers (seed 0); see [`Function::set_params`]. Graph inputs that no output or update
/// reads need not be listed; the mode inputs of a graph with dropout, when not listed, are
/// fed by the function itself: the graph's [`Mode`] at each call (see [`Function::call_in`])
/// and the call's number as the step that counts the masks.
///
/// Threads: the settings' `threads` (`KILN_THREADS`), else every core.
#[track_caller]
pub fn function<'g>(
    graph: &'g Graph,
    inputs: &[Tensor<'g>],
    outputs: &[Tensor<'g>],
    updates: &[(Tensor<'g>, Tensor<'g>)],
) -> Result<Function> {
    function_with(graph, inputs, outputs, updates, &codegen::Options::default())
}

/// [`function`] with code generator options. `Options { gemm: false, fma, ..Default::default() }` with the `fma`
/// of an export target computes exactly the bits of the artifact exported for that target
/// (see `kiln_runtime::export`) on [`Tier::Jit`].
///
/// Tier: the settings' `tier` in `options` (`KILN_TIER`: `jit`, `native`, `auto`), else
/// [`Tier::Auto`]; see [`function_on`].
#[track_caller]
pub fn function_with<'g>(
    graph: &'g Graph,
    inputs: &[Tensor<'g>],
    outputs: &[Tensor<'g>],
    updates: &[(Tensor<'g>, Tensor<'g>)],
    options: &codegen::Options,
) -> Result<Function> {
    function_on(options.settings.tier, graph, inputs, outputs, updates, options)
}

/// [`function_with`] on `tier`: [`Tier::Jit`] (Cranelift only), [`Tier::Native`] (the vector-C
/// tier, built by the system C compiler before this returns) or [`Tier::Auto`] (Cranelift
/// first; after the first call the native tier compiles on a background thread and takes over
/// between two calls, with the params and optimizer state where they are).
#[track_caller]
pub fn function_on<'g>(
    tier: Tier,
    graph: &'g Graph,
    inputs: &[Tensor<'g>],
    outputs: &[Tensor<'g>],
    updates: &[(Tensor<'g>, Tensor<'g>)],
    options: &codegen::Options,
) -> Result<Function> {
    build_function(tier, graph, inputs, outputs, updates, &[], options, Location::caller())
}

/// [`function_with`] for one process of a data-parallel run: each `(name, tensor)` of
/// `reduced` (the gradients) is computed into a buffer of its own, which, once a
/// [`Reducer`] is set ([`Function::set_reducer`]), is replaced by its mean across processes
/// after the kernel that finishes it and before the first kernel that reads it. Without a
/// reducer the function computes what [`function_with`]'s does.
///
/// Tier: the settings' `tier` in `options`, as for [`function_with`].
#[track_caller]
pub fn function_reducing<'g>(
    graph: &'g Graph,
    inputs: &[Tensor<'g>],
    outputs: &[Tensor<'g>],
    updates: &[(Tensor<'g>, Tensor<'g>)],
    reduced: &[(String, Tensor<'g>)],
    options: &codegen::Options,
) -> Result<Function> {
    build_function(options.settings.tier, graph, inputs, outputs, updates, reduced, options, Location::caller())
}

/// Compiles a function on `tier` whose `reduced` buffers are summed across processes (none:
/// a plain function); `location` is the caller's, for errors.
#[allow(clippy::too_many_arguments)]
#[track_caller]
pub(crate) fn build_function<'g>(
    tier: Tier,
    graph: &'g Graph,
    inputs: &[Tensor<'g>],
    outputs: &[Tensor<'g>],
    updates: &[(Tensor<'g>, Tensor<'g>)],
    reduced: &[(String, Tensor<'g>)],
    options: &codegen::Options,
    location: Location,
) -> Result<Function> {
    let input_names = input_names(graph, inputs, location)?;
    let started = Instant::now();
    let tensors: Vec<Tensor<'g>> = reduced.iter().map(|(_, tensor)| *tensor).collect();
    let program = lower_reducing(graph, outputs, updates, &tensors, &options.settings.dump, location)?;
    let names: Vec<String> = reduced.iter().map(|(name, _)| name.clone()).collect();
    let exchange = Exchange::plan(&program, &names)?;
    let compiled = native::compile_on(program, options, tier)?;
    let compile_time = started.elapsed();
    let program = &compiled.program;
    let mut positional = Vec::with_capacity(input_names.len());
    for name in &input_names {
        let buffer = program.buffers.iter().position(|b| b.role == Role::Input(name.clone()));
        let buffer = buffer.ok_or_else(|| Error::Bug(format!("input `{name}` has no buffer")))?;
        positional.push((name.clone(), buffer));
    }
    let kept: Vec<usize> = program
        .outputs
        .iter()
        .chain(program.updates.iter().map(|(_, value)| value))
        .map(|&b| program.storage(b))
        .collect();
    let read_in_place = positional.iter().map(|(_, buffer)| !kept.contains(&program.storage(*buffer))).collect();
    // Inputs no kernel reads need no value: a forward compiled from a training graph leaves
    // out its labels and the optimizer's inputs.
    let mut read = vec![false; program.buffers.len()];
    for kernel in &program.kernels {
        for buffer in kernel.accesses().0 {
            read[program.storage(buffer)] = true;
        }
    }
    for &buffer in program.outputs.iter().chain(program.updates.iter().map(|(_, value)| value)) {
        read[program.storage(buffer)] = true;
    }
    let mut mode = ModeFeed { shared: graph.shared_mode(), call: None, training: None, step: None };
    for (index, buffer) in program.buffers.iter().enumerate() {
        match &buffer.role {
            Role::Input(name) if input_names.contains(name) => {}
            Role::Input(name) if name == TRAINING_INPUT => mode.training = Some(index),
            Role::Input(name) if name == MODE_STEP_INPUT => mode.step = Some(index),
            Role::Input(_) if !read[index] => {}
            Role::Input(name) => {
                let detail = format!("the outputs need input `{name}`, which is not among the function's inputs");
                return Err(Error::Argument { op: "function", detail, location });
            }
            _ => {}
        }
    }
    let threads =
        options.settings.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let profile = options.settings.profile.then(|| vec![Duration::ZERO; program.kernels.len()]);
    // Aliases of params are their in-place updates (and views, which cost a needless copy).
    let mut in_place: Vec<usize> = (0..program.buffers.len())
        .filter(|&buffer| buffer != program.storage(buffer))
        .map(|buffer| program.storage(buffer))
        .filter(|&owner| matches!(program.buffers[owner].role, Role::Param(_)))
        .collect();
    in_place.sort_unstable();
    in_place.dedup();
    let in_place = in_place.into_iter().map(|param| (param, Vec::new())).collect();
    let kernels = program.kernels.len();
    let mut function = Function {
        in_place,
        memory: vec![Vec::new(); program.buffers.len()],
        scratch: vec![Vec::new(); program.slots.iter().flatten().map(|&slot| slot + 1).max().unwrap_or(0)],
        compiled,
        compile_time,
        inputs: positional,
        read_in_place,
        pool: Pool::new(threads),
        split_threshold: DEFAULT_SPLIT_THRESHOLD,
        split_choices: SplitChoices::new(kernels),
        profile,
        calls: 0,
        tier,
        options: options.clone(),
        pending: None,
        returned: outputs.len(),
        exchange,
        reducer: None,
        mode,
    };
    function.set_params(&ParamStore::init(graph, 0))?;
    function.load_constants()?;
    Ok(function)
}

/// The name of each function input: a graph input of `graph`, each at most once.
fn input_names<'g>(graph: &'g Graph, inputs: &[Tensor<'g>], location: Location) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::with_capacity(inputs.len());
    for input in inputs {
        if !std::ptr::eq(graph, input.graph()) {
            let name = input.name().unwrap_or_else(|| "(unnamed)".to_string());
            let detail = format!("input `{name}` belongs to another graph than the one compiled");
            return Err(Error::Argument { op: "function", detail, location });
        }
        let name = match graph.node(input.id()?).op {
            kiln_compiler::Op::Input { name } => name,
            op => {
                let detail = format!("function inputs must be graph inputs, not a `{}` node", op.name());
                return Err(Error::Argument { op: "function", detail, location });
            }
        };
        if names.contains(&name) {
            let detail = format!("input `{name}` is listed twice; each input is fed once per call");
            return Err(Error::Argument { op: "function", detail, location });
        }
        names.push(name);
    }
    Ok(names)
}

impl Function {
    /// The tier whose kernels the next call runs ([`Tier::Jit`] or [`Tier::Native`]).
    pub fn tier(&self) -> Tier {
        self.compiled.tier
    }

    /// On [`Tier::Auto`]: switches to the native tier now (starting its compile if it has not
    /// started, and waiting for it), instead of at call [`AUTO_SWITCH_CALL`]. Returns the tier
    /// now running. A C compiler error is returned, and the function stays on the JIT.
    pub fn finish_tiering(&mut self) -> Result<Tier> {
        if self.tier == Tier::Auto {
            self.start_native();
            self.tier = Tier::Jit;
            if let Some(pending) = self.pending.take() {
                let compiled =
                    pending.join().map_err(|_| Error::Bug("the native tier's compile thread panicked".into()))?;
                self.adopt(compiled?);
            }
        }
        Ok(self.compiled.tier)
    }

    /// Starts compiling the native tier on a background thread (once).
    fn start_native(&mut self) {
        if self.pending.is_some() || self.compiled.tier == Tier::Native {
            return;
        }
        if native::c_compiler().is_none() {
            native::say_no_compiler();
            return;
        }
        let (program, options) = (self.compiled.program.clone(), self.options.clone());
        let spawned = std::thread::Builder::new()
            .name("kiln-native-tier".into())
            .spawn(move || native::compile(program, &options));
        self.pending = spawned.ok();
    }

    /// Switches to the native tier, waiting for its compile if needed; a build error is
    /// printed and the function stays on the JIT.
    fn switch_to_native(&mut self) {
        self.tier = Tier::Jit;
        match self.pending.take().map(JoinHandle::join) {
            Some(Ok(Ok(compiled))) => self.adopt(compiled),
            Some(Ok(Err(error))) => eprintln!("kiln: the native tier failed to build, staying on Cranelift: {error}"),
            Some(Err(_)) => eprintln!("kiln: the native tier's compile thread panicked, staying on Cranelift"),
            None => {}
        }
    }

    /// Runs `compiled` (the same kernel program, compiled by the native tier) from now on:
    /// buffers, params and optimizer state stay where they are.
    fn adopt(&mut self, compiled: CompiledProgram) {
        if self.options.settings.dump.native || self.options.settings.dump.tier {
            eprintln!(
                "== kiln: switched to the native tier after {} calls ({} kernels)",
                self.calls,
                compiled.kernels.len()
            );
        }
        self.split_choices = SplitChoices::new(compiled.kernels.len());
        self.compiled = compiled;
    }

    /// How long compilation took (passes, lowering, code generation).
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// Number of kernels each call runs.
    pub fn kernel_count(&self) -> usize {
        self.compiled.kernels.len()
    }

    /// The kernel program, as `KILN_DUMP=kernels` prints it.
    pub fn listing(&self) -> String {
        self.compiled.program.listing()
    }

    /// Where the time went, when `KILN_PROFILE` was set at compilation: one line per kernel
    /// with its mean time per call and share of the total, slowest first, and whether it was
    /// measured faster split or on one thread (see [`Function::set_split_threshold`]). `None`
    /// otherwise.
    pub fn profile(&self) -> Option<String> {
        let profile = self.profile.as_ref()?;
        let total: Duration = profile.iter().sum();
        let mut order: Vec<usize> = (0..profile.len()).collect();
        order.sort_by_key(|&k| std::cmp::Reverse(profile[k]));
        let calls = self.calls.max(1) as f64;
        let mut out = format!(
            "{} kernels, {:.1} us per call over {} calls\n",
            profile.len(),
            total.as_secs_f64() * 1e6 / calls,
            self.calls
        );
        for k in order {
            let share = profile[k].as_secs_f64() / total.as_secs_f64().max(f64::MIN_POSITIVE);
            let mean = profile[k].as_secs_f64() * 1e6 / calls;
            let threads = match self.split_choices.chosen(k) {
                Some(true) => " (split)",
                Some(false) => " (one thread, measured faster)",
                None => "",
            };
            out.push_str(&format!(
                "{mean:9.1} us {:5.1}%  {}{threads}\n",
                100.0 * share,
                self.compiled.kernels[k].name
            ));
        }
        Some(out)
    }

    /// Sums the buffers named at compilation ([`function_reducing`]) across processes with
    /// `reducer` from the next call on.
    pub fn set_reducer(&mut self, reducer: Box<dyn Reducer>) {
        self.reducer = Some(reducer);
    }

    /// Threads the kernels run on.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Uses `threads` threads from now on.
    pub fn set_threads(&mut self, threads: usize) {
        self.pool = Pool::new(threads);
        self.split_choices = SplitChoices::new(self.compiled.kernels.len());
    }

    /// Lets kernels that touch at least `elements` elements (a rough count: the product of
    /// their loop extents) split across the threads, each if measured faster so (its first
    /// runs alternate between split and one thread; see [`Function::profile`]); smaller ones
    /// run on the calling thread. The default, [`DEFAULT_SPLIT_THRESHOLD`], keeps tiny kernels
    /// off the pool, where dispatch would cost more than it saves. `0` splits every kernel that
    /// can be split, unmeasured, so that tests comparing thread counts on small graphs really
    /// run ranges on several threads:
    ///
    /// ```
    /// use kiln_compiler::prelude::*;
    /// use kiln_runtime::function;
    /// let g = Graph::new();
    /// let x = g.input("x", [Dim::sym("B")])?;
    /// let mut f = function(&g, &[x], &[x * 2.0], &[])?;
    /// f.set_threads(2);
    /// f.set_split_threshold(0); // 3 elements: split into 2 ranges all the same
    /// let out = f.call(&[Value::f32([3], vec![1.0, 2.0, 3.0])])?;
    /// assert_eq!(out[0].to_f64_vec(), [2.0, 4.0, 6.0]);
    /// # Ok::<(), kiln_compiler::Error>(())
    /// ```
    pub fn set_split_threshold(&mut self, elements: i64) {
        self.split_threshold = elements;
    }

    /// The current value of every param.
    pub fn params(&self) -> ParamStore {
        let mut store = ParamStore::new();
        for (buffer, declared) in self.compiled.program.buffers.iter().enumerate() {
            if let Role::Param(name) = &declared.role {
                let shape = declared.shape.as_static().expect("bug in kiln: params have static shapes");
                store.set(name, self.read(buffer, &shape));
            }
        }
        store
    }

    /// Sets params from `store`: every param of the function must be present, with its
    /// declared shape (values of another float dtype are converted).
    pub fn set_params(&mut self, store: &ParamStore) -> Result<()> {
        let program = &self.compiled.program;
        let mut writes = Vec::new();
        for (buffer, declared) in program.buffers.iter().enumerate() {
            let Role::Param(name) = &declared.role else { continue };
            let value = store.get(name).ok_or_else(|| Error::MissingParam { name: name.clone() })?;
            let shape = declared.shape.as_static().expect("bug in kiln: params have static shapes");
            if value.shape() != shape {
                let (expected, got) = (format!("shape {shape:?}"), format!("shape {:?}", value.shape()));
                return Err(Error::BadFeed { what: "param", name: name.clone(), expected, got, location: None });
            }
            writes.push((buffer, value.cast(declared.dtype)));
        }
        let mut memory = Vec::with_capacity(writes.len());
        for (buffer, value) in writes {
            let program = &self.compiled.program;
            let Role::Param(name) = &program.buffers[buffer].role else { continue };
            memory.push((buffer, to_memory(value.data(), || format!("param `{name}`"))?));
        }
        for (buffer, words) in memory {
            self.memory[buffer] = words;
        }
        Ok(())
    }

    /// The values of the `f32` param `name`, in place, for updates made outside the compiled
    /// program (the sparse optimizer rules, which touch only some rows of a table); `None` if
    /// the function has no such `f32` param.
    pub fn param_values_mut(&mut self, name: &str) -> Option<&mut [f32]> {
        let program = &self.compiled.program;
        let buffer = program.buffers.iter().position(|b| b.role == Role::Param(name.to_string()))?;
        let declared = &program.buffers[buffer];
        if declared.dtype != DType::F32 {
            return None;
        }
        let elements: usize = declared.shape.as_static()?.iter().product();
        let memory = self.storage_mut(buffer);
        assert!(memory.len() * 4 >= elements, "bug in kiln: param `{name}` has too little memory");
        // SAFETY: the memory is `u128` words (aligned for `f32`) holding at least `elements`
        // `f32` values, and the returned slice borrows `self` mutably, so nothing else reads or
        // writes it meanwhile.
        Some(unsafe { std::slice::from_raw_parts_mut(memory.as_mut_ptr().cast::<f32>(), elements) })
    }

    fn load_constants(&mut self) -> Result<()> {
        for (buffer, declared) in self.compiled.program.buffers.iter().enumerate() {
            if let Role::Constant(value) = &declared.role {
                self.memory[buffer] = to_memory(value.data(), || format!("constant buffer {buffer}"))?;
            }
        }
        Ok(())
    }

    /// Runs the function on `inputs` (in the order given at compilation), returns the outputs
    /// and then applies the updates. Every input is checked (dtype, rank, sizes, symbolic dims
    /// consistent across inputs, no tensor too big to address) before any kernel runs. An
    /// error found while running (an index out of range) names the op and the caller's line.
    #[track_caller]
    ///
    /// On [`Tier::Auto`], the native tier starts compiling in the background before call
    /// [`AUTO_START_CALL`]` + 1` and runs from call [`AUTO_SWITCH_CALL`]` + 1` on (that call
    /// waits for it if it is not ready): the switch happens at the same call in every run, so
    /// runs on `Auto` are reproducible too.
    pub fn call(&mut self, inputs: &[Value]) -> Result<Vec<Value>> {
        self.call_at(inputs, Location::caller())
    }

    fn call_at(&mut self, inputs: &[Value], location: Location) -> Result<Vec<Value>> {
        self.advance_tier();
        let outputs = self.run(inputs, location)?;
        self.apply_updates();
        Ok(outputs)
    }

    /// Runs the function like [`Function::call`], in `mode` whatever the graph's mode: a
    /// graph's dropout drops in [`Mode::Train`] and passes its input through in [`Mode::Eval`].
    /// Without such layers the mode changes nothing. (`Trainer::evaluate` calls its evaluation
    /// in [`Mode::Eval`].)
    ///
    /// ```
    /// use kiln_compiler::prelude::*;
    /// use kiln_runtime::function;
    /// let g = Graph::new();
    /// let x = g.input("x", [Dim::sym("B")])?;
    /// let y = layers::Dropout::build(&layers::Scope::root(&g), 0.5).forward(x)?;
    /// let mut f = function(&g, &[x], &[y], &[])?;
    /// let ones = Value::f32([64], vec![1.0; 64]);
    /// let dropped = f.call_in(Mode::Train, std::slice::from_ref(&ones))?;
    /// assert!(dropped[0].to_f64_vec().iter().all(|&v| v == 0.0 || v == 2.0));
    /// assert_eq!(f.call_in(Mode::Eval, std::slice::from_ref(&ones))?[0], ones);
    /// # Ok::<(), kiln_compiler::Error>(())
    /// ```
    #[track_caller]
    pub fn call_in(&mut self, mode: Mode, inputs: &[Value]) -> Result<Vec<Value>> {
        let location = Location::caller();
        self.mode.call = Some(mode);
        let outputs = self.call_at(inputs, location);
        self.mode.call = None;
        outputs
    }

    /// The mode the next [`Function::call`] runs in: the graph's, switched by `model.train()`
    /// and `model.eval()` ([`Graph::set_mode`]).
    pub fn mode(&self) -> Mode {
        self.mode.shared.get()
    }

    /// Runs the function like [`Function::call`], but applies the updates only if `accept`
    /// holds for the outputs; otherwise (and when a kernel fails) every param keeps the value
    /// it had before the call, in-place updates included. Returns the outputs and whether the
    /// updates were applied. The price is one copy of the params updated in place.
    #[track_caller]
    pub fn call_checked(
        &mut self,
        inputs: &[Value],
        accept: impl FnOnce(&[Value]) -> bool,
    ) -> Result<(Vec<Value>, bool)> {
        let location = Location::caller();
        self.advance_tier();
        for (param, copy) in &mut self.in_place {
            copy.clone_from(&self.memory[*param]);
        }
        let outputs = match self.run(inputs, location) {
            Ok(outputs) => outputs,
            Err(error) => {
                self.restore_in_place();
                return Err(error);
            }
        };
        let accepted = accept(&outputs);
        if accepted {
            self.apply_updates();
        } else {
            self.restore_in_place();
        }
        Ok((outputs, accepted))
    }

    /// On [`Tier::Auto`], starts the native tier's compile or switches to it when this call's
    /// number says so.
    fn advance_tier(&mut self) {
        if self.tier == Tier::Auto && self.calls >= AUTO_START_CALL {
            self.start_native();
            if self.calls >= AUTO_SWITCH_CALL {
                self.switch_to_native();
            }
        }
    }

    fn restore_in_place(&mut self) {
        for (param, copy) in &self.in_place {
            self.memory[*param].copy_from_slice(copy);
        }
    }

    /// Copies the new value of every param not updated in place over the param.
    fn apply_updates(&mut self) {
        let program = &self.compiled.program;
        for &(param, value) in &program.updates {
            let source = self.storage(value).to_vec();
            let target = program.storage(param);
            let words = self.memory[target].len();
            self.memory[target].copy_from_slice(&source[..words]);
        }
    }

    /// Runs the kernels on `inputs` and reads the outputs; the updates are not applied yet.
    fn run(&mut self, inputs: &[Value], location: Location) -> Result<Vec<Value>> {
        let symbols = self.bind_symbols(inputs, location)?;
        check_sizes(&self.compiled.program, &symbols, location)?;
        let program = &self.compiled.program;
        // Size every scratch slot for its largest buffer, then copy the inputs in.
        let mut words = vec![1usize; self.scratch.len()];
        for (buffer, declared) in program.buffers.iter().enumerate() {
            if let (Role::Temporary, Some(slot)) = (&declared.role, program.slots[buffer]) {
                let elements = elements(&declared.shape, &symbols, &program.symbols);
                let bytes = elements.and_then(|n| n.checked_mul(byte_size(declared.dtype))).ok_or_else(|| {
                    Error::OutOfMemory { bytes: usize::MAX, what: format!("buffer {buffer} ({})", declared.shape) }
                })?;
                words[slot] = words[slot].max(bytes.div_ceil(16));
            }
        }
        for (slot, (memory, &words)) in self.scratch.iter_mut().zip(&words).enumerate() {
            // At least one word, so no buffer's address dangles even when it is empty.
            if memory.len() < words {
                // The old memory goes first: it is too small, and both may not fit at once.
                *memory = Vec::new();
                *memory = zeroed_words(words, || format!("scratch slot {slot}"))?;
            }
        }
        let mut in_place: Vec<(usize, *mut u8)> = Vec::new();
        for (((name, buffer), value), &borrowed) in self.inputs.iter().zip(inputs).zip(&self.read_in_place) {
            if borrowed && value.numel() > 0 {
                in_place.push((program.storage(*buffer), data_address(value.data())));
            } else {
                write_memory(&mut self.memory[*buffer], value.data(), || format!("input `{name}`"))?;
            }
        }
        let training = self.mode.call.unwrap_or_else(|| self.mode.shared.get()) == Mode::Train;
        if let Some(buffer) = self.mode.training {
            write_memory(&mut self.memory[buffer], &Data::Bool(vec![training]), || TRAINING_INPUT.to_string())?;
        }
        if let Some(buffer) = self.mode.step {
            let step = i64::try_from(self.calls + 1).unwrap_or(i64::MAX);
            write_memory(&mut self.memory[buffer], &Data::I64(vec![step]), || MODE_STEP_INPUT.to_string())?;
        }
        let buffers = program.buffers.len();
        let pointers: Vec<*mut u8> = (0..buffers)
            .map(|b| {
                let storage = self.compiled.program.storage(b);
                match in_place.iter().find(|(input, _)| *input == storage) {
                    Some(&(_, address)) => address,
                    None => self.storage_mut(b).as_mut_ptr().cast::<u8>(),
                }
            })
            .collect();
        let program = &self.compiled.program;
        let call = Call { buffers: pointers.as_ptr(), sizes: symbols.as_ptr() };
        self.calls += 1;
        let mut sums = Sums {
            reducer: self.reducer.as_deref_mut(),
            exchange: &self.exchange,
            program,
            tickets: vec![None; self.exchange.sums.len()],
        };
        sums.start(None, &pointers, &symbols)?;
        for (number, (compiled, kernel)) in self.compiled.kernels.iter().zip(&program.kernels).enumerate() {
            sums.finish(number, &pointers, &symbols)?;
            let started = self.profile.is_some().then(std::time::Instant::now);
            let extent = compiled.range(&symbols);
            // Tiny kernels run on the calling thread: dispatch would cost more than it saves.
            // The others split if measured faster so (see `split`), or always when splitting
            // is forced (a threshold of 0).
            let work = work(kernel, &symbols);
            let run = match compiled.splittable && self.pool.threads() > 1 && work >= self.split_threshold {
                false => Run::Chosen(false),
                true if self.split_threshold == 0 => Run::Chosen(true),
                true => self.split_choices.run(number, work),
            };
            let trial = matches!(run, Run::Trial(_)).then(Instant::now);
            // SAFETY: every buffer was just sized from its declared shape under `symbols`
            // (inputs were checked against their shapes; those read in place are the caller's
            // values, borrowed for the whole call and only read), `symbols` holds every symbol,
            // and the pool passes ranges within `0..extent`.
            let status = unsafe { self.pool.run(compiled, call, extent, run.split()) };
            if let Some(trial) = trial {
                self.split_choices.record(number, run.split(), trial.elapsed());
            }
            if let (Some(profile), Some(started)) = (&mut self.profile, started) {
                profile[number] += started.elapsed();
            }
            check_status(status, &compiled.name, program, &symbols, location)?;
            sums.start(Some(number), &pointers, &symbols)?;
        }
        sums.finish(program.kernels.len(), &pointers, &symbols)?;
        drop(sums);
        let outputs = program
            .outputs
            .iter()
            .take(self.returned)
            .map(|&buffer| {
                let declared = &program.buffers[buffer];
                let shape = concrete_shape(&declared.shape, &symbols, &program.symbols);
                self.try_read(buffer, &shape)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(outputs)
    }

    /// The memory holding buffer `buffer` (aliases resolved, temporaries in their slot).
    fn storage(&self, buffer: usize) -> &[u128] {
        let program = &self.compiled.program;
        let owner = program.storage(buffer);
        match (&program.buffers[owner].role, program.slots[owner]) {
            (Role::Temporary, Some(slot)) => &self.scratch[slot],
            _ => &self.memory[owner],
        }
    }

    fn storage_mut(&mut self, buffer: usize) -> &mut Vec<u128> {
        let program = &self.compiled.program;
        let owner = program.storage(buffer);
        match (&program.buffers[owner].role, program.slots[owner]) {
            (Role::Temporary, Some(slot)) => &mut self.scratch[slot],
            _ => &mut self.memory[owner],
        }
    }

    /// Checks the inputs against their buffers' declarations and returns every symbol's value.
    #[track_caller]
    fn bind_symbols(&self, inputs: &[Value], location: Location) -> Result<Vec<i64>> {
        let program = &self.compiled.program;
        if inputs.len() != self.inputs.len() {
            let names: Vec<&str> = self.inputs.iter().map(|(n, _)| n.as_str()).collect();
            let detail = format!("expected {} inputs ({}), got {}", names.len(), names.join(", "), inputs.len());
            return Err(Error::Argument { op: "call", detail, location });
        }
        let mut symbols: Vec<Option<i64>> = vec![None; program.symbols.len()];
        for ((name, buffer), value) in self.inputs.iter().zip(inputs) {
            let declared = &program.buffers[*buffer];
            let bad = |expected: String, got: String| Error::BadFeed {
                what: "input",
                name: name.clone(),
                expected,
                got,
                location: Some(location),
            };
            if value.dtype() != declared.dtype {
                return Err(bad(format!("dtype {}", declared.dtype), format!("dtype {}", value.dtype())));
            }
            if value.shape().len() != declared.shape.rank() {
                return Err(bad(format!("shape {}", declared.shape), format!("shape {:?}", value.shape())));
            }
            for (dim, &size) in declared.shape.dims().iter().zip(value.shape()) {
                match dim {
                    Dim::Static(n) if *n != size => {
                        return Err(bad(format!("shape {}", declared.shape), format!("shape {:?}", value.shape())));
                    }
                    Dim::Static(_) => {}
                    Dim::Sym(symbol) => {
                        let index =
                            program.symbols.iter().position(|s| s == symbol).expect("bug in kiln: unknown symbol");
                        match symbols[index] {
                            Some(bound) if bound != size as i64 => {
                                let expected = format!("{symbol} = {bound} (bound by an earlier input)");
                                return Err(bad(expected, format!("{symbol} = {size} in shape {:?}", value.shape())));
                            }
                            _ => symbols[index] = Some(size as i64),
                        }
                    }
                }
            }
        }
        symbols
            .into_iter()
            .zip(&program.symbols)
            .map(|(value, name)| {
                value.ok_or_else(|| {
                    let detail = format!("symbol `{name}` is not bound by any input");
                    Error::Argument { op: "call", detail, location: Location::caller() }
                })
            })
            .collect()
    }

    /// A copy of buffer `buffer`'s contents as a value of `shape` (a param's: its memory is
    /// there already, so the copy is small next to it).
    fn read(&self, buffer: usize, shape: &[usize]) -> Value {
        self.try_read(buffer, shape).expect("bug in kiln: a param's copy cannot be allocated")
    }

    /// A copy of buffer `buffer`'s contents as a value of `shape`, or an error when the copy
    /// cannot be allocated.
    fn try_read(&self, buffer: usize, shape: &[usize]) -> Result<Value> {
        let program = &self.compiled.program;
        let dtype = program.buffers[buffer].dtype;
        let memory = self.storage(buffer);
        let elements: usize = shape.iter().product();
        let bytes: &[u8] = bytemuck_bytes(memory);
        let data = from_bytes(dtype, &bytes[..elements * byte_size(dtype)], || format!("output buffer {buffer}"))?;
        Ok(Value::new(shape.to_vec(), data).expect("bug in kiln: a buffer has the wrong size"))
    }
}

/// Checks that every shape the call computes holds at most `MAX_ELEMENTS` elements under the
/// bound symbols, so no buffer size or kernel offset wraps around.
fn check_sizes(program: &Program, symbols: &[i64], location: Location) -> Result<()> {
    for (axis, size) in &program.maximum_axes {
        if size.evaluate(symbols) == 0 {
            let detail = format!("{axis} is empty in this call; its maximum is undefined");
            return Err(Error::Argument { op: "reduce_max", detail, location });
        }
    }
    for (op, shape) in &program.shapes {
        let sizes = concrete_shape(shape, symbols, &program.symbols);
        if checked_numel(&sizes).is_none() {
            let bound: Vec<String> = program.symbols.iter().zip(symbols).map(|(s, v)| format!("{s} = {v}")).collect();
            let detail = format!(
                "with {}, its result {shape} would be {sizes:?}: more than {MAX_ELEMENTS} elements",
                bound.join(", ")
            );
            return Err(Error::Shape { op, detail, location });
        }
    }
    Ok(())
}

/// The sums across processes of one call in flight: the [`Exchange`] followed as kernels run.
struct Sums<'a> {
    reducer: Option<&'a mut (dyn Reducer + 'static)>,
    exchange: &'a Exchange,
    program: &'a kiln_compiler::kernel::Program,
    /// For each sum of the exchange: its ticket while it travels.
    tickets: Vec<Option<usize>>,
}

/// A call that stops early (a kernel's error) still waits for the sums it started: the other
/// processes run them too, and the memory they write into must outlive them.
impl Drop for Sums<'_> {
    fn drop(&mut self) {
        let Some(reducer) = self.reducer.as_deref_mut() else { return };
        for ticket in self.tickets.iter_mut().filter_map(Option::take) {
            // The call already fails with its own error, which is the one to report; a sum
            // that cannot complete stops the run within the reducer's timeout.
            reducer.wait(ticket).ok();
        }
    }
}

impl Sums<'_> {
    /// Starts the sums scheduled after kernel `after` (`None`: before the first kernel).
    fn start(&mut self, after: Option<usize>, pointers: &[*mut u8], symbols: &[i64]) -> Result<()> {
        let Some(reducer) = self.reducer.as_deref_mut() else { return Ok(()) };
        for (sum, ticket) in self.exchange.sums.iter().zip(&mut self.tickets) {
            if sum.after == after {
                let buffer = &self.program.buffers[sum.buffer];
                let len = elements(&buffer.shape, symbols, &self.program.symbols)
                    .ok_or_else(|| Error::Bug("a summed buffer's size overflows after the size checks".into()))?;
                // SAFETY: the buffer holds `len` f32 (sized for this call's symbols); no kernel
                // touches it until `finish` waits for it (the exchange's schedule), and its
                // memory outlives the call.
                *ticket = Some(unsafe { reducer.start(pointers[sum.buffer].cast::<f32>(), len, &sum.name)? });
            }
        }
        Ok(())
    }

    /// Waits for the sums kernel `before` reads (the kernel count: every sum left) and
    /// divides each by the number of processes: the mean.
    fn finish(&mut self, before: usize, pointers: &[*mut u8], symbols: &[i64]) -> Result<()> {
        let Some(reducer) = self.reducer.as_deref_mut() else { return Ok(()) };
        let scale = 1.0 / reducer.ranks() as f32;
        for (sum, ticket) in self.exchange.sums.iter().zip(&mut self.tickets) {
            if sum.before == before
                && let Some(started) = ticket.take()
            {
                reducer.wait(started)?;
                let buffer = &self.program.buffers[sum.buffer];
                let len = elements(&buffer.shape, symbols, &self.program.symbols)
                    .ok_or_else(|| Error::Bug("a summed buffer's size overflows after the size checks".into()))?;
                // SAFETY: as in `start`; the sum is complete, so the memory is the call's again.
                let values = unsafe { std::slice::from_raw_parts_mut(pointers[sum.buffer].cast::<f32>(), len) };
                values.iter_mut().for_each(|value| *value *= scale);
            }
        }
        Ok(())
    }
}

/// The error a kernel's status reports, worded from the program's range check it names.
fn check_status(
    status: KernelStatus,
    kernel: &str,
    program: &Program,
    symbols: &[i64],
    location: Location,
) -> Result<()> {
    let [code, value, position, check] = status;
    match code {
        0 => Ok(()),
        STATUS_INDEX_OUT_OF_RANGE => {
            let Some(check) = usize::try_from(check - 1).ok().and_then(|c| program.checks.get(c)) else {
                let detail = format!("index {value} is out of range in kernel {kernel}");
                return Err(Error::Run { op: "gather", detail, location });
            };
            let of = check.indices.as_ref().map(|name| format!(" of `{name}`")).unwrap_or_default();
            let limit = check.limit.evaluate(symbols);
            let detail = format!("index {value} at position {position}{of} is out of range for {limit} {}", check.what);
            Err(Error::Run { op: check.op, detail, location })
        }
        STATUS_DIVISION_BY_ZERO => {
            let detail = format!("integer division by zero ({value} / 0) in kernel {kernel}");
            Err(Error::Run { op: "div", detail, location })
        }
        STATUS_GEMM_FAILED => Err(Error::Bug(format!("the tuned GEMM failed in kernel {kernel}"))),
        code => Err(Error::Bug(format!("kernel {kernel} reported the unknown status {code}"))),
    }
}

/// A rough count of the elements a kernel touches, to decide whether threads pay off
/// (saturating: a matmul's four extents may multiply past `i64`).
fn work(kernel: &Kernel, symbols: &[i64]) -> i64 {
    let product = |sizes: &[&kiln_compiler::kernel::Size]| {
        sizes.iter().fold(1i64, |acc, size| acc.saturating_mul(size.evaluate(symbols)))
    };
    match kernel {
        Kernel::Loop(k) => product(&k.loops.iter().collect::<Vec<_>>()),
        Kernel::MatMul(k) => product(&[&k.batch, &k.m, &k.k, &k.n]),
        Kernel::Scatter(k) => product(&[&k.positions, &k.row_len]),
        Kernel::Rows(k) => {
            k.members.iter().fold(0i64, |sum, m| sum.saturating_add(product(&m.loops.iter().collect::<Vec<_>>())))
        }
    }
}

fn concrete_shape(shape: &kiln_compiler::Shape, symbols: &[i64], names: &[String]) -> Vec<usize> {
    shape
        .dims()
        .iter()
        .map(|d| match d {
            Dim::Static(n) => *n,
            Dim::Sym(s) => symbols[names.iter().position(|n| n == s).expect("bug in kiln: unknown symbol")] as usize,
        })
        .collect()
}

/// The number of elements of `shape` under `symbols`, `None` if it does not fit in a `usize`.
fn elements(shape: &kiln_compiler::Shape, symbols: &[i64], names: &[String]) -> Option<usize> {
    concrete_shape(shape, symbols, names).iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

pub(crate) fn byte_size(dtype: DType) -> usize {
    match dtype {
        DType::F32 | DType::I32 => 4,
        DType::F64 | DType::I64 => 8,
        DType::Bool => 1,
    }
}

/// The bytes of 16-byte words.
pub(crate) fn bytemuck_bytes(words: &[u128]) -> &[u8] {
    // SAFETY: u128 has no padding and every byte pattern is a valid u8; the length is exact.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), std::mem::size_of_val(words)) }
}

/// `words` zeroed 16-byte words, or [`Error::OutOfMemory`] naming `what` when they cannot be
/// allocated. Zeroed pages come from the allocator untouched, as `vec![0; n]` would.
fn zeroed_words(words: usize, what: impl FnOnce() -> String) -> Result<Vec<u128>> {
    let Ok(layout) = std::alloc::Layout::array::<u128>(words) else {
        return Err(Error::OutOfMemory { bytes: usize::MAX, what: what() });
    };
    if layout.size() == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: the layout has a non-zero size.
    let pointer = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<u128>();
    if pointer.is_null() {
        return Err(Error::OutOfMemory { bytes: layout.size(), what: what() });
    }
    // SAFETY: the global allocator gave `pointer` for an array of `words` u128 (the layout
    // `Vec` uses), and zero bytes are valid u128s, so all `words` are initialised.
    Ok(unsafe { Vec::from_raw_parts(pointer, words, words) })
}

/// Typed data as 16-byte-aligned memory (rounded up to whole words, at least one).
pub(crate) fn to_memory(data: &Data, what: impl FnOnce() -> String) -> Result<Vec<u128>> {
    let mut words = Vec::new();
    write_memory(&mut words, data, what)?;
    Ok(words)
}

/// Writes typed data into `words`, reusing its allocation when it has the right size.
/// The address of `data`'s first element, for kernels that only read it (typed as the pointer
/// table's entries, which are `*mut` because other buffers are written).
fn data_address(data: &Data) -> *mut u8 {
    match data {
        Data::F32(v) => v.as_ptr().cast::<u8>().cast_mut(),
        Data::F64(v) => v.as_ptr().cast::<u8>().cast_mut(),
        Data::I32(v) => v.as_ptr().cast::<u8>().cast_mut(),
        Data::I64(v) => v.as_ptr().cast::<u8>().cast_mut(),
        Data::Bool(v) => v.as_ptr().cast::<u8>().cast_mut(),
    }
}

fn write_memory(words: &mut Vec<u128>, data: &Data, what: impl FnOnce() -> String) -> Result<()> {
    fn copy<T: Copy>(words: &mut Vec<u128>, values: &[T], what: impl FnOnce() -> String) -> Result<()> {
        let bytes = std::mem::size_of_val(values);
        let len = bytes.div_ceil(16).max(1);
        if words.len() != len {
            *words = Vec::new();
            *words = zeroed_words(len, what)?;
        }
        // SAFETY: the words hold at least `bytes` bytes; the source is plain data (numbers,
        // bools as 0/1 bytes) and any byte pattern is a valid u128.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr().cast::<u8>(), words.as_mut_ptr().cast::<u8>(), bytes) };
        Ok(())
    }
    match data {
        Data::F32(v) => copy(words, v, what),
        Data::F64(v) => copy(words, v, what),
        Data::I32(v) => copy(words, v, what),
        Data::I64(v) => copy(words, v, what),
        Data::Bool(v) => copy(words, v, what),
    }
}

/// Typed data from native-endian bytes, or [`Error::OutOfMemory`] when it cannot be allocated.
pub(crate) fn from_bytes(dtype: DType, bytes: &[u8], what: impl FnOnce() -> String) -> Result<Data> {
    /// The numbers in `bytes`, copied in one go (outputs can be megabytes: row gradients).
    fn numbers<T: Copy>(bytes: &[u8], what: impl FnOnce() -> String) -> Result<Vec<T>> {
        let count = bytes.len() / size_of::<T>();
        let mut values: Vec<T> = Vec::new();
        values
            .try_reserve_exact(count)
            .map_err(|_| Error::OutOfMemory { bytes: count.saturating_mul(size_of::<T>()), what: what() })?;
        // SAFETY: `values` has room for `count` numbers, `count * size_of::<T>()` bytes, all of
        // which `bytes` has; `T` is a plain number type (f32, f64, i32, i64), valid for any
        // bytes, read in native byte order as the kernels wrote them; all `count` are written
        // before the length is set.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), values.as_mut_ptr().cast::<u8>(), count * size_of::<T>());
            values.set_len(count);
        }
        Ok(values)
    }
    Ok(match dtype {
        DType::F32 => Data::F32(numbers::<f32>(bytes, what)?),
        DType::F64 => Data::F64(numbers::<f64>(bytes, what)?),
        DType::I32 => Data::I32(numbers::<i32>(bytes, what)?),
        DType::I64 => Data::I64(numbers::<i64>(bytes, what)?),
        DType::Bool => {
            let mut values = Vec::new();
            values
                .try_reserve_exact(bytes.len())
                .map_err(|_| Error::OutOfMemory { bytes: bytes.len(), what: what() })?;
            values.extend(bytes.iter().map(|&b| b != 0));
            Data::Bool(values)
        }
    })
}
