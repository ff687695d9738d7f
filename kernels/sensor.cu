// Fused sensor: mean photo-electrons to DN in one pass, with counter-based random numbers.
// Reference: isp/sensor/fused.py (noisy_electrons, then isp.sensor.capture.digitise), which
// documents the algorithm; this file is its schedule.
//
// One thread per output pixel: fixed gain (PRNU, mismatch, dead photodiodes), photon shot noise,
// dark current, full-well clipping, DSNU and row offsets, read noise (Gaussian or Tukey-lambda;
// both conversion gains in a merged DCG frame), the ADC and digital gain. Every random number is
// Philox4x32-10 of the counter (pixel index low, pixel index high, draw number, stream) under the
// key (seed low, seed high); the pixel index counts in the full read-out, so a window draws what
// the same pixels draw in the whole frame, and each noise source has its own stream. Row noise
// uses the counter (read-out row, 0, 0, row stream): every thread of a row computes the same
// offset without communicating.
//
// Products and sums are rounded separately (no FMA contraction), so the NumPy reference computes
// the same float32 bits; only logf/expf/log1pf/cosf may differ from NumPy's by an ulp.
//
// Hot photodiodes are rare (a few per million): sensor_capture computes every pixel without their
// extra dark charge, and sensor_capture_hot, launched after it, recomputes the hot pixels (the same
// draws, plus the hot charge) and overwrites them. No per-pixel hot map is read.

#ifndef __CUDACC__
// The CPU emulation (tests/kernel_emulation.py) compiles this file as C++, where these are plain
// IEEE operations; on the GPU they stop the compiler from fusing a product into a sum.
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
#endif

// Streams: FNV-1a of the noise source's name (isp.rng.stream_id).
#define STREAM_SHOT 0xAC47E6F5u
#define STREAM_DARK 0xDE776945u
#define STREAM_HOT 0xFEC3A7D4u
#define STREAM_READ 0xCEDFA3C5u
#define STREAM_READ_LCG 0x6E8E7E68u
#define STREAM_ROW 0x440E1D7Bu

// flags: which parts of the model are on (isp/sensor/fused.py, FLAG_*).
#define FLAG_SHOT 1
#define FLAG_DARK 2
#define FLAG_READ 4
#define FLAG_TUKEY 8
#define FLAG_ROW 16
#define FLAG_DCG 32
#define FLAG_GAIN 64
#define FLAG_OFFSET 128
#define FLAG_DIGITAL 256

// Below this mean, Poisson by inversion; from it, PTRS (as NumPy's generator).
#define POISSON_INVERSION_BELOW 10.0f
// PTRS accepts about nine proposals in ten; 16 draws hold 32 proposals, so the cap is never
// reached for a finite mean (it bounds the loop for NaN).
#define PTRS_MAX_DRAWS 16u

struct Bits {
    unsigned int x, y, z, w;
};

struct Counter {
    unsigned int lo, hi;  // the pixel's index in the read-out (or the row, 0 for row noise)
    unsigned int key0, key1;
};

__device__ __forceinline__ Bits philox4x32_10(const Counter& c, unsigned int draw, unsigned int stream)
{
    unsigned int c0 = c.lo, c1 = c.hi, c2 = draw, c3 = stream, k0 = c.key0, k1 = c.key1;
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        const unsigned long long p0 = (unsigned long long)0xD2511F53u * c0;
        const unsigned long long p1 = (unsigned long long)0xCD9E8D57u * c2;
        const unsigned int n0 = (unsigned int)(p1 >> 32) ^ c1 ^ k0;
        const unsigned int n2 = (unsigned int)(p0 >> 32) ^ c3 ^ k1;
        c1 = (unsigned int)p1;
        c3 = (unsigned int)p0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    Bits b = {c0, c1, c2, c3};
    return b;
}

// Uniform on (0, 1) from the top 23 bits: (m + 0.5) / 2^23 is exact in float32, and so is 1 - u.
__device__ __forceinline__ float uniform_open(unsigned int bits)
{
    return ((float)(bits >> 9) + 0.5f) * 0x1p-23f;
}

// Box-Muller, first of the pair.
__device__ __forceinline__ float standard_normal(unsigned int b0, unsigned int b1)
{
    const float radius = sqrtf(-2.0f * logf(uniform_open(b0)));
    return __fmul_rn(radius, cosf(__fmul_rn(6.2831855f, uniform_open(b1))));
}

// Inversion by sequential search; stops when the next probability no longer changes the float32
// sum (the tail beyond the sum's resolution).
__device__ __forceinline__ float poisson_inversion(float lam, float u)
{
    float p = expf(-lam);
    float cdf = p;
    float k = 0.0f;
    while (u > cdf) {
        k += 1.0f;
        p = __fmul_rn(p, lam) / k;
        const float next = __fadd_rn(cdf, p);
        if (next == cdf) break;
        cdf = next;
    }
    return k;
}

// log P(k; lam) for the PTRS acceptance test, accurate in float32 for large means: Loader's
// saddle-point form -bd0(k, lam) - log(2 pi k) / 2 - stirling(k), with bd0 through log1p.
__device__ __forceinline__ float log_poisson_pmf(float k, float lam, float loglam)
{
    if (k < 10.0f) {
        float factorial = 1.0f;
        for (float j = 2.0f; j <= k; j += 1.0f) factorial = __fmul_rn(factorial, j);
        return __fsub_rn(__fsub_rn(__fmul_rn(k, loglam), lam), logf(factorial));
    }
    const float d = __fsub_rn(k, lam);
    const float bd0 = __fsub_rn(__fmul_rn(k, log1pf(d / lam)), d);
    const float s = 1.0f / k;
    const float stirling = __fmul_rn(__fsub_rn(0.083333336f, __fmul_rn(__fmul_rn(s, s), 0.0027777778f)), s);
    return __fsub_rn(__fsub_rn(-bd0, __fmul_rn(0.5f, logf(__fmul_rn(6.2831855f, k)))), stirling);
}

// Hormann's PTRS (1993) as in NumPy's random_poisson_ptrs; two proposals per Philox draw.
__device__ float poisson_ptrs(float lam, const Counter& c, unsigned int stream)
{
    const float slam = sqrtf(lam);
    const float loglam = logf(lam);
    const float b = __fadd_rn(0.931f, __fmul_rn(2.53f, slam));
    const float a = __fadd_rn(-0.059f, __fmul_rn(0.02483f, b));
    const float invalpha = 1.1239f + 1.1328f / (b - 3.4f);
    const float vr = 0.9277f - 3.6224f / (b - 2.0f);
    const float log_invalpha = logf(invalpha);
    const float two_a = __fmul_rn(2.0f, a);
    float k = 0.0f;
    for (unsigned int draw = 0; draw < PTRS_MAX_DRAWS; ++draw) {
        const Bits r = philox4x32_10(c, draw, stream);
        for (int half = 0; half < 2; ++half) {
            const float U = uniform_open(half ? r.z : r.x) - 0.5f;
            const float V = uniform_open(half ? r.w : r.y);
            const float us = 0.5f - fabsf(U);
            k = floorf(__fadd_rn(__fadd_rn(__fmul_rn(__fadd_rn(two_a / us, b), U), lam), 0.43f));
            if (us >= 0.07f && V <= vr) return k;
            if (k < 0.0f || (us < 0.013f && V > us)) continue;
            const float lhs = __fsub_rn(__fadd_rn(logf(V), log_invalpha), logf(__fadd_rn(a / __fmul_rn(us, us), b)));
            if (lhs <= log_poisson_pmf(k, lam, loglam)) return k;
        }
    }
    return k;
}

__device__ __forceinline__ float poisson(float lam, const Counter& c, unsigned int stream)
{
    if (lam < POISSON_INVERSION_BELOW) return poisson_inversion(lam, uniform_open(philox4x32_10(c, 0u, stream).x));
    return poisson_ptrs(lam, c, stream);
}

// Read noise of scale `scale`: a standard normal, or the Tukey-lambda quantile u^l - (1-u)^l
// (log(u) - log(1-u) at l = 0) with 1/l folded into the scale.
__device__ __forceinline__ float read_noise(const Counter& c, unsigned int stream, int flags, float tukey_lambda, float scale)
{
    const Bits r = philox4x32_10(c, 0u, stream);
    float q;
    if (flags & FLAG_TUKEY) {
        const float u = uniform_open(r.x);
        const float v = 1.0f - u;
        if (tukey_lambda == 0.0f) {
            q = __fsub_rn(logf(u), logf(v));
        } else {
            q = __fsub_rn(expf(__fmul_rn(tukey_lambda, logf(u))), expf(__fmul_rn(tukey_lambda, logf(v))));
        }
    } else {
        q = standard_normal(r.x, r.y);
    }
    return __fmul_rn(q, scale);
}

struct Model {
    int height, width, origin_row, origin_col, readout_width;
    unsigned int key0, key1;
    int flags;
    float dark_e, full_well_e, row_sigma_e, read_scale, read_lcg_scale, tukey_lambda, hcg_well_e, merge_below_e;
    float adc_gain_dn_e, black_dn, code_max_dn, digital_gain, white_dn;
};

// The DN of output pixel (y, x), `hot_e` the mean extra dark charge of its hot photodiodes (0: none).
__device__ unsigned short pixel_dn(const Model& m, int y, int x, float mean_e, float gain, float offset_e, float hot_e)
{
    const int flags = m.flags;
    const long long index = (long long)(m.origin_row + y) * m.readout_width + (m.origin_col + x);
    const Counter pixel = {(unsigned int)index, (unsigned int)((unsigned long long)index >> 32), m.key0, m.key1};

    float e = mean_e;
    if (flags & FLAG_GAIN) e = __fmul_rn(e, gain);
    if (flags & FLAG_SHOT) e = poisson(e, pixel, STREAM_SHOT);
    if (flags & FLAG_DARK) e = __fadd_rn(e, poisson(m.dark_e, pixel, STREAM_DARK));
    if (hot_e > 0.0f) e = __fadd_rn(e, poisson(hot_e, pixel, STREAM_HOT));
    e = fminf(e, m.full_well_e);

    float offset = 0.0f;
    if (flags & FLAG_OFFSET) offset = offset_e;
    if (flags & FLAG_ROW) {
        const Counter row = {(unsigned int)(m.origin_row + y), 0u, m.key0, m.key1};
        const Bits r = philox4x32_10(row, 0u, STREAM_ROW);
        offset = __fadd_rn(offset, __fmul_rn(standard_normal(r.x, r.y), m.row_sigma_e));
    }
    if (flags & FLAG_DCG) {
        float high = fminf(e, m.hcg_well_e);
        float low = e;
        if (flags & FLAG_READ) {
            high = __fadd_rn(high, read_noise(pixel, STREAM_READ, flags, m.tukey_lambda, m.read_scale));
            low = __fadd_rn(low, read_noise(pixel, STREAM_READ_LCG, flags, m.tukey_lambda, m.read_lcg_scale));
        }
        e = high < m.merge_below_e ? high : low;
    } else if (flags & FLAG_READ) {
        e = __fadd_rn(e, read_noise(pixel, STREAM_READ, flags, m.tukey_lambda, m.read_scale));
    }
    if (flags & (FLAG_OFFSET | FLAG_ROW)) e = __fadd_rn(e, offset);

    float dn = rintf(__fadd_rn(__fmul_rn(e, m.adc_gain_dn_e), m.black_dn));
    dn = fminf(fmaxf(dn, 0.0f), m.code_max_dn);
    if (flags & FLAG_DIGITAL) dn = __fadd_rn(rintf(__fmul_rn(__fsub_rn(dn, m.black_dn), m.digital_gain)), m.black_dn);
    return (unsigned short)fminf(fmaxf(dn, 0.0f), m.white_dn);
}

// Both kernels take the same scalar parameters (kernel_launches in fused.py passes one tuple to
// each); this gathers them into a Model.
#define MODEL_INIT                                                                                               \
    {height, width, origin_row, origin_col, readout_width, key0, key1, flags, dark_e, full_well_e, row_sigma_e, \
     read_scale, read_lcg_scale, tukey_lambda, hcg_well_e, merge_below_e, adc_gain_dn_e, black_dn, code_max_dn, \
     digital_gain, white_dn}

// mean_e, gain, offset_e: height x width float32, row-major (gain and offset read only when their
// flag is set). out: height x width uint16. x runs along rows: a warp reads 128 contiguous bytes.
extern "C" __global__ void sensor_capture(const float* __restrict__ mean_e, const float* __restrict__ gain,
                                          const float* __restrict__ offset_e, unsigned short* __restrict__ out,
                                          int height, int width, int origin_row, int origin_col, int readout_width,
                                          unsigned int key0, unsigned int key1, int flags, float dark_e,
                                          float full_well_e, float row_sigma_e, float read_scale, float read_lcg_scale,
                                          float tukey_lambda, float hcg_well_e, float merge_below_e,
                                          float adc_gain_dn_e, float black_dn, float code_max_dn, float digital_gain,
                                          float white_dn)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    const Model m = MODEL_INIT;
    const long long i = (long long)y * width + x;
    const float g = (flags & FLAG_GAIN) ? gain[i] : 1.0f;
    const float o = (flags & FLAG_OFFSET) ? offset_e[i] : 0.0f;
    out[i] = pixel_dn(m, y, x, mean_e[i], g, o, 0.0f);
}

// One thread per hot pixel: hot_index (flat window indices), hot_count (hot photodiodes in it);
// hot_e_per_count: mean dark charge of one hot photodiode over the exposure. Run after sensor_capture.
extern "C" __global__ void sensor_capture_hot(const float* __restrict__ mean_e, const float* __restrict__ gain,
                                              const float* __restrict__ offset_e, unsigned short* __restrict__ out,
                                              const long long* __restrict__ hot_index,
                                              const float* __restrict__ hot_count, int hot_pixels,
                                              float hot_e_per_count, int height, int width, int origin_row,
                                              int origin_col, int readout_width, unsigned int key0, unsigned int key1,
                                              int flags, float dark_e, float full_well_e, float row_sigma_e,
                                              float read_scale, float read_lcg_scale, float tukey_lambda,
                                              float hcg_well_e, float merge_below_e, float adc_gain_dn_e,
                                              float black_dn, float code_max_dn, float digital_gain, float white_dn)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= hot_pixels) return;
    const Model m = MODEL_INIT;
    const long long i = hot_index[j];
    const int y = (int)(i / width);
    const int x = (int)(i - (long long)y * width);
    const float g = (flags & FLAG_GAIN) ? gain[i] : 1.0f;
    const float o = (flags & FLAG_OFFSET) ? offset_e[i] : 0.0f;
    out[i] = pixel_dn(m, y, x, mean_e[i], g, o, __fmul_rn(hot_count[j], hot_e_per_count));
}
