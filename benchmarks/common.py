"""Shared pieces of the benchmarks: frame sizes, the environment record, timing and peak memory.

Timing (:func:`time_region`): warm-up runs, then each timed run on its own. On a GPU the region
is bracketed by CUDA events recorded on the current stream (the device's own clock, from the
first queued operation to the last); on the CPU by ``perf_counter`` with the device synchronised
before and after. Data is already where the backend computes, so no row includes host↔device
transfers unless it says so.

Peak memory (:class:`MemoryMeter`): the host's peak resident set size over a region (Linux
``VmHWM``, reset through ``/proc/self/clear_refs`` when the kernel allows it) and over the whole
process (``getrusage``), and on a GPU the high-water mark of the CuPy memory pool's used bytes,
read after every allocation by an allocator wrapper. The harness runs every row in a fresh
process, so a row's figures never include another row's peaks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from isp.api import Simulation, compose
from isp.backend import Backend, to_host
from isp.frame import RawFrame
from isp.scene import render_scene
from isp.sensor import capture

__all__ = [
    "REPO",
    "FrameSize",
    "RowSpec",
    "SIZES",
    "LENS_OFF",
    "parse_size",
    "environment",
    "gpu_environment",
    "commit",
    "cpu",
    "time_region",
    "summarise",
    "MemoryMeter",
    "fingerprint",
    "distribution_version",
    "simulation",
    "capture_frame",
]

#: The checkout the benchmarks run from (git commands and child processes start here).
REPO = Path(__file__).resolve().parents[1]

#: Config overrides that switch the lens model off (relative illumination, colour shading, PSF,
#: lateral chromatic aberration), leaving the sensor alone.
LENS_OFF = (
    "sensor.lens.optics.relative_illumination.model=none",
    "sensor.lens.optics.color_shading.coefficients=null",
    "sensor.lens.optics.psf.kind=none",
    "sensor.lens.optics.lateral_ca.magnification=[1,1,1]",
)

#: Distributions whose versions every result records (those absent are left out).
_DISTRIBUTIONS = (
    "isp-sim",
    "numpy",
    "scipy",
    "rawpy",
    "colour-demosaicing",
    "colour-science",
    "tifffile",
    "hydra-core",
    "cupy-cuda12x",
    "cupy-cuda13x",
    "cupy",
)


@dataclass(frozen=True)
class FrameSize:
    """A frame of the IMX989 model to time: its read-out mode and a centred window of it.

    Parameters
    ----------
    label
        The name it was asked for (``"12mp"``, ``"50mp"``, ``"96x128"``, ``"96x128:full"``);
        :func:`parse_size` of it gives this size back.
    height, width
        Frame size in pixels.
    mode
        ``sensor.mode``: ``"binned"`` (Bayer, 4096 × 3072), ``"full"`` (Quad Bayer, 8192 × 6144), ...
    """

    label: str
    height: int
    width: int
    mode: str

    @property
    def megapixels(self) -> float:
        return self.height * self.width / 1e6

    @property
    def overrides(self) -> list[str]:
        """Config overrides that give this frame (before any the user adds)."""
        return ["sensor=imx989", f"sensor.mode={self.mode}", f"scene.size=[{self.height},{self.width}]"]

    def describe(self) -> dict[str, Any]:
        return {"label": self.label, "height": self.height, "width": self.width, "megapixels": self.megapixels, "mode": self.mode}


#: The IMX989's two read-outs: 2×2 binned Bayer (12.6 MP) and full-resolution Quad Bayer (50.3 MP).
SIZES = {
    "12mp": FrameSize("12mp", 3072, 4096, "binned"),
    "50mp": FrameSize("50mp", 6144, 8192, "full"),
}


def parse_size(text: str) -> FrameSize:
    """A frame size from ``12mp``, ``50mp``, ``HxW`` or ``HxW:mode``.

    ``HxW`` is a centred window of the binned (Bayer) read-out when it fits there, else of the
    full-resolution (Quad Bayer) one; ``:MODE`` picks a read-out mode of the sensor (``binned``,
    ``full``, ``binned_dcg``), which the sensor config then checks.

    Raises
    ------
    ValueError
        ``text`` is none of these forms.
    """
    key = text.strip().lower()
    if key in SIZES:
        return SIZES[key]
    match = re.fullmatch(r"(\d+)x(\d+)(?::(\w+))?", key)
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise ValueError(f"frame size {text!r}: expected one of {', '.join(SIZES)}, HEIGHTxWIDTH or HEIGHTxWIDTH:MODE")
    height, width, mode = int(match[1]), int(match[2]), match[3]
    if mode is None:
        binned = SIZES["12mp"]
        mode = "binned" if height <= binned.height and width <= binned.width else "full"
    return FrameSize(key, height, width, mode)


def time_region(backend: Backend, fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed; the times in ms.

    On a GPU each run is bracketed by CUDA events on the current stream, so the time is the
    device's from the region's first queued operation to its last, host gaps between launches
    included; work ``fn`` queues on other streams is not covered. On the CPU, ``perf_counter``
    around the run, the device synchronised before and after.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for _ in range(warmup):
        fn()
    backend.synchronize()
    times_ms = []
    if backend.is_gpu:
        cuda = backend.xp.cuda
        start, stop = cuda.Event(), cuda.Event()
        for _ in range(repeats):
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times_ms.append(float(cuda.get_elapsed_time(start, stop)))
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            backend.synchronize()
            times_ms.append((time.perf_counter() - t0) * 1e3)
    return times_ms


def summarise(times_ms: list[float], megapixels: float) -> dict[str, Any]:
    """Median, throughput (megapixels per second of the median) and every run time."""
    median = statistics.median(times_ms)
    return {
        "median_ms": median,
        "mpix_per_s": megapixels / (median / 1e3) if median > 0 else None,
        "times_ms": list(times_ms),
    }


def fingerprint(array: Any) -> str:
    """A short hash of an array's bytes (on the host), to show that two rows used the same frame."""
    host = np.ascontiguousarray(to_host(array))
    return hashlib.sha1(host.tobytes()).hexdigest()[:16]


class _DevicePeak:
    """High-water mark of the CuPy memory pool's used bytes, read after every allocation.

    Installed as CuPy's allocator around the one it replaces (normally the default pool's
    ``malloc``). ``used_bytes`` only grows inside an allocation, so reading it after each one
    sees every peak. Memory outside the pool (cuFFT plans' own, CUDA contexts, modules) is not
    counted.
    """

    def __init__(self, xp: Any):
        self._cuda = xp.cuda
        self._pool = xp.get_default_memory_pool()
        self._previous = self._cuda.get_allocator()
        self.peak_bytes = self._pool.used_bytes()
        previous, pool = self._previous, self._pool

        def malloc(nbytes: int) -> Any:
            memory = previous(nbytes)
            used = pool.used_bytes()
            if used > self.peak_bytes:
                self.peak_bytes = used
            return memory

        self._cuda.set_allocator(malloc)

    def reset(self) -> None:
        self.peak_bytes = self._pool.used_bytes()

    def pool_reserved_bytes(self) -> int:
        return int(self._pool.total_bytes())


def _host_peak_kib() -> int | None:
    """The process's peak resident set size since the last reset (Linux VmHWM), in KiB."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) if match else None


def _reset_host_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+); False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _rusage_peak_kib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**10 if sys.platform == "darwin" else float(peak)  # bytes on macOS, KiB on Linux


class MemoryMeter:
    """Peak host and device memory of regions of one process, and of the whole process.

    Create it before the backend allocates anything, so the device wrapper sees every
    allocation. ``region()`` yields a dict that holds, once the region ends, ``region_peak_rss_mb``
    (peak RSS during the region, resident inputs included; ``None`` where the kernel cannot
    reset the mark) and, on a GPU, ``peak_device_mb`` (the pool's used high-water mark during
    the region, resident inputs included) and ``device_pool_reserved_mb`` (what the pool holds
    from the driver at the end). :meth:`process` gives the whole process's peak RSS.
    """

    def __init__(self, backend: Backend):
        self._device = _DevicePeak(backend.xp) if backend.is_gpu else None
        # Resetting VmHWM also resets what getrusage reports, so the peaks before each reset
        # are kept here.
        self._earlier_peak_kib = 0.0

    @contextlib.contextmanager
    def region(self) -> Iterator[dict[str, Any]]:
        out: dict[str, Any] = {}
        self._earlier_peak_kib = self._peak_kib()
        resettable = _reset_host_peak()
        if self._device is not None:
            self._device.reset()
        yield out
        peak_kib = _host_peak_kib() if resettable else None
        out["region_peak_rss_mb"] = peak_kib / 2**10 if peak_kib is not None else None
        out["peak_device_mb"] = self._device.peak_bytes / 2**20 if self._device is not None else None
        out["device_pool_reserved_mb"] = self._device.pool_reserved_bytes() / 2**20 if self._device is not None else None

    def process(self) -> dict[str, Any]:
        """``peak_rss_mb``: the peak resident set size of the whole process so far."""
        return {"peak_rss_mb": self._peak_kib() / 2**10}

    def _peak_kib(self) -> float:
        return max(self._earlier_peak_kib, _host_peak_kib() or 0, _rusage_peak_kib())


def commit() -> dict[str, Any]:
    """The checkout's commit and whether its tracked files differ from it (``None`` outside git)."""

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True, cwd=REPO, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return None

    head = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": head.strip() if head else None, "dirty": bool(status.strip()) if status is not None else None}


def cpu() -> dict[str, Any]:
    """CPU model, logical cores, the cores this process may use, and the machine's memory."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory_gb = None
    with contextlib.suppress(OSError, ValueError):
        match = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
        memory_gb = int(match[1]) / 2**20 if match else None
    return {"model": model, "cores": os.cpu_count(), "usable_cores": usable, "memory_gb": memory_gb}


def distribution_version(name: str) -> str | None:
    """The installed version of a distribution, ``None`` when it is not installed."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _DISTRIBUTIONS:
        version = distribution_version(name)
        if version is not None:
            versions[name] = version
    with contextlib.suppress(ImportError):
        import rawpy  # noqa: PLC0415

        versions["libraw"] = ".".join(str(v) for v in rawpy.libraw_version)
    return versions


def gpu_environment(backend: Backend) -> dict[str, Any]:
    """The GPU a CuPy backend runs on: name, memory, compute capability, driver and CUDA versions."""
    xp = backend.xp
    runtime = xp.cuda.runtime
    props = runtime.getDeviceProperties(backend.device_id())

    def cuda_version(number: int) -> str:
        return f"{number // 1000}.{number % 1000 // 10}"

    driver = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", f"--id={backend.device_id()}"],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        driver = out.stdout.strip() or None
    return {
        "name": backend.device_name(),
        "memory_gb": props["totalGlobalMem"] / 2**30,
        "compute_capability": f"{props['major']}.{props['minor']}",
        "driver_version": driver,
        "cuda_driver_api": cuda_version(runtime.driverGetVersion()),
        "cuda_runtime": cuda_version(runtime.runtimeGetVersion()),
        "cupy": xp.__version__,
    }


def environment(gpu: Backend | None = None) -> dict[str, Any]:
    """What a result must name to be reproduced: date, commit, CPU, versions, and the GPU if any."""
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **commit(),
        "platform": platform.platform(),
        "cpu": cpu(),
        "gpu": gpu_environment(gpu) if gpu is not None else None,
        "versions": _versions(),
    }


@dataclass(frozen=True)
class RowSpec:
    """What one row (or group of rows) of a benchmark measures; JSON-serialisable, so a child
    process can be handed it on its command line.

    Parameters
    ----------
    kind
        A key of ``benchmarks.run.ROW_KINDS``.
    name
        What the row is called in the table (an error row keeps it).
    size
        A :func:`parse_size` label.
    backend
        ``"numpy"`` or ``"cupy"``.
    repeats, warmup
        Timed and untimed runs.
    overrides
        Config overrides after those of the size.
    options
        What else the kind needs (a pipeline's name, whether the lens model is on).
    """

    kind: str
    name: str
    size: str
    backend: str
    repeats: int
    warmup: int = 1
    overrides: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> RowSpec:
        values = json.loads(text)
        return cls(**{**values, "overrides": tuple(values.get("overrides", ()))})

    def to_json(self) -> str:
        return json.dumps({**dataclasses.asdict(self), "overrides": list(self.overrides)})

    def row(self, **figures: Any) -> dict[str, Any]:
        """A result row: what was asked for, then ``figures``."""
        return {
            "kind": self.kind,
            "name": self.name,
            "backend": self.backend,
            "frame": parse_size(self.size).describe(),
            "repeats": self.repeats,
            "warmup": self.warmup,
            "overrides": list(self.overrides),
            "includes_transfers": False,
            **figures,
        }


def simulation(size: FrameSize, backend: str, overrides: Sequence[str] = ()) -> Simulation:
    """The validated simulation of ``size`` on ``backend`` with the user's overrides."""
    return Simulation(compose([*size.overrides, f"backend={backend}", *overrides]))


def capture_frame(sim: Simulation, backend: Backend) -> RawFrame:
    """The simulation's raw capture on ``backend``'s device, as :func:`isp.run` makes it."""
    scene = render_scene(sim.scene_params, sim.sensor.readout, sim.sensor.cfa.tile_shape, backend)
    return capture(
        scene.linear_rgb, sim.sensor, backend, seed=sim.settings.seed, luminance_cd_m2=scene.luminance_cd_m2, white_rgb=scene.white_rgb
    )
