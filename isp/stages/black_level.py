"""Black-level subtraction and normalisation to the linear domain (white level = 1.0).

Input: a RawFrame in the ``dn`` domain (raw digital numbers with the black pedestal).
Output: a float32 RawFrame in the ``linear`` domain, ``(dn - black) / (white - black)`` per CFA
site, so that black is 0.0 and the white level is 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from isp.backend import array_module
from isp.cfa import CFALayout
from isp.config import param
from isp.frame import RawFrame
from isp.stages.registry import StageContext, register_stage

__all__ = ["BlackLevelParams", "black_level", "per_site_affine", "CPU_CHUNK_PIXELS"]

#: Pixels per chunk on the CPU: a chunk's float32 result is scaled and clipped while it is in
#: the processor's caches, instead of in full-frame passes; a GPU takes the frame at once.
CPU_CHUNK_PIXELS = 1 << 15


@dataclass(frozen=True)
class BlackLevelParams:
    clip_negative: bool = param(
        False,
        doc="clip values below black to 0; off keeps the noise distribution unbiased for later stages",
    )


def per_site_affine(
    mosaic: Any, cfa: CFALayout, scale: Any, offset: Any = None, floor: float | None = None, ceiling: float | None = None
) -> Any:
    """``clip((mosaic + offset) * scale, floor, ceiling)`` as float32, ``offset`` and ``scale`` per CFA tile site.

    The same float32 operations as :meth:`isp.cfa.CFALayout.apply_per_site` followed by
    ``maximum``/``minimum``, in one pass over the mosaic in chunks of rows on the CPU.

    Parameters
    ----------
    mosaic
        ``(H, W)`` mosaic (any real dtype), NumPy or CuPy.
    cfa
        Its layout.
    scale, offset
        Per-site values of shape ``cfa.tile_shape``; ``offset`` ``None`` adds nothing.
    floor, ceiling
        Bounds applied after the scaling, ``None`` for none.
    """
    xp = array_module(mosaic)
    cfa.check_shape(mosaic.shape)
    th, tw = cfa.tile_shape
    height, width = mosaic.shape

    def across_row(per_site: Any) -> Any:
        # each site value repeated along its tile row: (th, W), so that the passes run along whole
        # rows instead of the tile's few columns (NumPy's inner loops would be 2 elements long)
        return xp.asarray(np.tile(np.asarray(per_site, dtype=np.float32).reshape(th, tw), (1, width // tw)))

    scale_rows = across_row(scale)
    offset_rows = None if offset is None else across_row(offset)
    out = xp.empty(mosaic.shape, dtype=xp.float32)
    tiles = mosaic.reshape(height // th, th, width)
    out_tiles = out.reshape(height // th, th, width)
    step = len(tiles) if xp is not np else max(1, CPU_CHUNK_PIXELS // (th * width))
    for start in range(0, len(tiles), max(step, 1)):
        chunk = out_tiles[start : start + step]
        chunk[...] = tiles[start : start + step]  # to float32 first, as apply_per_site converts
        if offset_rows is not None:
            chunk += offset_rows
        chunk *= scale_rows
        if floor is not None:
            xp.maximum(chunk, np.float32(floor), out=chunk)
        if ceiling is not None:
            xp.minimum(chunk, np.float32(ceiling), out=chunk)
    return out


@register_stage("black_level", BlackLevelParams, consumes="raw")
def black_level(frame: RawFrame, params: BlackLevelParams, ctx: StageContext) -> RawFrame:
    """Subtract the per-site black level and scale so that the white level is 1.0."""
    frame.require("black_level", domain="dn")
    black = frame.black_level
    linear = per_site_affine(
        frame.mosaic, frame.cfa, scale=1.0 / (frame.white_level - black), offset=-black, floor=0.0 if params.clip_negative else None
    )
    return frame.replace(mosaic=linear, black_level=np.zeros_like(black), white_level=1.0, domain="linear")
