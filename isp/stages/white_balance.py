"""White balance on the mosaic: per-colour gains so that a neutral surface has R = G = B.

Input and output: a RawFrame in the ``linear`` domain. Balancing on the mosaic, before
demosaicing, matters: gradient-corrected demosaics such as Malvar-He-Cutler assume balanced
channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isp.backend import array_module
from isp.config import param
from isp.errors import StageError
from isp.frame import RawFrame
from isp.stages.registry import StageContext, register_stage

__all__ = ["WhiteBalanceParams", "white_balance", "gains_from_neutral", "region_neutral"]


@dataclass(frozen=True)
class WhiteBalanceParams:
    mode: str = param(
        "as_shot",
        choices=("as_shot", "manual", "region"),
        doc="as_shot: the frame's as-shot neutral; manual: the gains below; region: make the mean of a region (a grey card) neutral",
    )
    gains: list[float] = param([1.0, 1.0, 1.0], range=(0.01, 64.0), shape=(3,), doc="manual R, G, B gains (mode=manual)")
    region: list[int] | None = param(
        None, shape=(4,), range=(0, None), unit="px", doc="[top, left, bottom, right] of a neutral region in mosaic pixels (mode=region)"
    )
    clip_highlights: bool = param(
        True,
        doc="clip to the white level after the gains so that saturated highlights stay neutral instead of turning magenta",
    )


def gains_from_neutral(neutral: np.ndarray) -> np.ndarray:
    """Gains ``(3,)`` that map the camera neutral to grey, the smallest gain being 1.

    Examples
    --------
    >>> gains_from_neutral(np.array([0.5, 1.0, 0.8])).tolist()
    [2.0, 1.0, 1.25]
    """
    neutral = np.asarray(neutral, dtype=np.float64)
    if neutral.shape != (3,) or not np.all(np.isfinite(neutral)) or np.any(neutral <= 0):
        raise StageError(f"white_balance: as-shot neutral {neutral.tolist()} must be three positive numbers")
    return neutral.max() / neutral


def region_neutral(frame: RawFrame, region: list[int] | None) -> np.ndarray:
    """Mean R, G and B of a rectangle of the mosaic: the camera neutral if the region is grey."""
    if region is None:
        raise StageError("white_balance: mode=region needs white_balance.region=[top, left, bottom, right]")
    top, left, bottom, right = region
    h, w = frame.shape
    th, tw = frame.cfa.tile_shape
    if not (0 <= top < bottom <= h and 0 <= left < right <= w) or bottom - top < th or right - left < tw:
        raise StageError(f"white_balance.region={list(region)} is not a rectangle of at least one CFA tile inside the {h}x{w} frame")
    # shrink to whole tiles inside the rectangle, so that every colour is sampled in its own
    # proportion and nothing outside the card is
    top, left = top + (-top) % th, left + (-left) % tw
    bottom, right = top + (bottom - top) // th * th, left + (right - left) // tw * tw
    if bottom <= top or right <= left:
        raise StageError(f"white_balance.region={list(region)} holds no whole CFA tile ({th}x{tw})")
    crop = frame.mosaic[top:bottom, left:right]
    colour = frame.cfa.colour_map(crop.shape, array_module(crop))
    means = [float(crop[colour == c].mean()) for c in range(3)]
    if min(means) <= 0:
        raise StageError(f"white_balance.region={list(region)}: a colour has no signal there (means {means})")
    return np.asarray(means)


@register_stage("white_balance", WhiteBalanceParams, consumes="raw")
def white_balance(frame: RawFrame, params: WhiteBalanceParams, ctx: StageContext) -> RawFrame:
    """Multiply each CFA colour by its white-balance gain."""
    frame.require("white_balance", domain="linear")
    if frame.wb_gains is not None:
        raise StageError("stage 'white_balance': the frame is already white balanced")
    if params.mode == "as_shot":
        gains = gains_from_neutral(frame.info.as_shot_neutral)
    elif params.mode == "manual":
        gains = np.asarray(params.gains, dtype=np.float64)
    else:
        gains = gains_from_neutral(region_neutral(frame, params.region))
    balanced = frame.cfa.apply_per_site(frame.mosaic, scale=frame.cfa.per_site(gains))
    if params.clip_highlights:
        balanced = ctx.backend.xp.minimum(balanced, np.float32(frame.white_level))
    return frame.replace(mosaic=balanced, wb_gains=gains)
