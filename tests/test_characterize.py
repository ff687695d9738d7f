"""Photon-transfer characterisation must recover every sensor's configured parameters.

The simulated EMVA 1288 measurement (:func:`isp.characterize.simulate_emva`) is analysed with
:mod:`isp.metrics.emva`, which knows nothing of the sensor model; the figures it finds are
compared with what the YAML configures. Each quantity is measured where a real lab would
measure it: system gain, full well and PRNU at base ISO (the full well fills the ADC range
there and the PRNU signal is largest); read noise, DSNU and dark current at the highest analog
gain, where one electron spans more than one ADC code (at base ISO a 10-bit ADC cannot resolve
a 1-3 e- read noise, which EMVA flags). Sensors with dual conversion gain are also measured
at full resolution just below the switch to high gain, for the low-gain read noise.
"""

from __future__ import annotations

import json

import pytest

from isp.backend import get_backend
from isp.characterize import EmvaSettings, expected_emva, simulate_emva
from isp.config import compose
from isp.sensor import build_sensor

SENSORS = ["generic_bayer", "imx707", "imx766", "imx800", "imx989"]
TOLERANCE = 0.03
DARK_CURRENT_TOLERANCE = 0.05


def sensor(name, *overrides):
    return build_sensor(compose([f"sensor={name}", *overrides]).sensor)


def measure(s, **settings):
    return simulate_emva(s, get_backend("numpy"), EmvaSettings(**settings), seed=1288)


def assert_close(measured, expected, tolerance, what):
    assert abs(measured / expected - 1.0) <= tolerance, f"{what}: measured {measured:.5g}, configured {expected:.5g}"


@pytest.mark.parametrize("name", SENSORS)
def test_base_iso_gain_full_well_and_prnu(name):
    s = sensor(name)
    m = measure(s)
    expected = m.expected
    for channel, row in m.summary().items():
        assert_close(row["system_gain_dn_per_e"], s.system_gain_dn_e, TOLERANCE, f"{name} {channel} K")
        assert_close(row["full_well_e"], s.full_well_e * s.binning**2, TOLERANCE, f"{name} {channel} full well")
        assert_close(row["prnu_percent"], expected["prnu_percent"][channel], TOLERANCE, f"{name} {channel} PRNU")
        # EMVA's saturation capacity sits where the variance peaks: a few shot-noise deviations
        # below the clip level, never above it.
        assert 0.9 * row["full_well_e"] < row["saturation_capacity_e"] <= row["full_well_e"] * 1.005
    assert_close(s.prnu / s.binning * 100, expected["prnu_percent"]["G"], 1e-12, "binned PRNU is PRNU / binning")


@pytest.mark.parametrize("name", SENSORS)
def test_high_gain_read_noise_dsnu_and_dark_current(name):
    s = sensor(name)
    s = sensor(name, f"sensor.iso={s.base_iso * s.max_analog_gain}")
    m = measure(s)
    read = s.dcg.hcg_read_noise_e if s.dcg is not None else s.read_noise_e
    assert_close(m.expected["read_noise_e"], read, 1e-12, "the configured read noise is the one expected")
    for channel, r in m.channels.items():
        assert not r.dark_noise_quantisation_limited
        assert_close(r.system_gain_dn_per_e, s.system_gain_dn_e, TOLERANCE, f"{name} {channel} K")
        # The temporal dark noise is the read noise with the row noise and the dark current's
        # shot noise at the 10 ms sweep in quadrature (0.2 e- and < 0.4 e- here).
        assert_close(r.temporal_dark_noise_e, m.expected["temporal_dark_noise_e"], TOLERANCE, f"{name} {channel} read noise")
        assert_close(r.nonuniformity.dsnu_e, s.dsnu_e * s.binning, TOLERANCE, f"{name} {channel} DSNU")
        assert_close(r.dark_current.dark_current_e_per_s, s.dark_current_e_s * s.binning**2, DARK_CURRENT_TOLERANCE, f"{name} {channel} dark current")


@pytest.mark.parametrize("name", [n for n in SENSORS if n != "generic_bayer"])
def test_low_conversion_gain_read_noise_at_full_resolution(name):
    s = sensor(name, "sensor.mode=full")
    iso = s.base_iso * s.dcg.hcg_from_gain * 0.97  # the highest analog gain still at low conversion gain
    s = sensor(name, "sensor.mode=full", f"sensor.iso={iso}")
    assert not s.high_conversion_gain
    m = measure(s, size=[192, 192], nonuniformity_frames=2, dark_times_s=[0.0, 0.1])
    for channel, r in m.channels.items():
        assert_close(r.temporal_dark_noise_e, m.expected["temporal_dark_noise_e"], TOLERANCE, f"{name} {channel} LCG read noise")
        assert_close(m.expected["read_noise_e"], s.read_noise_e, 1e-12, "LCG read noise")


def test_quad_mismatch_shows_in_full_resolution_prnu_only():
    full = measure(sensor("imx989", "sensor.mode=full"), nonuniformity_frames=16, points=40, dark_times_s=[0.0, 0.1])
    for channel, r in full.channels.items():
        assert_close(r.nonuniformity.prnu_percent, full.expected["prnu_percent"][channel], TOLERANCE, f"full-resolution {channel} PRNU")
        assert r.nonuniformity.prnu_percent > 0.7, "the 2 % mismatch adds to the 0.7 % PRNU"


def test_dual_conversion_gain_merge_extends_dynamic_range():
    binned = measure(sensor("imx989"), points=40, nonuniformity_frames=2, dark_times_s=[0.0, 0.1])
    merged = measure(sensor("imx989", "sensor.mode=binned_dcg"), points=40, nonuniformity_frames=2, dark_times_s=[0.0, 0.1])
    for channel in ("R", "G", "B"):
        assert merged.channels[channel].dynamic_range_db > binned.channels[channel].dynamic_range_db + 6.0
    assert_close(merged.summary()["G"]["full_well_e"], 48000.0, TOLERANCE, "merged frame full well")


def test_result_is_json_and_expected_needs_no_frames():
    s = sensor("generic_bayer", "sensor.iso=800")
    m = measure(s, size=[64, 64], points=12, nonuniformity_frames=2, dark_times_s=[0.0, 0.1])
    text = json.dumps(m.to_dict(), allow_nan=False)
    assert '"summary"' in text and '"expected"' in text
    assert expected_emva(s, EmvaSettings())["system_gain_dn_per_e"] == pytest.approx(0.155 * 16)


def test_python_api_runs_the_experiment_from_overrides():
    import isp

    m = isp.emva(["sensor=generic_bayer", "sensor.iso=800", "experiment=emva", "experiment.size=[32,32]", "experiment.points=10", "experiment.nonuniformity_frames=2"])
    assert m.settings.size == [32, 32] and m.sensor.iso == 800
    assert m.summary()["G"]["system_gain_dn_per_e"] == pytest.approx(2.48, rel=0.1)
