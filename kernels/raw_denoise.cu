// Raw-domain denoisers as shared-memory stencils: one level of the a trous wavelet shrinkage,
// non-local means and the bilateral filter.
// Reference: isp/stages/raw_denoise.py (the array-module path); each kernel repeats its order of
// operations, so the two agree to float32 rounding (FMA contraction and expf's last bit on the
// GPU are the only differences left; the CPU emulation matches NumPy bit for bit but for expf).
//
// Launches: blocks of 32 x 8 threads, each block one 32 x 32 output tile (a thread computes 4
// rows of one column). The tile and its halo are read from global memory once, into shared
// memory, and every tap is read from there.
//
// Site planes: the wavelet and the bilateral filter work on one CFA tile site's plane (the
// pixels of one colour filter and, in Quad Bayer, one position in the quad), read and written
// in place in the mosaic: pixel (row, col) of site (sy, sx) is mosaic[(row*th + sy)*W + col*tw + sx].
// Their grids put the site in blockIdx.x (site + sites * tile_col), so the blocks of all sites
// of one mosaic region run together and share its cache lines in L2.
//
// Borders: planes are mirrored without repeating the edge (d c b | a b c d), as often as the
// halo needs (numpy.pad's "reflect"). The filters are symmetric, so filtering the mirrored
// extension gives the mirrored filtered values: a halo pixel of an intermediate (a smoothed
// plane, a detail band) equals the pixel it mirrors, as in the NumPy path.

#define TILE 32
#define BLOCK_X 32
#define BLOCK_Y 8
#define THREADS (BLOCK_X * BLOCK_Y)
#define ROWS_PER_THREAD (TILE / BLOCK_Y)

// Products and sums that must not be fused into an FMA: the stabilised values of non-local
// means are a few thousand while their differences are about 1, so they must round exactly as
// NumPy rounds them.
#ifdef __CUDA_ARCH__
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
#else
__device__ __forceinline__ float mul_rn(float a, float b) { return a * b; }
__device__ __forceinline__ float add_rn(float a, float b) { return a + b; }
#endif

// i folded into 0 .. n-1 by mirroring without repeating the edge, as often as needed.
__device__ __forceinline__ int reflect(int i, int n)
{
    if (i >= 0 && i < n) return i;  // most of a tile: skip the integer division
    if (n == 1) return 0;
    const int period = 2 * n - 2;
    i %= period;
    if (i < 0) i += period;
    return i < n ? i : period - i;
}

// A mosaic coordinate mirrored within its CFA site's plane (period: the CFA tile's side along
// this axis; n: the mosaic's side, a multiple of it).
__device__ __forceinline__ int mirror_site(int i, int period, int n)
{
    if (i >= 0 && i < n) return i;
    const int site = ((i % period) + period) % period;
    return reflect((i - site) / period, n / period) * period + site;
}

__device__ __forceinline__ long long site_index(int row, int col, int site_row, int site_col, int cfa_h, int cfa_w,
                                                int width)
{
    return (long long)(row * cfa_h + site_row) * width + (long long)col * cfa_w + site_col;
}

// ---------------------------------------------------------------------------------------------
// Wavelet: one level of the a trous transform with its Wiener shrinkage.
//
// B3-spline smoothing with step - 1 holes, vertical pass then horizontal (outer taps paired as
// in _b3_valid), detail = coarse - smooth, energy = 5x5 sum of detail^2 (column sums, then row
// sums), shrink = max(energy - variance * gain^2, 0) / max(energy, tiny) * detail.
// Shared memory per block: the coarse tile with a halo of 2*step + 2, the vertical pass over
// the tile's rows +-2, the squared detail over the tile +-2 and the energy's column sums:
// 22 KB (step 1) to 38 KB (step 8).
//
// first: the level reads the mosaic as its coarse planes and also computes each pixel's noise
//        variance in energy units, (slope * max(level, 0) + offset) * strength^2 * 25 with level
//        the 5x5 mean, and writes it to `variance`; later levels read it back.
// last:  the level writes kept + shrink + smooth (the denoised plane) to `kept` instead of
//        writing kept + shrink to `kept` and smooth to `smooth_out` (then unused).

#define B3_OUTER 0.0625f
#define B3_INNER 0.25f
#define B3_CENTRE 0.375f
#define ENERGY_AREA 25.0f

__device__ __forceinline__ float b3(float t0, float t1, float t2, float t3, float t4)
{
    float out = (t0 + t4) * B3_OUTER;
    const float inner = (t1 + t3) * B3_INNER;
    out += inner;
    return out + t2 * B3_CENTRE;
}

// Sum of 5 values `stride` apart, first to last.
__device__ __forceinline__ float sum5(const float* p, int stride)
{
    float s = p[0] + p[stride];
    s += p[2 * stride];
    s += p[3 * stride];
    return s + p[4 * stride];
}

template <int STEP>
__device__ __forceinline__ void wavelet_level(const float* __restrict__ coarse, const float* __restrict__ slope,
                                              const float* __restrict__ offset, float* __restrict__ variance,
                                              float* __restrict__ kept, float* __restrict__ smooth_out, int height,
                                              int width, int cfa_h, int cfa_w, float strength2, float gain2, int first,
                                              int last)
{
    constexpr int R = 2 * STEP + 2;  // halo of the coarse tile: the smoothing's reach plus the energy window's
    constexpr int C = TILE + 2 * R;  // side of the coarse tile
    constexpr int D = TILE + 4;      // side of the squared-detail tile
    __shared__ float s_coarse[C * C];
    __shared__ float s_vertical[D * C];
    __shared__ float s_square[D * D];
    __shared__ float s_column[TILE * D];

    const int sites = cfa_h * cfa_w;
    const int site = blockIdx.x % sites;
    const int site_row = site / cfa_w, site_col = site % cfa_w;
    const int plane_h = height / cfa_h, plane_w = width / cfa_w;
    const int x0 = (blockIdx.x / sites) * TILE, y0 = blockIdx.y * TILE;
    const int tid = threadIdx.y * BLOCK_X + threadIdx.x;
    const int x = x0 + threadIdx.x;

    // This thread's pixels' own inputs, requested before the tile so their latency overlaps it.
    float own_a[ROWS_PER_THREAD], own_b[ROWS_PER_THREAD];
#pragma unroll
    for (int k = 0; k < ROWS_PER_THREAD; ++k) {
        const int y = y0 + threadIdx.y + k * BLOCK_Y;
        own_a[k] = own_b[k] = 0.0f;
        if (y < plane_h && x < plane_w) {
            const long long i = site_index(y, x, site_row, site_col, cfa_h, cfa_w, width);
            own_a[k] = first ? slope[i] : variance[i];
            own_b[k] = first ? offset[i] : kept[i];
        }
    }

    for (int i = tid; i < C * C; i += THREADS) {
        const int r = i / C, q = i % C;
        const int y = reflect(y0 - R + r, plane_h), xq = reflect(x0 - R + q, plane_w);
        s_coarse[i] = coarse[site_index(y, xq, site_row, site_col, cfa_h, cfa_w, width)];
    }
    __syncthreads();

    // Vertical pass over the tile's rows -2 .. TILE+1 and every column of the coarse tile.
    for (int i = tid; i < D * C; i += THREADS) {
        const int r = i / C, q = i % C;
        const float* t = s_coarse + (r + R - 2) * C + q;
        s_vertical[i] = b3(t[-2 * STEP * C], t[-STEP * C], t[0], t[STEP * C], t[2 * STEP * C]);
    }
    __syncthreads();

    // Horizontal pass and detail over the tile +-2; the squared detail feeds the energy.
    for (int i = tid; i < D * D; i += THREADS) {
        const int r = i / D, q = i % D;
        const float* t = s_vertical + r * C + q + R - 2;
        const float smooth = b3(t[-2 * STEP], t[-STEP], t[0], t[STEP], t[2 * STEP]);
        const float detail = s_coarse[(r + R - 2) * C + q + R - 2] - smooth;
        s_square[i] = detail * detail;
    }
    __syncthreads();

    for (int i = tid; i < TILE * D; i += THREADS) s_column[i] = sum5(s_square + i, D);
    __syncthreads();

    const float tiny = 1.17549435e-38f;  // FLT_MIN
#pragma unroll
    for (int k = 0; k < ROWS_PER_THREAD; ++k) {
        const int r = threadIdx.y + k * BLOCK_Y, q = threadIdx.x;
        const int y = y0 + r;
        if (y >= plane_h || x >= plane_w) continue;
        const long long i = site_index(y, x, site_row, site_col, cfa_h, cfa_w, width);
        // the pixel's smooth value and detail, recomputed as in the pass above (same bits)
        const float* t = s_vertical + (r + 2) * C + q + R;
        const float smooth = b3(t[-2 * STEP], t[-STEP], t[0], t[STEP], t[2 * STEP]);
        const float detail = s_coarse[(r + R) * C + q + R] - smooth;
        float noise_energy = own_a[k];
        if (first) {
            float column[5];
#pragma unroll
            for (int c = 0; c < 5; ++c) column[c] = sum5(s_coarse + (r + R - 2) * C + q + R - 2 + c, C);
            float level = column[0] + column[1];
            level += column[2];
            level += column[3];
            level += column[4];
            level /= ENERGY_AREA;
            noise_energy = (own_a[k] * max(level, 0.0f) + own_b[k]) * strength2 * ENERGY_AREA;
            variance[i] = noise_energy;
        }
        const float* e = s_column + r * D + q;
        float energy = e[0] + e[1];
        energy += e[2];
        energy += e[3];
        energy += e[4];
        float shrink = max(energy - noise_energy * gain2, 0.0f);
        shrink /= max(energy, tiny);
        shrink *= detail;
        const float sum = first ? shrink : own_b[k] + shrink;
        if (last) {
            kept[i] = sum + smooth;
        } else {
            kept[i] = sum;
            smooth_out[i] = smooth;
        }
    }
}

// One entry point per step (the tile's halo, and so its shared memory, depends on it).
// Arguments: coarse, slope, offset, variance, kept, smooth_out (H x W float32 mosaics), height,
// width, cfa_h, cfa_w, strength2, gain2 (the band's white-noise gain squared), first, last.
// Grid: (th*tw * ceil(W/tw / 32), ceil(H/th / 32)), block (32, 8).
extern "C" __global__ void wavelet_level_1(const float* __restrict__ coarse, const float* __restrict__ slope,
                                           const float* __restrict__ offset, float* __restrict__ variance,
                                           float* __restrict__ kept, float* __restrict__ smooth_out, int height,
                                           int width, int cfa_h, int cfa_w, float strength2, float gain2, int first,
                                           int last)
{
    wavelet_level<1>(coarse, slope, offset, variance, kept, smooth_out, height, width, cfa_h, cfa_w, strength2, gain2,
                     first, last);
}

extern "C" __global__ void wavelet_level_2(const float* __restrict__ coarse, const float* __restrict__ slope,
                                           const float* __restrict__ offset, float* __restrict__ variance,
                                           float* __restrict__ kept, float* __restrict__ smooth_out, int height,
                                           int width, int cfa_h, int cfa_w, float strength2, float gain2, int first,
                                           int last)
{
    wavelet_level<2>(coarse, slope, offset, variance, kept, smooth_out, height, width, cfa_h, cfa_w, strength2, gain2,
                     first, last);
}

extern "C" __global__ void wavelet_level_4(const float* __restrict__ coarse, const float* __restrict__ slope,
                                           const float* __restrict__ offset, float* __restrict__ variance,
                                           float* __restrict__ kept, float* __restrict__ smooth_out, int height,
                                           int width, int cfa_h, int cfa_w, float strength2, float gain2, int first,
                                           int last)
{
    wavelet_level<4>(coarse, slope, offset, variance, kept, smooth_out, height, width, cfa_h, cfa_w, strength2, gain2,
                     first, last);
}

extern "C" __global__ void wavelet_level_8(const float* __restrict__ coarse, const float* __restrict__ slope,
                                           const float* __restrict__ offset, float* __restrict__ variance,
                                           float* __restrict__ kept, float* __restrict__ smooth_out, int height,
                                           int width, int cfa_h, int cfa_w, float strength2, float gain2, int first,
                                           int last)
{
    wavelet_level<8>(coarse, slope, offset, variance, kept, smooth_out, height, width, cfa_h, cfa_w, strength2, gain2,
                     first, last);
}

// ---------------------------------------------------------------------------------------------
// Non-local means on the mosaic.
//
// The block's 32 x 32 pixels and a halo of radius * tile + patch_radius (the farthest candidate
// plus its patch) are loaded once: the linear values and their generalised Anscombe transform.
// For each candidate offset o in the order of the NumPy path (each offset of the half window,
// then its opposite), the squared patch differences are summed down columns (4 rows per work
// item, sharing the squares), then along rows, giving d^2 for every pixel of the tile; its
// weight is accumulated at once. Two barriers per offset, no global traffic after the load.
// Shared memory: 2 x 64^2 + 32 x 44 floats = 38 KB.
//
// Arguments: mosaic, slope, offset (the noise model), out (H x W float32), height, width,
// cfa_h, cfa_w, radius (same-site pixels), patch_radius (mosaic pixels), weight_scale =
// -1 / (h^2 * patch area). Needs radius * max(cfa_h, cfa_w) + patch_radius <= NLM_MAX_HALO and
// patch_radius <= NLM_MAX_PATCH. Grid: (ceil(W / 32), ceil(H / 32)), block (32, 8).

#define NLM_MAX_HALO 16
#define NLM_MAX_PATCH 6
#define NLM_PITCH (TILE + 2 * NLM_MAX_HALO)
#define NLM_ROWS_PER_ITEM 4
#define NLM_MIN_CENTRE_WEIGHT 1e-30f

// The generalised Anscombe transform of v for variance a*v + b, rounded as NumPy rounds it.
__device__ __forceinline__ float stabilise(float v, float a, float b)
{
    if (a > 0.0f) {
        const float root = sqrtf(max(add_rn(add_rn(mul_rn(a, v), mul_rn(mul_rn(0.375f, a), a)), b), 0.0f));
        return mul_rn(2.0f, root) / a;
    }
    return v / sqrtf(b);
}

extern "C" __global__ void nlm(const float* __restrict__ mosaic, const float* __restrict__ slope,
                               const float* __restrict__ offset, float* __restrict__ out, int height, int width,
                               int cfa_h, int cfa_w, int radius, int patch_radius, float weight_scale)
{
    __shared__ float s_stable[NLM_PITCH * NLM_PITCH];
    __shared__ float s_value[NLM_PITCH * NLM_PITCH];
    __shared__ float s_column[TILE * (TILE + 2 * NLM_MAX_PATCH)];

    const int halo = radius * max(cfa_h, cfa_w) + patch_radius;
    const int pitch = TILE + 2 * halo;
    const int x0 = blockIdx.x * TILE, y0 = blockIdx.y * TILE;
    const int tid = threadIdx.y * BLOCK_X + threadIdx.x;

    for (int i = tid; i < pitch * pitch; i += THREADS) {
        const int r = i / pitch, q = i % pitch;
        const long long g = (long long)mirror_site(y0 - halo + r, cfa_h, height) * width + mirror_site(x0 - halo + q, cfa_w, width);
        const float v = mosaic[g];
        s_value[i] = v;
        s_stable[i] = stabilise(v, slope[g], offset[g]);
    }
    __syncthreads();

    const int patch = 2 * patch_radius + 1;
    const int columns = TILE + 2 * patch_radius;
    const float twice_area = 2.0f * (float)(patch * patch);
    float total[ROWS_PER_THREAD], weight_sum[ROWS_PER_THREAD], weight_max[ROWS_PER_THREAD];
#pragma unroll
    for (int k = 0; k < ROWS_PER_THREAD; ++k) {
        total[k] = weight_sum[k] = 0.0f;
        weight_max[k] = NLM_MIN_CENTRE_WEIGHT;
    }

    for (int dy = 0; dy <= radius; ++dy) {
        for (int dx = -radius; dx <= radius; ++dx) {
            if (dy == 0 && dx <= 0) continue;
            for (int sign = 1; sign >= -1; sign -= 2) {
                const int oy = sign * dy * cfa_h, ox = sign * dx * cfa_w;
                for (int item = tid; item < columns * (TILE / NLM_ROWS_PER_ITEM); item += THREADS) {
                    const int q = item % columns, r0 = (item / columns) * NLM_ROWS_PER_ITEM;
                    const float* a = s_stable + (halo + r0 - patch_radius) * pitch + halo - patch_radius + q;
                    const float* b = a + oy * pitch + ox;
                    float square[NLM_ROWS_PER_ITEM + 2 * NLM_MAX_PATCH];
#pragma unroll
                    for (int k = 0; k < NLM_ROWS_PER_ITEM + 2 * NLM_MAX_PATCH; ++k) {
                        if (k < NLM_ROWS_PER_ITEM + 2 * patch_radius) {
                            const float d = b[k * pitch] - a[k * pitch];
                            square[k] = d * d;
                        }
                    }
#pragma unroll
                    for (int i = 0; i < NLM_ROWS_PER_ITEM; ++i) {
                        float sum = square[i];
#pragma unroll
                        for (int k = 1; k <= 2 * NLM_MAX_PATCH; ++k)
                            if (k < patch) sum += square[i + k];
                        s_column[(r0 + i) * columns + q] = sum;
                    }
                }
                __syncthreads();
#pragma unroll
                for (int k = 0; k < ROWS_PER_THREAD; ++k) {
                    const int r = threadIdx.y + k * BLOCK_Y, q = threadIdx.x;
                    const float* c = s_column + r * columns + q;
                    float distance = c[0];
                    for (int j = 1; j < patch; ++j) distance += c[j];
                    distance -= twice_area;
                    distance = max(distance, 0.0f);
                    distance *= weight_scale;
                    const float weight = expf(distance);
                    weight_sum[k] += weight;
                    weight_max[k] = max(weight_max[k], weight);
                    total[k] += weight * s_value[(halo + r + oy) * pitch + halo + q + ox];
                }
                __syncthreads();
            }
        }
    }

#pragma unroll
    for (int k = 0; k < ROWS_PER_THREAD; ++k) {
        const int r = threadIdx.y + k * BLOCK_Y, q = threadIdx.x;
        const int y = y0 + r, x = x0 + q;
        if (y >= height || x >= width) continue;
        total[k] += weight_max[k] * s_value[(halo + r) * pitch + halo + q];
        weight_sum[k] += weight_max[k];
        out[(long long)y * width + x] = total[k] / weight_sum[k];
    }
}

// ---------------------------------------------------------------------------------------------
// Bilateral filter on each site plane.
//
// The tile and a halo of radius same-site pixels are loaded once. Per pixel: the 3x3 mean
// (column sums, then the row), the range width 2*strength*sigma(mean), then the window in the
// NumPy path's order, the centre first with weight 1. Shared memory: 46^2 + 15^2 floats = 9 KB.
//
// Arguments: mosaic, slope, offset, spatial ((2r+1)^2 float32 spatial weights, row-major, the
// centre unused), out, height, width, cfa_h, cfa_w, radius <= BILATERAL_MAX_RADIUS,
// range_scale = 2 * strength. Grid: (th*tw * ceil(W/tw / 32), ceil(H/th / 32)), block (32, 8).

#define BILATERAL_MAX_RADIUS 7
#define BILATERAL_PITCH (TILE + 2 * BILATERAL_MAX_RADIUS)
#define BILATERAL_MAX_WINDOW ((2 * BILATERAL_MAX_RADIUS + 1) * (2 * BILATERAL_MAX_RADIUS + 1))

extern "C" __global__ void bilateral(const float* __restrict__ mosaic, const float* __restrict__ slope,
                                     const float* __restrict__ offset, const float* __restrict__ spatial,
                                     float* __restrict__ out, int height, int width, int cfa_h, int cfa_w, int radius,
                                     float range_scale)
{
    __shared__ float s_plane[BILATERAL_PITCH * BILATERAL_PITCH];
    __shared__ float s_spatial[BILATERAL_MAX_WINDOW];

    const int sites = cfa_h * cfa_w;
    const int site = blockIdx.x % sites;
    const int site_row = site / cfa_w, site_col = site % cfa_w;
    const int plane_h = height / cfa_h, plane_w = width / cfa_w;
    const int x0 = (blockIdx.x / sites) * TILE, y0 = blockIdx.y * TILE;
    const int tid = threadIdx.y * BLOCK_X + threadIdx.x;
    const int pitch = TILE + 2 * radius;
    const int side = 2 * radius + 1;

    for (int i = tid; i < pitch * pitch; i += THREADS) {
        const int r = i / pitch, q = i % pitch;
        const int y = reflect(y0 - radius + r, plane_h), x = reflect(x0 - radius + q, plane_w);
        s_plane[i] = mosaic[site_index(y, x, site_row, site_col, cfa_h, cfa_w, width)];
    }
    for (int i = tid; i < side * side; i += THREADS) s_spatial[i] = spatial[i];
    __syncthreads();

#pragma unroll
    for (int k = 0; k < ROWS_PER_THREAD; ++k) {
        const int r = threadIdx.y + k * BLOCK_Y, q = threadIdx.x;
        const int y = y0 + r, x = x0 + q;
        if (y >= plane_h || x >= plane_w) continue;
        const float* p = s_plane + (r + radius) * pitch + q + radius;
        const float centre = p[0];
        float column[3];
#pragma unroll
        for (int c = 0; c < 3; ++c) {
            const float* t = p - pitch + c - 1;
            column[c] = t[0] + t[pitch];
            column[c] += t[2 * pitch];
        }
        float level = column[0] + column[1];
        level += column[2];
        level /= 9.0f;
        const long long i = site_index(y, x, site_row, site_col, cfa_h, cfa_w, width);
        const float range_width = sqrtf(slope[i] * max(level, 0.0f) + offset[i]) * range_scale;
        const float inv_range = -0.5f / (range_width * range_width);
        float total = centre, weight_sum = 1.0f;
        for (int dy = -radius; dy <= radius; ++dy) {
            for (int dx = -radius; dx <= radius; ++dx) {
                if (dy == 0 && dx == 0) continue;
                const float other = p[dy * pitch + dx];
                float weight = other - centre;
                weight *= weight;
                weight *= inv_range;
                weight = expf(weight);
                weight *= s_spatial[(dy + radius) * side + dx + radius];
                weight_sum += weight;
                weight *= other;
                total += weight;
            }
        }
        out[i] = total / weight_sum;
    }
}
