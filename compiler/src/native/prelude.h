/* The native tier's prelude: vector types of KILN_LANES f32 lanes (GCC/Clang vector extensions),
   loads and stores of partial vectors, kiln's IEEE max/min, kiln's polynomial exp/log/sin/cos/tanh
   (the same steps as the JIT's, codegen/math.rs) and kiln's counter-based random numbers (random.rs). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* How the kernels and `kiln_set_gemm` are declared: exported for the native tier's shared
   library; an artifact defines it as `static` before this prelude. */
#ifndef KILN_API
#define KILN_API
#endif

typedef float vf __attribute__((vector_size(KILN_LANES * 4)));
typedef int32_t vi __attribute__((vector_size(KILN_LANES * 4)));
typedef uint32_t vu __attribute__((vector_size(KILN_LANES * 4)));
typedef int64_t vl __attribute__((vector_size(KILN_LANES * 8)));

static inline vf kiln_splat(float x) { return (vf){} + x; }
static inline vi kiln_splati(int32_t x) { return (vi){} + x; }
/* With 16 lanes a vector of `int64_t` is 128 bytes, two registers: built from two 64-byte
   halves, so GCC keeps it in registers (a splat written as `(vl){} + x` went through the stack
   as four 32-byte stores and a 64-byte reload, a store-forwarding stall on every random draw). */
#if KILN_LANES == 16
typedef int64_t kiln_vl8 __attribute__((vector_size(64)));
static inline vl kiln_splatl(int64_t x) {
    const kiln_vl8 half = (kiln_vl8){} + x;
    return __builtin_shufflevector(half, half, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
#else
static inline vl kiln_splatl(int64_t x) { return (vl){} + x; }
#endif
/* Lane masks are all ones (true) or zero, as vector comparisons give them. */
static inline vi kiln_mask(int x) { return (vi){} - (x != 0); }
static inline vf kiln_select(vi m, vf a, vf b) { return (vf)((m & (vi)a) | (~m & (vi)b)); }
static inline vi kiln_selecti(vi m, vi a, vi b) { return (m & a) | (~m & b); }
static inline vl kiln_selectl(vi m, vl a, vl b) { vl w = __builtin_convertvector(m, vl); return (w & a) | (~w & b); }
#if KILN_LANES == 16
static inline vl kiln_lanes(void) {
    const kiln_vl8 low = {0, 1, 2, 3, 4, 5, 6, 7}, high = {8, 9, 10, 11, 12, 13, 14, 15};
    return __builtin_shufflevector(low, high, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
#else
static inline vl kiln_lanes(void) { vl v; for (int l = 0; l < KILN_LANES; l++) v[l] = l; return v; }
#endif

#if KILN_LANES == 16 && defined(__AVX512F__)
/* AVX-512 reads and writes partial vectors under a lane mask (masked-off lanes touch no
   memory) and strided ones by gather and scatter. */
#include <immintrin.h>
#define KILN_MASKED 1
static inline __mmask16 kiln_first_lanes(int64_t count) { return (__mmask16)((1u << count) - 1u); }
static inline __m512i kiln_strided(int64_t stride) { return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32((int)stride)); }
/* Lane offsets `15 · stride` fit a 32-bit gather index. */
static inline int kiln_gatherable(int64_t stride) { return stride >= -(INT64_C(1) << 26) && stride <= (INT64_C(1) << 26); }
#endif

/* Denormal operands read as zero and denormal results flush to zero while a kernel runs
   (x86's MXCSR DAZ and FTZ bits; the caller's mode is restored on return). */
#if defined(__SSE__)
#include <xmmintrin.h>
static inline unsigned kiln_flush_denormals(void) { unsigned saved = _mm_getcsr(); _mm_setcsr(saved | 0x8040u); return saved; }
static inline void kiln_restore_denormals(unsigned saved) { _mm_setcsr(saved); }
#else
static inline unsigned kiln_flush_denormals(void) { return 0; }
static inline void kiln_restore_denormals(unsigned saved) { (void)saved; }
#endif

/* The first `count` lanes from p[0], p[stride], ...; the others zero. */
static inline vf kiln_load(const float *p, int64_t stride, int64_t count) {
    vf v = {};
    if (stride == 1 && count == KILN_LANES) { memcpy(&v, p, sizeof v); return v; }
    if (stride == 2 && count == KILN_LANES) {
        vf low, high;
        memcpy(&low, p, sizeof low);
        memcpy(&high, p + KILN_LANES - 1, sizeof high);
        return __builtin_shufflevector(low, high, KILN_EVEN_LANES);
    }
#ifdef KILN_MASKED
    if (count <= 0) return v;
    if (count <= KILN_LANES) {
        if (stride == 1) return (vf)_mm512_maskz_loadu_ps(kiln_first_lanes(count), p);
        if (kiln_gatherable(stride))
            return (vf)_mm512_mask_i32gather_ps(_mm512_setzero_ps(), kiln_first_lanes(count), kiln_strided(stride), p, 4);
    }
#endif
    for (int64_t l = 0; l < count; l++) v[l] = p[l * stride];
    return v;
}
/* The same, lane by lane, for memory read back right after it is written (an accumulation
   in place): a masked store does not forward to the next masked load, scalar stores do. */
static inline vf kiln_load_each(const float *p, int64_t stride, int64_t count) {
    if (stride == 1 && count == KILN_LANES) return kiln_load(p, 1, count);
    vf v = {};
    for (int64_t l = 0; l < count; l++) v[l] = p[l * stride];
    return v;
}
static inline void kiln_store_each(float *p, int64_t stride, int64_t count, vf v) {
    if (stride == 1 && count == KILN_LANES) { memcpy(p, &v, sizeof v); return; }
    for (int64_t l = 0; l < count; l++) p[l * stride] = v[l];
}
static inline vi kiln_load_mask(const uint8_t *p, int64_t stride, int64_t count) {
    vi v = {};
    for (int64_t l = 0; l < count; l++) v[l] = -(int32_t)(p[l * stride] != 0);
    return v;
}
static inline vi kiln_load_i32(const int32_t *p, int64_t stride, int64_t count) {
    vi v = {};
    if (stride == 1 && count == KILN_LANES) { memcpy(&v, p, sizeof v); return v; }
    for (int64_t l = 0; l < count; l++) v[l] = p[l * stride];
    return v;
}
static inline vl kiln_load_i64(const int64_t *p, int64_t stride, int64_t count) {
    vl v = {};
    if (stride == 1 && count == KILN_LANES) { memcpy(&v, p, sizeof v); return v; }
    for (int64_t l = 0; l < count; l++) v[l] = p[l * stride];
    return v;
}
static inline void kiln_store(float *p, int64_t stride, int64_t count, vf v) {
    if (stride == 1 && count == KILN_LANES) { memcpy(p, &v, sizeof v); return; }
#ifdef KILN_MASKED
    if (count <= 0) return;
    if (count <= KILN_LANES && stride == 1) { _mm512_mask_storeu_ps(p, kiln_first_lanes(count), (__m512)v); return; }
#endif
    for (int64_t l = 0; l < count; l++) p[l * stride] = v[l];
}
static inline void kiln_store_mask(uint8_t *p, int64_t stride, int64_t count, vi m) {
    for (int64_t l = 0; l < count; l++) p[l * stride] = (uint8_t)(m[l] != 0);
}
static inline void kiln_store_i32(int32_t *p, int64_t stride, int64_t count, vi v) {
    if (stride == 1 && count == KILN_LANES) { memcpy(p, &v, sizeof v); return; }
    for (int64_t l = 0; l < count; l++) p[l * stride] = v[l];
}
static inline void kiln_store_i64(int64_t *p, int64_t stride, int64_t count, vl v) {
    if (stride == 1 && count == KILN_LANES) { memcpy(p, &v, sizeof v); return; }
    for (int64_t l = 0; l < count; l++) p[l * stride] = v[l];
}

static inline vf kiln_maxv(vf a, vf b) {
    vi nan = (a != a) | (b != b);
    vf tie = kiln_select((vi)a < 0, b, a);
    return kiln_select(nan, a + b, kiln_select(a > b, a, kiln_select(b > a, b, tie)));
}
static inline vf kiln_minv(vf a, vf b) {
    vi nan = (a != a) | (b != b);
    vf tie = kiln_select((vi)a < 0, a, b);
    return kiln_select(nan, a + b, kiln_select(a < b, a, kiln_select(b < a, b, tie)));
}
static inline vi kiln_maxi(vi a, vi b) { return kiln_selecti(a > b, a, b); }
static inline vi kiln_mini(vi a, vi b) { return kiln_selecti(a < b, a, b); }
static inline vl kiln_maxl(vl a, vl b) { vl m = a > b; return (m & a) | (~m & b); }
static inline vl kiln_minl(vl a, vl b) { vl m = a < b; return (m & a) | (~m & b); }
/* Comparisons of `int64_t` vectors as `vi` masks: `kiln_lt_l(a, b)` is `a < b`, and so on.
   With 16 lanes they compare two 8-lane halves: GCC compares a 128-byte vector lane by lane
   in scalar code (W1's label checks and one-hots ran 3x slower). */
#if KILN_LANES == 16
typedef int32_t kiln_vi8 __attribute__((vector_size(32)));
#define KILN_COMPARE_L(name, op)                                                                        \
    static inline vi name(vl a, vl b) {                                                                 \
        const kiln_vl8 a0 = __builtin_shufflevector(a, a, 0, 1, 2, 3, 4, 5, 6, 7);                       \
        const kiln_vl8 a1 = __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15);                 \
        const kiln_vl8 b0 = __builtin_shufflevector(b, b, 0, 1, 2, 3, 4, 5, 6, 7);                       \
        const kiln_vl8 b1 = __builtin_shufflevector(b, b, 8, 9, 10, 11, 12, 13, 14, 15);                 \
        const kiln_vi8 low = __builtin_convertvector(a0 op b0, kiln_vi8);                               \
        const kiln_vi8 high = __builtin_convertvector(a1 op b1, kiln_vi8);                              \
        return __builtin_shufflevector(low, high, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); \
    }
#else
#define KILN_COMPARE_L(name, op) \
    static inline vi name(vl a, vl b) { return __builtin_convertvector(a op b, vi); }
#endif
KILN_COMPARE_L(kiln_lt_l, <)
KILN_COMPARE_L(kiln_le_l, <=)
KILN_COMPARE_L(kiln_gt_l, >)
KILN_COMPARE_L(kiln_ge_l, >=)
KILN_COMPARE_L(kiln_eq_l, ==)
KILN_COMPARE_L(kiln_ne_l, !=)
/* Reports the first of the first `count` lanes of `bad` set, with its index in `value`, at
   `first + lane * stride` under check number `check` (only the first error of a call is
   kept). Out of line and cold: a lane loop in the kernel itself made the compiler keep the
   16-lane `int64_t` vectors in memory on every iteration. */
__attribute__((noinline, cold)) static void kiln_report_lane(int64_t *status, const vi *bad, const vl *value,
                                                             int64_t count, int64_t first, int64_t stride, int64_t check) {
    for (int64_t lane = 0; lane < count; lane++) {
        if ((*bad)[lane]) {
            if (status[0] == 0) { status[0] = 1; status[1] = (*value)[lane]; status[2] = first + lane * stride; status[3] = check; }
            return;
        }
    }
}
/* Whether any of the first `count` lanes of the mask `bad` is set: one test of a register (a
   loop over the lanes of a 16-lane `int64_t` vector went through memory on every iteration). */
static inline int kiln_any_lane(vi bad, int64_t count) {
    const vi live = bad & kiln_lt_l(kiln_lanes(), kiln_splatl(count));
#ifdef KILN_MASKED
    __m512i x;
    memcpy(&x, &live, sizeof x);
    return _mm512_test_epi32_mask(x, x) != 0;
#else
    uint64_t words[KILN_LANES / 2], any = 0;
    memcpy(words, &live, sizeof words);
    for (int w = 0; w < KILN_LANES / 2; w++) any |= words[w];
    return any != 0;
#endif
}
static inline vf kiln_sqrtv(vf x) { vf r; for (int l = 0; l < KILN_LANES; l++) r[l] = sqrtf(x[l]); return r; }
static inline vf kiln_absv(vf x) { return (vf)((vi)x & 0x7fffffff); }

/* The constants of codegen/math.rs. */
#define KILN_LN2_HI 0.693359375f
#define KILN_LN2_LO -2.12194440e-4f
#define KILN_ROUNDER 12582912.0f
#define KILN_ROUNDER_BITS 0x4b400000

static inline vf kiln_exp_core(vf x) {
    vf t = x * 1.44269504f + KILN_ROUNDER;
    vf n = t - KILN_ROUNDER;
    vf r = n * -KILN_LN2_HI + x;
    r = n * 2.12194440e-4f + r;
    vf p = kiln_splat(1.9875691e-4f);
    p = p * r + 1.3981999e-3f;
    p = p * r + 8.333452e-3f;
    p = p * r + 4.1665796e-2f;
    p = p * r + 1.6666665e-1f;
    p = p * r + 5e-1f;
    vf z = r * r;
    vf y = p * z + r;
    y = y + 1.0f;
    vi ni = (vi)t - KILN_ROUNDER_BITS;
    vi n1 = ni >> 1;
    vi n2 = ni - n1;
    vf s1 = (vf)((n1 + 127) << 23);
    vf s2 = (vf)((n2 + 127) << 23);
    y = y * s1;
    return y * s2;
}
static inline vf kiln_exp(vf x) {
    x = kiln_select(x < -104.0f, kiln_splat(-104.0f), x);
    x = kiln_select(89.0f < x, kiln_splat(89.0f), x);
    return kiln_exp_core(x);
}
static inline vf kiln_log(vf x) {
    vi tiny = x < 1.17549435e-38f;
    vf xs = kiln_select(tiny, x * 8388608.0f, x);
    vi bias = kiln_selecti(tiny, kiln_splati(127 + 23), kiln_splati(127));
    vi bits = (vi)xs + (0x3f800000 - 0x3f3504f3);
    vi k = (bits >> 23) - bias;
    vf kf = __builtin_convertvector(k, vf);
    vf m = (vf)((bits & 0x007fffff) + 0x3f3504f3);
    vf f = m - 1.0f;
    vf z = f * f;
    vf p = kiln_splat(7.0376836e-2f);
    p = p * f + -1.1514611e-1f;
    p = p * f + 1.1676999e-1f;
    p = p * f + -1.2420141e-1f;
    p = p * f + 1.4249323e-1f;
    p = p * f + -1.6668058e-1f;
    p = p * f + 2.0000715e-1f;
    p = p * f + -2.4999994e-1f;
    p = p * f + 3.333333e-1f;
    vf fz = f * z;
    vf y = fz * p;
    y = kf * KILN_LN2_LO + y;
    y = z * -0.5f + y;
    vf r = f + y;
    r = kf * KILN_LN2_HI + r;
    r = kiln_select(x == 0.0f, kiln_splat(-INFINITY), r);
    r = kiln_select(x < 0.0f, kiln_splat(NAN), r);
    return kiln_select(~(x < INFINITY), x, r);
}
static inline vf kiln_sin_cos(vf x, int cos) {
    vf ax = kiln_absv(x);
    ax = kiln_select(ax > 4194304.0f, ax * 0.0f, ax);
    vf t = ax * 0.636619772f + KILN_ROUNDER;
    vf q = t - KILN_ROUNDER;
    vf r = q * -1.57079637f + ax;
    r = q * 4.37113883e-8f + r;
    r = q * 1.71512451e-15f + r;
    vf z = r * r;
    vf s = kiln_splat(-1.9515296e-4f);
    s = s * z + 8.332161e-3f;
    s = s * z + -1.6666655e-1f;
    vf rz = r * z;
    vf sine = rz * s + r;
    vf c = kiln_splat(2.4433157e-5f);
    c = c * z + -1.3887316e-3f;
    c = c * z + 4.1666646e-2f;
    vf zz = z * z;
    c = zz * c;
    c = z * -0.5f + c;
    vf cosine = c + 1.0f;
    vi j = (vi)t + (cos ? 1 : 0);
    vf value = kiln_select((j & 1) != 0, cosine, sine);
    vi sign = (j & 2) << 30;
    if (!cos) sign ^= (vi)x & (int32_t)0x80000000;
    return (vf)((vi)value ^ sign);
}
static inline vf kiln_sin(vf x) { return kiln_sin_cos(x, 0); }
static inline vf kiln_cos(vf x) { return kiln_sin_cos(x, 1); }
static inline vf kiln_tanh(vf x) {
    vf ax = kiln_absv(x);
    vf z = ax * ax;
    vf t = kiln_splat(-5.7049887e-3f);
    t = t * z + 2.063909e-2f;
    t = t * z + -5.3739716e-2f;
    t = t * z + 1.3331442e-1f;
    t = t * z + -3.333328e-1f;
    vf az = ax * z;
    vf small = az * t + ax;
    vf capped = kiln_select(10.0f < ax, kiln_splat(10.0f), ax);
    vf e = kiln_exp_core(capped + capped);
    vf large = 1.0f - 2.0f / (e + 1.0f);
    vf magnitude = kiln_select(ax < 0.625f, small, large);
    return (vf)((vi)magnitude | ((vi)x & (int32_t)0x80000000));
}
/* One element through the vector form (so scalar and vector results are the same bits). */
static inline float kiln_expf1(float x) { return kiln_exp(kiln_splat(x))[0]; }
static inline float kiln_logf1(float x) { return kiln_log(kiln_splat(x))[0]; }
static inline float kiln_sinf1(float x) { return kiln_sin(kiln_splat(x))[0]; }
static inline float kiln_cosf1(float x) { return kiln_cos(kiln_splat(x))[0]; }
static inline float kiln_tanhf1(float x) { return kiln_tanh(kiln_splat(x))[0]; }

/* kiln's counter-based random numbers (random.rs), lane by lane. */
static inline vu kiln_mix32(vu x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}
static inline uint32_t kiln_mix32_1(uint32_t x) { return kiln_mix32((vu){} + x)[0]; }
static inline uint32_t kiln_draw_key(uint64_t seed, uint64_t counter) {
    uint32_t key = 0x9e3779b9u;
    key = kiln_mix32_1(key ^ (uint32_t)seed);
    key = kiln_mix32_1(key ^ (uint32_t)(seed >> 32));
    key = kiln_mix32_1(key ^ (uint32_t)counter);
    return kiln_mix32_1(key ^ (uint32_t)(counter >> 32));
}
static inline vf kiln_uniform(uint32_t key, vl index) {
    vu low = __builtin_convertvector(index, vu);
    vu high = __builtin_convertvector((vl)((uint64_t __attribute__((vector_size(KILN_LANES * 8))))index >> 32), vu);
    vu bits = kiln_mix32(kiln_mix32(low ^ key) + high);
    return __builtin_convertvector((vi)(bits >> 8), vf) * (1.0f / 16777216.0f);
}
static inline vf kiln_normal(uint32_t key, vl index) {
    vf u1 = kiln_uniform(key, index * 2);
    vf u2 = kiln_uniform(key, index * 2 + 1);
    vf radius = kiln_sqrtv(kiln_log(1.0f - u1) * -2.0f);
    return radius * kiln_cos(u2 * 6.28318548f);
}

/* The tuned GEMM of the process that loaded this library (codegen/gemm.rs), set before any call. */
typedef int64_t (*kiln_gemm_fn)(const int64_t *layout, const float *a, const float *b, float *out, int64_t start, int64_t end);
static kiln_gemm_fn kiln_gemm;
KILN_API void kiln_set_gemm(kiln_gemm_fn gemm) { kiln_gemm = gemm; }
