"""Film grain for looks: band-limited Gaussian noise, strongest in the mid-tones.

Input and output: a float Image with the sRGB transfer (encoded values in [0, 1], any colour
space). The grain is added to the code values and the result clipped to [0, 1]::

    out = clip(v + amount · 4·v·(1 - v) · n, 0, 1)

``n`` is a unit-variance field: white Gaussian noise low-passed with a Gaussian of sigma
``size_px`` and scaled back to unit variance, so ``amount`` is the standard deviation of the
grain at mid-grey (v = 0.5) whatever its size. The envelope ``4·v·(1 - v)`` is 1 at mid-grey
and fades to 0 at black and white, as the density of developed grain does on film; black and
white pixels are left exactly as they are. ``luma_only`` draws one field for all three
channels (the silver grain of black-and-white film), otherwise one per channel (the dye
clouds of colour film).

The white noise is counter-based (Philox4x32-10, :mod:`isp.rng`): each value is a function of
the run's seed, the ``"grain"`` stream, the channel and the pixel's position in the full image,
so a crop of the image (a tile, :meth:`isp.frame.Image.crop`) gets exactly the grain of the same
pixels in the whole image, and NumPy and CuPy draw the same numbers (the uniforms bit for bit,
the normals up to the float32 rounding of their logarithm, sine and cosine). One
Philox block gives four normals (Box-Muller), the noise of four neighbouring pixels of a row;
its counter is the index of that group of four in the full image. The low-pass wraps around the
image edges (the noise of row ``y`` and column ``x`` outside the image is that of ``(y mod H,
x mod W)``), which keeps the grain's variance the same at the borders as in the middle.

References
----------
A. Newson, J. Delon, B. Galerne, "A stochastic film grain model for resolution-independent
rendering", Computer Graphics Forum 36(8), 2017: a physical (Boolean) model of grains, of
which the filtered noise here is the cheap second-order approximation a look needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from isp.backend import Backend
from isp.config import param
from isp.frame import Image
from isp.rng import normal_pair, philox4x32, stream_id, uniform01
from isp.stages.registry import StageContext, register_stage

__all__ = ["GrainParams", "grain", "grain_kernel", "grain_field"]

#: Kernel radius in sigmas: beyond 4 sigma a Gaussian tap is below 3.4e-4 of the centre one.
_TRUNCATE_SIGMAS = 4.0


def grain_kernel(size_px: float) -> np.ndarray:
    """The 1D low-pass applied along rows and columns, scaled so that white noise of unit
    variance stays at unit variance after filtering both axes (host, float64).

    ``size_px = 0`` gives ``[1.0]``: one-pixel grain.

    Examples
    --------
    >>> k = grain_kernel(2.0)
    >>> len(k), round(float(np.sum(k**2)), 12)
    (17, 1.0)
    """
    if size_px == 0.0:
        return np.ones(1)
    radius = int(_TRUNCATE_SIGMAS * size_px + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / size_px) ** 2)
    # the 2D filter is the outer product of two of these, so its energy is the product of theirs
    return taps / np.sqrt(np.sum(taps**2))


#: Pixels of a row that share one Philox block (its four normals).
_GROUP_PX = 4
#: Rows whose noise is drawn at once: Philox's integer temporaries stay a few MB, not several
#: times a 50 MP frame.
_STRIP_ROWS = 256
_MASK_32 = 0xFFFFFFFF


def _white_noise(rows: np.ndarray, cols: np.ndarray, channels: int, seed: int, full_width: int, xp: Any) -> Any:
    """Standard normals ``(len(rows), len(cols), channels)`` float32 at full-image ``rows`` and
    ``cols`` (host int64 arrays, each within the image) for the run's ``seed``."""
    out = xp.empty((len(rows), len(cols), channels), dtype=xp.float32)
    for start in range(0, len(rows), _STRIP_ROWS):
        out[start : start + _STRIP_ROWS] = _white_noise_strip(rows[start : start + _STRIP_ROWS], cols, channels, seed, full_width, xp)
    return out


def _white_noise_strip(rows: np.ndarray, cols: np.ndarray, channels: int, seed: int, full_width: int, xp: Any) -> Any:
    groups_per_row = -(-full_width // _GROUP_PX)
    unique_rows, row_at = np.unique(rows, return_inverse=True)
    unique_groups, group_at = np.unique(cols // _GROUP_PX, return_inverse=True)
    # Philox runs once per group of four pixels; each pixel then picks its lane.
    index = xp.asarray(unique_rows.astype(np.uint64))[:, None] * np.uint64(groups_per_row) + xp.asarray(unique_groups.astype(np.uint64))[None, :]
    low, high = (index & np.uint64(_MASK_32)).astype(xp.uint32), (index >> np.uint64(32)).astype(xp.uint32)
    key = (seed & _MASK_32, (seed >> 32) & _MASK_32)
    take_rows = xp.asarray(row_at.reshape(-1))
    take_cols = xp.asarray(group_at.reshape(-1) * _GROUP_PX + cols % _GROUP_PX)
    fields = []
    for channel in range(channels):
        bits = philox4x32((low, high, channel, stream_id("grain")), key, xp)
        n0, n1 = normal_pair(uniform01(bits[0], xp), uniform01(bits[1], xp), xp)
        n2, n3 = normal_pair(uniform01(bits[2], xp), uniform01(bits[3], xp), xp)
        lanes = xp.stack([n0, n1, n2, n3], axis=-1).reshape(len(unique_rows), len(unique_groups) * _GROUP_PX)
        fields.append(xp.take(xp.take(lanes, take_rows, axis=0), take_cols, axis=1))
    return xp.stack(fields, axis=-1)


def grain_field(
    shape: tuple[int, int],
    channels: int,
    size_px: float,
    seed: int,
    backend: Backend,
    origin: tuple[int, int] = (0, 0),
    full_shape: tuple[int, int] | None = None,
) -> Any:
    """The unit-variance grain field ``(H, W, channels)`` float32 of a crop of the full image.

    Parameters
    ----------
    shape
        ``(H, W)`` of the image or crop.
    channels
        1 (luma grain) or 3 (one field per channel).
    size_px
        Sigma of the Gaussian low-pass (:func:`grain_kernel`).
    seed
        The run's seed.
    backend
        Where the field is made.
    origin, full_shape
        The crop's top-left pixel in the full image and the full image's ``(H, W)``; default:
        the image is whole.
    """
    xp, ndi = backend.xp, backend.ndimage
    full_h, full_w = tuple(shape) if full_shape is None else tuple(full_shape)
    kernel = grain_kernel(size_px)
    reach = len(kernel) // 2
    # the white noise of the crop and of the low-pass's reach around it, wrapped at the image edges
    rows = np.arange(origin[0] - reach, origin[0] + shape[0] + reach) % full_h
    cols = np.arange(origin[1] - reach, origin[1] + shape[1] + reach) % full_w
    noise = _white_noise(rows, cols, channels, seed, full_w, xp)
    if reach:
        taps = xp.asarray(kernel, dtype=xp.float32)
        # each output pixel is a sum over its own neighbourhood, so the values inside the reach
        # do not depend on the border mode, only on the noise around them
        noise = ndi.correlate1d(noise, taps, axis=0, mode="nearest")[reach:-reach]
        noise = ndi.correlate1d(noise, taps, axis=1, mode="nearest")[:, reach:-reach]
    return noise


@dataclass(frozen=True)
class GrainParams:
    amount: float = param(
        0.0, range=(0.0, 0.25), table="iso", doc="standard deviation of the grain in code values at mid-grey; 0 disables the stage"
    )
    size_px: float = param(1.0, range=(0.0, 8.0), unit="px", doc="grain size: sigma of the Gaussian low-pass of the noise; 0 gives one-pixel grain")
    luma_only: bool = param(True, doc="one grain field for R, G and B (monochrome grain) rather than one per channel (colour grain)")


@register_stage("grain", GrainParams, consumes="image")
def grain(image: Image, params: GrainParams, ctx: StageContext) -> Image:
    """Add film grain, strongest in the mid-tones, fading to nothing at black and white."""
    image.require("grain", transfer="srgb")
    if params.amount == 0.0:
        return image
    xp = ctx.backend.xp
    h, w, _ = image.shape
    channels = 1 if params.luma_only else 3
    noise = grain_field((h, w), channels, params.size_px, ctx.seed, ctx.backend, origin=image.origin, full_shape=image.full_shape)
    v = xp.clip(image.data, 0.0, 1.0)
    envelope = 4.0 * v * (1.0 - v)
    out = image.data + (float(params.amount) * envelope) * noise
    return image.replace(data=xp.clip(out, 0.0, 1.0))
