"""Throughput of the sensor simulation: an IMX989 capture with every noise source on.

    python -m benchmarks.sensor                                # 50 MP full-resolution frame, every backend here
    python -m benchmarks.sensor --backend numpy --repeats 3 --out result.json
    python -m benchmarks.sensor --size 3072 4096 sensor.mode=binned

A ColorChecker scene of the read-out's size (on the device) is captured by
:func:`isp.sensor.capture`: with the lens model on (lateral CA, PSF, shading), and with it off
(the sensor alone: QE, PRNU/mismatch/defects, shot noise, dark current, DSNU, read and row
noise, full well, ADC). One warm-up capture builds the fixed-pattern maps and compiles what
needs compiling; then the median of ``--repeats`` captures (a new seed each), device
synchronised, in ms and megapixels per second, with peak memory, the device, versions, commit
and date, as JSON.

:func:`measure_sensor` is also the ``sensor`` row kind of ``python -m benchmarks.run``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import LENS_OFF, MemoryMeter, RowSpec, environment, parse_size, simulation, summarise, time_region
from isp.backend import get_backend, gpu_available
from isp.scene import render_scene
from isp.sensor import NOISE_SOURCES, capture

__all__ = ["measure_sensor", "sensor_spec", "run", "main"]


def sensor_spec(size: str, backend: str, lens: bool, repeats: int, warmup: int = 1, overrides: tuple[str, ...] = ()) -> RowSpec:
    """The row of a capture with (``lens``) or without the lens model."""
    name = "sensor capture, optics + sensor" if lens else "sensor capture, sensor only (lens off)"
    return RowSpec("sensor", name, size, backend, repeats, warmup, tuple(overrides), {"lens": lens})


def measure_sensor(spec: RowSpec, meter: MemoryMeter) -> list[dict[str, Any]]:
    """Time :func:`isp.sensor.capture` of a scene of ``spec.size`` already on the device."""
    size = parse_size(spec.size)
    backend = get_backend(spec.backend)
    lens_overrides = () if spec.options["lens"] else LENS_OFF
    sim = simulation(size, backend.name, [*lens_overrides, *spec.overrides])
    sensor = sim.sensor
    scene = render_scene(sim.scene_params, sensor.readout, sensor.cfa.tile_shape, backend)
    seeds = itertools.count(sim.settings.seed)

    def capture_once() -> None:
        capture(scene.linear_rgb, sensor, backend, seed=next(seeds), luminance_cd_m2=scene.luminance_cd_m2, white_rgb=scene.white_rgb)

    with meter.region() as memory:
        times = time_region(backend, capture_once, spec.repeats, spec.warmup)
    return [
        spec.row(
            key="sensor/optics" if spec.options["lens"] else "sensor/sensor_only",
            device=backend.device_name(),
            sensor=sensor.name,
            cfa=sensor.cfa.name,
            noise_sources=list(sensor.noise.on()),
            all_noise_sources_on=set(sensor.noise.on()) == set(NOISE_SOURCES),
            lens_model=bool(spec.options["lens"]),
            **summarise(times, size.megapixels),
            timing="cuda events" if backend.is_gpu else "perf_counter, device synchronised",
            **memory,
        )
    ]


def run(backends: list[str], repeats: int, overrides: list[str], size: str = "50mp") -> dict[str, Any]:
    """Time both captures on each backend in this process; the result as JSON-ready data."""
    rows = []
    for name in backends:
        backend = get_backend(name)
        meter = MemoryMeter(backend)
        for lens in (True, False):
            for row in measure_sensor(sensor_spec(size, name, lens, repeats, 1, tuple(overrides)), meter):
                rows.append({**row, **meter.process()})  # this process's peak so far: the rows share it
    gpu = get_backend("cupy") if "cupy" in backends else None
    return {"benchmark": "sensor capture", **environment(gpu), "all_noise_sources": list(NOISE_SOURCES), "rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="all", choices=("all", "numpy", "cupy"), help="all: NumPy, and CuPy where a GPU answers")
    parser.add_argument("--size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), help="default: the full-resolution 50 MP read-out")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. sensor.iso=3200")
    args = parser.parse_args(argv)
    backends = ["numpy", "cupy"] if args.backend == "all" else [args.backend]
    if args.backend == "all" and not gpu_available():
        backends = ["numpy"]
        print("no GPU answers: timing NumPy only", file=sys.stderr)
    overrides = list(args.overrides)
    mode = next((o.split("=", 1)[1] for o in overrides if o.startswith("sensor.mode=")), None)
    size = f"{args.size[0]}x{args.size[1]}" if args.size else "50mp"
    if mode is not None:
        size = f"{args.size[0]}x{args.size[1]}:{mode}" if args.size else {"full": "50mp", "binned": "12mp"}.get(mode, size)
        overrides = [o for o in overrides if not o.startswith("sensor.mode=")]
    result = run(backends, args.repeats, overrides, size)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    for row in result["rows"]:
        frame = row["frame"]
        print(
            f"{row['backend']:6s} {row['device']:24s} {frame['width']}x{frame['height']} ({frame['megapixels']:.1f} MP) "
            f"{row['name']:40s} {row['median_ms']:10.1f} ms  {row['mpix_per_s']:8.2f} MP/s",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
