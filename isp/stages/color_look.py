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

#: ``(x, y, z)`` to ``(x - y, y, z - y)``: every product is exact and ``x - y`` is rounded once,
#: whatever order a matrix product sums in, so ``x = y = z`` gives exactly ``(0, y, 0)``.
_ABOUT_MIDDLE = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 1.0]])


def _about_middle(matrix: np.ndarray, base: tuple[float, float, float]) -> np.ndarray:
    """The matrix acting on ``(x - y, y, z - y)`` that equals ``matrix`` on ``(x, y, z)``.

    Its middle column is each row's sum, which the matrices above make 1 or 0 (``base``);
    written exactly, ``(0, y, 0)`` maps exactly to ``base·y``: a grey stays grey through
    float32 rounding.
    """
    return np.stack([matrix[:, 0], np.asarray(base, dtype=np.float64), matrix[:, 2]], axis=1)


_RGB_TO_LMS_ABOUT_MIDDLE = _about_middle(_RGB_TO_LMS, (1.0, 1.0, 1.0))
_LMS_TO_LAB_ABOUT_MIDDLE = _about_middle(_LMS_TO_LAB, (1.0, 0.0, 0.0))
_LMS_TO_RGB_ABOUT_MIDDLE = _about_middle(_LMS_TO_RGB, (1.0, 1.0, 1.0))


def _cube_root(x: Any) -> Any:
    """The real cube root of ``x``, in place (``x`` is a fresh intermediate).

    NumPy's ``cbrt`` has no vector implementation and costs as much as ten passes of ``exp``;
    ``exp(log|x| / 3)``, with the sign restored where there are negatives, is within 1e-6
    relative of it for |x| above 1e-6, and exactly 0 at 0. CuPy's ``cbrt`` is one fast pass.
    """
    xp = array_module(x)
    if xp is not np:
        return xp.cbrt(x, out=x)
    negatives = x.size > 0 and bool(np.fmin.reduce(x, axis=None) < 0)  # fmin passes NaN over
    magnitude = np.abs(x) if negatives else x
    with np.errstate(divide="ignore"):  # log(0) = -inf, whose exp is the 0 wanted
        np.log(magnitude, out=magnitude)
    magnitude *= magnitude.dtype.type(1.0 / 3.0)
    np.exp(magnitude, out=magnitude)
    return np.copysign(magnitude, x, out=x) if negatives else x


def _oklab_planes(pixels: Any) -> Any:
    """Linear sRGB pixels ``(N, 3)`` to Oklab planes ``(3, N)`` (L, a, b), in three small matrix products.

    Each matrix is applied about the middle channel (:data:`_ABOUT_MIDDLE`), so a grey pixel
    gives ``a = b = 0`` bit-exactly.
    """
    xp = array_module(pixels)
    dtype = pixels.dtype
    about = xp.asarray(_ABOUT_MIDDLE, dtype=dtype)
    differences = xp.matmul(about, pixels.T)
    lms = xp.matmul(xp.asarray(_RGB_TO_LMS_ABOUT_MIDDLE, dtype=dtype), differences)
    _cube_root(lms)
    xp.matmul(about, lms, out=differences)
    return xp.matmul(xp.asarray(_LMS_TO_LAB_ABOUT_MIDDLE, dtype=dtype), differences, out=lms)


def _srgb_pixels(lab: Any, out: Any = None) -> Any:
    """Oklab planes ``(3, N)`` to linear sRGB pixels ``(N, 3)``, the inverse of :func:`_oklab_planes`.

    ``a = b = 0`` gives three equal LMS values (the first column of the inverse is 1), which
    the last matrix, applied about the middle, maps to exactly equal R, G, B. Every product
    is ``(3, 3) @ (3, N)``: OpenBLAS threads the ``(N, 3) @ (3, 3)`` form badly on a busy
    machine, and three column copies interleave the planes for less than one such product.
    """
    xp = array_module(lab)
    dtype = lab.dtype
    lms = xp.matmul(xp.asarray(_LAB_TO_LMS, dtype=dtype), lab)
    squared = lms * lms
    lms *= squared
    differences = xp.matmul(xp.asarray(_ABOUT_MIDDLE, dtype=dtype), lms, out=squared)
    rgb = xp.matmul(xp.asarray(_LMS_TO_RGB_ABOUT_MIDDLE, dtype=dtype), differences, out=lms)
    if out is None:
        out = xp.empty(rgb.shape[::-1], dtype=dtype)
    for channel in range(3):
        out[:, channel] = rgb[channel]
    return out


def _pixels(values: Any) -> Any:
    """``(..., 3)`` values as contiguous ``(N, 3)`` pixels of a floating dtype (float32 at least)."""
    xp = array_module(values)
    dtype = xp.result_type(values.dtype, xp.float32)
    return xp.ascontiguousarray(values, dtype=dtype).reshape(-1, 3)


def srgb_to_oklab(rgb: Any) -> Any:
    """Linear sRGB ``(..., 3)`` to Oklab ``(..., 3)`` (L, a, b) on any backend, in its dtype.

    Negative values (outside the sRGB gamut) are allowed: the cube root keeps their sign.

    Examples
    --------
    >>> import numpy as np
    >>> srgb_to_oklab(np.array([1.0, 1.0, 1.0])).round(6).tolist()
    [1.0, 0.0, 0.0]
    """
    return _oklab_planes(_pixels(rgb)).T.reshape(rgb.shape)


def oklab_to_srgb(lab: Any) -> Any:
    """Oklab ``(..., 3)`` to linear sRGB ``(..., 3)``, the inverse of :func:`srgb_to_oklab`."""
    return _srgb_pixels(_pixels(lab).T).reshape(lab.shape)


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


#: ``atan(t) ≈ t · Σ c_k t^(2k)`` on [0, 1]: a least-squares fit reweighted to equal ripple,
#: within 2.5e-7 rad of ``atan`` (3.3e-7 evaluated in float32), 4e-5 of a hue-table step.
_ATAN_COEFFICIENTS = (
    0.9999961136030137,
    -0.33317374856928655,
    0.19807878144205093,
    -0.13233583869717164,
    0.07962814451946998,
    -0.03360814468903674,
    0.00681310523134375,
)


def _hue_position(a: Any, b: Any) -> Any:
    """OkLCh hue of each pixel as a position in the hue table, in ``[0, HUE_TABLE_STEPS]``.

    ``atan2(b, a)`` from the octant of ``(a, b)`` and a polynomial ``atan`` of
    ``min(|a|, |b|) / max(|a|, |b|)``: NumPy's ``arctan`` and ``arctan2`` branch per value and
    cost as much as 30 and 100 passes of arithmetic. A grey (``a = b = 0``, zeros of either
    sign) gets hue 0, which acts on nothing at chroma 0.
    """
    xp = array_module(a)
    dtype = a.dtype.type
    steps_per_radian = HUE_TABLE_STEPS / (2.0 * math.pi)
    eighth, quarter, half = (dtype(HUE_TABLE_STEPS * f) for f in (0.125, 0.25, 0.5))
    across, up = xp.abs(a), xp.abs(b)
    ratio = xp.minimum(across, up)
    with np.errstate(invalid="ignore"):  # 0/0 at a grey: NaN, handled at the end
        ratio /= xp.maximum(across, up)
    square = ratio * ratio
    *higher, first = (dtype(c * steps_per_radian) for c in reversed(_ATAN_COEFFICIENTS))  # in table steps
    position = xp.multiply(square, higher[0])
    for coefficient in higher[1:]:
        position += coefficient
        position *= square
    position += first
    position *= ratio
    # from the first octant to the circle: r -> π/2 - r above the diagonal, π - r left of the
    # b axis, 2π - r below the a axis, each as K - copysign(K - r, side) without branches
    across -= up
    for bound, side in ((eighth, across), (quarter, a), (half, b)):
        xp.subtract(bound, position, out=position)
        xp.copysign(position, side, out=position)
        xp.subtract(bound, position, out=position)
    return xp.fmax(position, dtype(0.0), out=position)  # fmax turns the NaN of 0/0 into 0


#: Pixels per chunk on the CPU: a chunk's planes stay in the processor's caches, which more
#: than halves the time of these passes (bound by memory traffic); a GPU takes all at once.
CPU_CHUNK_PIXELS = 1 << 14


def _hue_tables(params: ColorLookParams, xp: Any) -> list[Any]:
    """Per curve (cosine and sine gains, lightness change): a float32 scalar where it is the same
    at every hue, else ``(values, steps)`` on the device, each ``(HUE_TABLE_STEPS + 1,)``.

    The global saturation scales the rotation, folded into the table once instead of per pixel.
    """
    table = params.hue_table()
    table[:, :2] = (table[:, :2].astype(np.float64) * params.saturation).astype(np.float32)
    curves = []
    for column in table.T:
        if np.all(column == column[0]):
            curves.append(np.float32(column[0]))
        else:
            # the step to the next entry, in float32 as the interpolation takes it; the last entry repeats the first
            steps = np.append(np.diff(column), np.float32(0.0))
            curves.append((xp.asarray(np.ascontiguousarray(column)), xp.asarray(steps)))
    return curves


def _hue_curves(a: Any, b: Any, tables: list[Any]) -> list[Any]:
    """Each curve of :func:`_hue_tables` at the hue of each pixel, interpolated linearly (scalars stay scalars)."""
    xp = array_module(a)
    if all(isinstance(t, np.floating) for t in tables):
        return list(tables)
    position = _hue_position(a, b)
    index = xp.floor(position)
    position -= index  # now the fraction towards the next entry
    index = index.astype(xp.intp)
    curves = []
    for table in tables:
        if isinstance(table, np.floating):
            curves.append(table)
            continue
        values, steps = table
        change = xp.take(steps, index)
        change *= position
        change += xp.take(values, index)
        curves.append(change)
    return curves


def _look(pixels: Any, tables: list[Any], out: Any) -> None:
    """The look of linear sRGB pixels ``(n, 3)`` into ``out`` ``(n, 3)``."""
    xp = array_module(pixels)
    lab = _oklab_planes(pixels)
    lightness, a, b = lab
    cos_gain, sin_gain, lightness_change = _hue_curves(a, b, tables)
    if not (isinstance(lightness_change, np.floating) and lightness_change == 0.0):
        # L·(1 + change·w(C)), w rising from 0 at chroma 0 to 1 at LIGHTNESS_FULL_CHROMA (smoothstep)
        one = lightness.dtype.type(1.0)
        chroma = a * a
        chroma += b * b
        xp.sqrt(chroma, out=chroma)
        chroma *= lightness.dtype.type(1.0 / LIGHTNESS_FULL_CHROMA)
        xp.minimum(chroma, one, out=chroma)
        weight = chroma * chroma
        chroma *= lightness.dtype.type(-2.0)
        chroma += lightness.dtype.type(3.0)
        weight *= chroma
        weight *= lightness_change
        weight += one
        lightness *= weight
    if isinstance(sin_gain, np.floating) and sin_gain == 0.0:
        a *= cos_gain
        b *= cos_gain
    else:
        a_sin = a * sin_gain
        b_sin = b * sin_gain
        a *= cos_gain
        a -= b_sin
        b *= cos_gain
        b += a_sin
    _srgb_pixels(lab, out=out)


@register_stage("color_look", ColorLookParams, consumes="image")
def color_look(image: Image, params: ColorLookParams, ctx: StageContext) -> Image:
    """Apply global saturation and per-hue shift, saturation and lightness in OkLCh."""
    image.require("color_look", space="srgb", transfer="linear")
    if params.is_identity:
        return image
    xp = ctx.backend.xp
    pixels = _pixels(image.data)
    out = xp.empty(pixels.shape, dtype=pixels.dtype)
    tables = _hue_tables(params, xp)
    count = pixels.shape[0]
    step = count if ctx.backend.is_gpu else CPU_CHUNK_PIXELS
    for start in range(0, count, max(step, 1)):
        _look(pixels[start : start + step], tables, out[start : start + step])
    return image.replace(data=out.reshape(image.data.shape).astype(xp.float32, copy=False))
