"""A ColorChecker 24 chart in linear scene-referred RGB, with its patch boxes.

The published reference (X-Rite, after November 2014, via colour-science) is adapted from the
chart's D50 to D65 with Bradford and expressed in linear sRGB: the chart as a camera white
balanced to D65 light sees it. One patch (cyan) lies slightly outside the sRGB gamut and keeps
its small negative component here; a sensor's colour response maps it to positive camera RGB.
Patches are squares on a 6 × 4 grid centred in the frame, on a neutral surround.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isp import colorimetry
from isp.backend import Backend
from isp.config import param
from isp.errors import ConfigError
from isp.scene.base import LUMINANCE_DOC, Patch, Scene

__all__ = ["ColorCheckerParams", "render_colorchecker", "COLUMNS", "ROWS"]

COLUMNS, ROWS = 6, 4
_MIN_PATCH_PX = 8


@dataclass(frozen=True)
class ColorCheckerParams:
    kind: str = param("colorchecker", choices=("colorchecker",))
    reference: str = param("ColorChecker24 - After November 2014", doc="colour-science name of the chart's published reference")
    surround: float = param(0.18, range=(0.0, 1.0), doc="reflectance of the neutral surround")
    fill: float = param(0.85, range=(0.1, 1.0), doc="fraction of the frame's width (or height, whichever limits) the chart spans")
    gap: float = param(0.15, range=(0.0, 0.9), doc="gap between patches as a fraction of the patch pitch")
    size: list[int] | None = param(
        None, shape=(2,), range=(2, 1_000_000), doc="[height, width] of a centred sensor window to render; null for the full read-out"
    )
    luminance_cd_m2: float = param(1000.0, range=(1e-6, 1e9), unit="cd/m²", doc=LUMINANCE_DOC)
    illuminant: str = param(
        "D65", choices=colorimetry.SCENE_ILLUMINANTS, doc="CIE illuminant lighting the chart (A: tungsten); the metrics still compare with D65"
    )


def render_colorchecker(params: ColorCheckerParams, shape: tuple[int, int], backend: Backend) -> Scene:
    """Render the chart at ``shape = (height, width)`` on ``backend``'s device."""
    h, w = shape
    try:
        names, xyz = colorimetry.colorchecker_reference(params.reference)
    except KeyError as exc:
        raise ConfigError(f"scene.reference: {exc.args[0]}") from None
    light = colorimetry.relight_matrix(params.illuminant)
    rgb = xyz @ (light @ colorimetry.XYZ_TO_SRGB).T
    pitch = min(w * params.fill / COLUMNS, h * params.fill / ROWS)
    side = pitch * (1.0 - params.gap)
    if side < _MIN_PATCH_PX:
        raise ConfigError(f"scene: a {h}x{w} frame leaves ColorChecker patches of {side:.1f} px; need at least {_MIN_PATCH_PX}")
    top0 = (h - ROWS * pitch + pitch - side) / 2.0
    left0 = (w - COLUMNS * pitch + pitch - side) / 2.0
    image = np.empty((h, w, 3), dtype=np.float32)
    image[...] = params.surround * light.sum(axis=1)
    patches = []
    for i, (name, colour) in enumerate(zip(names, rgb, strict=True)):
        row, col = divmod(i, COLUMNS)
        top, left = int(round(top0 + row * pitch)), int(round(left0 + col * pitch))
        box = (top, left, top + int(round(side)), left + int(round(side)))
        image[box[0] : box[2], box[1] : box[3]] = colour
        patches.append(Patch(name, box, xyz[i]))
    white = tuple(float(v) for v in light.sum(axis=1))
    return Scene(backend.asarray(image), "colorchecker", params.reference, tuple(patches), params.luminance_cd_m2, white)
