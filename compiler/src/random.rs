//! kiln's counter-based random numbers: the definition every evaluator of a `Random` node
//! (the interpreter now, compiled kernels later) must reproduce bit for bit.
//!
//! In: a seed, a counter and an element index. Out: uniform and normal numbers, the same in every
//! evaluator.
//!
//! Element `i` of a draw is a pure function of `(seed, counter, i)`: no state is carried
//! between calls, so a draw can be split across threads or recomputed anywhere. Only 32-bit
//! integer multiplies, shifts and xors are used, which every backend has in vector form.

/// A 32-bit integer finalizer with low bias (multiply-xorshift; constants from Chris Wellons'
/// hash-prospector "lowbias32").
pub fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// The key of one draw: every element of the draw mixes its index with it.
pub fn draw_key(seed: u64, counter: u64) -> u32 {
    let halves = [seed as u32, (seed >> 32) as u32, counter as u32, (counter >> 32) as u32];
    halves.iter().fold(0x9e37_79b9, |key, &half| mix32(key ^ half))
}

/// 32 random bits for element `index` of the draw with key `key`.
pub fn bits(key: u32, index: u64) -> u32 {
    mix32(mix32(key ^ index as u32).wrapping_add((index >> 32) as u32))
}

/// Uniform on `[0, 1)` with 24 random bits (exactly representable in `f32`).
pub fn uniform(key: u32, index: u64) -> f64 {
    f64::from(bits(key, index) >> 8) * (1.0 / 16_777_216.0)
}

/// Standard normal by Box–Muller over the uniforms at `2·index` and `2·index + 1`.
pub fn normal(key: u32, index: u64) -> f64 {
    let u1 = uniform(key, 2 * index);
    let u2 = uniform(key, 2 * index + 1);
    // 1 - u1 lies in (0, 1], so the logarithm is finite.
    (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The 64-bit FNV-1a hash of nothing (its offset basis): where [`fnv1a`] starts.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// 64-bit FNV-1a: `hash` continued over `bytes`. kiln's one small hash, for names, cache keys
/// and checksums that tell a damaged file from a whole one (not for anything an adversary
/// chooses).
pub fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The FNV-1a hash of a name, to give each param its own stream.
pub fn hash_name(name: &str) -> u64 {
    fnv1a(FNV_OFFSET, name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_draws_have_the_moments_of_uniform() {
        let key = draw_key(7, 3);
        let n = 100_000;
        let values: Vec<f64> = (0..n).map(|i| uniform(key, i)).collect();
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        assert!((var - 1.0 / 12.0).abs() < 0.002, "variance {var}");
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
    }

    #[test]
    fn normal_draws_have_the_moments_of_a_standard_normal() {
        let key = draw_key(1, 0);
        let n = 100_000;
        let values: Vec<f64> = (0..n).map(|i| normal(key, i)).collect();
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
    }

    #[test]
    fn draws_differ_by_seed_and_counter_and_repeat_exactly() {
        assert_ne!(draw_key(1, 0), draw_key(2, 0));
        assert_ne!(draw_key(1, 0), draw_key(1, 1));
        assert_eq!(bits(draw_key(5, 9), 42), bits(draw_key(5, 9), 42));
        assert_ne!(bits(draw_key(5, 9), 42), bits(draw_key(5, 9), 43));
    }
}
