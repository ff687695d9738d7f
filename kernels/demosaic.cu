// Class-dependent 5x5 linear Bayer demosaic (bilinear, Malvar-He-Cutler 2004).
// Reference: isp/stages/demosaic.py (_demosaic_xp); the filters come from BayerFilters.stacked().
//
// One thread per pixel. The pixel's class (R site, B site, G site in an R row, G site in a B
// row) picks two of the four filters; the sampled channel is copied. Borders are mirrored
// without repeating the edge pixel (index -1 -> 1), which keeps the CFA phase.

__device__ __forceinline__ int mirror_index(int i, int n)
{
    if (i < 0) return -i;
    if (i >= n) return 2 * n - 2 - i;
    return i;
}

__device__ __forceinline__ float apply_filter(const float* __restrict__ mosaic, int height, int width,
                                              int y, int x, const float* __restrict__ filter)
{
    float acc = 0.0f;
#pragma unroll
    for (int dy = 0; dy < 5; ++dy) {
        const long long row = (long long)mirror_index(y + dy - 2, height) * width;
#pragma unroll
        for (int dx = 0; dx < 5; ++dx) {
            const float w = filter[dy * 5 + dx];
            if (w != 0.0f) acc += w * mosaic[row + mirror_index(x + dx - 2, width)];
        }
    }
    return acc;
}

// mosaic: height x width float32, row-major. out: height x width x 3 float32 (RGB interleaved).
// red_row, red_col: position of the red sample in the 2x2 Bayer tile.
// filters: 4 x 25 float32 in the order g_at_rb, same_row, same_col, opposite.
extern "C" __global__ void bayer_demosaic_5x5(const float* __restrict__ mosaic, float* __restrict__ out,
                                              int height, int width, int red_row, int red_col,
                                              const float* __restrict__ filters)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= width || y >= height) return;

    const float* g_at_rb = filters;
    const float* same_row = filters + 25;
    const float* same_col = filters + 50;
    const float* opposite = filters + 75;

    const bool in_red_row = (y & 1) == red_row;
    const bool in_red_col = (x & 1) == red_col;
    const long long index = (long long)y * width + x;  // frames beyond 2^31 pixels fit on a GPU
    const float centre = mosaic[index];
    float r, g, b;
    if (in_red_row && in_red_col) {            // R site
        r = centre;
        g = apply_filter(mosaic, height, width, y, x, g_at_rb);
        b = apply_filter(mosaic, height, width, y, x, opposite);
    } else if (!in_red_row && !in_red_col) {   // B site
        b = centre;
        g = apply_filter(mosaic, height, width, y, x, g_at_rb);
        r = apply_filter(mosaic, height, width, y, x, opposite);
    } else if (in_red_row) {                   // G site, R to the left and right
        g = centre;
        r = apply_filter(mosaic, height, width, y, x, same_row);
        b = apply_filter(mosaic, height, width, y, x, same_col);
    } else {                                   // G site, R above and below
        g = centre;
        b = apply_filter(mosaic, height, width, y, x, same_row);
        r = apply_filter(mosaic, height, width, y, x, same_col);
    }
    float* pixel = out + 3 * index;
    pixel[0] = r;
    pixel[1] = g;
    pixel[2] = b;
}
