"""False-colour suppression: desaturate the zipper and moiré colour demosaicing leaves at edges.

Input and output: an Image with sRGB transfer (colour space sRGB or Display P3), float32 in
[0, 1]; the output is clipped to [0, 1]. Works on the full-range BT.709 YCbCr split of
:mod:`isp.stages.yuv`.

A demosaic interpolates R and B from sub-lattices half as dense as the image, so at sharp luma
edges and fine gratings it invents colour that alternates over a few pixels. Where both

- the luma gradient (Sobel, code values per pixel, its maximum over a 3×3 neighbourhood because
  the false colour reaches a pixel past the edge) exceeds ``edge_threshold``, and
- the chroma's high-frequency part (its distance from a Gaussian low-pass of sigma 2 px)
  exceeds ``chroma_threshold``,

chroma is scaled down by up to ``strength``. Each condition ramps linearly from its threshold to
twice it, so the suppression fades in without a visible seam. A pixel meeting neither condition
(any flat region, however saturated) is returned bit-exact. True colour edges that coincide with
a luma edge lose some saturation too; that is the trade every ISP's false-colour suppression
makes, and ``strength`` sets it.

References
----------
R. Ramanath, W. E. Snyder, G. L. Bilbro, W. A. Sander, "Demosaicking methods for Bayer color
arrays", Journal of Electronic Imaging 11(3), 2002 (zipper and false-colour artefacts).
K. Hirakawa, T. W. Parks, "Adaptive homogeneity-directed demosaicing algorithm", IEEE TIP
14(3), 2005 (false colour concentrates where luma changes fast).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from isp.backend import array_module
from isp.config import param
from isp.frame import Image
from isp.stages.registry import StageContext, register_stage
from isp.stages.yuv import (
    add_chroma_rows,
    extreme_3x3,
    gaussian_weights,
    require_encoded_rgb,
    rows_with_halo,
    strips,
    symmetric_filter,
    ycbcr_planes,
)

__all__ = ["FalseColorParams", "false_color", "suppression", "CHROMA_LOWPASS_SIGMA_PX", "CPU_STRIP_ROWS"]

#: Demosaic false colour repeats every 2 to 4 pixels (the R and B sub-lattices' period); a
#: Gaussian of this sigma passes under 1 % of a 4-pixel period, so what it removes is that colour.
CHROMA_LOWPASS_SIGMA_PX = 2.0

#: Rows per strip on the CPU (:func:`isp.stages.yuv.strips`); a GPU takes the image in one strip.
CPU_STRIP_ROWS = 32


@dataclass(frozen=True)
class FalseColorParams:
    # defaults chosen on Kodak 23, 08 and 19 through the IMX989 model: they beat no suppression
    # on all three (real colour edges kept, demosaic false colour removed); stricter thresholds
    # cost real colour on the parrots, looser ones leave the shutters' moire
    strength: float = param(0.6, range=(0.0, 1.0), table="iso", doc="largest fraction of chroma removed where false colour is detected; 0 turns the stage off")
    edge_threshold: float = param(
        0.08, range=(0.001, 1.0), unit="code value/px", doc="luma gradient above which a pixel counts as on an edge (full effect at twice it)"
    )
    chroma_threshold: float = param(
        0.03, range=(0.001, 1.0), unit="code value", doc="high-frequency chroma above which a pixel's colour counts as false (full effect at twice it)"
    )


def _ramp(x: Any, scale: float) -> Any:
    """``clip(x · scale - 1, 0, 1)`` in place: 0 below ``1/scale``, 1 above twice it, linear between."""
    xp = array_module(x)
    dtype = x.dtype.type
    x *= dtype(scale)
    x -= dtype(1.0)
    return xp.clip(x, dtype(0.0), dtype(1.0), out=x)


def _sobel_magnitude_squared(luma: Any) -> Any:
    """``Sobel_rows² + Sobel_columns²`` of ``(h + 2, w + 2)`` luma with a one-pixel halo: ``(h, w)``.

    Each Sobel is a difference ``[-1, 0, 1]`` along one axis of a smoothing ``[1, 2, 1]`` along
    the other, as ``scipy.ndimage.sobel``.
    """
    xp = array_module(luma)
    smooth = luma[:, 1:-1] + luma[:, 1:-1]
    smooth += luma[:, :-2]
    smooth += luma[:, 2:]
    along_rows = xp.subtract(smooth[2:], smooth[:-2])
    difference = xp.subtract(luma[:, 2:], luma[:, :-2], out=smooth)
    along_columns = difference[1:-1] + difference[1:-1]
    along_columns += difference[:-2]
    along_columns += difference[2:]
    along_rows *= along_rows
    along_columns *= along_columns
    along_rows += along_columns
    return along_rows


def suppression(ycc: Any, params: FalseColorParams, start: int = 0, stop: int | None = None) -> Any:
    """The fraction of chroma to remove at rows ``start`` to ``stop``, ``(rows, W)`` in ``[0, strength]``.

    Parameters
    ----------
    ycc
        ``(3, H, W)`` float32 planes ``Y', Cb, Cr`` from :func:`isp.stages.yuv.ycbcr_planes`
        (NumPy or CuPy).
    params
        The stage's parameters, tables resolved.
    start, stop
        The rows wanted (default: all); the filters read past them, mirrored at the image's borders.
    """
    xp = array_module(ycc)
    height, width = ycc.shape[1:]
    stop = height if stop is None else stop
    rows = stop - start
    weights = gaussian_weights(CHROMA_LOWPASS_SIGMA_PX)
    reach = len(weights) - 1
    halo = max(2, reach)
    window = rows_with_halo(ycc, start, stop, halo)

    # the luma gradient one pixel past the rows, where the 3x3 maximum reads it; past the image's
    # border that maximum reads the border's own gradient, as scipy's reflect mode extends it
    gradient = _sobel_magnitude_squared(window[0, halo - 2 : halo + rows + 2, halo - 2 : halo + width + 2])
    gradient[:, 0] = gradient[:, 1]
    gradient[:, -1] = gradient[:, -2]
    if start == 0:
        gradient[0] = gradient[1]
    if stop == height:
        gradient[-1] = gradient[-2]
    edge = extreme_3x3(gradient, xp.maximum)  # the maximum of squares is the square of the maximum
    xp.sqrt(edge, out=edge)
    edge = _ramp(edge, 0.125 / params.edge_threshold)  # 1/8: the Sobel's gain on a unit step

    chroma = window[1:, halo : halo + rows, halo : halo + width]
    around = window[1:, halo - reach : halo + rows + reach, halo - reach : halo + width + reach]
    high = symmetric_filter(around, weights, xp.empty_like(chroma))
    xp.subtract(chroma, high, out=high)
    high *= high
    false = high[0]
    false += high[1]
    xp.sqrt(false, out=false)
    edge *= _ramp(false, 1.0 / params.chroma_threshold)
    edge *= edge.dtype.type(params.strength)
    return edge


@register_stage("false_color", FalseColorParams, consumes="image")
def false_color(image: Image, params: FalseColorParams, ctx: StageContext) -> Image:
    """Desaturate high-frequency chroma at strong luma edges (demosaic zipper and moiré colour)."""
    require_encoded_rgb(image, "false_color")
    if not params.strength:
        return image
    xp = ctx.backend.xp
    rgb = image.data.astype(xp.float32, copy=False)
    ycc = ycbcr_planes(rgb)
    out = xp.empty_like(rgb)
    height = rgb.shape[0]
    for start, stop in strips(height, CPU_STRIP_ROWS, xp):
        kept = suppression(ycc, params, start, stop)
        kept *= kept.dtype.type(-1.0)  # now minus the fraction removed
        change_cb = kept * ycc[1, start:stop]
        change_cr = xp.multiply(kept, ycc[2, start:stop], out=kept)
        add_chroma_rows(rgb[start:stop], change_cb, change_cr, out[start:stop])
    return image.replace(data=out)
