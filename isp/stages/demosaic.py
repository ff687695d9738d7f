"""Demosaicing: a Bayer mosaic to a full RGB image, behind a method registry.

Input: a white-balanced RawFrame in the ``linear`` domain with a Bayer CFA (any phase).
Output: an Image in camera RGB, linear transfer, float32, same height and width.

Methods
-------
``bilinear``
    Average of the nearest samples of each colour.
``malvar2004``
    Malvar, He and Cutler, "High-quality linear interpolation for demosaicing of
    Bayer-patterned color images", ICASSP 2004: bilinear plus a Laplacian correction from the
    sampled channel, a fixed 5×5 linear filter per pixel class.
``menon2007``
    Menon, Andriani and Calvagno, "Demosaicing with directional filtering and a posteriori
    decision" (DDFAPD), IEEE TIP 2007, refining step on: green along the row or the column,
    whichever keeps the colour difference smoother (:mod:`isp.stages.demosaic_menon2007`).
``mlri``
    Kiku, Monno, Tanaka and Okutomi, "Minimized-Laplacian residual interpolation for color image
    demosaicking", SPIE 2014: guided-filter estimates corrected by interpolated residuals,
    directional colour differences blended by gradient weights (:mod:`isp.stages.demosaic_mlri`).

Kodak 24 mean CPSNR (see tests/test_demosaic*.py): bilinear 30.3 dB, malvar2004 35.8 dB,
menon2007 39.3 dB, mlri 39.6 dB.

The first two are linear 5×5 filters that depend only on the pixel's class: the missing green at
an R or B site, R or B at a green site whose row holds R or B, and R at B (or B at R).
:class:`BayerFilters` holds the four filters of a method; the NumPy path applies them as strided
slices, the CuPy path in one pass of ``kernels/demosaic.cu``. Borders are mirrored
(``d c b | a b c d``), which keeps the CFA phase.

References
----------
H. S. Malvar, L.-W. He, R. Cutler, ICASSP 2004, vol. 3, pp. 485-488.

D. Menon, S. Andriani, G. Calvagno, IEEE Transactions on Image Processing 16(1), 132-141, 2007.

D. Kiku, Y. Monno, M. Tanaka, M. Okutomi, Proc. SPIE 9023, Digital Photography X, 2014.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from isp.backend import array_module, get_backend
from isp.cfa import B, G, R, CFALayout
from isp.config import param
from isp.errors import ConfigError, StageError
from isp.frame import Image, RawFrame
from isp.stages.demosaic_menon2007 import demosaic_menon2007
from isp.stages.demosaic_mlri import demosaic_mlri
from isp.stages.registry import StageContext, register_stage

__all__ = ["BayerFilters", "BILINEAR", "MALVAR2004", "DEMOSAIC_METHODS", "demosaic", "DemosaicParams"]


@dataclass(frozen=True)
class BayerFilters:
    """The four 5×5 filters of a class-dependent linear Bayer demosaic.

    Parameters
    ----------
    g_at_rb
        Green at a red or blue site.
    same_row
        At a green site, the colour whose samples lie left and right of it.
    same_col
        At a green site, the colour whose samples lie above and below it.
    opposite
        Red at a blue site, or blue at a red site.
    """

    g_at_rb: np.ndarray
    same_row: np.ndarray
    same_col: np.ndarray
    opposite: np.ndarray

    def stacked(self) -> np.ndarray:
        """The filters as one ``(4, 5, 5)`` float32 array in field order (the kernel's layout)."""
        return np.stack([self.g_at_rb, self.same_row, self.same_col, self.opposite]).astype(np.float32)


def _filter(rows: list[list[float]], scale: float) -> np.ndarray:
    return np.asarray(rows, dtype=np.float64) / scale


_ROW_MHC = [[0, 0, 0.5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0], [0, 0, 0.5, 0, 0]]

MALVAR2004 = BayerFilters(
    g_at_rb=_filter([[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]], 8),
    same_row=_filter(_ROW_MHC, 8),
    same_col=_filter(_ROW_MHC, 8).T.copy(),
    opposite=_filter(
        [[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0], [0, 0, -1.5, 0, 0]], 8
    ),
)

_ROW_BILINEAR = [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, 0, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]

BILINEAR = BayerFilters(
    g_at_rb=_filter([[0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 1, 0, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], 4),
    same_row=_filter(_ROW_BILINEAR, 2),
    same_col=_filter(_ROW_BILINEAR, 2).T.copy(),
    opposite=_filter([[0, 0, 0, 0, 0], [0, 1, 0, 1, 0], [0, 0, 0, 0, 0], [0, 1, 0, 1, 0], [0, 0, 0, 0, 0]], 4),
)


def _red_site(cfa: CFALayout) -> tuple[int, int]:
    if not cfa.is_bayer:
        raise StageError(f"demosaic: CFA {cfa.name!r} is not a Bayer layout")
    ((ry, rx),) = cfa.colour_sites(R)
    return ry, rx


def _site_plan(cfa: CFALayout) -> list[tuple[int, int, dict[int, str | None]]]:
    """For each of the four tile sites: ``(row, col, {channel: filter name or None for the sample})``."""
    ry, rx = _red_site(cfa)
    plan = []
    for y in range(2):
        for x in range(2):
            colour = cfa.pattern[y][x]
            if colour == G:
                row_colour = R if y == ry else B
                col_colour = B if row_colour == R else R
                recipe = {G: None, row_colour: "same_row", col_colour: "same_col"}
            else:
                other = B if colour == R else R
                recipe = {colour: None, G: "g_at_rb", other: "opposite"}
            plan.append((y, x, recipe))
    return plan


#: Rows per strip of the NumPy path (even, to keep the CFA phase): a strip's rows and its
#: two-row halo stay in the processor's caches while its 5×5 filters read them.
CPU_STRIP_ROWS = 64


def _weight_groups(kernel: np.ndarray) -> list[tuple[np.float32, list[tuple[int, int]]]]:
    """The nonzero taps of a 5×5 filter grouped by weight: ``[(weight, [(dy, dx), ...]), ...]``.

    The symmetric filters have few distinct weights, so a group's samples are summed and
    multiplied once.
    """
    groups: dict[float, list[tuple[int, int]]] = {}
    for dy, dx in zip(*np.nonzero(kernel), strict=True):
        groups.setdefault(float(kernel[dy, dx]), []).append((int(dy), int(dx)))
    return [(np.float32(weight), offsets) for weight, offsets in groups.items()]


def _demosaic_xp(mosaic: Any, cfa: CFALayout, filters: BayerFilters) -> Any:
    """Reference path (NumPy or CuPy array code): each filter applied only at its own sites.

    On the CPU the rows are taken in strips of :data:`CPU_STRIP_ROWS` with a mirrored two-row
    halo; the pixels do not depend on the strips.
    """
    xp = array_module(mosaic)
    h, w = mosaic.shape
    src = mosaic.astype(xp.float32, copy=False)
    out = xp.empty((h, w, 3), dtype=xp.float32)
    plan = [
        (y, x, [(channel, None if name is None else _weight_groups(getattr(filters, name))) for channel, name in recipe.items()])
        for y, x, recipe in _site_plan(cfa)
    ]
    step = h if xp is not np else CPU_STRIP_ROWS
    for start in range(0, h, max(step, 1)):
        stop = min(start + step, h)
        first, last = max(0, start - 2), min(h, stop + 2)
        padded = xp.pad(src[first:last], ((2 - (start - first), 2 - (last - stop)), (2, 2)), mode="reflect")
        rows = stop - start
        for y, x, recipe in plan:
            for channel, groups in recipe:
                target = out[start + y : stop : 2, x::2, channel]
                if groups is None:
                    target[...] = src[start + y : stop : 2, x::2]
                    continue
                acc = None
                for weight, offsets in groups:
                    taps = [padded[y + dy : y + dy + rows : 2, x + dx : x + dx + w : 2] for dy, dx in offsets]
                    group = taps[0] + taps[1] if len(taps) > 1 else taps[0] * np.float32(1.0)
                    for tap in taps[2:]:
                        group += tap
                    group *= weight
                    if acc is None:
                        acc = group
                    else:
                        acc += group
                target[...] = acc
    return out


_BLOCK = (32, 8)


def kernel_launch(shape: tuple[int, int], cfa: CFALayout) -> tuple[tuple[int, int], tuple[int, int], tuple[np.int32, ...]]:
    """Grid, block and scalar arguments ``(height, width, red_row, red_col)`` of the kernel.

    The kernel's arguments are ``(mosaic, out, *scalars, filters)``; the CPU emulation test
    launches it with this same configuration.
    """
    h, w = shape
    ry, rx = _red_site(cfa)
    grid = ((w + _BLOCK[0] - 1) // _BLOCK[0], (h + _BLOCK[1] - 1) // _BLOCK[1])  # x: columns, y: rows
    return grid, _BLOCK, (np.int32(h), np.int32(w), np.int32(ry), np.int32(rx))


def _demosaic_cuda(mosaic: Any, cfa: CFALayout, filters: BayerFilters) -> Any:
    """CuPy path: one thread per pixel in ``kernels/demosaic.cu``, the two missing channels at once."""
    backend = get_backend("cupy")
    xp = backend.xp
    h, w = mosaic.shape
    if h < 3 or w < 3:
        return _demosaic_xp(mosaic, cfa, filters)  # the kernel's mirror needs two pixels each side
    grid, block, scalars = kernel_launch((h, w), cfa)
    src = xp.ascontiguousarray(mosaic, dtype=xp.float32)
    out = xp.empty((h, w, 3), dtype=xp.float32)
    kernel = backend.kernel("demosaic", "bayer_demosaic_5x5")
    kernel(grid, block, (src, out, *scalars, xp.asarray(filters.stacked())))
    return out


def _method(filters: BayerFilters) -> Callable[[Any, CFALayout], Any]:
    def run(mosaic: Any, cfa: CFALayout) -> Any:
        if array_module(mosaic) is np:
            return _demosaic_xp(mosaic, cfa, filters)
        return _demosaic_cuda(mosaic, cfa, filters)

    return run


#: Demosaicing methods by name: ``fn(mosaic (H, W), cfa) -> (H, W, 3)`` on the mosaic's device.
DEMOSAIC_METHODS: dict[str, Callable[[Any, CFALayout], Any]] = {
    "bilinear": _method(BILINEAR),
    "malvar2004": _method(MALVAR2004),
    "menon2007": demosaic_menon2007,
    "mlri": demosaic_mlri,
}


def demosaic(mosaic: Any, cfa: CFALayout, method: str = "malvar2004") -> Any:
    """Demosaic a Bayer mosaic with the named method.

    Parameters
    ----------
    mosaic
        ``(H, W)`` float array (NumPy or CuPy), linear, white level 1.0, ideally white balanced.
    cfa
        Its Bayer layout; H and W must be even.
    method
        A key of :data:`DEMOSAIC_METHODS`.

    Returns
    -------
    ``(H, W, 3)`` float32 array on the same device; values are not clipped (the
    Malvar-He-Cutler correction can overshoot slightly at edges).

    Examples
    --------
    >>> flat = np.full((4, 6), 0.5, dtype=np.float32)
    >>> float(demosaic(flat, CFALayout.from_name("RGGB")).std())
    0.0
    """
    try:
        fn = DEMOSAIC_METHODS[method]
    except KeyError:
        raise ConfigError(f"demosaic method {method!r} is not known; choose one of {', '.join(DEMOSAIC_METHODS)}") from None
    cfa.check_shape(mosaic.shape)
    return fn(mosaic, cfa)


@dataclass(frozen=True)
class DemosaicParams:
    method: str = param("malvar2004", choices=tuple(DEMOSAIC_METHODS), doc="demosaicing algorithm")
    clip: bool = param(True, doc="clip the result to [0, 1]: the Malvar-He-Cutler correction overshoots at edges")


@register_stage("demosaic", DemosaicParams, consumes="raw")
def demosaic_stage(frame: RawFrame, params: DemosaicParams, ctx: StageContext) -> Image:
    """Interpolate the two missing colours at every pixel of a Bayer mosaic."""
    frame.require("demosaic", domain="linear", bayer=True)
    rgb = demosaic(frame.mosaic, frame.cfa, params.method)
    if params.clip:  # in place: every method returns a fresh array
        rgb = ctx.backend.xp.clip(rgb, 0.0, 1.0, out=rgb)
    return Image(rgb, space="camera", transfer="linear", info=frame.info, wb_gains=frame.wb_gains, cct_k=frame.cct_k)
