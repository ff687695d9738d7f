"""EMVA 1288 analysis: recovers the parameters of a synthetic linear camera; input errors; plots."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.stats import norm

from isp.errors import InputError
from isp.metrics.emva import (
    DarkCurrentPoint,
    ExposurePoint,
    NonuniformityData,
    analyze,
    plot,
)

EXPOSURE_TIME_S = 0.01
# Dense steps near saturation: the saturation point is the sampled point of maximum variance, so
# the step there bounds how well the saturation capacity can be measured.
SATURATION_FRACTIONS = np.concatenate([np.linspace(0.0, 0.85, 18), np.linspace(0.88, 1.2, 17)])
DARK_TIMES_S = (0.01, 1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass(frozen=True)
class Camera:
    """The EMVA 1288 linear camera model with fixed-pattern noise, full well and a clipping ADC."""

    gain_dn_per_e: float | np.ndarray = 0.5
    read_noise_e: float = 2.0
    quantum_efficiency: float = 0.6
    full_well_e: float = 10_000.0
    prnu: float = 0.01
    dsnu_e: float = 1.0
    dark_current_e_per_s: float = 5.0
    offset_dn: float = 64.0
    max_dn: int = 4095

    def saturation_e(self) -> float:
        """Electrons at which the pixel or the ADC clips, whichever comes first."""
        return min(self.full_well_e, (self.max_dn - self.offset_dn) / np.min(self.gain_dn_per_e))

    def emva_saturation_e(self) -> float:
        """Mean electrons where the expected temporal variance peaks: EMVA's saturation point.

        Shot and read noise spread each pixel's signal around its mean (and PRNU spreads the
        means), so pixels start to clip, and the variance to fall, a few noise widths before the
        mean reaches the clipping level. Each pixel is taken as normal, ``N(m g, m g + read^2)``
        with PRNU gains ``g``, clipped at :meth:`saturation_e`.
        """
        clip = self.saturation_e()
        prnu_gain = 1.0 + self.prnu * norm.ppf((np.arange(512) + 0.5) / 512)
        means = np.linspace(0.8, 1.0, 801)[:, None] * clip * prnu_gain
        sigma = np.sqrt(means + self.read_noise_e**2)
        alpha = (clip - means) / sigma
        below, density = norm.cdf(alpha), norm.pdf(alpha)
        first = means * below - sigma * density + clip * (1 - below)
        second = (means**2 + sigma**2) * below - sigma * (means + clip) * density + clip**2 * (1 - below)
        variance = (second - first**2).mean(axis=1)
        return float(means[np.argmax(variance)].mean())

    def sensor(self, shape: tuple[int, int], seed: int) -> Sensor:
        rng = np.random.default_rng(seed)
        return Sensor(self, rng, 1.0 + self.prnu * rng.standard_normal(shape), self.dsnu_e * rng.standard_normal(shape))


@dataclass(frozen=True)
class Sensor:
    """One realisation of a camera: its PRNU and DSNU patterns and its noise stream."""

    camera: Camera
    rng: np.random.Generator
    prnu_map: np.ndarray
    dsnu_map_e: np.ndarray

    def frames(self, photons: float, exposure_time_s: float, count: int) -> np.ndarray:
        cam = self.camera
        mean_e = cam.quantum_efficiency * photons * self.prnu_map + cam.dark_current_e_per_s * exposure_time_s
        electrons = np.minimum(self.rng.poisson(mean_e, size=(count, *mean_e.shape)), cam.full_well_e)
        charge = electrons + self.dsnu_map_e + cam.read_noise_e * self.rng.standard_normal(electrons.shape)
        return np.clip(np.round(cam.gain_dn_per_e * charge + cam.offset_dn), 0, cam.max_dn).astype(np.uint16)

    def exposure_points(self, photons: np.ndarray) -> list[ExposurePoint]:
        return [
            ExposurePoint(float(p), EXPOSURE_TIME_S, self.frames(p, EXPOSURE_TIME_S, 2), self.frames(0.0, EXPOSURE_TIME_S, 2))
            for p in photons
        ]

    def nonuniformity(self, photons: float, frames: int = 16) -> NonuniformityData:
        return NonuniformityData(photons, self.frames(photons, EXPOSURE_TIME_S, frames), self.frames(0.0, EXPOSURE_TIME_S, frames))

    def dark_current(self) -> list[DarkCurrentPoint]:
        return [DarkCurrentPoint(t, self.frames(0.0, t, 2)) for t in DARK_TIMES_S]


def _measure(camera: Camera, shape: tuple[int, int] = (256, 256), seed: int = 1288, mask: np.ndarray | None = None):
    sensor = camera.sensor(shape, seed)
    saturation_photons = camera.saturation_e() / camera.quantum_efficiency
    points = sensor.exposure_points(SATURATION_FRACTIONS * saturation_photons)
    return analyze(points, sensor.nonuniformity(0.5 * saturation_photons), sensor.dark_current(), mask=mask)


CAMERAS = {
    "adc-limited": Camera(),  # 0.5 DN/e- x 10 000 e- + 64 DN is past 4095: the ADC clips at 8062 e-
    "full-well-limited": Camera(gain_dn_per_e=0.3),
}


@functools.cache
def _measured(name: str):
    return CAMERAS[name], _measure(CAMERAS[name])


@pytest.fixture(params=list(CAMERAS))
def measured(request):
    return _measured(request.param)


def test_recovers_the_camera_parameters(measured):
    camera, result = measured
    assert result.system_gain_dn_per_e == pytest.approx(camera.gain_dn_per_e, rel=0.02)
    assert result.quantum_efficiency == pytest.approx(camera.quantum_efficiency, rel=0.02)
    assert result.responsivity_dn_per_photon == pytest.approx(camera.gain_dn_per_e * camera.quantum_efficiency, rel=0.02)
    # sigma_d includes the shot noise of the dark current during the exposure
    read_noise = np.hypot(camera.read_noise_e, np.sqrt(camera.dark_current_e_per_s * EXPOSURE_TIME_S))
    assert result.temporal_dark_noise_e == pytest.approx(read_noise, rel=0.03)
    assert not result.dark_noise_quantisation_limited
    # the variance peaks as the first pixels clip, about 4 % below the clipping level here
    assert result.saturation_capacity_e == pytest.approx(camera.emva_saturation_e(), rel=0.02)
    assert 0.94 * camera.saturation_e() < result.saturation_capacity_e < camera.saturation_e()
    nonuniformity = result.nonuniformity
    assert nonuniformity.prnu_percent == pytest.approx(100 * camera.prnu, rel=0.03)
    assert nonuniformity.dsnu_e == pytest.approx(camera.dsnu_e, rel=0.03)
    dark = result.dark_current
    assert dark.dark_current_e_per_s == pytest.approx(camera.dark_current_e_per_s, rel=0.05)
    assert dark.dark_current_from_variance_e_per_s == pytest.approx(camera.dark_current_e_per_s, rel=0.05)
    assert dark.dark_offset_dn == pytest.approx(camera.offset_dn, abs=0.05)


def test_derived_quantities_follow_their_definitions(measured):
    _, result = measured
    threshold_e = np.sqrt(result.temporal_dark_noise_dn**2 / result.system_gain_dn_per_e**2 + 0.25) + 0.5
    assert result.sensitivity_threshold_e == pytest.approx(threshold_e)
    assert result.model_snr(result.sensitivity_threshold_photons) == pytest.approx(1.0)
    assert result.dynamic_range == pytest.approx(result.saturation_photons / result.sensitivity_threshold_photons)
    assert result.dynamic_range_db == pytest.approx(20 * np.log10(result.dynamic_range))
    assert result.snr_max == pytest.approx(np.sqrt(result.saturation_capacity_e))
    signal = result.mean_dn - result.mean_dark_dn
    fit = result.fit_mask
    assert fit[0] and not fit[result.saturation_index]
    assert signal[fit].max() <= 0.7 * signal[result.saturation_index] < signal[np.flatnonzero(fit).max() + 1]
    in_range = slice(1, result.saturation_index)
    np.testing.assert_allclose(result.snr[in_range], result.model_snr(result.photons_per_pixel[in_range]), rtol=0.05)


def test_points_in_any_order_give_the_same_result():
    sensor = Camera().sensor((32, 32), seed=3)
    points = sensor.exposure_points(np.linspace(0, 1.2, 12) * Camera().saturation_e() / 0.6)
    forward, backward = analyze(points), analyze(points[::-1])
    assert forward.system_gain_dn_per_e == backward.system_gain_dn_per_e
    np.testing.assert_array_equal(forward.photons_per_pixel, np.sort(forward.photons_per_pixel))


def test_mask_selects_one_pixel_population():
    shape = (128, 128)
    checkerboard = (np.indices(shape).sum(axis=0) % 2).astype(bool)
    camera = Camera(gain_dn_per_e=np.where(checkerboard, 0.5, 0.25))
    both = analyze(camera.sensor(shape, seed=7).exposure_points(SATURATION_FRACTIONS * 10_000 / 0.6))
    for mask, gain in ((checkerboard, 0.5), (~checkerboard, 0.25)):
        result = _measure(camera, shape, seed=7, mask=mask)
        assert result.system_gain_dn_per_e == pytest.approx(gain, rel=0.03)
        assert result.pixels == shape[0] * shape[1] // 2
    assert 0.25 * 1.03 < both.system_gain_dn_per_e < 0.5 * 0.97


def test_dark_noise_below_half_a_dn_is_flagged_as_an_upper_limit():
    camera = Camera(gain_dn_per_e=0.1)  # 2 e- of read noise is 0.2 DN, less than the rounding
    sensor = camera.sensor((64, 64), seed=5)
    result = analyze(sensor.exposure_points(np.linspace(0, 1.1, 12) * camera.saturation_e() / 0.6))
    assert result.dark_noise_quantisation_limited
    assert result.temporal_dark_noise_e == pytest.approx(np.sqrt(0.24 - 1 / 12) / result.system_gain_dn_per_e)
    assert result.temporal_dark_noise_e > camera.read_noise_e


@pytest.fixture(scope="module")
def small_points():
    camera = Camera()
    return camera.sensor((16, 16), seed=11).exposure_points(np.linspace(0, 1.2, 8) * camera.saturation_e() / 0.6)


def test_fewer_than_three_points(small_points):
    with pytest.raises(InputError, match="at least 3 exposure points, got 2"):
        analyze(small_points[:2])


def test_frames_of_different_sizes(small_points):
    point = small_points[3]
    smaller = ExposurePoint(point.photons_per_pixel, point.exposure_time_s, point.bright[:, :8, :8], point.dark)
    with pytest.raises(InputError, match=r"exposure point 3 bright frames are 8x8 pixels but exposure point 0 is 16x16"):
        analyze([*small_points[:3], smaller, *small_points[4:]])


def test_frames_not_a_pair(small_points):
    point = small_points[2]
    three = ExposurePoint(point.photons_per_pixel, point.exposure_time_s, point.bright, np.concatenate([point.dark, point.dark[:1]]))
    with pytest.raises(InputError, match=r"exposure point 2 dark frames have shape \(3, 16, 16\); expected \(2, H, W\)"):
        analyze([*small_points[:2], three, *small_points[3:]])
    with pytest.raises(InputError, match=r"expected \(2, H, W\)"):
        analyze([ExposurePoint(1.0, 0.01, point.bright[0], point.dark), *small_points])


def test_no_point_below_saturation():
    camera = Camera()
    sensor = camera.sensor((16, 16), seed=13)
    with pytest.raises(InputError, match="no exposure point below saturation"):
        analyze(sensor.exposure_points(np.linspace(1.5, 3.0, 5) * camera.saturation_e() / 0.6))


def test_bad_mask_and_bad_nonuniformity_data(small_points):
    with pytest.raises(InputError, match="mask must be a boolean array"):
        analyze(small_points, mask=np.ones((16, 16), dtype=np.uint8))
    with pytest.raises(InputError, match="mask selects 0 pixel"):
        analyze(small_points, mask=np.zeros((16, 16), dtype=bool))
    dark = small_points[0].dark
    with pytest.raises(InputError, match="same number"):
        analyze(small_points, nonuniformity=NonuniformityData(100.0, small_points[4].bright, dark[:1]))
    with pytest.raises(InputError, match="2 or more exposure times"):
        analyze(small_points, dark_current=[DarkCurrentPoint(1.0, dark), DarkCurrentPoint(1.0, dark)])


def test_plots_and_json(tmp_path):
    _, result = _measured("adc-limited")
    paths = plot(result, tmp_path / "emva")
    assert sorted(p.name for p in paths) == ["dark_current.png", "ptc.png", "responsivity.png", "snr.png"]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    assert sorted(p.name for p in (tmp_path / "emva").iterdir()) == sorted(p.name for p in paths), "no partial files left"
    encoded = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert encoded["system_gain_dn_per_e"] == result.system_gain_dn_per_e
    assert len(encoded["snr"]) == len(result.photons_per_pixel)
    assert encoded["nonuniformity"]["prnu_percent"] == result.nonuniformity.prnu_percent
    assert encoded["snr"][0] is None or np.isfinite(encoded["snr"][0])
