"""The fused sensor engine (``sensor.engine=fused``): kernel against its NumPy reference, and the
reference against the physics.

(a) ``kernels/sensor.cu`` run on the CPU (tests/kernel_emulation.py) gives the DN of the NumPy
reference (:func:`isp.sensor.fused.noisy_electrons` then :func:`isp.sensor.capture.digitise`) in
every mode with each noise source on and off. (b) The reference's frames have the statistics
the physics prescribes, computed here from the config as tests/test_sensor.py does for the
reference engine (its helpers are reused): the ideal capture without noise, the camera equation,
EMVA's variance law, Poisson counts, binned read noise, independent streams, crop invariance.
(c) The EMVA 1288 characterisation recovers the configured sensor. (d) On a GPU, CuPy's kernel
gives the NumPy reference's DN.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from isp.backend import get_backend, to_host
from isp.characterize import EmvaSettings, simulate_emva
from isp.errors import ConfigError
from isp.rng import pixel_counters
from isp.sensor import NOISE_SOURCES, capture, digitise, fixed_patterns, ideal_capture, window_origin
from isp.sensor import fused

from .kernel_emulation import emulate_kernel
from .test_sensor import (
    LENS_OFF,
    B,
    G,
    R,
    Z,
    adc,
    binning,
    electrons,
    flat,
    mosaic,
    noise_only,
    read_noise_e,
    saturation_e,
    sensor,
    sites,
    system_gain,
    temporal,
    variance_and_se,
)

FUSED = "++sensor.engine=fused"  # ++: the sensor YAMLs may or may not list the key


def fused_sensor(*overrides, name="imx989"):
    return sensor(FUSED, *overrides, name=name)


def reference_dn(mean_e, s, backend, seed, exposure, components=None):
    """The fused engine's NumPy reference: its electrons, then the shared ADC."""
    shape = mean_e.shape
    params = fused.fused_params(s, exposure, seed, shape, window_origin(s, shape))
    patterns = fixed_patterns(s, backend, shape)
    return digitise(fused.noisy_electrons(mean_e, patterns, params, np, components), s, np), patterns, params


def emulated_dn(mean_e, patterns, params):
    out = np.zeros(params.shape, np.uint16)
    for function, grid, block, args in fused.kernel_launches(np.ascontiguousarray(mean_e), patterns, params, out, np):
        emulate_kernel("sensor", function, grid, block, list(args))
    return out


def assert_same_dn(got, expected):
    """Equal DN, but for the documented float-rounding cases: at most one pixel in a thousand,
    each within 1 DN (logf/expf/cosf of two maths libraries may differ by an ulp)."""
    diff = got.astype(np.int64) - expected.astype(np.int64)
    assert np.count_nonzero(diff) <= max(1, diff.size // 1000), f"{np.count_nonzero(diff)} of {diff.size} pixels differ"
    assert np.abs(diff).max() <= 1, f"largest difference {np.abs(diff).max()} DN"


def ramp_mean(s, shape, rng):
    """Mean electrons that exercise both Poisson samplers, full-well clipping and the DCG merge:
    a ramp from 0 to 1.3 full wells with a band of small means (< 10 e-)."""
    well = s.full_well_output_e
    ramp = np.linspace(0.0, 1.3 * well, shape[0] * shape[1], dtype=np.float64).reshape(shape)
    mean = rng.permutation(ramp.ravel()).reshape(shape)
    mean[:, : shape[1] // 4] = rng.uniform(0.0, 12.0, (shape[0], shape[1] // 4))
    return mean.astype(np.float32)


# -- (a) the kernel, emulated on the CPU, against the NumPy reference ------------------------------

MODES = {
    "binned": ("sensor.mode=binned",),
    "full": ("sensor.mode=full", "sensor.iso=3200"),
    "binned_dcg": ("sensor.mode=binned_dcg", "sensor.iso=400"),
    "digital_binning": ("sensor.binning_model=digital", "sensor.iso=800"),
    "tukey": ("sensor.read_noise_tukey_lambda=-0.1", "sensor.iso=1600"),
    "digital_gain": ("sensor.iso=12800",),
}
# Defects dense enough to find in a small window; a long exposure so that dark current takes
# the PTRS path (15 e- at full resolution) and hot photodiodes add charge.
SMALL_WINDOW = ("sensor.hot_pixel_rate=1e-3", "sensor.dead_pixel_rate=1e-3", "sensor.exposure_time_s=5")


@pytest.mark.parametrize("off", [None, *NOISE_SOURCES, "all"])
@pytest.mark.parametrize("mode", MODES)
def test_emulated_kernel_equals_the_numpy_reference(numpy_backend, mode, off):
    s = fused_sensor(*MODES[mode], *SMALL_WINDOW)
    if off is not None:
        switches = dict.fromkeys(NOISE_SOURCES if off == "all" else (off,), False)
        s = dataclasses.replace(s, noise=dataclasses.replace(s.noise, **switches))
    shape = (64, 64) if s.cfa.tile_shape == (4, 4) else (34, 50)  # Bayer: partial blocks of the (64, 4) launch
    mean = ramp_mean(s, shape, np.random.default_rng(7))
    expected, patterns, params = reference_dn(mean, s, numpy_backend, seed=2024, exposure=s.exposure())
    if off is None:
        assert patterns.hot_index is not None and params.dark_e > 10, "hot pixels and PTRS dark current are exercised"
    assert_same_dn(emulated_dn(mean, patterns, params), expected)


def test_emulated_kernel_counts_pixels_beyond_32_bits(numpy_backend):
    """A read-out of more than 2**32 pixels puts the index's high word into the counter."""
    s = fused_sensor()
    shape = (34, 50)
    mean = ramp_mean(s, shape, np.random.default_rng(8))
    _, patterns, params = reference_dn(mean, s, numpy_backend, seed=1, exposure=s.exposure())
    far = dataclasses.replace(params, origin=(60_000, 1_000), readout_width=100_000)
    lo, hi = pixel_counters(shape, far.origin, far.readout_width)
    assert hi.min() == 1 and lo.min() < 2**31, "the counters straddle the high word"
    far_draws, near_draws = {}, {}
    expected = digitise(fused.noisy_electrons(mean, patterns, far, np, far_draws), s, np)
    assert_same_dn(emulated_dn(mean, patterns, far), expected)
    fused.noisy_electrons(mean, patterns, params, np, near_draws)
    assert np.mean(far_draws["read"] != near_draws["read"]) > 0.99, "other pixels, other draws"


# -- (b) the reference against the physics ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mode", "iso"),
    [("imx989", "binned", 100), ("imx989", "full", 100), ("imx989", "binned_dcg", 100), ("imx989", "binned", 12800), ("generic_bayer", "full", 50)],
)
def test_without_noise_the_fused_capture_is_the_ideal_capture(numpy_backend, name, mode, iso):
    s = fused_sensor(f"sensor.mode={mode}", f"sensor.iso={iso}", *noise_only(), name=name)
    assert s.engine == "fused"
    scene = np.random.default_rng(3).uniform(0, 1.3, size=(64, 96, 3)).astype(np.float32)
    raw = to_host(capture(scene, s, numpy_backend, seed=5).mosaic)
    np.testing.assert_array_equal(raw, to_host(ideal_capture(scene, s, numpy_backend).mosaic))


def test_same_seed_same_frame_and_the_engines_differ(numpy_backend):
    s = fused_sensor("sensor.noise.defects=false")
    scene = flat(0.5, 64)
    first, again, other = (mosaic(capture(scene, s, numpy_backend, seed)) for seed in (11, 11, 12))
    np.testing.assert_array_equal(first, again)
    assert np.mean(first != other) > 0.5
    reference = mosaic(capture(scene, dataclasses.replace(s, engine="reference"), numpy_backend, seed=11))
    assert np.mean(first != reference) > 0.5, "same distributions, different draws"


@pytest.mark.parametrize(("mode", "luminance"), [("binned", 800.0), ("full", 800.0)])
def test_mean_follows_the_camera_equation(numpy_backend, mode, luminance):
    s = fused_sensor(f"sensor.mode={mode}", "sensor.exposure_time_s=0.005", "sensor.noise.defects=false", *LENS_OFF)
    raw = mosaic(capture(flat(1.0, 128), s, numpy_backend, seed=1, luminance_cd_m2=luminance))
    dark_e = s.dark_current_e_s * binning(s) ** 2 * 0.005
    expected_e = electrons(s, luminance, 0.005) + dark_e
    for colour in (R, G, B):
        dn = sites(raw, s, colour) - s.black_level
        expected = system_gain(s) * expected_e[colour]
        se = dn.std() / math.sqrt(dn.size)
        assert abs(dn.mean() - expected) < Z * se + 1e-4 * expected, (colour, dn.mean(), expected, se)


@pytest.mark.parametrize("iso", [100, 800, 3200])
def test_frame_difference_variance_is_emva_linear_model(numpy_backend, iso):
    """var = K² (mu_e + sigma_read² + sigma_row²) + 1/12 DN², per CFA colour."""
    s = fused_sensor(f"sensor.iso={iso}", *LENS_OFF)
    a, b = (mosaic(capture(flat(0.3), s, numpy_backend, seed)) for seed in (1, 2))
    k = system_gain(s)
    d = temporal(a, b)
    for colour in (R, G, B):
        mu_e = (sites((a + b) / 2, s, colour).mean() - s.black_level) / k
        var, se = variance_and_se(sites(d, s, colour))
        expected = k**2 * (mu_e + read_noise_e(s) ** 2 + s.row_noise_e**2) + 1 / 12
        assert abs(var - expected) < Z * se, (iso, colour, var, expected, se)


POISSON_MEANS = [0.0, 0.3, 3.0, 9.99, 10.0, 37.5, 2_000.0, 1.5e5]


@pytest.mark.parametrize("lam", POISSON_MEANS)
def test_poisson_sampler_matches_the_distribution(lam):
    """Inversion below 10, PTRS from 10: mean, variance and the whole pmf (chi-square)."""
    n = 200_000
    lo, hi = (c.ravel() for c in pixel_counters((400, 500)))
    k = fused.poisson(np.full(n, lam, np.float32), lo, hi, "shot", (99, 0), np)
    assert k.dtype == np.float32 and np.all(k == np.rint(k)) and k.min() >= 0
    assert abs(k.mean() - lam) < Z * math.sqrt(max(lam, 1e-12) / n) + 1e-12
    if lam == 0:
        assert k.max() == 0
        return
    assert abs(k.var() - lam) < Z * math.sqrt((lam + 2 * lam**2) / n)
    # Chi-square over the central values, each bin expecting at least 50 counts.
    dist = stats.poisson(lam)
    lo_k, hi_k = int(dist.ppf(1e-4)), int(dist.ppf(1 - 1e-4))
    edges = np.unique(np.linspace(lo_k, hi_k + 1, min(hi_k + 2 - lo_k, 60)).astype(np.int64))
    observed = np.histogram(k, bins=edges)[0]
    expected = n * (dist.cdf(edges[1:] - 1) - dist.cdf(edges[:-1] - 1))
    keep = expected >= 50
    chi2 = np.sum((observed[keep] - expected[keep]) ** 2 / expected[keep])
    assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4, (lam, chi2, keep.sum())


def test_poisson_draws_are_independent_of_the_other_pixels():
    """The counter makes each pixel's count a function of its own index: a subset draws the same."""
    lo, hi = (c.ravel() for c in pixel_counters((64, 64)))
    lam = np.random.default_rng(2).uniform(0, 40, lo.size).astype(np.float32)
    whole = fused.poisson(lam, lo, hi, "dark", (5, 0), np)
    part = fused.poisson(lam[::7], lo[::7], hi[::7], "dark", (5, 0), np)
    np.testing.assert_array_equal(part, whole[::7])


def test_charge_and_digital_binning_read_noise(numpy_backend):
    for model, factor in (("charge", 1), ("digital", 2)):
        s = fused_sensor("sensor.iso=6400", f"sensor.binning_model={model}", *noise_only("shot", "read"), *LENS_OFF)
        k = system_gain(s)
        sigma_r = s.dcg.hcg_read_noise_e * factor
        dark_a, dark_b = (mosaic(capture(flat(0.0), s, numpy_backend, seed)) for seed in (1, 2))
        dark_var, _ = variance_and_se(temporal(dark_a, dark_b))
        assert math.sqrt((dark_var - 1 / 12) / k**2) == pytest.approx(sigma_r, rel=0.03), model
        a, b = (mosaic(capture(flat(0.3), s, numpy_backend, seed)) for seed in (1, 2))
        mu_e = ((a + b) / 2 - s.black_level) / k
        var_dn, se_dn = variance_and_se(temporal(a, b))
        assert abs((var_dn - 1 / 12) / k**2 - (mu_e.mean() + sigma_r**2)) < Z * se_dn / k**2, model


STREAM_SENSOR = ("sensor.exposure_time_s=0.05", "sensor.hot_pixel_rate=1e-3")


@pytest.mark.parametrize("off", ["shot", "dark_current", "read", "row", "prnu", "dsnu", "defects"])
def test_switching_one_source_off_leaves_the_other_draws(numpy_backend, off):
    scene = flat(0.5, 64)
    on, kept = {}, {}
    capture(scene, fused_sensor(*STREAM_SENSOR), numpy_backend, seed=3, luminance_cd_m2=10.0, components=on)
    capture(scene, fused_sensor(*STREAM_SENSOR, f"sensor.noise.{off}=false"), numpy_backend, seed=3, luminance_cd_m2=10.0, components=kept)
    assert {"shot", "dark", "hot", "read", "row"} <= set(on)
    gone = {"dark_current": "dark", "defects": "hot"}.get(off, off)
    if gone in on:
        assert gone not in kept
    for name in ("read", "row", "dark", "hot"):
        if name != gone:
            np.testing.assert_array_equal(to_host(kept[name]), to_host(on[name]), err_msg=name)
    if off in ("read", "row", "dark_current", "dsnu", "defects"):
        # The photo-electron counts (shot noise plus the mean) are the same draws.
        np.testing.assert_array_equal(to_host(kept["shot"]), to_host(on["shot"]))


@pytest.mark.parametrize("mode", ["binned", "full", "binned_dcg"])
def test_a_window_draws_what_the_same_pixels_draw_in_a_larger_one(numpy_backend, mode):
    """The counter counts pixels in the full read-out: a crop is the same frame, pixel for pixel."""
    s = fused_sensor(f"sensor.mode={mode}", "sensor.hot_pixel_rate=1e-3", "sensor.dead_pixel_rate=1e-3", "sensor.exposure_time_s=0.5", *LENS_OFF)
    small, large = (64, 96), (128, 160)
    a, b = (mosaic(capture(np.full((*shape, 3), 0.4, np.float32), s, numpy_backend, seed=9)) for shape in (small, large))
    (ys, xs), (yl, xl) = window_origin(s, small), window_origin(s, large)
    assert (ys, xs) != (yl, xl)
    np.testing.assert_array_equal(a, b[ys - yl : ys - yl + small[0], xs - xl : xs - xl + small[1]])


def test_dcg_merged_mode(numpy_backend):
    s = fused_sensor("sensor.mode=binned_dcg", *LENS_OFF)
    k = system_gain(s)
    for level in (0.1, 0.6):  # below and above the merge threshold
        g = sites(mosaic(capture(flat(level), s, numpy_backend, seed=2)), s, G) - adc(s)[0]
        assert g.mean() / k == pytest.approx(level * saturation_e(s), rel=0.003), level
    parts = {}
    capture(flat(0.0), s, numpy_backend, seed=3, components=parts)
    assert to_host(parts["read"]).std() == pytest.approx(s.dcg.hcg_read_noise_e, rel=0.02)
    assert to_host(parts["read_lcg"]).std() == pytest.approx(s.read_noise_e, rel=0.02)


@pytest.mark.parametrize("lam", [-0.1, 0.0, 0.14])
def test_tukey_lambda_read_noise(numpy_backend, lam):
    s = fused_sensor(f"sensor.read_noise_tukey_lambda={lam}", *noise_only("read"))
    parts = {}
    capture(flat(0.0, 256), s, numpy_backend, seed=6, components=parts)
    read = to_host(parts["read"]).astype(np.float64).ravel()
    assert read.std() == pytest.approx(s.read_noise_e, rel=0.02)
    scale = s.read_noise_e / math.sqrt(stats.tukeylambda.var(lam))
    assert stats.kstest(read, stats.tukeylambda(lam, scale=scale).cdf).pvalue > 1e-3


def test_hot_pixels_carry_poisson_dark_charge(numpy_backend):
    s = fused_sensor("sensor.hot_pixel_rate=1e-3", "sensor.dead_pixel_rate=0", "sensor.exposure_time_s=1", name="generic_bayer")
    k = system_gain(s)
    dark = [mosaic(capture(flat(0.0), s, numpy_backend, seed)) for seed in (1, 2)]
    hot = dark[0] > s.black_level + 0.5 * k * s.hot_pixel_dark_e_s
    np.testing.assert_array_equal(hot, dark[1] > s.black_level + 0.5 * k * s.hot_pixel_dark_e_s)
    assert abs(hot.sum() - 1e-3 * hot.size) < Z * math.sqrt(1e-3 * hot.size)
    hot_e = (np.concatenate([frame[hot] for frame in dark]) - s.black_level) / k
    lam = s.hot_pixel_dark_e_s + s.dark_current_e_s
    assert abs(hot_e.mean() - lam) < Z * math.sqrt(lam / hot_e.size) + 0.5 / k


def test_config_errors(numpy_backend):
    with pytest.raises(ConfigError, match="sensor.engine='turbo' is not allowed; choose one of reference, fused"):
        sensor("++sensor.engine=turbo")
    with pytest.raises(ConfigError, match=r"sensor.engine=fused: the frame seed must be in \[0, 2\*\*64\)"):
        capture(flat(0.5, 8), fused_sensor(), numpy_backend, seed=-1)


# -- (c) EMVA 1288 characterisation ----------------------------------------------------------------


def test_emva_recovers_the_sensor_with_the_fused_engine(numpy_backend):
    """tests/test_characterize.py's tolerances (3 %), at base ISO (K, full well, PRNU) and at the
    highest analog gain (read noise), with fewer frames than there."""
    s = fused_sensor()
    m = simulate_emva(s, numpy_backend, EmvaSettings(points=40, nonuniformity_frames=16, dark_times_s=[0.0, 0.1]), seed=1288)
    for channel, row in m.summary().items():
        assert row["system_gain_dn_per_e"] == pytest.approx(s.system_gain_dn_e, rel=0.03), channel
        assert row["full_well_e"] == pytest.approx(s.full_well_e * s.binning**2, rel=0.03), channel
        assert row["prnu_percent"] == pytest.approx(m.expected["prnu_percent"][channel], rel=0.03), channel
    high = fused_sensor(f"sensor.iso={s.base_iso * s.max_analog_gain}")
    m = simulate_emva(high, numpy_backend, EmvaSettings(points=12, nonuniformity_frames=2, dark_times_s=[0.0, 0.1]), seed=1288)
    assert m.expected["read_noise_e"] == high.dcg.hcg_read_noise_e
    for channel, r in m.channels.items():
        assert r.temporal_dark_noise_e == pytest.approx(m.expected["temporal_dark_noise_e"], rel=0.03), channel


# -- (d) CuPy's kernel against the NumPy reference ---------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
def test_cupy_kernel_equals_the_numpy_reference(numpy_backend, cupy_backend, mode):
    s = fused_sensor(*MODES[mode], *SMALL_WINDOW)
    shape = (512, 768)
    mean = ramp_mean(s, shape, np.random.default_rng(11))
    exposure = s.exposure()
    expected, _, params = reference_dn(mean, s, numpy_backend, seed=31, exposure=exposure)
    patterns = fixed_patterns(s, cupy_backend, shape)
    got = to_host(fused.dn_cuda(cupy_backend.asarray(mean), patterns, params, cupy_backend))
    diff = got.astype(np.int64) - expected
    # CUDA's logf/expf/cosf and NumPy's may differ by an ulp: rare 1 DN steps, rarer flipped
    # Poisson decisions.
    assert np.mean(diff != 0) < 1e-4, np.count_nonzero(diff)
    assert np.count_nonzero(np.abs(diff) > 1) <= 2, np.abs(diff).max()


@pytest.mark.gpu
def test_cupy_fused_capture_is_deterministic_and_matches_numpy(numpy_backend, cupy_backend):
    s = fused_sensor("sensor.iso=1600", *LENS_OFF)
    scene = flat(0.3, 512)
    host = mosaic(capture(scene, s, numpy_backend, seed=1))
    device = mosaic(capture(cupy_backend.asarray(scene), s, cupy_backend, seed=1))
    np.testing.assert_array_equal(device, mosaic(capture(cupy_backend.asarray(scene), s, cupy_backend, seed=1)))
    assert np.mean(device != host) < 1e-4


@pytest.mark.parametrize("mode", ["binned", "full", "binned_dcg"])
def test_the_reference_in_strips_equals_the_whole_frame(mode, monkeypatch):
    """The NumPy reference draws in row strips (bounded memory at 50 MP): any strip height gives
    the frame drawn whole, hot pixels and row noise included."""
    from isp.sensor.capture import sensor_dn

    s = fused_sensor(f"sensor.mode={mode}", "sensor.hot_pixel_rate=0.002")
    backend = get_backend("numpy")
    shape = (96, 128)
    exposure = s.exposure(100.0)
    mean_e = np.random.default_rng(1).uniform(0, 0.8 * s.full_well_output_e, shape).astype(np.float32)
    patterns = fixed_patterns(s, backend, shape)
    params = fused.fused_params(s, exposure, 11, shape, window_origin(s, shape))
    assert patterns.hot_index is not None and patterns.hot_index.size > 3  # strips re-index them
    whole = digitise(fused.noisy_electrons(mean_e, patterns, params, np), s, np)
    for rows in (1, 7, 32, 1000):
        monkeypatch.setattr(fused, "STRIP_ROWS", rows)
        np.testing.assert_array_equal(sensor_dn(mean_e, s, backend, 11, exposure), whole)
