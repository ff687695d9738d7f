"""Sharpening: an unsharp mask on luma with soft coring and an overshoot (halo) limit.

Input and output: an Image with sRGB transfer (colour space sRGB or Display P3), float32 in
[0, 1]; the output is clipped to [0, 1]. Only the full-range BT.709 luma of
:mod:`isp.stages.yuv` is sharpened, so edges gain no colour fringes; the change of luma is added
to R', G' and B' alike.

With ``Y'`` the luma and ``G`` a Gaussian blur of sigma ``radius_px`` (mirrored border
``d c b a | a b c d``, truncated at 4 sigma, as ``scipy.ndimage.gaussian_filter``):

1. detail ``d = Y' - G(Y')``;
2. soft coring: ``d`` shrunk towards 0 by ``threshold``, ``sign(d) max(|d| - threshold, 0)``,
   so detail below the threshold (noise) is not amplified and larger detail has no step;
3. ``Y's = Y' + amount · d``;
4. halo limit: ``Y's`` clamped to ``[min - overshoot · range, max + overshoot · range]`` of the
   3×3 neighbourhood of ``Y'``, ``range = max - min``. Overshoot is what an unsharp mask draws
   as a halo beside an edge; ISPs bound it to a fraction of the local contrast. ``overshoot``
   null applies no limit.

With ``threshold = 0`` and no limit, step 3 is scikit-image's ``unsharp_mask(Y', radius_px,
amount, preserve_range=True)``. ``amount`` and ``threshold`` can be tuning tables by ISO.

References
----------
M. Petrou, C. Petrou, "Image Processing: The Fundamentals", 2nd ed., Wiley 2010, p. 357
(unsharp masking).
D. L. Donoho, "De-noising by soft-thresholding", IEEE Trans. Information Theory 41(3), 1995.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from isp.backend import array_module
from isp.config import param
from isp.frame import Image
from isp.stages.registry import StageContext, register_stage
from isp.stages.yuv import extreme_3x3, gaussian_weights, luma_plane, require_encoded_rgb, rows_with_halo, strips, symmetric_filter

__all__ = ["SharpenParams", "sharpen", "CPU_STRIP_ROWS"]

#: Rows per strip on the CPU (:func:`isp.stages.yuv.strips`); a GPU takes the image in one strip.
CPU_STRIP_ROWS = 16


@dataclass(frozen=True)
class SharpenParams:
    radius_px: float = param(1.0, range=(0.3, 10.0), unit="px", doc="sigma of the Gaussian blur the detail is taken against")
    amount: float = param(0.8, range=(0.0, 10.0), table="iso", doc="gain on the detail; 0 leaves the image unchanged")
    threshold: float = param(
        0.01, range=(0.0, 0.5), unit="code value", table="iso", doc="coring: detail below this luma difference is not amplified (soft threshold)"
    )
    overshoot: float | None = param(
        0.15, range=(0.0, 10.0), doc="halo limit: sharpened luma may pass the 3x3 min/max by this fraction of their range; null: no limit"
    )


def _luma_change(window: Any, params: SharpenParams, weights: list[float], halo: int) -> Any:
    """Sharpened minus original luma of the pixels inside a window of luma with ``halo`` mirrored rows and columns."""
    xp = array_module(window)
    dtype = window.dtype.type
    reach = len(weights) - 1
    rows, width = window.shape[0] - 2 * halo, window.shape[1] - 2 * halo
    luma = window[halo : halo + rows, halo : halo + width]
    around = window[halo - reach : halo + rows + reach, halo - reach : halo + width + reach]
    detail = symmetric_filter(around, weights, xp.empty_like(luma))
    xp.subtract(luma, detail, out=detail)
    if params.threshold:
        # soft coring sign(d)·max(|d| - t, 0) is d minus d clipped to [-t, t]
        threshold = dtype(params.threshold)
        cored = xp.clip(detail, -threshold, threshold)
        detail -= cored
    detail *= dtype(params.amount)
    if params.overshoot is None:
        return detail
    sharpened = detail
    sharpened += luma
    ring = window[halo - 1 : halo + rows + 1, halo - 1 : halo + width + 1]
    low = extreme_3x3(ring, xp.minimum)
    high = extreme_3x3(ring, xp.maximum)
    margin = high - low
    margin *= dtype(params.overshoot)
    low -= margin
    high += margin
    xp.maximum(sharpened, low, out=sharpened)
    xp.minimum(sharpened, high, out=sharpened)
    sharpened -= luma
    return sharpened


@register_stage("sharpen", SharpenParams, consumes="image")
def sharpen(image: Image, params: SharpenParams, ctx: StageContext) -> Image:
    """Unsharp-mask the luma, with soft coring and a local overshoot limit."""
    require_encoded_rgb(image, "sharpen")
    if not params.amount:
        return image
    xp = ctx.backend.xp
    rgb = image.data.astype(xp.float32, copy=False)
    luma = luma_plane(rgb)
    weights = gaussian_weights(params.radius_px)
    halo = max(1, len(weights) - 1)
    out = xp.empty_like(rgb)
    height = rgb.shape[0]
    for start, stop in strips(height, CPU_STRIP_ROWS, xp):
        change = _luma_change(rows_with_halo(luma, start, stop, halo), params, weights, halo)
        rows = out[start:stop]
        for channel in range(3):  # a change of luma alone moves R', G' and B' alike
            xp.add(rgb[start:stop, :, channel], change, out=rows[..., channel])
        xp.clip(rows, 0.0, 1.0, out=rows)
    return image.replace(data=out)
