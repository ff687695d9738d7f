"""Per-stage and whole-pipeline throughput of one pipeline on one backend.

    python -m benchmarks.stages                       # 12.6 MP IMX989 binned frame, backend auto
    python -m benchmarks.stages --backend numpy --size 3024 4032 --repeats 5 --out result.json
    python -m benchmarks.stages pipeline=basic tuning=neutral

A ColorChecker capture of the requested size (on the device) goes through the configured
pipeline as a run takes it (:meth:`isp.api.Simulation.develop`: in tiles when ``pipeline.tiles``
asks, as the default pipeline does for a 50 MP frame; per-stage times are then summed over the
tiles, halos included). After a warm-up run: the whole pipeline timed as one region (:func:`time_region`), and
each stage timed by the pipeline itself (the device synchronised around every stage). On the
CPU one set of runs gives both, synchronising being free there; on a GPU they are separate runs,
so the per-stage synchronisations do not slow the whole-pipeline figure. Reported: the median
time in ms and megapixels per second (input frame pixels) per stage and for the whole pipeline,
peak memory, the frame's fingerprint, device, versions, commit and date, as JSON.

:func:`measure_pipeline` is also the ``pipeline`` row kind of ``python -m benchmarks.run``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import MemoryMeter, RowSpec, capture_frame, environment, fingerprint, parse_size, simulation, summarise, time_region
from isp.backend import get_backend
from isp.frame import Image
from isp.fusion import plan_fusion
from isp.stages import StageContext

__all__ = ["measure_pipeline", "run", "main"]


def measure_pipeline(spec: RowSpec, meter: MemoryMeter) -> list[dict[str, Any]]:
    """Time the pipeline ``spec.options["pipeline"]`` on a simulated frame of ``spec.size``."""
    size = parse_size(spec.size)
    backend = get_backend(spec.backend)
    sim = simulation(size, backend.name, [f"pipeline={spec.options['pipeline']}", *spec.overrides])
    raw = capture_frame(sim, backend)
    ctx = StageContext(backend, sim.settings.seed)
    staged: list[dict[str, float]] = []
    last: list[Any] = []
    tiles = [0]

    def run_once(time_stages: bool) -> None:
        # as a run does it: in tiles when pipeline.tiles asks (a 50 MP frame on the default pipeline)
        result, tiles[0] = sim.develop(raw, ctx, time_stages=time_stages)
        if time_stages:
            staged.append(result.times_ms)
        last[:] = [result.output]

    with meter.region() as memory:
        if backend.is_gpu:
            whole = time_region(backend, lambda: run_once(time_stages=False), spec.repeats, spec.warmup)
            for _ in range(spec.repeats):
                run_once(time_stages=True)
        else:  # synchronising is free on the CPU: one set of runs gives both figures
            whole = time_region(backend, lambda: run_once(time_stages=True), spec.repeats, spec.warmup)
            del staged[: spec.warmup]
    output = last[0]
    array = output.data if isinstance(output, Image) else output.mosaic
    stages = {}
    for name in staged[0]:  # the stages that ran, in order (a disabled stage is left out)
        stages[name] = summarise([times[name] for times in staged], size.megapixels)
    rows = []
    plan = plan_fusion(sim.pipeline.stages, raw, ctx) if sim.pipeline.fuse and backend.is_gpu else None
    if plan is not None:  # the kernel alone, its plan made once (a burst or sweep reuses it)
        with meter.region() as kernel_memory:
            kernel = time_region(backend, lambda: plan.run(raw, ctx), spec.repeats, spec.warmup)
        rows.append(
            spec.row(
                key=f"pipeline/{spec.options['pipeline']}/kernel",
                name=f"{spec.name}: fused kernel alone ({plan.label}, plan made once)",
                device=backend.device_name(),
                pipeline=sim.pipeline_name,
                tuning=sim.tuning_name,
                **summarise(kernel, size.megapixels),
                timing="cuda events around the kernel launch",
                **kernel_memory,
            )
        )
    return [
        spec.row(
            key=f"pipeline/{spec.options['pipeline']}",
            device=backend.device_name(),
            pipeline=sim.pipeline_name,
            tuning=sim.tuning_name,
            **summarise(whole, size.megapixels),
            timing="cuda events around the whole pipeline" if backend.is_gpu else "perf_counter around the whole pipeline",
            stage_timing="perf_counter around each stage, device synchronised before and after",
            stage_sum_ms=statistics.median(sum(times.values()) for times in staged),
            tile_core_px=tiles[0] or None,
            stages=stages,
            output={"shape": list(array.shape), "dtype": str(array.dtype)},
            frame_sha1=fingerprint(raw.mosaic),
            **memory,
        ),
        *rows,
    ]


def run(backend_name: str, size: tuple[int, int], repeats: int, overrides: list[str]) -> dict[str, Any]:
    """Time the configured pipeline in this process; the result as JSON-ready data."""
    backend = get_backend(backend_name)
    overrides = list(overrides)
    pipeline = next((o.split("=", 1)[1] for o in overrides if o.startswith("pipeline=")), "default")
    overrides = [o for o in overrides if not o.startswith("pipeline=")]
    spec = RowSpec("pipeline", f"pipeline {pipeline}", f"{size[0]}x{size[1]}", backend.name, repeats, 1, tuple(overrides), {"pipeline": pipeline})
    meter = MemoryMeter(backend)
    (row,) = measure_pipeline(spec, meter)
    row.update(meter.process())
    return {"benchmark": "pipeline stages", **environment(backend if backend.is_gpu else None), "rows": [row]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto", choices=("auto", "numpy", "cupy"))
    parser.add_argument("--size", type=int, nargs=2, default=(3072, 4096), metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. tuning=neutral or pipeline=basic")
    args = parser.parse_args(argv)
    result = run(args.backend, tuple(args.size), args.repeats, args.overrides)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    (row,) = result["rows"]
    frame = row["frame"]
    print(
        f"\n{row['backend']} on {row['device']}, {frame['width']}x{frame['height']} ({frame['megapixels']:.1f} MP), "
        f"pipeline {row['pipeline']}, median of {args.repeats}:",
        file=sys.stderr,
    )
    for name, figures in {**row["stages"], "pipeline": row}.items():
        rate = f"{figures['mpix_per_s']:.1f}" if figures["mpix_per_s"] else "-"
        print(f"  {name:18s} {figures['median_ms']:9.2f} ms  {rate:>9s} MP/s", file=sys.stderr)


if __name__ == "__main__":
    main()
