// The fast pipeline fused into one pass: a uint16 Bayer mosaic in, RGB8 out.
// Reference: the unfused stages black_level, white_balance, demosaic (malvar2004),
// color_correction, tone, vignette, oetf and quantize (isp/stages/*.py); isp/fusion.py derives
// every per-frame constant from those stages and launches this kernel.
//
// A block of 32 x 8 threads makes a 64 x 16 pixel tile, one thread per 2x2 Bayer quad. The
// block first loads its tile with a 2-pixel halo (68 x 20 samples, as 32-bit pairs: a warp reads
// 128 contiguous bytes of a row), applies black level and white balance to each sample once and
// keeps the result in shared memory; each thread then reads its quad's 6x6 window (the 5x5
// Malvar-He-Cutler filters of four pixels) from there. DRAM sees the 2 bytes of each sample
// once (the halos come from L2) and the 3 bytes of each output pixel. Borders are mirrored
// without repeating the edge pixel (index -1 -> 1), as the NumPy path's reflect pad and
// kernels/demosaic.cu do; that keeps the CFA phase, so a sample's site is its parity.
//
// The arithmetic rounds where the NumPy stages round, in their order: NVRTC would otherwise
// contract a * b + c into one FMA, and the result would drift from the unfused image by an LSB
// here and there. The colour matrices are FMA chains because NumPy's matmul (OpenBLAS sgemm)
// computes them so. After the colour matrix, the tone curve (per channel), the sRGB curve and
// the 8-bit rounding are each monotone: the code of a value is the number of precomputed
// thresholds it reaches, exact by construction and with no pow per pixel. A table of 4096
// buckets (uniform in the square root of the value, as the tone table is indexed) gives a code
// to start from, and `fixups` comparisons with the next thresholds (one, as a rule) finish it.
//
// Launch: block (BLOCK_X, BLOCK_Y) = (32, 8), grid (ceil(width / 64), ceil(height / 16)).

#define BLOCK_X 32
#define BLOCK_Y 8
#define TILE_W (2 * BLOCK_X + 4)
#define TILE_H (2 * BLOCK_Y + 4)

// Layout of `tables` (float32), filled by isp/fusion.py.
#define C_OFFSET 0         // 4: -black level per tile site (site = 2 * row + col in the 2x2 tile)
#define C_SCALE 4          // 4: 1 / (white - black) per site
#define C_GAIN 8           // 4: white-balance gain per site
#define C_WHITE 12         // white level after black_level (1.0), where white_balance clips
#define C_CCM 13           // 9: camera RGB -> linear sRGB, row-major, saturation included
#define C_EXPOSURE 22      // tone: 2**ev
#define C_TONE_BLACK 23    // tone: input level b of the table's first entry
#define C_TONE_SCALE 24    // tone: 1 / (w - b)
#define C_TONE_LIFT 25     // tone, luminance mode: f(0), the black lift
#define C_LUMA 26          // 3: Rec. 709 luminance weights
#define C_VIG_STRENGTH 29  // vignette: strength
#define C_VIG_EXPONENT 30  // vignette: falloff / 2 (a power of r squared)
#define C_VIG_CY 31        // vignette: (full height - 1) / 2
#define C_VIG_CX 32        // vignette: (full width - 1) / 2
#define C_VIG_NORM 33      // vignette: squared half-diagonal of the full frame
#define C_VIG_TOP 34       // vignette: the frame's top row in the full frame
#define C_VIG_LEFT 35      // vignette: the frame's left column in the full frame
#define C_P3 36            // 9: linear sRGB -> linear Display P3, row-major
#define C_CODE_BASE 45     // codes: the value where bucket 0 starts
#define C_CODE_SCALE 46    // codes: 1 / the span of the buckets
#define C_CODE_FIXUPS 47   // codes: comparisons after a bucket's code (most thresholds in three neighbouring buckets)
#define CODES 64           // 257: code k for values >= codes[k] (codes[0] = -inf, codes[256] = +inf)
#define BUCKETS 384        // 4096: per bucket, the code where the bucket before it starts
#define BUCKET_COUNT 4096
#define TONE_TABLE 4480    // 4096 tone-curve entries, only for the tone modes that need them
#define TONE_LAST 4095

// `flags`
#define F_CLIP_NEGATIVE 1
#define F_CLIP_HIGHLIGHTS 2
#define F_DEMOSAIC_CLIP 4
#define F_TONE_SHIFT 3     // 2 bits: 0 the codes take the colour matrix's output (tone folded in),
                           // 1 exposure and clip, 2 the table per channel, 3 the table on luminance
#define F_VIGNETTE 32
#define F_P3 64

#define TONE_FOLDED 0
#define TONE_CLIP 1
#define TONE_RGB 2
#define TONE_LUMINANCE 3

// Correctly rounded float32 operations that the compiler may not fuse. On the CPU (the kernel
// emulation in tests/) plain C++ float arithmetic already rounds each operation.
#ifdef __CUDACC_RTC__
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ float fma_rn(float a, float b, float c) { return __fmaf_rn(a, b, c); }
__device__ __forceinline__ float sqrt_rn(float a) { return __fsqrt_rn(a); }
#else
__device__ __forceinline__ float mul_rn(float a, float b) { return a * b; }
__device__ __forceinline__ float add_rn(float a, float b) { return a + b; }
__device__ __forceinline__ float sub_rn(float a, float b) { return a - b; }
__device__ __forceinline__ float div_rn(float a, float b) { return a / b; }
__device__ __forceinline__ float fma_rn(float a, float b, float c) { return std::fma(a, b, c); }
__device__ __forceinline__ float sqrt_rn(float a) { return std::sqrt(a); }
#endif

__device__ __forceinline__ float clip01(float v) { return min(max(v, 0.0f), 1.0f); }

__device__ __forceinline__ int mirror_index(int i, int n)
{
    if (i < 0) return -i;
    if (i >= n) return 2 * n - 2 - i;
    return i;
}

// Two neighbouring samples, the first at an even column (so 4-byte aligned).
__device__ __forceinline__ void load_pair(const unsigned short* p, unsigned int& first, unsigned int& second)
{
#ifdef __CUDACC_RTC__
    const unsigned int both = __ldg(reinterpret_cast<const unsigned int*>(p));
    first = both & 0xffffu;
    second = both >> 16;
#else
    first = p[0];
    second = p[1];
#endif
}

// Two neighbouring floats of the shared tile, the first at an even column (8-byte aligned).
__device__ __forceinline__ void load_float_pair(const float* p, float& first, float& second)
{
#ifdef __CUDACC_RTC__
    const float2 both = *reinterpret_cast<const float2*>(p);
    first = both.x;
    second = both.y;
#else
    first = p[0];
    second = p[1];
#endif
}

// Two pixels' RGB8 (6 bytes at an even address) as three 16-bit stores.
__device__ __forceinline__ void store_pixels(unsigned char* p, const unsigned int (&code)[6])
{
#ifdef __CUDACC_RTC__
    unsigned short* q = reinterpret_cast<unsigned short*>(p);
    q[0] = (unsigned short)(code[0] | (code[1] << 8));
    q[1] = (unsigned short)(code[2] | (code[3] << 8));
    q[2] = (unsigned short)(code[4] | (code[5] << 8));
#else
    for (int i = 0; i < 6; ++i) p[i] = (unsigned char)code[i];
#endif
}

// black_level then white_balance on one sample.
__device__ __forceinline__ float balance(unsigned int dn, float offset, float scale, float gain, float white, int flags)
{
    float v = mul_rn(add_rn((float)dn, offset), scale);
    if (flags & F_CLIP_NEGATIVE) v = max(v, 0.0f);
    v = mul_rn(v, gain);
    if (flags & F_CLIP_HIGHLIGHTS) v = min(v, white);
    return v;
}

// Malvar-He-Cutler 2004 filters at window position (R, C), taps added in row-major order as
// the NumPy path adds them (MALVAR2004 in isp/stages/demosaic.py).
#define TAP(acc, dy, dx, weight) acc = add_rn(acc, mul_rn(w[R + (dy)][C + (dx)], weight))

template <int R, int C>
__device__ __forceinline__ float g_at_rb(const float (&w)[6][6])
{
    float a = mul_rn(w[R - 2][C], -0.125f);
    TAP(a, -1, 0, 0.25f);
    TAP(a, 0, -2, -0.125f);
    TAP(a, 0, -1, 0.25f);
    TAP(a, 0, 0, 0.5f);
    TAP(a, 0, 1, 0.25f);
    TAP(a, 0, 2, -0.125f);
    TAP(a, 1, 0, 0.25f);
    TAP(a, 2, 0, -0.125f);
    return a;
}

template <int R, int C>
__device__ __forceinline__ float same_row(const float (&w)[6][6])
{
    float a = mul_rn(w[R - 2][C], 0.0625f);
    TAP(a, -1, -1, -0.125f);
    TAP(a, -1, 1, -0.125f);
    TAP(a, 0, -2, -0.125f);
    TAP(a, 0, -1, 0.5f);
    TAP(a, 0, 0, 0.625f);
    TAP(a, 0, 1, 0.5f);
    TAP(a, 0, 2, -0.125f);
    TAP(a, 1, -1, -0.125f);
    TAP(a, 1, 1, -0.125f);
    TAP(a, 2, 0, 0.0625f);
    return a;
}

template <int R, int C>
__device__ __forceinline__ float same_col(const float (&w)[6][6])
{
    float a = mul_rn(w[R - 2][C], -0.125f);
    TAP(a, -1, -1, -0.125f);
    TAP(a, -1, 0, 0.5f);
    TAP(a, -1, 1, -0.125f);
    TAP(a, 0, -2, 0.0625f);
    TAP(a, 0, 0, 0.625f);
    TAP(a, 0, 2, 0.0625f);
    TAP(a, 1, -1, -0.125f);
    TAP(a, 1, 0, 0.5f);
    TAP(a, 1, 1, -0.125f);
    TAP(a, 2, 0, -0.125f);
    return a;
}

template <int R, int C>
__device__ __forceinline__ float opposite(const float (&w)[6][6])
{
    float a = mul_rn(w[R - 2][C], -0.1875f);
    TAP(a, -1, -1, 0.25f);
    TAP(a, -1, 1, 0.25f);
    TAP(a, 0, -2, -0.1875f);
    TAP(a, 0, 0, 0.75f);
    TAP(a, 0, 2, -0.1875f);
    TAP(a, 1, -1, 0.25f);
    TAP(a, 1, 1, 0.25f);
    TAP(a, 2, 0, -0.1875f);
    return a;
}

#undef TAP

// The quad's four pixels as (X, G, Y) triples, X being the colour of the non-green site in the
// quad's first row and Y the other one. Positions: 0 (0,0), 1 (0,1), 2 (1,0), 3 (1,1).
template <bool GREEN_ON_DIAGONAL>
__device__ __forceinline__ void demosaic_quad(const float (&w)[6][6], float (&xgy)[4][3])
{
    if (!GREEN_ON_DIAGONAL) {  // RGGB, BGGR: X at (0,0), Y at (1,1)
        xgy[0][0] = w[2][2];
        xgy[0][1] = g_at_rb<2, 2>(w);
        xgy[0][2] = opposite<2, 2>(w);
        xgy[1][0] = same_row<2, 3>(w);
        xgy[1][1] = w[2][3];
        xgy[1][2] = same_col<2, 3>(w);
        xgy[2][0] = same_col<3, 2>(w);
        xgy[2][1] = w[3][2];
        xgy[2][2] = same_row<3, 2>(w);
        xgy[3][0] = opposite<3, 3>(w);
        xgy[3][1] = g_at_rb<3, 3>(w);
        xgy[3][2] = w[3][3];
    } else {  // GRBG, GBRG: X at (0,1), Y at (1,0)
        xgy[0][0] = same_row<2, 2>(w);
        xgy[0][1] = w[2][2];
        xgy[0][2] = same_col<2, 2>(w);
        xgy[1][0] = w[2][3];
        xgy[1][1] = g_at_rb<2, 3>(w);
        xgy[1][2] = opposite<2, 3>(w);
        xgy[2][0] = opposite<3, 2>(w);
        xgy[2][1] = g_at_rb<3, 2>(w);
        xgy[2][2] = w[3][2];
        xgy[3][0] = same_col<3, 3>(w);
        xgy[3][1] = w[3][3];
        xgy[3][2] = same_row<3, 3>(w);
    }
}

// matrix @ (a, b, c) as NumPy's matmul rounds it: fma(c, m2, fma(b, m1, a * m0)) per row.
__device__ __forceinline__ void apply_matrix(const float* m, float& a, float& b, float& c)
{
    const float p = fma_rn(c, m[2], fma_rn(b, m[1], mul_rn(a, m[0])));
    const float q = fma_rn(c, m[5], fma_rn(b, m[4], mul_rn(a, m[3])));
    const float r = fma_rn(c, m[8], fma_rn(b, m[7], mul_rn(a, m[6])));
    a = p;
    b = q;
    c = r;
}

// The tone stage's table lookup: indexed by the square root of the normalised input, linear
// interpolation between entries.
__device__ __forceinline__ float tone_lookup(float v, const float* __restrict__ tables)
{
    const float t = clip01(mul_rn(sub_rn(v, tables[C_TONE_BLACK]), tables[C_TONE_SCALE]));
    const float u = mul_rn(sqrt_rn(t), (float)TONE_LAST);
    const int i = min(max((int)u, 0), TONE_LAST - 1);
    const float frac = sub_rn(u, (float)i);
    const float lo = __ldg(tables + TONE_TABLE + i);
    return add_rn(lo, mul_rn(frac, sub_rn(__ldg(tables + TONE_TABLE + i + 1), lo)));
}

// The 8-bit code of a value: how many of the thresholds codes[1..255] it reaches. Its bucket is
// found with the hardware's approximate reciprocal square root, so it may be one off the exact
// one; each bucket's entry is therefore the code where the bucket before it starts (a lower
// bound either way), and `fixups` comparisons with the next thresholds climb to the code.
__device__ __forceinline__ unsigned int encode(float v, const float* __restrict__ tables, float base, float scale, int fixups)
{
    const float t = clip01((v - base) * scale);
    const float root = t * rsqrtf(max(t, 1e-30f));  // sqrt(t), 0 at 0
    const int bucket = min((int)(root * (float)BUCKET_COUNT), BUCKET_COUNT - 1);
    unsigned int k = (unsigned int)__ldg(tables + BUCKETS + bucket);
#pragma unroll 1
    for (int i = 0; i < fixups; ++i)
        if (v >= __ldg(tables + CODES + k + 1)) ++k;
    return k;
}

// Everything after the colour matrix for one pixel at (y, x): tone, vignette, Display P3, then
// the codes (which hold the sRGB curve and quantize, and the tone too in TONE_FOLDED).
__device__ __forceinline__ void finish_pixel(float r, float g, float b, int y, int x, int flags, const float* __restrict__ tables,
                                             float code_base, float code_scale, int fixups, unsigned int* code)
{
    const int tone_mode = (flags >> F_TONE_SHIFT) & 3;
    if (tone_mode != TONE_FOLDED) {
        const float exposure = tables[C_EXPOSURE];
        r = mul_rn(r, exposure);
        g = mul_rn(g, exposure);
        b = mul_rn(b, exposure);
        if (tone_mode == TONE_CLIP) {
            r = clip01(r);
            g = clip01(g);
            b = clip01(b);
        } else if (tone_mode == TONE_RGB) {
            r = tone_lookup(r, tables);
            g = tone_lookup(g, tables);
            b = tone_lookup(b, tables);
        } else {
            // luminance mode: scale RGB by f(Y)/Y about the black lift, then back into range
            const float luma = add_rn(add_rn(mul_rn(r, tables[C_LUMA]), mul_rn(g, tables[C_LUMA + 1])),
                                      mul_rn(b, tables[C_LUMA + 2]));
            const float lift = tables[C_TONE_LIFT];
            const float luma_pos = max(luma, 0.0f);
            const float ratio = div_rn(sub_rn(tone_lookup(luma_pos, tables), lift), max(luma_pos, 1e-8f));
            r = add_rn(mul_rn(r, ratio), lift);
            g = add_rn(mul_rn(g, ratio), lift);
            b = add_rn(mul_rn(b, ratio), lift);
            const float peak = max(max(max(r, g), b), 1.0f);
            r = clip01(div_rn(r, peak));
            g = clip01(div_rn(g, peak));
            b = clip01(div_rn(b, peak));
        }
        if (flags & F_VIGNETTE) {
            const float dy = sub_rn(add_rn(tables[C_VIG_TOP], (float)y), tables[C_VIG_CY]);
            const float dx = sub_rn(add_rn(tables[C_VIG_LEFT], (float)x), tables[C_VIG_CX]);
            const float r2 = div_rn(add_rn(mul_rn(dy, dy), mul_rn(dx, dx)), tables[C_VIG_NORM]);
            const float exponent = tables[C_VIG_EXPONENT];
            // NumPy's array power takes these exponents by a square root or a product, exactly
            float falloff;
            if (exponent == 1.0f) falloff = r2;
            else if (exponent == 0.5f) falloff = sqrt_rn(r2);
            else if (exponent == 2.0f) falloff = mul_rn(r2, r2);
            else falloff = powf(r2, exponent);
            const float gain = sub_rn(1.0f, mul_rn(tables[C_VIG_STRENGTH], falloff));
            r = mul_rn(r, gain);
            g = mul_rn(g, gain);
            b = mul_rn(b, gain);
        }
        if (flags & F_P3) apply_matrix(tables + C_P3, r, g, b);
    }
    code[0] = encode(r, tables, code_base, code_scale, fixups);
    code[1] = encode(g, tables, code_base, code_scale, fixups);
    code[2] = encode(b, tables, code_base, code_scale, fixups);
}

template <bool GREEN_ON_DIAGONAL>
__device__ __forceinline__ void process_quad(const float (&w)[6][6], unsigned char* __restrict__ out, int width, int y0, int x0,
                                             bool red_first, int flags, const float* __restrict__ tables)
{
    // read once, before the pixels' __ldg reads: the compiler does not merge loads across those asm statements
    float ccm[9];
#pragma unroll
    for (int i = 0; i < 9; ++i) ccm[i] = tables[C_CCM + i];
    const float code_base = tables[C_CODE_BASE];
    const float code_scale = tables[C_CODE_SCALE];
    const int fixups = (int)tables[C_CODE_FIXUPS];

    float xgy[4][3];
    demosaic_quad<GREEN_ON_DIAGONAL>(w, xgy);

    unsigned int code[2][6];
#pragma unroll
    for (int p = 0; p < 4; ++p) {
        float r = red_first ? xgy[p][0] : xgy[p][2];
        float g = xgy[p][1];
        float b = red_first ? xgy[p][2] : xgy[p][0];
        if (flags & F_DEMOSAIC_CLIP) {
            r = clip01(r);
            g = clip01(g);
            b = clip01(b);
        }
        apply_matrix(ccm, r, g, b);
        finish_pixel(r, g, b, y0 + (p >> 1), x0 + (p & 1), flags, tables, code_base, code_scale, fixups, &code[p >> 1][3 * (p & 1)]);
    }
    store_pixels(out + ((long long)y0 * width + x0) * 3, code[0]);
    store_pixels(out + ((long long)(y0 + 1) * width + x0) * 3, code[1]);
}

// mosaic: height x width uint16 DN, row-major, 4-byte aligned; height and width even, >= 4.
// out: height x width x 3 uint8 (RGB interleaved).
// red_row, red_col: position of the red sample in the 2x2 Bayer tile.
// flags: F_* bits above. tables: float32, the layout above.
extern "C" __global__ void fast_pipeline(const unsigned short* __restrict__ mosaic, unsigned char* __restrict__ out,
                                         int height, int width, int red_row, int red_col, int flags,
                                         const float* __restrict__ tables)
{
    alignas(8) __shared__ float tile[TILE_H][TILE_W];  // balanced samples, rows tile_top.., columns tile_left..
    const int tile_top = 2 * BLOCK_Y * (int)blockIdx.y - 2;
    const int tile_left = 2 * BLOCK_X * (int)blockIdx.x - 2;
    {
        float offset[4], scale[4], gain[4];
#pragma unroll
        for (int s = 0; s < 4; ++s) {
            offset[s] = tables[C_OFFSET + s];
            scale[s] = tables[C_SCALE + s];
            gain[s] = tables[C_GAIN + s];
        }
        const float white = tables[C_WHITE];
        // tile_top and tile_left are even, and mirroring keeps parity: a sample's site is (r & 1, c & 1)
        for (int i = (int)(threadIdx.y * BLOCK_X + threadIdx.x); i < TILE_H * TILE_W / 2; i += BLOCK_X * BLOCK_Y) {
            const int r = i / (TILE_W / 2);
            const int c = 2 * (i % (TILE_W / 2));
            const int y = tile_top + r;
            const int x = tile_left + c;
            if (y > height + 1 || x > width + 1) continue;  // past every quad's window (a block at the edge)
            const unsigned short* row = mosaic + (long long)mirror_index(y, height) * width;
            unsigned int first, second;
            if (x >= 0 && x + 1 < width) {
                load_pair(row + x, first, second);
            } else {
                first = __ldg(row + mirror_index(x, width));
                second = __ldg(row + mirror_index(x + 1, width));
            }
            // selects rather than a runtime index, which would put the site arrays in local memory
            const bool odd_row = r & 1;
            tile[r][c] = balance(first, odd_row ? offset[2] : offset[0], odd_row ? scale[2] : scale[0],
                                 odd_row ? gain[2] : gain[0], white, flags);
            tile[r][c + 1] = balance(second, odd_row ? offset[3] : offset[1], odd_row ? scale[3] : scale[1],
                                     odd_row ? gain[3] : gain[1], white, flags);
        }
    }
    __syncthreads();

    const int x0 = 2 * (int)(blockIdx.x * BLOCK_X + threadIdx.x);
    const int y0 = 2 * (int)(blockIdx.y * BLOCK_Y + threadIdx.y);
    if (x0 >= width || y0 >= height) return;
    float w[6][6];  // rows y0-2..y0+3, columns x0-2..x0+3
#pragma unroll
    for (int r = 0; r < 6; ++r) {
#pragma unroll
        for (int c = 0; c < 6; c += 2) load_float_pair(&tile[2 * threadIdx.y + r][2 * threadIdx.x + c], w[r][c], w[r][c + 1]);
    }
    const bool red_first = red_row == 0;  // the first row's non-green site is red, not blue
    if (red_row == red_col)
        process_quad<false>(w, out, width, y0, x0, red_first, flags, tables);
    else
        process_quad<true>(w, out, width, y0, x0, red_first, flags, tables);
}
