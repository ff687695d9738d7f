// Quad Bayer -> Bayer remosaic: the two methods of isp/stages/remosaic.py, which stays the
// reference (its array-module code is what these kernels reproduce, borders included).
//
// quad_pixel_swap: one thread per pixel, a gather inside the 4x4 tile (4 bytes read, 4 written).
//
// quad_directional: one fused kernel. A block owns a TILE_H x TILE_W tile of the output. It loads
// the balanced mosaic m of its tile with a 7-pixel halo into shared memory once, then computes
// the reference's intermediate planes one after another, each over the tile plus the halo the
// next plane still needs, with a barrier between planes:
//
//   m (halo 7) -> G - C along rows (halo 3 rows x 4 columns) and along columns (4 x 3)
//     -> their |central differences| (halo 3) -> 5-row means (halo 1 x 3)
//     -> green, the direction weight and C - G (halo 1) -> the Bayer output (no halo).
//
// The halos are those of the reads, not of the stencils' extents: a line interpolation fills the
// first pixel of a pair from 1 pixel before and 2 after, the second from 2 before and 1 after, so
// over a span that starts and ends on a pair boundary it reaches 1 pixel beyond each end. Tiles
// start on even rows and columns, which keeps every plane's span on pair boundaries where it
// matters.
//
// Why one fused kernel rather than one kernel per plane: per pixel, the planes a kernel-per-pass
// schedule would write and read back in global memory are m, G - C twice, the two gradients or
// their sums, green and the weight: at least 48 bytes of DRAM traffic per pixel against 8 here
// (the float32 mosaic read once, the output written once; halo re-reads of neighbouring tiles hit
// L2). The price is recomputing each plane on its halo: with 32 x 16 tiles about 14 plane entries
// per output pixel instead of 9, all from shared memory, which at the H100's shared-memory
// bandwidth costs less than the extra 40 bytes of DRAM traffic.
//
// Borders: every plane holds the values of the reference's plane at image positions. A read of
// a position outside the image goes to the position the reference mirrors it to, with the mirror
// that plane uses there (about the centre of the outermost quad for line interpolations and the
// differences, scipy.ndimage's 'reflect' for the 5x5 sums). Plane entries outside the image are
// never read by entries inside it and are zeroed. Blocks whose tile and halo lie inside the image
// (all but a ring of border blocks) skip the mirrors: the EDGE template parameter.
//
// Launch: block (32, 8) = 256 threads (any block size works: the planes are walked by a strided
// loop over the block's threads), grid (ceil(W / TILE_W), ceil(H / TILE_H)); static shared
// memory 25 KB per block. isp/stages/remosaic.py holds the same tile size.

#define TILE_W 32
#define TILE_H 16

constexpr int kColourR = 0;
constexpr int kColourG = 1;
constexpr int kColourB = 2;

// Linear interpolation from the nearest known samples of a line (kNear: the sample one pixel
// away, kFar: the one two pixels away); float32 as the reference's weights are.
constexpr float kNear = 2.0f / 3.0f;
constexpr float kFar = 1.0f / 3.0f;
// The reference's _FLAT: keeps the direction weights finite where nothing varies.
constexpr float kFlat = 1e-6f;

__host__ __device__ constexpr int cmax(int a, int b) { return a > b ? a : b; }

// ---- geometry -----------------------------------------------------------------------------------

// Mirror about the centre of the outermost quad (pixel -k takes k + 1): the reference's
// _mirror_quads, which keeps every mirrored pixel's colour.
__device__ __forceinline__ int mirror_quad(int i, int n)
{
    return i < 0 ? 1 - i : (i >= n ? 2 * n - 3 - i : i);
}

// scipy.ndimage mode 'reflect' (d c b a | a b c d): the reference's 5x5 uniform_filter.
__device__ __forceinline__ int mirror_reflect(int i, int n)
{
    return i < 0 ? -1 - i : (i >= n ? 2 * n - 1 - i : i);
}

// Colour (0 R, 1 G, 2 B) at position (i, j) of a 2x2 Bayer tile whose red sample is at
// (red_row, red_col); the quad mosaic's colour at (y, x) is that of (y / 2 % 2, x / 2 % 2).
__device__ __forceinline__ int bayer_colour(int i, int j, int red_row, int red_col)
{
    if ((i ^ j) != (red_row ^ red_col)) return kColourG;
    return i == red_row ? kColourR : kColourB;
}

// One factor per colour; selected rather than indexed so that it stays in registers.
struct PerColour {
    float r, g, b;

    __device__ __forceinline__ float operator[](int colour) const
    {
        return colour == kColourR ? r : (colour == kColourG ? g : b);
    }
};

template <bool EDGE>
struct Geometry {
    int height, width, red_row, red_col;

    __device__ __forceinline__ int quad_row(int y) const { return EDGE ? mirror_quad(y, height) : y; }
    __device__ __forceinline__ int quad_col(int x) const { return EDGE ? mirror_quad(x, width) : x; }
    __device__ __forceinline__ int reflect_row(int y) const { return EDGE ? mirror_reflect(y, height) : y; }
    __device__ __forceinline__ int reflect_col(int x) const { return EDGE ? mirror_reflect(x, width) : x; }
    __device__ __forceinline__ bool outside(int y, int x) const
    {
        return EDGE && (y < 0 || y >= height || x < 0 || x >= width);
    }
    __device__ __forceinline__ bool green_quad(int y, int x) const
    {
        return bayer_colour((y >> 1) & 1, (x >> 1) & 1, red_row, red_col) == kColourG;
    }
};

// A plane of the tile in shared memory: the tile whose first pixel is at (oy, ox) in the image,
// with a halo of HY rows and HX columns.
template <int HY, int HX>
struct Plane {
    static constexpr int kHaloY = HY;
    static constexpr int kHaloX = HX;
    static constexpr int kRows = TILE_H + 2 * HY;
    static constexpr int kCols = TILE_W + 2 * HX;
    static constexpr int kSize = kRows * kCols;
    float* data;
    int y0, x0;  // image position of data[0]

    __device__ __forceinline__ Plane(float* memory, int oy, int ox) : data(memory), y0(oy - HY), x0(ox - HX) {}

    __device__ __forceinline__ float& operator()(int y, int x) const { return data[(y - y0) * kCols + (x - x0)]; }
};

// Interpolation of the pixel at p in a pair of unknown samples of a line whose period of 4 holds
// two known and two unknown samples: the first of the pair from p - 1 (near) and p + 2 (far),
// the second from p - 2 (far) and p + 1 (near). Lower offset first, as the reference sums.
struct Taps {
    int lo, hi;
    float w_lo, w_hi;
};

__device__ __forceinline__ Taps pair_taps(int p)
{
    return (p & 1) ? Taps{-2, 1, kFar, kNear} : Taps{-1, 2, kNear, kFar};
}

// Walk a plane's entries with all the block's threads; body(y, x, entry) gets image coordinates.
template <typename P, typename Body>
__device__ __forceinline__ void for_each(const P& plane, int thread, int threads, Body body)
{
    for (int i = thread; i < P::kSize; i += threads) {
        const int r = i / P::kCols;
        const int c = i - r * P::kCols;
        body(plane.y0 + r, plane.x0 + c, plane.data[i]);
    }
}

// ---- directional --------------------------------------------------------------------------------

using MPlane = Plane<7, 7>;
using RowDiffPlane = Plane<3, 4>;  // G - C along rows
using ColDiffPlane = Plane<4, 3>;  // G - C along columns
using GradPlane = Plane<3, 3>;
using SumPlane = Plane<1, 3>;      // 5-row means of a gradient
using CmgPlane = Plane<1, 1>;      // C - G
using TilePlane = Plane<0, 0>;

template <bool EDGE>
__device__ void directional_tile(const float* __restrict__ mosaic, float* __restrict__ out, const Geometry<EDGE> geo,
                                 const PerColour gains, const PerColour inverse_gains, float* s_m, float* s_diff,
                                 float* s_grad, float* s_sum)
{
    const int oy = blockIdx.y * TILE_H;
    const int ox = blockIdx.x * TILE_W;
    const int thread = threadIdx.y * blockDim.x + threadIdx.x;
    const int threads = blockDim.x * blockDim.y;
    const int height = geo.height, width = geo.width;

    const MPlane m(s_m, oy, ox);
    const RowDiffPlane diff_h(s_diff, oy, ox);
    const ColDiffPlane diff_v(s_diff + RowDiffPlane::kSize, oy, ox);
    const GradPlane grad_h(s_grad, oy, ox);
    const GradPlane grad_v(s_grad + GradPlane::kSize, oy, ox);
    const SumPlane sum_h(s_sum, oy, ox);
    const SumPlane sum_v(s_sum + SumPlane::kSize, oy, ox);
    // The gradients are dead once averaged over rows: the last planes reuse their memory.
    const CmgPlane cmg(s_grad, oy, ox);
    const TilePlane green(s_grad + CmgPlane::kSize, oy, ox);
    const TilePlane weight_h(s_grad + CmgPlane::kSize + TilePlane::kSize, oy, ox);

    // m: the mosaic balanced with the quad colour's gain.
    for_each(m, thread, threads, [&](int y, int x, float& entry) {
        if (geo.outside(y, x)) {
            entry = 0.0f;
            return;
        }
        entry = mosaic[(long long)y * width + x] * gains[bayer_colour((y >> 1) & 1, (x >> 1) & 1, geo.red_row, geo.red_col)];
    });
    __syncthreads();

    // G - C along each line: at green sites G minus C interpolated there, at C sites that
    // difference interpolated from the green sites beside them.
    auto green_minus_h = [&](int y, int x) {  // at a green site
        const Taps t = pair_taps(x);
        return m(y, x) - (t.w_lo * m(y, geo.quad_col(x + t.lo)) + t.w_hi * m(y, geo.quad_col(x + t.hi)));
    };
    auto green_minus_v = [&](int y, int x) {
        const Taps t = pair_taps(y);
        return m(y, x) - (t.w_lo * m(geo.quad_row(y + t.lo), x) + t.w_hi * m(geo.quad_row(y + t.hi), x));
    };
    for_each(diff_h, thread, threads, [&](int y, int x, float& entry) {
        if (geo.outside(y, x)) {
            entry = 0.0f;
            return;
        }
        if (geo.green_quad(y, x)) {
            entry = green_minus_h(y, x);
        } else {
            const Taps t = pair_taps(x);
            entry = t.w_lo * green_minus_h(y, geo.quad_col(x + t.lo)) + t.w_hi * green_minus_h(y, geo.quad_col(x + t.hi));
        }
    });
    for_each(diff_v, thread, threads, [&](int y, int x, float& entry) {
        if (geo.outside(y, x)) {
            entry = 0.0f;
            return;
        }
        if (geo.green_quad(y, x)) {
            entry = green_minus_v(y, x);
        } else {
            const Taps t = pair_taps(y);
            entry = t.w_lo * green_minus_v(geo.quad_row(y + t.lo), x) + t.w_hi * green_minus_v(geo.quad_row(y + t.hi), x);
        }
    });
    __syncthreads();

    // Variation of each direction's difference along that direction.
    for_each(grad_h, thread, threads, [&](int y, int x, float& entry) {
        entry = geo.outside(y, x) ? 0.0f : fabsf(diff_h(y, geo.quad_col(x + 1)) - diff_h(y, geo.quad_col(x - 1)));
    });
    for_each(grad_v, thread, threads, [&](int y, int x, float& entry) {
        entry = geo.outside(y, x) ? 0.0f : fabsf(diff_v(geo.quad_row(y + 1), x) - diff_v(geo.quad_row(y - 1), x));
    });
    __syncthreads();

    // The 5x5 mean runs over rows first, then columns, as scipy's separable uniform_filter does.
    auto row_mean = [&](const GradPlane& grad, int y, int x) {
        float s = grad(geo.reflect_row(y - 2), x);
        s += grad(geo.reflect_row(y - 1), x);
        s += grad(y, x);
        s += grad(geo.reflect_row(y + 1), x);
        s += grad(geo.reflect_row(y + 2), x);
        return s / 5.0f;
    };
    for_each(sum_h, thread, threads, [&](int y, int x, float& entry) {
        entry = geo.outside(y, x) ? 0.0f : row_mean(grad_h, y, x);
    });
    for_each(sum_v, thread, threads, [&](int y, int x, float& entry) {
        entry = geo.outside(y, x) ? 0.0f : row_mean(grad_v, y, x);
    });
    __syncthreads();

    auto col_mean = [&](const SumPlane& sum, int y, int x) {
        float s = sum(y, geo.reflect_col(x - 2));
        s += sum(y, geo.reflect_col(x - 1));
        s += sum(y, x);
        s += sum(y, geo.reflect_col(x + 1));
        s += sum(y, geo.reflect_col(x + 2));
        return s / 5.0f;
    };
    // Green everywhere (estimated at the C sites, each direction weighing 1 / variation^2) and
    // C - G; green and the weight also kept for the tile itself.
    for_each(cmg, thread, threads, [&](int y, int x, float& entry) {
        if (geo.outside(y, x)) {
            entry = 0.0f;
            return;
        }
        const float g_h = col_mean(sum_h, y, x) + kFlat;
        const float g_v = col_mean(sum_v, y, x) + kFlat;
        const float inverse_h = 1.0f / (g_h * g_h);
        const float inverse_v = 1.0f / (g_v * g_v);
        const float w_h = inverse_h / (inverse_h + inverse_v);
        const float w_v = 1.0f - w_h;
        const float here = m(y, x);
        const float g = geo.green_quad(y, x) ? here : here + w_h * diff_h(y, x) + w_v * diff_v(y, x);
        entry = here - g;
        if (y >= oy && y < oy + TILE_H && x >= ox && x < ox + TILE_W) {
            green(y, x) = g;
            weight_h(y, x) = w_h;
        }
    });
    __syncthreads();

    // C - G interpolated along a line holding C, at a site of the line's other pair.
    auto along_row = [&](int y, int x) {
        const Taps t = pair_taps(x);
        return t.w_lo * cmg(y, geo.quad_col(x + t.lo)) + t.w_hi * cmg(y, geo.quad_col(x + t.hi));
    };
    auto along_col = [&](int y, int x) {
        const Taps t = pair_taps(y);
        return t.w_lo * cmg(geo.quad_row(y + t.lo), x) + t.w_hi * cmg(geo.quad_row(y + t.hi), x);
    };
    for (int i = thread; i < TilePlane::kSize; i += threads) {
        const int y = oy + i / TILE_W;
        const int x = ox + i % TILE_W;
        if (y >= height || x >= width) continue;
        const long long index = (long long)y * width + x;
        const int pattern = bayer_colour((y >> 1) & 1, (x >> 1) & 1, geo.red_row, geo.red_col);
        const int target = bayer_colour(y & 1, x & 1, geo.red_row, geo.red_col);
        if (target == pattern) {  // a sample already on a Bayer site of its colour stays as captured
            out[index] = mosaic[index];
            continue;
        }
        float value = green(y, x);
        if (target != kColourG) {
            // Rows (columns) of quads of the target colour: those of its site in the 2x2 tile.
            const int colour_row = target == kColourR ? geo.red_row : 1 - geo.red_row;
            const int colour_col = target == kColourR ? geo.red_col : 1 - geo.red_col;
            if (((y >> 1) & 1) == colour_row) {
                value += along_row(y, x);
            } else if (((x >> 1) & 1) == colour_col) {
                value += along_col(y, x);
            } else {
                // The opposite colour's site: from the interpolated sites beside it in its row
                // (filled along their columns) and in its column (filled along their rows).
                const Taps th = pair_taps(x);
                const Taps tv = pair_taps(y);
                const float second_h = th.w_lo * along_col(y, geo.quad_col(x + th.lo)) + th.w_hi * along_col(y, geo.quad_col(x + th.hi));
                const float second_v = tv.w_lo * along_row(geo.quad_row(y + tv.lo), x) + tv.w_hi * along_row(geo.quad_row(y + tv.hi), x);
                const float w_h = weight_h(y, x);
                value += w_h * second_h + (1.0f - w_h) * second_v;
            }
        }
        out[index] = value * inverse_gains[target];
    }
}

// mosaic: height x width float32 Quad Bayer mosaic, linear; out: the Bayer mosaic, same shape.
// red_row, red_col: the red quad's position in the 2x2 arrangement of quads (the red sample's in
// the Bayer output). gain_*: white-balance gains applied while colour differences are formed
// (1 for a balanced mosaic); inverse_gain_*: float32(1 / gain), applied to every new sample.
extern "C" __global__ void quad_directional(const float* __restrict__ mosaic, float* __restrict__ out, int height,
                                            int width, int red_row, int red_col, float gain_r, float gain_g,
                                            float gain_b, float inverse_gain_r, float inverse_gain_g,
                                            float inverse_gain_b)
{
    __shared__ float s_m[MPlane::kSize];
    __shared__ float s_diff[RowDiffPlane::kSize + ColDiffPlane::kSize];
    __shared__ float s_grad[cmax(2 * GradPlane::kSize, CmgPlane::kSize + 2 * TilePlane::kSize)];
    __shared__ float s_sum[2 * SumPlane::kSize];

    const PerColour gains{gain_r, gain_g, gain_b};
    const PerColour inverse_gains{inverse_gain_r, inverse_gain_g, inverse_gain_b};
    const int oy = blockIdx.y * TILE_H;
    const int ox = blockIdx.x * TILE_W;
    // Uniform across the block, so the barriers inside stay block-wide.
    constexpr int halo_y = MPlane::kHaloY, halo_x = MPlane::kHaloX;
    const bool edge = oy < halo_y || ox < halo_x || oy + TILE_H + halo_y > height || ox + TILE_W + halo_x > width;
    if (edge) {
        directional_tile(mosaic, out, Geometry<true>{height, width, red_row, red_col}, gains, inverse_gains, s_m, s_diff,
                         s_grad, s_sum);
    } else {
        directional_tile(mosaic, out, Geometry<false>{height, width, red_row, red_col}, gains, inverse_gains, s_m,
                         s_diff, s_grad, s_sum);
    }
}

// ---- pixel swap ---------------------------------------------------------------------------------

// Row (column) of the 4x4 tile whose sample pixel swap moves to row (column) i: the middle two
// are exchanged.
__device__ __forceinline__ int swapped(int i)
{
    const int k = i & 3;
    return (i - k) + ((k == 1 || k == 2) ? 3 - k : k);
}

// mosaic, out: height x width float32; red_row, red_col as for quad_directional.
extern "C" __global__ void quad_pixel_swap(const float* __restrict__ mosaic, float* __restrict__ out, int height,
                                           int width, int red_row, int red_col)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;
    const bool stays = bayer_colour((y >> 1) & 1, (x >> 1) & 1, red_row, red_col) == bayer_colour(y & 1, x & 1, red_row, red_col);
    const long long source = stays ? (long long)y * width + x : (long long)swapped(y) * width + swapped(x);
    out[(long long)y * width + x] = mosaic[source];
}
