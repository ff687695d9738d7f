"""The sRGB opto-electronic transfer function (IEC 61966-2-1) and its inverse.

Stage ``oetf``: an Image in linear light to the sRGB-encoded Image, clipped to [0, 1] first.
The functions take and return arrays on any backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from isp.backend import array_module
from isp.config import param
from isp.frame import Image
from isp.stages.registry import StageContext, register_stage

__all__ = ["srgb_oetf", "srgb_eotf", "OetfParams", "oetf"]

_A = 0.055
_LINEAR_LIMIT = 0.0031308
_ENCODED_LIMIT = 0.04045


def srgb_oetf(linear: Any) -> Any:
    """Encode linear light with the sRGB curve; values outside [0, 1] are clipped first.

    Examples
    --------
    >>> import numpy as np
    >>> srgb_oetf(np.array([0.0, 0.0031308, 0.18, 1.0])).round(4).tolist()
    [0.0, 0.0405, 0.4614, 1.0]
    """
    xp = array_module(linear)
    x = xp.clip(linear, 0.0, 1.0)
    high = (1.0 + _A) * xp.power(xp.maximum(x, _LINEAR_LIMIT), 1.0 / 2.4) - _A
    return xp.where(x <= _LINEAR_LIMIT, 12.92 * x, high).astype(x.dtype, copy=False)


def srgb_eotf(encoded: Any) -> Any:
    """Decode sRGB-encoded values in [0, 1] to linear light (the inverse of :func:`srgb_oetf`)."""
    xp = array_module(encoded)
    v = xp.clip(encoded, 0.0, 1.0)
    high = xp.power((xp.maximum(v, _ENCODED_LIMIT) + _A) / (1.0 + _A), 2.4)
    return xp.where(v <= _ENCODED_LIMIT, v / 12.92, high).astype(v.dtype, copy=False)


@dataclass(frozen=True)
class OetfParams:
    function: str = param("srgb", choices=("srgb",), doc="transfer function to encode with")


@register_stage("oetf", OetfParams, consumes="image")
def oetf(image: Image, params: OetfParams, ctx: StageContext) -> Image:
    """Encode linear sRGB with the sRGB transfer function."""
    image.require("oetf", space="srgb", transfer="linear")
    return image.replace(data=srgb_oetf(image.data), transfer="srgb")
