"""grain: measured strength, size (autocorrelation) and determinism; monochrome: against Rec. 709."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from isp.backend import get_backend, to_host
from isp.config import build
from isp.errors import ConfigError, StageError
from isp.frame import CaptureInfo, Image
from isp.stages.grain import GrainParams, grain
from isp.stages.monochrome import REC709_LUMINANCE, MonochromeParams, monochrome
from isp.stages.registry import StageContext

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # colour-science warns at import that matplotlib is absent
    import colour

SRGB = colour.RGB_COLOURSPACES["sRGB"]


def image(data, backend, transfer: str) -> Image:
    return Image(backend.asarray(np.asarray(data, dtype=np.float32)), "srgb", transfer, CaptureInfo("test"))


def add_grain(data, backend=None, seed: int = 7, **values) -> np.ndarray:
    backend = backend or get_backend("numpy")
    params = build(GrainParams, values, "tuning.params.grain")
    return to_host(grain(image(data, backend, "srgb"), params, StageContext(backend, seed=seed)).data)


def flat(level: float, shape=(512, 512)) -> np.ndarray:
    return np.full((*shape, 3), level, dtype=np.float32)


def autocorrelation(field: np.ndarray) -> np.ndarray:
    """Normalised circular autocorrelation of a 2D field (Wiener-Khinchin)."""
    centred = field - field.mean()
    power = np.abs(np.fft.fft2(centred)) ** 2
    corr = np.real(np.fft.ifft2(power))
    return corr / corr[0, 0]


# --- grain ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("size_px", "luma_only"), [(0.0, True), (1.5, True), (1.5, False)])
def test_grain_std_at_mid_grey_is_amount(backend, size_px, luma_only):
    out = add_grain(flat(0.5), backend, amount=0.03, size_px=size_px, luma_only=luma_only)
    assert out.dtype == np.float32
    std = (out - 0.5).reshape(-1, 3).std(axis=0)
    np.testing.assert_allclose(std, 0.03, rtol=0.03)
    assert abs(float((out - 0.5).mean())) < 1e-3


def test_grain_follows_the_midtone_envelope():
    # 4·v·(1 - v): 0.75 of the mid-grey strength at v = 0.25 and v = 0.75
    for level in (0.25, 0.75):
        std = float((add_grain(flat(level), amount=0.04, size_px=0.0) - level).std())
        assert std == pytest.approx(0.75 * 0.04, rel=0.03)


def test_black_and_white_are_untouched(backend):
    data = flat(0.0, (64, 64))
    data[:, 32:] = 1.0
    data[:8] = 0.5
    out = add_grain(data, backend, amount=0.2, size_px=1.0, luma_only=False)
    np.testing.assert_array_equal(out[8:], data[8:])
    assert np.any(out[:8] != 0.5) and out.min() >= 0.0 and out.max() <= 1.0


def test_same_seed_same_grain_other_seed_other_grain(backend):
    data = np.random.default_rng(3).uniform(0.1, 0.9, size=(96, 128, 3))
    first = add_grain(data, backend, seed=11, amount=0.05, size_px=1.0)
    np.testing.assert_array_equal(add_grain(data, backend, seed=11, amount=0.05, size_px=1.0), first)
    other = add_grain(data, backend, seed=12, amount=0.05, size_px=1.0)
    correlation = np.corrcoef((first - data).ravel(), (other - data).ravel())[0, 1]
    assert abs(correlation) < 0.05


@pytest.mark.parametrize("size_px", [1.0, 2.0, 3.0])
def test_grain_autocorrelation_matches_the_gaussian_low_pass(size_px):
    # white noise through a Gaussian of sigma s has autocorrelation exp(-d² / (4 s²))
    field = add_grain(flat(0.5), amount=0.05, size_px=size_px)[..., 0]
    corr = autocorrelation(field)
    for lag in (1, 2, 4):
        expected = np.exp(-(lag**2) / (4.0 * size_px**2))
        assert corr[0, lag] == pytest.approx(expected, abs=0.03), f"row lag {lag}"
        assert corr[lag, 0] == pytest.approx(expected, abs=0.03), f"column lag {lag}"


def test_grain_width_grows_with_size():
    def half_width(size_px: float) -> int:
        corr = autocorrelation(add_grain(flat(0.5), amount=0.05, size_px=size_px)[..., 0])[0]
        return int(np.argmax(corr < 0.5))

    widths = [half_width(s) for s in (0.0, 1.0, 2.0, 4.0)]
    assert widths == sorted(widths) and widths[0] == 1 and widths[-1] > widths[1] > widths[0]


def test_luma_only_grain_is_neutral_and_colour_grain_is_not():
    mono = add_grain(flat(0.5, (128, 128)), amount=0.05)
    assert np.array_equal(mono[..., 0], mono[..., 1]) and np.array_equal(mono[..., 1], mono[..., 2])
    colour_grain = add_grain(flat(0.5, (128, 128)), amount=0.05, luma_only=False) - 0.5
    correlation = np.corrcoef(colour_grain[..., 0].ravel(), colour_grain[..., 2].ravel())[0, 1]
    assert abs(correlation) < 0.1


def test_zero_amount_is_the_identity():
    data = np.random.default_rng(5).uniform(0.0, 1.0, size=(16, 16, 3))
    np.testing.assert_array_equal(add_grain(data, amount=0.0), data.astype(np.float32))


def test_grain_parameters_and_input():
    with pytest.raises(ConfigError, match=r"tuning\.params\.grain\.amount=0\.5 is out of range \[0, 0\.25\]"):
        build(GrainParams, {"amount": 0.5}, "tuning.params.grain")
    with pytest.raises(ConfigError, match=r"tuning\.params\.grain\.size_px=-1\.0 is out of range \[0, 8\] px"):
        build(GrainParams, {"size_px": -1.0}, "tuning.params.grain")
    backend = get_backend("numpy")
    with pytest.raises(StageError, match=r"'grain' needs 'srgb' transfer"):
        grain(image(flat(0.5, (4, 4)), backend, "linear"), GrainParams(amount=0.1), StageContext(backend))


# --- monochrome ----------------------------------------------------------------------------


def to_mono(data, backend=None, **values) -> np.ndarray:
    backend = backend or get_backend("numpy")
    params = build(MonochromeParams, values, "tuning.params.monochrome")
    return to_host(monochrome(image(data, backend, "linear"), params, StageContext(backend)).data)


def test_output_channels_are_equal(backend, rng):
    out = to_mono(rng.uniform(0.0, 1.2, size=(32, 48, 3)), backend, mix=[0.5, 0.4, 0.1])
    assert out.dtype == np.float32
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_default_mix_is_rec709_luminance(rng):
    rgb = rng.uniform(0.0, 1.0, size=(32, 48, 3))
    reference = colour.RGB_luminance(rgb, SRGB.primaries, SRGB.whitepoint)
    np.testing.assert_allclose(to_mono(rgb)[..., 0], reference, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(REC709_LUMINANCE, [0.2126, 0.7152, 0.0722], atol=1e-4)  # ITU-R BT.709-6 item 3.2


@pytest.mark.parametrize("mix", [[0.2126, 0.7152, 0.0722], [2.0, 1.0, 0.0], [1.2, 0.3, -0.4]])
def test_grey_in_grey_out(mix):
    levels = np.array([0.0, 1e-5, 0.18, 0.5, 1.0, 3.0])
    grey = np.repeat(levels[None, :, None], 3, axis=2)
    np.testing.assert_array_equal(to_mono(grey, mix=mix), grey.astype(np.float32))


def test_red_filter_mix_is_normalised():
    red_sky = np.array([[[0.6, 0.2, 0.1], [0.1, 0.2, 0.6]]])  # a red and a blue patch
    out = to_mono(red_sky, mix=[2.0, 1.0, 0.0])[0, :, 0]
    np.testing.assert_allclose(out, [(2 * 0.6 + 0.2) / 3, (2 * 0.1 + 0.2) / 3], rtol=1e-6)
    neutral = to_mono(red_sky)[0, :, 0]
    assert out[0] > neutral[0] and out[1] < neutral[1], "a red filter lightens reds and darkens blues"


def test_split_toning_keeps_luminance_and_tints_the_ends(rng):
    rgb = rng.uniform(0.0, 1.0, size=(32, 48, 3))
    rgb[0, 0], rgb[0, 1], rgb[0, 2] = 0.0, 1.0, 0.005
    warm, cool = [1.15, 1.0, 0.8], [0.9, 1.0, 1.2]
    out = to_mono(rgb, toning_shadows=cool, toning_highlights=warm)
    grey = colour.RGB_luminance(rgb, SRGB.primaries, SRGB.whitepoint)
    np.testing.assert_allclose(colour.RGB_luminance(out, SRGB.primaries, SRGB.whitepoint), grey, rtol=1e-5, atol=1e-7)
    white = out[0, 1]
    np.testing.assert_allclose(white / white[1], np.asarray(warm) / warm[1], rtol=1e-6)  # white takes the highlight tint
    assert np.all(out[0, 0] == 0.0)
    assert out[0, 2, 2] > out[0, 2, 1] > out[0, 2, 0], "a deep shadow leans to the cool tint"


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"mix": [0.0, 0.0, 0.0]}, r"monochrome\.mix=\[0\.0, 0\.0, 0\.0\] sums to 0; .* must be positive"),
        ({"mix": [1.0, -1.0, 0.0]}, r"sums to 0; the weights are normalised to sum 1"),
        ({"mix": [0.3, 0.7]}, r"tuning\.params\.monochrome\.mix: expected shape \(3,\)"),
        ({"mix": [5.0, 1.0, 1.0]}, r"tuning\.params\.monochrome\.mix=.* is out of range \[-2, 3\]"),
        ({"toning_highlights": [1.0, 1.0, 0.0]}, r"tuning\.params\.monochrome\.toning_highlights=.* is out of range \[0\.25, 4\]"),
    ],
)
def test_bad_mix_and_toning_are_config_errors(values, match):
    with pytest.raises(ConfigError, match=match):
        build(MonochromeParams, values, "tuning.params.monochrome")


def test_monochrome_needs_linear_srgb():
    backend = get_backend("numpy")
    with pytest.raises(StageError, match=r"'monochrome' needs 'linear' transfer"):
        monochrome(image(flat(0.5, (4, 4)), backend, "srgb"), MonochromeParams(), StageContext(backend))


@pytest.mark.gpu
def test_monochrome_cupy_matches_numpy(rng, cupy_backend):
    rgb = rng.uniform(0.0, 1.0, size=(96, 128, 3))
    look = {"mix": [0.5, 0.4, 0.1], "toning_shadows": [0.9, 1.0, 1.2], "toning_highlights": [1.1, 1.0, 0.85]}
    expected = to_mono(rgb, **look)
    got = to_mono(rgb, cupy_backend, **look)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
