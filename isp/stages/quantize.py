"""Output quantisation of an encoded image to 8 or 16 bits per channel.

Stage ``quantize``: a float Image with values in [0, 1] to ``uint8`` or ``uint16`` by rounding
to the nearest code (values outside [0, 1] are clipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from isp.backend import array_module
from isp.config import param
from isp.frame import Image
from isp.stages.registry import StageContext, register_stage

__all__ = ["quantize", "QuantizeParams", "quantize_stage", "CPU_CHUNK_VALUES"]

#: Values per chunk on the CPU: the float intermediates of a chunk stay in the processor's
#: caches instead of being written out and read back at full size; a GPU takes all at once.
CPU_CHUNK_VALUES = 1 << 16


def quantize(values: Any, bits: int) -> Any:
    """Round values in [0, 1] to ``bits``-bit unsigned integers (``uint8`` or ``uint16``).

    Examples
    --------
    >>> import numpy as np
    >>> quantize(np.array([0.0, 0.5, 1.0, 1.2]), 8).tolist()
    [0, 128, 255, 255]
    """
    xp = array_module(values)
    dtype = {8: xp.uint8, 16: xp.uint16}[bits]
    values = xp.asarray(values)
    flat = xp.ascontiguousarray(values).reshape(-1)
    out = xp.empty(flat.shape, dtype=dtype)
    top = flat.dtype.type(2**bits - 1) if flat.dtype.kind == "f" else float(2**bits - 1)
    step = flat.size if xp is not np else CPU_CHUNK_VALUES
    for start in range(0, flat.size, max(step, 1)):
        scaled = xp.clip(flat[start : start + step], 0.0, 1.0)
        scaled *= top
        out[start : start + step] = xp.rint(scaled, out=scaled)
    return out.reshape(values.shape)


@dataclass(frozen=True)
class QuantizeParams:
    bits: int = param(8, choices=(8, 16), doc="bits per channel of the output")


@register_stage("quantize", QuantizeParams, consumes="image")
def quantize_stage(image: Image, params: QuantizeParams, ctx: StageContext) -> Image:
    """Round the encoded image to 8- or 16-bit integers."""
    image.require("quantize")
    return image.replace(data=quantize(image.data, params.bits))
