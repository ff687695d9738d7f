"""The benchmark harness: pipelines, stages, the sensor simulation and the peers, as JSON and Markdown.

    python -m benchmarks.run                                         # 12mp and 50mp, every pipeline, numpy (+ cupy)
    python -m benchmarks.run --sizes 12mp --backends numpy --repeats 3 --out results.json --markdown results.md
    python -m benchmarks.run --sizes 96x128 --repeats 1 --kinds pipeline peers tuning=neutral
    python -m benchmarks.run --quick                                 # a tiny frame, one run: a smoke test

Rows, for every frame size (``--sizes``: ``12mp`` is the IMX989's binned 3072×4096 Bayer frame,
``50mp`` its full-resolution 6144×8192 Quad Bayer frame, ``HxW`` or ``HxW:MODE`` a centred window)
and backend (``--backends``; default NumPy, and CuPy when a GPU answers):

- ``pipeline``: each pipeline of ``--pipelines`` (``configs/pipeline/<name>.yaml``; one that does
  not exist is skipped with a note) as a whole and stage by stage (:mod:`benchmarks.stages`);
- ``sensor``: the capture with every noise source on, with and without the lens model
  (:mod:`benchmarks.sensor`);
- ``peers``: rawpy/LibRaw and colour-demosaicing on the same frame (:mod:`benchmarks.peers`),
  Bayer sizes only, on the CPU;
- ``batch``: frames per second through a warm :class:`isp.batch.Batch`, host↔device transfers
  included (pinned buffers, upload/compute/download streams on a GPU), developing host raw
  frames and simulating + developing, for each pipeline (on the CPU at 12 MP and below).

Every row runs in its own child process (``--row``), so its peak host RSS and device memory are
its own; a row that fails (out of memory, a missing config, a crash) is recorded with its error
and the run goes on. Figures: the median of ``--repeats`` runs after ``--warmup`` untimed ones,
the device synchronised (CUDA events on a GPU), data already on the device, MP/s of the input
frame's pixels, every run time, peak RSS and peak device memory. The result names the machine,
versions and commit; ``comparisons`` holds the ratios to the peers measured in the same run.

A new kind of row is one entry of :data:`ROW_KINDS`: a function that plans its rows for a frame
size and one that measures a row in the child process.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, FrameSize, MemoryMeter, RowSpec, environment, parse_size, simulation
from benchmarks.peers import MALVAR_EQUAL_ATOL, measure_peers, peers_spec
from benchmarks.report import render
from benchmarks.sensor import SENSOR_ROWS, measure_sensor, sensor_spec
from benchmarks.stages import measure_pipeline
from isp.batch import measure_batch
from isp.io import write_json
from isp.paths import config_dir

__all__ = ["Settings", "RowKind", "ROW_KINDS", "TARGETS", "plan", "run", "comparisons", "main"]

SCHEMA_VERSION = 1

#: Targets of issue 5 that a ratio measured in one run can be held against: the least speed-up
#: of the project over the peer (peer time / project time).
TARGETS = {
    "pipeline/default vs peer/rawpy_ahd": 1.0,
    "peer/isp_malvar2004 vs peer/colour_malvar2004": 3.0,
}


@dataclass(frozen=True)
class Settings:
    """What the run covers: the user's choices, resolved.

    Parameters
    ----------
    sizes
        :func:`~benchmarks.common.parse_size` labels.
    backends
        ``"numpy"``, ``"cupy"``.
    pipelines
        Names of ``configs/pipeline/<name>.yaml``.
    kinds
        Keys of :data:`ROW_KINDS` to run.
    repeats, warmup
        Timed and untimed runs per row.
    overrides
        Config overrides for every row.
    row_timeout_s
        Wall time after which a row's process is stopped and the row recorded as failed.
    """

    sizes: tuple[str, ...]
    backends: tuple[str, ...]
    pipelines: tuple[str, ...]
    kinds: tuple[str, ...]
    repeats: int
    warmup: int = 1
    overrides: tuple[str, ...] = ()
    row_timeout_s: float = 1800.0


@dataclass(frozen=True)
class RowKind:
    """One kind of row.

    Parameters
    ----------
    plan
        ``(settings, size) -> (specs, notes)``: the rows to run for a frame size, and a note for
        each row left out and why.
    measure
        ``(spec, meter) -> rows``: runs in the row's own process; raises on failure.
    """

    plan: Callable[[Settings, FrameSize], tuple[list[RowSpec], list[str]]]
    measure: Callable[[RowSpec, MemoryMeter], list[dict[str, Any]]]


def _plan_pipelines(settings: Settings, size: FrameSize) -> tuple[list[RowSpec], list[str]]:
    specs, notes = [], []
    for name in settings.pipelines:
        if not (config_dir() / "pipeline" / f"{name}.yaml").is_file():
            notes.append(f"pipeline {name!r} skipped: configs/pipeline/{name}.yaml does not exist")
            continue
        for backend in settings.backends:
            specs.append(
                RowSpec("pipeline", f"pipeline {name}", size.label, backend, settings.repeats, settings.warmup, settings.overrides, {"pipeline": name})
            )
    return specs, notes


def _plan_sensor(settings: Settings, size: FrameSize) -> tuple[list[RowSpec], list[str]]:
    specs = [
        sensor_spec(size.label, backend, scope, settings.repeats, settings.warmup, settings.overrides, engine)
        for backend in settings.backends
        for scope, engine in SENSOR_ROWS
    ]
    return specs, []


@cache
def _cfa_name(size: FrameSize, overrides: tuple[str, ...]) -> str:
    return simulation(size, "numpy", overrides).sensor.cfa.name


def _plan_peers(settings: Settings, size: FrameSize) -> tuple[list[RowSpec], list[str]]:
    cfa = _cfa_name(size, settings.overrides)
    if cfa.startswith("quad_"):
        return [], [f"peers at {size.label} skipped: its CFA is {cfa}, which LibRaw cannot read as Bayer (the peers need a Bayer frame)"]
    return [peers_spec(size.label, settings.repeats, settings.warmup, settings.overrides)], []


#: Frames per batch row: many on a GPU, where transfers overlap compute; a few on the CPU,
#: where a batch is frames one after another and each takes seconds.
BATCH_FRAMES = {"cupy": 16, "numpy": 2}
#: Above this size the CPU batch rows are left out: they repeat the pipeline rows' figures.
BATCH_CPU_MAX_MEGAPIXELS = 20.0


def _plan_batch(settings: Settings, size: FrameSize) -> tuple[list[RowSpec], list[str]]:
    specs, notes = [], []
    for backend in settings.backends:
        if backend == "numpy" and size.megapixels > BATCH_CPU_MAX_MEGAPIXELS:
            notes.append(f"batch rows at {size.label} on numpy skipped: on the CPU a batch is its frames one after another")
            continue
        for name in settings.pipelines:
            if not (config_dir() / "pipeline" / f"{name}.yaml").is_file():
                continue
            for mode in ("develop", "simulate"):
                what = "host raw in, host RGB out" if mode == "develop" else "capture + develop, host RGB out"
                specs.append(
                    RowSpec(
                        "batch", f"batch {mode} ({what}), pipeline {name}", size.label, backend,
                        settings.repeats if backend == "cupy" else 1, settings.warmup, settings.overrides, {"pipeline": name, "mode": mode},
                    )
                )
    return specs, notes


def measure_batch_row(spec: RowSpec, meter: MemoryMeter) -> list[dict[str, Any]]:
    """Frames per second through :class:`isp.batch.Batch`, host↔device transfers included."""
    size = parse_size(spec.size)
    overrides = [*size.overrides, f"backend={spec.backend}", f"pipeline={spec.options['pipeline']}", *spec.overrides]
    frames = BATCH_FRAMES[spec.backend]
    with meter.region() as memory:
        result = measure_batch(overrides, frames=frames, repeats=spec.repeats, mode=spec.options["mode"], warmup=max(spec.warmup, 1))
    per_frame = result["ms_per_frame"]
    return [
        spec.row(
            key=f"batch/{spec.options['mode']}/{spec.options['pipeline']}",
            device=result["device"],
            pipeline=result["pipeline"],
            tuning=result["tuning"],
            includes_transfers=True,
            median_ms=per_frame,
            mpix_per_s=size.megapixels / (per_frame / 1e3),
            fps=result["fps"],
            fps_repeats=result["fps_repeats"],
            frames=frames,
            split_ms={part: result[f"{part}_ms"] for part in ("upload", "compute", "download", "host_copy", "serial")},
            overlap=result["overlap"],
            timing="frames per second over the measured frames of each repeat, median of repeats",
            **memory,
        )
    ]


#: Row kinds by name, in the order they run for each frame size.
ROW_KINDS: dict[str, RowKind] = {
    "pipeline": RowKind(_plan_pipelines, measure_pipeline),
    "sensor": RowKind(_plan_sensor, measure_sensor),
    "peers": RowKind(_plan_peers, measure_peers),
    "batch": RowKind(_plan_batch, measure_batch_row),
}


def plan(settings: Settings) -> tuple[list[RowSpec], list[str]]:
    """Every row of the run, and notes on what was left out."""
    specs: list[RowSpec] = []
    notes: list[str] = []
    for label in settings.sizes:
        size = parse_size(label)
        for kind in settings.kinds:
            more, why = ROW_KINDS[kind].plan(settings, size)
            specs += more
            notes += [n for n in why if n not in notes]
    return specs, notes


def run(settings: Settings, environment: dict[str, Any], progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every planned row, each in its own process; the whole result as JSON-ready data."""
    specs, notes = plan(settings)
    rows: list[dict[str, Any]] = []
    for i, spec in enumerate(specs, start=1):
        progress(f"[{i}/{len(specs)}] {spec.name}, {spec.size}, {spec.backend} ...")
        t0 = time.perf_counter()
        got = _run_row(spec, settings.row_timeout_s)
        for row in got:
            figure = f"error: {row['error']}" if row.get("error") else f"{row['median_ms']:.1f} ms, {row['mpix_per_s'] or 0:.2f} MP/s"
            progress(f"    {row['name']}: {figure}")
        progress(f"    ({time.perf_counter() - t0:.0f} s)")
        rows += got
    return {
        "benchmark": "isp-sim throughput",
        "schema_version": SCHEMA_VERSION,
        "environment": environment,
        "settings": asdict(settings),
        "notes": notes,
        "rows": rows,
        "comparisons": comparisons(rows),
    }


def comparisons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Speed-ups of the project over the peers measured in the same run, per frame size.

    ``speedup`` is the peer's median time over the project's (above 1: the project is faster).
    Compared: every NumPy pipeline with rawpy AHD ``postprocess()`` (a whole development each),
    and the project's Malvar-He-Cutler demosaic with colour-demosaicing's (with the difference
    of their outputs).
    """
    found = {(r["key"], r["frame"]["label"]): r for r in rows if not r.get("error") and r["backend"] == "numpy" and "key" in r}
    out = []
    for (key, label), project in found.items():
        peer_key = "peer/rawpy_ahd" if key.startswith("pipeline/") else "peer/colour_malvar2004" if key == "peer/isp_malvar2004" else None
        peer = found.get((peer_key, label))
        if peer is None:
            continue
        name = f"{key} vs {peer_key}"
        speedup = peer["median_ms"] / project["median_ms"]
        comparison = {
            "name": name,
            "project": project["name"],
            "peer": peer["name"],
            "frame": project["frame"],
            "project_ms": project["median_ms"],
            "peer_ms": peer["median_ms"],
            "speedup": speedup,
            "same_frame": project.get("frame_sha1") == peer.get("frame_sha1"),
            "target_speedup": TARGETS.get(name),
            "meets_target": speedup >= TARGETS[name] if name in TARGETS else None,
        }
        if key == "peer/isp_malvar2004":
            comparison["max_abs_diff"] = project["max_abs_diff_vs_colour"]
            comparison["equal_output"] = project["equal_output"]
            comparison["equal_atol"] = MALVAR_EQUAL_ATOL
            comparison["meets_target"] = comparison["meets_target"] and project["equal_output"]
        out.append(comparison)
    return out


def _run_row(spec: RowSpec, timeout_s: float) -> list[dict[str, Any]]:
    """Run one spec in a child process; its rows, or one row holding the error."""
    with tempfile.TemporaryDirectory(prefix="isp-sim-bench-") as tmp:
        out = Path(tmp) / "row.json"
        command = [sys.executable, "-m", "benchmarks.run", "--row", spec.to_json(), "--row-out", str(out)]
        try:
            proc = subprocess.run(command, cwd=REPO, env=_child_env(), capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            return [spec.row(error=f"timed out after {timeout_s:.0f} s (--row-timeout)")]
        payload = json.loads(out.read_text()) if out.is_file() else None
    if payload is not None and "rows" in payload:
        return payload["rows"]
    if payload is not None:
        return [spec.row(error=payload["error"], traceback=payload.get("traceback"))]
    return [spec.row(error=f"the row's process {_exit_reason(proc.returncode)}; stderr ends: {_tail(proc.stderr)}")]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
        hint = " (the kernel's out-of-memory killer sends it)" if -returncode == signal.SIGKILL else ""
        return f"was killed by {name}{hint}"
    return f"exited with status {returncode} without a result"


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "(nothing)"


def _child(spec_json: str, out: Path) -> int:
    """Measure one spec in this process and write its rows (or its error) to ``out``."""
    from isp.backend import get_backend  # noqa: PLC0415

    try:
        spec = RowSpec.from_json(spec_json)
        meter = MemoryMeter(get_backend(spec.backend))
        rows = ROW_KINDS[spec.kind].measure(spec, meter)
        process = meter.process()
        for row in rows:
            row.update(process)
        write_json(out, {"rows": rows})
        return 0
    except Exception as exc:  # noqa: BLE001 - every failure becomes the row's error, and the run goes on
        write_json(out, {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        return 1


def _probe(out: Path) -> int:
    """Write this machine's environment, with the GPU when one answers, to ``out``."""
    from isp.backend import get_backend, gpu_available  # noqa: PLC0415

    gpu = gpu_available()
    write_json(out, {"gpu_available": gpu, "environment": environment(get_backend("cupy") if gpu else None)})
    return 0


def _probe_in_child() -> dict[str, Any]:
    """The environment, probed in a child so that this process holds no CUDA context."""
    with tempfile.TemporaryDirectory(prefix="isp-sim-bench-") as tmp:
        out = Path(tmp) / "environment.json"
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.run", "--probe-out", str(out)], cwd=REPO, env=_child_env(), capture_output=True, text=True, check=False
        )
        if not out.is_file():
            raise RuntimeError(f"probing the machine failed: the process {_exit_reason(proc.returncode)}; stderr ends: {_tail(proc.stderr)}")
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", help="12mp, 50mp, HxW or HxW:MODE (default: 12mp 50mp; --quick: 96x128)")
    parser.add_argument("--backends", nargs="+", choices=("numpy", "cupy"), help="default: numpy, and cupy when a GPU answers")
    parser.add_argument("--pipelines", nargs="+", default=["default", "basic", "fast"], help="configs/pipeline/<name>.yaml")
    parser.add_argument("--kinds", nargs="+", default=list(ROW_KINDS), choices=list(ROW_KINDS), help="kinds of rows to run")
    parser.add_argument("--repeats", type=int, help="timed runs per row (default 5; --quick: 1)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones")
    parser.add_argument("--quick", action="store_true", help="a smoke test: a 96x128 frame and one timed run unless told otherwise")
    parser.add_argument("--row-timeout", type=float, default=1800.0, metavar="SECONDS", help="stop a row's process after this long")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    parser.add_argument("--markdown", type=Path, help="write the Markdown report here")
    parser.add_argument("overrides", nargs="*", help="config overrides for every row, e.g. tuning=neutral sensor.iso=800")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # a child: the RowSpec as JSON
    parser.add_argument("--row-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--probe-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.row is not None:
        if args.row_out is None:
            parser.error("--row needs --row-out")
        return _child(args.row, args.row_out)
    if args.probe_out is not None:
        return _probe(args.probe_out)

    sizes = args.sizes or (["96x128"] if args.quick else ["12mp", "50mp"])
    repeats = args.repeats if args.repeats is not None else 1 if args.quick else 5
    if repeats < 1 or args.warmup < 0:
        parser.error(f"--repeats must be at least 1 and --warmup at least 0, got {repeats} and {args.warmup}")
    for label in sizes:
        try:
            parse_size(label)
        except ValueError as exc:
            parser.error(str(exc))
    if args.backends is not None and "cupy" not in args.backends:
        probe = {"gpu_available": None, "environment": environment(None)}  # no GPU to describe
    else:
        probe = _probe_in_child()
    backends = args.backends or (["numpy", "cupy"] if probe["gpu_available"] else ["numpy"])
    settings = Settings(
        sizes=tuple(sizes),
        backends=tuple(backends),
        pipelines=tuple(args.pipelines),
        kinds=tuple(args.kinds),
        repeats=repeats,
        warmup=args.warmup,
        overrides=tuple(args.overrides),
        row_timeout_s=args.row_timeout,
    )
    result = run(settings, probe["environment"], progress=lambda line: print(line, file=sys.stderr, flush=True))
    if not probe["gpu_available"] and args.backends is None:
        result["notes"].append("no GPU answered: NumPy rows only")
    markdown = render(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, result)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
