"""Throughput over many frames: a warm pipeline, with transfers overlapped with compute on a GPU.

A :class:`Batch` is built once from a config (or a :class:`~isp.api.Simulation`) and then
processes frame after frame with everything that does not change between frames kept warm: the
bound stages, the compiled kernels, CuPy's memory pool, the sensor's fixed-pattern maps (which
:func:`isp.sensor.capture` caches per window) and the rendered scene.

- :meth:`Batch.develop` takes host raw frames (from :func:`isp.io.raw.read_raw`, a simulated
  capture, or plain ``uint16`` mosaics with one frame's metadata) and yields host RGB images;
- :meth:`Batch.simulate` captures the configured scene once per seed and yields host images,
  optionally with each frame's colour and noise metrics.

Each image equals what :func:`isp.run` gives for the same config and seed (``develop`` runs
the stages' random streams from the config's seed, as ``isp.run`` does for a raw file): the
batch changes when and where the work runs, not what is computed.

Overlap on a GPU
----------------
Three non-blocking CUDA streams: ``upload`` (host to device), ``compute`` (every CuPy
operation of the capture and the stages, through ``with stream:``) and ``download`` (device
to host). Copies go through page-locked (pinned) host buffers, ``buffers`` of each kind,
reused in turn, so that ``cudaMemcpyAsync`` really runs asynchronously. While frame ``i`` is
computed, frame ``i + 1`` is uploaded and frame ``i - 1`` downloaded::

    upload   | up i+1 |          | up i+2 |
    compute  |  compute i        |  compute i+1      |
    download | down i-1 |        | down i |

CUDA events order the copies against the compute, each frame with its own events:

- compute ``i`` waits for the event recorded after upload ``i``;
- download ``i`` waits for the event recorded after compute ``i``;
- the upload into a device input buffer waits for the end of the compute of the frame that
  used the buffer before (the stages read it until then);
- the host writes a pinned input buffer only after the upload that read it last has finished,
  and reads a pinned output buffer only after the download into it has finished.

The device output of a frame stays referenced until its download has finished: CuPy's pool
would otherwise hand its memory to the next frame's compute while the download stream still
reads it. Images are copied out of the pinned buffer before they are yielded (``copy=True``),
so they never alias a buffer that is reused; ``copy=False`` yields the pinned buffer itself,
valid only until the next image is asked for. Nothing is held in ``with stream:`` across a
``yield``: work the caller does between images runs on its own current stream.

On NumPy the same API processes the frames one after another, with no transfers.

Examples
--------
>>> from isp.batch import Batch
>>> batch = Batch(["backend=numpy", "scene.size=[64,96]"])       # doctest: +SKIP
>>> for rgb in batch.simulate(range(8)):                            # doctest: +SKIP
...     print(rgb.shape, rgb.dtype)
>>> batch.stats.summary(skip=2)["fps"]                             # doctest: +SKIP
>>> raws = (read_raw(p) for p in sorted(folder.glob("*.dng")))       # doctest: +SKIP
>>> for rgb in Batch(["tuning=leica_vibrant"]).develop(raws):         # doctest: +SKIP
...     write_png(...)
"""

from __future__ import annotations

import resource
import statistics
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig

from isp import colorimetry
from isp.api import Simulation
from isp.backend import Backend, get_backend, to_host
from isp.config import compose, param
from isp.errors import ConfigError, InputError, StageError
from isp.frame import CaptureInfo, Image, RawFrame
from isp.io.raw import read_raw
from isp.metrics import colorchecker_delta_e, grey_patch_snr
from isp.scene import Scene, render_scene
from isp.sensor import Exposure, capture, mean_electrons
from isp.sensor.capture import sensor_dn
from isp.stages import StageContext

__all__ = ["Batch", "BatchSettings", "BatchStats", "FrameTiming", "measure_batch", "BATCH_MODES"]

#: What :func:`measure_batch` can time: developing host raw frames (upload, compute, download)
#: or simulating captures on the device (compute, download).
BATCH_MODES = ("develop", "simulate")

_MAX_SEED = 2**63 - 1
_PARTS = ("upload", "compute", "download", "host_copy")


@dataclass(frozen=True)
class BatchSettings:
    """An ``experiment=batch`` config: what :func:`measure_batch` measures."""

    kind: str = param("batch", choices=("batch",))
    mode: str = param("develop", choices=BATCH_MODES, doc="develop: host raw frames in, host images out; simulate: capture on the device")
    frames: int = param(16, range=(2, None), doc="frames measured per repeat")
    repeats: int = param(3, range=(1, None), doc="repeats; the figures are their medians")
    warmup: int = param(2, range=(0, None), doc="frames run before the measured ones in each repeat")
    buffers: int = param(2, range=(2, 4), doc="pinned buffers of each kind on a GPU, frames in flight")
    copy: bool = param(True, doc="copy each image out of the pinned buffer before handing it out")


@dataclass(frozen=True)
class FrameTiming:
    """Where one frame's time went.

    On a GPU the three parts are CUDA-event times on their own streams, so they overlap and
    their sum exceeds the interval between frames when the overlap works; ``compute_ms``
    spans the frame's work on the compute stream, gaps while the host launches included.
    ``host_copy_ms`` is the host's own copying, into the pinned input buffer and out of the
    pinned output buffer (``copy=True``): on the host thread, overlapped with the device's
    work but not with the launches. On NumPy ``compute_ms`` is the wall time of the capture
    (if any) and the stages, and there are no transfers.

    Parameters
    ----------
    index
        Position of the frame in its batch.
    seed
        Seed of the frame's random streams.
    upload_ms, compute_ms, download_ms, host_copy_ms
        Host-to-device copy, capture and pipeline, device-to-host copy, host copies
        (milliseconds).
    done_s
        ``time.perf_counter()`` when the image was ready on the host.
    """

    index: int
    seed: int
    upload_ms: float
    compute_ms: float
    download_ms: float
    host_copy_ms: float
    done_s: float


class BatchStats:
    """Timing of the frames of the latest :meth:`Batch.develop` or :meth:`Batch.simulate` call.

    Parameters
    ----------
    keep
        How many frames' timings are kept (the latest ones), so that a long sweep does not
        grow memory frame by frame.
    """

    def __init__(self, keep: int = 4096):
        self.frames: deque[FrameTiming] = deque(maxlen=keep)

    def reset(self) -> None:
        self.frames.clear()

    def add(self, timing: FrameTiming) -> None:
        self.frames.append(timing)

    def summary(self, skip: int = 0) -> dict[str, Any]:
        """Throughput and the median time split over the frames after the first ``skip``.

        ``fps`` is measured between the first and the last of those frames becoming ready on
        the host (transfers included, steady state); ``serial_ms`` is the sum of the median
        upload, compute, download and host copy times, what one frame would take without
        overlap, and
        ``overlap`` its ratio to ``ms_per_frame`` (above 1 when the streams overlap).

        Raises
        ------
        InputError
            Fewer than two frames are left after ``skip``.
        """
        frames = list(self.frames)[skip:]
        if len(frames) < 2:
            raise InputError(f"batch throughput: {len(frames)} frame(s) after skipping {skip}; at least 2 are needed")
        elapsed_s = frames[-1].done_s - frames[0].done_s
        ms_per_frame = elapsed_s * 1e3 / (len(frames) - 1)
        split = {part: statistics.median(getattr(f, f"{part}_ms") for f in frames) for part in _PARTS}
        serial_ms = sum(split.values())
        return {
            "frames": len(frames),
            "fps": 1e3 / ms_per_frame if ms_per_frame > 0 else float("inf"),
            "ms_per_frame": ms_per_frame,
            **{f"{part}_ms": value for part, value in split.items()},
            "serial_ms": serial_ms,
            "overlap": serial_ms / ms_per_frame if ms_per_frame > 0 else None,
        }


@dataclass(frozen=True)
class _SharedCapture:
    """What every capture of a batch shares: the exposure, the mean photo-electrons after the
    optics (on the device) and the frame's metadata (a RawFrame whose mosaic is one CFA tile)."""

    exposure: Exposure
    mean_e: Any
    template: RawFrame


@dataclass
class _Job:
    """One frame to process: a host raw frame to develop, or ``None`` to capture the scene."""

    index: int
    seed: int
    raw: RawFrame | None


@dataclass
class _Flight:
    """A frame on its way through the GPU: its buffers and events, until it is on the host."""

    job: _Job
    slot: int
    device_in: Any = None
    up_start: Any = None
    up_end: Any = None
    cp_start: Any = None
    cp_end: Any = None
    dn_start: Any = None
    dn_end: Any = None
    image: Image | None = None
    device_out: Any = None
    host_out: np.ndarray | None = None
    host_copy_ms: float = 0.0


class _CudaLane:
    """The streams and the reused pinned and device buffers of one running batch (CuPy).

    Every CUDA call of the overlapped loop goes through this class, so the loop's ordering can
    be checked on the CPU against a stand-in with deferred copies (tests/test_batch.py).
    """

    def __init__(self, cupy: Any, buffers: int):
        self._cp = cupy
        self.buffers = buffers
        self.upload = cupy.cuda.Stream(non_blocking=True)
        self.compute = cupy.cuda.Stream(non_blocking=True)
        self.download = cupy.cuda.Stream(non_blocking=True)
        self._pinned_in: list[np.ndarray | None] = [None] * buffers
        self._pinned_out: list[np.ndarray | None] = [None] * buffers
        self._device_in: list[Any] = [None] * buffers

    def record(self, stream: Any) -> Any:
        """An event recorded now on ``stream`` (timing enabled: it also marks a time)."""
        event = self._cp.cuda.Event()
        event.record(stream)
        return event

    def wait(self, stream: Any, event: Any) -> None:
        """Work queued on ``stream`` from now on starts after ``event``."""
        stream.wait_event(event)

    def sync(self, event: Any) -> None:
        """Block the host until ``event`` has happened."""
        event.synchronize()

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._cp.cuda.get_elapsed_time(start, end))

    def pinned_in(self, slot: int, like: np.ndarray) -> np.ndarray:
        """The pinned host buffer of input ``slot`` as an array shaped like ``like``."""
        return _view(self._pinned(self._pinned_in, slot, like.nbytes), like.shape, like.dtype)

    def pinned_out(self, slot: int, like: Any) -> np.ndarray:
        """The pinned host buffer of output ``slot`` as an array shaped like ``like``."""
        return _view(self._pinned(self._pinned_out, slot, like.nbytes), like.shape, like.dtype)

    def device_in(self, slot: int, like: np.ndarray) -> Any:
        """The device buffer of input ``slot``, shaped like ``like`` (allocated once)."""
        current = self._device_in[slot]
        if current is None or current.shape != like.shape or current.dtype != like.dtype:
            # The pool orders reuse within one stream only, and the upload stream will write this
            # buffer: nothing queued on the compute stream may still use recycled memory.
            self.compute.synchronize()
            with self.compute:  # its memory then belongs to the compute stream's pool arena
                current = self._cp.empty(like.shape, like.dtype)
            self._device_in[slot] = current
        return current

    def copy_up(self, device: Any, host: np.ndarray) -> None:
        """Queue ``host`` (pinned) -> ``device`` on the upload stream."""
        device.data.copy_from_host_async(host.ctypes.data, host.nbytes, self.upload)

    def copy_down(self, host: np.ndarray, device: Any) -> None:
        """Queue ``device`` (C-contiguous) -> ``host`` (pinned) on the download stream."""
        device.data.copy_to_host_async(host.ctypes.data, host.nbytes, self.download)

    def synchronize(self) -> None:
        for stream in (self.upload, self.compute, self.download):
            stream.synchronize()

    def _pinned(self, buffers: list[np.ndarray | None], slot: int, nbytes: int) -> np.ndarray:
        current = buffers[slot]
        if current is None or current.nbytes < nbytes:
            # The old buffer's last copy has finished (the caller waited for it); a view the
            # caller still holds keeps its memory alive.
            current = np.frombuffer(self._cp.cuda.alloc_pinned_memory(nbytes), np.uint8, nbytes)
            buffers[slot] = current
        return current


def _view(buffer: np.ndarray, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    dtype = np.dtype(dtype)
    return buffer[: int(np.prod(shape)) * dtype.itemsize].view(dtype).reshape(shape)


class Batch:
    """Many frames through one warm pipeline.

    Parameters
    ----------
    cfg
        A composed config (:func:`isp.compose`), a list of overrides, a built
        :class:`~isp.api.Simulation`, or ``None`` for the default config. Its backend, seed,
        sensor, scene, pipeline (``start`` and ``stop`` included) and tuning apply to every
        frame; ``pipeline.taps`` are not kept (a batch yields final images only).
    buffers
        Pinned buffers of each kind (input, output) on a GPU, 2 to 4: also how many frames
        are in flight at once. 2 suffices for upload, compute and download to overlap; 3
        gives slack when frames' compute times vary.
    keep_stats
        How many frames' timings :attr:`stats` keeps (the latest).

    Attributes
    ----------
    stats : BatchStats
        Timing of the frames of the latest call.
    """

    def __init__(self, cfg: DictConfig | Sequence[str] | Simulation | None = None, *, buffers: int = 2, keep_stats: int = 4096):
        if isinstance(cfg, Simulation):
            self.sim = cfg
        else:
            self.sim = Simulation(cfg if isinstance(cfg, DictConfig) else compose(list(cfg or ())))
        if not isinstance(buffers, int) or isinstance(buffers, bool) or not 2 <= buffers <= 4:
            raise ConfigError(f"Batch(buffers={buffers!r}): expected an integer from 2 to 4")
        if not isinstance(keep_stats, int) or isinstance(keep_stats, bool) or keep_stats < 1:
            raise ConfigError(f"Batch(keep_stats={keep_stats!r}): expected a positive integer")
        self.buffers = buffers
        self.backend: Backend = get_backend(self.sim.settings.backend)
        self.stats = BatchStats(keep_stats)
        self._scene: Scene | None = None
        self._shared: _SharedCapture | None = None
        self._idle_lanes: list[_CudaLane] = []

    # -- public API --------------------------------------------------------------------------

    @property
    def scene(self) -> Scene:
        """The configured scene, rendered on the first use and reused by every frame."""
        if self.sim.from_file:
            raise ConfigError(
                f"scene.kind=raw_file ({self.sim.scene_params.path}): there is no scene to capture; "
                "develop the file's frames with Batch.develop"
            )
        if self._scene is None:
            sensor = self.sim.sensor
            self._scene = render_scene(self.sim.scene_params, sensor.readout, sensor.cfa.tile_shape, self.backend)
            # Rendered on the default stream; the batch's streams do not wait for it by themselves.
            self.backend.synchronize()
        return self._scene

    def raw(self, seed: int | None = None) -> RawFrame:
        """The configured scene captured with ``seed`` (default: the config's), on the host.

        For a ``raw_file`` scene, the file as :func:`~isp.io.raw.read_raw` reads it. The result
        is what :meth:`develop` takes: a ``dn``-domain RawFrame with a NumPy ``uint16`` mosaic.
        """
        if self.sim.from_file:
            return read_raw(self.sim.scene_params.path)
        seed = self.sim.settings.seed if seed is None else _check_seed(seed, "seed")
        frame = self._capture(seed)
        return frame.replace(mosaic=to_host(frame.mosaic))

    def develop(self, frames: Iterable[RawFrame | np.ndarray], *, like: RawFrame | CaptureInfo | None = None, copy: bool = True) -> Iterator[np.ndarray]:
        """Develop host raw frames through the pipeline, yielding host images in order.

        Parameters
        ----------
        frames
            ``dn``-domain RawFrames whose mosaic is a host NumPy ``(H, W)`` ``uint16`` array, or
            plain ``uint16`` arrays that take ``like``'s metadata. Every frame must have the
            first one's shape (the batch's buffers are sized by it). The stages' random
            streams (grain) use the config's seed.
        like
            The metadata of plain arrays: a RawFrame (CFA, black and white levels, capture
            info), or a CaptureInfo, with the CFA and levels of the configured sensor.
        copy
            Yield images of their own (default). ``False`` yields, on a GPU, the pinned buffer
            the image was downloaded into, which the batch overwrites after the next image is
            asked for: use it before then.

        Returns
        -------
        Iterator of numpy.ndarray
            One ``(H, W, 3)`` image per frame, in order, in display orientation and of the
            pipeline's output type (``uint8`` after ``quantize``), as
            :meth:`isp.api.SimulationResult.rgb` gives it.

        Raises
        ------
        InputError
            A frame is not a host ``uint16`` mosaic of the expected shape: raised, naming the
            frame's index, after every earlier frame has been yielded.
        """
        template = self._template(like)
        return self._developed(self._develop_jobs(frames, template), copy)

    def simulate(self, seeds: Iterable[int], *, metrics: bool = False, copy: bool = True) -> Iterator[Any]:
        """Capture the configured scene once per seed and develop it, yielding host images.

        Frame ``k`` equals ``isp.run(cfg with seed=seeds[k]).rgb()``: the seed drives the
        capture's temporal noise and the stages' random streams.

        Parameters
        ----------
        seeds
            One seed per frame (integers in ``[0, 2**63 - 1]``).
        metrics
            Also yield each frame's metrics: ``seed``, ``time_ms`` (its :class:`FrameTiming`
            split) and, as :func:`isp.run` reports them, ``colorchecker.delta_e2000`` for a
            chart and the output's ``snr.output_luminance`` for a scene with patches. They are
            computed on the host from the downloaded image, while the device works on the next
            frames.
        copy
            As for :meth:`develop`.

        Returns
        -------
        Iterator of numpy.ndarray, or of (numpy.ndarray, dict)
            One image per seed, in order, or the image and its metrics when ``metrics`` is true.
        """
        scene = self.scene  # rendered now: a config error surfaces before any frame
        self._shared_capture()
        return self._simulated(scene, self._simulate_jobs(seeds), metrics, copy)

    # -- frames -----------------------------------------------------------------------------

    def _developed(self, jobs: Iterator[_Job], copy: bool) -> Iterator[np.ndarray]:
        for _, rgb, _, _ in self._frames(jobs, copy):
            yield rgb

    def _simulated(self, scene: Scene, jobs: Iterator[_Job], metrics: bool, copy: bool) -> Iterator[Any]:
        for job, rgb, image, timing in self._frames(jobs, copy):
            yield (rgb, self._frame_metrics(job, timing, rgb, image, scene)) if metrics else rgb

    def _frames(self, jobs: Iterator[_Job], copy: bool) -> Iterator[tuple[_Job, np.ndarray, Image, FrameTiming]]:
        self.stats.reset()
        if not self.backend.is_gpu:
            yield from self._sequential(jobs)
            return
        lane = self._take_lane()
        try:
            yield from self._overlapped(jobs, copy, lane)
        finally:
            self._idle_lanes.append(lane)

    def _sequential(self, jobs: Iterator[_Job]) -> Iterator[tuple[_Job, np.ndarray, Image, FrameTiming]]:
        for job in jobs:
            start_s = time.perf_counter()
            mosaic = None if job.raw is None else self.backend.asarray(job.raw.mosaic)
            image = self._image(job, mosaic)
            rgb = np.ascontiguousarray(to_host(image.oriented()))
            done_s = time.perf_counter()
            timing = FrameTiming(job.index, job.seed, 0.0, (done_s - start_s) * 1e3, 0.0, 0.0, done_s)
            self.stats.add(timing)
            yield job, rgb, image, timing

    def _overlapped(self, jobs: Iterator[_Job], copy: bool, lane: Any) -> Iterator[tuple[_Job, np.ndarray, Image, FrameTiming]]:
        """The GPU loop: stage frame ``i + 1``, launch frame ``i``, hand out frame ``i + 1 - buffers``.

        An error while staging or launching a frame stops the loop; the frames before it that
        are in flight are finished and yielded first, then the error is raised.
        """
        in_flight: deque[_Flight] = deque()
        previous: list[_Flight | None] = [None] * lane.buffers  # the last frame of each slot
        error: Exception | None = None
        try:
            current = self._stage(next(jobs, None), lane, previous)
            while current is not None:
                try:
                    upcoming = self._stage(next(jobs, None), lane, previous)
                except Exception as exc:  # an input error: finish the good frames first
                    error, upcoming = exc, None
                try:
                    self._launch(current, lane)
                except Exception as exc:
                    error = exc
                    break
                in_flight.append(current)
                if len(in_flight) >= lane.buffers:
                    yield self._land(in_flight.popleft(), lane, copy)
                current = upcoming
            while in_flight:
                yield self._land(in_flight.popleft(), lane, copy)
            if error is not None:
                raise error
        finally:
            # No copy may still touch a pinned buffer when the lane is reused or freed.
            lane.synchronize()

    def _stage(self, job: _Job | None, lane: Any, previous: list[_Flight | None]) -> _Flight | None:
        """Take the frame's slot and queue its upload (a raw frame to develop)."""
        if job is None:
            return None
        slot = job.index % lane.buffers
        before = previous[slot]
        flight = _Flight(job, slot)
        previous[slot] = flight
        if job.raw is None:
            return flight
        mosaic = job.raw.mosaic
        if before is not None and before.up_end is not None:
            lane.sync(before.up_end)  # the pinned buffer's last upload has read it
        host = lane.pinned_in(slot, mosaic)
        start_s = time.perf_counter()
        np.copyto(host, mosaic)
        flight.host_copy_ms = (time.perf_counter() - start_s) * 1e3
        flight.device_in = lane.device_in(slot, mosaic)
        if before is not None:
            lane.wait(lane.upload, before.cp_end)  # the stages of that frame have read the buffer
        flight.up_start = lane.record(lane.upload)
        lane.copy_up(flight.device_in, host)
        flight.up_end = lane.record(lane.upload)
        return flight

    def _launch(self, flight: _Flight, lane: Any) -> None:
        """Queue the frame's capture and stages on the compute stream, then its download."""
        xp = self.backend.xp
        with lane.compute:
            if flight.up_end is not None:
                lane.wait(lane.compute, flight.up_end)
            flight.cp_start = lane.record(lane.compute)
            flight.image = self._image(flight.job, flight.device_in)
            flight.device_out = xp.ascontiguousarray(flight.image.oriented())
            flight.cp_end = lane.record(lane.compute)
        # The previous user of this output slot was handed out in an earlier turn of the loop.
        flight.host_out = lane.pinned_out(flight.slot, flight.device_out)
        lane.wait(lane.download, flight.cp_end)
        flight.dn_start = lane.record(lane.download)
        lane.copy_down(flight.host_out, flight.device_out)
        flight.dn_end = lane.record(lane.download)

    def _land(self, flight: _Flight, lane: Any, copy: bool) -> tuple[_Job, np.ndarray, Image, FrameTiming]:
        """Wait for the frame's download and hand it out."""
        lane.sync(flight.dn_end)
        start_s = time.perf_counter()
        rgb = flight.host_out.copy() if copy else flight.host_out
        done_s = time.perf_counter()
        upload_ms = lane.elapsed_ms(flight.up_start, flight.up_end) if flight.up_start is not None else 0.0
        timing = FrameTiming(
            flight.job.index,
            flight.job.seed,
            upload_ms,
            lane.elapsed_ms(flight.cp_start, flight.cp_end),
            lane.elapsed_ms(flight.dn_start, flight.dn_end),
            flight.host_copy_ms + (done_s - start_s) * 1e3,
            done_s,
        )
        self.stats.add(timing)
        # The device output goes back to the pool only once the download has read it, and
        # then as soon as the caller lets go of the image (the slot's record outlives it).
        image, flight.image = flight.image, None
        flight.device_out = flight.device_in = None
        return flight.job, rgb, image, timing

    def _take_lane(self) -> _CudaLane:
        for i, lane in enumerate(self._idle_lanes):
            if lane.buffers == self.buffers:
                return self._idle_lanes.pop(i)
        return _CudaLane(self.backend.xp, self.buffers)

    # -- per frame --------------------------------------------------------------------------

    def _shared_capture(self) -> _SharedCapture:
        """The scene through the optics and the capture metadata, computed once."""
        if self._shared is None:
            scene, sensor, backend = self.scene, self.sim.sensor, self.backend
            first = capture(scene.linear_rgb, sensor, backend, luminance_cd_m2=scene.luminance_cd_m2, white_rgb=scene.white_rgb)
            exposure = sensor.exposure(scene.luminance_cd_m2, white_rgb=scene.white_rgb)
            mean_e = mean_electrons(scene.linear_rgb, sensor, backend, exposure)
            th, tw = sensor.cfa.tile_shape
            # Only the metadata is kept: one CFA tile stands in for the mosaic.
            template = first.replace(mosaic=first.mosaic[:th, :tw].copy())
            backend.synchronize()
            self._shared = _SharedCapture(exposure, mean_e, template)
        return self._shared

    def _capture(self, seed: int) -> RawFrame:
        """What :func:`isp.sensor.capture` gives for ``seed``, from the optics' output computed
        once: only the sensor's noise and ADC run per frame."""
        shared = self._shared_capture()
        # A copy: the sensor may add hot-pixel charge into the array it is given.
        dn = sensor_dn(shared.mean_e.copy(), self.sim.sensor, self.backend, seed, shared.exposure)
        return shared.template.replace(mosaic=dn)

    def _image(self, job: _Job, mosaic: Any) -> Image:
        """The pipeline's output for one frame, on the device (the current stream)."""
        raw = self._capture(job.seed) if job.raw is None else job.raw.replace(mosaic=mosaic)
        ctx = StageContext(backend=self.backend, seed=job.seed)
        # Tiled as Simulation.run tiles (the output is the same; the memory bound is kept).
        result, _ = self.sim.develop(raw, ctx, time_stages=False)
        output = result.output
        if not isinstance(output, Image):
            raise StageError(
                f"batch: the pipeline stops before the demosaic (pipeline.stop={self.sim.stop!r}), so its output "
                "is a raw frame; a batch yields images"
            )
        return output

    def _frame_metrics(self, job: _Job, timing: FrameTiming, rgb: np.ndarray, image: Image, scene: Scene) -> dict[str, Any]:
        metrics: dict[str, Any] = {
            "index": job.index,
            "seed": job.seed,
            "time_ms": {part: getattr(timing, f"{part}_ms") for part in _PARTS},
        }
        if image.space not in colorimetry.RGB_TO_XYZ or not scene.patches:
            return metrics
        # A simulated capture has orientation 1: the yielded image has the scene's geometry.
        host = image.replace(data=rgb)
        h, w = rgb.shape[:2]
        patches = scene.patches
        if (h, w) != scene.shape:  # a resized output: measure the patches where they now are
            patches = [p.scaled(h / scene.shape[0], w / scene.shape[1]) for p in patches]
        fraction = self.sim.settings.patch_fraction
        metrics["snr"] = grey_patch_snr(host, None, patches, fraction)
        if scene.name == "colorchecker":
            metrics["colorchecker"] = {"delta_e2000": colorchecker_delta_e(host, patches, fraction)}
        return metrics

    # -- inputs -----------------------------------------------------------------------------

    def _template(self, like: RawFrame | CaptureInfo | None) -> RawFrame | None:
        if like is None or isinstance(like, RawFrame):
            return like
        if not isinstance(like, CaptureInfo):
            raise InputError(f"develop(like=...): expected a RawFrame or a CaptureInfo, got {type(like).__name__}")
        sensor = self.sim.sensor
        if sensor is None:
            raise InputError("develop(like=CaptureInfo): a raw_file config has no sensor to give the CFA and levels; pass a RawFrame as like")
        _, black, white = sensor.adc
        return RawFrame(np.zeros(sensor.cfa.tile_shape, np.uint16), sensor.cfa, black, float(white), like)

    def _develop_jobs(self, frames: Iterable[RawFrame | np.ndarray], template: RawFrame | None) -> Iterator[_Job]:
        expected: tuple[int, int] | None = None
        seed = self.sim.settings.seed
        for index, item in enumerate(frames):
            raw = _as_raw(index, item, template)
            if expected is None:
                expected = raw.shape
            elif raw.shape != expected:
                raise InputError(
                    f"frame {index} ({raw.info.source}): mosaic shape {raw.shape}, expected {expected} "
                    "like frame 0: every frame of a batch has the first frame's shape"
                )
            yield _Job(index, seed, raw)

    def _simulate_jobs(self, seeds: Iterable[int]) -> Iterator[_Job]:
        for index, seed in enumerate(seeds):
            yield _Job(index, _check_seed(seed, f"seeds[{index}]"), None)


def _check_seed(seed: Any, where: str) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) <= _MAX_SEED:
        raise InputError(f"{where}={seed!r}: expected an integer seed in [0, 2**63 - 1]")
    return int(seed)


def _as_raw(index: int, item: Any, template: RawFrame | None) -> RawFrame:
    """Frame ``index`` of a develop() batch as a RawFrame with a host uint16 mosaic."""
    if isinstance(item, RawFrame):
        where, mosaic = f"frame {index} ({item.info.source})", item.mosaic
        if item.domain != "dn":
            raise InputError(f"{where}: expected a raw frame in the 'dn' domain (as read or captured), got {item.domain!r}")
    elif isinstance(item, np.ndarray):
        where, mosaic = f"frame {index}", item
        if template is None:
            raise InputError(f"{where}: a plain array needs develop(like=...), a RawFrame or CaptureInfo giving its metadata")
    else:
        raise InputError(f"frame {index}: expected a RawFrame or a uint16 NumPy array, got {type(item).__module__}.{type(item).__name__}")
    if not isinstance(mosaic, np.ndarray):
        raise InputError(f"{where}: expected the mosaic as a host NumPy array, got {type(mosaic).__module__}.{type(mosaic).__name__}")
    if mosaic.ndim != 2 or mosaic.dtype != np.uint16:
        raise InputError(f"{where}: expected an (H, W) uint16 mosaic, got shape {mosaic.shape} and dtype {mosaic.dtype}")
    if isinstance(item, RawFrame):
        return item
    cfa = template.cfa
    if mosaic.shape[0] % cfa.tile_shape[0] or mosaic.shape[1] % cfa.tile_shape[1]:
        raise InputError(f"{where}: shape {mosaic.shape} is not a whole number of {cfa.name} tiles {cfa.tile_shape}")
    return template.replace(mosaic=mosaic, shading_gain=None)


def measure_batch(
    cfg_overrides: DictConfig | Sequence[str] = (),
    frames: int = 16,
    repeats: int = 3,
    *,
    mode: str = "develop",
    warmup: int = 2,
    buffers: int = 2,
    copy: bool = True,
) -> dict[str, Any]:
    """Frames per second of a batch, transfers included, for the benchmark harness.

    Each repeat runs ``warmup + frames`` frames through one :class:`Batch` (kept warm between
    repeats) and measures the last ``frames``; the figures are the medians over the repeats.

    Parameters
    ----------
    cfg_overrides
        Hydra overrides of the config (backend, sensor, scene size, pipeline, ...), or a
        composed config.
    frames
        Frames measured per repeat (at least 2).
    repeats
        Repeats (at least 1).
    mode
        ``"develop"``: host raw frames in, host images out (upload, compute, download); the
        inputs are up to four captures of the configured scene made beforehand on the host
        (or the configured raw file). ``"simulate"``: capture on the device and develop
        (compute, download).
    warmup
        Frames run before the measured ones in each repeat.
    buffers
        Pinned buffers of each kind (:class:`Batch`).
    copy
        Copy each image out of the pinned buffer (:meth:`Batch.develop`); ``False`` measures
        without that host copy.

    Returns
    -------
    dict
        ``fps``, ``ms_per_frame``, ``gpix_per_s``, the median ``upload_ms``, ``compute_ms``,
        ``download_ms``, ``host_copy_ms`` and their sum ``serial_ms``, ``overlap`` (``serial_ms / ms_per_frame``),
        ``fps_repeats`` (each repeat's), the frame size, backend and device, the CuPy pool's
        used and total bytes after each repeat (GPU), and the process's peak RSS.
    """
    if mode not in BATCH_MODES:
        raise ConfigError(f"measure_batch(mode={mode!r}): expected one of {', '.join(BATCH_MODES)}")
    if frames < 2 or repeats < 1 or warmup < 0:
        raise ConfigError(f"measure_batch: expected frames >= 2, repeats >= 1, warmup >= 0; got {frames}, {repeats}, {warmup}")
    batch = Batch(cfg_overrides if isinstance(cfg_overrides, DictConfig) else list(cfg_overrides), buffers=buffers)
    total = warmup + frames
    if mode == "develop":
        sources = [batch.raw()] if batch.sim.from_file else [batch.raw(seed) for seed in range(min(frames, 4))]
        shape = sources[0].shape

        def run() -> Iterator[np.ndarray]:
            return batch.develop((sources[k % len(sources)] for k in range(total)), copy=copy)
    else:
        shape = batch.scene.shape

        def run() -> Iterator[np.ndarray]:
            return batch.simulate(range(total), copy=copy)

    summaries, pool_used, pool_total = [], [], []
    pool = batch.backend.xp.get_default_memory_pool() if batch.backend.is_gpu else None
    for _ in range(repeats):
        for _ in run():
            pass
        summaries.append(batch.stats.summary(skip=warmup))
        if pool is not None:
            pool_used.append(int(pool.used_bytes()))
            pool_total.append(int(pool.total_bytes()))
    fps = statistics.median(s["fps"] for s in summaries)
    megapixels = shape[0] * shape[1] / 1e6
    result = {
        "benchmark": f"batch {mode}",
        "backend": batch.backend.name,
        "device": batch.backend.device_name(),
        "pipeline": batch.sim.pipeline_name,
        "tuning": batch.sim.tuning_name,
        "frame": {"height": int(shape[0]), "width": int(shape[1]), "megapixels": megapixels},
        "frames": frames,
        "warmup": warmup,
        "repeats": repeats,
        "buffers": buffers,
        "copy": copy,
        "fps": fps,
        "ms_per_frame": 1e3 / fps,
        "gpix_per_s": fps * megapixels / 1e3,
        "fps_repeats": [s["fps"] for s in summaries],
        "host_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    for part in (*(f"{p}_ms" for p in _PARTS), "serial_ms"):
        result[part] = statistics.median(s[part] for s in summaries)
    result["overlap"] = result["serial_ms"] / result["ms_per_frame"]
    if pool is not None:
        result["device_pool_used_bytes"] = pool_used
        result["device_pool_total_bytes"] = pool_total
    return result
