"""Raw-domain noise reduction driven by the sensor's noise model, behind a method registry.

Input and output: a RawFrame in the ``linear`` domain (float32, white = 1.0 before gains), any
CFA layout, before or after white balance and lens-shading correction: the noise of every pixel
comes from :mod:`isp.stages.noise_model` (the frame's NoiseProfile times the gains applied so
far, or an estimate from the data), so one ``strength`` means the same at every ISO, signal
level and position in the frame. ``strength`` scales the noise standard deviation each method
assumes: 1 is the noise as modelled, 0 leaves the frame untouched.

Pixels are only ever averaged with pixels of their own CFA tile site (same colour filter and, in
Quad Bayer, the same position within the quad and so the same sub-pixel gain). ``radius`` and
``spatial_sigma`` count in same-site pixels (two mosaic pixels in Bayer, four in Quad Bayer).
Borders are mirrored within each site plane (``d c b | a b c d``), which keeps the CFA phase.

Methods
-------
``wavelet`` (default)
    Each site plane is split by the undecimated "à trous" B3-spline wavelet transform into
    ``levels`` detail bands and a coarse residual. Each detail coefficient is shrunk by the
    empirical Wiener factor ``max(E - N, 0) / E``, with ``E`` the band's mean energy in the
    5×5 window around it and ``N`` the band's noise variance there: the pixel noise variance at
    the local mean level times ``strength²`` times the band's noise gain (0.890², 0.201²,
    0.0855², ... for white noise; :func:`band_noise_gains`). Texture whose energy stands above
    the noise is kept, flat areas lose their noise. No variance-stabilising transform is
    needed: the shrinkage uses each pixel's own noise variance, and the result stays unbiased.
``nlm``
    Non-local means (Buades, Coll and Morel) guided by the whole mosaic: the generalised
    Anscombe transform gives every pixel noise of unit variance, the candidates are the
    same-site pixels of a ``(2·radius + 1)²`` window, and a candidate ``q`` of ``p`` weighs
    ``exp(-max(d² - 2, 0) / h²)``, ``d²`` the mean squared difference of the
    ``(2·patch_radius + 1)²`` mosaic patches around them (all colours, so fine structure of
    every channel tells patches apart) and ``h = 0.35·strength``. The weighted mean is taken
    of the linear values (no inverse transform, no bias); ``p`` itself weighs as much as its
    most similar candidate, and at least 1e-30, so that a pixel unlike its whole window keeps
    its value.
``bilateral``
    A bilateral filter (Tomasi and Manduchi) on each site plane: spatial weights
    ``exp(-r² / (2·spatial_sigma²))`` over a ``(2·radius + 1)²`` window, range weights
    ``exp(-(v_q - v_p)² / (2·w²))`` with range width ``w = 2·strength·sigma`` and ``sigma``
    the noise standard deviation at ``p``'s level (its 3×3 same-site mean).

Schedules
---------
The array-module functions of :data:`RAW_DENOISE_METHODS` are the reference and the CPU path
(they also run on CuPy). On the CPU the wavelet works tile by tile (all levels of one tile
while its arrays stay in cache, with a mirrored halo as wide as the transform reaches), which
gives the whole planes' result bit for bit. On a GPU, :func:`raw_denoise_mosaic` runs the
shared-memory stencil kernels of ``kernels/raw_denoise.cu`` instead: one launch per wavelet
level, one for ``nlm``, one for ``bilateral``, each repeating its reference's order of
operations (they agree to float32 rounding; tests/test_raw_denoise.py runs them on the CPU
emulator and, on a GPU, against NumPy). Settings beyond a kernel's limits (``levels`` above 4;
an ``nlm`` halo ``radius·tile + patch_radius`` above 16 mosaic pixels) run the array-module
path on the GPU.

Measured on the simulated IMX989 (binned, 4096×3072) at ISO 3200, strength 1, against the
noise-free capture through the same black level and white balance: on the ColorChecker's grey
patches (green sites) ``wavelet`` raises the SNR 4.6-4.8×, ``nlm`` 3.2-3.3×, ``bilateral``
2.3-2.4×, and the frame's PSNR from 39.1 dB to 50.0, 49.1 and 46.4 dB; over the 24 Kodak images
at the sensor's native sampling (fine texture near the noise level) the PSNR rises by 1.82
(``wavelet``), 1.80 (``bilateral``) and 0.86 dB (``nlm``, whose 5×5 search window finds too few
similar patches in texture).

References
----------
J.-L. Starck, F. Murtagh, A. Bijaoui, "Image Processing and Data Analysis: the Multiscale
Approach", Cambridge University Press 1998 (the à trous transform and its band noise).
M. K. Mihçak, I. Kozintsev, K. Ramchandran, P. Moulin, "Low-complexity image denoising based on
statistical modeling of wavelet coefficients", IEEE Signal Processing Letters 6 (1999).
A. Buades, B. Coll, J.-M. Morel, "Non-Local Means Denoising", Image Processing On Line 1
(2011), pp. 208-212.
C. Tomasi, R. Manduchi, "Bilateral filtering for gray and color images", ICCV 1998.
M. Mäkitalo, A. Foi, "Optimal inversion of the generalized Anscombe transformation for
Poisson-Gaussian noise", IEEE TIP 22 (2013).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from isp.backend import array_module, get_backend
from isp.cfa import CFALayout
from isp.config import param
from isp.errors import ConfigError
from isp.frame import RawFrame
from isp.stages.noise_model import NoiseModel, from_site_planes, noise_model, site_planes
from isp.stages.registry import StageContext, register_stage

__all__ = ["RawDenoiseParams", "RAW_DENOISE_METHODS", "raw_denoise_mosaic", "band_noise_gains", "raw_denoise"]

#: The B3-spline smoothing filter of the à trous transform.
_B3 = (1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0, 4.0 / 16.0, 1.0 / 16.0)
#: Side of the window a wavelet band's local energy is measured over, in same-site pixels.
_ENERGY_WINDOW = 5
#: NLM's h at strength 1, in units of the stabilised noise (Buades et al. use 0.35-0.4 for
#: 3x3 patches; it leaves texture at the sensor's native sampling nearly intact).
_NLM_H = 0.35
#: Bilateral range width at strength 1, in noise standard deviations.
_BILATERAL_RANGE = 2.0
#: Floor of NLM's centre weight (about exp(-69)): a pixel unlike its whole window keeps its value.
_MIN_CENTRE_WEIGHT = 1e-30


def _mirror(planes: Any, pad: int) -> Any:
    return array_module(planes).pad(planes, ((0, 0), (pad, pad), (pad, pad)), mode="reflect")


def _window(radius: int) -> list[tuple[int, int]]:
    return [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1) if dy or dx]


def _box_sum(a: Any, radius: int, axes: tuple[int, ...], mirror: bool) -> Any:
    """Sum over a ``2·radius + 1`` window along each of ``axes``: mirrored borders keep the
    shape, otherwise only whole windows are summed (each axis shrinks by ``2·radius``).

    Shifted slices rather than ``ndimage.uniform_filter``: SciPy's filter along a strided axis
    is several times slower than the whole frame's memory traffic. The terms are added in window
    order, first to last, which the CUDA kernels repeat.
    """
    xp = array_module(a)
    for axis in axes:
        if mirror:
            widths = [(0, 0)] * a.ndim
            widths[axis] = (radius, radius)
            a = xp.pad(a, widths, mode="reflect")
        n = a.shape[axis] - 2 * radius
        taps = [a[(slice(None),) * axis + (slice(k, k + n),)] for k in range(2 * radius + 1)]
        total = taps[0] + taps[1] if radius else taps[0].copy()
        for tap in taps[2:]:
            total += tap
        a = total
    return a


def _b3_valid(a: Any, step: int, axis: int) -> Any:
    """The B3-spline filter with ``step - 1`` holes along ``axis`` where the whole filter fits:
    the axis shrinks by ``4·step``."""
    n = a.shape[axis] - 4 * step
    index = [slice(None)] * a.ndim

    def tap(k: int) -> Any:
        index[axis] = slice(k * step, k * step + n)
        return a[tuple(index)]

    # The filter is symmetric: pair the outer taps to save multiplications on a full frame.
    out = tap(0) + tap(4)
    out *= np.float32(_B3[0])
    inner = tap(1) + tap(3)
    inner *= np.float32(_B3[1])
    out += inner
    array_module(a).multiply(tap(2), np.float32(_B3[2]), out=inner)
    out += inner
    return out


def _smooth(planes: Any, step: int) -> Any:
    """The à trous smoothing of ``(sites, h, w)`` planes with mirrored borders."""
    return _b3_valid(_b3_valid(_mirror(planes, 2 * step), step, 1), step, 2)


@cache
def band_noise_gains(levels: int) -> tuple[float, ...]:
    """Standard deviation of each à trous detail band for white noise of unit variance.

    Computed exactly from the transform's impulse responses; Starck, Murtagh and Bijaoui
    (1998) tabulate 0.889, 0.200, 0.086, 0.041, 0.020 from simulations.
    """
    size = 4 * 2**levels + 1
    impulse = np.zeros((1, size, size), dtype=np.float64)
    impulse[0, size // 2, size // 2] = 1.0
    coarse, gains = impulse, []
    for j in range(levels):
        smooth = _smooth(coarse, 2**j)
        gains.append(float(np.sqrt(np.sum((coarse - smooth) ** 2))))
        coarse = smooth
    return tuple(gains)


def _plane_view(mosaic: Any, cfa: CFALayout) -> Any:
    """The mosaic's site planes as a ``(th, tw, H/th, W/tw)`` view (no copy)."""
    return cfa.blocks(mosaic).transpose(1, 3, 0, 2)


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    """``index`` folded into ``0 .. n-1`` by mirroring without repeating the edge, as often as
    needed: ``numpy.pad(mode="reflect")`` for any width."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * n - 2
    index = np.mod(index, period)
    return np.where(index < n, index, period - index)


def _runs(index: np.ndarray) -> list[tuple[slice, slice]]:
    """``(destination, source)`` slice pairs that copy ``source[index]`` run by run (steps of
    +1, -1 or 0), so a mirrored window is gathered with a few slice copies."""
    runs, start, size = [], 0, index.size
    steps = np.diff(index)
    while start < size:
        step = int(steps[start]) if start + 1 < size else 1
        changes = np.flatnonzero(steps[start:] != step)
        stop = start + 1 + (int(changes[0]) if changes.size else size - 1 - start)
        first, last = int(index[start]), int(index[stop - 1])
        if step == 0:
            source = slice(first, first + 1)  # one source pixel broadcast over the run
        elif step > 0 or stop - start == 1:
            source = slice(first, last + 1)
        else:
            source = slice(first, last - 1 if last > 0 else None, -1)
        runs.append((slice(start, stop), source))
        start = stop
    return runs


def _mirrored_window(planes: Any, rows: range, cols: range) -> Any:
    """``planes[:, :, rows, cols]`` of a ``(th, tw, h, w)`` plane view, indices outside the
    planes mirrored (``_reflect``), as a new contiguous array."""
    th, tw, h, w = planes.shape
    out = array_module(planes).empty((th, tw, len(rows), len(cols)), dtype=planes.dtype)
    row_runs = _runs(_reflect(np.arange(rows.start, rows.stop), h))
    col_runs = _runs(_reflect(np.arange(cols.start, cols.stop), w))
    for rd, rs in row_runs:
        for cd, cs in col_runs:
            out[:, :, rd, cd] = planes[:, :, rs, cs]
    return out


#: Tile of the array-module wavelet path on the CPU, in mosaic pixels (rows, columns; 1 MiB of
#: float32): every level of a tile is computed while its arrays stay in the processor's cache,
#: and no frame-sized temporary is allocated (their page faults cost more than their
#: arithmetic). CuPy takes the planes whole.
_CPU_TILE = (256, 1024)


def _wavelet_tile(
    coarse: Any, slope: Any, offset: Any, halo: int, params: RawDenoiseParams, gains: tuple[float, ...]
) -> Any:
    """All levels of the wavelet shrinkage on one tile.

    ``coarse`` is the tile's ``(th, tw, n + 2·halo, m + 2·halo)`` site planes with a mirrored
    halo of ``halo = 2 + 2·(1 + 2 + ... + 2^(levels-1))`` pixels: each level's smoothing uses up
    ``2·step`` of it and the energy window the last 2. Filtering the mirrored extension equals
    mirroring the filtered planes (the filters are symmetric), so the tile's result is the
    whole planes' result. ``slope`` and ``offset`` are the noise model over the tile
    (``(th, tw, n, m)``); returns the denoised tile ``(th, tw, n, m)``.
    """
    xp = array_module(coarse)
    th, tw, n, m = slope.shape
    half = _ENERGY_WINDOW // 2
    area = np.float32(_ENERGY_WINDOW**2)
    coarse = coarse.reshape(th * tw, n + 2 * halo, m + 2 * halo)
    centre = coarse[:, halo - half : halo + n + half, halo - half : halo + m + half]
    level = _box_sum(centre, half, (1, 2), mirror=False)
    level /= area
    # the band's mean energy is compared with its noise, so both are kept as window sums
    variance = NoiseModel(slope, offset, False).variance(level.reshape(th, tw, n, m))
    variance *= np.float32(params.strength**2)
    variance *= area
    variance = variance.reshape(th * tw, n, m)
    tiny = np.float32(np.finfo(np.float32).tiny)
    kept, reach = None, halo
    for j, gain in enumerate(gains):
        step = 2**j
        smooth = _b3_valid(_b3_valid(coarse, step, 1), step, 2)
        reach -= 2 * step
        detail = coarse[:, 2 * step : 2 * step + smooth.shape[1], 2 * step : 2 * step + smooth.shape[2]]
        detail -= smooth  # the tile's coarse planes are not needed again
        near = detail[:, reach - half : reach + n + half, reach - half : reach + m + half]
        energy = _box_sum(near * near, half, (1, 2), mirror=False)
        shrink = variance * np.float32(gain * gain)
        xp.subtract(energy, shrink, out=shrink)
        xp.maximum(shrink, np.float32(0.0), out=shrink)
        shrink /= xp.maximum(energy, tiny, out=energy)
        shrink *= detail[:, reach : reach + n, reach : reach + m]
        if kept is None:
            kept = shrink
        else:
            kept += shrink
        coarse = smooth
    kept += coarse[:, reach : reach + n, reach : reach + m]
    return kept.reshape(th, tw, n, m)


def _wavelet(mosaic: Any, cfa: CFALayout, noise: NoiseModel, params: RawDenoiseParams) -> Any:
    xp = array_module(mosaic)
    planes = _plane_view(mosaic, cfa)
    slope, offset = _plane_view(noise.slope, cfa), _plane_view(noise.offset, cfa)
    out = xp.empty_like(mosaic)
    out_planes = _plane_view(out, cfa)
    h, w = planes.shape[2:]
    gains = band_noise_gains(params.levels)
    halo = _ENERGY_WINDOW // 2 + 2 * (2 ** params.levels - 1)
    th, tw = cfa.tile_shape
    tile_h, tile_w = (max(1, _CPU_TILE[0] // th), max(1, _CPU_TILE[1] // tw)) if xp is np else (h, w)
    for y0 in range(0, h, tile_h):
        rows = slice(y0, min(y0 + tile_h, h))
        for x0 in range(0, w, tile_w):
            cols = slice(x0, min(x0 + tile_w, w))
            window = _mirrored_window(planes, range(rows.start - halo, rows.stop + halo), range(cols.start - halo, cols.stop + halo))
            out_planes[:, :, rows, cols] = _wavelet_tile(window, slope[:, :, rows, cols], offset[:, :, rows, cols], halo, params, gains)
    return out


def _mirror_mosaic(mosaic: Any, cfa: CFALayout, tiles: int) -> Any:
    """The mosaic mirrored by ``tiles`` CFA tiles on every side, each site from its own plane."""
    return from_site_planes(_mirror(site_planes(mosaic, cfa), tiles), cfa)


def _nlm_weight_scale(params: RawDenoiseParams) -> np.float32:
    """``-1 / (h²·patch area)``: the factor from a patch distance sum to the weight's exponent."""
    inv_h2 = np.float32(1.0 / (_NLM_H * params.strength) ** 2)
    return -inv_h2 / np.float32((2 * params.patch_radius + 1) ** 2)


def _nlm(mosaic: Any, cfa: CFALayout, noise: NoiseModel, params: RawDenoiseParams) -> Any:
    xp = array_module(mosaic)
    th, tw = cfa.tile_shape
    h, w = mosaic.shape
    r, pr = params.radius, params.patch_radius
    # Weights are symmetric, w(p, p+o) = w(p+o, p): each is computed once, over the frame grown
    # by the largest offset, and serves both pixels of its pair. The padding covers that
    # growth, the offset itself and the patch.
    reach_y, reach_x = r * th, r * tw
    tiles = 2 * r + math.ceil(pr / min(th, tw))
    top, left = tiles * th, tiles * tw
    stable = _mirror_mosaic(noise.stabilise(mosaic), cfa, tiles)
    values = _mirror_mosaic(mosaic, cfa, tiles)
    grown_h, grown_w = h + 2 * reach_y, w + 2 * reach_x
    gy, gx = top - reach_y - pr, left - reach_x - pr
    centre = stable[gy : gy + grown_h + 2 * pr, gx : gx + grown_w + 2 * pr]
    patch_area = np.float32((2 * pr + 1) ** 2)
    total = xp.zeros_like(mosaic)
    weight_sum = xp.zeros_like(mosaic)
    weight_max = xp.full_like(mosaic, np.float32(_MIN_CENTRE_WEIGHT))
    half = [(dy, dx) for dy, dx in _window(r) if (dy, dx) > (0, 0)]
    for dy, dx in half:
        oy, ox = dy * th, dx * tw
        diff = stable[gy + oy : gy + oy + grown_h + 2 * pr, gx + ox : gx + ox + grown_w + 2 * pr] - centre
        diff *= diff
        distance = _box_sum(diff, pr, (0, 1), mirror=False)  # over the grown frame exactly
        distance -= np.float32(2.0) * patch_area
        xp.maximum(distance, np.float32(0.0), out=distance)
        distance *= _nlm_weight_scale(params)
        weight = xp.exp(distance, out=distance)
        for sign in (1, -1):
            # sign 1: p with p + o (the pair's weight sits at p); -1: p with p - o (it sits at p - o)
            wy, wx = reach_y - (oy if sign < 0 else 0), reach_x - (ox if sign < 0 else 0)
            pair = weight[wy : wy + h, wx : wx + w]
            weight_sum += pair
            xp.maximum(weight_max, pair, out=weight_max)
            total += pair * values[top + sign * oy : top + sign * oy + h, left + sign * ox : left + sign * ox + w]
    total += weight_max * mosaic
    weight_sum += weight_max
    return total / weight_sum


def _spatial_weights(params: RawDenoiseParams) -> list[np.float32]:
    """The bilateral filter's spatial weight of each offset of ``_window(params.radius)``."""
    return [np.float32(math.exp(-(dy * dy + dx * dx) / (2.0 * params.spatial_sigma**2))) for dy, dx in _window(params.radius)]


def _bilateral(mosaic: Any, cfa: CFALayout, noise: NoiseModel, params: RawDenoiseParams) -> Any:
    xp = array_module(mosaic)
    planes = site_planes(mosaic, cfa)
    _, h, w = planes.shape
    r = params.radius
    plane_noise = NoiseModel(site_planes(noise.slope, cfa), site_planes(noise.offset, cfa), noise.estimated)
    level = _box_sum(planes, 1, (1, 2), mirror=True) / np.float32(9.0)
    range_width = plane_noise.sigma(level) * np.float32(_BILATERAL_RANGE * params.strength)
    inv_range = np.float32(-0.5) / (range_width * range_width)
    padded = _mirror(planes, r)
    total = planes.copy()
    weight_sum = xp.ones_like(planes)
    for (dy, dx), spatial in zip(_window(r), _spatial_weights(params), strict=True):
        other = padded[:, r + dy : r + dy + h, r + dx : r + dx + w]
        weight = other - planes
        weight *= weight
        weight *= inv_range
        xp.exp(weight, out=weight)
        weight *= spatial
        weight_sum += weight
        weight *= other
        total += weight
    total /= weight_sum
    return from_site_planes(total, cfa)


# -- CUDA kernels (kernels/raw_denoise.cu) ------------------------------------------------------

#: Launches one kernel of ``kernels/raw_denoise.cu``: ``launch(function, grid, block, args)``.
#: CuPy's launcher on a GPU; the tests pass the CPU emulator, so both run the same launches.
_KernelLaunch = Callable[[str, tuple[int, int], tuple[int, int], tuple[Any, ...]], None]

_BLOCK = (32, 8)
#: Side of a block's output tile (kernels/raw_denoise.cu: TILE).
_TILE = 32
#: The wavelet level steps with a kernel (``wavelet_level_<step>``): a level's tile halo,
#: ``2·step + 2``, and so its shared memory, grows with the step; beyond 8 it no longer fits.
_WAVELET_KERNEL_STEPS = (1, 2, 4, 8)
#: Largest NLM halo (``radius·tile + patch_radius``, mosaic pixels) and patch radius of the kernel.
_NLM_MAX_HALO = 16
_NLM_MAX_PATCH = 6
#: Largest bilateral radius of the kernel (the parameter's upper bound).
_BILATERAL_MAX_RADIUS = 7


def _cupy_launch(function: str, grid: tuple[int, int], block: tuple[int, int], args: tuple[Any, ...]) -> None:
    get_backend("cupy").kernel("raw_denoise", function)(grid, block, args)


def _tiles(n: int) -> int:
    return -(-n // _TILE)


def _plane_grid(shape: tuple[int, int], cfa: CFALayout) -> tuple[int, int]:
    """Grid of the site-plane kernels: every site's blocks of one tile column side by side in x."""
    th, tw = cfa.tile_shape
    return th * tw * _tiles(shape[1] // tw), _tiles(shape[0] // th)


def _kernel_inputs(mosaic: Any, cfa: CFALayout, noise: NoiseModel) -> tuple[Any, ...]:
    """``(mosaic, slope, offset, height, width, cfa_h, cfa_w)`` as the kernels take them."""
    xp = array_module(mosaic)
    h, w = mosaic.shape
    th, tw = cfa.tile_shape
    arrays = (xp.ascontiguousarray(a, dtype=xp.float32) for a in (mosaic, noise.slope, noise.offset))
    return (*arrays, np.int32(h), np.int32(w), np.int32(th), np.int32(tw))


def _wavelet_kernels(mosaic: Any, cfa: CFALayout, noise: NoiseModel, params: RawDenoiseParams, launch: _KernelLaunch) -> Any:
    """The wavelet shrinkage as one launch per level (``wavelet_level_<step>``).

    Each level reads its coarse planes (the mosaic first), the noise variance and the running
    sum of shrunk details, and writes the sum and the next coarse planes: 24 bytes per pixel
    for the first level (which also reads the noise model and writes the variance), 20 for
    the middle ones, 16 for the last; 60 bytes per pixel for the default three levels. All
    arrays stay in the mosaic's layout, so nothing is transposed.
    """
    xp = array_module(mosaic)
    source, slope, offset, *geometry = _kernel_inputs(mosaic, cfa, noise)
    grid = _plane_grid(mosaic.shape, cfa)
    variance, kept = xp.empty_like(source), xp.empty_like(source)
    smoothed = [xp.empty_like(source) for _ in range(min(params.levels - 1, 2))]  # ping-pong coarse planes
    coarse = source
    gains = band_noise_gains(params.levels)
    for j, gain in enumerate(gains):
        last = j == len(gains) - 1
        smooth = kept if last else smoothed[j % 2]  # the last level writes its smooth planes into the sum
        args = (coarse, slope, offset, variance, kept, smooth, *geometry, np.float32(params.strength**2), np.float32(gain * gain))
        launch(f"wavelet_level_{2**j}", grid, _BLOCK, (*args, np.int32(j == 0), np.int32(last)))
        coarse = smooth
    return kept


def _nlm_kernel(mosaic: Any, cfa: CFALayout, noise: NoiseModel, params: RawDenoiseParams, launch: _KernelLaunch) -> Any:
    """Non-local means in one launch (``nlm``): 12 bytes per pixel in (value and noise model), 4 out."""
    inputs = _kernel_inputs(mosaic, cfa, noise)
    out = array_module(mosaic).empty_like(inputs[0])
    h, w = mosaic.shape
    args = (*inputs[:3], out, *inputs[3:], np.int32(params.radius), np.int32(params.patch_radius), _nlm_weight_scale(params))
    launch("nlm", (_tiles(w), _tiles(h)), _BLOCK, args)
    return out


def _bilateral_kernel(mosaic: Any, cfa: CFALayout, noise: NoiseModel, params: RawDenoiseParams, launch: _KernelLaunch) -> Any:
    """The bilateral filter in one launch (``bilateral``): 12 bytes per pixel in, 4 out."""
    xp = array_module(mosaic)
    inputs = _kernel_inputs(mosaic, cfa, noise)
    out = xp.empty_like(inputs[0])
    r = params.radius
    # the whole (2r+1)^2 window row by row; the centre's entry is not read
    spatial = np.insert(np.asarray(_spatial_weights(params), np.float32), (2 * r + 1) ** 2 // 2, np.float32(1.0))
    args = (*inputs[:3], xp.asarray(spatial), out, *inputs[3:], np.int32(r), np.float32(_BILATERAL_RANGE * params.strength))
    launch("bilateral", _plane_grid(mosaic.shape, cfa), _BLOCK, args)
    return out


#: Kernel paths by method: ``(fits(cfa, params), run(mosaic, cfa, noise, params, launch))``;
#: parameters beyond a kernel's limits run the array-module path on the GPU.
_KERNEL_METHODS: dict[str, tuple[Callable[[CFALayout, RawDenoiseParams], bool], Callable[..., Any]]] = {
    "wavelet": (lambda cfa, p: 2 ** (p.levels - 1) in _WAVELET_KERNEL_STEPS, _wavelet_kernels),
    "nlm": (
        lambda cfa, p: p.radius * max(cfa.tile_shape) + p.patch_radius <= _NLM_MAX_HALO and p.patch_radius <= _NLM_MAX_PATCH,
        _nlm_kernel,
    ),
    "bilateral": (lambda cfa, p: p.radius <= _BILATERAL_MAX_RADIUS, _bilateral_kernel),
}


#: Raw denoising methods by name: ``fn(mosaic, cfa, noise, params) -> mosaic``, float32 ``(H, W)``
#: arrays on the mosaic's device, ``noise`` the mosaic's per-pixel :class:`NoiseModel`.
RAW_DENOISE_METHODS: dict[str, Callable[[Any, CFALayout, NoiseModel, RawDenoiseParams], Any]] = {
    "wavelet": _wavelet,
    "nlm": _nlm,
    "bilateral": _bilateral,
}


@dataclass(frozen=True)
class RawDenoiseParams:
    method: str = param("wavelet", choices=tuple(RAW_DENOISE_METHODS), doc="denoising algorithm (see isp.stages.raw_denoise)")
    strength: float = param(
        1.0,
        range=(0.0, 20.0),
        unit="sigma",
        table="iso",
        doc="multiplies the modelled noise standard deviation the filter assumes; 0 leaves the frame as it is",
    )
    levels: int = param(3, range=(1, 6), doc="wavelet: number of detail bands (scales 1, 2, 4, ... same-site pixels)")
    radius: int = param(
        2, range=(1, 7), unit="px", doc="nlm and bilateral: search window radius in same-site pixels, a (2r+1)^2 window"
    )
    patch_radius: int = param(3, range=(0, 6), unit="px", doc="nlm: radius of the compared patches, in mosaic pixels")
    spatial_sigma: float = param(
        1.0, range=(0.3, 10.0), unit="px", doc="bilateral: standard deviation of the spatial weights, in same-site pixels"
    )


def raw_denoise_mosaic(mosaic: Any, cfa: CFALayout, noise: NoiseModel, params: RawDenoiseParams) -> Any:
    """Denoise a linear mosaic whose per-pixel noise is ``noise`` with ``params.method``.

    Parameters
    ----------
    mosaic
        ``(H, W)`` float array (NumPy or CuPy), linear.
    cfa
        Its layout.
    noise
        Its noise model, ``(H, W)`` slope and offset (:func:`isp.stages.noise_model.noise_model`).
    params
        The method and its settings; ``params.strength`` must be positive.

    Returns
    -------
    ``(H, W)`` float32 array on the same device. A CuPy mosaic is denoised by the kernels of
    ``kernels/raw_denoise.cu`` where the settings fit them, by the array-module path otherwise.

    Examples
    --------
    >>> flat = np.full((8, 8), 0.25, np.float32)
    >>> noise = NoiseModel(np.full_like(flat, 1e-3), np.full_like(flat, 1e-5), False)
    >>> out = raw_denoise_mosaic(flat, CFALayout.from_name("RGGB"), noise, RawDenoiseParams())
    >>> float(np.abs(out - 0.25).max()) < 1e-6
    True
    """
    try:
        fn = RAW_DENOISE_METHODS[params.method]
    except KeyError:
        raise ConfigError(f"raw_denoise method {params.method!r} is not known; choose one of {', '.join(RAW_DENOISE_METHODS)}") from None
    xp = array_module(mosaic)
    mosaic = mosaic.astype(xp.float32, copy=False)
    if xp is not np:
        fits, kernel = _KERNEL_METHODS[params.method]
        if fits(cfa, params):
            return kernel(mosaic, cfa, noise, params, _cupy_launch)
    return fn(mosaic, cfa, noise, params)


@register_stage("raw_denoise", RawDenoiseParams, consumes="raw")
def raw_denoise(frame: RawFrame, params: RawDenoiseParams, ctx: StageContext) -> RawFrame:
    """Reduce the noise of a raw frame, each pixel judged against its modelled noise.

    On a GPU backend the frame is on the device and the CUDA kernels run (see the module's
    Schedules section).
    """
    frame.require("raw_denoise", domain="linear")
    if params.strength == 0.0:
        return frame.replace()
    model = noise_model(frame, ctx.backend.xp)
    return frame.replace(mosaic=raw_denoise_mosaic(frame.mosaic, frame.cfa, model, params))
