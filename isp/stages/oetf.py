"""The sRGB opto-electronic transfer function (IEC 61966-2-1) and its inverse; output encoding.

Stage ``oetf``: an Image in linear sRGB to the encoded output Image, in sRGB or in Display P3
(P3 primaries with a D65 white and the sRGB curve, the encoding of wide-gamut phone photos).
The primaries are changed on linear light before anything is clipped, so colours outside sRGB
but inside P3 survive in a P3 output. Values are clipped to [0, 1] and encoded with the sRGB
curve. The functions take and return arrays on any backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from isp import colorimetry
from isp.backend import array_module
from isp.config import param
from isp.frame import Image
from isp.stages.registry import StageContext, register_stage

__all__ = ["srgb_oetf", "srgb_eotf", "srgb_to", "apply_matrix", "OetfParams", "oetf", "CPU_CHUNK_PIXELS"]

#: Pixels per chunk on the CPU: a chunk's intermediates stay in the processor's caches, which
#: more than halves the time of these passes (bound by memory traffic) and spares the page
#: faults of full-frame temporaries; a GPU takes the frame at once.
CPU_CHUNK_PIXELS = 1 << 14

_A = 0.055
_LINEAR_LIMIT = 0.0031308
_ENCODED_LIMIT = 0.04045


def srgb_oetf(linear: Any) -> Any:
    """Encode linear light with the sRGB curve; values outside [0, 1] are clipped first.

    Examples
    --------
    >>> import numpy as np
    >>> srgb_oetf(np.array([0.0, 0.0031308, 0.18, 1.0])).round(4).tolist()
    [0.0, 0.0404, 0.4614, 1.0]
    """
    xp = array_module(linear)
    x = xp.clip(linear, 0.0, 1.0)
    high = (1.0 + _A) * xp.power(xp.maximum(x, _LINEAR_LIMIT), 1.0 / 2.4) - _A
    return xp.where(x <= _LINEAR_LIMIT, 12.92 * x, high).astype(x.dtype, copy=False)


def _chunks(count: int, xp: Any) -> list[slice]:
    step = count if xp is not np else CPU_CHUNK_PIXELS
    return [slice(start, start + step) for start in range(0, count, max(step, 1))]


def apply_matrix(rgb: Any, matrix: np.ndarray) -> Any:
    """``matrix @ pixel`` for every pixel of an ``(H, W, 3)`` float32 array on any backend."""
    xp = array_module(rgb)
    pixels = xp.ascontiguousarray(rgb).reshape(-1, 3)  # (N, 3) x (3, 3) products, not H small ones
    transposed = xp.asarray(np.asarray(matrix, dtype=np.float64).T, dtype=xp.float32)
    out = xp.empty(pixels.shape, dtype=xp.result_type(pixels.dtype, xp.float32))
    # in chunks on the CPU, also because OpenBLAS threads one tall product badly on a busy machine
    for chunk in _chunks(pixels.shape[0], xp):
        xp.matmul(pixels[chunk], transposed, out=out[chunk])
    return out.reshape(rgb.shape)


def srgb_eotf(encoded: Any) -> Any:
    """Decode sRGB-encoded values in [0, 1] to linear light (the inverse of :func:`srgb_oetf`)."""
    xp = array_module(encoded)
    v = xp.clip(encoded, 0.0, 1.0)
    high = xp.power((xp.maximum(v, _ENCODED_LIMIT) + _A) / (1.0 + _A), 2.4)
    return xp.where(v <= _ENCODED_LIMIT, v / 12.92, high).astype(v.dtype, copy=False)


@dataclass(frozen=True)
class OetfParams:
    function: str = param("srgb", choices=("srgb",), doc="transfer function to encode with")
    space: str = param("srgb", choices=("srgb", "display_p3"), doc="output primaries: sRGB, or Display P3 for wide-gamut displays")


def srgb_to(space: str) -> np.ndarray:
    """The 3×3 matrix from linear sRGB to linear RGB of ``space`` (an :data:`isp.frame.SPACES` entry)."""
    return np.linalg.inv(colorimetry.RGB_TO_XYZ[space]) @ colorimetry.SRGB_TO_XYZ


@register_stage("oetf", OetfParams, consumes="image")
def oetf(image: Image, params: OetfParams, ctx: StageContext) -> Image:
    """Encode linear sRGB for output: sRGB or Display P3 primaries, the sRGB curve."""
    image.require("oetf", space="srgb", transfer="linear")
    xp = ctx.backend.xp
    pixels = xp.ascontiguousarray(image.data).reshape(-1, 3)
    out = xp.empty(pixels.shape, dtype=pixels.dtype)
    to_space = None if params.space == "srgb" else xp.asarray(srgb_to(params.space).T, dtype=xp.float32)
    for chunk in _chunks(pixels.shape[0], xp):
        linear = pixels[chunk] if to_space is None else xp.matmul(pixels[chunk], to_space)
        out[chunk] = srgb_oetf(linear)
    return image.replace(data=out.reshape(image.data.shape), transfer="srgb", space=params.space)
