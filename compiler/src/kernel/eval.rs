//! The reference evaluator of the kernel IR: runs a [`Program`] on host buffers, exactly by
//! the IR's meaning, so a printer's output can be checked against the program it printed and
//! a fusion bug told apart from a code generation bug.
//!
//! In: a program, its params (a [`ParamStore`]) and, per call, its inputs by name ([`Feeds`]).
//! Out: the program's outputs; the updates are applied to the params after each call, as a
//! compiled `Function` does.
//!
//! Meaning, element by element and in loop order: every body expression is computed in `f64`
//! (floats) or `i64` (integers, wrapping) and rounded or wrapped to its own dtype; a reduction
//! accumulates in its result's dtype over its reduction loops in row-major order; a matmul
//! sums `k = 0, 1, ...` in the result's dtype with the product rounded first (no FMA); a
//! scatter zeroes its result and adds the rows position by position. Random draws are
//! `random.rs`'s generator in `f64`, rounded. Every buffer has its own memory (aliases share
//! their target's; the memory plan's slots are not used), so a memory plan bug does not show
//! here. This is an oracle, written to be read, not to be fast.

use std::collections::HashMap;

use super::{Expr, Index, Kernel, LoopKernel, MatMulKernel, Program, Reduce, Role, ScatterKernel, Size};
use crate::graph::{Binary, Compare, DType, Dim, Distribution, Unary};
use crate::random;
use crate::value::{Data, Value};
use crate::value::{Feeds, ParamStore};
use crate::{Error, Result};

/// One element while a body is evaluated.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scalar {
    Float(f64),
    Int(i64),
    Bool(bool),
}

impl Scalar {
    fn as_f64(self) -> f64 {
        match self {
            Scalar::Float(x) => x,
            Scalar::Int(x) => x as f64,
            Scalar::Bool(x) => f64::from(u8::from(x)),
        }
    }

    fn as_i64(self) -> i64 {
        match self {
            Scalar::Float(x) => x as i64,
            Scalar::Int(x) => x,
            Scalar::Bool(x) => i64::from(x),
        }
    }

    /// Converted to `dtype` with Rust's `as` semantics, as `Data::cast` does: floats round,
    /// integers wrap, floats to integers saturate toward zero, nonzero is `true`.
    fn to(self, dtype: DType) -> Scalar {
        match dtype {
            DType::F32 => Scalar::Float(f64::from(self.as_f64() as f32)),
            DType::F64 => Scalar::Float(self.as_f64()),
            DType::I32 => Scalar::Int(match self {
                Scalar::Float(x) => i64::from(x as i32),
                other => i64::from(other.as_i64() as i32),
            }),
            DType::I64 => Scalar::Int(self.as_i64()),
            DType::Bool => Scalar::Bool(self.as_f64() != 0.0),
        }
    }
}

/// Runs a program on host buffers; params persist between calls.
#[derive(Debug)]
pub struct Evaluator<'p> {
    program: &'p Program,
    /// The memory of every buffer that owns its memory (`None` for aliases).
    memory: Vec<Option<Data>>,
}

impl<'p> Evaluator<'p> {
    /// An evaluator of `program` with params from `params` (every param of the program must be
    /// there, with its declared shape).
    pub fn new(program: &'p Program, params: &ParamStore) -> Result<Evaluator<'p>> {
        let mut memory = vec![None; program.buffers.len()];
        for (number, buffer) in program.buffers.iter().enumerate() {
            match &buffer.role {
                Role::Constant(value) => memory[number] = Some(value.data().cast(buffer.dtype)),
                Role::Param(name) => {
                    memory[number] = Some(buffer.param_value(name, params)?.data().cast(buffer.dtype));
                }
                _ => {}
            }
        }
        Ok(Evaluator { program, memory })
    }

    /// The current value of every param.
    pub fn params(&self) -> ParamStore {
        let mut store = ParamStore::new();
        for (number, buffer) in self.program.buffers.iter().enumerate() {
            if let (Role::Param(name), Some(data)) = (&buffer.role, &self.memory[number]) {
                let shape = buffer.shape.as_static().unwrap_or_default();
                store.set(name, Value::new(shape, data.clone()).expect("a param's memory has its shape's size"));
            }
        }
        store
    }

    /// Runs every kernel on `feeds` (every input of the program by name), returns the outputs
    /// and then applies the updates. A gather or scatter index out of range and an integer
    /// division by zero are errors naming the kernel, as the compiled function reports them.
    pub fn run(&mut self, feeds: &Feeds) -> Result<Vec<Value>> {
        let symbols = self.bind_inputs(feeds)?;
        for (number, buffer) in self.program.buffers.iter().enumerate() {
            if matches!(buffer.role, Role::Temporary) {
                let elements: usize = concrete_shape(self.program, &buffer.shape, &symbols).iter().product();
                self.memory[number] = Some(Data::filled(buffer.dtype, elements, 0.0));
            }
        }
        for kernel in &self.program.kernels {
            let mut run = Run { program: self.program, memory: &mut self.memory, symbols: &symbols };
            match kernel {
                Kernel::Loop(k) => run.loop_kernel(k)?,
                Kernel::MatMul(k) => run.matmul(k)?,
                Kernel::Scatter(k) => run.scatter(k)?,
                // The reference order: each member over all rows, one after another.
                Kernel::Rows(k) => {
                    for member in &k.members {
                        run.loop_kernel(member)?;
                    }
                }
            }
        }
        let mut outputs = Vec::with_capacity(self.program.outputs.len());
        for &buffer in &self.program.outputs {
            let shape = concrete_shape(self.program, &self.program.buffers[buffer].shape, &symbols);
            outputs.push(self.read(buffer, shape)?);
        }
        for &(param, value) in &self.program.updates {
            let shape = self.program.buffers[param].shape.as_static().unwrap_or_default();
            let new = self.read(value, shape)?;
            let owner = self.program.storage(param);
            self.memory[owner] = Some(new.data().cast(self.program.buffers[owner].dtype));
        }
        Ok(outputs)
    }

    /// Checks every input against its buffer and copies it in; returns the symbols' values.
    fn bind_inputs(&mut self, feeds: &Feeds) -> Result<Vec<i64>> {
        let program = self.program;
        let mut symbols: Vec<Option<i64>> = vec![None; program.symbols.len()];
        for (number, buffer) in program.buffers.iter().enumerate() {
            let Role::Input(name) = &buffer.role else { continue };
            let value = feeds.get(name).ok_or_else(|| Error::BadFeed {
                what: "input",
                name: name.clone(),
                expected: format!("a value of shape {}", buffer.shape),
                got: "none".to_string(),
                location: None,
            })?;
            let bad = |expected: String| Error::BadFeed {
                what: "input",
                name: name.clone(),
                expected,
                got: format!("{} of shape {:?}", value.dtype(), value.shape()),
                location: None,
            };
            if value.dtype() != buffer.dtype || value.shape().len() != buffer.shape.rank() {
                return Err(bad(format!("{} of shape {}", buffer.dtype, buffer.shape)));
            }
            for (dim, &size) in buffer.shape.dims().iter().zip(value.shape()) {
                match dim {
                    Dim::Static(n) if *n != size => return Err(bad(format!("shape {}", buffer.shape))),
                    Dim::Static(_) => {}
                    Dim::Sym(symbol) => {
                        let s = program.symbols.iter().position(|x| x == symbol);
                        let s = s.ok_or_else(|| bug(format!("unknown symbol `{symbol}`")))?;
                        match symbols[s] {
                            Some(bound) if bound != size as i64 => {
                                return Err(bad(format!("{symbol} = {bound} (bound by an earlier input)")));
                            }
                            _ => symbols[s] = Some(size as i64),
                        }
                    }
                }
            }
            self.memory[number] = Some(value.data().clone());
        }
        symbols
            .into_iter()
            .zip(&program.symbols)
            .map(|(value, name)| value.ok_or_else(|| bug(format!("symbol `{name}` is bound by no input"))))
            .collect()
    }

    /// Buffer `buffer`'s first elements as a value of `shape`.
    fn read(&self, buffer: usize, shape: Vec<usize>) -> Result<Value> {
        let owner = self.program.storage(buffer);
        let data = self.memory[owner].as_ref().ok_or_else(|| bug(format!("b{buffer} has no memory")))?;
        let elements: usize = shape.iter().product();
        if elements > data.len() {
            return Err(bug(format!("b{buffer} is read as {elements} elements but has {}", data.len())));
        }
        let data = match data {
            Data::F32(v) => Data::F32(v[..elements].to_vec()),
            Data::F64(v) => Data::F64(v[..elements].to_vec()),
            Data::I32(v) => Data::I32(v[..elements].to_vec()),
            Data::I64(v) => Data::I64(v[..elements].to_vec()),
            Data::Bool(v) => Data::Bool(v[..elements].to_vec()),
        };
        Ok(Value::new(shape, data).expect("the elements were counted from the shape"))
    }
}

/// One call's state while kernels run.
struct Run<'r> {
    program: &'r Program,
    memory: &'r mut Vec<Option<Data>>,
    symbols: &'r [i64],
}

impl Run<'_> {
    fn size(&self, size: &Size) -> i64 {
        size.evaluate(self.symbols)
    }

    fn offset(&self, index: &Index, indices: &[i64]) -> i64 {
        let base: i64 = index.base.iter().map(|s| self.size(s)).sum();
        let moved: i64 = index.strides.iter().zip(indices).map(|(stride, &i)| self.size(stride) * i).sum();
        base + moved
    }

    fn load(&self, buffer: usize, offset: i64, kernel: &str) -> Result<Scalar> {
        let owner = self.program.storage(buffer);
        let data = self.memory[owner].as_ref().ok_or_else(|| bug(format!("kernel {kernel} reads b{buffer}, unset")))?;
        if offset < 0 || offset as usize >= data.len() {
            return Err(bug(format!("kernel {kernel} reads b{buffer} at {offset}, outside its {}", data.len())));
        }
        let i = offset as usize;
        Ok(match data {
            Data::F32(v) => Scalar::Float(f64::from(v[i])),
            Data::F64(v) => Scalar::Float(v[i]),
            Data::I32(v) => Scalar::Int(i64::from(v[i])),
            Data::I64(v) => Scalar::Int(v[i]),
            Data::Bool(v) => Scalar::Bool(v[i]),
        })
    }

    fn store(&mut self, buffer: usize, offset: i64, value: Scalar, kernel: &str) -> Result<()> {
        let owner = self.program.storage(buffer);
        let data =
            self.memory[owner].as_mut().ok_or_else(|| bug(format!("kernel {kernel} writes b{buffer}, unset")))?;
        if offset < 0 || offset as usize >= data.len() {
            return Err(bug(format!("kernel {kernel} writes b{buffer} at {offset}, outside its {}", data.len())));
        }
        let i = offset as usize;
        match (data, value.to(self.program.buffers[owner].dtype)) {
            (Data::F32(v), x) => v[i] = x.as_f64() as f32,
            (Data::F64(v), x) => v[i] = x.as_f64(),
            (Data::I32(v), x) => v[i] = x.as_i64() as i32,
            (Data::I64(v), x) => v[i] = x.as_i64(),
            (Data::Bool(v), x) => v[i] = x.as_f64() != 0.0,
        }
        Ok(())
    }

    /// A loop nest: every iteration in row-major order of its loops.
    fn loop_kernel(&mut self, kernel: &LoopKernel) -> Result<()> {
        let extents: Vec<i64> = kernel.loops.iter().map(|s| self.size(s)).collect();
        let Some((op, first)) = kernel.reduce else {
            for indices in odometer(&extents) {
                let values = self.body(kernel, &indices)?;
                for (value, buffer, index) in &kernel.stores {
                    self.store(*buffer, self.offset(index, &indices), values[*value], &kernel.name)?;
                }
            }
            return Ok(());
        };
        let kept_from = kernel.loops.len() - kernel.kept_inside;
        if kernel.kept_inside > 0 {
            // Every result starts at the identity in the output, then each iteration adds in.
            for indices in odometer(&extents) {
                if indices[first..kept_from].iter().all(|&i| i == 0) {
                    for (value, buffer, index) in &kernel.stores {
                        let identity = identity(op, kernel.body[*value].1);
                        self.store(*buffer, self.offset(index, &indices), identity, &kernel.name)?;
                    }
                }
            }
            for indices in odometer(&extents) {
                let values = self.body(kernel, &indices)?;
                for (value, buffer, index) in &kernel.stores {
                    let offset = self.offset(index, &indices);
                    let dtype = kernel.body[*value].1;
                    let current = self.load(*buffer, offset, &kernel.name)?.to(dtype);
                    self.store(*buffer, offset, combine(op, current, values[*value], dtype), &kernel.name)?;
                }
            }
            return Ok(());
        }
        // Accumulated per iteration of the loops outside the reduction, stored once.
        for outer in odometer(&extents[..first]) {
            let mut accumulators: Vec<Scalar> =
                kernel.stores.iter().map(|(value, _, _)| identity(op, kernel.body[*value].1)).collect();
            for inner in odometer(&extents[first..]) {
                let indices: Vec<i64> = outer.iter().chain(&inner).copied().collect();
                let values = self.body(kernel, &indices)?;
                for (accumulator, (value, _, _)) in accumulators.iter_mut().zip(&kernel.stores) {
                    *accumulator = combine(op, *accumulator, values[*value], kernel.body[*value].1);
                }
            }
            let indices: Vec<i64> =
                outer.iter().copied().chain(std::iter::repeat_n(0, extents.len() - first)).collect();
            for (accumulator, (_, buffer, index)) in accumulators.into_iter().zip(&kernel.stores) {
                self.store(*buffer, self.offset(index, &indices), accumulator, &kernel.name)?;
            }
        }
        Ok(())
    }

    /// The body's values at one iteration, each rounded or wrapped to its dtype.
    fn body(&self, kernel: &LoopKernel, indices: &[i64]) -> Result<Vec<Scalar>> {
        let mut values: Vec<Scalar> = Vec::with_capacity(kernel.body.len());
        for (expr, dtype) in &kernel.body {
            let dtype = *dtype;
            let value = match expr {
                Expr::Load { buffer, index } => self.load(*buffer, self.offset(index, indices), &kernel.name)?,
                Expr::Const(v) => Scalar::Float(*v),
                Expr::Size(size) => Scalar::Int(self.size(size)),
                Expr::LoopIndex(level) => Scalar::Int(indices[*level]),
                Expr::Unary(op, x) => unary(*op, values[*x], dtype, &kernel.name)?,
                Expr::Pow(p, x) => Scalar::Float(values[*x].as_f64().powf(*p)),
                Expr::Binary(op, a, b) => binary(*op, values[*a], values[*b], dtype, &kernel.name)?,
                Expr::Compare(op, a, b) => compare(*op, values[*a], values[*b], kernel.body[*a].1),
                Expr::Select(mask, a, b) => {
                    if values[*mask].as_f64() != 0.0 {
                        values[*a]
                    } else {
                        values[*b]
                    }
                }
                Expr::Cast(x) => values[*x],
                Expr::CheckIndex { value, limit, position, check } => {
                    let value = values[*value].as_i64();
                    if value < 0 || value >= self.size(limit) {
                        return Err(self.out_of_range(*check, value, self.offset(position, indices), &kernel.name));
                    }
                    Scalar::Int(value)
                }
                Expr::Random { seed, distribution, counter, index } => {
                    let key = random::draw_key(*seed, values[*counter].as_i64() as u64);
                    let element = self.offset(index, indices) as u64;
                    Scalar::Float(match distribution {
                        Distribution::Uniform => random::uniform(key, element),
                        Distribution::Normal => random::normal(key, element),
                    })
                }
                Expr::Gather { buffer, row, rows, row_stride, index, position, check } => {
                    let row = values[*row].as_i64();
                    if row < 0 || row >= self.size(rows) {
                        return Err(self.out_of_range(*check, row, self.offset(position, indices), &kernel.name));
                    }
                    let offset = row * self.size(row_stride) + self.offset(index, indices);
                    self.load(*buffer, offset, &kernel.name)?
                }
            };
            values.push(value.to(dtype));
        }
        Ok(values)
    }

    /// `out[b, i, j] = Σ_k a[b, i, k] · b[b, k, j]`, `k` in order, then the epilogue.
    fn matmul(&mut self, kernel: &MatMulKernel) -> Result<()> {
        let [batch, m, k, n] = [&kernel.batch, &kernel.m, &kernel.k, &kernel.n].map(|s| self.size(s));
        let (a, a_strides) = (kernel.a.0, kernel.a.1.clone().map(|s| self.size(&s)));
        let (b, b_strides) = (kernel.b.0, kernel.b.1.clone().map(|s| self.size(&s)));
        let dtype = self.program.buffers[self.program.storage(kernel.out)].dtype;
        for (batch_index, i, j) in odometer(&[batch, m, n]).map(|x| (x[0], x[1], x[2])) {
            let mut sum = Scalar::Float(0.0).to(dtype);
            for p in 0..k {
                let left =
                    self.load(a, batch_index * a_strides[0] + i * a_strides[1] + p * a_strides[2], &kernel.name)?;
                let right =
                    self.load(b, batch_index * b_strides[0] + p * b_strides[1] + j * b_strides[2], &kernel.name)?;
                let product = binary(Binary::Mul, left, right, dtype, &kernel.name)?.to(dtype);
                sum = binary(Binary::Add, sum, product, dtype, &kernel.name)?.to(dtype);
            }
            let at = (batch_index * m + i) * n + j;
            if let Some(scale) = kernel.accumulate {
                let old = self.load(kernel.out, at, &kernel.name)?;
                let scaled = binary(Binary::Mul, Scalar::Float(scale).to(dtype), old, dtype, &kernel.name)?.to(dtype);
                sum = binary(Binary::Add, scaled, sum, dtype, &kernel.name)?.to(dtype);
            }
            self.store(kernel.out, at, sum, &kernel.name)?;
        }
        if let Some(epilogue) = &kernel.epilogue {
            // The epilogue reads the product only at the element it computes, so running it
            // after the whole product means what running it block by block means.
            self.loop_kernel(epilogue)?;
        }
        Ok(())
    }

    /// The error of index `value` at `position` of its tensor outside the range of the
    /// program's check `check`, worded as the compiled function's status is.
    fn out_of_range(&self, check: usize, value: i64, position: i64, kernel: &str) -> Error {
        let Some(check) = self.program.checks.get(check) else {
            return bug(format!("kernel {kernel} reports under check {check}, which the program does not have"));
        };
        let of = check.indices.as_ref().map(|name| format!(" of `{name}`")).unwrap_or_default();
        let limit = self.size(&check.limit);
        let detail = format!(
            "index {value} at position {position}{of} is out of range for {limit} {} in kernel {kernel}",
            check.what
        );
        Error::Eval { node: 0, op: check.op, detail }
    }

    /// `out = 0; out[indices[p]] += update row p`, positions in order.
    fn scatter(&mut self, kernel: &ScatterKernel) -> Result<()> {
        let [positions, rows, row_len] = [&kernel.positions, &kernel.rows, &kernel.row_len].map(|s| self.size(s));
        let dtype = self.program.buffers[self.program.storage(kernel.out)].dtype;
        for offset in 0..rows * row_len {
            self.store(kernel.out, offset, Scalar::Float(0.0), &kernel.name)?;
        }
        for p in 0..positions {
            let row = self.load(kernel.indices, p, &kernel.name)?.as_i64();
            if row < 0 || row >= rows {
                return Err(self.out_of_range(kernel.check, row, p, &kernel.name));
            }
            // With a computed update: the position's indices along the producer's outer loops.
            let position = kernel.producer.as_ref().map(|producer| {
                let dims = &producer.loops[..producer.loops.len() - 1];
                let mut rest = p;
                let mut indices = vec![0; dims.len()];
                for (d, extent) in dims.iter().enumerate().rev() {
                    let extent = self.size(extent);
                    (indices[d], rest) = if d == 0 { (rest, 0) } else { (rest % extent, rest / extent) };
                }
                indices
            });
            for column in 0..row_len {
                let update = match (&kernel.producer, &position) {
                    (Some(producer), Some(position)) => {
                        let indices: Vec<i64> = position.iter().copied().chain([column]).collect();
                        let values = self.body(producer, &indices)?;
                        let (value, _, _) = producer.stores.first().ok_or_else(|| bug("a producer without a store"))?;
                        values[*value]
                    }
                    _ => self.load(kernel.updates, p * row_len + column, &kernel.name)?,
                };
                let target = row * row_len + column;
                let current = self.load(kernel.out, target, &kernel.name)?;
                let sum = binary(Binary::Add, current, update, dtype, &kernel.name)?;
                self.store(kernel.out, target, sum, &kernel.name)?;
            }
        }
        Ok(())
    }
}

/// Every index tuple under `extents`, in row-major order (one empty tuple for no loops).
fn odometer(extents: &[i64]) -> impl Iterator<Item = Vec<i64>> + use<> {
    let extents = extents.to_vec();
    let total: i64 = extents.iter().map(|&e| e.max(0)).product();
    (0..total).map(move |mut flat| {
        let mut indices = vec![0; extents.len()];
        for (slot, &extent) in indices.iter_mut().zip(&extents).rev() {
            *slot = flat % extent;
            flat /= extent;
        }
        indices
    })
}

fn identity(op: Reduce, dtype: DType) -> Scalar {
    match (op, dtype) {
        (Reduce::Sum, _) => Scalar::Float(0.0).to(dtype),
        (Reduce::Max, DType::I32) => Scalar::Int(i64::from(i32::MIN)),
        (Reduce::Max, DType::I64) => Scalar::Int(i64::MIN),
        (Reduce::Max, _) => Scalar::Float(f64::NEG_INFINITY).to(dtype),
    }
}

fn combine(op: Reduce, accumulator: Scalar, value: Scalar, dtype: DType) -> Scalar {
    let binary_op = match op {
        Reduce::Sum => Binary::Add,
        Reduce::Max => Binary::Max,
    };
    binary(binary_op, accumulator, value, dtype, "").expect("sum and max cannot fail").to(dtype)
}

fn unary(op: Unary, x: Scalar, dtype: DType, kernel: &str) -> Result<Scalar> {
    if dtype.is_int() {
        return match op {
            Unary::Neg => Ok(Scalar::Int(x.as_i64().wrapping_neg())),
            Unary::Abs => Ok(Scalar::Int(x.as_i64().wrapping_abs())),
            _ => Err(bug(format!("kernel {kernel} applies {op:?} to an integer"))),
        };
    }
    let x = x.as_f64();
    Ok(Scalar::Float(match op {
        Unary::Neg => -x,
        Unary::Exp => x.exp(),
        Unary::Log => x.ln(),
        Unary::Sqrt => x.sqrt(),
        Unary::Sin => x.sin(),
        Unary::Cos => x.cos(),
        Unary::Tanh => x.tanh(),
        Unary::Abs => x.abs(),
        Unary::Recip => x.recip(),
    }))
}

fn binary(op: Binary, a: Scalar, b: Scalar, dtype: DType, kernel: &str) -> Result<Scalar> {
    if dtype.is_float() {
        let (x, y) = (a.as_f64(), b.as_f64());
        let nan = x.is_nan() || y.is_nan();
        return Ok(Scalar::Float(match op {
            Binary::Add => x + y,
            Binary::Sub => x - y,
            Binary::Mul => x * y,
            Binary::Div => x / y,
            Binary::Max if nan => f64::NAN,
            Binary::Min if nan => f64::NAN,
            Binary::Max => x.max(y),
            Binary::Min => x.min(y),
        }));
    }
    let (x, y) = (a.as_i64(), b.as_i64());
    Ok(Scalar::Int(match op {
        Binary::Add => x.wrapping_add(y),
        Binary::Sub => x.wrapping_sub(y),
        Binary::Mul => x.wrapping_mul(y),
        Binary::Div if y == 0 => {
            let detail = format!("integer division by zero ({x} / 0) in kernel {kernel}");
            return Err(Error::Eval { node: 0, op: "kernel", detail });
        }
        // In the operands' own width, so `MIN / -1` wraps as the compiled code's does.
        Binary::Div if dtype == DType::I32 => i64::from((x as i32).wrapping_div(y as i32)),
        Binary::Div => x.wrapping_div(y),
        Binary::Max => x.max(y),
        Binary::Min => x.min(y),
    }))
}

fn compare(op: Compare, a: Scalar, b: Scalar, operands: DType) -> Scalar {
    Scalar::Bool(if operands.is_float() { op.apply(a.as_f64(), b.as_f64()) } else { op.apply(a.as_i64(), b.as_i64()) })
}

fn bug(detail: impl Into<String>) -> Error {
    Error::Bug(format!("kernel evaluator: {}", detail.into()))
}

fn concrete_shape(program: &Program, shape: &crate::graph::Shape, symbols: &[i64]) -> Vec<usize> {
    let by_name: HashMap<&str, i64> = program.symbols.iter().map(String::as_str).zip(symbols.iter().copied()).collect();
    shape
        .dims()
        .iter()
        .map(|dim| match dim {
            Dim::Static(n) => *n,
            Dim::Sym(s) => by_name.get(s.as_str()).copied().unwrap_or(0) as usize,
        })
        .collect()
}
