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

import numpy as np

from isp.backend import array_module
from isp.errors import StageError
from isp.frame import Image

__all__ = [
    "KR",
    "KB",
    "KG",
    "YCBCR_SPACES",
    "rgb_to_ycbcr",
    "ycbcr_planes",
    "luma_plane",
    "ycbcr_to_rgb",
    "add_ycbcr",
    "add_chroma_rows",
    "require_encoded_rgb",
    "strips",
    "rows_with_halo",
    "extreme_3x3",
    "gaussian_weights",
    "symmetric_filter",
]

#: BT.709 luma weights of red and blue; green's makes the three sum to one.
KR = 0.2126
KB = 0.0722
KG = 1.0 - KR - KB

#: Pixels per matrix product on the CPU (:func:`ycbcr_planes`).
CPU_CHUNK_PIXELS = 1 << 14

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
    rows = ((KR, KG, KB), (-KR / _CB_SCALE, -KG / _CB_SCALE, (1.0 - KB) / _CB_SCALE), ((1.0 - KR) / _CR_SCALE, -KG / _CR_SCALE, -KB / _CR_SCALE))
    return _planes(rgb, rows)


def luma_plane(rgb: Any) -> Any:
    """The luma ``Y'`` of :func:`rgb_to_ycbcr` alone, ``(H, W)``, in one matrix product like :func:`ycbcr_planes`."""
    return _planes(rgb, ((KR, KG, KB),))[0]


def _planes(rgb: Any, rows: tuple[tuple[float, float, float], ...]) -> Any:
    """``(len(rows), H, W)``: each row of coefficients applied to every pixel of ``(H, W, 3)`` ``rgb``."""
    xp = array_module(rgb)
    matrix = xp.asarray(rows, dtype=rgb.dtype)
    pixels = rgb.reshape(-1, 3)
    planes = xp.empty((len(rows), pixels.shape[0]), dtype=rgb.dtype)
    # in chunks on the CPU: OpenBLAS threads one product over the whole frame badly on a busy machine
    step = max(1, pixels.shape[0] if xp is not np else CPU_CHUNK_PIXELS)
    for start in range(0, pixels.shape[0], step):
        xp.matmul(matrix, pixels[start : start + step].T, out=planes[:, start : start + step])
    return planes.reshape(len(rows), *rgb.shape[:2])


def ycbcr_to_rgb(y: Any, cb: Any, cr: Any, out: Any = None) -> Any:
    """Join luma and chroma back into R'G'B' (the inverse of :func:`rgb_to_ycbcr`).

    Any of the three may be a Python number (a plane of that constant); at least one is an
    ``(H, W)`` array. Returns ``(H, W, 3)`` (``out`` if given); values are not clipped.
    """
    plane = next(p for p in (y, cb, cr) if not isinstance(p, (int, float)))
    rgb = array_module(plane).empty((*plane.shape, 3), dtype=plane.dtype) if out is None else out
    rgb[..., 0] = y + _CR_SCALE * cr
    rgb[..., 1] = y - _G_FROM_CB * cb - _G_FROM_CR * cr
    rgb[..., 2] = y + _CB_SCALE * cb
    return rgb


def add_chroma_rows(rgb: Any, dcb: Any, dcr: Any, out: Any) -> None:
    """``out = clip(rgb + change, 0, 1)`` for a change of chroma alone, written channel by channel.

    Parameters
    ----------
    rgb, out
        ``(h, W, 3)`` sRGB-encoded float32 rows of the input and of the output (not the same array).
    dcb, dcr
        ``(h, W)`` changes of ``Cb`` and ``Cr``; overwritten (they are scratch space).

    Where both changes are zero the pixel is copied bit-exact, as :func:`add_ycbcr` leaves it.
    """
    xp = array_module(rgb)
    dtype = rgb.dtype.type
    xp.add(rgb[..., 2], dcb * dtype(_CB_SCALE), out=out[..., 2])
    dcb *= dtype(-_G_FROM_CB)
    green = xp.multiply(dcr, dtype(_G_FROM_CR))
    dcb -= green
    xp.add(rgb[..., 1], dcb, out=out[..., 1])
    dcr *= dtype(_CR_SCALE)
    xp.add(rgb[..., 0], dcr, out=out[..., 0])
    xp.clip(out, dtype(0.0), dtype(1.0), out=out)


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


def strips(rows: int, cpu_strip_rows: int, xp: Any) -> list[tuple[int, int]]:
    """``(start, stop)`` of the strips covering ``rows`` rows: ``cpu_strip_rows`` each on NumPy,
    one on a GPU (``xp`` not NumPy).

    The CPU runs the full-resolution passes of the YCbCr stages strip by strip so that their
    planes stay in the processor's caches (the passes are bound by memory traffic); a GPU
    takes the image as one strip. A pixel never depends on the strips.
    """
    step = max(cpu_strip_rows, 1) if xp is np else max(rows, 1)
    return [(start, min(start + step, rows)) for start in range(0, rows, step)]


def rows_with_halo(planes: Any, start: int, stop: int, halo: int) -> Any:
    """Rows ``start - halo`` to ``stop + halo`` of ``(..., H, W)`` planes and ``halo`` more
    columns each side, mirrored past the image's borders (``d c b a | a b c d``, scipy's ``reflect``)."""
    h = planes.shape[-2]
    rows = planes[..., max(0, start - halo) : min(h, stop + halo), :]
    pad = [(0, 0)] * (planes.ndim - 2) + [(max(0, halo - start), max(0, stop + halo - h)), (halo, halo)]
    return array_module(planes).pad(rows, pad, mode="symmetric")


def extreme_3x3(values: Any, extreme: Any) -> Any:
    """The maximum (or minimum) over each 3×3 window of ``values``, by slices.

    Parameters
    ----------
    values
        ``(h + 2, w + 2)``: the wanted pixels with one row and column of halo each side. With
        the halo mirrored (``d c b a | a b c d``) the result is scipy's
        ``maximum_filter(size=3, mode="reflect")`` (or ``minimum_filter``) exactly.
    extreme
        ``xp.maximum`` or ``xp.minimum``.

    Returns
    -------
    ``(h, w)``, a new array.
    """
    rows = extreme(values[:-2], values[1:-1])
    extreme(rows, values[2:], out=rows)
    out = extreme(rows[:, :-2], rows[:, 1:-1])
    return extreme(out, rows[:, 2:], out=out)


def gaussian_weights(sigma_px: float, truncate: float = 4.0) -> list[float]:
    """Weights ``w[0..r]`` of scipy's ``gaussian_filter`` kernel from its centre outwards, ``r = int(truncate·sigma + 0.5)``."""
    radius = int(truncate * float(sigma_px) + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (float(sigma_px) * float(sigma_px)) * x * x)
    return (phi / phi.sum())[radius:].tolist()


def symmetric_filter(padded: Any, weights: list[float], out: Any) -> Any:
    """A separable symmetric filter (rows, then columns) of planes with a halo, by slices.

    Parameters
    ----------
    padded
        ``(..., h + 2r, w + 2r)`` planes, ``r = len(weights) - 1`` rows and columns of halo each side.
    weights
        ``w[0..r]`` from the centre outwards, the same along both axes.
    out
        ``(..., h, w)`` float32 array for the result.

    The float32 sum of ``w[0]·x + Σ w[k]·(x₋ₖ + xₖ)`` equals scipy's ``correlate1d`` of the
    same kernel (which sums in float64) to float32 rounding.
    """
    xp = array_module(padded)
    dtype = out.dtype.type
    r = len(weights) - 1
    h, w = out.shape[-2:]
    rows = xp.multiply(padded[..., r : r + h, :], dtype(weights[0]))
    pair = xp.empty_like(rows)
    for k in range(1, r + 1):
        xp.add(padded[..., r - k : r - k + h, :], padded[..., r + k : r + k + h, :], out=pair)
        pair *= dtype(weights[k])
        rows += pair
    xp.multiply(rows[..., r : r + w], dtype(weights[0]), out=out)
    pair = pair[..., :w]
    for k in range(1, r + 1):
        xp.add(rows[..., r - k : r - k + w], rows[..., r + k : r + k + w], out=pair)
        pair *= dtype(weights[k])
        out += pair
    return out
