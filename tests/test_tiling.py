"""Tiled runs: bit-identical to untiled runs; every stage's halo sufficient and tight; lens
shading, vignette and grain computed in full-frame coordinates; clear errors for what cannot tile."""

from __future__ import annotations

import dataclasses
import functools
import logging

import numpy as np
import pytest
import scipy.ndimage

import isp
from isp.api import Simulation
from isp.backend import get_backend, to_host
from isp.cfa import CFALayout
from isp.config import build
from isp.errors import ConfigError, StageError
from isp.frame import CaptureInfo, GainMap, Image, RawFrame
from isp.scene import render_scene
from isp.sensor import capture
from isp.stages import STAGES, StageContext
from isp.tiling import (
    TILING_RULES,
    WORKING_BYTES_PER_PX,
    StageInput,
    TileSettings,
    Tiling,
    halo_px,
    plan_segments,
    resolve_tile_px,
    run_tiled,
    tile_windows,
    tiling_of,
)

SMALL = "scene.size=[256,320]"


@functools.cache
def _setup(overrides: tuple[str, ...], backend_name: str = "numpy"):
    """The pipeline of a config and the raw frame its scene and sensor capture."""
    sim = Simulation(isp.compose([f"backend={backend_name}", *overrides]))
    backend = get_backend(backend_name)
    scene = render_scene(sim.scene_params, sim.sensor.readout, sim.sensor.cfa.tile_shape, backend)
    raw = capture(scene.linear_rgb, sim.sensor, backend, seed=0, luminance_cd_m2=scene.luminance_cd_m2, white_rgb=scene.white_rgb)
    return sim.pipeline, raw, StageContext(backend, seed=3)


def _pixels(frame) -> np.ndarray:
    return to_host(frame.mosaic if isinstance(frame, RawFrame) else frame.data)


def _enabled(pipeline) -> list[str]:
    return [s.name for s in pipeline.stages if s.enabled]


# --- the whole pipeline -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "tuning", "tile_px", "workers"),
    [("binned", "leica_authentic", 96, 1), ("binned", "neutral", 128, 2), ("full", "leica_authentic", 128, 2), ("full", "neutral", 96, 1)],
)
def test_tiled_run_equals_untiled_at_every_stage(mode, tuning, tile_px, workers):
    pipeline, raw, ctx = _setup((SMALL, f"sensor.mode={mode}", f"tuning={tuning}", "sensor.iso=1600"))
    assert raw.cfa.tile_shape == ((2, 2) if mode == "binned" else (4, 4))
    names = _enabled(pipeline)
    whole = pipeline.run(raw, ctx, taps=names)
    tiled = run_tiled(pipeline, raw, ctx, tile_px, workers=workers, taps=names)
    out = _pixels(tiled.output)
    assert out.dtype == np.uint8 and out.shape == (256, 320, 3)
    assert np.array_equal(out, _pixels(whole.output))
    for name in names:  # float intermediates too, not only the 8-bit output
        assert np.array_equal(_pixels(tiled.taps[name]), _pixels(whole.taps[name])), name
    assert tiled.output.wb_gains.tolist() == whole.output.wb_gains.tolist() and tiled.output.cct_k == whole.output.cct_k
    assert tiled.output.origin == (0, 0) and tiled.output.full_shape == (256, 320)
    assert set(tiled.times_ms) == set(names) and tiled.tuned == whole.tuned


@pytest.mark.parametrize("tile_px", [90, 250, 1000])
def test_tiles_that_do_not_divide_the_frame(tile_px):
    # 90 rounds down to 88 (the 4-pixel blocks of yuv_denoise): neither 256 nor 320 is a multiple;
    # 1000 is one tile larger than the frame
    pipeline, raw, ctx = _setup((SMALL, "sensor.mode=full"))
    expected = _pixels(pipeline.run(raw, ctx).output)
    assert np.array_equal(_pixels(run_tiled(pipeline, raw, ctx, tile_px).output), expected)


@pytest.mark.parametrize(("stage", "start", "stop"), [("raw_denoise", None, "raw_denoise"), ("sharpen", "sharpen", None)])
def test_a_halo_too_small_changes_the_output(monkeypatch, stage, start, stop):
    pipeline, raw, ctx = _setup((SMALL, "sensor.iso=1600"))
    names = pipeline.names
    frame = raw if start is None else pipeline.run(raw, ctx, stop=names[names.index(start) - 1]).output
    whole = pipeline.run(frame, ctx, taps=[stage], start=start, stop=stop)
    tiled = run_tiled(pipeline, frame, ctx, 64, taps=[stage], start=start, stop=stop)
    assert np.array_equal(_pixels(tiled.taps[stage]), _pixels(whole.taps[stage]))
    assert np.array_equal(_pixels(tiled.output), _pixels(whole.output))
    # the stage's reach left out of the halo: its seams show in its output and in the 8-bit image
    monkeypatch.setitem(TILING_RULES, stage, lambda params, given: Tiling(0))
    short = run_tiled(pipeline, frame, ctx, 64, taps=[stage], start=start, stop=stop)
    assert not np.array_equal(_pixels(short.taps[stage]), _pixels(whole.taps[stage]))
    assert not np.array_equal(_pixels(short.output), _pixels(whole.output))


def test_tile_windows_cover_the_axis_once():
    windows = tile_windows(250, 88, 20)
    assert [w[:2] for w in windows] == [(0, 88), (88, 176), (176, 250)]
    assert [w[2:] for w in windows] == [(0, 108), (68, 196), (156, 250)]


# --- each stage's halo ----------------------------------------------------------------------------

_PROFILE = ((2e-4, 4e-6),)


def _raw_frame(cfa: str, shape=(192, 192), seed=0) -> RawFrame:
    """A linear mosaic of smooth texture with the profile's noise and a few hot and dead pixels."""
    rng = np.random.default_rng(seed)
    layout = CFALayout.from_name(cfa)
    th, tw = layout.tile_shape
    maps = tuple(
        GainMap(y, x, shape[0], shape[1], th, tw, 0.0, 0.0, 0.25, 0.25, rng.uniform(1.0, 2.0, (5, 5)).astype(np.float32))
        for y in range(th)
        for x in range(tw)
    )
    info = CaptureInfo("tiles test", iso=400.0, as_shot_neutral=np.array([0.5, 1.0, 0.7]), noise_profile=_PROFILE, gain_maps=maps)
    mosaic = _texture(rng, shape)
    mosaic[rng.random(shape) < 0.005] = 1.0
    mosaic[rng.random(shape) < 0.005] = 0.0
    return RawFrame(mosaic, layout, 0.0, 1.0, info, domain="linear")


def _texture(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Texture at every scale between 0.1 and 0.6, plus the noise of :data:`_PROFILE`."""
    smooth = scipy.ndimage.gaussian_filter(rng.standard_normal(shape), 2.0, mode="wrap")
    level = 0.35 + 0.25 * np.tanh(smooth / smooth.std())
    slope, offset = _PROFILE[0]
    return (level + rng.standard_normal(shape) * np.sqrt(slope * level + offset)).astype(np.float32)


def _image(transfer: str, shape=(160, 160), seed=0) -> Image:
    data = np.random.default_rng(seed).uniform(0.0, 1.0, (*shape, 3)).astype(np.float32)
    return Image(data, "srgb", transfer, CaptureInfo("tiles test", iso=400.0))


#: (stage, its parameters, input, whether the halo is tight: one pixel less does change the
#: output on random data; the defect corrector changes only flagged pixels, so that is not shown)
HALO_CASES = [
    ("defect_correction", {}, ("RGGB",), False),
    ("defect_correction", {}, ("quad_RGGB",), False),
    ("lens_shading", {}, ("quad_RGGB",), True),
    ("remosaic", {"method": "directional"}, ("quad_RGGB",), True),
    ("remosaic", {"method": "pixel_swap"}, ("quad_RGGB",), True),
    ("raw_denoise", {"method": "wavelet", "levels": 3}, ("RGGB",), True),
    ("raw_denoise", {"method": "wavelet", "levels": 2}, ("quad_RGGB",), True),
    ("raw_denoise", {"method": "nlm", "radius": 2, "patch_radius": 3}, ("RGGB",), True),
    ("raw_denoise", {"method": "bilateral", "radius": 2}, ("RGGB",), True),
    ("demosaic", {"method": "malvar2004"}, ("RGGB",), True),
    ("demosaic", {"method": "bilinear"}, ("GBRG",), True),
    ("demosaic", {"method": "menon2007"}, ("RGGB",), True),
    ("vignette", {"strength": 0.5}, ("linear",), True),
    ("false_color", {}, ("srgb",), True),
    ("yuv_denoise", {}, ("srgb",), True),
    ("yuv_denoise", {"chroma_sigma": 0.0, "luma_radius_px": 3}, ("srgb",), True),
    ("sharpen", {"radius_px": 1.3}, ("srgb",), True),
    ("grain", {"amount": 0.1, "size_px": 1.5}, ("srgb",), True),
]


def _input(kind: str):
    return _image(kind) if kind in ("linear", "srgb") else _raw_frame(kind)


def _perturbed(frame, keep: tuple[slice, slice]):
    """``frame`` with every pixel outside ``keep`` taken from other data of the same kind."""
    values = _pixels(frame).copy()
    kept = values[keep].copy()
    values[:] = _texture(np.random.default_rng(99), values.shape)
    values[keep] = kept
    return frame.replace(mosaic=values) if isinstance(frame, RawFrame) else frame.replace(data=values)


def _grown(core: tuple[slice, slice], by: int) -> tuple[slice, slice]:
    return tuple(slice(s.start - by, s.stop + by) for s in core)


@pytest.mark.parametrize(("stage", "values", "given", "tight"), HALO_CASES, ids=lambda v: str(v) if isinstance(v, str) else None)
def test_stage_halo_is_sufficient_and_tight(stage, values, given, tight):
    spec = STAGES[stage]
    params = build(spec.params, values, f"tuning.params.{stage}")
    frame = _input(given[0])
    ctx = StageContext(get_backend("numpy"), seed=5)
    reach = tiling_of(stage, params, StageInput.of(frame)).halo_px
    assert reach == halo_px(stage, params, StageInput.of(frame).cfa_tile_px)
    h, w = frame.shape[:2]
    core = (slice(h // 2 - 16, h // 2 + 16), slice(w // 2 - 16, w // 2 + 16))
    expected = _pixels(spec.fn(frame, params, ctx))[core]

    # the input beyond the halo does not matter ...
    assert np.array_equal(_pixels(spec.fn(_perturbed(frame, _grown(core, reach)), params, ctx))[core], expected)
    if tight and reach:  # ... and the input at the halo's last pixel does
        assert not np.array_equal(_pixels(spec.fn(_perturbed(frame, _grown(core, reach - 1)), params, ctx))[core], expected)

    # a crop with the halo (on CFA tiles) gives the same core: positions are full-frame ones
    align = frame.cfa.tile_shape[0] if isinstance(frame, RawFrame) else 4
    margin = -(-reach // align) * align
    window = _grown(core, margin)
    tile = frame.crop(window[0].start, window[1].start, window[0].stop - window[0].start, window[1].stop - window[1].start)
    got = _pixels(spec.fn(tile, params, ctx))[margin : margin + 32, margin : margin + 32]
    assert np.array_equal(got, expected)


def test_every_default_stage_is_audited():
    cfg = isp.compose()
    assert set(cfg.pipeline.stages) <= set(TILING_RULES)
    assert set(TILING_RULES) == set(STAGES)
    balance = build(STAGES["white_balance"].params, {"mode": "grey_world"}, "tuning.params.white_balance")
    with pytest.raises(ConfigError, match=r"stage 'white_balance' cannot run on tiles: mode=grey_world takes its gains from a statistic"):
        halo_px("white_balance", balance)


# --- position: crops see the full frame -----------------------------------------------------------


@pytest.mark.parametrize("luma_only", [True, False])
@pytest.mark.parametrize("size_px", [0.0, 1.0, 3.0])
def test_grain_of_a_crop_is_the_crop_of_the_grain(luma_only, size_px):
    spec = STAGES["grain"]
    params = build(spec.params, {"amount": 0.2, "size_px": size_px, "luma_only": luma_only}, "tuning.params.grain")
    image = _image("srgb", shape=(301, 90), seed=4)  # taller than the 256 rows grain draws at once
    ctx = StageContext(get_backend("numpy"), seed=11)
    whole = spec.fn(image, params, ctx).data
    for top, left, height, width in [(10, 13, 30, 41), (0, 0, 301, 7), (288, 83, 13, 7), (3, 0, 1, 90), (240, 5, 40, 60)]:
        got = spec.fn(image.crop(top, left, height, width), params, ctx).data
        assert np.array_equal(got, whole[top : top + height, left : left + width]), (top, left)
    # another seed, other grain
    assert not np.array_equal(spec.fn(image, params, StageContext(ctx.backend, seed=12)).data, whole)


def test_grain_wraps_at_the_edges_as_a_periodic_field():
    from isp.stages.grain import grain_field

    backend = get_backend("numpy")
    field = grain_field((40, 52), 1, 2.0, 7, backend)[..., 0]
    # the low-pass of a periodic field: a circular convolution of its white noise, done here by FFT
    white = grain_field((40, 52), 1, 0.0, 7, backend)[..., 0].astype(np.float64)
    from isp.stages.grain import grain_kernel

    taps = grain_kernel(2.0)
    r = len(taps) // 2
    kernel = np.zeros((40, 52))
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            kernel[dy % 40, dx % 52] += taps[dy + r] * taps[dx + r]
    circular = np.real(np.fft.ifft2(np.fft.fft2(white) * np.conj(np.fft.fft2(kernel))))
    np.testing.assert_allclose(field, circular, atol=2e-5)


def test_lens_shading_and_vignette_of_a_crop_use_full_frame_positions():
    ctx = StageContext(get_backend("numpy"))
    raw = _raw_frame("RGGB", shape=(64, 96))
    shading = STAGES["lens_shading"]
    params = build(shading.params, {"strength": 0.8}, "tuning.params.lens_shading")
    whole = shading.fn(raw, params, ctx)
    tile = shading.fn(raw.crop(6, 10, 30, 50), params, ctx)
    assert np.array_equal(tile.mosaic, whole.mosaic[6:36, 10:60])
    assert np.array_equal(tile.shading_gain, whole.shading_gain[6:36, 10:60])
    image = _image("linear", shape=(64, 96))
    vignette = STAGES["vignette"]
    vparams = build(vignette.params, {"strength": 0.6, "falloff": 3.0}, "tuning.params.vignette")
    full = vignette.fn(image, vparams, ctx).data
    assert np.array_equal(vignette.fn(image.crop(5, 7, 20, 33), vparams, ctx).data, full[5:25, 7:40])
    flat = vignette.fn(image.replace(data=np.full_like(image.data, 0.5)), vparams, ctx).data
    tile = vignette.fn(image.replace(data=np.full_like(image.data, 0.5)).crop(0, 0, 8, 8), vparams, ctx).data
    assert tile[0, 0, 0] == flat[0, 0, 0] < flat[32, 48, 0], "a corner tile darkens as the full frame's corner"


def test_frame_crop_cuts_every_per_pixel_array_and_composes_origins():
    raw = _raw_frame("quad_RGGB", shape=(32, 48)).replace(shading_gain=np.arange(32 * 48, dtype=np.float32).reshape(32, 48))
    tile = raw.crop(8, 12, 16, 24)
    assert tile.shape == (16, 24) and tile.origin == (8, 12) and tile.full_shape == (32, 48)
    assert np.array_equal(tile.shading_gain, raw.shading_gain[8:24, 12:36]) and np.array_equal(tile.mosaic, raw.mosaic[8:24, 12:36])
    inner = tile.crop(4, 4, 8, 8)
    assert inner.origin == (12, 16) and inner.full_shape == (32, 48)
    assert raw.origin == (0, 0) and raw.full_shape == (32, 48)
    with pytest.raises(StageError, match=r"does not fall on the 4x4 tiles of CFA quad_RGGB"):
        raw.crop(2, 0, 8, 8)
    with pytest.raises(StageError, match=r"does not lie inside the 32x48 frame"):
        raw.crop(28, 0, 8, 8)
    image = _image("srgb", shape=(10, 12)).crop(1, 2, 3, 4)
    assert image.shape == (3, 4, 3) and image.origin == (1, 2) and image.full_shape == (10, 12)


# --- frame-level decisions and what cannot tile ---------------------------------------------------


def test_an_estimating_white_balance_runs_on_the_whole_frame_between_tiled_segments():
    pipeline, raw, ctx = _setup((SMALL, "tuning.params.white_balance.mode=grey_world", "sensor.mode=full"))
    segments = plan_segments(pipeline.stages, raw)
    assert [s.whole_frame is not None for s in segments] == [False, True, False]
    assert segments[1].stages[0].name == "white_balance"
    assert segments[0].halo_px == 16 and segments[0].align_px == 4  # defect correction (2 quads) + remosaic (7), on quads
    whole = pipeline.run(raw, ctx)
    tiled = run_tiled(pipeline, raw, ctx, 96)
    assert np.array_equal(_pixels(tiled.output), _pixels(whole.output))
    assert tiled.output.wb_gains.tolist() == whole.output.wb_gains.tolist()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (("tuning=leica_vibrant",), r"stage 'local_tone' cannot run on tiles: its window radius is a fraction of the diagonal"),
        (("+pipeline.params.demosaic.method=mlri",), r"stage 'demosaic' cannot run on tiles: method=mlri sums its windows"),
        (("+pipeline.params.defect_correction.mode=static", "+pipeline.params.defect_correction.defects=[[2,2]]"), r"mode=static: its defect list"),
    ],
)
def test_stages_that_cannot_tile_are_config_errors(overrides, match):
    pipeline, raw, ctx = _setup(("scene.size=[64,96]", *overrides))
    with pytest.raises(ConfigError, match=match + r".*set pipeline\.tiles\.size_px=0"):
        run_tiled(pipeline, raw, ctx, 32)


def test_a_frame_without_a_noise_profile_cannot_tile():
    pipeline, raw, ctx = _setup(("scene.size=[64,96]",))
    bare = raw.replace(info=dataclasses.replace(raw.info, noise_profile=None))
    with pytest.raises(ConfigError, match=r"stage 'defect_correction' cannot run on tiles: the frame has no noise profile"):
        run_tiled(pipeline, bare, ctx, 32)


def test_tiles_that_decide_differently_are_an_error(monkeypatch):
    from isp.stages import white_balance as wb

    pipeline, raw, ctx = _setup(("scene.size=[64,96]",))
    original = wb.gains_from_neutral
    monkeypatch.setattr(wb, "gains_from_neutral", lambda neutral: original(neutral) * (1.0 + 1e-3 * np.random.default_rng().random()))
    with pytest.raises(StageError, match=r"two tiles of the frame came out differently described"):
        run_tiled(pipeline, raw, ctx, 32)


# --- config and the API ---------------------------------------------------------------------------


def test_simulation_runs_in_tiles_from_the_config():
    plain = isp.run(["backend=numpy", "scene.size=[128,160]", "sensor.mode=full", "pipeline.taps=[demosaic]"])
    tiled = isp.run(["backend=numpy", "scene.size=[128,160]", "sensor.mode=full", "pipeline.taps=[demosaic]", "pipeline.tiles.size_px=64", "pipeline.tiles.workers=2"])
    assert np.array_equal(tiled.rgb(), plain.rgb())
    assert np.array_equal(_pixels(tiled.taps["demosaic"]), _pixels(plain.taps["demosaic"]))
    assert tiled.metrics["tiles"] == {"core_px": 64, "workers": 2} and plain.metrics["tiles"] is None
    assert tiled.metrics["colorchecker"]["delta_e2000"]["mean"] == plain.metrics["colorchecker"]["delta_e2000"]["mean"]


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("pipeline.tiles.size_px=-8", r"pipeline\.tiles\.size_px=-8: expected a number of pixels, 0 \(off\) or auto"),
        ("pipeline.tiles.size_px=big", r"pipeline\.tiles\.size_px='big': expected a number of pixels"),
        ("pipeline.tiles.workers=0", r"pipeline\.tiles\.workers=0: expected 1 to 8, or auto"),
        ("pipeline.tiles.workers=many", r"pipeline\.tiles\.workers='many': expected 1 to 8, or auto"),
        ("+pipeline.tiles.halo=4", r"pipeline\.tiles\.halo: unknown parameter"),
    ],
)
def test_bad_tile_settings_are_config_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        Simulation(isp.compose(["scene.size=[64,96]", override]))


def test_auto_tiles_only_a_frame_beyond_the_budget(caplog):
    pipeline, raw, ctx = _setup((SMALL,))
    frame_gb = 256 * 320 * WORKING_BYTES_PER_PX / 1e9
    assert resolve_tile_px(TileSettings("auto", budget_gb=2 * frame_gb), pipeline.stages, raw) == 0
    tile_px = resolve_tile_px(TileSettings("auto", budget_gb=frame_gb / 2), pipeline.stages, raw)
    assert 0 < tile_px < 320
    assert np.array_equal(_pixels(run_tiled(pipeline, raw, ctx, tile_px).output), _pixels(pipeline.run(raw, ctx).output))
    assert resolve_tile_px(TileSettings(64), pipeline.stages, raw) == 64
    vibrant, raw_v, _ = _setup((SMALL, "tuning=leica_vibrant"))
    with caplog.at_level(logging.WARNING, logger="isp.tiling"):
        assert resolve_tile_px(TileSettings("auto", budget_gb=frame_gb / 2), vibrant.stages, raw_v) == 0
    assert "running the 256x320 frame whole" in caplog.text and "local_tone" in caplog.text


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["binned", "full"])
def test_tiled_run_equals_untiled_on_the_gpu(mode):
    pipeline, raw, ctx = _setup((SMALL, f"sensor.mode={mode}"), "cupy")
    whole = pipeline.run(raw, ctx)
    tiled = run_tiled(pipeline, raw, ctx, 96)
    assert np.array_equal(_pixels(tiled.output), _pixels(whole.output))


@pytest.mark.gpu
def test_grain_draws_the_same_numbers_on_the_gpu(cupy_backend):
    spec = STAGES["grain"]
    params = build(spec.params, {"amount": 0.2, "size_px": 1.5, "luma_only": False}, "tuning.params.grain")
    image = _image("srgb", shape=(61, 90), seed=4)
    expected = spec.fn(image, params, StageContext(get_backend("numpy"), seed=11)).data
    on_gpu = image.replace(data=cupy_backend.asarray(image.data))
    got = to_host(spec.fn(on_gpu, params, StageContext(cupy_backend, seed=11)).data)
    np.testing.assert_allclose(got, expected, atol=1e-5)  # log, sin and cos round differently on the GPU
    tile = to_host(spec.fn(on_gpu.crop(10, 13, 30, 41), params, StageContext(cupy_backend, seed=11)).data)
    assert np.array_equal(tile, got[10:40, 13:54])


def test_auto_workers_tile_a_large_frame_on_the_cpu_for_speed():
    """Within the memory budget, several CPU workers still get tiles (two per worker) once the
    frame is large enough; one worker, a small frame, or a pipeline that cannot be tiled run it whole."""
    from isp.tiling import PARALLEL_MIN_PIXELS, TileSettings, resolve_tile_px

    stages = Simulation(isp.compose(["tuning=neutral"])).pipeline.stages
    big = RawFrame(np.zeros((1536, 2048), np.uint16), CFALayout.from_name("RGGB"), 64.0, 1023.0, CaptureInfo("t", noise_profile=((1e-5, 1e-6),) * 3))
    assert big.shape[0] * big.shape[1] >= PARALLEL_MIN_PIXELS
    two = TileSettings(size_px="auto", workers=2)
    core = resolve_tile_px(two, stages, big)
    tiles = -(-1536 // core) * -(-2048 // core)
    assert core % 2 == 0 and tiles >= 4
    assert resolve_tile_px(TileSettings(size_px="auto", workers=1), stages, big) == 0
    small = big.replace(mosaic=big.mosaic[:512, :512])
    assert resolve_tile_px(two, stages, small) == 0
    vibrant = Simulation(isp.compose(["tuning=leica_vibrant"])).pipeline.stages  # local tone mapping on: not tileable
    assert resolve_tile_px(two, vibrant, big) == 0
    assert TileSettings(workers="auto").worker_count(on_gpu=True) == 1
