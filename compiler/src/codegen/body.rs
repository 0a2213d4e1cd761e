//! A loop kernel's body to Cranelift IR: its expressions at the current loop indices, as
//! scalars or as 4 lanes of the vector loop (integers that change along the lanes lane by
//! lane), and the scalar operations they are made of.
//!
//! In: a loop kernel's body and the loop indices. Out: Cranelift values for each expression, and
//! the stores.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, Type, Value, types};
use cranelift_frontend::FunctionBuilder;

use super::emitter::{Emitter, LANES, byte_size, constant, scalar_type};
use super::random::{random_key, random_lanes, random_value};
use super::{STATUS_DIVISION_BY_ZERO, STATUS_INDEX_OUT_OF_RANGE, Target, math};
use crate::graph::{Binary, Compare, DType, Unary};
use crate::kernel::{Expr, ExprId, Index, LoopKernel, Size};

/// The four lanes of each integer value that changes along the vector loop (`None` for the
/// others).
pub(super) type Lanes = Vec<Option<[Value; 4]>>;

/// Emits a kernel body's expressions at the current loop indices.
pub(super) struct Body<'k> {
    pub(super) kernel: &'k LoopKernel,
    pub(super) indices: &'k [Value],
    /// The body runs 4 lanes of loop `level` at a time.
    pub(super) vector: bool,
    pub(super) level: usize,
    /// A buffer whose loads take this value instead (see `Nest::product`).
    pub(super) product: Option<(usize, Value)>,
}

impl Body<'_> {
    /// The body's values: scalars, or in a vector body 4-lane vectors (`f32x4`, masks as
    /// `i32x4`) and, for integers that change along the lanes, their lane 0 (all four lanes
    /// are in `Lanes`).
    pub(super) fn emit(&self, emitter: &mut Emitter) -> (Vec<Value>, Lanes) {
        let uniform =
            if self.vector { uniform_exprs(self.kernel, self.level) } else { vec![true; self.kernel.body.len()] };
        let mut values: Vec<Value> = Vec::with_capacity(self.kernel.body.len());
        let mut lanes: Lanes = vec![None; self.kernel.body.len()];
        for (id, (expr, dtype)) in self.kernel.body.iter().enumerate() {
            let value = if dtype.is_int() && !uniform[id] {
                let four = self.int_lanes(emitter, expr, *dtype, &values, &lanes);
                lanes[id] = Some(four);
                four[0]
            } else {
                self.expr(emitter, expr, *dtype, &values, &lanes)
            };
            values.push(value);
        }
        (values, lanes)
    }

    /// Lane `lane` of integer value `id`: its own lane, or the value itself if uniform.
    pub(super) fn lane(values: &[Value], lanes: &Lanes, id: ExprId, lane: usize) -> Value {
        lanes[id].map_or(values[id], |four| four[lane])
    }

    /// The four lanes of an integer expression that changes along the vector loop.
    pub(super) fn int_lanes(
        &self,
        emitter: &mut Emitter,
        expr: &Expr,
        dtype: DType,
        values: &[Value],
        lanes: &Lanes,
    ) -> [Value; 4] {
        let ty = scalar_type(dtype);
        let builder_lanes = |emitter: &mut Emitter, f: &mut dyn FnMut(&mut Emitter, usize) -> Value| {
            [f(emitter, 0), f(emitter, 1), f(emitter, 2), f(emitter, 3)]
        };
        match expr {
            Expr::Load { buffer, index } => {
                let address = emitter.access(*buffer, index, self.indices);
                let stride = index.strides.get(self.level).cloned().unwrap_or_else(|| Size::fixed(0));
                let step = emitter.size(&stride);
                let step = emitter.builder.ins().imul_imm_s(step, byte_size(dtype));
                builder_lanes(emitter, &mut |emitter, lane| {
                    let skip = emitter.builder.ins().imul_imm_s(step, lane as i64);
                    let lane_address = emitter.builder.ins().iadd(address, skip);
                    let flags = emitter.load_flags(*buffer);
                    emitter.builder.ins().load(ty, flags, lane_address, 0)
                })
            }
            Expr::LoopIndex(level) => {
                let index = self.indices[*level];
                builder_lanes(emitter, &mut |emitter, lane| emitter.builder.ins().iadd_imm_s(index, lane as i64))
            }
            Expr::Cast(x) => {
                let from = self.kernel.body[*x].1;
                builder_lanes(emitter, &mut |emitter, lane| {
                    let source = match from {
                        // A vector mask lane is 0 or -1 (`i32`); a float lane is an `f32`.
                        DType::Bool if self.vector && lanes[*x].is_none() && !self.is_scalar(emitter, values[*x]) => {
                            let wide = emitter.builder.ins().extractlane(values[*x], lane as u8);
                            let bit = emitter.builder.ins().icmp_imm_s(IntCC::NotEqual, wide, 0);
                            return cast(emitter.builder, DType::Bool, dtype, bit);
                        }
                        DType::F32 if !self.is_scalar(emitter, values[*x]) => {
                            emitter.builder.ins().extractlane(values[*x], lane as u8)
                        }
                        _ => Self::lane(values, lanes, *x, lane),
                    };
                    cast(emitter.builder, from, dtype, source)
                })
            }
            Expr::Unary(op, x) => builder_lanes(emitter, &mut |emitter, lane| {
                let x = Self::lane(values, lanes, *x, lane);
                unary(emitter.builder, emitter.target, *op, dtype, x, false)
            }),
            Expr::Binary(op, a, b) => builder_lanes(emitter, &mut |emitter, lane| {
                let (a, b) = (Self::lane(values, lanes, *a, lane), Self::lane(values, lanes, *b, lane));
                binary(emitter, *op, dtype, a, b)
            }),
            Expr::Select(mask, a, b) => builder_lanes(emitter, &mut |emitter, lane| {
                let wide = emitter.builder.ins().extractlane(values[*mask], lane as u8);
                let bit = emitter.builder.ins().icmp_imm_s(IntCC::NotEqual, wide, 0);
                let (a, b) = (Self::lane(values, lanes, *a, lane), Self::lane(values, lanes, *b, lane));
                emitter.builder.ins().select(bit, a, b)
            }),
            Expr::CheckIndex { value, limit, position, check } => {
                let limit = emitter.size(limit);
                builder_lanes(emitter, &mut |emitter, lane| {
                    let value = Self::lane(values, lanes, *value, lane);
                    self.check_index(emitter, value, limit, (position, *check), lane as i64);
                    value
                })
            }
            _ => unreachable!("bug in kiln: `vectorizable_at` admits no other integer lanes"),
        }
    }

    /// Checks that the `i64` `value` lies in `0..limit`; outside, reports it on a cold branch
    /// with the program's check number and its position in its tensor (at lane `lane` of the
    /// vector loop), computed there so a passing check costs two compares and a branch.
    /// Returns the `i8` "out of range" flag.
    pub(super) fn check_index(
        &self,
        emitter: &mut Emitter,
        value: Value,
        limit: Value,
        (position, check): (&Index, usize),
        lane: i64,
    ) -> Value {
        let zero = emitter.iconst(0);
        let below = emitter.builder.ins().icmp(IntCC::SignedLessThan, value, zero);
        let above = emitter.builder.ins().icmp(IntCC::SignedGreaterThanOrEqual, value, limit);
        let bad = emitter.builder.ins().bor(below, above);
        let next = emitter.status.enter_report(emitter.builder, bad, STATUS_INDEX_OUT_OF_RANGE, value);
        let mut offset = emitter.offset(position, self.indices);
        if let Some(stride) = position.strides.get(self.level).filter(|_| lane != 0) {
            let stride = emitter.size(stride);
            let step = emitter.builder.ins().imul_imm_s(stride, lane);
            offset = emitter.builder.ins().iadd(offset, step);
        }
        let pointer = emitter.status.pointer();
        let number = emitter.builder.ins().iconst(types::I64, check as i64 + 1);
        emitter.builder.ins().store(super::trusted(), offset, pointer, 16);
        emitter.builder.ins().store(super::trusted(), number, pointer, 24);
        emitter.builder.ins().jump(next, &[]);
        emitter.builder.switch_to_block(next);
        bad
    }

    /// A mask as 4 lanes of 0 or -1: itself, or a uniform scalar mask (`i8` 0/1) spread.
    pub(super) fn vector_mask(&self, emitter: &mut Emitter, mask: Value) -> Value {
        if !self.is_scalar(emitter, mask) {
            return mask;
        }
        let wide = emitter.builder.ins().sextend(types::I32, mask);
        let wide = emitter.builder.ins().ineg(wide);
        emitter.builder.ins().splat(types::I32X4, wide)
    }

    /// A mask as a scalar `i8`: itself, or lane 0 of a vector mask that is uniform.
    pub(super) fn scalar_mask(&self, emitter: &mut Emitter, mask: Value) -> Value {
        if self.is_scalar(emitter, mask) {
            return mask;
        }
        let wide = emitter.builder.ins().extractlane(mask, 0);
        emitter.builder.ins().icmp_imm_s(IntCC::NotEqual, wide, 0)
    }

    /// True if `value` is a scalar (not a vector).
    pub(super) fn is_scalar(&self, emitter: &mut Emitter, value: Value) -> bool {
        !emitter.builder.func.dfg.value_type(value).is_vector()
    }

    /// Four scalars as one vector of `ty`.
    pub(super) fn build_vector(emitter: &mut Emitter, ty: Type, four: [Value; 4]) -> Value {
        let mut vector = emitter.builder.ins().splat(ty, four[0]);
        for (lane, &value) in four.iter().enumerate().skip(1) {
            vector = emitter.builder.ins().insertlane(vector, value, lane as u8);
        }
        vector
    }

    /// The `f32` elements at `address` and 3 more, `stride` elements apart, as 4 lanes.
    pub(super) fn gather_lanes(&self, emitter: &mut Emitter, buffer: usize, address: Value, stride: &Size) -> Value {
        let flags = emitter.load_flags(buffer);
        let step = emitter.size(stride);
        let step = emitter.builder.ins().imul_imm_s(step, 4);
        let first = emitter.builder.ins().load(types::F32, flags, address, 0);
        let mut lanes = emitter.builder.ins().splat(types::F32X4, first);
        let mut lane_address = address;
        for lane in 1..LANES as u8 {
            lane_address = emitter.builder.ins().iadd(lane_address, step);
            let element = emitter.builder.ins().load(types::F32, flags, lane_address, 0);
            lanes = emitter.builder.ins().insertlane(lanes, element, lane);
        }
        lanes
    }

    /// The bool elements at `address` and 3 more, `stride` elements (bytes) apart, as a vector
    /// mask: 0 or -1 per `i32` lane, as `fcmp` gives.
    fn mask_lanes(&self, emitter: &mut Emitter, buffer: usize, address: Value, stride: &Size) -> Value {
        let flags = emitter.load_flags(buffer);
        let step = emitter.size(stride);
        let mut four = [address; 4];
        let mut lane_address = address;
        for (lane, slot) in four.iter_mut().enumerate() {
            if lane > 0 {
                lane_address = emitter.builder.ins().iadd(lane_address, step);
            }
            let byte = emitter.builder.ins().load(types::I8, flags, lane_address, 0);
            let bit = emitter.builder.ins().icmp_imm_s(IntCC::NotEqual, byte, 0);
            let wide = emitter.builder.ins().sextend(types::I32, bit);
            *slot = emitter.builder.ins().ineg(wide);
        }
        Self::build_vector(emitter, types::I32X4, four)
    }

    /// A scalar as the body's form of a value of `dtype`: splat to lanes in a vector body,
    /// except integers and masks, which stay scalar there (they are uniform along the lanes;
    /// `select` and `cast` widen a scalar mask themselves).
    pub(super) fn splat_if_vector(&self, builder: &mut FunctionBuilder, value: Value, dtype: DType) -> Value {
        if self.vector && !dtype.is_int() && dtype != DType::Bool {
            builder.ins().splat(types::F32X4, value)
        } else {
            value
        }
    }

    pub(super) fn expr(
        &self,
        emitter: &mut Emitter,
        expr: &Expr,
        dtype: DType,
        values: &[Value],
        lanes: &Lanes,
    ) -> Value {
        let target = emitter.target;
        match expr {
            Expr::Load { buffer, .. } if self.product.is_some_and(|(product, _)| product == *buffer) => {
                self.product.expect("checked").1
            }
            Expr::Load { buffer, index } => {
                let address = emitter.access(*buffer, index, self.indices);
                let stride = index.strides.get(self.level).cloned().unwrap_or_else(|| Size::fixed(0));
                let flags = emitter.load_flags(*buffer);
                if self.vector && dtype == DType::Bool && stride.as_fixed() != Some(0) {
                    return self.mask_lanes(emitter, *buffer, address, &stride);
                }
                if self.vector && stride.as_fixed() == Some(1) {
                    return emitter.builder.ins().load(types::F32X4, flags, address, 0);
                }
                if self.vector && stride.as_fixed() != Some(0) {
                    return self.gather_lanes(emitter, *buffer, address, &stride);
                }
                let value = if dtype == DType::Bool {
                    let byte = emitter.builder.ins().load(types::I8, flags, address, 0);
                    emitter.builder.ins().icmp_imm_s(IntCC::NotEqual, byte, 0)
                } else {
                    emitter.builder.ins().load(scalar_type(dtype), flags, address, 0)
                };
                self.splat_if_vector(emitter.builder, value, dtype)
            }
            Expr::Const(v) => {
                let value = constant(emitter.builder, dtype, *v, *v as i64);
                self.splat_if_vector(emitter.builder, value, dtype)
            }
            Expr::Size(size) => {
                let value = emitter.size(size);
                let value = convert_int(emitter.builder, value, DType::I64, dtype);
                self.splat_if_vector(emitter.builder, value, dtype)
            }
            Expr::LoopIndex(level) => self.indices[*level],
            Expr::Unary(op, x) => unary(emitter.builder, target, *op, dtype, values[*x], self.vector),
            Expr::Pow(p, x) => pow(emitter.builder, target, *p, values[*x]),
            Expr::Binary(op, a, b) => binary(emitter, *op, dtype, values[*a], values[*b]),
            Expr::Compare(op, a, b) => {
                let operand = self.kernel.body[*a].1;
                if self.vector && operand.is_int() && (lanes[*a].is_some() || lanes[*b].is_some()) {
                    // Lane by lane, as a mask of 0 or -1 per `i32` lane, like `fcmp` gives.
                    let mut four = [values[*a]; 4];
                    for (lane, slot) in four.iter_mut().enumerate() {
                        let (x, y) = (Self::lane(values, lanes, *a, lane), Self::lane(values, lanes, *b, lane));
                        let bit = compare(emitter.builder, *op, operand, x, y);
                        let wide = emitter.builder.ins().sextend(types::I32, bit);
                        *slot = emitter.builder.ins().ineg(wide);
                    }
                    return Self::build_vector(emitter, types::I32X4, four);
                }
                compare(emitter.builder, *op, operand, values[*a], values[*b])
            }
            Expr::Select(mask, a, b) => {
                if self.vector && !dtype.is_int() {
                    let mask = self.vector_mask(emitter, values[*mask]);
                    let mask = emitter.builder.ins().bitcast(types::F32X4, little_endian(), mask);
                    emitter.builder.ins().bitselect(mask, values[*a], values[*b])
                } else {
                    let mask = self.scalar_mask(emitter, values[*mask]);
                    emitter.builder.ins().select(mask, values[*a], values[*b])
                }
            }
            Expr::Cast(x) => {
                let from = self.kernel.body[*x].1;
                if self.vector && dtype == DType::F32 && from.is_int() {
                    let mut four = [values[*x]; 4];
                    for (lane, slot) in four.iter_mut().enumerate() {
                        *slot = cast(emitter.builder, from, dtype, Self::lane(values, lanes, *x, lane));
                    }
                    return Self::build_vector(emitter, types::F32X4, four);
                }
                if self.vector && dtype == DType::F32 {
                    let x = if from == DType::Bool { self.vector_mask(emitter, values[*x]) } else { values[*x] };
                    return vector_cast(emitter.builder, from, x);
                }
                let mut value = values[*x];
                if self.vector && dtype == DType::Bool && from == DType::F32 && !self.is_scalar(emitter, value) {
                    // Lane-wise `x != 0`, a mask of 0 or -1 per `i32` lane.
                    let zero = emitter.builder.ins().f32const(0.0);
                    let zeros = emitter.builder.ins().splat(types::F32X4, zero);
                    return emitter.builder.ins().fcmp(FloatCC::NotEqual, value, zeros);
                }
                if !self.is_scalar(emitter, value) {
                    // A value uniform along the lanes (a splat) cast to an integer, which stays
                    // scalar in a vector body: any lane will do.
                    value = match from {
                        DType::Bool => self.scalar_mask(emitter, value),
                        _ => emitter.builder.ins().extractlane(value, 0),
                    };
                }
                cast(emitter.builder, from, dtype, value)
            }
            Expr::Random { seed, distribution, counter, index } => {
                let offset = emitter.offset(index, self.indices);
                let counter = values[*counter];
                let moves = index.strides.get(self.level).and_then(Size::as_fixed) == Some(1);
                let key = random_key(emitter.builder, *seed, counter);
                if self.vector && moves {
                    return random_lanes(emitter.builder, target, *distribution, key, offset);
                }
                let value = random_value(emitter.builder, target, *distribution, key, offset);
                self.splat_if_vector(emitter.builder, value, dtype)
            }
            Expr::CheckIndex { value, limit, position, check } => {
                let limit = emitter.size(limit);
                self.check_index(emitter, values[*value], limit, (position, *check), 0);
                values[*value]
            }
            Expr::Gather { buffer, row, rows, row_stride, index, position, check } => {
                let rows = emitter.size(rows);
                let row = values[*row];
                let bad = self.check_index(emitter, row, rows, (position, *check), 0);
                let zero = emitter.iconst(0);
                let safe_row = emitter.builder.ins().select(bad, zero, row);
                let row_stride = emitter.size(row_stride);
                let row_offset = emitter.builder.ins().imul(safe_row, row_stride);
                let inner = emitter.offset(index, self.indices);
                let offset = emitter.builder.ins().iadd(row_offset, inner);
                let address = emitter.element_address(*buffer, offset);
                // A bad row reads the status words instead: the table may have no rows at all,
                // and the value read is never used (the call fails).
                let status = emitter.status.pointer();
                let address = emitter.builder.ins().select(bad, status, address);
                if self.vector && index.strides.get(self.level).and_then(Size::as_fixed) == Some(1) {
                    return emitter.builder.ins().load(types::F32X4, super::read_only(), address, 0);
                }
                let value = emitter.builder.ins().load(scalar_type(dtype), super::read_only(), address, 0);
                self.splat_if_vector(emitter.builder, value, dtype)
            }
        }
    }
}

pub(super) fn little_endian() -> MemFlagsData {
    MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little)
}

pub(super) fn unary(
    builder: &mut FunctionBuilder,
    target: Target,
    op: Unary,
    dtype: DType,
    x: Value,
    vector: bool,
) -> Value {
    if dtype.is_int() {
        return match op {
            Unary::Neg => builder.ins().ineg(x),
            Unary::Abs => builder.ins().iabs(x),
            _ => unreachable!("bug in kiln: integer {op:?} passed the builder's checks"),
        };
    }
    match op {
        Unary::Neg => builder.ins().fneg(x),
        Unary::Abs => builder.ins().fabs(x),
        Unary::Sqrt => builder.ins().sqrt(x),
        Unary::Recip => {
            let one = if dtype == DType::F64 { builder.ins().f64const(1.0) } else { builder.ins().f32const(1.0) };
            let one = if vector { builder.ins().splat(types::F32X4, one) } else { one };
            builder.ins().fdiv(one, x)
        }
        Unary::Exp => math::exp(builder, x, target.fma),
        Unary::Log => math::log(builder, x, target.fma),
        Unary::Sin => math::sin(builder, x, target.fma),
        Unary::Cos => math::cos(builder, x, target.fma),
        Unary::Tanh => math::tanh(builder, x, target.fma),
    }
}

/// `x^p`: exact products for small integer `p`, square roots for ±1/2, else `exp(p·log x)`
/// (NaN for negative `x`, as `powf` gives for non-integer exponents).
pub(super) fn pow(builder: &mut FunctionBuilder, target: Target, p: f64, x: Value) -> Value {
    let ty = builder.func.dfg.value_type(x);
    let splat = |builder: &mut FunctionBuilder, v: f32| {
        let c = builder.ins().f32const(v);
        if ty.is_vector() { builder.ins().splat(ty, c) } else { c }
    };
    if p == 0.5 {
        return builder.ins().sqrt(x);
    }
    if p == -0.5 {
        let root = builder.ins().sqrt(x);
        let one = splat(builder, 1.0);
        return builder.ins().fdiv(one, root);
    }
    if p.fract() == 0.0 && p.abs() <= 16.0 {
        let mut result = splat(builder, 1.0);
        let mut power = x;
        let mut n = p.abs() as u32;
        while n > 0 {
            if n & 1 == 1 {
                result = builder.ins().fmul(result, power);
            }
            n >>= 1;
            if n > 0 {
                power = builder.ins().fmul(power, power);
            }
        }
        if p < 0.0 {
            let one = splat(builder, 1.0);
            result = builder.ins().fdiv(one, result);
        }
        return result;
    }
    let log = math::log(builder, x, target.fma);
    let exponent = splat(builder, p as f32);
    let scaled = builder.ins().fmul(log, exponent);
    math::exp(builder, scaled, target.fma)
}

pub(super) fn binary(emitter: &mut Emitter, op: Binary, dtype: DType, a: Value, b: Value) -> Value {
    let builder = &mut *emitter.builder;
    if dtype.is_float() {
        return match op {
            Binary::Add => builder.ins().fadd(a, b),
            Binary::Sub => builder.ins().fsub(a, b),
            Binary::Mul => builder.ins().fmul(a, b),
            Binary::Div => builder.ins().fdiv(a, b),
            Binary::Max => builder.ins().fmax(a, b),
            Binary::Min => builder.ins().fmin(a, b),
        };
    }
    match op {
        Binary::Add => builder.ins().iadd(a, b),
        Binary::Sub => builder.ins().isub(a, b),
        Binary::Mul => builder.ins().imul(a, b),
        Binary::Max => builder.ins().smax(a, b),
        Binary::Min => builder.ins().smin(a, b),
        Binary::Div => {
            // Cranelift's sdiv traps on a zero divisor and on MIN / -1: divide by a safe
            // divisor, report a zero one, and wrap MIN / -1 to MIN as Rust's wrapping_div does.
            let ty = builder.func.dfg.value_type(a);
            let zero = builder.ins().iconst(ty, 0);
            let one = builder.ins().iconst(ty, 1);
            let is_zero = builder.ins().icmp(IntCC::Equal, b, zero);
            let is_minus_one = builder.ins().icmp_imm_s(IntCC::Equal, b, -1);
            let unsafe_divisor = builder.ins().bor(is_zero, is_minus_one);
            let divisor = builder.ins().select(unsafe_divisor, one, b);
            let quotient = builder.ins().sdiv(a, divisor);
            let negated = builder.ins().ineg(a);
            let quotient = builder.ins().select(is_minus_one, negated, quotient);
            let wide = if ty == types::I64 { a } else { builder.ins().sextend(types::I64, a) };
            emitter.status.report(emitter.builder, is_zero, STATUS_DIVISION_BY_ZERO, wide);
            let _ = dtype;
            quotient
        }
    }
}

pub(super) fn compare(builder: &mut FunctionBuilder, op: Compare, operand: DType, a: Value, b: Value) -> Value {
    if operand.is_float() {
        let cc = match op {
            Compare::Lt => FloatCC::LessThan,
            Compare::Le => FloatCC::LessThanOrEqual,
            Compare::Gt => FloatCC::GreaterThan,
            Compare::Ge => FloatCC::GreaterThanOrEqual,
            Compare::Eq => FloatCC::Equal,
            // Unordered or unequal: NaN differs from everything, itself included.
            Compare::Ne => FloatCC::NotEqual,
        };
        return builder.ins().fcmp(cc, a, b);
    }
    let cc = match op {
        Compare::Lt => IntCC::SignedLessThan,
        Compare::Le => IntCC::SignedLessThanOrEqual,
        Compare::Gt => IntCC::SignedGreaterThan,
        Compare::Ge => IntCC::SignedGreaterThanOrEqual,
        Compare::Eq => IntCC::Equal,
        Compare::Ne => IntCC::NotEqual,
    };
    builder.ins().icmp(cc, a, b)
}

/// Casts between scalar dtypes with Rust's `as` semantics (saturating float to int, NaN to 0;
/// nonzero to true).
pub(super) fn cast(builder: &mut FunctionBuilder, from: DType, to: DType, x: Value) -> Value {
    match (from, to) {
        _ if from == to => x,
        (DType::F32, DType::F64) => builder.ins().fpromote(types::F64, x),
        (DType::F64, DType::F32) => builder.ins().fdemote(types::F32, x),
        (DType::F32 | DType::F64, DType::Bool) => {
            let zero = constant(builder, from, 0.0, 0);
            builder.ins().fcmp(FloatCC::NotEqual, x, zero)
        }
        (DType::F32 | DType::F64, int) => builder.ins().fcvt_to_sint_sat(scalar_type(int), x),
        (DType::Bool, float @ (DType::F32 | DType::F64)) => {
            let wide = builder.ins().uextend(types::I32, x);
            builder.ins().fcvt_from_uint(scalar_type(float), wide)
        }
        (DType::Bool, int) => builder.ins().uextend(scalar_type(int), x),
        (int, other) => convert_int(builder, x, int, other),
    }
}

/// Converts an integer of `from` to `to` (`f32`, another integer width, or a mask).
pub(super) fn convert_int(builder: &mut FunctionBuilder, x: Value, from: DType, to: DType) -> Value {
    match (from, to) {
        _ if from == to => x,
        (_, DType::F32) => builder.ins().fcvt_from_sint(types::F32, x),
        (_, DType::F64) => builder.ins().fcvt_from_sint(types::F64, x),
        (DType::I32, DType::I64) => builder.ins().sextend(types::I64, x),
        (DType::I64, DType::I32) => builder.ins().ireduce(types::I32, x),
        (_, DType::Bool) => builder.ins().icmp_imm_s(IntCC::NotEqual, x, 0),
        _ => unreachable!("bug in kiln: cast from {from} to {to}"),
    }
}

/// Vector casts: only mask to `f32` (0 or 1) and `f32` to itself are vectorised.
pub(super) fn vector_cast(builder: &mut FunctionBuilder, from: DType, x: Value) -> Value {
    match from {
        DType::Bool => {
            let one = builder.ins().f32const(1.0);
            let zero = builder.ins().f32const(0.0);
            let (one, zero) = (builder.ins().splat(types::F32X4, one), builder.ins().splat(types::F32X4, zero));
            let mask = builder.ins().bitcast(types::F32X4, little_endian(), x);
            builder.ins().bitselect(mask, one, zero)
        }
        _ => x,
    }
}

/// For each expression of the body: true if it has the same value at every iteration of loop
/// `level` (built from constants, sizes and loads that do not move along it).
pub(super) fn uniform_exprs(kernel: &LoopKernel, level: usize) -> Vec<bool> {
    let mut uniform: Vec<bool> = Vec::with_capacity(kernel.body.len());
    for (expr, _) in &kernel.body {
        let value = match expr {
            Expr::Const(_) | Expr::Size(_) => true,
            Expr::Load { index, .. } => index.strides.get(level).is_none_or(|s| s.as_fixed() == Some(0)),
            Expr::Unary(_, x) | Expr::Pow(_, x) | Expr::Cast(x) | Expr::CheckIndex { value: x, .. } => uniform[*x],
            Expr::Binary(_, a, b) | Expr::Compare(_, a, b) => uniform[*a] && uniform[*b],
            Expr::Select(m, a, b) => uniform[*m] && uniform[*a] && uniform[*b],
            Expr::LoopIndex(loop_level) => *loop_level != level,
            Expr::Random { .. } | Expr::Gather { .. } => false,
        };
        uniform.push(value);
    }
    uniform
}
