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

from isp.config import param
from isp.frame import Image
from isp.stages.registry import StageContext, register_stage
from isp.stages.yuv import add_ycbcr, require_encoded_rgb, rgb_to_ycbcr

__all__ = ["SharpenParams", "sharpen"]


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


@register_stage("sharpen", SharpenParams, consumes="image")
def sharpen(image: Image, params: SharpenParams, ctx: StageContext) -> Image:
    """Unsharp-mask the luma, with soft coring and a local overshoot limit."""
    require_encoded_rgb(image, "sharpen")
    if not params.amount:
        return image
    xp, ndi = ctx.backend.xp, ctx.backend.ndimage
    rgb = image.data.astype(xp.float32, copy=False)
    y, _, _ = rgb_to_ycbcr(rgb)
    detail = y - ndi.gaussian_filter(y, params.radius_px, mode="reflect", truncate=4.0)
    if params.threshold:
        detail = xp.sign(detail) * xp.maximum(xp.abs(detail) - params.threshold, 0.0)
    sharpened = y + detail * params.amount
    if params.overshoot is not None:
        low = ndi.minimum_filter(y, size=3, mode="reflect")
        high = ndi.maximum_filter(y, size=3, mode="reflect")
        margin = (high - low) * params.overshoot
        sharpened = xp.minimum(xp.maximum(sharpened, low - margin), high + margin)
    return image.replace(data=add_ycbcr(rgb, sharpened - y))
