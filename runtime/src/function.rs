//! Compiled functions: Theano's `function(inputs, outputs, updates)`, run on native code.

use std::time::Duration;

use kiln_compiler::codegen::{
    self, CompiledProgram, STATUS_DIVISION_BY_ZERO, STATUS_GEMM_FAILED, STATUS_INDEX_OUT_OF_RANGE,
};
use kiln_compiler::compile::compile_reducing;
use kiln_compiler::kernel::{Kernel, Role};
use kiln_compiler::{DType, Data, Dim, Error, Graph, Location, ParamStore, Result, Tensor, Value};

use crate::pool::{Call, Pool};
use crate::reduce::{Exchange, Reducer};

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
    /// Memory of every input, param and constant buffer (temporaries live in `scratch`,
    /// aliases in their target's memory).
    memory: Vec<Vec<u128>>,
    /// Memory of every scratch slot of the memory plan.
    scratch: Vec<Vec<u128>>,
    pool: Pool,
    /// Time spent in each kernel over all calls, when `KILN_PROFILE` is set.
    profile: Option<Vec<Duration>>,
    calls: u64,
    /// How many of the program's outputs the caller gets (the rest are summed buffers).
    returned: usize,
    /// When to sum which buffers across processes, and who sums them (none: no sums).
    exchange: Exchange,
    reducer: Option<Box<dyn Reducer>>,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function").field("inputs", &self.inputs).field("kernels", &self.compiled.kernels.len()).finish()
    }
}

/// Compiles `outputs` of `graph` as a function of `inputs` (fed positionally on each call),
/// with `updates` (`(param, new value)`) applied after each call. Params start from their
/// initializers (seed 0); see [`Function::set_params`].
///
/// Threads: `KILN_THREADS`, else every core.
#[track_caller]
pub fn function<'g>(
    graph: &'g Graph,
    inputs: &[Tensor<'g>],
    outputs: &[Tensor<'g>],
    updates: &[(Tensor<'g>, Tensor<'g>)],
) -> Result<Function> {
    function_with(graph, inputs, outputs, updates, &codegen::Options::default())
}

/// [`function`] with code generator options. `Options { gemm: false, fma }` with the `fma`
/// of an export target computes exactly the bits of the artifact exported for that target
/// (see `kiln_runtime::export`).
#[track_caller]
pub fn function_with<'g>(
    graph: &'g Graph,
    inputs: &[Tensor<'g>],
    outputs: &[Tensor<'g>],
    updates: &[(Tensor<'g>, Tensor<'g>)],
    options: &codegen::Options,
) -> Result<Function> {
    function_reducing(graph, inputs, outputs, updates, &[], options)
}

/// [`function_with`] for one process of a data-parallel run: each `(name, tensor)` of
/// `reduced` (the gradients) is computed into a buffer of its own, which, once a
/// [`Reducer`] is set ([`Function::set_reducer`]), is replaced by its mean across processes
/// after the kernel that finishes it and before the first kernel that reads it. Without a
/// reducer the function computes what [`function_with`]'s does.
#[track_caller]
pub fn function_reducing<'g>(
    graph: &'g Graph,
    inputs: &[Tensor<'g>],
    outputs: &[Tensor<'g>],
    updates: &[(Tensor<'g>, Tensor<'g>)],
    reduced: &[(String, Tensor<'g>)],
    options: &codegen::Options,
) -> Result<Function> {
    let location = Location::caller();
    let tensors: Vec<Tensor<'g>> = reduced.iter().map(|(_, tensor)| *tensor).collect();
    let compiled = compile_reducing(graph, outputs, updates, &tensors, options)?;
    let names: Vec<String> = reduced.iter().map(|(name, _)| name.clone()).collect();
    let exchange = Exchange::plan(&compiled.program.program, &names)?;
    let program = &compiled.program.program;
    let mut input_names = Vec::with_capacity(inputs.len());
    for input in inputs {
        let name = match graph.node(input.id()?).op {
            kiln_compiler::Op::Input { name } => name,
            op => {
                let detail = format!("function inputs must be graph inputs, not a `{}` node", op.name());
                return Err(Error::Argument { op: "function", detail, location });
            }
        };
        input_names.push(name);
    }
    let mut positional = Vec::with_capacity(input_names.len());
    for name in &input_names {
        let buffer = program.buffers.iter().position(|b| b.role == Role::Input(name.clone()));
        let buffer = buffer.ok_or_else(|| Error::Bug(format!("input `{name}` has no buffer")))?;
        positional.push((name.clone(), buffer));
    }
    for buffer in &program.buffers {
        if let Role::Input(name) = &buffer.role
            && !input_names.contains(name)
        {
            let detail = format!("the outputs need input `{name}`, which is not among the function's inputs");
            return Err(Error::Argument { op: "function", detail, location });
        }
    }
    let threads = std::env::var("KILN_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
    let profile = std::env::var_os("KILN_PROFILE").map(|_| vec![Duration::ZERO; program.kernels.len()]);
    let mut function = Function {
        memory: vec![Vec::new(); program.buffers.len()],
        scratch: vec![Vec::new(); program.slots.iter().flatten().map(|&slot| slot + 1).max().unwrap_or(0)],
        compiled: compiled.program,
        compile_time: compiled.time,
        inputs: positional,
        pool: Pool::new(threads),
        profile,
        calls: 0,
        returned: outputs.len(),
        exchange,
        reducer: None,
    };
    function.set_params(&ParamStore::init(graph, 0))?;
    function.load_constants();
    Ok(function)
}

impl Function {
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
    /// with its mean time per call and share of the total, slowest first. `None` otherwise.
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
            out.push_str(&format!("{mean:9.1} us {:5.1}%  {}\n", 100.0 * share, self.compiled.kernels[k].name));
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
                return Err(Error::BadFeed { what: "param", name: name.clone(), expected, got });
            }
            writes.push((buffer, value.cast(declared.dtype)));
        }
        for (buffer, value) in writes {
            self.memory[buffer] = to_memory(value.data());
        }
        Ok(())
    }

    fn load_constants(&mut self) {
        for (buffer, declared) in self.compiled.program.buffers.iter().enumerate() {
            if let Role::Constant(value) = &declared.role {
                self.memory[buffer] = to_memory(value.data());
            }
        }
    }

    /// Runs the function on `inputs` (in the order given at compilation), returns the outputs
    /// and then applies the updates. Every input is checked (dtype, rank, sizes, symbolic dims
    /// consistent across inputs) before any kernel runs.
    pub fn call(&mut self, inputs: &[Value]) -> Result<Vec<Value>> {
        let symbols = self.bind_symbols(inputs)?;
        let program = &self.compiled.program;
        // Size every scratch slot for its largest buffer, then copy the inputs in.
        let mut words = vec![1usize; self.scratch.len()];
        for (buffer, declared) in program.buffers.iter().enumerate() {
            if let (Role::Temporary, Some(slot)) = (&declared.role, program.slots[buffer]) {
                let elements = elements(&declared.shape, &symbols, &program.symbols);
                words[slot] = words[slot].max((elements * byte_size(declared.dtype)).div_ceil(16));
            }
        }
        for (memory, &words) in self.scratch.iter_mut().zip(&words) {
            // At least one word, so no buffer's address dangles even when it is empty.
            if memory.len() < words {
                *memory = vec![0; words];
            }
        }
        for ((_, buffer), value) in self.inputs.iter().zip(inputs) {
            write_memory(&mut self.memory[*buffer], value.data());
        }
        let buffers = program.buffers.len();
        let pointers: Vec<*mut u8> = (0..buffers).map(|b| self.storage_mut(b).as_mut_ptr().cast::<u8>()).collect();
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
            // Small kernels run on the calling thread: dispatch would cost more than it saves.
            let split = compiled.splittable && work(kernel, &symbols) >= 16_384;
            // SAFETY: every buffer was just sized from its declared shape under `symbols`
            // (inputs were checked against their shapes), `symbols` holds every symbol, and the
            // pool passes ranges within `0..extent`.
            let status = unsafe { self.pool.run(compiled, call, extent, split) };
            if let (Some(profile), Some(started)) = (&mut self.profile, started) {
                profile[number] += started.elapsed();
            }
            check_status(status, &compiled.name)?;
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
                self.read(buffer, &shape)
            })
            .collect();
        for &(param, value) in &program.updates {
            let source = self.storage(value).to_vec();
            let target = program.storage(param);
            let words = self.memory[target].len();
            self.memory[target].copy_from_slice(&source[..words]);
        }
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
    fn bind_symbols(&self, inputs: &[Value]) -> Result<Vec<i64>> {
        let program = &self.compiled.program;
        if inputs.len() != self.inputs.len() {
            let names: Vec<&str> = self.inputs.iter().map(|(n, _)| n.as_str()).collect();
            let detail = format!("expected {} inputs ({}), got {}", names.len(), names.join(", "), inputs.len());
            return Err(Error::Argument { op: "call", detail, location: Location::caller() });
        }
        let mut symbols: Vec<Option<i64>> = vec![None; program.symbols.len()];
        for ((name, buffer), value) in self.inputs.iter().zip(inputs) {
            let declared = &program.buffers[*buffer];
            let bad =
                |expected: String, got: String| Error::BadFeed { what: "input", name: name.clone(), expected, got };
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

    /// A copy of buffer `buffer`'s contents as a value of `shape`.
    fn read(&self, buffer: usize, shape: &[usize]) -> Value {
        let program = &self.compiled.program;
        let dtype = program.buffers[buffer].dtype;
        let memory = self.storage(buffer);
        let elements: usize = shape.iter().product();
        let bytes: &[u8] = bytemuck_bytes(memory);
        let data = from_bytes(dtype, &bytes[..elements * byte_size(dtype)]);
        Value::new(shape.to_vec(), data).expect("bug in kiln: a buffer has the wrong size")
    }
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
                let len = elements(&buffer.shape, symbols, &self.program.symbols);
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
                let len = elements(&buffer.shape, symbols, &self.program.symbols);
                // SAFETY: as in `start`; the sum is complete, so the memory is the call's again.
                let values = unsafe { std::slice::from_raw_parts_mut(pointers[sum.buffer].cast::<f32>(), len) };
                values.iter_mut().for_each(|value| *value *= scale);
            }
        }
        Ok(())
    }
}

fn check_status(status: [i64; 2], kernel: &str) -> Result<()> {
    let detail = match status[0] {
        0 => return Ok(()),
        STATUS_INDEX_OUT_OF_RANGE => format!("index {} is out of range", status[1]),
        STATUS_DIVISION_BY_ZERO => format!("integer division by zero ({} / 0)", status[1]),
        STATUS_GEMM_FAILED => "bug in kiln: the tuned GEMM failed".to_string(),
        code => format!("kernel reported status {code}"),
    };
    Err(Error::Eval { node: 0, op: "kernel", detail: format!("{detail} in kernel {kernel}") })
}

/// A rough count of the elements a kernel touches, to decide whether threads pay off.
fn work(kernel: &Kernel, symbols: &[i64]) -> i64 {
    match kernel {
        Kernel::Loop(k) => k.loops.iter().map(|s| s.evaluate(symbols)).product(),
        Kernel::MatMul(k) => [&k.batch, &k.m, &k.k, &k.n].iter().map(|s| s.evaluate(symbols)).product(),
        Kernel::Scatter(k) => k.positions.evaluate(symbols) * k.row_len.evaluate(symbols),
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

fn elements(shape: &kiln_compiler::Shape, symbols: &[i64], names: &[String]) -> usize {
    concrete_shape(shape, symbols, names).iter().product()
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

/// Typed data as 16-byte-aligned memory (rounded up to whole words, at least one).
pub(crate) fn to_memory(data: &Data) -> Vec<u128> {
    let mut words = Vec::new();
    write_memory(&mut words, data);
    words
}

/// Writes typed data into `words`, reusing its allocation when it has the right size.
fn write_memory(words: &mut Vec<u128>, data: &Data) {
    fn copy<T: Copy>(words: &mut Vec<u128>, values: &[T]) {
        let bytes = std::mem::size_of_val(values);
        let len = bytes.div_ceil(16).max(1);
        if words.len() != len {
            *words = vec![0u128; len];
        }
        // SAFETY: the words hold at least `bytes` bytes; the source is plain data (numbers,
        // bools as 0/1 bytes) and any byte pattern is a valid u128.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr().cast::<u8>(), words.as_mut_ptr().cast::<u8>(), bytes) };
    }
    match data {
        Data::F32(v) => copy(words, v),
        Data::F64(v) => copy(words, v),
        Data::I32(v) => copy(words, v),
        Data::I64(v) => copy(words, v),
        Data::Bool(v) => copy(words, v),
    }
}

pub(crate) fn from_bytes(dtype: DType, bytes: &[u8]) -> Data {
    fn chunks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        bytes.chunks_exact(N).map(|c| c.try_into().expect("exact chunk"))
    }
    match dtype {
        DType::F32 => Data::F32(chunks::<4>(bytes).map(f32::from_ne_bytes).collect()),
        DType::F64 => Data::F64(chunks::<8>(bytes).map(f64::from_ne_bytes).collect()),
        DType::I32 => Data::I32(chunks::<4>(bytes).map(i32::from_ne_bytes).collect()),
        DType::I64 => Data::I64(chunks::<8>(bytes).map(i64::from_ne_bytes).collect()),
        DType::Bool => Data::Bool(bytes.iter().map(|&b| b != 0).collect()),
    }
}
