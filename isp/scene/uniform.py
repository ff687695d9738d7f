"""Uniform targets for sensor measurements: a flat field and a grey ramp.

A flat field is the EMVA 1288 target: the same radiance on every pixel, at a level given as a
fraction of the scene's white (1.0) and an absolute luminance. A grey ramp steps from black to
white in equal linear (or logarithmic) steps across the frame, one patch per step, for
tone-response and noise-versus-signal checks; its steps are patches with reference XYZ, so the
chart metrics work on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isp import colorimetry
from isp.backend import Backend
from isp.config import param
from isp.scene.base import LUMINANCE_DOC, Patch, Scene

__all__ = ["FlatFieldParams", "GreyRampParams", "render_flat_field", "render_grey_ramp"]

_SIZE_DOC = "[height, width] of a centred sensor window to render; null for the full read-out"


@dataclass(frozen=True, kw_only=True)
class FlatFieldParams:
    kind: str = param("flat_field", choices=("flat_field",))
    level: float = param(1.0, range=(0.0, 1e3), doc="scene-linear value of every pixel (1.0 = the scene's white)")
    color: list[float] = param([1.0, 1.0, 1.0], shape=(3,), range=(0.0, 1e3), doc="linear sRGB of the light, times level (D65 white: 1, 1, 1)")
    luminance_cd_m2: float = param(1000.0, range=(0.0, 1e9), unit="cd/m²", doc=LUMINANCE_DOC)
    size: list[int] | None = param(None, shape=(2,), range=(2, 1_000_000), doc=_SIZE_DOC)


@dataclass(frozen=True, kw_only=True)
class GreyRampParams:
    kind: str = param("grey_ramp", choices=("grey_ramp",))
    steps: int = param(16, range=(2, 1024), doc="number of grey steps, left to right")
    spacing: str = param("linear", choices=("linear", "log"), doc="linear steps, or equal ratios (log) from low to high")
    low: float = param(0.0, range=(0.0, 1e3), doc="scene-linear value of the first step")
    high: float = param(1.0, range=(0.0, 1e3), doc="scene-linear value of the last step")
    luminance_cd_m2: float = param(1000.0, range=(1e-6, 1e9), unit="cd/m²", doc=LUMINANCE_DOC)
    size: list[int] | None = param(None, shape=(2,), range=(2, 1_000_000), doc=_SIZE_DOC)


def render_flat_field(params: FlatFieldParams, shape: tuple[int, int], backend: Backend) -> Scene:
    """A uniform ``(H, W, 3)`` scene; its one patch is the whole frame."""
    rgb = np.asarray(params.color, dtype=np.float64) * params.level
    xp = backend.xp
    image = xp.empty((*shape, 3), dtype=xp.float32)
    image[...] = backend.asarray(rgb.astype(np.float32))
    patch = Patch("flat field", (0, 0, *shape), colorimetry.SRGB_TO_XYZ @ rgb)
    return Scene(image, "flat_field", f"level {params.level:g}", (patch,), params.luminance_cd_m2)


def render_grey_ramp(params: GreyRampParams, shape: tuple[int, int], backend: Backend) -> Scene:
    """Vertical bands of neutral grey, ``steps`` of them across the width."""
    h, w = shape
    if params.spacing == "log":
        low = params.low if params.low > 0 else params.high / 2 ** (params.steps - 1)
        values = np.geomspace(low, params.high, params.steps)
    else:
        values = np.linspace(params.low, params.high, params.steps)
    edges = np.round(np.linspace(0, w, params.steps + 1)).astype(int)
    image = np.empty((h, w, 3), dtype=np.float32)
    patches = []
    for i, value in enumerate(values):
        image[:, edges[i] : edges[i + 1]] = value
        patches.append(Patch(f"step {i + 1} ({value:.4g})", (0, int(edges[i]), h, int(edges[i + 1])), colorimetry.SRGB_TO_XYZ.sum(axis=1) * value))
    return Scene(backend.asarray(image), "grey_ramp", f"{params.steps} {params.spacing} steps", tuple(patches), params.luminance_cd_m2)
