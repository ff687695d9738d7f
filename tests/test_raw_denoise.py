"""Raw denoise and the noise model it shares with defect correction.

Independent checks: the noise model against the DNG formula and against measured noise of
Poisson-Gaussian frames; the à trous band noise against Starck et al.'s published table; each
method against a direct per-pixel implementation of its documented formula (SciPy filters or
plain loops); the ISO 3200 acceptance on the simulated IMX989 (grey-patch SNR at least 2×, PSNR
against the noise-free capture up); a step edge's 10-90 % rise; Quad Bayer; errors; parity.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.ndimage as ndi

from isp.backend import get_backend, to_host
from isp.cfa import CFALayout, G
from isp.config import build, compose
from isp.errors import ConfigError, StageError
from isp.frame import CaptureInfo, RawFrame
from isp.metrics.noise import detrended_snr, neutral_patches
from isp.scene import build_scene_params, render_scene
from isp.sensor import build_sensor, capture, ideal_capture
from isp.stages.black_level import BlackLevelParams, black_level
from isp.stages.noise_model import NoiseModel, estimate_noise_profile, noise_model, noise_sigma, site_planes
import isp.stages.raw_denoise as raw_denoise_module
from isp.stages.raw_denoise import (
    _KERNEL_METHODS,
    RAW_DENOISE_METHODS,
    RawDenoiseParams,
    band_noise_gains,
    raw_denoise,
    raw_denoise_mosaic,
)
from isp.stages.registry import STAGES, Stage, StageContext
from isp.stages.white_balance import WhiteBalanceParams, white_balance

from .kernel_emulation import emulate_kernel

CTX = StageContext(get_backend("numpy"))
METHODS = sorted(RAW_DENOISE_METHODS)
#: The IMX989's noise profile at ISO 3200 (binned): 1540 e- at white, 3.5 e- read noise.
ISO3200_PROFILE = ((6.5e-4, 5.3e-7),)


def params(**values) -> RawDenoiseParams:
    return build(RawDenoiseParams, values, "tuning.params.raw_denoise")


def poisson_frame(level: np.ndarray, cfa: str = "RGGB", seed: int = 0, profile=ISO3200_PROFILE, **changes) -> RawFrame:
    """Poisson-Gaussian noise around ``level`` (unbalanced), described by ``profile``."""
    shot, read = profile[0]
    rng = np.random.default_rng(seed)
    mosaic = rng.poisson(np.maximum(level, 0.0) / shot) * shot + rng.normal(0.0, np.sqrt(read), level.shape)
    info = CaptureInfo("synthetic", iso=3200.0, noise_profile=profile)
    return RawFrame(mosaic.astype(np.float32), CFALayout.from_name(cfa), 0.0, 1.0, info, domain="linear", **changes)


def psnr(estimate: np.ndarray, truth: np.ndarray) -> float:
    return float(10.0 * np.log10(1.0 / np.mean((estimate.astype(np.float64) - truth) ** 2)))


# -- the noise model ---------------------------------------------------------------------------


def test_noise_sigma_is_the_dng_profile_through_the_gains():
    """sigma = g·sqrt(S·v/g + O), g the white-balance gain of the pixel's colour times shading."""
    cfa = CFALayout.from_name("GBRG")
    rng = np.random.default_rng(1)
    mosaic = rng.uniform(-0.01, 1.5, (8, 12)).astype(np.float32)
    profile = ((2e-4, 1e-6), (1e-4, 2e-6), (3e-4, 3e-6))  # R, G, B
    wb = np.array([2.1, 1.0, 1.7])
    shading = rng.uniform(1.0, 2.5, (8, 12)).astype(np.float32)
    frame = RawFrame(mosaic, cfa, 0.0, 1.0, CaptureInfo("t", noise_profile=profile), domain="linear", wb_gains=wb, shading_gain=shading)
    colour = cfa.colour_map(mosaic.shape)
    s, o = np.moveaxis(np.array(profile)[colour], -1, 0)
    g = wb[colour] * shading
    expected = g * np.sqrt(s * np.maximum(mosaic, 0.0) / g + o)
    np.testing.assert_allclose(noise_sigma(frame, np), expected, rtol=1e-5)
    plain = frame.replace(wb_gains=None, shading_gain=None)
    np.testing.assert_allclose(noise_sigma(plain, np), np.sqrt(s * np.maximum(mosaic, 0.0) + o), rtol=1e-5)


def test_noise_sigma_matches_the_measured_noise_of_gained_frames():
    levels = np.repeat(np.array([0.02, 0.1, 0.3, 0.6]), 128)[:, None] * np.ones((1, 256))
    frame = poisson_frame(levels, seed=2)
    wb = np.array([1.9, 1.0, 1.5])
    balanced = frame.replace(mosaic=frame.cfa.apply_per_site(frame.mosaic, scale=frame.cfa.per_site(wb)), wb_gains=wb)
    truth = frame.cfa.apply_per_site(levels.astype(np.float32), scale=frame.cfa.per_site(wb))
    residual = balanced.mosaic - truth
    sigma = noise_sigma(balanced, np, level=truth)
    colour = frame.cfa.colour_map(levels.shape)
    for band in range(4):
        rows = slice(band * 128, (band + 1) * 128)
        for c in range(3):
            mask = colour[rows] == c
            measured = residual[rows][mask].std()
            # the standard error of a standard deviation from n samples is sigma / sqrt(2n)
            assert measured == pytest.approx(sigma[rows][mask].mean(), rel=4.0 / np.sqrt(2 * mask.sum())), (band, c)


def test_the_noise_profile_is_estimated_when_the_frame_has_none():
    ramp = np.linspace(0.02, 0.85, 512)[None, :] * np.ones((512, 1))
    frame = poisson_frame(ramp, profile=((1e-3, 9e-6),), seed=3)
    slope, _ = estimate_noise_profile(frame.mosaic, frame.cfa)
    np.testing.assert_allclose(slope, 1e-3, rtol=0.1)
    blind = frame.replace(info=CaptureInfo("no profile"))
    model = noise_model(blind, np)
    assert model.estimated and not noise_model(frame, np).estimated
    truth = np.sqrt(1e-3 * ramp + 9e-6)
    np.testing.assert_allclose(model.sigma(ramp.astype(np.float32))[:, 32:], truth[:, 32:], rtol=0.1)


def test_a_noise_profile_of_another_length_is_an_error():
    frame = poisson_frame(np.full((4, 4), 0.2), profile=((1e-3, 1e-5), (1e-3, 1e-5)))
    with pytest.raises(StageError, match="one \\(S, O\\) pair or one per colour"):
        noise_sigma(frame, np)


# -- each method against its documented formula ----------------------------------------------


def test_band_noise_gains_match_the_published_table():
    # Starck, Murtagh and Bijaoui 1998, B3-spline à trous in 2-D: 0.889, 0.200, 0.086
    np.testing.assert_allclose(band_noise_gains(3), [0.889, 0.200, 0.086], rtol=0.01)


def scipy_wavelet(frame: RawFrame, strength: float, gains: list[float]) -> np.ndarray:
    """The documented wavelet shrinkage from SciPy's filters (mirrored borders) on each site
    plane, in float64; ``gains`` are the bands' white-noise gains."""
    planes = site_planes(frame.mosaic, frame.cfa).astype(np.float64)
    model = noise_model(frame, np)
    level = np.maximum(ndi.uniform_filter(planes, (1, 5, 5), mode="mirror"), 0)
    variance = (site_planes(model.slope, frame.cfa) * level + site_planes(model.offset, frame.cfa)) * strength**2
    b3 = np.array([1, 4, 6, 4, 1]) / 16.0
    coarse, result = planes, 0.0
    for j, gain in enumerate(gains):
        kernel = np.zeros(4 * 2**j + 1)
        kernel[:: 2**j] = b3
        smooth = ndi.correlate1d(ndi.correlate1d(coarse, kernel, axis=1, mode="mirror"), kernel, axis=2, mode="mirror")
        detail = coarse - smooth
        energy = ndi.uniform_filter(detail**2, (1, 5, 5), mode="mirror")
        result = result + detail * np.maximum(energy - variance * gain**2, 0) / np.maximum(energy, 1e-300)
        coarse = smooth
    expected = np.zeros(frame.shape)
    th, tw = frame.cfa.tile_shape
    for k, plane in enumerate(result + coarse):
        expected[k // tw :: th, k % tw :: tw] = plane
    return expected


def impulse_band_gains(levels: int) -> list[float]:
    """Each band's noise gain from SciPy's transform of a unit impulse (its l2 norm)."""
    impulse = np.zeros((1, 4 * 2**levels + 1, 4 * 2**levels + 1))
    impulse[0, 2 * 2**levels, 2 * 2**levels] = 1.0
    b3 = np.array([1, 4, 6, 4, 1]) / 16.0
    coarse, gains = impulse, []
    for j in range(levels):
        kernel = np.zeros(4 * 2**j + 1)
        kernel[:: 2**j] = b3
        smooth = ndi.correlate1d(ndi.correlate1d(coarse, kernel, axis=1, mode="constant"), kernel, axis=2, mode="constant")
        gains.append(float(np.sqrt(np.sum((coarse - smooth) ** 2))))
        coarse = smooth
    return gains


def test_wavelet_is_the_a_trous_wiener_shrinkage():
    """A reference built from SciPy's filters (mirrored borders) on each site plane."""
    rng = np.random.default_rng(4)
    level = ndi.zoom(rng.uniform(0.05, 0.6, (12, 16)), 4, order=1)
    frame = poisson_frame(level, seed=5)
    out = raw_denoise(frame, params(method="wavelet", strength=1.3), CTX).mosaic
    expected = scipy_wavelet(frame, 1.3, [0.889, 0.200, 0.086])
    # the table's rounded band gains move the shrinkage slightly
    np.testing.assert_allclose(out, expected, atol=2e-4)


@pytest.mark.parametrize(
    ("cfa", "shape", "levels"),
    [("GRBG", (12, 10), 3), ("quad_RGGB", (16, 24), 4), ("RGGB", (200, 136), 3)],
    ids=["bayer-6x5-planes", "quad-4x6-planes", "bayer-several-tiles"],
)
def test_wavelet_matches_scipy_in_float32_rounding(cfa, shape, levels):
    """With exact band gains the float32 path equals SciPy's float64 one to rounding, also on
    planes smaller than the transform's reach (mirrored many times over) and across the
    NumPy path's cache tiles."""
    rng = np.random.default_rng(17)
    frame = poisson_frame(rng.uniform(0.05, 0.7, shape), cfa=cfa, seed=18)
    out = raw_denoise(frame, params(method="wavelet", strength=1.1, levels=levels), CTX).mosaic
    np.testing.assert_allclose(out, scipy_wavelet(frame, 1.1, impulse_band_gains(levels)), rtol=0, atol=1e-6)


def test_wavelet_cache_tiles_do_not_change_the_result(monkeypatch):
    """The NumPy path's tiles (with their mirrored halos) give the whole planes' result bit for bit."""
    frame = poisson_frame(np.random.default_rng(19).uniform(0.05, 0.7, (72, 100)), cfa="quad_BGGR", seed=20)
    p = params(method="wavelet", levels=3)
    whole = raw_denoise(frame, p, CTX).mosaic
    monkeypatch.setattr(raw_denoise_module, "_CPU_TILE", (20, 28))  # 5x7 same-site pixels
    np.testing.assert_array_equal(raw_denoise(frame, p, CTX).mosaic, whole)


def test_nlm_is_the_documented_weighted_mean():
    """Plain loops over the formula, on pixels whose windows lie inside the frame."""
    rng = np.random.default_rng(6)
    level = ndi.zoom(rng.uniform(0.05, 0.6, (5, 6)), 6, order=1)
    frame = poisson_frame(level, seed=7)
    p = params(method="nlm", radius=1, patch_radius=2, strength=1.5)
    out = raw_denoise(frame, p, CTX).mosaic
    v = frame.mosaic.astype(np.float64)
    a, b = ISO3200_PROFILE[0]
    u = 2.0 / a * np.sqrt(np.maximum(a * v + 0.375 * a * a + b, 0.0))  # generalised Anscombe
    h2 = (0.35 * 1.5) ** 2
    margin = 2 + 2
    for y in range(margin, v.shape[0] - margin):
        for x in range(margin, v.shape[1] - margin):
            weights, values = [], []
            for dy in (-2, 0, 2):
                for dx in (-2, 0, 2):
                    if dy == dx == 0:
                        continue
                    d2 = np.mean((u[y + dy - 2 : y + dy + 3, x + dx - 2 : x + dx + 3] - u[y - 2 : y + 3, x - 2 : x + 3]) ** 2)
                    weights.append(np.exp(-max(d2 - 2.0, 0.0) / h2))
                    values.append(v[y + dy, x + dx])
            centre = max(*weights, 1e-30)  # the centre weight's documented floor
            expected = (np.dot(weights, values) + centre * v[y, x]) / (sum(weights) + centre)
            assert out[y, x] == pytest.approx(expected, rel=1e-4, abs=1e-6), (y, x)


def test_bilateral_is_the_documented_weighted_mean():
    rng = np.random.default_rng(8)
    level = ndi.zoom(rng.uniform(0.05, 0.6, (5, 6)), 6, order=0)
    frame = poisson_frame(level, cfa="BGGR", seed=9)
    p = params(method="bilateral", radius=2, spatial_sigma=1.3, strength=0.8)
    out = raw_denoise(frame, p, CTX).mosaic
    v = frame.mosaic.astype(np.float64)
    a, b = ISO3200_PROFILE[0]
    for y in range(6, v.shape[0] - 6):
        for x in range(6, v.shape[1] - 6):
            level_3x3 = v[y - 2 : y + 3 : 2, x - 2 : x + 3 : 2].mean()
            width = 2.0 * 0.8 * np.sqrt(a * max(level_3x3, 0.0) + b)
            dy, dx = np.mgrid[-2:3, -2:3]
            neighbours = v[y - 4 : y + 5 : 2, x - 4 : x + 5 : 2]
            weights = np.exp(-(dy**2 + dx**2) / (2 * 1.3**2)) * np.exp(-((neighbours - v[y, x]) ** 2) / (2 * width**2))
            assert out[y, x] == pytest.approx(np.sum(weights * neighbours) / weights.sum(), rel=1e-4, abs=1e-6), (y, x)


# -- the acceptance: ISO 3200 on the simulated IMX989 ---------------------------------------------


@functools.cache
def imx989_iso3200(shape=(480, 640)):
    """The ColorChecker through the IMX989 (binned) at ISO 3200, linear and white balanced:
    the noisy capture, the noise-free one, and the chart's patches."""
    cfg = compose(["sensor.iso=3200", f"scene.size=[{shape[0]},{shape[1]}]"])
    sensor = build_sensor(cfg.sensor)
    backend = get_backend("numpy")
    scene = render_scene(build_scene_params(cfg.scene), sensor.readout, sensor.cfa.tile_shape, backend)

    def linear(raw: RawFrame) -> RawFrame:
        return white_balance(black_level(raw, BlackLevelParams(), CTX), build(WhiteBalanceParams, {}, "wb"), CTX)

    noisy = capture(scene.linear_rgb, sensor, backend, seed=1, luminance_cd_m2=scene.luminance_cd_m2)
    ideal = ideal_capture(scene.linear_rgb, sensor, backend, luminance_cd_m2=scene.luminance_cd_m2)
    return linear(noisy), linear(ideal), scene.patches


def grey_patch_snr(frame: RawFrame, patches) -> np.ndarray:
    """SNR of each neutral patch on the green sites (mean over the std after a fitted plane)."""
    green = frame.cfa.colour_map(frame.shape) == G
    snr = []
    for patch in neutral_patches(patches):
        rows, cols = patch.centre(0.5)
        mask = green[rows, cols]
        yy, xx = np.nonzero(mask)
        mean, noise = detrended_snr(frame.mosaic[rows, cols][mask], yy, xx)
        snr.append(mean / noise)
    return np.array(snr)


@pytest.mark.parametrize("method", METHODS)
def test_iso3200_grey_patch_snr_at_least_doubles_and_psnr_rises(method):
    noisy, ideal, patches = imx989_iso3200()
    out = raw_denoise(noisy, params(method=method), CTX)
    gain = grey_patch_snr(out, patches) / grey_patch_snr(noisy, patches)
    assert len(gain) >= 4 and gain.min() >= 2.0, f"{method}: SNR gain per grey patch {np.round(gain, 2)}"
    before, after = psnr(noisy.mosaic, ideal.mosaic), psnr(out.mosaic, ideal.mosaic)
    assert after > before + 5.0, f"{method}: PSNR against the noise-free capture {before:.2f} -> {after:.2f} dB"


@pytest.mark.data
@pytest.mark.parametrize("method", ["wavelet", "bilateral"])
def test_fine_texture_gains_psnr(shared_data, method):
    """A Kodak scene at the sensor's native sampling: fine texture near the noise level."""
    cfg = compose(["sensor.iso=3200", "scene=image", f"scene.path={shared_data / 'kodak' / 'kodim08.png'}"])
    sensor = build_sensor(cfg.sensor)
    backend = get_backend("numpy")
    scene = render_scene(build_scene_params(cfg.scene), sensor.readout, sensor.cfa.tile_shape, backend)

    def linear(raw: RawFrame) -> RawFrame:
        return white_balance(black_level(raw, BlackLevelParams(), CTX), build(WhiteBalanceParams, {}, "wb"), CTX)

    noisy = linear(capture(scene.linear_rgb, sensor, backend, seed=2, luminance_cd_m2=scene.luminance_cd_m2))
    ideal = linear(ideal_capture(scene.linear_rgb, sensor, backend, luminance_cd_m2=scene.luminance_cd_m2))
    out = raw_denoise(noisy, params(method=method), CTX)
    assert psnr(out.mosaic, ideal.mosaic) > psnr(noisy.mosaic, ideal.mosaic) + 0.3


def rise_10_90(profile: np.ndarray) -> float:
    """Distance in pixels between the 10 % and 90 % crossings of a rising edge profile."""
    low, high = profile[:8].mean(), profile[-8:].mean()
    positions = np.arange(profile.size, dtype=np.float64)

    def crossing(fraction: float) -> float:
        target = low + fraction * (high - low)
        i = int(np.argmax(profile >= target))
        return positions[i - 1] + (target - profile[i - 1]) / (profile[i] - profile[i - 1])

    return crossing(0.9) - crossing(0.1)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("blur_px", [0.0, 1.5])
def test_a_step_edge_keeps_its_rise(method, blur_px):
    cols = np.arange(128)
    edge = (cols >= 64).astype(np.float64) if blur_px == 0 else ndi.gaussian_filter1d((cols >= 64).astype(np.float64), blur_px)
    level = (0.08 + 0.32 * edge)[None, :] * np.ones((512, 1))
    frame = poisson_frame(level, seed=10)
    out = raw_denoise(frame, params(method=method), CTX).mosaic
    before, after = rise_10_90(frame.mosaic.mean(axis=0)), rise_10_90(out.mean(axis=0))
    assert abs(after - before) <= 1.0, f"10-90 % rise {before:.2f} px -> {after:.2f} px"
    flat = slice(8, 48)
    assert out[:, flat].std() < 0.6 * frame.mosaic[:, flat].std(), "the flat side is denoised"


# -- plain properties -------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_strength_zero_is_the_identity(method):
    frame = poisson_frame(np.full((32, 32), 0.3))
    out = raw_denoise(frame, params(method=method, strength=0.0), CTX)
    np.testing.assert_array_equal(out.mosaic, frame.mosaic)


@pytest.mark.parametrize("cfa", ["GRBG", "quad_BGGR"])
@pytest.mark.parametrize("method", METHODS)
def test_each_site_is_filtered_on_its_own(cfa, method):
    """A noise-free pattern repeating with the CFA tile comes out unchanged (nothing is mixed
    across sites), and noise on it is reduced."""
    layout = CFALayout.from_name(cfa)
    tile = np.random.default_rng(11).uniform(0.1, 0.7, layout.tile_shape)
    level = layout.tile(tile, (128, 128))
    still = poisson_frame(level, cfa=cfa).replace(mosaic=level.astype(np.float32))
    np.testing.assert_allclose(raw_denoise(still, params(method=method), CTX).mosaic, level, rtol=2e-6)
    noisy = poisson_frame(level, cfa=cfa, seed=12)
    out = raw_denoise(noisy, params(method=method), CTX).mosaic
    assert np.std(out - level) < 0.5 * np.std(noisy.mosaic - level)


def test_noise_is_judged_through_the_shading_gain():
    """Corners lifted 3x by lens-shading correction have 3x the noise; the model knows, so
    they are denoised as much as the centre."""
    gain = (1.0 + 2.0 * np.linspace(0.0, 1.0, 256) ** 2)[None, :] * np.ones((256, 1), np.float32)
    level = np.full((256, 256), 0.25)
    frame = poisson_frame(level / gain, seed=13)
    corrected = frame.replace(mosaic=(frame.mosaic * gain).astype(np.float32), shading_gain=gain.astype(np.float32))
    centre, corner = slice(0, 48), slice(208, 256)

    def kept_noise(out: np.ndarray, cols: slice) -> float:
        return float(np.std(out[:, cols] - level[:, cols]) / np.std(corrected.mosaic[:, cols] - level[:, cols]))

    out = raw_denoise(corrected, params(), CTX).mosaic
    assert kept_noise(out, corner) == pytest.approx(kept_noise(out, centre), rel=0.35)
    blind = raw_denoise(corrected.replace(shading_gain=None), params(), CTX).mosaic
    assert kept_noise(blind, corner) > 1.5 * kept_noise(out, corner), "ignoring the gain leaves the corners noisy"


def test_strength_as_an_iso_table():
    stage = Stage(STAGES["raw_denoise"], params(strength={"iso": [100, 3200], "value": [0.0, 1.0]}))
    frame = poisson_frame(np.full((32, 32), 0.3))
    assert stage.params_for(frame).strength == pytest.approx(1.0)
    assert stage.params_for(frame.replace(info=CaptureInfo("t", iso=100.0, noise_profile=ISO3200_PROFILE))).strength == 0.0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"strength": -1.0}, r"tuning.params.raw_denoise.strength=-1.0 is out of range \[0, 20\] sigma"),
        ({"method": "bm3d"}, r"tuning.params.raw_denoise.method='bm3d' is not allowed; choose one of"),
        ({"radius": 0}, r"tuning.params.raw_denoise.radius=0 is out of range \[1, 7\] px"),
        ({"levels": 9}, r"tuning.params.raw_denoise.levels=9 is out of range"),
        ({"strength": {"iso": [100, 3200], "value": [1.0]}}, r"strength.value: expected a list of 2 values"),
    ],
)
def test_bad_parameters_are_config_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        params(**values)


def test_an_unknown_method_in_code_is_a_config_error():
    frame = poisson_frame(np.full((8, 8), 0.3))
    with pytest.raises(ConfigError, match="raw_denoise method 'median' is not known"):
        raw_denoise_mosaic(frame.mosaic, frame.cfa, noise_model(frame, np), RawDenoiseParams(method="median"))


def test_the_stage_needs_a_linear_frame():
    frame = RawFrame(np.full((4, 4), 100, np.uint16), CFALayout.from_name("RGGB"), 64, 1023.0, CaptureInfo("t"))
    with pytest.raises(StageError, match="'raw_denoise' needs a raw frame in the 'linear' domain"):
        raw_denoise(frame, params(), CTX)


# -- NumPy / CuPy parity ----------------------------------------------------------------------


@pytest.mark.parametrize("cfa", ["RGGB", "quad_GBRG"])
@pytest.mark.parametrize("method", METHODS)
def test_numpy_cupy_parity(backend, method, cfa):
    rng = np.random.default_rng(14)
    level = ndi.zoom(rng.uniform(0.05, 0.6, (12, 16)), 8, order=1)[:96, :128]
    wb = np.array([1.8, 1.0, 1.4])
    shading = np.linspace(1.0, 1.6, 128, dtype=np.float32)[None, :].repeat(96, 0)
    frame = poisson_frame(level, cfa=cfa, seed=15)
    frame = frame.replace(mosaic=frame.cfa.apply_per_site(frame.mosaic * shading, scale=frame.cfa.per_site(wb)), wb_gains=wb, shading_gain=shading)
    p = params(method=method, strength=1.2)
    expected = raw_denoise(frame, p, CTX).mosaic
    moved = frame.replace(mosaic=backend.asarray(frame.mosaic), shading_gain=backend.asarray(shading))
    got = to_host(raw_denoise(moved, p, StageContext(backend)).mosaic)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6)


def test_estimated_noise_parity(backend):
    frame = poisson_frame(np.linspace(0.05, 0.8, 256)[None, :] * np.ones((256, 1)), seed=16).replace(info=CaptureInfo("no profile"))
    expected = estimate_noise_profile(frame.mosaic, frame.cfa)
    got = estimate_noise_profile(backend.asarray(frame.mosaic), frame.cfa)
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-4)


# -- CUDA kernels (kernels/raw_denoise.cu) -------------------------------------------------------


def shaded_frame(cfa: str, shape: tuple[int, int], seed: int = 21) -> RawFrame:
    """A Poisson-Gaussian frame after white balance and lens-shading correction: every pixel has
    its own noise model; values span about [0, 1.7]."""
    h, w = shape
    rng = np.random.default_rng(seed)
    level = ndi.zoom(rng.uniform(0.05, 0.6, (h // 8 + 1, w // 8 + 1)), 8, order=1)[:h, :w]
    level[h // 3 :, w // 2 :] += 0.25  # a step edge for the range weights
    wb = np.array([1.8, 1.0, 1.4])
    shading = (1.0 + 0.6 * np.linspace(0.0, 1.0, w, dtype=np.float32) ** 2)[None, :].repeat(h, 0)
    frame = poisson_frame(level, cfa=cfa, seed=seed + 1)
    mosaic = frame.cfa.apply_per_site(frame.mosaic * shading, scale=frame.cfa.per_site(wb))
    return frame.replace(mosaic=mosaic, wb_gains=wb, shading_gain=shading)


def emulated_launch(function, grid, block, args) -> None:
    emulate_kernel("raw_denoise", function, grid, block, list(args))


#: (method, settings): the defaults, and each kernel's edge cases (one wavelet level, the
#: largest step with a kernel, NLM without a patch, the widest bilateral window).
KERNEL_CASES = [
    ("wavelet", {}),
    ("wavelet", {"levels": 1}),
    ("wavelet", {"levels": 4}),
    ("nlm", {}),
    ("nlm", {"radius": 1, "patch_radius": 0}),
    ("bilateral", {}),
    ("bilateral", {"radius": 7, "spatial_sigma": 2.5}),
]
CASE_IDS = [f"{m}-" + "-".join(f"{k}{v}" for k, v in s.items()) if s else m for m, s in KERNEL_CASES]


@pytest.mark.parametrize(
    ("cfa", "shape"),
    [("RGGB", (72, 136)), ("quad_GBRG", (64, 64))],
    ids=["bayer-72x136", "quad-64x64"],  # 36x68 planes: partial tiles; 16x16: mirrored more than once
)
@pytest.mark.parametrize(("method", "settings"), KERNEL_CASES, ids=CASE_IDS)
def test_cuda_kernel_logic_on_the_cpu(method, settings, cfa, shape):
    """kernels/raw_denoise.cu compiled as C++ and run block by block (a block's threads meet at
    real barriers), launched exactly as on the GPU, equals the NumPy path at every pixel,
    borders, tile seams and partial tiles included: max abs diff < 1e-6."""
    frame = shaded_frame(cfa, shape)
    p = params(method=method, strength=1.2, **settings)
    model = noise_model(frame, np)
    fits, kernel = _KERNEL_METHODS[method]
    assert fits(frame.cfa, p)
    got = kernel(frame.mosaic, frame.cfa, model, p, emulated_launch)
    expected = RAW_DENOISE_METHODS[method](frame.mosaic, frame.cfa, model, p)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("method", "settings", "cfa", "fits"),
    [
        ("wavelet", {}, "quad_RGGB", True),
        ("wavelet", {"levels": 5}, "RGGB", False),  # step 16: the tile's halo outgrows shared memory
        ("nlm", {}, "quad_RGGB", True),
        ("nlm", {"radius": 6}, "RGGB", True),
        ("nlm", {"radius": 4}, "quad_RGGB", False),  # a 19-pixel halo
        ("bilateral", {"radius": 7}, "quad_RGGB", True),
    ],
)
def test_which_settings_have_a_kernel(method, settings, cfa, fits):
    """Outside a kernel's limits the GPU runs the array-module path instead (checked on a GPU below)."""
    assert _KERNEL_METHODS[method][0](CFALayout.from_name(cfa), params(method=method, **settings)) is fits


@pytest.mark.gpu
@pytest.mark.parametrize(("cfa", "shape"), [("RGGB", (200, 264)), ("quad_GBRG", (136, 200))], ids=["bayer", "quad"])
@pytest.mark.parametrize(
    ("method", "settings"),
    [*KERNEL_CASES, ("wavelet", {"levels": 5}), ("nlm", {"radius": 4})],
    ids=[*CASE_IDS, "wavelet-levels5", "nlm-radius4"],
)
def test_cuda_kernels_match_numpy(method, settings, cfa, shape, cupy_backend, monkeypatch):
    """The stage on CuPy (the kernels where the settings fit, else the array-module path on the
    GPU) equals the NumPy path: max abs diff < 1e-5 (FMA contraction is the only difference)."""
    frame = shaded_frame(cfa, shape)
    p = params(method=method, strength=1.2, **settings)
    launched = []
    launch = raw_denoise_module._cupy_launch

    def spy(function, grid, block, args):
        launched.append(function)
        launch(function, grid, block, args)

    monkeypatch.setattr(raw_denoise_module, "_cupy_launch", spy)
    expected = raw_denoise(frame, p, CTX).mosaic
    moved = frame.replace(mosaic=cupy_backend.asarray(frame.mosaic), shading_gain=cupy_backend.asarray(frame.shading_gain))
    got = to_host(raw_denoise(moved, p, StageContext(cupy_backend)).mosaic)
    assert bool(launched) == _KERNEL_METHODS[method][0](frame.cfa, p), launched
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("method", METHODS)
def test_array_module_path_on_the_gpu_matches_numpy(method, cupy_backend):
    """The reference path itself, run as CuPy array code, equals its NumPy run."""
    frame = shaded_frame("quad_RGGB", (136, 200))
    p = params(method=method, strength=1.2)
    model = noise_model(frame, np)
    expected = RAW_DENOISE_METHODS[method](frame.mosaic, frame.cfa, model, p)
    moved = NoiseModel(cupy_backend.asarray(model.slope), cupy_backend.asarray(model.offset), model.estimated)
    got = to_host(RAW_DENOISE_METHODS[method](cupy_backend.asarray(frame.mosaic), frame.cfa, moved, p))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
