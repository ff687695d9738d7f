"""Remosaic: pixel swap's permutation, flat fields, PSNR against the ideal Bayer capture of the
IMX989 model, frame metadata, errors, and NumPy/CuPy parity.

The quality reference is physical, not the code under test: the same scene captured noise-free
by the same sensor with its full-resolution mode's CFA set to the Bayer phase, i.e. what a Bayer
sensor of the same pixel pitch would have read out.
"""

from __future__ import annotations

import functools

import imageio.v3 as iio
import numpy as np
import pytest

from isp.backend import get_backend, to_host
from isp.cfa import BAYER_PHASES, CFALayout
from isp.config import build, compose
from isp.errors import ConfigError, StageError
from isp.frame import CaptureInfo, GainMap, Image, RawFrame
from isp.pipeline import Pipeline
from isp.sensor import build_sensor, capture, ideal_capture
from isp.stages.black_level import BlackLevelParams, black_level
from isp.stages.demosaic import demosaic
from isp.stages.oetf import srgb_eotf
from isp.stages.registry import StageContext
from isp.stages.remosaic import (
    REMOSAIC_METHODS,
    RemosaicParams,
    bayer_layout,
    directional,
    kernel_launch,
    pixel_swap,
    remosaic,
    remosaic_stage,
)
from isp.stages.white_balance import gains_from_neutral

from .kernel_emulation import emulate_kernel

CTX = StageContext(get_backend("numpy"))
METHODS = sorted(REMOSAIC_METHODS)
QUAD_PHASES = [f"quad_{phase}" for phase in BAYER_PHASES]
NEUTRAL = np.array([0.55, 1.0, 0.7])
BORDER = 8

#: Kodak images of the PSNR test, and the least gain of ``directional`` over ``pixel_swap`` to
#: hold on each. Measured with this test's loop over all 24 images (IMX989 model with its lens):
#: mean 30.75 -> 38.35 dB on the mosaic and 29.75 -> 37.35 dB after demosaicing, the smallest
#: gain 5.2 dB (kodim24); on these three 7.7, 10.3 and 10.9 dB.
KODAK = ("kodim01", "kodim08", "kodim19")
MIN_GAIN_DB = 4.0


def quad_frame(mosaic: np.ndarray, cfa: str = "quad_RGGB", **changes) -> RawFrame:
    info = CaptureInfo(sensor="test", as_shot_neutral=NEUTRAL)
    return RawFrame(mosaic.astype(np.float32), CFALayout.from_name(cfa), 0.0, 1.0, info, domain="linear", **changes)


def psnr(estimate, truth, border: int = BORDER) -> float:
    crop = (slice(border, -border), slice(border, -border))
    mse = np.mean((to_host(estimate)[crop].astype(np.float64) - to_host(truth)[crop]) ** 2)
    return float(10.0 * np.log10(1.0 / mse))


# --- layouts and pixel swap ---------------------------------------------------------------------


@pytest.mark.parametrize("phase", BAYER_PHASES)
def test_bayer_layout_keeps_the_phase(phase):
    assert bayer_layout(CFALayout.from_name(f"quad_{phase}")).name == phase
    assert bayer_layout(CFALayout.from_name(phase)).name == phase


@pytest.mark.parametrize("cfa", QUAD_PHASES)
def test_pixel_swap_permutes_each_tile_onto_sites_of_the_samples_colour(cfa):
    """Every output sample is an input sample of the same 4×4 tile, of the colour the Bayer site
    wants, from at most one pixel away; samples already on such a site do not move."""
    quad = CFALayout.from_name(cfa)
    bayer = CFALayout.from_name(cfa.removeprefix("quad_"))
    h, w = 16, 24
    mosaic = np.arange(h * w, dtype=np.float32).reshape(h, w)  # each value names its pixel
    out = remosaic(mosaic, quad, "pixel_swap")
    tiles = lambda a: a.reshape(h // 4, 4, w // 4, 4).transpose(0, 2, 1, 3).reshape(-1, 16)  # noqa: E731
    np.testing.assert_array_equal(np.sort(tiles(out), axis=1), np.sort(tiles(mosaic), axis=1))
    origin_y, origin_x = np.divmod(out.astype(np.int64), w)
    assert np.array_equal(quad.colour_map((h, w))[origin_y, origin_x], bayer.colour_map((h, w)))
    rows, cols = np.indices((h, w))
    assert np.abs(origin_y - rows).max() <= 1 and np.abs(origin_x - cols).max() <= 1
    in_place = quad.colour_map((h, w)) == bayer.colour_map((h, w))
    np.testing.assert_array_equal(out[in_place], mosaic[in_place])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("cfa", QUAD_PHASES)
@pytest.mark.parametrize("shape", [(32, 40), (4, 4), (4, 8), (12, 4)])
def test_a_flat_field_stays_flat(method, cfa, shape):
    """Constant R, G and B levels, balanced or not, come out as the Bayer mosaic of those levels,
    down to a single tile."""
    levels = np.array([0.21, 0.63, 0.37], dtype=np.float32)
    quad = CFALayout.from_name(cfa)
    bayer = CFALayout.from_name(cfa.removeprefix("quad_"))
    frame = quad_frame(levels[quad.colour_map(shape)], cfa)
    expected = levels[bayer.colour_map(shape)]
    for balanced in (frame, frame.replace(wb_gains=np.array([1.0, 1.0, 1.0]))):
        out = remosaic_stage(balanced, RemosaicParams(method), CTX)
        np.testing.assert_allclose(out.mosaic, expected, rtol=1e-6, atol=1e-7)


# --- quality against the ideal Bayer capture ----------------------------------------------------


@functools.cache
def _sensor(cfa: str, *overrides: str):
    return build_sensor(compose(["sensor=imx989", "sensor.mode=full", f"sensor.modes.full.cfa={cfa}", *overrides]).sensor)


def _linear_captures(scene: np.ndarray, *overrides: str) -> tuple[RawFrame, RawFrame]:
    """The quad capture and the ideal Bayer capture of ``scene``, both after black_level."""
    quad, bayer = (
        black_level(ideal_capture(scene, _sensor(cfa, *overrides), CTX.backend), BlackLevelParams(), CTX)
        for cfa in ("quad_RGGB", "RGGB")
    )
    return quad, bayer


def _balanced_demosaic(frame: RawFrame, gains: np.ndarray) -> np.ndarray:
    """White balance, then Malvar-He-Cutler (which assumes balanced channels)."""
    return demosaic(frame.cfa.apply_per_site(frame.mosaic, scale=frame.cfa.per_site(gains)), frame.cfa, "malvar2004")


def test_a_flat_scene_through_the_sensor_gives_the_bayer_capture():
    """Without lens shading the sensor reads a flat grey as one level per colour; both methods
    give exactly the Bayer capture of it."""
    lens_off = ("sensor.lens.optics.relative_illumination.model=none", "sensor.lens.optics.color_shading.coefficients=null")
    quad, bayer = _linear_captures(np.full((64, 64, 3), 0.4, np.float32), *lens_off)
    assert bayer.mosaic.std() > 0.01, "R, G and B levels differ: the test sees colours moved"
    for method in METHODS:
        out = remosaic_stage(quad, RemosaicParams(method), CTX)
        np.testing.assert_allclose(out.mosaic, bayer.mosaic, rtol=1e-6, err_msg=method)


@pytest.fixture(scope="module")
def kodak_scenes(shared_data):
    folder = shared_data / "kodak"
    paths = [folder / f"{name}.png" for name in KODAK]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        pytest.skip(f"Kodak images missing in {folder}: {missing}")
    return [(p.stem, srgb_eotf(iio.imread(p).astype(np.float32) / 255.0)) for p in paths]


@pytest.mark.data
def test_directional_beats_pixel_swap_against_the_ideal_bayer_capture(kodak_scenes):
    for name, scene in kodak_scenes:
        quad, bayer = _linear_captures(scene)
        gains = gains_from_neutral(quad.info.as_shot_neutral)
        reference_rgb = _balanced_demosaic(bayer, gains)
        mosaic_db, rgb_db = {}, {}
        for method in METHODS:
            out = remosaic_stage(quad, RemosaicParams(method), CTX)
            mosaic_db[method] = psnr(out.mosaic, bayer.mosaic)
            rgb_db[method] = psnr(_balanced_demosaic(out, gains), reference_rgb)
        print(f"{name}: mosaic PSNR {mosaic_db}, after demosaic {rgb_db}")
        assert mosaic_db["directional"] >= mosaic_db["pixel_swap"] + MIN_GAIN_DB, name
        assert rgb_db["directional"] >= rgb_db["pixel_swap"] + MIN_GAIN_DB, name


# --- the stage: metadata, passthrough, errors --------------------------------------------------


def test_stage_output_is_a_bayer_frame_with_the_quads_metadata(rng):
    mosaic = rng.uniform(0.0, 1.0, size=(16, 20)).astype(np.float32)
    shading = rng.uniform(1.0, 2.0, size=(16, 20)).astype(np.float32)
    frame = quad_frame(mosaic, "quad_GBRG", shading_gain=shading)
    before = frame.mosaic.copy()
    out = remosaic_stage(frame, RemosaicParams(), CTX)
    assert out.cfa.name == "GBRG" and out.domain == "linear" and out.mosaic.dtype == np.float32
    assert out.black_level.shape == (2, 2) and np.all(out.black_level == 0.0)
    assert out.shading_gain is shading and out.wb_gains is None and out.info.as_shot_neutral is NEUTRAL
    np.testing.assert_array_equal(frame.mosaic, before)


def test_gain_maps_follow_their_colour():
    """A map per quad site (pitch 4) ends on a site of the same colour in the Bayer output."""
    quad = CFALayout.from_name("quad_RGGB")
    maps = tuple(
        GainMap(y, x, 16, 16, 4, 4, 0.0, 0.0, 1.0, 1.0, np.full((2, 2), 1.0 + quad.pattern[y][x], np.float32))
        for y in range(4)
        for x in range(4)
    )
    frame = quad_frame(np.zeros((16, 16)), "quad_RGGB")
    frame = frame.replace(info=CaptureInfo(sensor="test", as_shot_neutral=NEUTRAL, gain_maps=maps))
    out = remosaic_stage(frame, RemosaicParams(), CTX)
    colour = out.cfa.colour_map((16, 16))
    sites = {(m.top, m.left) for m in out.info.gain_maps}
    assert sites == {(y, x) for y in range(4) for x in range(4)}
    for m in out.info.gain_maps:
        assert m.gains[0, 0] == 1.0 + colour[m.top, m.left]


def test_balanced_frames_give_the_balanced_result(rng):
    """Balancing before the stage or letting it balance internally gives one result."""
    quad = CFALayout.from_name("quad_RGGB")
    scene = rng.uniform(0.05, 0.9, size=(32, 32, 3)).astype(np.float32)
    frame = quad_frame(quad.sample(scene))
    gains = gains_from_neutral(NEUTRAL)
    balanced = frame.replace(mosaic=quad.apply_per_site(frame.mosaic, scale=quad.per_site(gains)), wb_gains=gains)
    out = remosaic_stage(frame, RemosaicParams("directional"), CTX)
    out_balanced = remosaic_stage(balanced, RemosaicParams("directional"), CTX)
    expected = out.cfa.apply_per_site(out.mosaic, scale=out.cfa.per_site(gains))
    np.testing.assert_allclose(out_balanced.mosaic, expected, rtol=2e-5, atol=1e-6)
    np.testing.assert_array_equal(out_balanced.wb_gains, gains)


def test_bayer_frame_passes_through(rng):
    mosaic = rng.uniform(size=(8, 8)).astype(np.float32)
    bayer = RawFrame(mosaic, CFALayout.from_name("GRBG"), 0.0, 1.0, CaptureInfo("test"), domain="linear")
    assert remosaic_stage(bayer, RemosaicParams(), CTX) is bayer


def test_a_noisy_full_resolution_capture_runs_through_a_bayer_pipeline():
    """black_level -> remosaic -> white_balance -> demosaic on the IMX989's quad read-out."""
    pipeline = Pipeline.from_config(
        {"stages": ["black_level", "remosaic", "white_balance", "demosaic"], "params": {"remosaic": {"method": "directional"}}}
    )
    grey = np.full((32, 48, 3), 0.18, np.float32)
    result = pipeline.run(capture(grey, _sensor("quad_RGGB"), CTX.backend, seed=3), CTX, taps=["remosaic"])
    assert result.taps["remosaic"].cfa.name == "RGGB"
    assert isinstance(result.output, Image) and result.output.shape == (32, 48, 3)


def test_wrong_domain_is_a_stage_error():
    dn = RawFrame(np.full((8, 8), 100, np.uint16), CFALayout.from_name("quad_RGGB"), 64.0, 1023.0, CaptureInfo("test"))
    with pytest.raises(StageError, match="'remosaic' needs a raw frame in the 'linear' domain, got 'dn'"):
        remosaic_stage(dn, RemosaicParams(), CTX)


def test_bad_neutral_is_a_stage_error():
    frame = quad_frame(np.ones((8, 8))).replace(info=CaptureInfo("test", as_shot_neutral=np.array([0.5, 0.0, 1.0])))
    with pytest.raises(StageError, match="stage 'remosaic' balances the channels with the as-shot neutral"):
        remosaic_stage(frame, RemosaicParams(), CTX)


def test_bad_parameters_are_config_errors():
    allowed = "choose one of pixel_swap, directional"
    with pytest.raises(ConfigError, match=rf"tuning.params.remosaic.method='bilinear' is not allowed; {allowed}"):
        build(RemosaicParams, {"method": "bilinear"}, "tuning.params.remosaic")
    with pytest.raises(ConfigError, match="tuning.params.remosaic.strength: unknown parameter"):
        build(RemosaicParams, {"strength": 1.0}, "tuning.params.remosaic")
    with pytest.raises(ConfigError, match="remosaic method 'nearest' is not known"):
        remosaic(np.zeros((8, 8), np.float32), CFALayout.from_name("quad_RGGB"), "nearest")
    with pytest.raises(StageError, match="remosaic needs a Quad Bayer mosaic, got CFA 'RGGB'"):
        remosaic(np.zeros((8, 8), np.float32), CFALayout.from_name("RGGB"))


# --- the CUDA kernels, emulated on the CPU ------------------------------------------------------

#: Frame shapes for the kernels (tiles of 16x32 with a halo of 7): partial tiles; tiles at the
#: border only (40x56, 64x64); inner tiles, which skip the mirrors (64x96, and 40x72 where 8
#: pixels of image lie beyond the inner tile, the least that skips them); a tile with 8 pixels
#: beyond it along one axis but only 4 along the other, which must take the border path (36x72,
#: 40x68); frames smaller than a tile.
KERNEL_SHAPES = [(40, 56), (64, 64), (64, 96), (40, 72), (36, 72), (40, 68), (4, 4), (12, 8)]


def edgy_scene(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A natural-looking ``(H, W, 3)`` scene: smooth colour with sharp edges along both axes and
    a little noise, so that both directions get chosen, strongly and weakly."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    scene = np.stack([0.5 + 0.4 * np.sin(x / 7.0), 0.5 + 0.4 * np.cos(y / 5.0), (x + y) / (h + w)], axis=-1)
    scene[:, int(w * 0.48) :] *= 0.3
    scene[int(h * 0.42) :] = 0.9 - scene[int(h * 0.42) :]
    return scene + rng.normal(0.0, 0.01, size=scene.shape).astype(np.float32)


def emulated(method: str, mosaic: np.ndarray, cfa: CFALayout, gains: np.ndarray | None = None) -> np.ndarray:
    """``method``'s kernel run on the CPU, launched exactly as the CuPy path launches it."""
    function, grid, block, scalars = kernel_launch(method, mosaic.shape, cfa, gains)
    out = np.full(mosaic.shape, np.nan, np.float32)  # a pixel the kernel misses stays NaN
    emulate_kernel("remosaic", function, grid, block, [mosaic, out, *scalars])
    return out


@pytest.mark.parametrize("cfa", QUAD_PHASES)
@pytest.mark.parametrize("shape", KERNEL_SHAPES, ids=[f"{h}x{w}" for h, w in KERNEL_SHAPES])
def test_directional_kernel_equals_the_numpy_reference(cfa, shape, rng):
    """The fused shared-memory kernel, its block's threads meeting at real barriers, equals the
    array-module reference at every pixel, borders included, to float32 rounding: on uniform
    noise (every weight and difference arbitrary), unbalanced (the kernel balances with the
    gains), and on a balanced edgy scene."""
    quad = CFALayout.from_name(cfa)
    cases = {
        "noise": (rng.uniform(0.0, 1.0, size=shape).astype(np.float32), gains_from_neutral(NEUTRAL)),
        "scene": (quad.sample(edgy_scene(shape, rng)), None),
    }
    for name, (mosaic, gains) in cases.items():
        got = emulated("directional", mosaic, quad, gains)
        np.testing.assert_allclose(got, directional(mosaic, quad, gains), rtol=0, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("cfa", QUAD_PHASES)
def test_pixel_swap_kernel_equals_the_numpy_reference(cfa, rng):
    quad = CFALayout.from_name(cfa)
    for shape in ((40, 56), (4, 4)):
        mosaic = rng.uniform(0.0, 1.0, size=shape).astype(np.float32)
        np.testing.assert_array_equal(emulated("pixel_swap", mosaic, quad), pixel_swap(mosaic, quad))


# --- NumPy / CuPy parity ------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("cfa", QUAD_PHASES)
@pytest.mark.parametrize("shape", [(96, 128), (1000, 1512)])
def test_cuda_kernels_match_numpy(method, cfa, shape, rng, cupy_backend):
    """The kernels on the GPU against the NumPy reference, partial tiles and many inner tiles."""
    quad = CFALayout.from_name(cfa)
    mosaic = quad.sample(edgy_scene(shape, rng))
    gains = gains_from_neutral(NEUTRAL)
    got = remosaic(cupy_backend.asarray(mosaic), quad, method, gains)
    assert got.dtype == np.float32 and got.shape == shape
    np.testing.assert_allclose(to_host(got), remosaic(mosaic, quad, method, gains), rtol=0, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("reference", [pixel_swap, directional], ids=["pixel_swap", "directional"])
def test_the_reference_runs_on_cupy(reference, rng, cupy_backend):
    """The array-module reference itself on CuPy arrays, as the kernels' second witness."""
    quad = CFALayout.from_name("quad_GRBG")
    mosaic = quad.sample(edgy_scene((96, 128), rng))
    gains = gains_from_neutral(NEUTRAL)
    got = reference(cupy_backend.asarray(mosaic), quad, gains)
    np.testing.assert_allclose(to_host(got), reference(mosaic, quad, gains), rtol=2e-5, atol=2e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("cfa", ["quad_RGGB", "quad_GBRG"])
def test_cupy_matches_numpy(method, cfa, rng, cupy_backend):
    """The stage on a CuPy frame (the kernels) and on a NumPy one."""
    scene = edgy_scene((96, 128), rng)
    frame = quad_frame(CFALayout.from_name(cfa).sample(scene), cfa)
    expected = remosaic_stage(frame, RemosaicParams(method), CTX)
    on_gpu = frame.replace(mosaic=cupy_backend.asarray(frame.mosaic))
    got = remosaic_stage(on_gpu, RemosaicParams(method), StageContext(cupy_backend))
    assert got.mosaic.dtype == np.float32 and got.cfa == expected.cfa
    np.testing.assert_allclose(to_host(got.mosaic), expected.mosaic, rtol=2e-5, atol=2e-6)
