"""color_look: Oklab against colour-science, greys, identity, and hue-selective edits measured in OkLCh."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from isp.backend import get_backend, to_host
from isp.config import Table, build
from isp.errors import ConfigError, StageError
from isp.frame import CaptureInfo, Image
from isp.stages.color_look import ColorLookParams, color_look, hue_curve, oklab_to_srgb, srgb_to_oklab
from isp.stages.registry import StageContext

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # colour-science warns at import that matplotlib is absent
    import colour

WHERE = "tuning.params.color_look"
# Ottosson published his Oklab matrices for linear sRGB and for XYZ; colour-science uses the
# XYZ one, and the two disagree by up to 1.2e-4 in a and b (measured on 10^4 random colours).
# An Oklab just-noticeable difference is about 2e-3.
OKLAB_ATOL = 2e-4


def params(**values) -> ColorLookParams:
    return build(ColorLookParams, values, WHERE)


def apply(rgb: np.ndarray, backend=None, **values) -> np.ndarray:
    backend = backend or get_backend("numpy")
    image = Image(backend.asarray(np.asarray(rgb, dtype=np.float32)), "srgb", "linear", CaptureInfo("test"))
    return to_host(color_look(image, params(**values), StageContext(backend)).data)


def oklch(rgb: np.ndarray) -> np.ndarray:
    """OkLCh of linear sRGB, measured with colour-science."""
    return np.asarray(colour.Oklab_to_Oklch(colour.convert(np.asarray(rgb, dtype=np.float64), "RGB", "Oklab")))


def patches_at(hues_deg, lightness=0.7, chroma=0.1) -> np.ndarray:
    """``(1, n, 3)`` linear sRGB patches of given OkLCh, made with colour-science."""
    lch = np.stack([np.full(len(hues_deg), lightness), np.full(len(hues_deg), chroma), hues_deg], axis=-1)
    return np.asarray(colour.convert(colour.Oklch_to_Oklab(lch), "Oklab", "RGB"))[None]


def hue_difference(a_deg, b_deg):
    return (np.asarray(a_deg) - np.asarray(b_deg) + 180.0) % 360.0 - 180.0


# --- the Oklab transform -------------------------------------------------------------------


def test_oklab_matches_colour_science(rng):
    rgb = rng.uniform(-0.05, 1.2, size=(2000, 3))
    ours = srgb_to_oklab(rgb.astype(np.float32))
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, colour.convert(rgb, "RGB", "Oklab"), atol=OKLAB_ATOL)
    np.testing.assert_allclose(srgb_to_oklab(np.ones(3)), [1.0, 0.0, 0.0], atol=1e-9)


def test_oklab_round_trip_to_float32_precision(rng):
    rgb = rng.uniform(0.0, 1.0, size=(64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(oklab_to_srgb(srgb_to_oklab(rgb)), rgb, rtol=1e-5, atol=2e-6)


# --- identity and greys --------------------------------------------------------------------


def test_identity_parameters_return_the_input(rng):
    rgb = rng.uniform(0.0, 1.0, size=(16, 24, 3)).astype(np.float32)
    np.testing.assert_array_equal(apply(rgb), rgb)
    # the same neutral look written with other control hues
    np.testing.assert_array_equal(apply(rgb, hues=[10.0, 200.0], hue_shift_deg=[0, 0], hue_saturation=[1, 1], hue_lightness=[0, 0]), rgb)


def test_near_identity_runs_the_full_path_to_float32_precision(rng):
    rgb = rng.uniform(0.0, 1.0, size=(32, 48, 3)).astype(np.float32)
    out = apply(rgb, saturation=1.0 + 1e-9)  # not the identity's shortcut, yet no visible change
    np.testing.assert_allclose(out, rgb, rtol=1e-5, atol=2e-6)


def test_greys_stay_exactly_grey(backend):
    levels = np.array([0.0, 1e-6, 0.01, 0.18, 0.5, 1.0, 4.0], dtype=np.float32)
    grey = np.repeat(levels[None, :, None], 3, axis=2)
    look = {
        "saturation": 2.5,
        "hue_shift_deg": [40, -30, 20, 0, 60, -90],
        "hue_saturation": [0.2, 3.0, 1.0, 2.0, 0.5, 1.5],
        "hue_lightness": [0.5, -0.5, 0.3, 0.2, -0.4, 0.1],
    }
    out = apply(grey, backend, **look)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    np.testing.assert_allclose(out[0, :, 1], levels, rtol=1e-6)


def test_zero_saturation_gives_grey_of_the_same_oklab_lightness(rng):
    rgb = rng.uniform(0.0, 1.0, size=(8, 8, 3))
    out = apply(rgb, saturation=0.0)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    np.testing.assert_allclose(oklch(out)[..., 0], oklch(rgb)[..., 0], atol=OKLAB_ATOL)


# --- adjustments measured with colour-science's OkLCh ---------------------------------------


def test_hue_rotation_by_30_degrees():
    hues = np.arange(0.0, 360.0, 15.0)
    patches = patches_at(hues)
    out = apply(patches, hue_shift_deg=[30.0] * 6)
    before, after = oklch(patches), oklch(out)
    np.testing.assert_allclose(hue_difference(after[..., 2], before[..., 2]), 30.0, atol=0.2)
    np.testing.assert_allclose(after[..., :2], before[..., :2], atol=OKLAB_ATOL)


def test_global_saturation_scales_chroma_only():
    patches = patches_at(np.arange(0.0, 360.0, 30.0), lightness=0.6, chroma=0.08)
    before, after = oklch(patches), oklch(apply(patches, saturation=1.5))
    np.testing.assert_allclose(after[..., 1], 1.5 * before[..., 1], rtol=5e-3)
    np.testing.assert_allclose(after[..., 0], before[..., 0], atol=OKLAB_ATOL)
    np.testing.assert_allclose(hue_difference(after[..., 2], before[..., 2]), 0.0, atol=0.2)


def test_per_hue_adjustments_hit_their_hue_and_spare_the_others():
    look = {
        "hue_shift_deg": [0.0, 10.0, 0.0, 0.0, -20.0, 0.0],
        "hue_saturation": [1.0, 1.3, 1.0, 1.0, 0.8, 1.0],
        "hue_lightness": [0.0, 0.1, 0.0, 0.0, -0.1, 0.0],
    }
    patches = patches_at([60.0, 240.0, 150.0], lightness=0.7, chroma=0.1)
    after = oklch(apply(patches, **look))[0]
    expected = [[0.77, 0.13, 70.0], [0.63, 0.08, 220.0]]  # L·(1 + l), C·s, h + shift at the control hues
    np.testing.assert_allclose(after[:2, :2], np.asarray(expected)[:, :2], atol=1e-3)
    np.testing.assert_allclose(hue_difference(after[:2, 2], [70.0, 220.0]), 0.0, atol=0.2)
    # 150° lies between two untouched control hues: a shape-preserving curve leaves it alone
    np.testing.assert_allclose(after[2], oklch(patches)[0, 2], atol=1e-4)


def test_hue_lightness_fades_out_toward_grey():
    look = {"hue_lightness": [0.0, 0.3, 0.0, 0.0, 0.0, 0.0]}
    vivid, faint = patches_at([60.0], chroma=0.1), patches_at([60.0], chroma=0.004)
    gain_vivid = oklch(apply(vivid, **look))[0, 0, 0] / oklch(vivid)[0, 0, 0]
    gain_faint = oklch(apply(faint, **look))[0, 0, 0] / oklch(faint)[0, 0, 0]
    assert gain_vivid == pytest.approx(1.3, abs=1e-3)
    assert 1.0 <= gain_faint < 1.01


def test_skin_and_sky_look_on_colorchecker(shared_data):
    data = json.loads((shared_data / "colorchecker" / "colorchecker24_colour_science.json").read_text())
    patches = data["ColorChecker24 - After November 2014"]["patches"]
    rgb = np.array([p["sRGB_linear_D65_bradford"] for p in patches])[None]
    names = [p["name"] for p in patches]
    skin, sky, foliage = names.index("light skin"), names.index("blue sky"), names.index("foliage")
    look = {  # richer skin, a deeper and more saturated sky; foliage (125°) and purple (320°) held
        "hues": [38.3, 125.0, 253.1, 320.0],
        "hue_shift_deg": [0.0, 0.0, 0.0, 0.0],
        "hue_saturation": [1.15, 1.0, 1.2, 1.0],
        "hue_lightness": [0.0, 0.0, -0.08, 0.0],
    }
    before, after = oklch(rgb)[0], oklch(apply(rgb, **look))[0]
    assert after[skin, 1] / before[skin, 1] == pytest.approx(1.15, rel=5e-3)
    assert after[sky, 0] / before[sky, 0] == pytest.approx(0.92, rel=2e-3)
    assert after[sky, 1] / before[sky, 1] == pytest.approx(1.2, rel=5e-3)
    np.testing.assert_allclose(after[foliage], before[foliage], atol=1e-4)
    neutrals = slice(18, 24)  # near-greys: their hue is noise and must not pick an edit
    np.testing.assert_allclose(after[neutrals, 0], before[neutrals, 0], rtol=1e-3)


# --- the hue curves ------------------------------------------------------------------------


def test_hue_curve_is_periodic_smooth_and_does_not_overshoot():
    hues, values = [20.0, 90.0, 200.0, 300.0], [0.0, 10.0, -5.0, 0.0]
    at = np.linspace(0.0, 360.0, 3601)
    curve = hue_curve(hues, values, at)
    np.testing.assert_allclose(hue_curve(hues, values, np.array(hues)), values, atol=1e-12)
    assert curve[0] == pytest.approx(curve[-1], abs=1e-12)
    step = at[1] - at[0]
    slope_left, slope_right = (curve[-1] - curve[-2]) / step, (curve[1] - curve[0]) / step
    assert slope_left == pytest.approx(slope_right, abs=1e-3), "the slope is continuous across 0°/360°"
    assert curve.min() >= -5.0 - 1e-9 and curve.max() <= 10.0 + 1e-9


# --- parameters and input checks -----------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"hues": [0.0, 120.0], "hue_shift_deg": [0.0] * 3}, r"color_look\.hue_shift_deg: has 3 values but color_look\.hues has 2"),
        ({"hues": [0.0, 240.0, 120.0]}, r"color_look\.hues=\[0\.0, 240\.0, 120\.0\]: control hues must increase"),
        ({"hues": [360.0], "hue_shift_deg": [0], "hue_saturation": [1], "hue_lightness": [0]}, r"lie in \[0, 360\)"),
        ({"saturation": 4.0}, r"tuning\.params\.color_look\.saturation=4\.0 is out of range \[0, 3\]"),
        ({"hue_shift_deg": [0, 0, 120, 0, 0, 0]}, r"tuning\.params\.color_look\.hue_shift_deg=.* is out of range \[-90, 90\] deg"),
        ({"hue_lightness": "dark"}, r"tuning\.params\.color_look\.hue_lightness='dark': expected a list"),
    ],
)
def test_bad_parameters_are_config_errors(values, match):
    with pytest.raises(ConfigError, match=match):
        params(**values)


def test_saturation_may_be_a_table_by_iso():
    built = params(saturation={"iso": [100, 3200], "value": [1.2, 0.9]})
    assert built.saturation == Table("iso", (100.0, 3200.0), (1.2, 0.9))


def test_needs_linear_srgb():
    image = Image(np.zeros((4, 4, 3), np.float32), "srgb", "srgb", CaptureInfo("test"))
    with pytest.raises(StageError, match="'color_look' needs 'linear' transfer"):
        color_look(image, params(saturation=1.2), StageContext(get_backend("numpy")))


@pytest.mark.gpu
def test_cupy_matches_numpy(rng, cupy_backend):
    rgb = rng.uniform(-0.02, 1.1, size=(96, 128, 3)).astype(np.float32)
    rgb[:8] = rgb[:8, :, :1]  # greys, where the hue is undefined
    look = {
        "saturation": 1.3,
        "hue_shift_deg": [5, -10, 15, 0, -20, 8],
        "hue_saturation": [1.2, 0.9, 1.0, 1.4, 1.1, 0.8],
        "hue_lightness": [0.05, -0.1, 0.0, 0.1, -0.08, 0.02],
    }
    expected = apply(rgb, **look)
    got = apply(rgb, cupy_backend, **look)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# --- the fast CPU path against a plain float64 reference --------------------------------------

import isp.stages.color_look as color_look_module  # noqa: E402 - the module itself, to change its chunk size

#: Ottosson's published linear sRGB matrices, as the reference below takes them (not the stage's copy).
OTTOSSON_M1 = np.array([[0.4122214708, 0.5363325363, 0.0514459929], [0.2119034982, 0.6806995451, 0.1073969566], [0.0883024619, 0.2817188376, 0.6299787005]])
OTTOSSON_M2 = np.array([[0.2104542553, 0.7936177850, -0.0040720468], [1.9779984951, -2.4285922050, 0.4505937099], [0.0259040371, 0.7827717662, -0.8086757660]])

LOOKS = {
    "leica_authentic": {
        "saturation": 0.85,
        "hues": [30, 60, 110, 160, 235, 300],
        "hue_shift_deg": [2, 0, 0, 0, 0, 0],
        "hue_saturation": [1.0, 0.85, 0.85, 0.95, 1.05, 0.95],
        "hue_lightness": [0.0, 0.0, -0.03, 0.0, -0.06, 0.0],
    },
    "strong": {
        "saturation": 1.4,
        "hue_shift_deg": [30.0, -20.0, 10.0, 0.0, -45.0, 5.0],
        "hue_saturation": [1.2, 0.9, 1.0, 1.4, 1.1, 0.8],
        "hue_lightness": [0.05, -0.1, 0.0, 0.1, -0.08, 0.02],
    },
    "saturation_only": {"saturation": 1.3},
}
#: Largest difference from the exact curves: linear interpolation of the 0.5-degree table errs by
#: (step²/8)·curvature, most for the strong look's steep hue rotations (the float32 work adds 3e-6).
LOOK_ATOL = {"leica_authentic": 2e-5, "strong": 1.2e-4, "saturation_only": 1e-5}


def look_reference(rgb: np.ndarray, look: dict) -> np.ndarray:
    """The look as the module docstring defines it, in float64: exact curves, arctan2, cbrt."""
    p = params(**look)
    lab = np.cbrt(rgb.astype(np.float64) @ OTTOSSON_M1.T) @ OTTOSSON_M2.T
    lightness, a, b = np.moveaxis(lab, -1, 0)
    hue = np.degrees(np.arctan2(b, a)) % 360.0
    theta = np.radians(hue_curve(p.hues, p.hue_shift_deg, hue))
    scale = hue_curve(p.hues, p.hue_saturation, hue) * p.saturation
    chroma = np.minimum(np.hypot(a, b) / 0.04, 1.0)
    lightness = lightness * (1.0 + hue_curve(p.hues, p.hue_lightness, hue) * chroma * chroma * (3.0 - 2.0 * chroma))
    new_a = scale * (np.cos(theta) * a - np.sin(theta) * b)
    new_b = scale * (np.sin(theta) * a + np.cos(theta) * b)
    lms = np.stack([lightness, new_a, new_b], axis=-1) @ np.linalg.inv(OTTOSSON_M2).T
    return lms**3 @ np.linalg.inv(OTTOSSON_M1).T


def look_cases(rng) -> np.ndarray:
    """Random colours, greys, the primaries and secondaries, and colours on the a and b axes."""
    random = rng.uniform(0.0, 1.0, size=(40, 48, 3))
    random[0, :8] = np.linspace(0.0, 1.0, 8)[:, None]
    random[1, :6] = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]])
    return random.astype(np.float32)


@pytest.mark.parametrize("look", sorted(LOOKS))
def test_look_matches_a_float64_reference(rng, look):
    rgb = look_cases(rng)
    out = apply(rgb, **LOOKS[look])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, look_reference(rgb, LOOKS[look]), rtol=0.0, atol=LOOK_ATOL[look])


def test_chunks_do_not_change_the_look(rng, monkeypatch):
    rgb = look_cases(rng)
    results = []
    for pixels in (5, 333, 1 << 20):
        monkeypatch.setattr(color_look_module, "CPU_CHUNK_PIXELS", pixels)
        results.append(apply(rgb, **LOOKS["strong"]))
    np.testing.assert_array_equal(results[0], results[2])
    np.testing.assert_array_equal(results[1], results[2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_oklab_of_a_grey_has_exactly_zero_a_and_b(dtype):
    levels = np.array([0.0, 1e-7, 0.003, 0.18, 0.5, 1.0, 7.5], dtype=dtype)
    lab = srgb_to_oklab(np.repeat(levels[:, None], 3, axis=1))
    assert lab.dtype == dtype
    assert np.all(lab[:, 1:] == 0.0) and not np.any(np.signbit(lab[:, 1:]))
    np.testing.assert_allclose(lab[:, 0], np.cbrt(levels.astype(np.float64)), rtol=2e-6)


def test_hue_position_is_atan2_in_table_steps():
    """On the axes, at signed zeros and anywhere between: atan2(b, a) in [0, 360) degrees."""
    angles = np.linspace(-np.pi, np.pi, 4001)
    radii = np.array([1e-30, 1e-6, 0.01, 0.3])
    a = np.concatenate([(radii[:, None] * np.cos(angles)).ravel(), [0.0, -0.0, 0.0, -0.0, 1.0, -1.0, 0.0, -0.0]]).astype(np.float32)
    b = np.concatenate([(radii[:, None] * np.sin(angles)).ravel(), [0.0, 0.0, -0.0, -0.0, 0.0, -0.0, 1.0, -1.0]]).astype(np.float32)
    position = color_look_module._hue_position(a, b)
    steps = color_look_module.HUE_TABLE_STEPS
    expected = (np.degrees(np.arctan2(b.astype(np.float64), a.astype(np.float64))) % 360.0) * steps / 360.0
    expected[(a == 0) & (b == 0)] = 0.0  # a grey, zeros of either sign: hue 0 (its chroma is 0, so the hue acts on nothing)
    assert position.dtype == np.float32 and position.min() >= 0.0 and position.max() <= steps
    gap = np.abs(position - expected)
    np.testing.assert_array_less(np.minimum(gap, steps - gap), 2e-4)  # 360 and 0 degrees are one hue


def test_cube_root_keeps_sign_zero_and_precision():
    x = np.concatenate([np.geomspace(1e-6, 10.0, 2001), -np.geomspace(1e-6, 10.0, 11), [0.0, -0.0, np.inf]]).astype(np.float32)
    out = color_look_module._cube_root(x.copy())
    np.testing.assert_allclose(out, np.cbrt(x.astype(np.float64)), rtol=1e-6)
    assert np.signbit(out[-2]) and out[-3] == 0.0 and not np.signbit(out[-3])
