"""Defective pixel correction: hot, dead and stuck pixels found in each frame or listed, replaced
by the median of their same-colour neighbours.

Input and output: a RawFrame in the ``linear`` domain (float32, white = 1.0 before gains), any
CFA layout, with or without white-balance and lens-shading gains applied.

A pixel's neighbours are the 8 nearest pixels of its own CFA tile site (:func:`site_planes`):
two pixels away in a Bayer mosaic, four in a Quad Bayer one, so that they share its colour
filter and, in Quad Bayer, its position within the quad (and so its sub-pixel gain).

Modes
-----
``dynamic``
    A pixel is a defect when it lies more than ``threshold_sigma`` noise standard deviations
    above the largest of its neighbours (hot) or below the smallest (dead or cold), the noise
    being the sensor's noise model (:mod:`isp.stages.noise_model`) at the level of that
    largest or smallest neighbour, and also by more than ``spread_ratio`` times the range of
    the neighbours (max − min): in fine texture the neighbours already differ from one another
    and a pixel standing out of them is more likely detail than a defect, as phone ISPs judge
    it; a defect on a flat area, where the range is noise, is caught. An edge, a gradient or a thin line leaves some neighbours
    on the pixel's own side or along the line, so it is not flagged; an isolated point of light
    smaller than the site spacing (a distant star, a glint) looks like a hot pixel to this
    detector, as to any that compares a pixel with its neighbours.
``static``
    The pixels of a defect list (from a factory calibration): ``defects`` in the config and
    ``defects_file`` (``.csv`` with one ``row,col`` per line, or ``.npy`` of shape ``(N, 2)``),
    in the frame's mosaic coordinates.
``both``
    The union of the two.

A defect is replaced by the median of those of its neighbours that are not defects themselves,
so that a cluster of two or three defects is repaired from clean pixels.

For a clean pixel in a uniform area whose neighbours share its Gaussian noise, the chance of a
false hot flag is ``∫ φ(x) Φ(x - t)^8 dx`` at threshold ``t``: 5.4e-5 at ``t = 3``, 9.4e-7 at
``t = 4``, 7.2e-9 at ``t = 5``, and the same for a false cold flag (Poisson-Gaussian flat
fields measure within a few per cent of it; see the tests). The default 4 leaves about 12
false flags per side in a 12.5 MP frame, each replaced by a value its neighbours support.

References
----------
Halide, ``apps/camera_pipe``: ``hot_pixel_suppression`` (clamp to the same-colour neighbours).
A. Tanbakuchi, A. van der Sijde, B. Dillen, A. Theuwissen, W. de Haan, "Adaptive pixel defect
correction", Proc. SPIE 5017 (2003).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from isp.backend import array_module
from isp.cfa import CFALayout
from isp.config import param
from isp.errors import ConfigError, InputError, StageError
from isp.frame import RawFrame
from isp.stages.noise_model import NoiseModel, from_site_planes, noise_model, site_planes
from isp.stages.registry import StageContext, register_stage

__all__ = ["DefectCorrectionParams", "defect_correction", "find_defects", "correct_defects", "read_defect_list", "NEIGHBOURS"]

#: Offsets of the 8 same-site neighbours in a site plane (rows, columns).
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


@dataclass(frozen=True)
class DefectCorrectionParams:
    mode: str = param(
        "dynamic",
        choices=("dynamic", "static", "both"),
        doc="dynamic: find defects in each frame; static: correct the listed ones; both: the union",
    )
    threshold_sigma: float = param(
        4.0,
        range=(1.0, 1000.0),
        unit="sigma",
        table="iso",
        doc="how far beyond its neighbours' range a pixel must lie, in noise standard deviations, to be a defect (dynamic)",
    )
    spread_ratio: float = param(
        1.0,
        range=(0.0, 10.0),
        table="iso",
        doc="a defect must also lie beyond its neighbours' range by this fraction of that range, so that fine texture, "
        "whose neighbours already differ, is not mistaken for defects (dynamic)",
    )
    defects: list[list[int]] = param(
        [], range=(0, None), unit="px", doc="known defects as [[row, col], ...] in mosaic coordinates (static, both)"
    )
    defects_file: str | None = param(
        None, doc="a .csv (one row,col per line) or .npy (N x 2) defect list, added to defects (static, both)"
    )

    def __post_init__(self) -> None:
        for i, defect in enumerate(self.defects):
            if len(defect) != 2:
                raise ConfigError(f"defect_correction.defects[{i}]={defect!r}: expected [row, col]")
        if self.mode == "static" and not self.defects and self.defects_file is None:
            raise ConfigError("defect_correction: mode=static needs defects or defects_file")


def read_defect_list(path: str | Path) -> np.ndarray:
    """A defect list file as an ``(N, 2)`` int64 array of ``(row, col)``.

    ``.npy``: an integer array of shape ``(N, 2)``. ``.csv``: one ``row,col`` pair per line;
    ``#`` comments and one header line are allowed.

    Raises
    ------
    InputError
        The file is missing, unreadable, of another kind, or not a list of pixel positions.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".npy"):
        raise InputError(f"{path}: a defect list must be a .csv or .npy file (defect_correction.defects_file)")
    try:
        if suffix == ".npy":
            table = np.load(path, allow_pickle=False)
        else:
            try:
                table = np.loadtxt(path, delimiter=",", comments="#", ndmin=2)
            except ValueError:
                table = np.loadtxt(path, delimiter=",", comments="#", ndmin=2, skiprows=1)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the defect list (defect_correction.defects_file): {exc}") from exc
    table = np.asarray(table)
    if table.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 2 or not np.all(np.isfinite(table)) or np.any(table != np.round(table)) or np.any(table < 0):
        raise InputError(f"{path}: a defect list holds (row, col) pairs of non-negative integers; got an array of shape {table.shape}")
    return table.astype(np.int64)


#: Mosaic rows per strip on the CPU (rounded to whole CFA tiles): a strip's neighbour extremes
#: and margins stay in the processor's caches; a GPU takes the frame as one strip.
CPU_STRIP_ROWS = 32


def _with_neighbours(mosaic: Any, cfa: CFALayout, start: int, stop: int) -> Any:
    """Mosaic rows ``start`` to ``stop`` (whole tiles) with one tile of same-site neighbours on
    every side, mirrored past the frame's borders site by site (``reflect``: ``c b | a b c``)."""
    xp = array_module(mosaic)
    th, tw = cfa.tile_shape
    height, width = mosaic.shape
    first, last = max(0, start - th), min(height, stop + th)
    if height < 2 * th or width < 2 * tw:  # a single tile row or column mirrors onto itself
        planes = site_planes(mosaic[first:last], cfa)
        top, bottom = (start - first) // th, (last - stop) // th
        return from_site_planes(xp.pad(planes, ((0, 0), (1 - top, 1 - bottom), (1, 1)), mode="reflect"), cfa)
    # the tile row (column) next to a border stands for the one past it
    rows = [mosaic[th : 2 * th]] if first == start else []
    rows.append(mosaic[first:last])
    if last == stop:
        rows.append(mosaic[height - 2 * th : height - th])
    block = xp.concatenate(rows) if len(rows) > 1 else rows[0]
    return xp.concatenate([block[:, tw : 2 * tw], block, block[:, width - 2 * tw : width - tw]], axis=1)


def _extreme_of_neighbours(around: Any, th: int, tw: int, rows: int, width: int, extreme: Any) -> Any:
    """The maximum (or minimum) of each pixel's 8 same-site neighbours in :func:`_with_neighbours`' block.

    Left-and-right and three-across extremes are taken once per row and shared by the rows a
    tile above and below: four passes instead of seven.
    """
    sides = extreme(around[:, :width], around[:, 2 * tw : 2 * tw + width])
    across = extreme(sides, around[:, tw : tw + width])
    out = extreme(across[:rows], across[2 * th : 2 * th + rows])
    return extreme(out, sides[th : th + rows], out=out)


def _margin(noise: NoiseModel, level: Any, threshold: np.float32, spread: Any) -> Any:
    """``threshold · sigma(level) + spread``, with the operations of :meth:`NoiseModel.sigma`."""
    xp = array_module(level)
    sigma = xp.maximum(level, np.float32(0.0))
    sigma *= noise.slope
    sigma += noise.offset
    xp.sqrt(sigma, out=sigma)
    sigma *= threshold
    sigma += spread
    return sigma


def find_defects(frame: RawFrame, threshold_sigma: float, xp: Any, spread_ratio: float = 0.0) -> Any:
    """``(H, W)`` bool mask of the pixels beyond their neighbours' range by ``threshold_sigma``
    noise standard deviations and by ``spread_ratio`` times that range (see the module docstring).

    The neighbours of a pixel are the 8 nearest of its tile site, one tile away; the work runs
    in the mosaic's own layout, in strips of rows on the CPU.
    """
    cfa = frame.cfa
    th, tw = cfa.tile_shape
    mosaic = frame.mosaic.astype(xp.float32, copy=False)
    model = noise_model(frame, xp)
    threshold, ratio = np.float32(threshold_sigma), np.float32(spread_ratio)
    height, width = mosaic.shape
    defects = xp.empty(mosaic.shape, dtype=bool)
    step = height if xp is not np else max(th, CPU_STRIP_ROWS // th * th)
    for start in range(0, height, max(step, 1)):
        stop = min(start + step, height)
        around = _with_neighbours(mosaic, cfa, start, stop)
        rows = stop - start
        highest, lowest = (_extreme_of_neighbours(around, th, tw, rows, width, extreme) for extreme in (xp.maximum, xp.minimum))
        spread = highest - lowest
        spread *= ratio
        noise = NoiseModel(model.slope[start:stop], model.offset[start:stop], model.estimated)
        centre = around[th:-th, tw:-tw]
        # judged by the noise at the neighbour it must beat: on the bright side of an edge the
        # mean of the neighbours would understate a hot candidate's noise
        bound = _margin(noise, highest, threshold, spread)
        bound += highest
        flagged = xp.greater(centre, bound, out=defects[start:stop])
        bound = _margin(noise, lowest, threshold, spread)
        xp.subtract(lowest, bound, out=bound)
        flagged |= centre < bound
    return defects


def correct_defects(mosaic: Any, cfa: CFALayout, defects: Any) -> Any:
    """A copy of ``mosaic`` with each pixel of the bool mask ``defects`` replaced by the median
    of its same-site neighbours that are not defects (left as it is if all 8 are).

    Examples
    --------
    >>> mosaic = np.full((6, 6), 0.25, np.float32)
    >>> mosaic[2, 3] = 1.0
    >>> defects = mosaic > 0.5
    >>> float(correct_defects(mosaic, CFALayout.from_name("RGGB"), defects)[2, 3])
    0.25
    """
    xp = array_module(mosaic)
    th, tw = cfa.tile_shape
    out = mosaic.astype(xp.float32, copy=True)
    row, col = xp.nonzero(defects)
    if row.size == 0:
        return out
    # a neighbour's site-plane row and column, mirrored as np.pad's reflect mode takes them
    plane_rows = xp.asarray(np.pad(np.arange(mosaic.shape[0] // th), 1, mode="reflect"))
    plane_cols = xp.asarray(np.pad(np.arange(mosaic.shape[1] // tw), 1, mode="reflect"))
    samples = []
    for dy, dx in NEIGHBOURS:
        near_row = plane_rows[row // th + 1 + dy] * th + row % th
        near_col = plane_cols[col // tw + 1 + dx] * tw + col % tw
        # defects become +inf: they sort after every usable neighbour on any backend
        samples.append(xp.where(defects[near_row, near_col], xp.float32(xp.inf), out[near_row, near_col]))
    samples = xp.stack(samples)
    count = xp.sum(xp.isfinite(samples), axis=0)
    ordered = xp.sort(samples, axis=0)
    low = xp.take_along_axis(ordered, xp.maximum(count - 1, 0)[None] // 2, axis=0)[0]
    high = xp.take_along_axis(ordered, (count // 2)[None], axis=0)[0]
    median = (low + high) * np.float32(0.5)
    out[row, col] = xp.where(count > 0, median, out[row, col])
    return out


def _static_mask(frame: RawFrame, params: DefectCorrectionParams, xp: Any) -> Any:
    listed = [np.asarray(params.defects, dtype=np.int64).reshape(-1, 2)]
    if params.defects_file is not None:
        listed.append(read_defect_list(params.defects_file))
    positions = np.concatenate(listed)
    h, w = frame.shape
    outside = (positions[:, 0] >= h) | (positions[:, 1] >= w)
    if np.any(outside):
        row, col = positions[np.argmax(outside)].tolist()
        raise StageError(
            f"stage 'defect_correction': defect [{row}, {col}] lies outside the {h}x{w} frame "
            f"({int(outside.sum())} listed defect(s) do); the list is in the frame's mosaic coordinates"
        )
    mask = xp.zeros((h, w), dtype=bool)
    if positions.size:
        mask[xp.asarray(positions[:, 0]), xp.asarray(positions[:, 1])] = True
    return mask


@register_stage("defect_correction", DefectCorrectionParams, consumes="raw")
def defect_correction(frame: RawFrame, params: DefectCorrectionParams, ctx: StageContext) -> RawFrame:
    """Replace hot, dead and listed pixels by the median of their same-colour neighbours."""
    frame.require("defect_correction", domain="linear")
    xp = ctx.backend.xp
    if params.mode == "static":
        defects = _static_mask(frame, params, xp)
    else:
        defects = find_defects(frame, params.threshold_sigma, xp, params.spread_ratio)
        if params.mode == "both":
            defects = defects | _static_mask(frame, params, xp)
    return frame.replace(mosaic=correct_defects(frame.mosaic, frame.cfa, defects))
