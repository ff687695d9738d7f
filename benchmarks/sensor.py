"""Throughput of the sensor simulation: a full-resolution IMX989 capture, every noise source on.

    python -m benchmarks.sensor                                # 50 MP full-resolution frame, every backend here
    python -m benchmarks.sensor --backend numpy --repeats 3 --out result.json
    python -m benchmarks.sensor --size 3072 4096 sensor.mode=binned

A ColorChecker scene of the read-out's size (on the device) is captured by
:func:`isp.sensor.capture`: with the lens model on (lateral CA, PSF, shading), and with it off
(the sensor alone: QE, PRNU/mismatch/defects, shot noise, dark current, DSNU, read and row
noise, full well, ADC). One warm-up capture builds the fixed-pattern maps and compiles what
needs compiling; then the median of ``--repeats`` captures, device synchronised, in ms and
megapixels per second, with the device, versions, commit and date, as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import isp
from benchmarks.stages import _commit, _cpu
from isp.backend import get_backend, gpu_available
from isp.scene import build_scene_params, render_scene
from isp.sensor import NOISE_SOURCES, build_sensor, capture

LENS_OFF = [
    "sensor.lens.optics.relative_illumination.model=none",
    "sensor.lens.optics.color_shading.coefficients=null",
    "sensor.lens.optics.psf.kind=none",
    "sensor.lens.optics.lateral_ca.magnification=[1,1,1]",
]


def _time_capture(backend_name: str, overrides: list[str], repeats: int) -> dict:
    cfg = isp.compose(["sensor=imx989", "sensor.mode=full", *overrides])
    sensor = build_sensor(cfg.sensor)
    backend = get_backend(backend_name)
    scene = render_scene(build_scene_params(cfg.scene), sensor.readout, sensor.cfa.tile_shape, backend)
    capture(scene.linear_rgb, sensor, backend, seed=0)  # warm-up
    times = []
    for seed in range(1, repeats + 1):
        backend.synchronize()
        start = time.perf_counter()
        capture(scene.linear_rgb, sensor, backend, seed=seed)
        backend.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    h, w = scene.shape
    median = statistics.median(times)
    return {
        "backend": backend.name,
        "device": backend.device_name(),
        "frame": {"height": h, "width": w, "megapixels": h * w / 1e6, "mode": sensor.mode, "cfa": sensor.cfa.name},
        "noise_sources": list(sensor.noise.on()),
        "times_ms": times,
        "median_ms": median,
        "mpix_per_s": h * w / 1e6 / (median / 1e3),
    }


def run(backends: list[str], repeats: int, overrides: list[str]) -> dict:
    rows = []
    for name in backends:
        for label, extra in (("optics + sensor", []), ("sensor only (lens effects off)", LENS_OFF)):
            rows.append({"row": label, **_time_capture(name, [*overrides, *extra], repeats)})
    versions = {"python": platform.python_version(), "numpy": np.__version__, "isp_sim": isp.__version__}
    if "cupy" in backends:
        versions["cupy"] = get_backend("cupy").xp.__version__
    return {
        "benchmark": "sensor capture",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "cpu": _cpu(),
        "repeats": repeats,
        "versions": versions,
        "all_noise_sources": list(NOISE_SOURCES),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="all", choices=("all", "numpy", "cupy"), help="all: NumPy, and CuPy where a GPU answers")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. sensor.iso=3200")
    args = parser.parse_args(argv)
    backends = ["numpy", "cupy"] if args.backend == "all" else [args.backend]
    if args.backend == "all" and not gpu_available():
        backends = ["numpy"]
        print("no GPU answers: timing NumPy only", file=sys.stderr)
    result = run(backends, args.repeats, args.overrides)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    for row in result["rows"]:
        frame = row["frame"]
        print(
            f"{row['backend']:6s} {row['device']:24s} {frame['width']}x{frame['height']} ({frame['megapixels']:.1f} MP) "
            f"{row['row']:32s} {row['median_ms']:10.1f} ms  {row['mpix_per_s']:8.2f} MP/s",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
