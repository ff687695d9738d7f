"""The YCbCr (YUV) domain the luma and chroma stages work in: full-range ITU-R BT.709.

Domain in: ``(H, W, 3)`` sRGB-encoded R'G'B' (colour space sRGB or Display P3), float32, [0, 1].
Domain out: luma ``Y'`` in [0, 1] and chroma ``Cb``, ``Cr`` in [-0.5, 0.5], full range (no
studio-swing offsets), each an ``(H, W)`` float32 plane on the input's device::

    Y' = Kr R' + Kg G' + Kb B'    Cb = (B' - Y') / (2 (1 - Kb))    Cr = (R' - Y') / (2 (1 - Kr))

with ``Kr = 0.2126``, ``Kb = 0.0722``, ``Kg = 1 - Kr - Kb``. Display P3 images use the same
matrix: the stages only need a split into luma and chroma whose inverse is exact, so the luma of
a P3 image is a little off its true relative luminance, which changes no result of theirs.

A stage that changes some of ``Y'``, ``Cb``, ``Cr`` adds the change back to the R'G'B' input
(:func:`add_ycbcr`) instead of converting all three planes back: where it changes nothing the
pixel is left bit-exact, and a change of luma alone adds the same amount to R', G' and B'.

References
----------
ITU-R Recommendation BT.709-6 (2015), part 1, items 3.2 and 3.3 (luma and colour-difference signals).
ITU-T Recommendation H.273, ``MatrixCoefficients = 1`` with ``VideoFullRangeFlag = 1``.
"""

from __future__ import annotations

from typing import Any

from isp.backend import array_module
from isp.errors import StageError
from isp.frame import Image

__all__ = ["KR", "KB", "KG", "YCBCR_SPACES", "rgb_to_ycbcr", "ycbcr_planes", "ycbcr_to_rgb", "add_ycbcr", "require_encoded_rgb"]

#: BT.709 luma weights of red and blue; green's makes the three sum to one.
KR = 0.2126
KB = 0.0722
KG = 1.0 - KR - KB

#: Colour spaces whose sRGB-encoded images the YCbCr stages accept.
YCBCR_SPACES = ("srgb", "display_p3")

_CB_SCALE = 2.0 * (1.0 - KB)  # B' - Y' at pure blue is 1 - Kb; this maps it to Cb = 0.5
_CR_SCALE = 2.0 * (1.0 - KR)
_G_FROM_CB = KB * _CB_SCALE / KG
_G_FROM_CR = KR * _CR_SCALE / KG


def rgb_to_ycbcr(rgb: Any) -> tuple[Any, Any, Any]:
    """Split R'G'B' into full-range BT.709 luma and chroma planes.

    Parameters
    ----------
    rgb
        ``(H, W, 3)`` float array (NumPy or CuPy), sRGB-encoded.

    Returns
    -------
    ``(y, cb, cr)``: three ``(H, W)`` arrays of the input's dtype on its device.

    Examples
    --------
    >>> import numpy as np
    >>> [round(float(v[0, 0]), 4) for v in rgb_to_ycbcr(np.array([[[0.0, 0.0, 1.0]]]))]
    [0.0722, 0.5, -0.0458]
    """
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = KR * r + KG * g + KB * b
    return y, (b - y) * (1.0 / _CB_SCALE), (r - y) * (1.0 / _CR_SCALE)


def ycbcr_planes(rgb: Any) -> Any:
    """:func:`rgb_to_ycbcr` as one ``(3, H, W)`` array ``[Y', Cb, Cr]``, in one matrix product.

    Reading the interleaved R'G'B' once, instead of once per strided channel slice, makes this
    several times faster on large images; the values agree with :func:`rgb_to_ycbcr` to rounding.

    Parameters
    ----------
    rgb
        ``(H, W, 3)`` float array (NumPy or CuPy), sRGB-encoded.
    """
    xp = array_module(rgb)
    rows = ((KR, KG, KB), (-KR / _CB_SCALE, -KG / _CB_SCALE, (1.0 - KB) / _CB_SCALE), ((1.0 - KR) / _CR_SCALE, -KG / _CR_SCALE, -KB / _CR_SCALE))
    matrix = xp.asarray(rows, dtype=rgb.dtype)
    return xp.matmul(matrix, rgb.reshape(-1, 3).T).reshape(3, *rgb.shape[:2])


def ycbcr_to_rgb(y: Any, cb: Any, cr: Any) -> Any:
    """Join luma and chroma back into R'G'B' (the inverse of :func:`rgb_to_ycbcr`).

    Any of the three may be a Python number (a plane of that constant); at least one is an
    ``(H, W)`` array. Returns ``(H, W, 3)``; values are not clipped.
    """
    plane = next(p for p in (y, cb, cr) if not isinstance(p, (int, float)))
    rgb = array_module(plane).empty((*plane.shape, 3), dtype=plane.dtype)
    rgb[..., 0] = y + _CR_SCALE * cr
    rgb[..., 1] = y - _G_FROM_CB * cb - _G_FROM_CR * cr
    rgb[..., 2] = y + _CB_SCALE * cb
    return rgb


def add_ycbcr(rgb: Any, dy: Any = 0.0, dcb: Any = 0.0, dcr: Any = 0.0) -> Any:
    """``rgb`` plus a change of luma and chroma, clipped to [0, 1].

    Parameters
    ----------
    rgb
        ``(H, W, 3)`` sRGB-encoded float array.
    dy, dcb, dcr
        Changes of ``Y'``, ``Cb``, ``Cr``: ``(H, W)`` arrays, or ``0.0`` for no change.
    """
    xp = array_module(rgb)
    if _is_zero(dcb) and _is_zero(dcr):
        change = dy if _is_zero(dy) else dy[..., None]  # luma alone moves R', G' and B' alike
    else:
        change = ycbcr_to_rgb(dy, dcb, dcr)
    return xp.clip(rgb + change, 0.0, 1.0)


def _is_zero(change: Any) -> bool:
    return isinstance(change, (int, float)) and change == 0


def require_encoded_rgb(image: Image, stage: str) -> None:
    """Raise a :class:`StageError` naming ``stage`` unless ``image`` is float sRGB-encoded R'G'B'."""
    image.require(stage, transfer="srgb")
    if image.space not in YCBCR_SPACES:
        raise StageError(
            f"stage '{stage}' needs an image in colour space {' or '.join(map(repr, YCBCR_SPACES))}, got {image.space!r}"
        )
