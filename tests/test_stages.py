"""Each stage against an independent check, and NumPy/CuPy parity for every registered stage."""

from __future__ import annotations

import numpy as np
import pytest

from isp import colorimetry
from isp.backend import get_backend, to_host
from isp.cfa import CFALayout
from isp.config import build
from isp.errors import StageError
from isp.frame import CaptureInfo, ColorMatrix, GainMap, Image, RawFrame
from isp.io.cube import write_cube
from isp.stages import STAGES, Stage, StageContext
from isp.stages.lut3d import bake_lut
from isp.stages.color_correction import camera_to_srgb, interpolate_calibration, saturation_matrix
from isp.stages.oetf import srgb_eotf, srgb_oetf
from isp.stages.quantize import quantize
from isp.stages.white_balance import gains_from_neutral

CTX = StageContext(get_backend("numpy"))
RESPONSE = np.array([[0.2349, 0.0803, 0.0591], [0.0564, 0.7235, 0.2201], [0.0087, 0.1588, 0.5751]])


def info(**changes) -> CaptureInfo:
    xyz_to_camera = RESPONSE @ colorimetry.XYZ_TO_SRGB
    white = RESPONSE @ np.ones(3)
    base = {"sensor": "test", "as_shot_neutral": white / white.max(), "color_matrices": (ColorMatrix(xyz_to_camera, "D65", 6504.0),)}
    return CaptureInfo(**{**base, **changes})


def stage(name: str, **params) -> Stage:
    return Stage(STAGES[name], build(STAGES[name].params, params, name))


def run(name: str, frame, **params):
    return stage(name, **params)(frame, CTX)


# --- inputs for each kind of stage ---------------------------------------------------------


def dn_frame(rng, shape=(64, 96), cfa="GRBG") -> RawFrame:
    mosaic = rng.integers(40, 1024, size=shape).astype(np.uint16)
    return RawFrame(mosaic, CFALayout.from_name(cfa), [[64, 60], [62, 66]], 1023.0, info())


def linear_frame(rng, shape=(64, 96), cfa="RGGB") -> RawFrame:
    mosaic = rng.uniform(0.0, 1.0, size=shape).astype(np.float32)
    return RawFrame(mosaic, CFALayout.from_name(cfa), 0.0, 1.0, info(), domain="linear")


def shaded_frame(rng, shape=(64, 96), cfa="GRBG") -> RawFrame:
    maps = tuple(
        GainMap(y, x, *shape, 2, 2, 0.0, 0.0, 0.25, 1 / 6, rng.uniform(1.0, 2.5, (5, 7)).astype(np.float32))
        for y in range(2)
        for x in range(2)
    )
    return linear_frame(rng, shape, cfa).replace(info=info(gain_maps=maps))


def quad_linear_frame(rng, shape=(64, 96), cfa="quad_RGGB") -> RawFrame:
    return linear_frame(rng, shape, cfa)


def balanced_frame(rng, shape=(64, 96), cfa="BGGR") -> RawFrame:
    return linear_frame(rng, shape, cfa).replace(wb_gains=np.array([2.0, 1.0, 1.5]))


def camera_image(rng, shape=(48, 64)) -> Image:
    data = rng.uniform(0.0, 1.0, size=(*shape, 3)).astype(np.float32)
    return Image(data, "camera", "linear", info(), wb_gains=np.array([2.0, 1.0, 1.5]))


def srgb_linear(rng, shape=(48, 64)) -> Image:
    return Image(rng.uniform(0.0, 1.0, size=(*shape, 3)).astype(np.float32), "srgb", "linear", info())


def srgb_encoded(rng, shape=(48, 64)) -> Image:
    return srgb_linear(rng, shape).replace(transfer="srgb")


#: For every registered stage: an input factory and non-default parameters that exercise it.
STAGE_CASES = {
    "black_level": (dn_frame, {"clip_negative": True}),
    "white_balance": (linear_frame, {"mode": "manual", "gains": [1.9, 1.0, 1.4]}),
    "demosaic": (balanced_frame, {"method": "malvar2004"}),
    "color_correction": (camera_image, {"saturation": 1.2}),
    "local_tone": (srgb_linear, {"strength": 0.8, "compression": 0.6, "detail": 1.3}),
    "tone": (srgb_linear, {"exposure_ev": 0.5, "contrast": 0.4}),
    "vignette": (srgb_linear, {"strength": 0.5, "falloff": 3.0}),
    "oetf": (srgb_linear, {"space": "display_p3"}),
    "lens_shading": (shaded_frame, {"strength": 0.7}),
    "defect_correction": (linear_frame, {"mode": "both", "threshold_sigma": 3.0, "defects": [[3, 5]]}),
    "raw_denoise": (balanced_frame, {"method": "wavelet", "strength": 1.2}),
    "remosaic": (quad_linear_frame, {"method": "directional"}),
    "color_look": (srgb_linear, {"saturation": 1.2, "hue_shift_deg": [5, -5, 0, 10, -10, 0], "hue_lightness": [0.05, 0, 0, 0, -0.1, 0]}),
    "monochrome": (srgb_linear, {"mix": [0.5, 0.4, 0.1], "toning_highlights": [1.1, 1.0, 0.9]}),
    "lut3d": (srgb_encoded, {"path": "LOOK_CUBE", "strength": 0.8}),
    "grain": (srgb_encoded, {"amount": 0.05}),
    "yuv_denoise": (srgb_encoded, {"luma_sigma": 0.05, "chroma_sigma": 0.08}),
    "false_color": (srgb_encoded, {"edge_threshold": 0.02}),
    "sharpen": (srgb_encoded, {"amount": 1.5, "threshold": 0.005}),
    "resize": (srgb_encoded, {"scale": 0.43}),
    "quantize": (srgb_encoded, {"bits": 16}),
}


def test_every_stage_has_a_parity_case():
    assert set(STAGE_CASES) == set(STAGES), "add the new stage to STAGE_CASES so that its CuPy path is held to NumPy"


def _to_backend(frame, backend):
    if isinstance(frame, RawFrame):
        return frame.replace(mosaic=backend.asarray(frame.mosaic))
    return frame.replace(data=backend.asarray(frame.data))


def _data(frame):
    return to_host(frame.mosaic if isinstance(frame, RawFrame) else frame.data)


@pytest.fixture(scope="module")
def look_cube(tmp_path_factory) -> str:
    return str(write_cube(tmp_path_factory.mktemp("lut") / "look.cube", bake_lut(lambda rgb: rgb**0.9, size=17)))


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(STAGE_CASES))
def test_stage_parity_numpy_cupy(name, rng, cupy_backend, look_cube):
    if name == "grain":
        pytest.skip("random stage: its statistical parity is in tests/test_grain_monochrome.py")
    make, params = STAGE_CASES[name]
    params = {k: look_cube if v == "LOOK_CUBE" else v for k, v in params.items()}
    frame = make(rng)
    bound = stage(name, **params)
    expected = _data(bound(frame, CTX))
    got = _data(bound(_to_backend(frame, cupy_backend), StageContext(cupy_backend)))
    assert got.dtype == expected.dtype and got.shape == expected.shape
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, expected)


# --- black level ---------------------------------------------------------------------------


def test_black_level_normalises_each_site(rng):
    frame = dn_frame(rng)
    out = run("black_level", frame)
    black = np.tile(frame.black_level, (32, 48))
    expected = (frame.mosaic.astype(np.float64) - black) / (1023.0 - black)
    np.testing.assert_allclose(out.mosaic, expected, rtol=1e-6)
    assert out.domain == "linear" and out.white_level == 1.0 and np.all(out.black_level == 0)
    assert out.mosaic.dtype == np.float32
    assert run("black_level", frame, clip_negative=True).mosaic.min() >= 0.0
    assert out.mosaic.min() < 0.0, "values below black stay negative unless clipped"


def test_black_level_needs_dn_domain(rng):
    with pytest.raises(StageError, match="'black_level' needs a raw frame in the 'dn' domain"):
        run("black_level", linear_frame(rng))


# --- white balance -------------------------------------------------------------------------


def test_as_shot_gains_make_the_neutral_grey(rng):
    frame = linear_frame(rng)
    neutral = frame.info.as_shot_neutral
    grey = frame.replace(mosaic=np.asarray(neutral, dtype=np.float32)[frame.cfa.colour_map(frame.shape)] * 0.5)
    out = run("white_balance", grey)
    np.testing.assert_allclose(out.mosaic, 0.5 * neutral.max(), rtol=1e-6)
    np.testing.assert_allclose(out.wb_gains, gains_from_neutral(neutral))
    assert out.wb_gains.min() == pytest.approx(1.0)


def test_manual_gains_and_highlight_clip(rng):
    frame = linear_frame(rng)
    out = run("white_balance", frame, mode="manual", gains=[2.0, 1.0, 3.0], clip_highlights=False)
    colour = frame.cfa.colour_map(frame.shape)
    np.testing.assert_allclose(out.mosaic, frame.mosaic * np.array([2.0, 1.0, 3.0])[colour], rtol=1e-6)
    clipped = run("white_balance", frame, mode="manual", gains=[2.0, 1.0, 3.0])
    assert clipped.mosaic.max() <= 1.0


def test_region_white_balance_neutralises_the_region(rng):
    frame = linear_frame(rng, shape=(32, 32))
    card = np.array([0.3, 0.6, 0.45], dtype=np.float32)
    mosaic = frame.mosaic.copy()
    colour = frame.cfa.colour_map(frame.shape)
    mosaic[8:20, 6:18] = card[colour[8:20, 6:18]]
    out = run("white_balance", frame.replace(mosaic=mosaic), mode="region", region=[8, 6, 20, 18])
    patch = out.mosaic[8:20, 6:18]
    assert np.ptp(patch) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(("cfa", "box"), [("RGGB", (9, 7, 21, 19)), ("quad_RGGB", (3, 3, 19, 19))])
def test_region_white_balance_reads_only_inside_an_unaligned_region(cfa, box, rng):
    frame = linear_frame(rng, shape=(32, 32), cfa=cfa)
    card = np.array([0.3, 0.6, 0.45], dtype=np.float32)
    colour = frame.cfa.colour_map(frame.shape)
    mosaic = np.full(frame.shape, 0.9, np.float32)
    top, left, bottom, right = box
    mosaic[top:bottom, left:right] = card[colour[top:bottom, left:right]]
    out = run("white_balance", frame.replace(mosaic=mosaic), mode="region", region=list(box))
    np.testing.assert_allclose(out.wb_gains, card.max() / card, rtol=1e-6)


def test_region_outside_frame_is_an_error(rng):
    with pytest.raises(StageError, match=r"white_balance.region=\[0, 0, 99, 10\]"):
        run("white_balance", linear_frame(rng, shape=(32, 32)), mode="region", region=[0, 0, 99, 10])


# --- colour correction ---------------------------------------------------------------------


def test_color_correction_inverts_the_sensor_response(rng):
    """Scene sRGB -> camera (the sensor's response) -> balance -> CCM gives the scene back."""
    scene = rng.uniform(0.0, 1.0, size=(16, 16, 3))
    camera = scene @ RESPONSE.T
    white = RESPONSE @ np.ones(3)
    gains = white.max() / white
    image = Image((camera * gains).astype(np.float32), "camera", "linear", info(), wb_gains=gains)
    out = run("color_correction", image)
    np.testing.assert_allclose(out.data, scene * white.max(), rtol=2e-5, atol=2e-6)
    assert out.space == "srgb"


def test_unbalanced_input_gets_the_balance_folded_in(rng):
    scene = rng.uniform(0.0, 1.0, size=(8, 8, 3))
    camera = (scene @ RESPONSE.T).astype(np.float32)
    out = run("color_correction", Image(camera, "camera", "linear", info()))
    np.testing.assert_allclose(out.data, scene * (RESPONSE @ np.ones(3)).max(), rtol=2e-5, atol=2e-6)


def test_saturation_matrix_keeps_white_and_luminance():
    for s in (0.0, 0.5, 1.0, 1.7):
        m = saturation_matrix(s)
        np.testing.assert_allclose(m @ np.ones(3), np.ones(3))
        np.testing.assert_allclose(colorimetry.SRGB_TO_XYZ[1] @ m, colorimetry.SRGB_TO_XYZ[1])
    grey_only = saturation_matrix(0.0) @ np.array([0.8, 0.2, 0.1])
    assert np.ptp(grey_only) == pytest.approx(0.0, abs=1e-12)


def test_dual_illuminant_interpolation_follows_the_neutral():
    """The DNG blend picks the calibration whose white the neutral is, and blends in 1/CCT between."""
    cm_a = np.array([[0.9, -0.2, -0.1], [-0.4, 1.3, 0.1], [-0.1, 0.3, 0.4]])  # tungsten-ish
    cm_d = np.array([[0.7, -0.1, -0.1], [-0.4, 1.2, 0.2], [-0.1, 0.2, 0.6]])  # daylight-ish
    cals = (ColorMatrix(cm_a, "Standard light A", 2856.0), ColorMatrix(cm_d, "D65", 6504.0))
    for cm, target in ((cm_a, 2856.0), (cm_d, 6504.0)):
        for xy in (colorimetry.D65_XY, np.array([0.44757, 0.40745])):
            neutral = cm @ colorimetry.xy_to_XYZ(xy)
            chosen, cct = interpolate_calibration(cals, neutral / neutral.max())
            if abs(cct - target) < 60:  # the neutral is that calibration's own white
                np.testing.assert_allclose(chosen.xyz_to_camera, cm, atol=2e-3)
    between = 0.5 * (cm_a + cm_d)
    neutral = between @ colorimetry.xy_to_XYZ(np.array([0.38, 0.38]))
    chosen, cct = interpolate_calibration(cals, neutral / neutral.max())
    assert 2856.0 < cct < 6504.0
    # the blended matrix maps the neutral back to a white of that CCT (fixed point reached)
    xy = colorimetry.XYZ_to_xy(np.linalg.solve(chosen.xyz_to_camera, neutral))
    assert colorimetry.xy_to_cct(xy) == pytest.approx(cct, rel=1e-4)


def test_two_calibrations_at_one_temperature_need_no_interpolation():
    cm = np.array([[0.7, -0.1, -0.1], [-0.4, 1.2, 0.2], [-0.1, 0.2, 0.6]])
    cals = (ColorMatrix(cm * 1.01, "Daylight", 5500.0), ColorMatrix(cm, "Flash", 5500.0))
    neutral = cm @ colorimetry.xy_to_XYZ(colorimetry.D65_XY)
    chosen, cct = interpolate_calibration(cals, neutral / neutral.max())
    assert np.all(np.isfinite(chosen.xyz_to_camera)) and cct == pytest.approx(6504, rel=0.01)


def test_camera_matrix_matches_libraw_for_a_single_d65_matrix():
    """LibRaw's rgb_cam for the Canon 550D DNG (ColorMatrix1 only), as rawpy reports it."""
    cm = np.array([[0.6461, -0.1164, -0.0857], [-0.3825, 1.1597, 0.2534], [-0.0416, 0.154, 0.6039]])
    libraw_rgb_cam = np.array([[1.8177627, -0.9643030, 0.1465403], [-0.2289201, 1.7737942, -0.5448741], [-0.0195407, -0.4681417, 1.4876823]])
    neutral = cm @ colorimetry.xy_to_XYZ(colorimetry.D65_XY)
    ours = camera_to_srgb(info(color_matrices=(ColorMatrix(cm),)), neutral / neutral.max())
    np.testing.assert_allclose(ours, libraw_rgb_cam, atol=2e-3)


def test_color_correction_without_calibration_is_an_error(rng):
    image = camera_image(rng).replace(info=info(color_matrices=()))
    with pytest.raises(StageError, match="no colour calibration"):
        run("color_correction", image)


# --- tone, vignette, oetf, quantize --------------------------------------------------------


def test_tone_defaults_are_the_identity(rng):
    image = srgb_linear(rng)
    np.testing.assert_array_equal(run("tone", image).data, image.data)


def test_tone_exposure_and_contrast(rng):
    image = srgb_linear(rng)
    np.testing.assert_allclose(run("tone", image, exposure_ev=1.0).data, np.minimum(image.data * 2.0, 1.0), rtol=1e-6)
    ramp = np.linspace(0.0, 1.0, 257, dtype=np.float32)
    image = Image(np.repeat(ramp[None, :, None], 3, axis=2), "srgb", "linear", info())
    curve = run("tone", image, contrast=0.5).data[0, :, 0]
    assert np.all(np.diff(curve) >= 0), "the S-curve is monotonic"
    mid = 0.18
    assert curve[0] == 0.0 and curve[-1] == pytest.approx(1.0)
    assert np.interp(mid, ramp, curve) == pytest.approx(mid, rel=1e-3), "the pivot is mid-grey, 0.18"
    dark, bright = ramp < mid * 0.8, (ramp > mid * 1.2) & (ramp < 0.9)
    assert np.all(curve[dark] <= ramp[dark]) and np.all(curve[bright] >= ramp[bright])


def test_vignette_profile(rng):
    image = Image(np.ones((41, 61, 3), np.float32), "srgb", "linear", info())
    out = run("vignette", image, strength=0.4, falloff=2.0).data
    assert out[20, 30, 0] == pytest.approx(1.0)
    for y, x in ((0, 0), (0, 60), (40, 0), (40, 60)):
        assert out[y, x, 1] == pytest.approx(0.6, rel=1e-5)
    half = np.hypot(10, 15) / np.hypot(20, 30)
    assert out[10, 15, 2] == pytest.approx(1 - 0.4 * half**2, rel=1e-5)


def test_srgb_curve_matches_colour_science(rng):
    import colour

    x = np.concatenate([np.linspace(0, 0.01, 50), rng.uniform(0, 1, 500)])
    np.testing.assert_allclose(srgb_oetf(x), colour.cctf_encoding(x, function="sRGB"), atol=1e-12)
    np.testing.assert_allclose(srgb_eotf(srgb_oetf(x)), x, atol=1e-12)
    assert srgb_oetf(np.array([-0.5, 2.0])).tolist() == pytest.approx([0.0, 1.0], abs=1e-15)


def test_oetf_stage_tags_and_values(rng):
    image = srgb_linear(rng)
    out = run("oetf", image)
    assert out.transfer == "srgb"
    np.testing.assert_allclose(out.data, srgb_oetf(image.data), rtol=1e-6)
    with pytest.raises(StageError, match="'oetf' needs 'linear' transfer"):
        run("oetf", out)


def test_quantize_rounds_to_nearest_code():
    values = np.array([0.0, 0.51 / 255, 0.49 / 255, 254.5 / 255, 1.0, 1.5, -0.2])
    assert quantize(values, 8).tolist() == [0, 1, 0, 254, 255, 255, 0]  # ties to even, as rint
    assert quantize(np.array([0.5]), 16).tolist() == [32768]
    assert quantize(np.array([0.5]), 16).dtype == np.uint16


def test_quantize_stage_refuses_integer_input(rng):
    out = run("quantize", srgb_encoded(rng), bits=8)
    assert out.data.dtype == np.uint8
    with pytest.raises(StageError, match="already quantised"):
        run("quantize", out)


def test_quantize_chunks_do_not_change_codes(rng, monkeypatch):
    import isp.stages.quantize as module

    values = rng.uniform(-0.1, 1.1, size=(37, 29, 3))
    expected = np.rint(np.clip(values, 0, 1) * 255).astype(np.uint8)
    for size in (7, 1 << 20):
        monkeypatch.setattr(module, "CPU_CHUNK_VALUES", size)
        np.testing.assert_array_equal(module.quantize(values, 8), expected)
