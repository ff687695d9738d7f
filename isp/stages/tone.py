"""Global tone: exposure compensation and a contrast S-curve.

Input and output: an Image in linear sRGB. The S-curve acts on the sRGB-encoded value ``u``,
``(1 - c)·u + c·(3u² - 2u³)``, so that contrast pivots about the perceptual mid-tone and
black and white stay fixed; ``contrast = 0`` is the identity. Values are clipped to [0, 1]
where the curve is applied.
"""

from __future__ import annotations

from dataclasses import dataclass

from isp.config import param
from isp.frame import Image
from isp.stages.oetf import srgb_eotf, srgb_oetf
from isp.stages.registry import StageContext, register_stage

__all__ = ["ToneParams", "tone"]


@dataclass(frozen=True)
class ToneParams:
    exposure_ev: float = param(0.0, range=(-8.0, 8.0), unit="EV", doc="exposure compensation (a gain of 2**ev on linear light)")
    use_baseline_exposure: bool = param(True, doc="add the frame's baseline exposure (DNG BaselineExposure)")
    contrast: float = param(0.0, range=(0.0, 1.0), doc="strength of the S-curve about the mid-tone; 0 leaves tones as they are")


@register_stage("tone", ToneParams, consumes="image")
def tone(image: Image, params: ToneParams, ctx: StageContext) -> Image:
    """Apply exposure compensation and a contrast S-curve to linear sRGB."""
    image.require("tone", space="srgb", transfer="linear")
    ev = params.exposure_ev + (image.info.baseline_exposure_ev if params.use_baseline_exposure else 0.0)
    data = image.data * image.data.dtype.type(2.0**ev) if ev else image.data
    if params.contrast:
        c = params.contrast
        u = srgb_oetf(data)
        data = srgb_eotf((1.0 - c) * u + c * (u * u * (3.0 - 2.0 * u)))
    return image.replace(data=data)
