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
from isp.stages.yuv import add_ycbcr, require_encoded_rgb, rgb_to_ycbcr

__all__ = ["FalseColorParams", "false_color", "suppression"]

#: Demosaic false colour repeats every 2 to 4 pixels (the R and B sub-lattices' period); a
#: Gaussian of this sigma passes under 1 % of a 4-pixel period, so what it removes is that colour.
CHROMA_LOWPASS_SIGMA_PX = 2.0


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


def _ramp(x: Any, threshold: float, xp: Any) -> Any:
    """0 below ``threshold``, 1 above twice it, linear between."""
    return xp.clip(x * (1.0 / threshold) - 1.0, 0.0, 1.0)


def suppression(y: Any, cb: Any, cr: Any, params: FalseColorParams, ndi: Any) -> Any:
    """The fraction of chroma to remove at each pixel, ``(H, W)`` in ``[0, strength]``.

    Parameters
    ----------
    y, cb, cr
        ``(H, W)`` float32 planes from :func:`isp.stages.yuv.rgb_to_ycbcr` (NumPy or CuPy).
    params
        The stage's parameters, tables resolved.
    ndi
        ``scipy.ndimage`` or ``cupyx.scipy.ndimage``, matching the planes.
    """
    xp = array_module(y)
    gradient = xp.hypot(ndi.sobel(y, axis=0, mode="reflect"), ndi.sobel(y, axis=1, mode="reflect")) * 0.125
    edge = _ramp(ndi.maximum_filter(gradient, size=3, mode="reflect"), params.edge_threshold, xp)
    high_cb = cb - ndi.gaussian_filter(cb, CHROMA_LOWPASS_SIGMA_PX, mode="reflect")
    high_cr = cr - ndi.gaussian_filter(cr, CHROMA_LOWPASS_SIGMA_PX, mode="reflect")
    false = _ramp(xp.hypot(high_cb, high_cr), params.chroma_threshold, xp)
    return edge * false * params.strength


@register_stage("false_color", FalseColorParams, consumes="image")
def false_color(image: Image, params: FalseColorParams, ctx: StageContext) -> Image:
    """Desaturate high-frequency chroma at strong luma edges (demosaic zipper and moiré colour)."""
    require_encoded_rgb(image, "false_color")
    if not params.strength:
        return image
    rgb = image.data.astype(ctx.backend.xp.float32, copy=False)
    y, cb, cr = rgb_to_ycbcr(rgb)
    removed = suppression(y, cb, cr, params, ctx.backend.ndimage)
    return image.replace(data=add_ycbcr(rgb, 0.0, -removed * cb, -removed * cr))
