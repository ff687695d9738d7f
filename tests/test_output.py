"""Output encoding (sRGB and Display P3), resizing and the tagged PNG writer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import skimage.transform

from isp.backend import get_backend
from isp.config import build
from isp.errors import ConfigError, StageError
from isp.frame import CaptureInfo, Image
from isp.io.images import read_image, write_png8
from isp.metrics.colorchecker import linear_srgb
from isp.stages.oetf import OetfParams, oetf, srgb_oetf
from isp.stages.registry import StageContext
from isp.stages.resize import ResizeParams, output_size, resize

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import colour

CTX = StageContext(get_backend("numpy"))


def linear_image(rng, shape=(24, 36)) -> Image:
    return Image(rng.uniform(0.0, 1.0, size=(*shape, 3)).astype(np.float32), "srgb", "linear", CaptureInfo("test"))


def _derived(name: str):
    # the matrices from the primaries, as isp.colorimetry takes them (sRGB's standard rounds them)
    space = colour.RGB_COLOURSPACES[name].copy()
    space.use_derived_transformation_matrices(True)
    return space


def test_display_p3_encoding_matches_colour_science(rng):
    image = linear_image(rng)
    out = oetf(image, OetfParams(space="display_p3"), CTX)
    assert (out.space, out.transfer) == ("display_p3", "srgb")
    expected = colour.RGB_to_RGB(
        image.data.astype(np.float64), _derived("sRGB"), _derived("Display P3"), chromatic_adaptation_transform=None, apply_cctf_encoding=True
    )
    np.testing.assert_allclose(out.data, np.clip(expected, 0.0, 1.0), atol=2e-6)


def test_srgb_encoding_is_the_plain_curve(rng):
    image = linear_image(rng)
    out = oetf(image, OetfParams(), CTX)
    assert out.space == "srgb"
    np.testing.assert_array_equal(out.data, srgb_oetf(image.data))


def test_p3_keeps_colours_outside_srgb_that_srgb_clips():
    # a saturated red beyond sRGB (negative green and blue in linear sRGB) but inside P3
    p3_red = np.array([0.8, 0.0, 0.02])
    srgb = colour.RGB_to_RGB(p3_red, _derived("Display P3"), _derived("sRGB"), chromatic_adaptation_transform=None)
    assert srgb.min() < 0
    image = Image(np.tile(srgb, (2, 2, 1)).astype(np.float32), "srgb", "linear", CaptureInfo("test"))
    out = oetf(image, OetfParams(space="display_p3"), CTX)
    back = linear_srgb(out)  # the metrics decode P3 back to (unclipped) linear sRGB
    np.testing.assert_allclose(back[0, 0], srgb, atol=1e-5)


def test_resize_matches_scikit_image(rng):
    image = linear_image(rng, (60, 90)).replace(transfer="srgb")
    for params in (ResizeParams(scale=0.37), ResizeParams(size=[40, 50]), ResizeParams(long_edge=150)):
        out = resize(image, params, CTX)
        ref = skimage.transform.resize(image.data.astype(np.float64), out.shape, order=1, mode="reflect", anti_aliasing=True)
        assert out.data.dtype == np.float32
        np.testing.assert_allclose(out.data, ref, atol=1e-6)


def test_resize_sizes_and_conflicts():
    assert output_size((3000, 4000), ResizeParams(long_edge=2000)) == (1500, 2000)
    assert output_size((3000, 4000), ResizeParams(scale=0.5)) == (1500, 2000)
    assert output_size((3000, 4000), ResizeParams()) == (3000, 4000)
    with pytest.raises(StageError, match="give one of scale, long_edge and size"):
        output_size((30, 40), ResizeParams(scale=0.5, long_edge=20))
    with pytest.raises(ConfigError, match=r"tuning.params.resize.scale=0.0 is out of range"):
        build(ResizeParams, {"scale": 0.0}, "tuning.params.resize")


def test_resize_without_a_size_is_the_identity(rng):
    image = linear_image(rng)
    assert resize(image, ResizeParams(), CTX) is image


@pytest.mark.parametrize(("space", "primaries"), [("srgb", 1), ("display_p3", 12)])
def test_png_records_its_colour_space(tmp_path, rng, space, primaries):
    rgb = rng.integers(0, 256, size=(8, 12, 3), dtype=np.uint8)
    path = write_png8(tmp_path / "x.png", rgb, space)
    np.testing.assert_array_equal((read_image(path) * 255).round().astype(np.uint8), rgb)
    data = path.read_bytes()
    at = data.index(b"cICP")
    assert data[at + 4 : at + 8] == bytes([primaries, 13, 0, 1])  # H.273: primaries, sRGB transfer, RGB, full range
    assert (b"sRGB" in data[: data.index(b"IDAT")]) == (space == "srgb")


@pytest.mark.gpu
def test_output_parity_numpy_cupy(rng, cupy_backend):
    image = linear_image(rng)
    gpu = StageContext(cupy_backend)
    on_gpu = image.replace(data=cupy_backend.asarray(image.data))
    for fn, params, frame in (
        (oetf, OetfParams(space="display_p3"), image),
        (resize, ResizeParams(scale=0.43), image.replace(transfer="srgb")),
    ):
        expected = fn(frame, params, CTX).data
        got = cupy_backend.to_host(fn(on_gpu.replace(transfer=frame.transfer), params, gpu).data)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_the_chart_is_measured_where_it_lands_in_a_resized_output():
    import isp

    full = isp.run(["tuning=neutral", "scene.size=[240,320]"]).metrics
    half = isp.run(["tuning=neutral", "scene.size=[240,320]", "++pipeline.params.resize.scale=0.5"]).metrics
    assert half["image"]["width"] == 160
    assert half["colorchecker"]["delta_e2000"]["mean"] == pytest.approx(full["colorchecker"]["delta_e2000"]["mean"], abs=0.3)
    assert half["snr"]["raw_green"] == full["snr"]["raw_green"], "the raw frame is measured at its own size"
