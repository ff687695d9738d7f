"""Black-level subtraction and normalisation to the linear domain (white level = 1.0).

Input: a RawFrame in the ``dn`` domain (raw digital numbers with the black pedestal).
Output: a float32 RawFrame in the ``linear`` domain, ``(dn - black) / (white - black)`` per CFA
site, so that black is 0.0 and the white level is 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isp.config import param
from isp.frame import RawFrame
from isp.stages.registry import StageContext, register_stage

__all__ = ["BlackLevelParams", "black_level"]


@dataclass(frozen=True)
class BlackLevelParams:
    clip_negative: bool = param(
        False,
        doc="clip values below black to 0; off keeps the noise distribution unbiased for later stages",
    )


@register_stage("black_level", BlackLevelParams, consumes="raw")
def black_level(frame: RawFrame, params: BlackLevelParams, ctx: StageContext) -> RawFrame:
    """Subtract the per-site black level and scale so that the white level is 1.0."""
    frame.require("black_level", domain="dn")
    black = frame.black_level
    linear = frame.cfa.apply_per_site(frame.mosaic, scale=1.0 / (frame.white_level - black), offset=-black)
    if params.clip_negative:
        linear = ctx.backend.xp.maximum(linear, 0.0)
    return frame.replace(mosaic=linear, black_level=np.zeros_like(black), white_level=1.0, domain="linear")
