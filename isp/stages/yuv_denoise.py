"""Luma and chroma noise reduction in YCbCr, as a phone ISP runs it after the sRGB encoding.

Input and output: an Image with sRGB transfer (colour space sRGB or Display P3), float32 in
[0, 1]; the output is clipped to [0, 1]. Luma and chroma are split with the full-range BT.709
matrix of :mod:`isp.stages.yuv`. Both filters are guided filters (He, Sun and Tang): in every
square window the output is a linear function ``a·I + b`` of a guide image ``I``, fitted by
least squares with the regularisation ``ε a²``, and a pixel takes the mean of the ``a`` and ``b``
of the windows that cover it. Box sums make the cost a fixed number of passes whatever the radius.

Luma
    ``Y'`` guided by itself in ``(2·luma_radius_px + 1)²`` windows with ``ε = luma_sigma²``:
    where the luma's standard deviation over a window is well below ``luma_sigma`` (noise) the
    window is averaged (``a → 0``); where it is well above (an edge, texture) it is kept
    (``a → 1``).
Chroma
    Low-frequency colour blotches, which phone users see at high ISO and which eyes forgive far
    less than fine luma grain, are averaged over a much larger window, from the statistics of
    4 × 4-pixel block means (:data:`CHROMA_BLOCK_PX`: He and Sun's fast guided filter, on chroma
    subsampled as phone ISPs hold it). Each of ``Cb``, ``Cr`` is guided by two channels with
    ``ε = 1``: the denoised luma divided by ``chroma_edge_sigma`` and the chroma plane itself
    divided by ``chroma_sigma``. Colour is averaged where, over the window, the block luma varies
    by well under ``chroma_edge_sigma`` and the block chroma by well under ``chroma_sigma``; at a
    luma edge the chroma follows the luma's linear model instead of bleeding across it, and a
    colour edge standing well above ``chroma_sigma`` (even one without a luma edge) stays. The
    coefficient maps, smooth by construction, are upsampled bilinearly between block centres and
    applied to the full-resolution luma and chroma, so edges stay as sharp as the luma's.

With sigmas far above every variation in the image both filters become box blurs: the luma a
``(2r + 1)``-pixel box applied twice, the chroma a block mean, a ``(2r' + 1)``-block box applied
twice (``r'`` the radius in blocks) and the bilinear upsampling. A sigma of 0 leaves that part
untouched; ``luma_sigma``, ``chroma_sigma`` and ``chroma_edge_sigma`` may be tuning tables by
ISO. Borders are mirrored (``d c b a | a b c d``, scipy's ``reflect``); a frame whose sides are
not multiples of 4 is mirrored out to whole blocks and cropped back.

On the CPU the full-resolution passes run in strips of :data:`CPU_STRIP_ROWS` rows with a
mirrored halo, so that their planes stay in cache; the pixels do not depend on the strips.

References
----------
K. He, J. Sun, X. Tang, "Guided image filtering", IEEE TPAMI 35 (2013), pp. 1397-1409
(ECCV 2010): Algorithm 1, and eq. 19-21 for a guide of several channels.
K. He, J. Sun, "Fast guided filter", arXiv:1505.00996 (2015): the coefficients computed on
subsampled images and upsampled bilinearly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from isp.backend import array_module
from isp.config import param
from isp.frame import Image
from isp.stages.registry import StageContext, register_stage
from isp.stages.yuv import require_encoded_rgb, rows_with_halo, strips, ycbcr_planes, ycbcr_to_rgb

__all__ = ["CHROMA_BLOCK_PX", "CPU_STRIP_ROWS", "YuvDenoiseParams", "yuv_denoise"]

#: Side of the pixel blocks whose means the chroma filter takes its statistics from.
CHROMA_BLOCK_PX = 4

#: Rows per strip on the CPU, a multiple of :data:`CHROMA_BLOCK_PX`: the planes of a strip stay in
#: the processor's caches, which about halves the time of the full-resolution passes (they are
#: bound by memory traffic); a GPU takes the image in one strip.
CPU_STRIP_ROWS = 32


@dataclass(frozen=True)
class YuvDenoiseParams:
    luma_sigma: float = param(
        0.02, range=(0.0, 1.0), unit="code value", table="iso",
        doc="luma standard deviation over a window below which the window is smoothed and above which it is kept (ε = luma_sigma²); 0 turns luma denoise off",
    )
    luma_radius_px: int = param(1, range=(1, 4), unit="px", doc="radius of the luma filter's square window, (2r + 1)² pixels")
    chroma_sigma: float = param(
        0.02, range=(0.0, 1.0), unit="code value", table="iso",
        doc="Cb, Cr standard deviation (of 4x4-block means, over a window) below which colour is averaged and above which a colour edge is kept; 0 turns chroma denoise off",
    )
    chroma_radius_px: int = param(
        8, range=(4, 32), unit="px",
        doc="radius of the chroma filter's square window, rounded to whole 4-pixel blocks (halves up); wider than luma's since colour blotches are coarse",
    )
    chroma_edge_sigma: float = param(
        0.02, range=(0.005, 1.0), unit="code value", table="iso",
        doc="luma standard deviation (of 4x4-block means, over a window) above which chroma follows the luma edge instead of being averaged across it",
    )


def _box_sum(x: Any, radius: int) -> Any:
    """Sums over the ``(2 radius + 1)²`` windows wholly inside ``x``: shape ``(h - 2r, w - 2r)``."""
    n = 2 * radius + 1
    h, w = x.shape
    rows = x[: h - n + 1] + x[1 : h - n + 2]
    for k in range(2, n):
        rows += x[k : h - n + 1 + k]
    sums = rows[:, : w - n + 1] + rows[:, 1 : w - n + 2]
    for k in range(2, n):
        sums += rows[:, k : w - n + 1 + k]
    return sums


def _mirror(x: Any, pad: int) -> Any:
    return array_module(x).pad(x, pad, mode="symmetric")


def _luma_guided_filter(luma: Any, sigma: float, radius: int) -> Any:
    """The self-guided filter, ``ε = sigma²``, of the interior of a plane with a ``2 radius`` halo."""
    xp = array_module(luma)
    inv_n = 1.0 / (2 * radius + 1) ** 2
    mean = _box_sum(luma, radius)
    mean *= inv_n
    var = _box_sum(luma * luma, radius)
    var *= inv_n
    var -= mean * mean
    xp.maximum(var, 0.0, out=var)  # E[y²] - E[y]² can round below zero in a flat window
    a = var / (var + sigma * sigma)
    mean -= a * mean  # now b = (1 - a) mean
    halo = 2 * radius
    out = _box_sum(a, radius)
    out *= luma[halo:-halo, halo:-halo]
    out += _box_sum(mean, radius)
    out *= inv_n
    return out


def _block_means(plane: Any, block: int) -> Any:
    """Means of the ``block × block`` tiles of a plane whose sides are multiples of ``block``."""
    rows = plane[0::block] + plane[1::block]
    for k in range(2, block):
        rows += plane[k::block]
    means = rows[:, 0::block] + rows[:, 1::block]
    for k in range(2, block):
        means += rows[:, k::block]
    means *= 1.0 / (block * block)
    return means


def _chroma_coefficients(
    luma: Any, chroma: Any, chroma_sigma: float, edge_sigma: float, radius: int
) -> list[tuple[Any, Any, Any]]:
    """The chroma filter's linear model on block means, for each chroma plane.

    Parameters
    ----------
    luma
        ``(h, w)`` block means of the guide luma.
    chroma
        ``(Cb, Cr)`` block means, ``(h, w)`` each.
    chroma_sigma, edge_sigma
        Scales of the chroma and luma guide channels; ``ε = 1`` in these units.
    radius
        Window radius in blocks.

    Returns
    -------
    For each chroma plane ``(luma_gain, chroma_gain, offset)``, ``(h + 2, w + 2)`` block maps with
    one block of edge border, such that the filtered chroma is
    ``luma_gain · Y' + chroma_gain · C + offset`` once upsampled to pixels.
    """
    xp = array_module(luma)
    halo = 2 * radius
    inv_n = 1.0 / (2 * radius + 1) ** 2

    def window_mean(x: Any) -> Any:
        total = _box_sum(x, radius)
        total *= inv_n
        return total

    def edge_border(x: Any) -> Any:
        return xp.pad(x, 1, mode="edge")

    y = _mirror(luma * (1.0 / edge_sigma), halo)
    mean_y = window_mean(y)
    var_y = window_mean(y * y) - mean_y * mean_y
    xp.maximum(var_y, 0.0, out=var_y)
    var_y += 1.0
    models = []
    for plane in chroma:
        c = _mirror(plane * (1.0 / chroma_sigma), halo)
        mean_c = window_mean(c)
        var_c = window_mean(c * c) - mean_c * mean_c
        xp.maximum(var_c, 0.0, out=var_c)
        var_c += 1.0
        cov = window_mean(c * y) - mean_c * mean_y
        det = var_y * var_c - cov * cov  # of the guide's 2 x 2 covariance plus ε: at least 1
        # least squares of the chroma on (luma, chroma) in the window, ε = 1 on both
        a_luma = cov / det
        a_chroma = 1.0 - var_y / det  # (var_y (var_c - 1) - cov²) / det, tending to exactly 1 as chroma_sigma → 0
        b = mean_c - a_luma * mean_y - a_chroma * mean_c
        models.append(
            (
                edge_border(window_mean(a_luma) * (chroma_sigma / edge_sigma)),
                edge_border(window_mean(a_chroma)),
                edge_border(window_mean(b) * chroma_sigma),
            )
        )
    return models


def _upsample(blocks: Any, start: int, stop: int, block: int) -> Any:
    """Block rows ``start`` to ``stop`` of ``(..., h, w)`` maps with one block of border, bilinearly upsampled to pixels.

    Samples sit at block centres, as the block means they come from. Columns are interpolated
    first, on the few block rows, so that the pass over all pixels writes whole rows.
    """
    xp = array_module(blocks)
    src = blocks[..., start : stop + 2, :]
    columns = xp.empty((*src.shape[:-1], (src.shape[-1] - 2) * block), dtype=blocks.dtype)
    _interpolate(src, columns, block, axis=-1)
    pixels = xp.empty((*src.shape[:-2], (stop - start) * block, columns.shape[-1]), dtype=blocks.dtype)
    _interpolate(columns, pixels, block, axis=-2)
    return pixels


def _interpolate(src: Any, dst: Any, block: int, axis: int) -> None:
    """Fill ``dst`` by linear interpolation along ``axis`` (-1 or -2) between the samples of ``src`` (one sample of border each side)."""
    def along(index: slice) -> tuple:
        return (Ellipsis, index) if axis == -1 else (Ellipsis, index, slice(None))

    def shifted(first: int) -> Any:
        return src[along(slice(first, src.shape[axis] - 2 + first))]

    previous, centre, following = shifted(0), shifted(1), shifted(2)
    to_previous, to_following = previous - centre, following - centre
    for phase in range(block):
        offset = (phase + 0.5) / block - 0.5  # from the block centre, in blocks
        target = dst[along(slice(phase, None, block))]
        array_module(src).multiply(to_previous if offset < 0 else to_following, abs(offset), out=target)
        target += centre


def _apply(maps: Any, luma: Any, chroma: Any) -> Any:
    """Filtered chroma pixels from the upsampled ``(luma_gain, chroma_gain, offset)`` maps of :func:`_chroma_coefficients`."""
    luma_gain, chroma_gain, offset = maps
    luma_gain *= luma
    chroma_gain *= chroma
    offset += luma_gain
    offset += chroma_gain
    return offset


@register_stage("yuv_denoise", YuvDenoiseParams, consumes="image")
def yuv_denoise(image: Image, params: YuvDenoiseParams, ctx: StageContext) -> Image:
    """Reduce luma noise edge-preservingly and chroma noise more strongly, in YCbCr."""
    require_encoded_rgb(image, "yuv_denoise")
    if not params.luma_sigma and not params.chroma_sigma:
        return image
    xp = ctx.backend.xp
    block = CHROMA_BLOCK_PX
    h, w = image.data.shape[:2]
    rgb = image.data.astype(xp.float32, copy=False)
    if h % block or w % block:  # whole blocks for the chroma statistics
        rgb = xp.pad(rgb, ((0, -h % block), (0, -w % block), (0, 0)), mode="symmetric")
    ycc = ycbcr_planes(rgb)
    bounds = strips(ycc.shape[1], CPU_STRIP_ROWS, ctx.backend.xp)
    luma = ycc[0]
    if params.luma_sigma:
        luma = xp.empty_like(ycc[0])
        radius = params.luma_radius_px
        for start, stop in bounds:
            luma[start:stop] = _luma_guided_filter(rows_with_halo(ycc[0], start, stop, 2 * radius), params.luma_sigma, radius)
    maps = None
    if params.chroma_sigma:
        radius_blocks = (params.chroma_radius_px + block // 2) // block
        models = _chroma_coefficients(
            _block_means(luma, block),
            [_block_means(ycc[k], block) for k in (1, 2)],
            params.chroma_sigma,
            params.chroma_edge_sigma,
            radius_blocks,
        )
        maps = xp.stack([m for model in models for m in model])  # upsampled together, three per chroma plane
    out = xp.empty(rgb.shape, dtype=xp.float32)
    for start, stop in bounds:
        y = luma[start:stop]
        chroma = [ycc[k, start:stop] for k in (1, 2)]
        if maps is not None:
            pixels = _upsample(maps, start // block, stop // block, block)
            chroma = [_apply(pixels[3 * k : 3 * k + 3], y, c) for k, c in enumerate(chroma)]
        rows = ycbcr_to_rgb(y, *chroma, out=out[start:stop])
        xp.clip(rows, 0.0, 1.0, out=rows)
    return image.replace(data=out if out.shape[:2] == (h, w) else xp.ascontiguousarray(out[:h, :w]))

