"""The ``isp-sim`` command: compose the config with Hydra, run, write outputs into the run directory.

Outputs of a run (Hydra's run directory, ``outputs/<date>/<time>/`` by default):
``image.png`` (8-bit sRGB), ``image.tif`` (16-bit sRGB, with ``output.tiff16=true``),
``taps/<stage>.npy`` for ``pipeline.taps``, ``metrics.json``, and Hydra's ``.hydra/`` config
snapshot and log. ``metrics.json`` is written last; a run that fails leaves a ``FAILED`` file
with the error instead and no image or metrics.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from isp.api import Simulation, SimulationResult, emva
from isp.backend import to_host
from isp.batch import BatchSettings, measure_batch
from isp.calibration import CcmFitSettings, fit_ccm_from_run
from isp.config import HYDRA_VERSION_BASE, build
from isp.errors import InputError, IspError
from isp.frame import Image, orient
from isp.io import write_json, write_npy, write_png8, write_tiff16, write_yaml
from isp.metrics.emva import plot as plot_emva
from isp.paths import config_dir
from isp.stages.oetf import srgb_oetf
from isp.stages.quantize import quantize

__all__ = ["main", "write_outputs"]

log = logging.getLogger("isp")

EXIT_ERROR = 2


def _task(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.get("experiment") is not None:
        _experiment(cfg, run_dir)
        return
    try:
        sim = Simulation(cfg, extra_taps=_tiff_taps(cfg))
        result = sim.run()
        paths = write_outputs(run_dir, result, sim)
    except IspError as exc:
        _fail(run_dir, str(exc))
    except MemoryError as exc:
        _fail(run_dir, f"out of host memory ({exc}); try a smaller scene.size or sensor.mode")
    except Exception as exc:
        if type(exc).__name__ == "OutOfMemoryError":  # cupy.cuda.memory.OutOfMemoryError
            _fail(run_dir, f"out of GPU memory ({exc}); try backend=numpy or a smaller scene.size")
        raise
    metrics = result.metrics
    summary = f"{metrics['image']['width']}x{metrics['image']['height']} {metrics['backend']}"
    if "colorchecker" in metrics:
        de = metrics["colorchecker"]["delta_e2000"]
        summary += f", CIEDE2000 mean {de['mean']:.2f} max {de['max']:.2f}"
    log.info("wrote %s (%s)", ", ".join(p.name for p in paths), summary)
    log.info("run directory: %s", run_dir)


def _experiment(cfg: DictConfig, run_dir: Path) -> None:
    """Run the configured experiment instead of a simulation."""
    kind = cfg.experiment.get("kind")
    if kind == "ccm_fit":
        _ccm_fit(cfg, run_dir)
    elif kind == "batch":
        _batch(cfg, run_dir)
    else:
        _emva(cfg, run_dir)


def _ccm_fit(cfg: DictConfig, run_dir: Path) -> None:
    """``experiment=ccm_fit``: fit a CCM to the run's ColorChecker; ``ccm.yaml``."""
    try:
        settings = build(CcmFitSettings, cfg.experiment, "experiment")
        fit = fit_ccm_from_run(cfg, **{k: v for k, v in vars(settings).items() if k != "kind"})
        run_dir.mkdir(parents=True, exist_ok=True)
        path = write_yaml(run_dir / "ccm.yaml", {"color_correction": {"matrix": fit.pop("matrix")}, "fit": fit})
    except IspError as exc:
        _fail(run_dir, str(exc))
    log.info("CCM fitted to %s: CIEDE2000 mean %.2f, max %.2f", fit["source"], fit["mean_de2000"], fit["max_de2000"])
    log.info("wrote %s; paste its color_correction block under tuning.params", path)


def _batch(cfg: DictConfig, run_dir: Path) -> None:
    """``experiment=batch``: frames per second through a warm pipeline; ``batch.json``."""
    try:
        settings = build(BatchSettings, cfg.experiment, "experiment")
        result = measure_batch(cfg, **{k: v for k, v in vars(settings).items() if k != "kind"})
        run_dir.mkdir(parents=True, exist_ok=True)
        path = write_json(run_dir / "batch.json", result)
    except IspError as exc:
        _fail(run_dir, str(exc))
    log.info(
        "%s on %s: %.2f frames/s, %.1f ms/frame (upload %.2f, compute %.2f, download %.2f, host copies %.2f ms; overlap %.2f)",
        result["benchmark"], result["device"], result["fps"], result["ms_per_frame"], result["upload_ms"],
        result["compute_ms"], result["download_ms"], result["host_copy_ms"], result["overlap"],
    )
    log.info("wrote %s", path)


def _emva(cfg: DictConfig, run_dir: Path) -> None:
    """``experiment=emva``: the simulated EMVA 1288 measurement; ``emva.json`` and plots."""
    try:
        measurement = emva(cfg)
        run_dir.mkdir(parents=True, exist_ok=True)
        paths = [p for name, result in measurement.channels.items() for p in plot_emva(result, run_dir / "plots" / name)]
        paths.append(write_json(run_dir / "emva.json", measurement.to_dict()))
    except IspError as exc:
        _fail(run_dir, str(exc))
    expected = measurement.expected
    for name, row in measurement.summary().items():
        log.info(
            "%s: K %.4g DN/e- (configured %.4g), dark noise %.3g e- (%.3g), full well %.0f e- (%.0f), PRNU %.3g %% (%.3g), "
            "DSNU %.3g e- (%.3g), dark current %.3g e-/s (%.3g), DR %.1f dB",
            name,
            row["system_gain_dn_per_e"],
            expected["system_gain_dn_per_e"],
            row["temporal_dark_noise_e"],
            expected["temporal_dark_noise_e"],
            row["full_well_e"],
            expected["saturation_capacity_e"],
            row["prnu_percent"],
            expected["prnu_percent"][name],
            row["dsnu_e"],
            expected["dsnu_e"],
            row["dark_current_e_per_s"],
            expected["dark_current_e_per_s"],
            row["dynamic_range_db"],
        )
    log.info("wrote %d files; run directory: %s", len(paths), run_dir)


def _tiff_taps(cfg: DictConfig) -> list[str]:
    """The 16-bit TIFF is made from the float image the final quantisation takes."""
    wants_tiff = bool(cfg.get("output", {}).get("tiff16", False))
    stages = list(cfg.get("pipeline", {}).get("stages", []) or [])
    return [stages[-2]] if wants_tiff and len(stages) > 1 and stages[-1] == "quantize" else []


def write_outputs(run_dir: Path, result: SimulationResult, sim: Simulation) -> list[Path]:
    """Write the run's files into ``run_dir``; ``metrics.json`` last. Returns the paths written."""
    run_dir.mkdir(parents=True, exist_ok=True)
    inputs = [Path(p).resolve() for p in (getattr(sim.scene_params, "path", None),) if p]
    written: list[Path] = []

    def target(name: str) -> Path:
        path = run_dir / name
        if path.resolve() in inputs:
            raise InputError(f"{path}: is an input of this run; refusing to overwrite it (choose another hydra.run.dir)")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    output = result.image
    if isinstance(output, Image) and output.space in ("srgb", "display_p3"):
        orientation = output.info.orientation
        if sim.settings.output.png:
            written.append(write_png8(target("image.png"), orient(_as_uint8(output), orientation), output.space))
        if sim.settings.output.tiff16:
            names = sim.pipeline.names
            encoded16 = _as_uint16(output, result.taps.get(names[-2]) if len(names) > 1 else None)
            if encoded16 is None:
                log.warning("image.tif not written: the pipeline has no sRGB-encoded float output to take 16 bits from")
            else:
                written.append(write_tiff16(target("image.tif"), orient(encoded16, orientation)))
    else:
        kind = "raw frame" if not isinstance(output, Image) else f"{output.space} image"
        log.warning("the pipeline ends with a %s, not an sRGB or P3 image: writing output.npy instead of image.png", kind)
        written.append(write_npy(target("output.npy"), _host_data(output)))
    written.extend(
        write_npy(target(f"taps/{name}.npy"), _host_data(result.taps[name])) for name in sim.saved_taps if name in result.taps
    )
    written.append(write_json(target("metrics.json"), result.metrics))
    return written


def _host_data(frame: Any) -> np.ndarray:
    return to_host(frame.data if isinstance(frame, Image) else frame.mosaic)


def _encoded(image: Image) -> Any:
    """sRGB-encoded float data of a float sRGB image (linear data is encoded here)."""
    return image.data if image.transfer == "srgb" else srgb_oetf(image.data)


def _as_uint8(image: Image) -> np.ndarray:
    data = image.data
    if data.dtype == np.uint8:
        return to_host(data)
    if data.dtype == np.uint16:
        return to_host(quantize(data.astype(np.float32) / np.float32(65535), 8))
    return to_host(quantize(_encoded(image), 8))


def _as_uint16(image: Image, float_tap: Image | None) -> np.ndarray | None:
    if image.data.dtype == np.uint16:
        return to_host(image.data)
    if image.is_float:
        return to_host(quantize(_encoded(image), 16))
    if float_tap is not None and float_tap.is_float and float_tap.transfer == "srgb":
        return to_host(quantize(float_tap.data, 16))
    return None


def _fail(run_dir: Path, message: str) -> None:
    """Report an error in one line on stderr, record it in the run's log and FAILED file, exit."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:  # the job log file only: the console gets stderr's line
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
    with contextlib.suppress(OSError):
        (run_dir / "FAILED").write_text(message + "\n")
    print(f"isp-sim: error: {message}", file=sys.stderr)
    sys.exit(EXIT_ERROR)


def one_line(exc: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages (and their causes) as one line."""
    noise = ("full_key:", "object_type=", "reference_type=", "Config search path", "provider=", "See https://hydra.cc")
    parts: list[str] = []
    listing = False  # inside a list that a line ending in ':' opened ("Available options in 'sensor':")
    while exc is not None:
        for raw in str(exc).splitlines():
            line = raw.strip().rstrip(".")
            if not line or line.startswith(noise) or line in parts:
                listing = listing and bool(line)
                continue
            if listing and raw.startswith(("\t", "  ")):
                parts[-1] += (" " if parts[-1].endswith(":") else ", ") + line
                continue
            parts.append(line)
            listing = line.endswith(":")
        exc = exc.__cause__
    return "; ".join(parts)


def main() -> None:
    """Entry point of the ``isp-sim`` console script and ``python -m isp``."""
    # Hydra prints its own errors over many lines and exits; asked for full errors it raises
    # them instead, so that a bad override or config becomes one line here. Errors of the run
    # itself are reported by _task; anything else is a bug and keeps its traceback.
    full_error = bool(os.environ.get("HYDRA_FULL_ERROR"))
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra.main(version_base=HYDRA_VERSION_BASE, config_path=str(config_dir()), config_name="config")(_task)()
    except (HydraException, OmegaConfBaseException) as exc:
        if full_error:
            raise
        print(f"isp-sim: error: {one_line(exc)}", file=sys.stderr)
        sys.exit(EXIT_ERROR)
