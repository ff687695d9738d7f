"""Monochrome: a black-and-white conversion by channel mix, with optional split toning.

Input and output: an Image in linear sRGB (space ``"srgb"``, transfer ``"linear"``), float32.
The grey is a weighted sum of R, G and B; the weights ``mix`` are normalised to sum to 1, so a
grey pixel keeps its value (exactly: the sum is evaluated about G, ``g + m_r·(r - g) +
m_b·(b - g)``) and only coloured pixels depend on the mix. The default mix is the Rec. 709 /
sRGB luminance (the Y row of linear sRGB to XYZ), the grey of equal brightness; a mix heavier
in red behaves like a red filter on black-and-white film (dark skies, light skin), one heavier
in green like a green filter (lighter foliage).

Without toning the output has R = G = B. Split toning multiplies the grey by an RGB tint that
moves from ``toning_shadows`` in black to ``toning_highlights`` in white, weighted by the
grey's sRGB-encoded value (a perceptual position between black and white). Each tint is
divided by its own Rec. 709 luminance first, so toning changes hue, never brightness.

References
----------
ITU-R BT.709-6, "Parameter values for the HDTV standards", item 3.2 (luminance weights);
IEC 61966-2-1:1999 (sRGB, the same primaries and white).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isp import colorimetry
from isp.config import param
from isp.errors import ConfigError
from isp.frame import Image
from isp.stages.oetf import srgb_oetf
from isp.stages.registry import StageContext, register_stage

__all__ = ["MonochromeParams", "monochrome", "REC709_LUMINANCE"]

#: Rec. 709 / sRGB luminance weights: the Y row of linear sRGB to XYZ (0.2126, 0.7152, 0.0722).
REC709_LUMINANCE = [float(v) for v in colorimetry.SRGB_TO_XYZ[1]]

_NEUTRAL = [1.0, 1.0, 1.0]


@dataclass(frozen=True)
class MonochromeParams:
    mix: list[float] = param(
        REC709_LUMINANCE,
        shape=(3,),
        range=(-2.0, 3.0),
        doc="R, G, B weights of the grey, normalised to sum 1; Rec. 709 luminance by default, more red for a red-filter look",
    )
    toning_shadows: list[float] = param(
        _NEUTRAL, shape=(3,), range=(0.25, 4.0), doc="RGB tint of the shadows (gains, normalised to unit luminance); [1, 1, 1] for none"
    )
    toning_highlights: list[float] = param(
        _NEUTRAL, shape=(3,), range=(0.25, 4.0), doc="RGB tint of the highlights (gains, normalised to unit luminance); [1, 1, 1] for none"
    )

    def __post_init__(self) -> None:
        total = sum(self.mix)
        if not total >= 0.05:
            raise ConfigError(
                f"monochrome.mix={list(self.mix)} sums to {total:g}; the weights are normalised to sum 1, so their sum must be positive (at least 0.05)"
            )

    def normalised_mix(self) -> np.ndarray:
        """The R, G, B weights scaled to sum to 1 (host, float64)."""
        mix = np.asarray(self.mix, dtype=np.float64)
        return mix / mix.sum()


def _unit_luminance(tint: list[float]) -> np.ndarray:
    gains = np.asarray(tint, dtype=np.float64)
    return gains / float(np.dot(colorimetry.SRGB_TO_XYZ[1], gains))


@register_stage("monochrome", MonochromeParams, consumes="image")
def monochrome(image: Image, params: MonochromeParams, ctx: StageContext) -> Image:
    """Convert to black and white by a channel mix, optionally split-toned."""
    image.require("monochrome", space="srgb", transfer="linear")
    xp = ctx.backend.xp
    m_r, _, m_b = params.normalised_mix()
    r, g, b = image.data[..., 0], image.data[..., 1], image.data[..., 2]
    grey = g + float(m_r) * (r - g) + float(m_b) * (b - g)
    if params.toning_shadows == _NEUTRAL and params.toning_highlights == _NEUTRAL:
        return image.replace(data=xp.stack([grey, grey, grey], axis=-1))
    shadows = xp.asarray(_unit_luminance(params.toning_shadows), dtype=xp.float32)
    highlights = xp.asarray(_unit_luminance(params.toning_highlights), dtype=xp.float32)
    position = srgb_oetf(grey)[..., None]
    tint = shadows + position * (highlights - shadows)
    return image.replace(data=grey[..., None] * tint)
