"""Scene sources in linear scene-referred units, chosen by ``scene.kind`` in the config.

``colorchecker`` and ``image`` render a :class:`Scene` for the simulated sensor; ``raw_file``
is not rendered at all: the frame is read from the file (:mod:`isp.io.raw`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from isp.backend import Backend
from isp.config import build, param, to_container
from isp.errors import ConfigError
from isp.scene.base import Patch, Scene
from isp.scene.colorchecker import ColorCheckerParams, render_colorchecker
from isp.scene.uniform import FlatFieldParams, GreyRampParams, render_flat_field, render_grey_ramp
from isp.scene.image import ImageSceneParams, fit_to, load_image_scene

__all__ = ["Patch", "Scene", "FlatFieldParams", "GreyRampParams", "SCENE_KINDS", "RawFileParams", "build_scene_params", "render_scene"]


@dataclass(frozen=True, kw_only=True)
class RawFileParams:
    kind: str = param("raw_file", choices=("raw_file",))
    path: str = param(doc="path of a raw file rawpy can read (DNG, NEF, CR2, ARW, ...)")


#: Scene kinds and their parameter dataclasses.
SCENE_KINDS: dict[str, type] = {
    "colorchecker": ColorCheckerParams,
    "flat_field": FlatFieldParams,
    "grey_ramp": GreyRampParams,
    "image": ImageSceneParams,
    "raw_file": RawFileParams,
}


def build_scene_params(cfg: Any) -> Any:
    """Validate the ``scene`` config node into the parameters of its kind."""
    values = to_container(cfg)
    kind = values.get("kind") if isinstance(values, dict) else None
    if kind not in SCENE_KINDS:
        raise ConfigError(f"scene.kind={kind!r} is not a scene kind; choose one of {', '.join(SCENE_KINDS)}")
    return build(SCENE_KINDS[kind], values, "scene")


def render_scene(params: Any, readout: tuple[int, int], tile: tuple[int, int], backend: Backend) -> Scene:
    """Render the scene for a sensor whose read-out is ``readout`` and CFA tile ``tile``.

    The result is a whole number of CFA tiles and no larger than the read-out.
    """
    if isinstance(params, ColorCheckerParams):
        shape = _window(tuple(params.size) if params.size else readout, readout, tile, "scene.size")
        return render_colorchecker(params, shape, backend)
    if isinstance(params, (FlatFieldParams, GreyRampParams)):
        shape = _window(tuple(params.size) if params.size else readout, readout, tile, "scene.size")
        render = render_flat_field if isinstance(params, FlatFieldParams) else render_grey_ramp
        return render(params, shape, backend)
    if isinstance(params, ImageSceneParams):
        scene = load_image_scene(params)
        if params.fit == "sensor":
            return fit_to(scene, readout, backend)
        h, w = _window(scene.shape, readout, tile, f"scene image {params.path}", hint="; use scene.fit=sensor to scale it")
        data = np.ascontiguousarray(scene.linear_rgb[:h, :w])
        return Scene(backend.asarray(data), scene.name, scene.source, luminance_cd_m2=scene.luminance_cd_m2)
    raise ConfigError(f"scene.kind={getattr(params, 'kind', None)!r} is not rendered; raw files are read, not simulated")


def _window(shape: tuple[int, int], readout: tuple[int, int], tile: tuple[int, int], what: str, hint: str = "") -> tuple[int, int]:
    h, w = shape
    if h > readout[0] or w > readout[1]:
        raise ConfigError(f"{what}: {h}x{w} is larger than the sensor read-out {readout[0]}x{readout[1]}{hint}")
    th, tw = tile
    h, w = h - h % th, w - w % tw
    if h == 0 or w == 0:
        raise ConfigError(f"{what}: {shape[0]}x{shape[1]} is smaller than one CFA tile ({th}x{tw})")
    return h, w
