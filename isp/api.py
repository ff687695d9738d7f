"""Python API: compose a config, run a simulation, get objects back (no files written).

Examples
--------
>>> import isp
>>> result = isp.run(["tuning=neutral", "scene.size=[240,360]"])   # doctest: +SKIP
>>> result.metrics["colorchecker"]["delta_e2000"]["mean"]            # doctest: +SKIP
>>> result.image, result.raw, result.taps                              # doctest: +SKIP
"""

from __future__ import annotations

import time
from pathlib import Path
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from omegaconf import DictConfig

from isp import __version__, colorimetry
from isp.backend import BACKENDS, Backend, get_backend, to_host
from isp.characterize import EmvaMeasurement, EmvaSettings, simulate_emva
from isp.config import build, compose, param, to_container
from isp.errors import ConfigError, InputError, StageError
from isp.frame import Image, RawFrame
from isp.io.raw import read_raw
from isp.metrics import colorchecker_delta_e, grey_patch_snr
from isp.pipeline import Pipeline, PipelineResult
from isp.scene import RawFileParams, Scene, build_scene_params, render_scene
from isp.sensor import SensorConfig, build_sensor, capture
from isp.stages import StageContext
from isp.tiling import TileSettings, resolve_tile_px, run_tiled

__all__ = ["RunSettings", "OutputSettings", "Simulation", "SimulationResult", "compose", "run", "emva"]


@dataclass(frozen=True)
class OutputSettings:
    png: bool = param(True, doc="write image.png (8-bit sRGB)")
    tiff16: bool = param(False, doc="also write image.tif (16-bit sRGB)")


@dataclass(frozen=True)
class RunSettings:
    """The top-level keys of the config besides the groups."""

    backend: str = param("auto", choices=BACKENDS, doc="array backend: auto picks CuPy when a GPU answers")
    seed: int = param(0, range=(0, 2**63 - 1), doc="seed of every random stream of the run")
    output: OutputSettings = param(OutputSettings(), doc="files the command line writes")
    patch_fraction: float = param(0.5, range=(0.05, 1.0), doc="central part of each chart patch the colour metrics measure")


_TOP_LEVEL_GROUPS = ("sensor", "tuning", "pipeline", "scene", "experiment")
_REQUIRED_GROUPS = ("sensor", "tuning", "pipeline", "scene")
_TUNING_KEYS = ("name", "description", "params")
_PIPELINE_KEYS = ("name", "stages", "params", "taps", "start", "stop", "fuse", "tiles")


@dataclass
class SimulationResult:
    """Everything a run produced, as objects.

    Parameters
    ----------
    image
        The pipeline's output (an Image unless the pipeline was stopped before the demosaic).
    raw
        The RawFrame the pipeline started from (simulated capture or raw file).
    metrics
        The figures ``metrics.json`` holds.
    taps
        Requested intermediate results by stage name.
    scene
        The rendered scene (``None`` for a raw file).
    """

    image: Image | RawFrame
    raw: RawFrame
    metrics: dict[str, Any]
    taps: dict[str, Any] = field(default_factory=dict)
    scene: Scene | None = None

    def rgb(self) -> np.ndarray:
        """The output image on the host, turned to its display orientation."""
        if not isinstance(self.image, Image):
            raise StageError("the pipeline stopped before the demosaic: the output is a raw frame, not an image")
        return to_host(self.image.oriented())


class Simulation:
    """A validated run: every config value is checked when this is constructed.

    Parameters
    ----------
    cfg
        A composed config (:func:`compose`).
    extra_taps
        Stage outputs to keep besides ``pipeline.taps``.
    """

    def __init__(self, cfg: DictConfig, extra_taps: Sequence[str] = ()):
        values = to_container(cfg)
        missing = [g for g in _REQUIRED_GROUPS if g not in values]
        if missing:
            raise ConfigError(f"config: group {missing[0]!r} is missing")
        self.settings = build(RunSettings, {k: v for k, v in values.items() if k not in _TOP_LEVEL_GROUPS}, "config")
        self.tuning = _only_keys(values["tuning"], _TUNING_KEYS, "tuning")
        pipeline_cfg = _only_keys(values["pipeline"], _PIPELINE_KEYS, "pipeline")
        self.pipeline = Pipeline.from_config(pipeline_cfg, self.tuning)
        self.saved_taps = _names(pipeline_cfg.get("taps"), "pipeline.taps")
        self.taps = [*self.saved_taps, *extra_taps]
        self.start, self.stop = pipeline_cfg.get("start"), pipeline_cfg.get("stop")
        self.pipeline.span(self.taps, self.start, self.stop)
        self.tiles = build(TileSettings, pipeline_cfg.get("tiles"), "pipeline.tiles")
        self.scene_params = build_scene_params(values["scene"])
        path = getattr(self.scene_params, "path", None)
        if path is not None and not Path(path).is_file():
            raise InputError(f"{path}: no such file (scene.path)")
        self.from_file = isinstance(self.scene_params, RawFileParams)
        self.sensor: SensorConfig | None = None if self.from_file else build_sensor(values["sensor"])
        self.tuning_name = str(self.tuning.get("name", "unnamed"))
        self.pipeline_name = str(pipeline_cfg.get("name", "unnamed"))

    def run(self) -> SimulationResult:
        """Capture (or read) the frame, run the pipeline and measure the result."""
        backend = get_backend(self.settings.backend)
        ctx = StageContext(backend=backend, seed=self.settings.seed)
        t_start = time.perf_counter()
        scene = None
        if self.from_file:
            host = read_raw(self.scene_params.path)
            raw = host.replace(mosaic=backend.asarray(host.mosaic))
        else:
            scene = render_scene(self.scene_params, self.sensor.readout, self.sensor.cfa.tile_shape, backend)
            raw = capture(
                scene.linear_rgb, self.sensor, backend, seed=self.settings.seed, luminance_cd_m2=scene.luminance_cd_m2, white_rgb=scene.white_rgb
            )
        backend.synchronize()
        capture_ms = (time.perf_counter() - t_start) * 1e3
        result, tile_px = self.develop(raw, ctx, taps=self.taps)
        metrics = self._metrics(backend, raw, result.output, scene, capture_ms, result.times_ms)
        metrics["tuned"] = result.tuned
        metrics["tiles"] = {"core_px": tile_px, "workers": self.tiles.worker_count(backend.is_gpu)} if tile_px else None
        metrics["total_time_ms"] = (time.perf_counter() - t_start) * 1e3
        return SimulationResult(result.output, raw, metrics, result.taps, scene)

    def develop(self, raw: RawFrame, ctx: StageContext, *, taps: Sequence[str] = (), time_stages: bool = True) -> tuple[PipelineResult, int]:
        """Run the configured span of the pipeline on ``raw``, in tiles when ``pipeline.tiles`` says so.

        Returns the result and the tile core size in pixels (0: the frame ran whole). Tapped
        outputs are stitched like the output: each is held whole, as in an untiled run.
        """
        first, last = self.pipeline.span(taps, self.start, self.stop)
        tile_px = resolve_tile_px(self.tiles, self.pipeline.stages[first : last + 1], raw)
        if tile_px:
            result = run_tiled(
                self.pipeline, raw, ctx, tile_px, workers=self.tiles.worker_count(ctx.backend.is_gpu), taps=taps, start=self.start, stop=self.stop, time_stages=time_stages
            )
        else:
            result = self.pipeline.run(raw, ctx, taps=taps, start=self.start, stop=self.stop, time_stages=time_stages)
        return result, tile_px

    def _metrics(
        self, backend: Backend, raw: RawFrame, output: Any, scene: Scene | None, capture_ms: float, times: dict[str, float]
    ) -> dict[str, Any]:
        h, w = output.shape[:2]
        metrics: dict[str, Any] = {
            "isp_sim_version": __version__,
            "backend": backend.name,
            "device": backend.device_name(),
            "sensor": raw.info.sensor,
            "sensor_mode": raw.info.mode,
            "iso": raw.info.iso,
            "tuning": self.tuning_name,
            "pipeline": self.pipeline_name,
            "scene": self.scene_params.kind,
            "source": raw.info.source if self.from_file else scene.source,
            "seed": self.settings.seed,
            "image": {"height": int(h), "width": int(w), "orientation": raw.info.orientation},
            "capture_time_ms": capture_ms if not self.from_file else None,
            "read_time_ms": capture_ms if self.from_file else None,
            "stage_times_ms": times,
        }
        if getattr(output, "wb_gains", None) is not None:
            metrics["white_balance"] = {"gains": [float(g) for g in output.wb_gains], "cct_k": output.cct_k}
        if self.sensor is not None:
            metrics["exposure"] = {
                "exposure_time_s": raw.info.exposure_time_s,
                "luminance_cd_m2": scene.luminance_cd_m2,
                "system_gain_dn_per_e": self.sensor.system_gain_dn_e,
                "noise_sources": list(self.sensor.noise.on()),
            }
        is_rgb = isinstance(output, Image) and output.space in colorimetry.RGB_TO_XYZ
        patches = scene.patches if scene is not None else []
        if is_rgb and (h, w) != raw.shape:  # a resized output: measure the patches where they now are
            patches = [p.scaled(h / raw.shape[0], w / raw.shape[1]) for p in patches]
        if scene is not None and scene.patches:
            fraction = self.settings.patch_fraction
            metrics["snr"] = {**grey_patch_snr(output if is_rgb else None, None, patches, fraction), **grey_patch_snr(None, raw, scene.patches, fraction)}
        if scene is not None and scene.name == "colorchecker" and is_rgb:
            metrics["colorchecker"] = {
                "delta_e2000": colorchecker_delta_e(output, patches, self.settings.patch_fraction),
                "reference": scene.source,
                "illuminant": getattr(self.scene_params, "illuminant", "D65"),
                "reference_white": "D65",
            }
        return metrics


def run(cfg: DictConfig | Sequence[str] | None = None) -> SimulationResult:
    """Run one simulation from a composed config or from a list of overrides.

    Parameters
    ----------
    cfg
        A config from :func:`compose`, a list of Hydra overrides, or ``None`` for the default.
    """
    if cfg is None or not isinstance(cfg, DictConfig):
        cfg = compose(list(cfg or ()))
    return Simulation(cfg).run()


def emva(cfg: DictConfig | Sequence[str] | None = None) -> EmvaMeasurement:
    """Simulate the EMVA 1288 measurement of the config's sensor (``experiment=emva``).

    Parameters
    ----------
    cfg
        A config from :func:`compose` or a list of overrides; ``experiment`` defaults to
        ``emva``'s settings when the config has none.
    """
    if cfg is None or not isinstance(cfg, DictConfig):
        cfg = compose(list(cfg or ()))
    values = to_container(cfg)
    settings = build(RunSettings, {k: v for k, v in values.items() if k not in _TOP_LEVEL_GROUPS}, "config")
    experiment = build(EmvaSettings, values.get("experiment"), "experiment")
    sensor = build_sensor(values["sensor"])
    return simulate_emva(sensor, get_backend(settings.backend), experiment, seed=settings.seed)


def _only_keys(node: Any, allowed: Sequence[str], where: str) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise ConfigError(f"{where}: expected a mapping, got {node!r}")
    unknown = sorted(set(node) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; known: {', '.join(allowed)}")
    return node


def _names(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of stage names, got {value!r}")
    return list(value)
