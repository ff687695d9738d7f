"""Per-stage and whole-pipeline throughput of the default pipeline on one backend.

    python -m benchmarks.stages                       # 12.5 MP IMX989 binned frame, backend auto
    python -m benchmarks.stages --backend numpy --size 3024 4032 --repeats 5 --out result.json

A ColorChecker capture of the requested size goes through the configured pipeline; after one
warm-up run, each stage is timed over ``--repeats`` runs with the device synchronised around
every stage (the pipeline's own timing), data already on the device. Reported: the median time
in ms and megapixels per second (output pixels) per stage and for the whole pipeline, with the
frame size, backend, device, versions, commit and date, as JSON on stdout or in ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

import isp
from isp.api import Simulation
from isp.backend import get_backend
from isp.scene import render_scene
from isp.sensor import capture
from isp.stages import StageContext


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _cpu() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"model": model, "cores": os.cpu_count()}


def run(backend_name: str, size: tuple[int, int], repeats: int, overrides: list[str]) -> dict:
    cfg = isp.compose([f"backend={backend_name}", f"scene.size=[{size[0]},{size[1]}]", "sensor.mode=binned", *overrides])
    sim = Simulation(cfg)
    backend = get_backend(sim.settings.backend)
    scene = render_scene(sim.scene_params, sim.sensor.readout, sim.sensor.cfa.tile_shape, backend)
    raw = capture(scene.linear_rgb, sim.sensor, backend)
    ctx = StageContext(backend, sim.settings.seed)
    sim.pipeline.run(raw, ctx)  # warm-up: compilation, memory pools, caches
    runs = [sim.pipeline.run(raw, ctx).times_ms for _ in range(repeats)]
    megapixels = size[0] * size[1] / 1e6
    stages = {}
    for name in runs[0]:  # the stages that ran (a disabled stage is skipped)
        median = statistics.median(r[name] for r in runs)
        stages[name] = {"median_ms": median, "mpix_per_s": megapixels / (median / 1e3) if median > 0 else None}
    total = statistics.median(sum(r.values()) for r in runs)
    versions = {"python": platform.python_version(), "numpy": np.__version__, "isp_sim": isp.__version__}
    if backend.is_gpu:
        versions["cupy"] = backend.xp.__version__
    return {
        "benchmark": "pipeline stages",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "backend": backend.name,
        "device": backend.device_name(),
        "cpu": _cpu(),
        "frame": {"height": size[0], "width": size[1], "megapixels": megapixels},
        "pipeline": sim.pipeline_name,
        "tuning": sim.tuning_name,
        "repeats": repeats,
        "versions": versions,
        "stages": stages,
        "pipeline_total": {"median_ms": total, "mpix_per_s": megapixels / (total / 1e3)},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto", choices=("auto", "numpy", "cupy"))
    parser.add_argument("--size", type=int, nargs=2, default=(3072, 4096), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. tuning=neutral")
    args = parser.parse_args(argv)
    result = run(args.backend, tuple(args.size), args.repeats, args.overrides)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    frame = result["frame"]
    print(f"\n{result['backend']} on {result['device']}, {frame['width']}x{frame['height']} ({frame['megapixels']:.1f} MP), median of {args.repeats}:", file=sys.stderr)
    for name, row in {**result["stages"], "pipeline": result["pipeline_total"]}.items():
        rate = f"{row['mpix_per_s']:.1f}" if row["mpix_per_s"] else "-"
        print(f"  {name:18s} {row['median_ms']:9.2f} ms  {rate:>9s} MP/s", file=sys.stderr)


if __name__ == "__main__":
    main()
