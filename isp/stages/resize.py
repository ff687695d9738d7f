"""Output resize: scale the finished image to a smaller (or larger) size.

Stage ``resize``: a float Image in any space and transfer to the same, resampled. Downscaling
first low-passes with a Gaussian of sigma ``(1/scale - 1) / 2`` per axis (anti-aliasing, as
scikit-image's ``resize`` does), then samples with bilinear interpolation on pixel centres
(``grid_mode``), mirrored at the borders. The output size is given as a scale factor, a long
edge in pixels, or an explicit ``[height, width]``; with none of them the stage does nothing.

Phone ISPs resize the encoded image at the end of the pipeline (thumbnails, a 12 MP output
from a 50 MP read-out); this stage does the same, so it normally sits before ``quantize``.

References
----------
S. van der Walt et al., scikit-image ``skimage.transform.resize`` (anti-aliasing filter).
"""

from __future__ import annotations

from dataclasses import dataclass

from isp.config import param
from isp.errors import StageError
from isp.frame import Image
from isp.stages.registry import StageContext, register_stage

__all__ = ["ResizeParams", "resize", "output_size"]


@dataclass(frozen=True)
class ResizeParams:
    scale: float | None = param(None, range=(0.01, 4.0), doc="scale factor of both axes; null unless set")
    long_edge: int | None = param(None, range=(8, 65536), unit="px", doc="length of the longer side after resizing; null unless set")
    size: list[int] | None = param(None, shape=(2,), range=(1, 65536), unit="px", doc="[height, width] after resizing; null unless set")
    anti_alias: bool = param(True, doc="low-pass before downscaling so that fine detail does not alias")


def output_size(shape: tuple[int, int], params: ResizeParams) -> tuple[int, int]:
    """``(height, width)`` after resizing an image of ``shape`` (at most one size setting may be given).

    Examples
    --------
    >>> output_size((3000, 4000), ResizeParams(long_edge=2000))
    (1500, 2000)
    """
    given = [name for name in ("scale", "long_edge", "size") if getattr(params, name) is not None]
    if len(given) > 1:
        raise StageError(f"stage 'resize': give one of scale, long_edge and size, not {' and '.join(given)}")
    h, w = shape
    if params.scale is not None:
        return max(1, round(h * params.scale)), max(1, round(w * params.scale))
    if params.long_edge is not None:
        factor = params.long_edge / max(h, w)
        return max(1, round(h * factor)), max(1, round(w * factor))
    if params.size is not None:
        return int(params.size[0]), int(params.size[1])
    return h, w


@register_stage("resize", ResizeParams, consumes="image")
def resize(image: Image, params: ResizeParams, ctx: StageContext) -> Image:
    """Resample the image to the configured size (anti-aliased when shrinking)."""
    image.require("resize")
    h, w = image.shape[:2]
    out_h, out_w = output_size((h, w), params)
    if (out_h, out_w) == (h, w):
        return image
    ndi = ctx.backend.ndimage
    factors = (h / out_h, w / out_w)
    data = image.data
    if params.anti_alias and max(factors) > 1.0:
        sigma = tuple(max(0.0, (f - 1.0) / 2.0) for f in factors) + (0.0,)
        data = ndi.gaussian_filter(data, sigma, mode="mirror")
    zoom = (out_h / h, out_w / w, 1.0)
    resized = ndi.zoom(data, zoom, order=1, mode="mirror", grid_mode=True)
    return image.replace(data=resized.astype(data.dtype, copy=False))
