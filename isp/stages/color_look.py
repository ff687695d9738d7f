"""Colour look: global saturation and hue-selective adjustments in Oklab / OkLCh.

Input and output: an Image in linear sRGB (space ``"srgb"``, transfer ``"linear"``), float32;
values outside [0, 1] pass through (the encoder clips), and colours pushed out of the sRGB
gamut by a saturation boost are left for the encoder too.

Each pixel is taken to Oklab (lightness ``L``, opponent axes ``a``, ``b``); its OkLCh hue
``h = atan2(b, a)`` selects, from smooth periodic curves through the tuning's control hues,

- a hue rotation ``hue_shift_deg(h)``,
- a chroma scale ``hue_saturation(h)`` (times the global ``saturation``),
- a relative lightness change ``hue_lightness(h)``: ``L · (1 + hue_lightness(h) · w(C))``,
  where ``w`` rises smoothly from 0 at chroma 0 to 1 at :data:`LIGHTNESS_FULL_CHROMA`, because
  the hue of a near-grey is noise and must not pick its lightness.

All curves are evaluated at the pixel's original hue. The curves are periodic shape-preserving
cubics (PCHIP): they pass through the control values, are smooth, and do not overshoot, so an
adjustment at skin hues leaves the other hues where the control values say.

OkLCh hue angles are not HSV's: the sRGB primaries and secondaries sit near red 29°, yellow
110°, green 142°, cyan 195°, blue 264° and magenta 328°; skin tones near 40-70°, blue sky near
230-260°.

Greys stay exactly grey, for any parameters: the Oklab matrices are applied in a difference
form (the ``a`` and ``b`` rows sum to 0, the others to 1), so ``R = G = B`` gives ``a = b = 0``
bit-exactly, every adjustment keeps ``a = b = 0``, and the way back gives ``R = G = B``.

References
----------
B. Ottosson, "A perceptual color space for image processing", 2020,
https://bottosson.github.io/posts/oklab/ (the linear-sRGB matrices used here).
F. N. Fritsch, J. Butland, "A method for constructing local monotone piecewise cubic
interpolants", SIAM J. Sci. Stat. Comput. 5(2), 1984 (PCHIP).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.interpolate import PchipInterpolator

from isp.backend import array_module
from isp.config import param
from isp.errors import ConfigError
from isp.frame import Image
from isp.stages.registry import StageContext, register_stage

__all__ = [
    "ColorLookParams",
    "color_look",
    "srgb_to_oklab",
    "oklab_to_srgb",
    "hue_curve",
    "LIGHTNESS_FULL_CHROMA",
    "HUE_TABLE_STEPS",
]

#: Oklab chroma above which ``hue_lightness`` acts in full (skin and sky sit near 0.05-0.1).
LIGHTNESS_FULL_CHROMA = 0.04
#: Samples of the hue curves over one turn; the device interpolates linearly between them
#: (0.5° apart, far finer than any curve through control hues varies).
HUE_TABLE_STEPS = 720

# Ottosson's linear sRGB -> LMS and LMS^(1/3) -> Oklab matrices. Each row is made to sum
# exactly to 1 (LMS, L) or 0 (a, b) by deriving its middle entry; the published rows already
# do to 1e-8, so this changes nothing measurable but makes greys exact.
_RGB_TO_LMS = np.array(
    [
        [0.4122214708, 0.0, 0.0514459929],
        [0.2119034982, 0.0, 0.1073969566],
        [0.0883024619, 0.0, 0.6299787005],
    ]
)
_RGB_TO_LMS[:, 1] = 1.0 - _RGB_TO_LMS[:, 0] - _RGB_TO_LMS[:, 2]
_LMS_TO_LAB = np.array(
    [
        [0.2104542553, 0.0, -0.0040720468],
        [1.9779984951, 0.0, 0.4505937099],
        [0.0259040371, 0.0, -0.8086757660],
    ]
)
_LMS_TO_LAB[:, 1] = np.array([1.0, 0.0, 0.0]) - _LMS_TO_LAB[:, 0] - _LMS_TO_LAB[:, 2]
# Exact inverses of the balanced matrices: their rows sum to 1 (LMS -> RGB) and their first
# column is 1 (Oklab -> LMS^(1/3)), again to float64 precision.
_LMS_TO_RGB = np.linalg.inv(_RGB_TO_LMS)
_LAB_TO_LMS = np.linalg.inv(_LMS_TO_LAB)


def _mix_about_middle(x: Any, y: Any, z: Any, row: np.ndarray, base: float) -> Any:
    """``row @ (x, y, z)`` for a row summing to ``base`` (1 or 0), written about ``y``.

    ``base·y + row[0]·(x - y) + row[2]·(z - y)`` equals the plain product, but is exactly
    ``base·y`` when ``x = y = z``, which is what keeps greys grey through float32 rounding.
    """
    out = float(row[0]) * (x - y) + float(row[2]) * (z - y)
    return out + y if base else out


def _to_oklab(r: Any, g: Any, b: Any) -> tuple[Any, Any, Any]:
    xp = array_module(r)
    l_, m_, s_ = (xp.cbrt(_mix_about_middle(r, g, b, row, 1.0)) for row in _RGB_TO_LMS)
    return (
        _mix_about_middle(l_, m_, s_, _LMS_TO_LAB[0], 1.0),
        _mix_about_middle(l_, m_, s_, _LMS_TO_LAB[1], 0.0),
        _mix_about_middle(l_, m_, s_, _LMS_TO_LAB[2], 0.0),
    )


def _from_oklab(lightness: Any, a: Any, b: Any) -> tuple[Any, Any, Any]:
    l_, m_, s_ = (lightness + float(row[1]) * a + float(row[2]) * b for row in _LAB_TO_LMS)
    l, m, s = l_ * l_ * l_, m_ * m_ * m_, s_ * s_ * s_
    return tuple(_mix_about_middle(l, m, s, row, 1.0) for row in _LMS_TO_RGB)


def srgb_to_oklab(rgb: Any) -> Any:
    """Linear sRGB ``(..., 3)`` to Oklab ``(..., 3)`` (L, a, b) on any backend, in its dtype.

    Negative values (outside the sRGB gamut) are allowed: the cube root keeps their sign.

    Examples
    --------
    >>> import numpy as np
    >>> srgb_to_oklab(np.array([1.0, 1.0, 1.0])).round(6).tolist()
    [1.0, 0.0, 0.0]
    """
    xp = array_module(rgb)
    return xp.stack(_to_oklab(rgb[..., 0], rgb[..., 1], rgb[..., 2]), axis=-1)


def oklab_to_srgb(lab: Any) -> Any:
    """Oklab ``(..., 3)`` to linear sRGB ``(..., 3)``, the inverse of :func:`srgb_to_oklab`."""
    xp = array_module(lab)
    return xp.stack(_from_oklab(lab[..., 0], lab[..., 1], lab[..., 2]), axis=-1)


def hue_curve(hues_deg: list[float], values: list[float], at_deg: np.ndarray) -> np.ndarray:
    """The periodic shape-preserving cubic through ``(hues_deg, values)`` at ``at_deg`` (host).

    ``hues_deg`` increase within [0, 360); the curve repeats every 360°. One control point
    gives a constant.

    Examples
    --------
    >>> hue_curve([0.0, 120.0, 240.0], [0.0, 10.0, 0.0], np.array([120.0, 360.0])).tolist()
    [10.0, 0.0]
    """
    x = np.asarray(hues_deg, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if len(x) == 1:
        return np.full(np.shape(at_deg), y[0])
    # PCHIP slopes depend on neighbouring points only, so one period of copies on each side
    # makes the curve over [0, 360] exactly periodic
    return PchipInterpolator(np.concatenate([x - 360.0, x, x + 360.0]), np.tile(y, 3))(at_deg)


@dataclass(frozen=True)
class ColorLookParams:
    saturation: float = param(
        1.0, range=(0.0, 3.0), table="iso", doc="global chroma scale in Oklab; 0 gives greys, 1 keeps colours, greys are never changed"
    )
    hues: list[float] = param(
        [0.0, 60.0, 120.0, 180.0, 240.0, 300.0],
        range=(0.0, 360.0),
        unit="deg",
        doc="control hues (OkLCh hue angle, increasing, below 360) at which the hue_* lists below are given",
    )
    hue_shift_deg: list[float] = param(
        [0.0] * 6, range=(-90.0, 90.0), unit="deg", doc="hue rotation at each control hue (positive: toward higher OkLCh hue)"
    )
    hue_saturation: list[float] = param(
        [1.0] * 6, range=(0.0, 3.0), doc="chroma scale at each control hue, on top of the global saturation"
    )
    hue_lightness: list[float] = param(
        [0.0] * 6, range=(-0.5, 0.5), doc="relative change of Oklab lightness at each control hue (-0.1: 10 % darker); fades out toward greys"
    )

    def __post_init__(self) -> None:
        n = len(self.hues)
        if n == 0:
            raise ConfigError("color_look.hues: give at least one control hue")
        if any(b <= a for a, b in zip(self.hues, self.hues[1:], strict=False)) or self.hues[-1] >= 360.0:
            raise ConfigError(f"color_look.hues={list(self.hues)}: control hues must increase and lie in [0, 360)")
        for name in ("hue_shift_deg", "hue_saturation", "hue_lightness"):
            if len(getattr(self, name)) != n:
                raise ConfigError(
                    f"color_look.{name}: has {len(getattr(self, name))} values but color_look.hues has {n}; give one per control hue"
                )

    @property
    def is_identity(self) -> bool:
        return (
            self.saturation == 1.0
            and all(v == 0.0 for v in self.hue_shift_deg)
            and all(v == 1.0 for v in self.hue_saturation)
            and all(v == 0.0 for v in self.hue_lightness)
        )

    def hue_table(self) -> np.ndarray:
        """``(HUE_TABLE_STEPS + 1, 3)`` float32 on the host: per hue step, the combined
        rotation-and-scale of (a, b) as ``(s·cos θ, s·sin θ)`` with ``s`` the per-hue chroma
        scale, and the relative lightness change; the last row repeats the first (360° = 0°)."""
        at = np.arange(HUE_TABLE_STEPS + 1) * (360.0 / HUE_TABLE_STEPS)
        theta = np.radians(hue_curve(self.hues, self.hue_shift_deg, at))
        scale = hue_curve(self.hues, self.hue_saturation, at)
        table = np.stack([scale * np.cos(theta), scale * np.sin(theta), hue_curve(self.hues, self.hue_lightness, at)], axis=-1)
        table[-1] = table[0]
        return table.astype(np.float32)


@register_stage("color_look", ColorLookParams, consumes="image")
def color_look(image: Image, params: ColorLookParams, ctx: StageContext) -> Image:
    """Apply global saturation and per-hue shift, saturation and lightness in OkLCh."""
    image.require("color_look", space="srgb", transfer="linear")
    if params.is_identity:
        return image
    xp = ctx.backend.xp
    data = image.data
    lightness, a, b = _to_oklab(data[..., 0], data[..., 1], data[..., 2])

    table = xp.asarray(params.hue_table())
    position = xp.arctan2(b, a) * (HUE_TABLE_STEPS / (2.0 * math.pi))
    position = xp.where(position < 0.0, position + float(HUE_TABLE_STEPS), position)
    index = xp.minimum(position.astype(xp.int32), HUE_TABLE_STEPS - 1)
    frac = (position - index.astype(xp.float32))[..., None]
    below = table[index]
    curves = below + frac * (table[index + 1] - below)
    cos_gain = curves[..., 0] * float(params.saturation)
    sin_gain = curves[..., 1] * float(params.saturation)

    chroma = xp.minimum(xp.hypot(a, b) * (1.0 / LIGHTNESS_FULL_CHROMA), 1.0)
    weight = chroma * chroma * (3.0 - 2.0 * chroma)
    new_lightness = lightness * (1.0 + curves[..., 2] * weight)
    new_a = cos_gain * a - sin_gain * b
    new_b = sin_gain * a + cos_gain * b
    out = xp.stack(_from_oklab(new_lightness, new_a, new_b), axis=-1)
    return image.replace(data=out.astype(xp.float32, copy=False))
