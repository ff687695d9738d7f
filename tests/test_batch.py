"""Batch mode: many frames through one warm pipeline, equal to one run per frame.

The references are independent of the batch: :func:`isp.run` per seed, and
:meth:`isp.pipeline.Pipeline.run` per raw frame. The GPU loop's ordering of copies against
compute is checked here on the CPU against a stand-in for the CUDA streams whose copies run as
late as the events allow (:class:`LazyLane`), so a missing wait or sync shows up as a wrong
image; the CuPy lane itself is checked by the ``gpu`` tests.
"""

from __future__ import annotations

import dataclasses
import gc
import re
import tracemalloc

import numpy as np
import pytest

import isp
from isp.batch import Batch, BatchSettings, measure_batch
from isp.config import build
from isp.errors import ConfigError, InputError, StageError
from isp.stages import StageContext

SMALL = ["backend=numpy", "scene.size=[64,96]"]


@pytest.fixture(scope="module")
def batch() -> Batch:
    return Batch(SMALL)


@pytest.fixture(scope="module")
def raws(batch):
    """Three host captures of the chart, seeds 0, 1 and 2."""
    return [batch.raw(seed) for seed in range(3)]


def _pipeline_reference(batch: Batch, raw, seed: int | None = None) -> np.ndarray:
    """One frame developed the plain way: the pipeline run on its own, no batch involved."""
    backend = batch.backend
    ctx = StageContext(backend, seed=batch.sim.settings.seed if seed is None else seed)
    output = batch.sim.pipeline.run(raw.replace(mosaic=backend.asarray(raw.mosaic)), ctx).output
    return backend.to_host(output.oriented())


def _collect(iterator) -> tuple[list[np.ndarray], Exception | None]:
    """The images an iterator yields before it raises, and what it raised."""
    images = []
    try:
        for image in iterator:
            images.append(image)
    except (InputError, StageError) as exc:
        return images, exc
    return images, None


# -- equality with one run per frame ----------------------------------------------------------


@pytest.mark.parametrize("overrides", [[], ["sensor.mode=full", "tuning=neutral"]], ids=["binned-authentic", "quad-bayer-neutral"])
def test_simulate_equals_isp_run_per_seed(overrides):
    seeds = [7, 0]
    images = list(Batch([*SMALL, *overrides]).simulate(seeds))
    assert len(images) == len(seeds)
    for seed, image in zip(seeds, images, strict=True):
        expected = isp.run([*SMALL, *overrides, f"seed={seed}"]).rgb()
        assert image.dtype == np.uint8 and image.shape == (64, 96, 3)
        np.testing.assert_array_equal(image, expected, err_msg=f"seed {seed}")
    assert not np.array_equal(images[0], images[1]), "different seeds give different noise"


def test_develop_equals_per_frame_pipeline_runs_in_order(batch, raws):
    order = [2, 0, 1, 2]
    images = list(batch.develop(raws[k] for k in order))
    for k, image in zip(order, images, strict=True):
        np.testing.assert_array_equal(image, _pipeline_reference(batch, raws[k]), err_msg=f"raw {k}")
    assert not np.array_equal(images[0], images[1])


def test_develop_of_a_capture_equals_its_simulation(batch):
    seed = batch.sim.settings.seed  # develop() uses the config's seed for the stages' streams
    (developed,) = batch.develop([batch.raw(seed)])
    (simulated,) = batch.simulate([seed])
    np.testing.assert_array_equal(developed, simulated)


def test_plain_arrays_take_the_metadata_of_like(batch, raws):
    mosaics = [r.mosaic for r in raws]
    expected = [_pipeline_reference(batch, r) for r in raws]
    for like in (raws[0], raws[0].info):  # a RawFrame, or a CaptureInfo with the sensor's CFA and levels
        for image, reference in zip(batch.develop(mosaics, like=like), expected, strict=True):
            np.testing.assert_array_equal(image, reference)


def test_develop_turns_images_to_their_orientation(batch, raws):
    turned = raws[0].replace(info=dataclasses.replace(raws[0].info, orientation=6))
    (image,) = batch.develop([turned])
    assert image.shape == (96, 64, 3) and image.flags.c_contiguous
    np.testing.assert_array_equal(image, np.rot90(_pipeline_reference(batch, raws[0]), -1))


@pytest.mark.data
def test_develop_a_raw_file_equals_isp_run(shared_data):
    path = shared_data / "raw" / "canon550d_colorchecker.dng"
    overrides = ["backend=numpy", "scene=raw_file", f"scene.path={path}", "tuning=neutral", "pipeline=basic"]
    batch = Batch(overrides)
    (image,) = batch.develop([batch.raw()])
    np.testing.assert_array_equal(image, isp.run(overrides).rgb())
    with pytest.raises(ConfigError, match="scene.kind=raw_file .*develop the file's frames with Batch.develop"):
        batch.simulate([0])


def test_simulate_metrics_equal_isp_run(batch):
    (image, metrics), = batch.simulate([4], metrics=True)
    reference = isp.run([*SMALL, "seed=4"]).metrics
    assert metrics["seed"] == 4 and metrics["index"] == 0 and metrics["time_ms"]["compute"] > 0
    assert metrics["colorchecker"]["delta_e2000"] == reference["colorchecker"]["delta_e2000"]
    assert metrics["snr"]["output_luminance"] == reference["snr"]["output_luminance"]


# -- bad inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (lambda r: r.mosaic.astype(np.float32), r"frame 2: expected an \(H, W\) uint16 mosaic, got shape \(64, 96\) and dtype float32"),
        (lambda r: r.mosaic[None], r"frame 2: expected an \(H, W\) uint16 mosaic, got shape \(1, 64, 96\)"),
        (lambda r: r.replace(mosaic=r.mosaic[:32]), r"frame 2 \(simulation\): mosaic shape \(32, 96\), expected \(64, 96\) like frame 0"),
        (lambda r: r.replace(domain="linear", mosaic=r.mosaic.astype(np.float32)), "frame 2 .*expected a raw frame in the 'dn' domain"),
        (lambda r: r.mosaic.tolist(), "frame 2: expected a RawFrame or a uint16 NumPy array, got builtins.list"),
    ],
    ids=["dtype", "ndim", "mixed-size", "domain", "type"],
)
def test_a_bad_frame_is_named_after_the_good_ones_are_yielded(batch, raws, bad, message):
    frames = [raws[0], raws[1], bad(raws[2]), raws[2]]
    images, error = _collect(batch.develop(frames, like=raws[0]))
    assert isinstance(error, InputError)
    assert re.search(message, str(error)), str(error)
    assert len(images) == 2, "only the complete frames before the bad one"
    for image, raw in zip(images, raws, strict=False):
        np.testing.assert_array_equal(image, _pipeline_reference(batch, raw))


def test_plain_arrays_need_like_and_whole_cfa_tiles(batch, raws):
    with pytest.raises(InputError, match=r"frame 0: a plain array needs develop\(like=...\)"):
        next(batch.develop([raws[0].mosaic]))
    with pytest.raises(InputError, match=r"frame 0: shape \(63, 96\) is not a whole number of .* tiles"):
        next(batch.develop([raws[0].mosaic[:63]], like=raws[0]))
    with pytest.raises(InputError, match="develop\\(like=...\\): expected a RawFrame or a CaptureInfo, got dict"):
        batch.develop([raws[0].mosaic], like={})


def test_bad_seeds_and_settings(batch):
    images, error = _collect(batch.simulate([1, -1]))
    assert len(images) == 1 and isinstance(error, InputError) and "seeds[1]=-1: expected an integer seed" in str(error)
    with pytest.raises(InputError, match=r"seeds\[0\]=1.5"):
        next(batch.simulate([1.5]))
    with pytest.raises(ConfigError, match=r"Batch\(buffers=1\): expected an integer from 2 to 4"):
        Batch(SMALL, buffers=1)


def test_a_pipeline_that_stops_before_the_demosaic_is_refused():
    with pytest.raises(StageError, match="pipeline.stop='white_balance'.*a batch yields images"):
        next(Batch([*SMALL, "pipeline.stop=white_balance"]).simulate([0]))


# -- memory and throughput ---------------------------------------------------------------------


def _traced_growth(batch: Batch, keep_images: bool) -> tuple[int, int]:
    """Growth of the host memory traced from frame 3 to frame 12 of a batch, in bytes: in all
    blocks, and in blocks of 1 KiB or more (what an array of a frame's size would take)."""
    kept, traced = [], []
    tracemalloc.start()
    try:
        for k, image in enumerate(batch.simulate(range(13))):
            if keep_images:
                kept.append(image)
            del image
            if k in (3, 12):
                gc.collect()
                snapshot = tracemalloc.take_snapshot()
                traced.append((tracemalloc.get_traced_memory()[0], sum(t.size for t in snapshot.traces if t.size >= 1024)))
    finally:
        tracemalloc.stop()
    return traced[1][0] - traced[0][0], traced[1][1] - traced[0][1]


def test_memory_does_not_grow_over_frames():
    """No block of a frame's size is kept per frame. NumPy keeps freed blocks under 1 KiB in a
    bounded cache, which fills slowly (some hundred bytes a frame here), so all blocks together
    get a looser bound. A consumer that keeps its images shows what a leak looks like."""
    batch = Batch(SMALL, keep_stats=2)
    frame_bytes = 64 * 96 * 3
    total, large = _traced_growth(batch, keep_images=False)
    assert large < frame_bytes // 2 and total < 9 * 2048, f"grew by {total} bytes ({large} in blocks >= 1 KiB) over 9 frames"
    total, large = _traced_growth(batch, keep_images=True)
    assert large >= 9 * frame_bytes


def test_stats_and_measure_batch(batch):
    list(batch.simulate(range(4)))
    summary = batch.stats.summary(skip=1)
    assert summary["frames"] == 3 and summary["fps"] > 0 and summary["upload_ms"] == summary["download_ms"] == 0.0
    assert summary["ms_per_frame"] == pytest.approx(1e3 / summary["fps"])
    with pytest.raises(InputError, match="at least 2 are needed"):
        batch.stats.summary(skip=3)
    result = measure_batch(isp.compose(SMALL), frames=3, repeats=2, warmup=1)
    assert result["backend"] == "numpy" and result["frame"] == {"height": 64, "width": 96, "megapixels": 64 * 96 / 1e6}
    assert len(result["fps_repeats"]) == 2 and result["fps"] > 0 and result["compute_ms"] > 0
    assert result["gpix_per_s"] == pytest.approx(result["fps"] * 64 * 96 / 1e9)
    with pytest.raises(ConfigError, match="mode='nope'"):
        measure_batch(SMALL, mode="nope")


def test_batch_settings_validate_an_experiment_config():
    settings = build(BatchSettings, {"kind": "batch", "mode": "simulate", "frames": 4}, "experiment")
    assert (settings.mode, settings.frames, settings.repeats, settings.buffers, settings.copy) == ("simulate", 4, 3, 2, True)
    with pytest.raises(ConfigError, match="experiment.frames"):
        build(BatchSettings, {"frames": 1}, "experiment")
    with pytest.raises(ConfigError, match="experiment.buffers"):
        build(BatchSettings, {"buffers": 8}, "experiment")


# -- the GPU loop's ordering, on the CPU ------------------------------------------------------


class LazyEvent:
    def __init__(self, stream: LazyStream):
        self.stream, self.position = stream, len(stream.ops)

    def happen(self) -> None:
        self.stream.run_until(self.position)


class LazyStream:
    """A stream whose queued operations run only when an event after them is waited for."""

    def __init__(self):
        self.ops: list = []
        self.done = 0

    def run_until(self, position: int) -> None:
        while self.done < position:
            op = self.ops[self.done]
            self.done += 1
            op()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class LazyLane:
    """The interface of ``isp.batch._CudaLane`` on the host, with copies deferred to the latest
    moment the events allow. The compute runs eagerly (NumPy), so the compute stream's waits
    take effect at once. ``broken`` drops one kind of ordering, to show the checks can fail."""

    def __init__(self, buffers: int, broken: str | None = None):
        self.buffers, self.broken = buffers, broken
        self.upload, self.compute, self.download = LazyStream(), LazyStream(), LazyStream()
        self._pinned_in, self._pinned_out, self._device_in = {}, {}, {}
        self.synchronized = False

    def record(self, stream):
        return LazyEvent(stream)

    def wait(self, stream, event):
        if stream is self.compute:
            if self.broken != "compute_wait":
                event.happen()
        else:
            stream.ops.append(event.happen)

    def sync(self, event):
        if self.broken != "sync":
            event.happen()

    def elapsed_ms(self, start, end):
        return 0.0

    def pinned_in(self, slot, like):
        return self._buffer(self._pinned_in, slot, like)

    def pinned_out(self, slot, like):
        return self._buffer(self._pinned_out, slot, like)

    def device_in(self, slot, like):
        return self._buffer(self._device_in, slot, like)

    def copy_up(self, device, host):
        self.upload.ops.append(lambda: np.copyto(device, host))

    def copy_down(self, host, device):
        self.download.ops.append(lambda: np.copyto(host, device))

    def synchronize(self):
        for stream in (self.upload, self.compute, self.download):
            stream.run_until(len(stream.ops))
        self.synchronized = True

    @staticmethod
    def _buffer(buffers, slot, like):
        if slot not in buffers or buffers[slot].shape != like.shape:
            buffers[slot] = np.full(like.shape, 77, like.dtype)  # stale data a missed wait would show
        return buffers[slot]


@pytest.mark.parametrize("buffers", [2, 3])
@pytest.mark.parametrize("copy", [True, False])
def test_overlapped_loop_orders_copies_against_compute(batch, raws, buffers, copy):
    order = [0, 1, 2, 2, 0]
    expected = [_pipeline_reference(batch, raws[k]) for k in range(3)]
    lane = LazyLane(buffers)
    jobs = batch._develop_jobs([raws[k] for k in order], None)
    count = 0
    for (job, image, _, _), k in zip(batch._overlapped(jobs, copy, lane), order, strict=True):
        assert job.index == count
        np.testing.assert_array_equal(image, expected[k], err_msg=f"frame {count}")  # a view must be right when handed out
        count += 1
    assert count == len(order) and lane.synchronized


@pytest.mark.parametrize("broken", ["compute_wait", "sync"])
def test_the_lazy_lane_catches_a_missing_wait(batch, raws, broken):
    expected = [_pipeline_reference(batch, r) for r in raws]
    lane = LazyLane(2, broken=broken)
    outputs = [image for _, image, _, _ in batch._overlapped(batch._develop_jobs(raws, None), True, lane)]
    assert any(not np.array_equal(a, b) for a, b in zip(outputs, expected, strict=True))


def test_overlapped_loop_simulates_and_finishes_good_frames_before_an_error(batch, monkeypatch):
    expected = [isp.run([*SMALL, f"seed={s}"]).rgb() for s in (5, 6)]
    lane = LazyLane(2)
    images = [image for _, image, _, _ in batch._overlapped(batch._simulate_jobs([5, 6]), True, lane)]
    for image, reference in zip(images, expected, strict=True):
        np.testing.assert_array_equal(image, reference)

    real_image = batch._image

    def failing(job, mosaic):
        if job.index == 2:
            raise StageError("stage 'demosaic': injected failure")
        return real_image(job, mosaic)

    monkeypatch.setattr(batch, "_image", failing)
    lane = LazyLane(3)
    run = (image for _, image, _, _ in batch._overlapped(batch._simulate_jobs([5, 6, 7, 8]), True, lane))
    images, error = _collect(run)
    assert isinstance(error, StageError) and "injected" in str(error)
    assert len(images) == 2 and lane.synchronized
    for image, reference in zip(images, expected, strict=True):
        np.testing.assert_array_equal(image, reference)


# -- on a GPU --------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("buffers", [2, 3])
def test_cupy_batch_equals_sequential_cupy_runs(cupy_backend, buffers):
    overrides = ["backend=cupy", "scene.size=[128,192]"]
    batch = Batch(overrides, buffers=buffers)
    seeds = [3, 1, 4, 1, 5]
    for seed, image in zip(seeds, batch.simulate(seeds), strict=True):
        np.testing.assert_array_equal(image, isp.run([*overrides, f"seed={seed}"]).rgb(), err_msg=f"seed {seed}")
    raws = [batch.raw(seed) for seed in (2, 7)]
    order = [0, 1, 1, 0, 0]
    for k, image in zip(order, batch.develop(raws[k] for k in order), strict=True):
        np.testing.assert_array_equal(image, _pipeline_reference(batch, raws[k]))
    print(f"\ncupy batch, buffers={buffers}: {batch.stats.summary(skip=1)}")


@pytest.mark.gpu
def test_cupy_develop_matches_numpy(cupy_backend):
    """The same host mosaics developed on both backends, within the pipeline's parity tolerance."""
    overrides = ["scene.size=[128,192]", "tuning=neutral"]
    on_cpu = Batch(["backend=numpy", *overrides])
    on_gpu = Batch(["backend=cupy", *overrides])
    raws = [on_cpu.raw(seed) for seed in range(3)]
    for cpu, gpu in zip(on_cpu.develop(raws), on_gpu.develop(raws), strict=True):
        assert np.abs(gpu.astype(int) - cpu).max() <= 1


@pytest.mark.gpu
def test_cupy_memory_pool_does_not_grow_per_frame(cupy_backend):
    pool = cupy_backend.xp.get_default_memory_pool()
    batch = Batch(["backend=cupy", "scene.size=[256,384]"])
    raws = [batch.raw(seed) for seed in range(2)]
    for run in (lambda n: batch.simulate(range(n)), lambda n: batch.develop(raws[k % 2] for k in range(n))):
        used, total = {}, {}
        for k, _ in enumerate(run(12)):
            if k in (3, 11):
                used[k], total[k] = pool.used_bytes(), pool.total_bytes()
        assert used[11] == used[3] and total[11] == total[3], (used, total)


@pytest.mark.gpu
def test_cupy_views_without_copy_are_right_when_handed_out(cupy_backend):
    batch = Batch(["backend=cupy", "scene.size=[128,192]"])
    seeds = [1, 2, 3, 4]
    expected = [isp.run(["backend=cupy", "scene.size=[128,192]", f"seed={s}"]).rgb() for s in seeds]
    for image, reference in zip(batch.simulate(seeds, copy=False), expected, strict=True):
        np.testing.assert_array_equal(image, reference)


@pytest.mark.gpu
def test_cupy_measure_batch_reports_the_split(cupy_backend):
    """Timing is reported, not asserted; the overlap should show as overlap > 1 at large frames."""
    result = measure_batch(["backend=cupy", "scene.size=[1536,2048]"], frames=8, repeats=2)
    print(f"\n{result}")
    assert result["fps"] > 0 and result["upload_ms"] > 0 and result["download_ms"] > 0
    assert result["device_pool_used_bytes"][0] == result["device_pool_used_bytes"][-1]
