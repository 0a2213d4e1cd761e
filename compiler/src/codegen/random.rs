//! kiln's counter-based random numbers (`random.rs`) in Cranelift IR, for one element or
//! four `i32x4` lanes, bit for bit as the reference definition.
//!
//! In: a random expression's key and counter values. Out: Cranelift values equal, bit for bit, to
//! `crate::random`'s numbers.

use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{InstBuilder, Value, types};
use cranelift_frontend::FunctionBuilder;

use super::{Target, math};
use crate::graph::Distribution;

/// `mix32` of `random.rs`, on an `i32` or on four `i32x4` lanes.
pub(super) fn mix32(builder: &mut FunctionBuilder, x: Value) -> Value {
    let ty = builder.func.dfg.value_type(x);
    let multiply = |builder: &mut FunctionBuilder, x: Value, factor: u32| {
        let factor = builder.ins().iconst(types::I32, factor as i32 as i64);
        let factor = if ty.is_vector() { builder.ins().splat(ty, factor) } else { factor };
        builder.ins().imul(x, factor)
    };
    let shifted = builder.ins().ushr_imm_s(x, 16);
    let x = builder.ins().bxor(x, shifted);
    let x = multiply(builder, x, 0x7feb_352d);
    let shifted = builder.ins().ushr_imm_s(x, 15);
    let x = builder.ins().bxor(x, shifted);
    let x = multiply(builder, x, 0x846c_a68b);
    let shifted = builder.ins().ushr_imm_s(x, 16);
    builder.ins().bxor(x, shifted)
}

/// `random::bits(key, index)` then a uniform on [0, 1) with 24 bits.
pub(super) fn uniform_at(builder: &mut FunctionBuilder, key: Value, index: Value) -> Value {
    let low = builder.ins().ireduce(types::I32, index);
    let high = builder.ins().ushr_imm_s(index, 32);
    let high = builder.ins().ireduce(types::I32, high);
    uniform_from_halves(builder, key, low, high)
}

/// The uniform of the element whose 64-bit index has halves `low` and `high`, for one `i32`
/// index or four `i32x4` lanes (with `key` of the same form).
pub(super) fn uniform_from_halves(builder: &mut FunctionBuilder, key: Value, low: Value, high: Value) -> Value {
    let vector = builder.func.dfg.value_type(low).is_vector();
    let mixed = builder.ins().bxor(key, low);
    let mixed = mix32(builder, mixed);
    let mixed = builder.ins().iadd(mixed, high);
    let bits = mix32(builder, mixed);
    let top = builder.ins().ushr_imm_s(bits, 8);
    // Below 2^24, so the signed conversion is exact.
    let value = builder.ins().fcvt_from_sint(if vector { types::F32X4 } else { types::F32 }, top);
    let scale = builder.ins().f32const(1.0 / 16_777_216.0);
    let scale = if vector { builder.ins().splat(types::F32X4, scale) } else { scale };
    builder.ins().fmul(value, scale)
}

/// `random::draw_key(seed, counter)`: mix32 folded over the seed's and the counter's halves.
pub(super) fn random_key(builder: &mut FunctionBuilder, seed: u64, counter: Value) -> Value {
    let mut key = builder.ins().iconst(types::I32, 0x9e37_79b9_u32 as i32 as i64);
    for half in [seed as u32, (seed >> 32) as u32] {
        let half = builder.ins().iconst(types::I32, half as i32 as i64);
        let mixed = builder.ins().bxor(key, half);
        key = mix32(builder, mixed);
    }
    let counter_high = builder.ins().ushr_imm_s(counter, 32);
    for half in [counter, counter_high] {
        let half = builder.ins().ireduce(types::I32, half);
        let mixed = builder.ins().bxor(key, half);
        key = mix32(builder, mixed);
    }
    key
}

/// kiln's counter-based random number at flat `index` of the stream `key`, as `random.rs`
/// defines it.
pub(super) fn random_value(
    builder: &mut FunctionBuilder,
    target: Target,
    distribution: Distribution,
    key: Value,
    index: Value,
) -> Value {
    match distribution {
        Distribution::Uniform => uniform_at(builder, key, index),
        Distribution::Normal => {
            let first = builder.ins().imul_imm_s(index, 2);
            let second = builder.ins().iadd_imm_s(first, 1);
            let u1 = uniform_at(builder, key, first);
            let u2 = uniform_at(builder, key, second);
            box_muller(builder, target, u1, u2)
        }
    }
}

/// A normal draw from two uniforms on [0, 1): `sqrt(-2 ln(1 - u1)) · cos(2π u2)`, in scalar
/// or vector form.
pub(super) fn box_muller(builder: &mut FunctionBuilder, target: Target, u1: Value, u2: Value) -> Value {
    let ty = builder.func.dfg.value_type(u1);
    let splat = |builder: &mut FunctionBuilder, v: f32| {
        let c = builder.ins().f32const(v);
        if ty.is_vector() { builder.ins().splat(ty, c) } else { c }
    };
    let one = splat(builder, 1.0);
    let complement = builder.ins().fsub(one, u1);
    let log = math::log(builder, complement, target.fma);
    let minus_two = splat(builder, -2.0);
    let radius_squared = builder.ins().fmul(log, minus_two);
    let radius = builder.ins().sqrt(radius_squared);
    let tau = splat(builder, std::f32::consts::TAU);
    let angle = builder.ins().fmul(u2, tau);
    let cos = math::cos(builder, angle, target.fma);
    builder.ins().fmul(radius, cos)
}

/// The random numbers at flat indices `index + 0..4`, as an `f32x4`: the same values as four
/// calls of [`random_value`], computed lane-wise in `i32x4`.
pub(super) fn random_lanes(
    builder: &mut FunctionBuilder,
    target: Target,
    distribution: Distribution,
    key: Value,
    index: Value,
) -> Value {
    let key = builder.ins().splat(types::I32X4, key);
    match distribution {
        Distribution::Uniform => {
            let (low, high) = lane_halves(builder, index, [0, 1, 2, 3]);
            uniform_from_halves(builder, key, low, high)
        }
        Distribution::Normal => {
            let first = builder.ins().imul_imm_s(index, 2);
            let (low, high) = lane_halves(builder, first, [0, 2, 4, 6]);
            let u1 = uniform_from_halves(builder, key, low, high);
            let (low, high) = lane_halves(builder, first, [1, 3, 5, 7]);
            let u2 = uniform_from_halves(builder, key, low, high);
            box_muller(builder, target, u1, u2)
        }
    }
}

/// The low and high 32-bit halves of the 64-bit values `base + steps[l]`, lane by lane: the low
/// halves wrap, and a lane whose low half wrapped carries one into its high half.
pub(super) fn lane_halves(builder: &mut FunctionBuilder, base: Value, steps: [i32; 4]) -> (Value, Value) {
    let base_low = builder.ins().ireduce(types::I32, base);
    let base_high = builder.ins().ushr_imm_s(base, 32);
    let base_high = builder.ins().ireduce(types::I32, base_high);
    let base_low = builder.ins().splat(types::I32X4, base_low);
    let bytes: Vec<u8> = steps.iter().flat_map(|step| step.to_le_bytes()).collect();
    let steps = builder.func.dfg.constants.insert(bytes.into());
    let steps = builder.ins().vconst(types::I32X4, steps);
    let low = builder.ins().iadd(base_low, steps);
    // All ones (-1) in the lanes that wrapped.
    let wrapped = builder.ins().icmp(IntCC::UnsignedLessThan, low, base_low);
    let high = builder.ins().splat(types::I32X4, base_high);
    let high = builder.ins().isub(high, wrapped);
    (low, high)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_random_constants_match_the_reference_definition() {
        // The IR above hard-codes random.rs's constants; this guards against drift.
        assert_eq!(crate::random::mix32(1), {
            let mut x: u32 = 1;
            x ^= x >> 16;
            x = x.wrapping_mul(0x7feb_352d);
            x ^= x >> 15;
            x = x.wrapping_mul(0x846c_a68b);
            x ^= x >> 16;
            x
        });
        assert_eq!(crate::random::draw_key(0, 0), {
            [0u32, 0, 0, 0].iter().fold(0x9e37_79b9_u32, |k, &h| crate::random::mix32(k ^ h))
        });
    }
}
