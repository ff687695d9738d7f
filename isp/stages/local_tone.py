"""Local tone mapping: compress a scene's large-scale range, keep its local contrast.

Stage ``local_tone``. Input and output: an Image in linear sRGB, scene-referred, float32; the
output is not clipped (the ``tone`` stage after it maps it to the display). Run it before ``tone``.

Method
------
The log luminance relative to the ``anchor`` level, ``L = log2(Y / anchor)`` in stops, is split
into a base ``B`` (the illumination: large areas, and the strong edges between them) and a
detail layer ``D = L - B`` (texture), with a self-guided filter (He, Sun and Tang 2010) as the
edge-preserving smoother. The new log luminance is

    L' = L + strength · ((detail - 1) · D - compression · B)

so the base is pulled towards the anchor by the fraction ``compression`` of its distance (shadows
lifted, highlights lowered, the anchor's level left where it is) and the detail layer is scaled
by ``detail``. Every channel is multiplied by the same gain ``2**(L' - L)``, which keeps the
R:G:B ratios, so hue and saturation do not change. ``strength = 0`` is the identity.

With ``target_range_ev`` set, the compression is instead what brings the base's range (between
its 1st and 99th percentiles) down to that many stops, and never more than ``compression``: a
scene already within the target is left alone.

The guided filter
-----------------
For a guide ``I`` and an input ``p``, with ``mean`` the average over the ``(2r+1)²`` window
around each pixel (borders mirrored, ``d c b a | a b c d``)::

    a = cov(I, p) / (var(I) + eps),   b = mean(p) - a · mean(I),   q = mean(a) · I + mean(b)

Where the window holds an edge whose variance is well above ``eps`` (stops²), ``a ≈ 1`` and the
edge stays in the base, so the detail layer holds no edge and no halo grows around it; where it
holds only texture of variance well below ``eps``, ``a ≈ 0`` and the base is the local mean.
Built from box filters (``ndimage.uniform_filter``), it runs unchanged on NumPy and CuPy.

References
----------
K. He, J. Sun, X. Tang, "Guided image filtering", ECCV 2010, pp. 1-14 (and IEEE TPAMI 35(6),
2013, pp. 1397-1409).
F. Durand, J. Dorsey, "Fast bilateral filtering for the display of high-dynamic-range images",
SIGGRAPH 2002 (the base/detail decomposition of log luminance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from isp.backend import array_module
from isp.config import param
from isp.frame import Image
from isp.stages.registry import StageContext, register_stage
from isp.stages.tone import luminance

__all__ = ["LocalToneParams", "local_tone", "guided_filter", "base_detail", "radius_px"]

#: Luminance is held within this many stops of the white, both ways: below any sensor's noise
#: floor, it keeps the logarithm finite for black and negative (noisy) pixels, and a NaN or an
#: infinity stays in its own pixel instead of spreading through the box filters.
_LIMIT_EV = 16.0

#: Base samples taken (at most, on a regular grid) to measure its range for ``target_range_ev``.
_RANGE_SAMPLES = 1 << 18


@dataclass(frozen=True)
class LocalToneParams:
    strength: float = param(
        0.0,
        range=(0.0, 1.0),
        table="iso",
        doc="how much of the effect to apply; 0 (the default) is the identity, so a pipeline may list the stage and leave it to the tuning",
    )
    compression: float = param(
        0.5, range=(0.0, 1.0), doc="fraction of the base's log range (its distance in stops from the anchor) to remove"
    )
    target_range_ev: float | None = param(
        None,
        range=(0.5, 20.0),
        unit="EV",
        doc="if set: compress the base's 1-99 % range to this many stops, removing at most `compression` of it",
    )
    detail: float = param(1.0, range=(0.0, 4.0), doc="gain on the detail layer (local contrast): 1 keeps it, above 1 boosts it")
    radius: float = param(0.02, range=(0.001, 0.25), unit="image diagonal", doc="guided-filter window radius as a fraction of the image diagonal")
    eps: float = param(
        0.25, range=(1e-4, 16.0), unit="stops^2", doc="guided-filter regulariser: variations of variance well below it are detail, well above it edges"
    )
    anchor: float = param(0.18, range=(0.01, 1.0), unit="linear", doc="luminance whose base level stays unchanged (mid-grey)")


def radius_px(radius: float, shape: tuple[int, ...]) -> int:
    """The window radius in pixels for a radius given as a fraction of the image diagonal (at least 1).

    Examples
    --------
    >>> radius_px(0.02, (3000, 4000))
    100
    """
    return max(1, round(radius * math.hypot(shape[0], shape[1])))


def _running_mean_down(a: np.ndarray, size: int) -> np.ndarray:
    """``scipy.ndimage.uniform_filter1d(a, size, axis=0, mode="reflect")`` of a 2-D float array, row by row.

    As scipy, a running sum in float64 of an odd window, borders mirrored; the rows are whole
    contiguous vectors, so the loop runs once per row, not per pixel.
    """
    half = size // 2
    padded = np.pad(a, ((half, half), (0, 0)), mode="symmetric")
    out = np.empty(a.shape, dtype=a.dtype)
    total = padded[:size].sum(axis=0, dtype=np.float64)
    scale = 1.0 / size
    np.multiply(total, scale, out=out[0], casting="same_kind")
    for row in range(1, a.shape[0]):
        total += padded[row + size - 1]
        total -= padded[row - 1]
        np.multiply(total, scale, out=out[row], casting="same_kind")
    return out


def guided_filter(guide: Any, src: Any, radius: int, eps: float, ndimage: ModuleType) -> Any:
    """The guided filter of He et al. (2010): ``src`` smoothed, keeping the edges of ``guide``.

    Parameters
    ----------
    guide, src
        ``(H, W)`` float arrays on one device; pass the same array twice for the self-guided
        (edge-preserving smoothing) case, which skips two box filters.
    radius
        Window radius in pixels; the window is ``(2·radius + 1)²``.
    eps
        Regulariser, in the units of ``guide`` squared.
    ndimage
        ``scipy.ndimage`` or ``cupyx.scipy.ndimage`` (``backend.ndimage``).

    Returns
    -------
    ``(H, W)`` array, dtype and device of ``src``.

    Examples
    --------
    >>> import scipy.ndimage
    >>> step = np.repeat([[0.0] * 8 + [5.0] * 8], 4, axis=0)
    >>> bool(np.abs(guided_filter(step, step, 2, 0.01, scipy.ndimage) - step).max() < 0.01)
    True
    """
    size = 2 * radius + 1

    def mean(a: Any) -> Any:
        if array_module(a) is np:
            # scipy filters axis 0 along strided columns, five times slower than along rows
            return ndimage.uniform_filter1d(_running_mean_down(a, size), size, axis=1, mode="reflect")
        return ndimage.uniform_filter(a, size=size, mode="reflect")

    mean_i = mean(guide)
    # float32 cancellation can leave a flat window's variance a hair below zero
    var_i = array_module(guide).maximum(mean(guide * guide) - mean_i * mean_i, 0.0)
    if src is guide:
        mean_p, cov_ip = mean_i, var_i
    else:
        mean_p = mean(src)
        cov_ip = mean(guide * src) - mean_i * mean_p
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return mean(a) * guide + mean(b)


def base_detail(image: Image, params: LocalToneParams, xp: ModuleType, ndimage: ModuleType) -> tuple[Any, Any]:
    """Base and detail layers ``(B, D)`` of the image's log2 luminance relative to the anchor, in stops."""
    held = xp.fmin(xp.fmax(luminance(image.data), np.float32(2.0**-_LIMIT_EV)), np.float32(2.0**_LIMIT_EV))
    log_y = xp.log2(held) - np.float32(math.log2(params.anchor))
    base = guided_filter(log_y, log_y, radius_px(params.radius, image.shape), params.eps, ndimage)
    return base, log_y - base


def _compression_for_target(base: Any, params: LocalToneParams, xp: ModuleType) -> float:
    step = max(1, math.ceil(math.sqrt(base.size / _RANGE_SAMPLES)))
    low, high = (float(v) for v in xp.percentile(base[::step, ::step], (1.0, 99.0)))
    span = high - low
    if span <= params.target_range_ev:
        return 0.0
    return min(params.compression, 1.0 - params.target_range_ev / span)


@register_stage("local_tone", LocalToneParams, consumes="image")
def local_tone(image: Image, params: LocalToneParams, ctx: StageContext) -> Image:
    """Compress the base layer of log luminance and keep or boost its detail, preserving colour."""
    image.require("local_tone", space="srgb", transfer="linear")
    if params.strength == 0.0:
        return image
    xp = ctx.backend.xp
    base, detail = base_detail(image, params, xp, ctx.backend.ndimage)
    compression = params.compression if params.target_range_ev is None else _compression_for_target(base, params, xp)
    gain_ev = np.float32(params.strength) * (np.float32(params.detail - 1.0) * detail - np.float32(compression) * base)
    gain = xp.exp2(gain_ev, out=gain_ev)
    out = xp.empty(image.data.shape, dtype=xp.result_type(image.data.dtype, gain.dtype))
    for channel in range(image.data.shape[-1]):  # channel by channel: a broadcast over 3 values loops slowly
        xp.multiply(image.data[..., channel], gain, out=out[..., channel])
    return image.replace(data=out)
