"""Global tone: exposure compensation and a parametric filmic S-curve.

Stage ``tone``. Input: an Image in linear sRGB, scene-referred (values above 1 are allowed).
Output: an Image in linear sRGB, display-referred, float32, clipped to [0, 1].

The frame is first multiplied by ``2**exposure_ev`` (plus the frame's DNG BaselineExposure when
``use_baseline_exposure``), then passed through the curve of :func:`tone_curve`.

The curve
---------
Three knots: the black point ``b`` maps to 0, the mid-grey ``pivot`` maps to itself and the
white ``w`` maps to 1. Between them sit two rational-quadratic Hermite segments (Gregory and
Delbourgo 1982), toe ``[b, pivot]`` and shoulder ``[pivot, w]``, given their end values and end
slopes. Such a segment is monotone for any non-negative end slopes and reduces to the straight
line when both slopes equal its secant, so the curve is

- monotone non-decreasing and C1 on ``[b, w]`` (one slope is shared at the pivot), for every
  setting the parameter ranges allow;
- the identity on [0, 1] when every control is at its default.

The slopes are what the controls set, with ``Δt = pivot / (pivot - b)`` and
``Δs = (1 - pivot) / (w - pivot)`` the toe and shoulder secants:

- at the pivot: ``1 + contrast``;
- at the black point: ``Δt · (1 + shadows) / (1 + contrast)``: contrast deepens the toe, positive
  ``shadows`` lifts it, ``shadows = -1`` makes it flat at black;
- at the white: ``Δs · (1 - highlights) / (1 + contrast)``.

``black_point`` is the input level shown as black: positive crushes the shadows below it, negative
lifts black (input 0 comes out as a dark grey, a matte look). ``highlights > 0`` recovers highlights:
the white moves up to ``white_point · 2**highlights`` (up to one stop of headroom above the white
point, room for what exposure or the colour matrix pushed past 1) and the shoulder flattens into it,
fully at 1, so that highlights roll off instead of meeting a hard clip. ``highlights < 0`` keeps the
white and steepens the approach to it (a harder, more linear shoulder). Below ``b`` the curve is 0,
above ``w`` it is 1.

Modes
-----
``rgb``
    The curve on each channel: contrast raises saturation a little and bright saturated colours
    drift towards white as their channels reach the shoulder, as film does.
``luminance``
    The curve on the luminance ``Y`` (sRGB/Rec. 709 weights); each channel is scaled by
    ``(f(Y) - f(0)) / Y`` and ``f(0)`` (the black lift) is added, so the ratios R:G:B, and with
    them hue and saturation, are kept. A pixel the scaling takes past 1 is scaled back into range
    as a whole (its luminance drops rather than its hue turning).

The curve is evaluated through a 4096-entry table, interpolated linearly, indexed by the square
root of the input so that the shadows get most of the entries: over the parameter ranges it stays
within 2.5e-6 of the exact curve (0.2 % relative at outputs above 1e-3). With every control at its
default the table is skipped, and the stage is exposure and the clip alone.

References
----------
J. A. Gregory and R. Delbourgo, "Piecewise rational quadratic interpolation to monotonic data",
IMA Journal of Numerical Analysis 2 (1982), 123-130.
Adobe, Digital Negative (DNG) Specification 1.6, BaselineExposure (tag 50730).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from isp.backend import array_module
from isp.colorimetry import SRGB_TO_XYZ
from isp.config import Table, param
from isp.errors import ConfigError
from isp.frame import Image
from isp.stages.registry import StageContext, register_stage

__all__ = ["ToneParams", "tone", "tone_curve", "curve_knots", "luminance", "LUT_SIZE", "CPU_CHUNK_VALUES"]

#: Entries of the table the stage evaluates the curve through.
LUT_SIZE = 4096

#: Luminance weights of linear sRGB (the Y row of its RGB-to-XYZ matrix).
_LUMA = tuple(float(v) for v in SRGB_TO_XYZ[1])


@dataclass(frozen=True)
class ToneParams:
    exposure_ev: float = param(0.0, range=(-8.0, 8.0), unit="EV", doc="exposure compensation (a gain of 2**ev on linear light)")
    use_baseline_exposure: bool = param(True, doc="add the frame's baseline exposure (DNG BaselineExposure)")
    contrast: float = param(
        0.0,
        range=(-0.5, 1.0),
        table="iso",
        doc="slope of the curve at the pivot minus 1: 0.3 makes mid-tones 30 % steeper, negative flattens; 0 leaves tones as they are",
    )
    pivot: float = param(0.18, range=(0.05, 0.5), unit="linear", doc="mid-grey level the contrast turns about; it maps to itself")
    shadows: float = param(
        0.0, range=(-1.0, 1.0), table="iso", doc="toe: positive lifts the shadows, negative deepens them (-1: flat at black)"
    )
    highlights: float = param(
        0.0,
        range=(-1.0, 1.0),
        doc="shoulder: positive recovers highlights (white moves up to white_point·2**highlights and is reached softly), negative hardens the shoulder",
    )
    black_point: float = param(
        0.0, range=(-0.05, 0.04), unit="linear", doc="input level shown as black: positive crushes the shadows, negative lifts black"
    )
    white_point: float = param(1.0, range=(0.6, 16.0), unit="linear", doc="input level shown as white (before the highlight headroom)")
    mode: str = param("rgb", choices=("rgb", "luminance"), doc="apply the curve to each channel, or to luminance keeping the RGB ratios")


def curve_knots(params: ToneParams) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The curve's knots ``(black, pivot, white)`` in input units and its slopes there.

    Examples
    --------
    >>> curve_knots(ToneParams(contrast=1.0))
    ((0.0, 0.18, 1.0), (0.5, 2.0, 0.5))
    """
    for name in ("contrast", "shadows", "highlights"):
        if isinstance(getattr(params, name), Table):
            raise ConfigError(f"tone.{name} is a tuning table; resolve it at an ISO first (isp.config.resolve_tables)")
    c, s, h, p = params.contrast, params.shadows, params.highlights, params.pivot
    b = params.black_point
    w = params.white_point * 2.0 ** max(h, 0.0)
    if not b < p < w:
        raise ConfigError(f"tone: need black_point < pivot < white, got {b} < {p} < {w}")
    toe_secant = p / (p - b)
    shoulder_secant = (1.0 - p) / (w - p)
    slopes = (toe_secant * (1.0 + s) / (1.0 + c), 1.0 + c, shoulder_secant * (1.0 - h) / (1.0 + c))
    return (b, p, w), slopes


def _rational_quadratic(x: Any, x0: float, x1: float, y0: float, y1: float, d0: float, d1: float) -> Any:
    """The monotone rational-quadratic Hermite segment through ``(x0, y0)``, ``(x1, y1)`` with end slopes ``d0``, ``d1``."""
    secant = (y1 - y0) / (x1 - x0)
    t = (x - x0) / (x1 - x0)
    tt = t * (1.0 - t)
    # the denominator is at least secant/2 for non-negative slopes, so it never vanishes
    return y0 + (y1 - y0) * (secant * t * t + d0 * tt) / (secant + (d0 + d1 - 2.0 * secant) * tt)


def tone_curve(x: Any, params: ToneParams) -> Any:
    """The tone curve alone (no exposure), evaluated exactly; for plots and for the stage's table.

    Parameters
    ----------
    x
        Linear input values, any shape, NumPy or CuPy; any real value (outside the black and
        white points the curve is 0 and 1).
    params
        The tone parameters, with tuning tables already resolved at an ISO.

    Returns
    -------
    Display-referred linear values in [0, 1], same shape, device and float dtype as ``x``.

    Examples
    --------
    >>> tone_curve(np.array([0.0, 0.18, 0.5, 1.0]), ToneParams()).tolist()
    [0.0, 0.18, 0.5, 1.0]
    >>> bool(tone_curve(np.array([1.0]), ToneParams(highlights=0.5))[0] < 1.0)
    True
    """
    xp = array_module(x)
    (b, p, w), (db, dp, dw) = curve_knots(params)
    xc = xp.clip(x, b, w)
    toe = _rational_quadratic(xp.minimum(xc, p), b, p, 0.0, p, db, dp)
    shoulder = _rational_quadratic(xp.maximum(xc, p), p, w, p, 1.0, dp, dw)
    out = xp.where(xc <= p, toe, shoulder)
    return xp.clip(out, 0.0, 1.0).astype(xp.result_type(x, xp.float32), copy=False)


def luminance(rgb: Any) -> Any:
    """Relative luminance ``Y`` of linear sRGB ``(..., 3)`` (Rec. 709 weights), on the array's device and in its dtype."""
    r, g, b = (rgb.dtype.type(v) for v in _LUMA)
    return rgb[..., 0] * r + rgb[..., 1] * g + rgb[..., 2] * b


def _is_identity(params: ToneParams) -> bool:
    return (params.contrast, params.shadows, params.highlights, params.black_point, params.white_point) == (0.0, 0.0, 0.0, 0.0, 1.0)


def _curve_table(params: ToneParams) -> tuple[np.ndarray, float, float]:
    """Curve values at ``b + (w - b)·u²`` for ``u`` on a uniform grid of :data:`LUT_SIZE` points, with ``b`` and ``w``."""
    (b, _, w), _ = curve_knots(params)
    u = np.linspace(0.0, 1.0, LUT_SIZE)
    return tone_curve(b + (w - b) * u * u, params).astype(np.float32), b, w


def _gather(table: Any, index: Any) -> Any:
    """``table[index]``; an index out of range (cast from a NaN input) picks some entry instead of
    failing, and the NaN comes back through the interpolation weight. NumPy's ``take`` clips when
    asked; CuPy's always wraps."""
    xp = array_module(index)
    return xp.take(table, index, mode="clip") if xp is np else xp.take(table, index)


def _steps(table: Any) -> Any:
    """Each entry's difference to the next, the last 0: ``table[i] + frac·steps[i]`` interpolates."""
    xp = array_module(table)
    return xp.concatenate([table[1:] - table[:-1], xp.zeros(1, dtype=table.dtype)])


def _apply_table(x: Any, table: Any, b: float, w: float, gain: float = 1.0, steps: Any = None, out: Any = None) -> Any:
    """The curve through :func:`_curve_table`'s table at ``gain · x``, interpolated linearly (into ``out`` if given)."""
    xp = array_module(x)
    last = LUT_SIZE - 1
    steps = _steps(table) if steps is None else steps
    u = xp.multiply(x, np.float32(gain / (w - b)))
    u -= np.float32(b / (w - b))
    xp.clip(u, np.float32(0.0), np.float32(1.0), out=u)
    xp.sqrt(u, out=u)
    u *= np.float32(last)
    index = xp.floor(u)
    u -= index  # now the fraction towards the next entry; NaN stays NaN
    with np.errstate(invalid="ignore"):  # a NaN casts to an arbitrary integer (see _gather)
        index = index.astype(xp.intp)
    change = _gather(steps, index)
    change *= u
    return xp.add(_gather(table, index), change, out=out)


#: Values per chunk on the CPU: a chunk's intermediates stay in the processor's caches, which
#: more than halves the time of these passes (bound by memory traffic); a GPU takes all at once.
CPU_CHUNK_VALUES = 1 << 16


def _chunks(size: int, backend_is_gpu: bool, per_item: int = 1) -> list[slice]:
    step = size if backend_is_gpu else max(1, CPU_CHUNK_VALUES // per_item)
    return [slice(start, min(start + step, size)) for start in range(0, size, max(step, 1))]


def _luminance_mode(data: Any, gain: float, table: Any, b: float, w: float, black: np.float32, out: Any) -> None:
    """The curve on luminance, each pixel scaled by ``(f(Y) - f(0)) / Y`` and lifted by ``black = f(0)``; ``data`` and ``out`` are ``(n, 3)``."""
    xp = array_module(data)
    pixels = xp.multiply(data, np.float32(gain), out=out)
    luma_pos = xp.maximum(luminance(pixels), np.float32(0.0))
    # the ratio is bounded by the curve's steepest slope, so near-black pixels get no runaway gain
    ratio = _apply_table(luma_pos, table, b, w)
    ratio -= black
    ratio /= xp.maximum(luma_pos, np.float32(1e-8), out=luma_pos)
    for channel in range(3):  # channel by channel: a broadcast over 3 values loops slowly
        pixels[:, channel] *= ratio
    pixels += black
    peak = xp.maximum(pixels[:, 0], pixels[:, 1])
    xp.maximum(peak, pixels[:, 2], out=peak)
    xp.maximum(peak, np.float32(1.0), out=peak)
    for channel in range(3):
        pixels[:, channel] /= peak
    xp.clip(pixels, np.float32(0.0), np.float32(1.0), out=pixels)


@register_stage("tone", ToneParams, consumes="image")
def tone(image: Image, params: ToneParams, ctx: StageContext) -> Image:
    """Apply exposure compensation and the filmic tone curve to linear sRGB."""
    image.require("tone", space="srgb", transfer="linear")
    xp = ctx.backend.xp
    ev = params.exposure_ev + (image.info.baseline_exposure_ev if params.use_baseline_exposure else 0.0)
    gain = 2.0**ev
    data = xp.ascontiguousarray(image.data, dtype=xp.float32)
    if _is_identity(params):
        out = xp.multiply(data, np.float32(gain)) if ev else data.copy()
        return image.replace(data=xp.clip(out, np.float32(0.0), np.float32(1.0), out=out))
    host_table, b, w = _curve_table(params)
    table = ctx.backend.asarray(host_table)
    out = xp.empty_like(data)
    if params.mode == "rgb":
        values, results = data.reshape(-1), out.reshape(-1)
        steps = _steps(table)
        for chunk in _chunks(values.size, ctx.backend.is_gpu):
            _apply_table(values[chunk], table, b, w, gain, steps, out=results[chunk])
    else:
        black = np.float32(_apply_table(np.zeros(1, np.float32), host_table, b, w)[0])  # f(0): the black lift, 0 unless black_point < 0
        pixels, results = data.reshape(-1, 3), out.reshape(-1, 3)
        for chunk in _chunks(pixels.shape[0], ctx.backend.is_gpu, per_item=3):
            _luminance_mode(pixels[chunk], gain, table, b, w, black, results[chunk])
    return image.replace(data=out)
