"""The physical sensor model: published facts, the camera equation, every noise source's
statistics, fixed patterns, binning, Quad Bayer mismatch, dual conversion gain, config errors.

Every expected value is computed here from physics and statistics (EMVA 1288's linear camera
model), never read back from the model's derived properties: the system gain ``K`` from the
conversion gain, ISO and binning; the electrons from the camera equation and the QE integral;
noise variances from Poisson and Gaussian statistics with their standard errors.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest
from omegaconf import OmegaConf
from scipy import stats

from isp.backend import to_host
from isp.config import compose
from isp.errors import ConfigError
from isp.optics import photon_irradiance_per_lux
from isp.paths import config_dir
from isp.sensor import (
    NOISE_SOURCES,
    build_sensor,
    capture,
    fixed_patterns,
    ideal_capture,
    mismatch_tile,
    window_origin,
)
from isp.sensor.qe import WAVELENGTHS_NM, qe_curves

SENSORS = ("generic_bayer", "imx707", "imx766", "imx800", "imx989")
LENS_OFF = (
    "sensor.lens.optics.relative_illumination.model=none",
    "sensor.lens.optics.color_shading.coefficients=null",
    "sensor.lens.optics.psf.kind=none",
    "sensor.lens.optics.lateral_ca.magnification=[1,1,1]",
)
R, G, B = 0, 1, 2
Z = 4.0  # standard errors allowed for a statistical comparison


# -- helpers -------------------------------------------------------------------------------------


@functools.cache
def _build(name, overrides):
    return build_sensor(compose([f"sensor={name}", *overrides]).sensor)


def sensor(*overrides, name="imx989"):
    return _build(name, tuple(overrides))


def noise_only(*names):
    """Overrides that switch on only the noise sources ``names``."""
    return tuple(f"sensor.noise.{n}={'true' if n in names else 'false'}" for n in NOISE_SOURCES)


def flat(level, size=256):
    return np.full((size, size, 3), level, np.float32)


def mosaic(raw):
    return to_host(raw.mosaic).astype(np.float64)


def sites(values, s, colour):
    """The values of an ``(H, W)`` mosaic at the sites of one CFA colour."""
    return values[s.cfa.colour_map(values.shape) == colour]


def binning(s):
    return s.modes[s.mode]["binning"]


def system_gain(s):
    """EMVA's K in DN/e- from the config: conversion gain times analog and digital gain, over the
    photodiodes binned into one output pixel (times the DCG ratio in a merged frame, which keeps
    the high-gain read-out's scale)."""
    total = s.iso / s.base_iso
    k = s.conversion_gain_dn_e * total / binning(s) ** 2
    return k * s.dcg.ratio if s.modes[s.mode].get("dcg_merge") else k


def electrons_per_lux_s_m2(s):
    """Photo-electrons per second per m² per lux of D65, R, G, B: ∫ photons(λ) QE(λ) dλ."""
    photons = photon_irradiance_per_lux(WAVELENGTHS_NM)
    return np.trapezoid(qe_curves(s.qe) * photons[None, :], WAVELENGTHS_NM, axis=1)


def focal_plane_lux(s, luminance):
    """The camera equation E = π L T / (4 N²) (subject at infinity)."""
    assert s.lens.optics.transmission == 0.9
    return math.pi * luminance * 0.9 / (4 * s.lens.f_number**2)


def pixel_area_m2(s):
    return (s.pixel_pitch_um * 1e-6 * binning(s)) ** 2


def electrons(s, luminance, time_s):
    """Mean photo-electrons of an output pixel, R, G, B, for a white of ``luminance``."""
    return focal_plane_lux(s, luminance) * time_s * pixel_area_m2(s) * electrons_per_lux_s_m2(s)


def analog_gain(s):
    return min(s.iso / s.base_iso, s.max_analog_gain)


def high_conversion_gain(s):
    """Whether the read-out uses the high conversion gain alone (not a merged DCG frame)."""
    merged = s.modes[s.mode].get("dcg_merge", False)
    return s.dcg is not None and not merged and analog_gain(s) >= s.dcg.hcg_from_gain


def read_noise_e(s):
    """Read noise of one read-out of an output pixel (charge binning: read once)."""
    return s.dcg.hcg_read_noise_e if high_conversion_gain(s) else s.read_noise_e


def adc(s):
    """(black, white) of the current mode."""
    mode = s.modes[s.mode]
    black, white = mode.get("black_level"), mode.get("white_level")
    return s.black_level if black is None else black, s.white_level if white is None else white


def saturation_e(s):
    """Full well of the output pixel (a quarter of it at high conversion gain, the smaller
    floating diffusion) or the ADC range, whichever clips first."""
    black, white = adc(s)
    well = s.full_well_e * binning(s) ** 2 / (s.dcg.ratio if high_conversion_gain(s) else 1)
    return min(well, (white - black) / system_gain(s))


def temporal(a, b):
    """Per-pixel temporal deviation of two frames of the same scene, ``(a - b) / √2``."""
    return (a - b) / math.sqrt(2.0)


def variance_and_se(d):
    """Variance of zero-mean deviations and its standard error."""
    sq = d.ravel() ** 2
    return sq.mean(), sq.std() / math.sqrt(sq.size)


# -- 1. published facts and provenance -----------------------------------------------------------


def test_imx989_published_facts():
    s = sensor()
    full = s.modes["full"]
    assert (full["width"], full["height"], full["cfa"], full["binning"]) == (8192, 6144, "quad_RGGB", 1)
    assert s.mode == "binned" and s.readout == (3072, 4096) and s.cfa.name == "RGGB" and binning(s) == 2
    assert (s.pixel_pitch_um, s.bit_depth, s.black_level, s.white_level, s.base_iso) == (1.6, 10, 64, 1023, 100)
    assert s.max_analog_gain == 64 and s.dcg.ratio == 4
    assert (s.lens.focal_length_mm, s.lens.f_number, s.lens.equivalent_focal_length_mm) == (8.7, 1.9, 23)
    f = sensor("sensor.mode=full")
    assert f.readout == (6144, 8192) and f.cfa.name == "quad_RGGB"
    for key in ("pixel_pitch_um", "modes", "bit_depth", "black_level", "white_level", "base_iso", "max_analog_gain", "lens", "dcg"):
        assert s.provenance[key].startswith("published:"), key

    imx800 = sensor("sensor.mode=full", name="imx800")
    assert imx800.readout == (6144, 8768) and imx800.pixel_pitch_um == 1.0

    g = sensor(name="generic_bayer")
    assert g.readout == (3024, 4032) and g.cfa.name == "RGGB" and g.pixel_pitch_um == 1.4
    assert (g.full_well_e, g.read_noise_e, g.prnu) == (6000, 1.0, 0.007) and g.dcg is None


PROVENANCE_KEYS = (
    "pixel_pitch_um", "bit_depth", "black_level", "white_level", "base_iso", "max_analog_gain",
    "color_response", "qe", "full_well_e", "conversion_gain_dn_e", "read_noise_e", "dcg",
    "dark_current_e_s", "prnu", "dsnu_e", "row_noise_e", "hot_pixel_rate", "dead_pixel_rate",
    "subpixel_mismatch", "binning_model", "lens", "optics", "modes",
)  # fmt: skip


@pytest.mark.parametrize("name", SENSORS)
def test_every_sensor_builds_with_provenance_for_every_physical_key(name):
    yaml = OmegaConf.to_container(OmegaConf.load(config_dir() / "sensor" / f"{name}.yaml"))
    s = sensor(name=name)
    assert s.name == name
    for key in PROVENANCE_KEYS:
        assert key == "optics" or key in yaml, f"{name}: {key} missing from the YAML"
        assert s.provenance.get(key, "").startswith(("published:", "estimated:")), f"{name}: provenance of {key}"
    # The 35 mm-equivalent focal length agrees with the focal length and the full read-out's
    # diagonal (43.27 mm for 35 mm film).
    native = max(s.modes.values(), key=lambda m: m["width"])
    diagonal_mm = math.hypot(native["width"], native["height"]) * s.pixel_pitch_um * 1e-3
    assert s.lens.focal_length_mm * 43.27 / diagonal_mm == pytest.approx(s.lens.equivalent_focal_length_mm, rel=0.05)
    # The full well just fits the ADC range at base ISO.
    assert 0.9 * (s.white_level - s.black_level) <= s.full_well_e * s.conversion_gain_dn_e <= s.white_level - s.black_level


# -- 2. the noise-free capture -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mode", "iso"),
    [("imx989", "binned", 100), ("imx989", "full", 100), ("imx989", "binned_dcg", 100), ("imx989", "binned", 12800), ("generic_bayer", "full", 50)],
)
def test_capture_without_noise_is_the_ideal_capture(backend, name, mode, iso):
    s = sensor(f"sensor.mode={mode}", f"sensor.iso={iso}", *noise_only(), name=name)
    scene = np.random.default_rng(3).uniform(0, 1.3, size=(64, 96, 3)).astype(np.float32)
    raw = capture(backend.asarray(scene), s, backend, seed=5)
    ideal = ideal_capture(backend.asarray(scene), s, backend)
    m = to_host(raw.mosaic)
    assert m.dtype == np.uint16 and raw.domain == "dn"
    np.testing.assert_array_equal(m, to_host(ideal.mosaic))
    black, white = adc(s)
    assert m.max() == min(white, round(black + system_gain(s) * saturation_e(s))), "over-exposed pixels clip"


# -- 3. the camera equation and auto-exposure ----------------------------------------------------


@pytest.mark.parametrize(("name", "mode", "luminance"), [("imx989", "binned", 800.0), ("imx989", "full", 800.0), ("generic_bayer", "full", 700.0)])
def test_camera_equation(numpy_backend, name, mode, luminance):
    s = sensor(f"sensor.mode={mode}", "sensor.exposure_time_s=0.005", *LENS_OFF, name=name)
    raw = ideal_capture(flat(1.0, 64), s, numpy_backend, luminance_cd_m2=luminance)
    assert raw.info.exposure_time_s == 0.005
    expected_e = electrons(s, luminance, 0.005)
    assert expected_e[G] < s.full_well_e * binning(s) ** 2
    for colour in (R, G, B):
        dn = sites(mosaic(raw), s, colour) - s.black_level
        assert np.ptp(dn) == 0, "a flat field is flat without noise and lens effects"
        expected = system_gain(s) * expected_e[colour]
        assert abs(dn.mean() - expected) <= 0.5 + 1e-4 * expected, (colour, dn.mean(), expected)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_auto_exposure_puts_white_at_the_saturation_scale(numpy_backend, scale):
    s = sensor(f"sensor.exposure_scale={scale}", *noise_only(), *LENS_OFF)
    per_lux = electrons_per_lux_s_m2(s)
    assert np.argmax(per_lux) == G, "green is the most sensitive channel"
    raw = ideal_capture(flat(1.0, 64), s, numpy_backend, luminance_cd_m2=1000.0)
    sat = saturation_e(s)
    green_dn = sites(mosaic(raw), s, G) - s.black_level
    assert green_dn.mean() == pytest.approx(scale * sat * system_gain(s), abs=0.5)
    for colour in (R, B):
        assert sites(mosaic(raw), s, colour).mean() - s.black_level < green_dn.mean()
    t = raw.info.exposure_time_s
    assert t == pytest.approx(scale * sat / (focal_plane_lux(s, 1000.0) * pixel_area_m2(s) * per_lux[G]), rel=1e-9)
    doubled = ideal_capture(flat(1.0, 64), s, numpy_backend, luminance_cd_m2=2000.0)
    assert doubled.info.exposure_time_s == pytest.approx(t / 2, rel=1e-12)
    np.testing.assert_array_equal(doubled.mosaic, raw.mosaic)


# -- 4. ISO --------------------------------------------------------------------------------------


def test_iso_holds_the_signal_and_raises_the_temporal_noise(numpy_backend):
    scene = flat(0.3)
    means, noise_std = {}, {}
    for iso in (100, 800, 3200):
        s = sensor(f"sensor.iso={iso}", *LENS_OFF)
        a, b = (mosaic(capture(scene, s, numpy_backend, seed)) for seed in (1, 2))
        k = system_gain(s)
        means[iso] = sites((a + b) / 2, s, G).mean()
        d = temporal(a, b)
        noise_std[iso] = d.std()
        # EMVA 1288: var = K² (mu_e + sigma_read² + sigma_row²) + 1/12 DN², per CFA colour.
        for colour in (R, G, B):
            mu_e = (sites((a + b) / 2, s, colour).mean() - s.black_level) / k
            var, se = variance_and_se(sites(d, s, colour))
            expected = k**2 * (mu_e + read_noise_e(s) ** 2 + s.row_noise_e**2) + 1 / 12
            assert abs(var - expected) < Z * se, (iso, colour, var, expected, se)
    # Auto-exposure holds the mean green DN; the noise grows with the gain.
    assert means[3200] == pytest.approx(means[800], rel=0.01)
    assert noise_std[3200] > 1.5 * noise_std[800] > 3 * noise_std[100]
    # Each ISO puts the scene at 0.3 of its own saturation signal. At ISO 100 the full well
    # (936 DN above black) clips before the ADC range (959 DN), so the same scene sits 2.4 %
    # lower than at ISO 800 or 3200.
    for iso in (100, 3200):
        s = sensor(f"sensor.iso={iso}", *LENS_OFF)
        expected = s.black_level + 0.3 * system_gain(s) * saturation_e(s)
        assert means[iso] == pytest.approx(expected, rel=0.003), iso


def test_digital_gain_above_the_analog_maximum_leaves_missing_codes(numpy_backend):
    s = sensor("sensor.iso=12800", *LENS_OFF)
    assert s.gains == (64, 2)
    raw = capture(flat(0.3), s, numpy_backend, seed=1)
    assert (raw.info.analog_gain, raw.info.digital_gain) == (64, 2)
    odd = (mosaic(raw) - s.black_level) % 2
    assert odd.mean() < 0.01, "a digital gain of 2 leaves every other code empty"
    analog_only = capture(flat(0.3), sensor("sensor.iso=6400", *LENS_OFF), numpy_backend, seed=1)
    assert 0.4 < ((mosaic(analog_only) - s.black_level) % 2).mean() < 0.6


# -- 5. determinism, random streams and fixed patterns -------------------------------------------

STREAM_SENSOR = ("sensor.exposure_time_s=0.05", "sensor.noise.defects=false")


def test_same_seed_same_frame(backend):
    s = sensor(*STREAM_SENSOR)
    scene = backend.asarray(flat(0.5, 64))
    first = to_host(capture(scene, s, backend, seed=11, luminance_cd_m2=10.0).mosaic)
    again = to_host(capture(scene, s, backend, seed=11, luminance_cd_m2=10.0).mosaic)
    other = to_host(capture(scene, s, backend, seed=12, luminance_cd_m2=10.0).mosaic)
    np.testing.assert_array_equal(first, again)
    assert np.mean(first != other) > 0.5


@pytest.mark.parametrize("off", ["shot", "dark_current", "read", "row", "prnu", "dsnu"])
def test_switching_one_source_off_leaves_the_other_streams(numpy_backend, off):
    scene = flat(0.5, 64)
    on, kept = {}, {}
    capture(scene, sensor(*STREAM_SENSOR), numpy_backend, seed=3, luminance_cd_m2=10.0, components=on)
    capture(scene, sensor(*STREAM_SENSOR, f"sensor.noise.{off}=false"), numpy_backend, seed=3, luminance_cd_m2=10.0, components=kept)
    assert {"shot", "dark", "read", "row"} <= set(on)
    assert on["dark"].mean() > 0.3, "the dark stream is exercised"
    gone = {"dark_current": "dark"}.get(off, off)
    if gone in on:
        assert gone not in kept
    for name in ("read", "row", "dark"):
        if name != gone:
            np.testing.assert_array_equal(to_host(kept[name]), to_host(on[name]), err_msg=name)
    if off in ("read", "row", "dark_current", "dsnu"):
        np.testing.assert_array_equal(to_host(kept["shot"]), to_host(on["shot"]))


def test_fixed_patterns_belong_to_the_part_not_the_frame(numpy_backend):
    s = sensor("sensor.mode=full", *noise_only("prnu", "dsnu", "mismatch"), *LENS_OFF)
    scene = flat(0.5, 64)
    a, b = (to_host(capture(scene, s, numpy_backend, seed).mosaic) for seed in (1, 2))
    np.testing.assert_array_equal(a, b)
    assert np.any(a != to_host(ideal_capture(scene, s, numpy_backend).mosaic))

    small, large = (64, 64), (256, 192)
    ps, pl = fixed_patterns(s, numpy_backend, small), fixed_patterns(s, numpy_backend, large)
    (ys, xs), (yl, xl) = window_origin(s, small), window_origin(s, large)
    assert (ys % 4, xs % 4, yl % 4, xl % 4) == (0, 0, 0, 0)
    crop = (slice(ys - yl, ys - yl + small[0]), slice(xs - xl, xs - xl + small[1]))
    np.testing.assert_allclose(to_host(ps.gain), to_host(pl.gain)[crop], rtol=0, atol=1e-6)
    np.testing.assert_allclose(to_host(ps.offset_e), to_host(pl.offset_e)[crop], rtol=0, atol=1e-6)

    other = fixed_patterns(sensor("sensor.mode=full", "sensor.instance_seed=1", *noise_only("prnu")), numpy_backend, (128, 128))
    mine = fixed_patterns(sensor("sensor.mode=full", *noise_only("prnu")), numpy_backend, (128, 128))
    gain_a, gain_b = to_host(mine.gain).ravel() - 1, to_host(other.gain).ravel() - 1
    assert abs(np.corrcoef(gain_a, gain_b)[0, 1]) < 0.05


@pytest.mark.parametrize("mode", ["full", "binned"])
def test_prnu_and_dsnu_spread(numpy_backend, mode):
    """A binned pixel averages binning² PRNU gains and sums binning² DSNU offsets."""
    s = sensor(f"sensor.mode={mode}", *noise_only("prnu", "dsnu"))
    p = fixed_patterns(s, numpy_backend, (256, 256))
    n, b = 256 * 256, binning(s)
    gain, offset = to_host(p.gain).astype(np.float64), to_host(p.offset_e).astype(np.float64)
    assert gain.mean() == pytest.approx(1.0, abs=Z * s.prnu / b / math.sqrt(n))
    assert gain.std() == pytest.approx(s.prnu / b, rel=Z / math.sqrt(2 * n))
    assert offset.mean() == pytest.approx(0.0, abs=Z * s.dsnu_e * b / math.sqrt(n))
    assert offset.std() == pytest.approx(s.dsnu_e * b, rel=Z / math.sqrt(2 * n))


# -- 6. binned noise: charge vs digital binning --------------------------------------------------


def test_charge_and_digital_binning_read_noise(numpy_backend):
    models = {}
    for model in ("charge", "digital"):
        s = sensor("sensor.iso=6400", f"sensor.binning_model={model}", *noise_only("shot", "read"), *LENS_OFF)
        k = system_gain(s)
        a, b = (mosaic(capture(flat(0.3), s, numpy_backend, seed)) for seed in (1, 2))
        mu_e = ((a + b) / 2 - s.black_level) / k
        assert 0.2 < mu_e[s.cfa.colour_map(mu_e.shape) == G].mean() / saturation_e(s) < 0.4
        d = temporal(a, b)
        var_dn, se_dn = variance_and_se(d)
        var_e, se_e = (var_dn - 1 / 12) / k**2, se_dn / k**2
        models[model] = (d, k, var_e)
        sigma_r = s.dcg.hcg_read_noise_e * (1 if model == "charge" else binning(s))
        assert abs(var_e - (mu_e.mean() + sigma_r**2)) < Z * se_e, (model, var_e, mu_e.mean(), se_e)

        dark_a, dark_b = (mosaic(capture(flat(0.0), s, numpy_backend, seed)) for seed in (1, 2))
        dark_var, _ = variance_and_se(temporal(dark_a, dark_b))
        assert math.sqrt((dark_var - 1 / 12) / k**2) == pytest.approx(sigma_r, rel=0.03), model

    # The same shot-noise draws in both: the difference of the variances is resolvable.
    (dc, k, var_c), (dd, _, var_d) = models["charge"], models["digital"]
    paired = (dd.ravel() ** 2 - dc.ravel() ** 2) / k**2
    se = paired.std() / math.sqrt(paired.size)
    sigma_r = sensor().dcg.hcg_read_noise_e
    assert abs((var_d - var_c) - 3 * sigma_r**2) < Z * se, (var_d - var_c, se)
    assert se < sigma_r**2 / 2


# -- 7. Poisson shot noise -----------------------------------------------------------------------


def test_shot_noise_is_poisson(numpy_backend):
    s = sensor("sensor.exposure_time_s=0.001", *noise_only("shot"), *LENS_OFF)
    per_unit = electrons(s, 1.0, 0.001)
    luminance = 5.0 / per_unit[G]  # about 5 e- at the green sites
    parts = {}
    capture(flat(1.0), s, numpy_backend, seed=9, luminance_cd_m2=luminance, components=parts)
    shot = to_host(parts["shot"]).astype(np.float64)
    lam_map = s.cfa.tile(s.cfa.per_site(per_unit * luminance), shot.shape)
    counts = shot + lam_map
    np.testing.assert_allclose(counts, np.rint(counts), atol=1e-3, err_msg="photo-electron counts are integers")
    counts = np.rint(counts)
    for colour in (R, G, B):
        c = sites(counts, s, colour)
        lam, n = per_unit[colour] * luminance, c.size
        assert abs(c.mean() - lam) < Z * math.sqrt(lam / n)
        assert abs(c.var() - lam) < Z * math.sqrt((lam + 2 * lam**2) / n)
        assert abs(np.mean(c == 0) - math.exp(-lam)) < Z * math.sqrt(math.exp(-lam) / n)


# -- 8. dark current -----------------------------------------------------------------------------


def test_dark_current_is_linear_in_time_and_doubles_every_6c(numpy_backend):
    dark = flat(0.0, 128)

    def mean_dark_e(*overrides):
        s = sensor("sensor.iso=6400", *noise_only("dark_current", "read"), *overrides)
        x = (mosaic(capture(dark, s, numpy_backend, seed=4)) - s.black_level) / system_gain(s)
        return s, x

    times = (2.0, 5.0, 10.0)
    frames = [mean_dark_e(f"sensor.exposure_time_s={t}") for t in times]
    s = frames[0][0]
    rate = s.dark_current_e_s * binning(s) ** 2  # at the reference temperature, 45 °C
    assert s.temperature_c == s.dark_reference_c == 45 and s.dark_doubling_c == 6
    means = np.array([x.mean() for _, x in frames])
    ses = np.array([x.std() / math.sqrt(x.size) for _, x in frames])
    np.testing.assert_array_less(np.abs(means - rate * np.array(times)), Z * ses + 0.02)
    slope, intercept = np.polyfit(times, means, 1)
    assert slope == pytest.approx(rate, rel=0.01) and abs(intercept) < 0.5
    # Dark charge is Poisson: its variance is its mean (plus the high-gain read noise and the
    # ADC's quantisation, 1/12 DN²).
    x10 = frames[-1][1]
    k = system_gain(s)
    expected_var = means[-1] + s.dcg.hcg_read_noise_e**2 + 1 / 12 / k**2
    assert x10.var() == pytest.approx(expected_var, rel=Z * math.sqrt(2 / x10.size))

    _, hot = mean_dark_e("sensor.exposure_time_s=10", "sensor.temperature_c=51")
    assert hot.mean() / means[-1] == pytest.approx(2.0, rel=0.01)


# -- 9. defects ----------------------------------------------------------------------------------

DEFECTS = ("sensor.hot_pixel_rate=1e-3", "sensor.dead_pixel_rate=1e-3")


def test_hot_and_dead_pixels(numpy_backend):
    n = 256 * 256
    s = sensor(*DEFECTS, "sensor.exposure_time_s=1", name="generic_bayer")
    k = system_gain(s)
    dark = [mosaic(capture(flat(0.0), s, numpy_backend, seed)) for seed in (1, 2)]
    hot = [frame > s.black_level + 0.5 * k * s.hot_pixel_dark_e_s * 1.0 for frame in dark]
    np.testing.assert_array_equal(hot[0], hot[1])
    count = hot[0].sum()
    assert abs(count - 1e-3 * n) < Z * math.sqrt(1e-3 * n)
    # A hot photodiode's charge is its dark current times the exposure, Poisson each frame.
    hot_e = (dark[0][hot[0]] - s.black_level) / k
    lam = (s.hot_pixel_dark_e_s + s.dark_current_e_s) * 1.0
    assert abs(hot_e.mean() - lam) < Z * math.sqrt(lam / count) + 0.5 / k
    assert np.any(dark[0][hot[0]] != dark[1][hot[0]])

    bright_sensor = sensor(*DEFECTS, *noise_only("defects", "shot", "read"), name="generic_bayer")
    bright = mosaic(capture(flat(0.5), bright_sensor, numpy_backend, seed=1))
    dead = bright < s.black_level + 0.1 * (bright.mean() - s.black_level)
    assert abs(dead.sum() - 1e-3 * n) < Z * math.sqrt(1e-3 * n)
    # Read noise of 1 e- is 0.16 DN: a dead pixel reads the black level.
    assert np.all(np.abs(bright[dead] - s.black_level) <= 1)
    assert bright[~dead].min() > s.black_level + 100


def test_a_dead_photodiode_darkens_its_bin_by_a_quarter(numpy_backend):
    common = (*DEFECTS, "sensor.hot_pixel_rate=0", *noise_only("defects"), *LENS_OFF)
    full, binned = sensor("sensor.mode=full", *common), sensor("sensor.mode=binned", *common)
    assert window_origin(full, (256, 256)) == tuple(2 * o for o in window_origin(binned, (128, 128)))
    full_dn = mosaic(capture(flat(0.5, 256), full, numpy_backend)) - full.black_level
    dead = np.argwhere(full_dn == 0)
    assert abs(len(dead) - 1e-3 * full_dn.size) < Z * math.sqrt(1e-3 * full_dn.size)

    binned_dn = mosaic(capture(flat(0.5, 128), binned, numpy_backend)) - binned.black_level
    ideal_dn = mosaic(ideal_capture(flat(0.5, 128), binned, numpy_backend)) - binned.black_level
    expected = np.ones_like(ideal_dn)
    for r, c in dead:
        expected[r // 2, c // 2] -= 0.25
    assert np.sum(expected == 0.75) >= 0.9 * len(dead)
    np.testing.assert_allclose(binned_dn / ideal_dn, expected, atol=0.004)


# -- 10. Quad Bayer sub-pixel mismatch -----------------------------------------------------------


def test_quad_bayer_mismatch_is_a_fixed_4x4_pattern(numpy_backend):
    s = sensor("sensor.mode=full", *noise_only("mismatch"), *LENS_OFF)
    scene = flat(0.8)
    signal = mosaic(capture(scene, s, numpy_backend, seed=1)) - s.black_level
    ideal = mosaic(ideal_capture(scene, s, numpy_backend)) - s.black_level
    gain = (signal / ideal).reshape(64, 4, 64, 4)
    tile = np.median(gain, axis=(0, 2))
    quantisation = 0.6 / ideal.min()
    assert np.abs(gain - tile[None, :, None, :]).max() < quantisation, "the same gain in every 4x4 tile"
    np.testing.assert_allclose(tile.reshape(2, 2, 2, 2).mean(axis=(1, 3)), 1.0, atol=quantisation)
    m = s.subpixel_mismatch
    assert 0.5 * m < tile.std() < 1.5 * m

    binned = sensor("sensor.mode=binned", *noise_only("mismatch"), *LENS_OFF)
    np.testing.assert_array_equal(
        capture(flat(0.8, 64), binned, numpy_backend, seed=1).mosaic, ideal_capture(flat(0.8, 64), binned, numpy_backend).mosaic
    )


def test_quad_bayer_mismatch_std_over_parts():
    s = sensor("sensor.mode=full")
    gains = np.array([mismatch_tile(dataclasses.replace(s, instance_seed=seed)) for seed in range(300)])
    assert gains.std() == pytest.approx(s.subpixel_mismatch, rel=0.05)


# -- 11. dual conversion gain --------------------------------------------------------------------


def test_dcg_merged_mode(numpy_backend):
    s = sensor("sensor.mode=binned_dcg", *LENS_OFF)
    assert s.adc == (12, 256, 4095)
    k = system_gain(s)
    assert k == pytest.approx(0.078)
    raw = capture(flat(2.0), s, numpy_backend, seed=1)
    assert np.all(raw.black_level == 256) and raw.white_level == 4095
    m = mosaic(raw)
    well_dn = 256 + k * s.full_well_e * binning(s) ** 2
    assert m.mean() == pytest.approx(well_dn, abs=1.0) and np.abs(m - well_dn).max() <= 3

    # Linear through the merge threshold: below it the high-gain read-out, above the low-gain.
    for level in (0.1, 0.6):
        g = sites(mosaic(capture(flat(level), s, numpy_backend, seed=2)), s, G) - 256
        assert g.mean() / k == pytest.approx(level * saturation_e(s), rel=0.003), level

    # Dark temporal noise in electrons is the high-gain read noise.
    parts = {}
    capture(flat(0.0), s, numpy_backend, seed=3, components=parts)
    assert to_host(parts["read"]).std() == pytest.approx(s.dcg.hcg_read_noise_e, rel=0.02)
    assert to_host(parts["read_lcg"]).std() == pytest.approx(s.read_noise_e, rel=0.02)
    s1600 = sensor("sensor.mode=binned_dcg", "sensor.iso=1600", *noise_only("read"))
    k = system_gain(s1600)
    a, b = (mosaic(capture(flat(0.0), s1600, numpy_backend, seed)) for seed in (1, 2))
    var_dn, _ = variance_and_se(temporal(a, b))
    assert math.sqrt((var_dn - 1 / 12) / k**2) == pytest.approx(s.dcg.hcg_read_noise_e, rel=0.03)


# -- 12. Tukey-lambda read noise -----------------------------------------------------------------


@pytest.mark.parametrize("lam", [-0.1, 0.14])
def test_tukey_lambda_read_noise(numpy_backend, lam):
    s = sensor(f"sensor.read_noise_tukey_lambda={lam}", *noise_only("read"))
    parts = {}
    capture(flat(0.0, 512), s, numpy_backend, seed=6, components=parts)
    read = to_host(parts["read"]).astype(np.float64).ravel()
    assert read.std() == pytest.approx(s.read_noise_e, rel=0.02)
    kurtosis = stats.kurtosis(read, fisher=False)
    if lam < 0:
        assert kurtosis > 3.5
    else:
        assert abs(kurtosis - 3.0) < 0.2
    scale = s.read_noise_e / math.sqrt(stats.tukeylambda.var(lam))
    assert stats.kstest(read, stats.tukeylambda(lam, scale=scale).cdf).pvalue > 1e-3


# -- 13. NumPy and CuPy agree --------------------------------------------------------------------


@pytest.mark.gpu
def test_cupy_noise_statistics_match_numpy(numpy_backend, cupy_backend):
    s = sensor("sensor.iso=1600", *LENS_OFF)
    scene = flat(0.3, 512)
    host = mosaic(capture(scene, s, numpy_backend, seed=1))
    device = mosaic(capture(cupy_backend.asarray(scene), s, cupy_backend, seed=1))
    for colour in (R, G, B):
        x, y = sites(host, s, colour), sites(device, s, colour)
        n = x.size
        assert abs(x.mean() - y.mean()) < Z * math.sqrt((x.var() + y.var()) / n)
        assert abs(x.var() - y.var()) < Z * math.sqrt(2 / n) * math.hypot(x.var(), y.var())
    again = mosaic(capture(cupy_backend.asarray(scene), s, cupy_backend, seed=1))
    np.testing.assert_array_equal(device, again)


@pytest.mark.gpu
def test_cupy_fixed_patterns_match_numpy(numpy_backend, cupy_backend):
    s = sensor("sensor.mode=full", *DEFECTS)
    host, device = fixed_patterns(s, numpy_backend, (128, 256)), fixed_patterns(s, cupy_backend, (128, 256))
    np.testing.assert_allclose(to_host(device.gain), to_host(host.gain), rtol=0, atol=1e-6)
    np.testing.assert_allclose(to_host(device.offset_e), to_host(host.offset_e), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(to_host(device.hot_index), to_host(host.hot_index))
    np.testing.assert_array_equal(to_host(device.hot_count), to_host(host.hot_count))


# -- 14. config errors ---------------------------------------------------------------------------

DCG_MODE = "+sensor.modes.binned_dcg={width:2016,height:1512,cfa:RGGB,binning:2,bit_depth:12,black_level:256,white_level:4095,dcg_merge:true}"


def test_sensor_config_errors(numpy_backend):
    with pytest.raises(ConfigError, match="sensor.mode='cropped' is not a mode of imx989; choose one of full, binned, binned_dcg"):
        sensor("sensor.mode=cropped")
    with pytest.raises(ConfigError, match="sensor.iso=50.0 is below the base ISO 100"):
        sensor("sensor.iso=50")
    with pytest.raises(ConfigError, match=r"sensor.white_level=4095.0 exceeds the 10-bit ADC range \(max 1023, mode binned\)"):
        sensor("sensor.white_level=4095")
    with pytest.raises(ConfigError, match="sensor.modes.binned_dcg.dcg_merge needs sensor.dcg"):
        sensor(DCG_MODE, "sensor.mode=binned_dcg", name="generic_bayer")
    with pytest.raises(ConfigError, match="needs sensor.dcg"):
        sensor("sensor.mode=binned_dcg", "sensor.dcg=null")
    with pytest.raises(ConfigError, match=r"sensor.bit_depth=20 is out of range \[8, 16\]"):
        sensor("sensor.bit_depth=20")
    with pytest.raises(ConfigError, match="larger than the binned read-out"):
        capture(np.zeros((4000, 8, 3), np.float32), sensor(), numpy_backend)
    with pytest.raises(ConfigError, match="need 2-D with height a multiple of 4"):
        capture(np.zeros((6, 8, 3), np.float32), sensor("sensor.mode=full"), numpy_backend)
    with pytest.raises(ConfigError, match="must be positive"):
        capture(flat(0.5, 8), sensor(), numpy_backend, luminance_cd_m2=0.0)
