"""Lens-shading correction (LSC): undo the lens's vignetting and colour shading with gain maps.

Input and output: a RawFrame in the ``linear`` domain (after ``black_level``, before
``white_balance``), any CFA. The gains come with the frame (``frame.info.gain_maps``): the DNG
OpcodeList2 GainMaps of a raw file, or the lens calibration a simulated capture carries
(:func:`isp.sensor.capture.lens_shading_maps`). Each map is bilinearly interpolated to the
pixels it covers, the maps' gains are multiplied where they overlap (the opcodes run one after
another), and the result is eased by ``strength``::

    gain = 1 + strength · (map − 1)

so ``strength = 1`` is the full correction, ``0`` none, and ``0.5`` leaves half of the falloff
in linear terms: a flat field whose corner the lens darkens to ``s`` comes out at
``(1 + s) / 2`` of the centre. Looks keep some vignetting, and ISPs lower the strength at high
ISO because the correction amplifies the corners' noise with their signal; ``strength`` may be a
table by ISO. The output's ``shading_gain`` is the per-pixel gain applied, so that stages that
model noise scale the frame's noise profile by it.

Highlights are not clipped here: a corrected value may exceed the white level 1.0, and
``white_balance`` clips after its own gains, so that a highlight saturated in every channel stays
neutral. The stage must therefore run before white balance. It is best run on the mosaic the
maps were made for, before ``remosaic`` (which moves maps not yet applied along with their
colours, so running after it works too, with the samples displaced by up to a pixel).

Coordinates follow the DNG specification: a map's ``origin`` and ``spacing`` are relative to the
frame's height and width, and pixel ``(row, col)`` sits at ``((row + 0.5) / H, (col + 0.5) / W)``
(the pixel's centre, as the DNG SDK's ``dng_gain_map_interpolator`` computes it); outside the
grid the edge gains hold. A crop of a frame (a tile, :meth:`isp.frame.RawFrame.crop`) is
corrected in the full frame's coordinates, so it gets exactly the gains of the same pixels. A
frame without gain maps passes through unchanged, with a warning once per source, unless
``require_map`` makes that an error.

References
----------
- Adobe, Digital Negative (DNG) Specification 1.6.0.0, chapter 7, "Opcode List Processing" and
  opcode 9, GainMap.
- Adobe DNG SDK 1.3+, ``dng_gain_map.cpp``: ``dng_gain_map_interpolator`` (pixel-centre relative
  coordinates, bilinear inside the grid, edge values replicated outside).
- Android ``CaptureResult.STATISTICS_LENS_SHADING_CORRECTION_MAP``: per-channel gain maps on a
  coarse grid spanning the active array edge to edge.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from isp.config import param
from isp.errors import StageError
from isp.frame import GainMap, RawFrame
from isp.stages.registry import StageContext, register_stage

__all__ = ["LensShadingParams", "lens_shading", "gain_map_image"]

log = logging.getLogger(__name__)

_WARNED_SOURCES: set[str] = set()


@dataclass(frozen=True)
class LensShadingParams:
    strength: float = param(
        1.0,
        range=(0.0, 1.0),
        table="iso",
        doc="fraction of the correction applied, gain = 1 + strength·(map − 1): 1 flattens the field, below 1 keeps some vignetting",
    )
    require_map: bool = param(False, doc="make a frame without gain maps an error instead of passing it through with a warning")


def _axis(start: int, stop: int, pitch: int, size: int, origin: float, spacing: float, points: int, xp: Any) -> tuple[Any, Any, Any]:
    """Grid neighbours and weight of pixels ``start:stop:pitch`` along one axis of ``size``."""
    pixel = xp.arange(start, stop, pitch, dtype=xp.float64)
    index = xp.clip(((pixel + 0.5) / float(size) - origin) / spacing, 0.0, float(points - 1))
    low = xp.minimum(index.astype(xp.int64), max(points - 2, 0))
    high = xp.minimum(low + 1, points - 1)
    return low, high, (index - low).astype(xp.float32)


def _covered(first: int, end: int, pitch: int, window_start: int, window_stop: int) -> tuple[int, int]:
    """The pixels ``first, first + pitch, ...`` below ``end`` that lie in ``[window_start,
    window_stop)``, as ``(start, stop)`` in full-frame coordinates (``start >= stop``: none)."""
    start = first + max(0, -(-(window_start - first) // pitch)) * pitch
    return start, min(end, window_stop)


def _map_gain(
    gain_map: GainMap, shape: tuple[int, int], origin: tuple[int, int], full_shape: tuple[int, int], xp: Any
) -> tuple[tuple[slice, slice], Any] | None:
    """The gains of one map at the pixels it covers in the window ``shape`` at ``origin`` of the
    full frame: ``(slices of the window, (rows, cols) float32)``."""
    (h, w), (oy, ox), (full_h, full_w) = shape, origin, full_shape
    r_start, r_stop = _covered(gain_map.top, min(gain_map.bottom, full_h), gain_map.row_pitch, oy, oy + h)
    c_start, c_stop = _covered(gain_map.left, min(gain_map.right, full_w), gain_map.col_pitch, ox, ox + w)
    if r_start >= r_stop or c_start >= c_stop:
        return None
    points_v, points_h = gain_map.gains.shape
    grid = xp.asarray(gain_map.gains, dtype=xp.float32)
    r0, r1, fr = _axis(r_start, r_stop, gain_map.row_pitch, full_h, gain_map.origin_v, gain_map.spacing_v, points_v, xp)
    c0, c1, fc = _axis(c_start, c_stop, gain_map.col_pitch, full_w, gain_map.origin_h, gain_map.spacing_h, points_h, xp)
    # Separable bilinear: along the rows on the tiny grid first, then out to every column.
    rows = grid[r0] * (1.0 - fr)[:, None] + grid[r1] * fr[:, None]
    gains = rows[:, c0] * (1.0 - fc) + rows[:, c1] * fc
    area = (slice(r_start - oy, r_stop - oy, gain_map.row_pitch), slice(c_start - ox, c_stop - ox, gain_map.col_pitch))
    return area, gains


def gain_map_image(
    gain_maps: Sequence[GainMap],
    shape: tuple[int, int],
    xp: Any,
    origin: tuple[int, int] = (0, 0),
    full_shape: tuple[int, int] | None = None,
) -> Any:
    """The per-pixel gain of a set of gain maps over a mosaic of ``shape``.

    Parameters
    ----------
    gain_maps
        The maps, applied one after another (their gains multiply where they overlap).
    shape
        ``(H, W)`` of the mosaic (or of a crop of it).
    xp
        ``numpy`` or ``cupy``: where the gain image is built (the grids are copied there).
    origin, full_shape
        For a crop: its top-left pixel in the full mosaic and the full mosaic's ``(H, W)``, to
        which the maps' relative coordinates and areas refer; the crop gets exactly the gains
        of the same pixels of the full mosaic. Default: the mosaic is whole.

    Returns
    -------
    array
        ``(H, W)`` float32, 1 where no map applies.

    Examples
    --------
    >>> import numpy as np
    >>> ramp = GainMap(0, 0, 2, 4, 1, 1, 0.0, 0.0, 1.0, 1.0, np.array([[1.0, 2.0]] * 2, np.float32))
    >>> gain_map_image([ramp], (2, 4), np)[0].tolist()
    [1.125, 1.375, 1.625, 1.875]
    >>> gain_map_image([ramp], (1, 2), np, origin=(1, 2), full_shape=(2, 4)).tolist()
    [[1.625, 1.875]]
    """
    full_shape = tuple(shape) if full_shape is None else tuple(full_shape)
    gain = xp.ones(shape, dtype=xp.float32)
    for gain_map in gain_maps:
        covered = _map_gain(gain_map, shape, tuple(origin), full_shape, xp)
        if covered is not None:
            area, gains = covered
            gain[area] *= gains
    return gain


@register_stage("lens_shading", LensShadingParams, consumes="raw")
def lens_shading(frame: RawFrame, params: LensShadingParams, ctx: StageContext) -> RawFrame:
    """Multiply the mosaic by the frame's lens-shading gain maps, eased by ``strength``."""
    frame.require("lens_shading", domain="linear")
    if frame.wb_gains is not None:
        raise StageError(
            "stage 'lens_shading' must run before white_balance: white balance clips highlights, "
            "and shading gains applied after it would tint them"
        )
    if frame.shading_gain is not None:
        raise StageError("stage 'lens_shading': the frame's lens shading is already corrected")
    maps = frame.info.gain_maps
    if not maps:
        if params.require_map:
            raise StageError(f"stage 'lens_shading': {frame.info.source} has no lens-shading gain maps (lens_shading.require_map=true)")
        if frame.info.source not in _WARNED_SOURCES:
            _WARNED_SOURCES.add(frame.info.source)
            log.warning("lens_shading: %s has no lens-shading gain maps; its shading is left uncorrected", frame.info.source)
        return frame
    if params.strength == 0.0:
        return frame
    gain = gain_map_image(maps, frame.shape, ctx.backend.xp, origin=frame.origin, full_shape=frame.full_shape)
    if params.strength != 1.0:
        gain = 1.0 + float(params.strength) * (gain - 1.0)
    return frame.replace(mosaic=frame.mosaic * gain, shading_gain=gain)
