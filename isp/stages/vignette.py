"""Creative vignetting: a radial darkening toward the corners, part of a look.

Input and output: an Image in linear sRGB. The gain is ``1 - strength · r**falloff`` where
``r`` is the distance from the centre relative to the half-diagonal (1 in the corners).
This is a look, not lens-shading correction: it adds the falloff a tuning wants. The centre and
the corners are those of the full image, so a crop of it (a tile) gets the gains of the same
pixels in the whole image.
"""

from __future__ import annotations

from dataclasses import dataclass

from isp.config import param
from isp.frame import Image
from isp.stages.registry import StageContext, register_stage

__all__ = ["VignetteParams", "vignette"]


@dataclass(frozen=True)
class VignetteParams:
    strength: float = param(0.0, range=(0.0, 1.0), doc="fraction of light removed in the corners; 0 disables the stage")
    falloff: float = param(2.0, range=(0.5, 8.0), doc="exponent of the radial profile: higher keeps the centre clear and darkens only the corners")


@register_stage("vignette", VignetteParams, consumes="image")
def vignette(image: Image, params: VignetteParams, ctx: StageContext) -> Image:
    """Darken toward the corners by ``strength`` with a radial power-law profile."""
    image.require("vignette", space="srgb", transfer="linear")
    if params.strength == 0.0:
        return image
    xp = ctx.backend.xp
    h, w = image.shape[:2]
    (top, left), (full_h, full_w) = image.origin, image.full_shape
    y = (xp.arange(top, top + h, dtype=xp.float32) - (full_h - 1) / 2.0)[:, None]
    x = (xp.arange(left, left + w, dtype=xp.float32) - (full_w - 1) / 2.0)[None, :]
    r2 = (y * y + x * x) / xp.float32(((full_h - 1) / 2.0) ** 2 + ((full_w - 1) / 2.0) ** 2)
    gain = 1.0 - xp.float32(params.strength) * r2 ** xp.float32(params.falloff / 2.0)
    return image.replace(data=image.data * gain[..., None])
