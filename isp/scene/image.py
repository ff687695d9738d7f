"""An sRGB-encoded image file as a scene: decoded with the inverse sRGB OETF to linear light.

``fit: native`` uses the image at its own size as a window of the sensor (it must not be
larger than the sensor's read-out); ``fit: sensor`` scales it to cover the read-out and crops
the centre. Either way the size is trimmed to whole CFA tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isp.backend import Backend
from isp.config import param
from isp.io.images import read_image
from isp.scene.base import LUMINANCE_DOC, Scene
from isp.stages.oetf import srgb_eotf

__all__ = ["ImageSceneParams", "load_image_scene"]


@dataclass(frozen=True, kw_only=True)
class ImageSceneParams:
    kind: str = param("image", choices=("image",))
    path: str = param(doc="path of an 8- or 16-bit RGB image file (PNG, TIFF, JPEG), sRGB-encoded")
    fit: str = param("native", choices=("native", "sensor"), doc="native: the image's own size; sensor: scaled to cover the read-out")
    white: float = param(1.0, range=(1e-3, 1e3), doc="scene-linear value that encoded white (1.0) stands for")
    luminance_cd_m2: float = param(1000.0, range=(1e-6, 1e9), unit="cd/m²", doc=LUMINANCE_DOC)


def load_image_scene(params: ImageSceneParams) -> Scene:
    """Read and linearise the image on the host; the caller fits it to the sensor."""
    encoded = read_image(params.path)
    linear = srgb_eotf(encoded.astype(np.float32)) * np.float32(params.white)
    return Scene(linear, "image", params.path, luminance_cd_m2=params.luminance_cd_m2)


def fit_to(scene: Scene, shape: tuple[int, int], backend: Backend) -> Scene:
    """Scale ``scene`` to cover ``shape`` and crop the centre, on the host, then move it to the device."""
    from skimage.transform import resize  # noqa: PLC0415 - only this path needs scikit-image

    h, w = shape
    sh, sw = scene.shape
    factor = max(h / sh, w / sw)
    scaled = resize(scene.linear_rgb, (max(h, round(sh * factor)), max(w, round(sw * factor))), order=1, anti_aliasing=factor < 1, preserve_range=True)
    top, left = (scaled.shape[0] - h) // 2, (scaled.shape[1] - w) // 2
    cropped = np.ascontiguousarray(scaled[top : top + h, left : left + w], dtype=np.float32)
    return Scene(backend.asarray(cropped), scene.name, scene.source, luminance_cd_m2=scene.luminance_cd_m2)
