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
and date, as JSON. Each is timed with the ``reference`` sensor engine (array code, one random
stream per source) and the ``fused`` one (one CUDA kernel, counter-based draws; on NumPy its
array-module reference), and a third row per engine times only the noise and the ADC
(:func:`isp.sensor.capture.sensor_dn`, from mean electrons already on the device to DN): the
part the fused kernel replaces.

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
from isp.sensor import NOISE_SOURCES, capture, mean_electrons, sensor_dn

__all__ = ["SENSOR_SCOPES", "SENSOR_ROWS", "measure_sensor", "sensor_spec", "run", "main"]


#: What a sensor row times: the whole capture with or without the lens model, or only the
#: noise and ADC step from mean electrons to DN.
SENSOR_SCOPES = ("optics", "sensor_only", "noise_adc")
_SCOPE_NAMES = {
    "optics": "sensor capture, optics + sensor",
    "sensor_only": "sensor capture, sensor only (lens off)",
    "noise_adc": "sensor noise + ADC only (mean electrons to DN)",
}


#: The sensor rows of a run, (scope, engine): the optics once (the engines share them), the
#: sensor alone and its noise + ADC step with each engine.
SENSOR_ROWS = (("optics", "reference"), ("sensor_only", "reference"), ("sensor_only", "fused"), ("noise_adc", "reference"), ("noise_adc", "fused"))


def sensor_spec(
    size: str, backend: str, scope: str, repeats: int, warmup: int = 1, overrides: tuple[str, ...] = (), engine: str = "reference"
) -> RowSpec:
    """The row of a capture of ``scope`` (:data:`SENSOR_SCOPES`) with sensor engine ``engine``."""
    name = f"{_SCOPE_NAMES[scope]}, {engine} engine"
    return RowSpec("sensor", name, size, backend, repeats, warmup, tuple(overrides), {"scope": scope, "engine": engine})


def measure_sensor(spec: RowSpec, meter: MemoryMeter) -> list[dict[str, Any]]:
    """Time a capture of a scene of ``spec.size`` already on the device (or its noise and ADC step)."""
    size = parse_size(spec.size)
    backend = get_backend(spec.backend)
    scope, engine = spec.options["scope"], spec.options["engine"]
    lens_overrides = LENS_OFF if scope != "optics" else ()
    sim = simulation(size, backend.name, [*lens_overrides, f"++sensor.engine={engine}", *spec.overrides])
    sensor = sim.sensor
    scene = render_scene(sim.scene_params, sensor.readout, sensor.cfa.tile_shape, backend)
    seeds = itertools.count(sim.settings.seed)
    if scope == "noise_adc":
        exposure = sensor.exposure(scene.luminance_cd_m2, white_rgb=scene.white_rgb)
        mean_e = mean_electrons(scene.linear_rgb, sensor, backend, exposure)

        def capture_once() -> None:
            # the reference engine may add hot-pixel charge into its input: give it a copy,
            # and the fused one the same copy so both rows time the same work around the step
            sensor_dn(mean_e.copy(), sensor, backend, next(seeds), exposure)

    else:

        def capture_once() -> None:
            capture(scene.linear_rgb, sensor, backend, seed=next(seeds), luminance_cd_m2=scene.luminance_cd_m2, white_rgb=scene.white_rgb)

    with meter.region() as memory:
        times = time_region(backend, capture_once, spec.repeats, spec.warmup)
    return [
        spec.row(
            key=f"sensor/{scope}/{engine}",
            device=backend.device_name(),
            sensor=sensor.name,
            cfa=sensor.cfa.name,
            engine=engine,
            noise_sources=list(sensor.noise.on()),
            all_noise_sources_on=set(sensor.noise.on()) == set(NOISE_SOURCES),
            lens_model=scope == "optics",
            scope=scope,
            **summarise(times, size.megapixels),
            timing="cuda events" if backend.is_gpu else "perf_counter, device synchronised",
            **memory,
        )
    ]


def run(backends: list[str], repeats: int, overrides: list[str], size: str = "50mp") -> dict[str, Any]:
    """Time every sensor row on each backend in this process; the result as JSON-ready data."""
    rows = []
    for name in backends:
        backend = get_backend(name)
        meter = MemoryMeter(backend)
        for scope, engine in SENSOR_ROWS:
            for row in measure_sensor(sensor_spec(size, name, scope, repeats, 1, tuple(overrides), engine), meter):
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
