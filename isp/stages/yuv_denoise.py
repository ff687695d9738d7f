"""Luma and chroma noise reduction in YCbCr, as a phone ISP runs it after the sRGB encoding.

Input and output: an Image with sRGB transfer (colour space sRGB or Display P3), float32 in
[0, 1]; the output is clipped to [0, 1]. Luma and chroma are split with the full-range BT.709
matrix of :mod:`isp.stages.yuv`.

Luma
    A bilateral filter on ``Y'``: a Gaussian window of spatial sigma ``luma_radius_px`` whose
    weights fall with the luma difference to the centre pixel, range sigma ``luma_sigma``
    (code values). Differences well below ``luma_sigma`` (noise) are averaged away; edges well
    above it are kept.
Chroma
    A joint bilateral filter on ``Cb, Cr`` with a wider window (``chroma_radius_px``) and a
    range term on the chroma difference (``chroma_sigma``) and one on the denoised luma
    (``chroma_edge_sigma``): low-frequency colour blotches, which phone users see at high ISO
    and which eyes forgive far less than fine luma grain, are averaged out, while chroma stops at
    luma edges instead of bleeding across them.

Both filters are truncated at three spatial sigmas (the window of ``scipy.ndimage``'s
``truncate=3``) and mirror the border (``d c b a | a b c d``). With range sigmas far above every
difference in the image they become Gaussian blurs; a range sigma of 0 leaves that part of the
image untouched. ``luma_sigma``, ``chroma_sigma`` and both radii can be tuning tables by ISO.

References
----------
C. Tomasi, R. Manduchi, "Bilateral filtering for gray and color images", ICCV 1998.
G. Petschnigg et al., "Digital photography with flash and no-flash image pairs", SIGGRAPH 2004
(the joint bilateral filter, a range term taken from a second, cleaner image).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from isp.backend import array_module
from isp.config import param
from isp.frame import Image
from isp.stages.registry import StageContext, register_stage
from isp.stages.yuv import add_ycbcr, require_encoded_rgb, rgb_to_ycbcr

__all__ = ["YuvDenoiseParams", "yuv_denoise", "joint_bilateral"]


@dataclass(frozen=True)
class YuvDenoiseParams:
    luma_sigma: float = param(
        0.02, range=(0.0, 1.0), unit="code value", table="iso",
        doc="range sigma of the luma bilateral filter: luma steps well below it are smoothed, edges well above it kept; 0 turns luma denoise off",
    )
    luma_radius_px: float = param(1.0, range=(0.3, 4.0), unit="px", table="iso", doc="spatial Gaussian sigma of the luma filter")
    chroma_sigma: float = param(
        0.05, range=(0.0, 1.0), unit="code value", table="iso",
        doc="range sigma on the Cb, Cr difference of the chroma filter; 0 turns chroma denoise off",
    )
    chroma_radius_px: float = param(
        2.0, range=(0.3, 4.0), unit="px", table="iso", doc="spatial Gaussian sigma of the chroma filter (wider than luma's: colour blotches are coarse)"
    )
    chroma_edge_sigma: float = param(
        0.05, range=(0.001, 1.0), unit="code value",
        doc="luma difference over which the chroma filter stops averaging, so colour does not bleed across luma edges",
    )


def joint_bilateral(values: list[Any], guides: list[tuple[Any, float]], spatial_sigma_px: float) -> list[Any]:
    """Filter planes with one set of bilateral weights taken from guide planes.

    Parameters
    ----------
    values
        ``(H, W)`` float32 planes to filter (NumPy or CuPy), all with the same weights.
    guides
        ``(plane, range sigma)`` pairs; the weight of a neighbour falls as
        ``exp(-sum((g_neighbour - g_centre)² / (2 sigma²)))`` over the guides.
    spatial_sigma_px
        Sigma of the Gaussian window; it is cut at ``int(3 sigma + 0.5)`` pixels.

    Returns
    -------
    The filtered planes, float32, same device. Borders are mirrored (``d c b a | a b c d``).
    """
    xp = array_module(values[0])
    radius = int(3.0 * spatial_sigma_px + 0.5)
    h, w = values[0].shape
    padded_values = [xp.pad(v, radius, mode="symmetric") for v in values]
    # guides scaled by 1 / (sqrt(2) sigma): a squared difference is then the exponent's term itself
    scaled_guides = [g * (1.0 / (math.sqrt(2.0) * sigma)) for g, sigma in guides]
    padded_guides = [(g, xp.pad(g, radius, mode="symmetric")) for g in scaled_guides]
    inv_two_var = 0.5 / (spatial_sigma_px * spatial_sigma_px)
    weight_sum = xp.zeros((h, w), dtype=xp.float32)
    sums = [xp.zeros((h, w), dtype=xp.float32) for _ in values]
    # a loop over window offsets, each a whole-plane operation: no per-pixel Python work
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            window = (slice(radius + dy, radius + dy + h), slice(radius + dx, radius + dx + w))
            exponent = None
            for centre, padded in padded_guides:
                diff = padded[window] - centre
                exponent = diff * diff if exponent is None else exponent + diff * diff
            weight = xp.exp(-exponent) * math.exp(-(dy * dy + dx * dx) * inv_two_var)
            weight_sum += weight
            for total, padded in zip(sums, padded_values, strict=True):
                total += weight * padded[window]
    return [total / weight_sum for total in sums]  # the centre's weight is 1: never divides by 0


@register_stage("yuv_denoise", YuvDenoiseParams, consumes="image")
def yuv_denoise(image: Image, params: YuvDenoiseParams, ctx: StageContext) -> Image:
    """Reduce luma noise edge-preservingly and chroma noise more strongly, in YCbCr."""
    require_encoded_rgb(image, "yuv_denoise")
    if not params.luma_sigma and not params.chroma_sigma:
        return image
    rgb = image.data.astype(ctx.backend.xp.float32, copy=False)
    y, cb, cr = rgb_to_ycbcr(rgb)
    dy = dcb = dcr = 0.0
    guide = y
    if params.luma_sigma:
        (guide,) = joint_bilateral([y], [(y, params.luma_sigma)], params.luma_radius_px)
        dy = guide - y
    if params.chroma_sigma:
        new_cb, new_cr = joint_bilateral(
            [cb, cr],
            [(guide, params.chroma_edge_sigma), (cb, params.chroma_sigma), (cr, params.chroma_sigma)],
            params.chroma_radius_px,
        )
        dcb, dcr = new_cb - cb, new_cr - cr
    return image.replace(data=add_ycbcr(rgb, dy, dcb, dcr))
