"""The ideal sensor: colour response, CFA sampling, pedestal, clipping and ADC quantisation."""

from __future__ import annotations

import numpy as np
import pytest

from isp.backend import get_backend, to_host
from isp.config import compose
from isp.errors import ConfigError
from isp.sensor import build_sensor, capture


def sensor(*overrides):
    return build_sensor(compose(["sensor=imx989", *overrides]).sensor)


def test_imx989_published_facts():
    s = sensor()
    assert s.modes["full"]["width"] == 8192 and s.modes["full"]["height"] == 6144
    assert s.readout == (3072, 4096) and s.cfa.name == "RGGB" and s.mode == "binned"
    assert (s.pixel_pitch_um, s.bit_depth, s.black_level, s.white_level, s.base_iso) == (1.6, 10, 64, 1023, 100)
    assert s.lens.f_number == 1.9 and s.lens.equivalent_focal_length_mm == 23
    full = sensor("sensor.mode=full")
    assert full.readout == (6144, 8192) and full.cfa.name == "quad_RGGB"


def test_generic_bayer():
    s = build_sensor(compose(["sensor=generic_bayer"]).sensor)
    assert s.readout == (3024, 4032) and s.cfa.name == "RGGB" and s.bit_depth == 10


def test_capture_is_the_quantised_response(backend):
    s = sensor()
    rng = np.random.default_rng(3)
    scene = rng.uniform(0, 1.2, size=(24, 32, 3)).astype(np.float32)
    raw = capture(backend.asarray(scene), s, backend)
    mosaic = to_host(raw.mosaic)
    assert mosaic.dtype == np.uint16 and raw.domain == "dn"
    camera = scene.astype(np.float64) @ np.asarray(s.color_response).T
    signal = np.clip(s.cfa.sample(camera), 0, 1)
    expected = np.rint(64 + signal * (1023 - 64))
    np.testing.assert_allclose(mosaic, expected, atol=1)  # float32 vs float64 rounding at ties
    assert np.mean(mosaic == expected) > 0.99
    assert mosaic.max() == 1023, "over-exposed pixels clip at the white level"
    assert raw.info.sensor == "imx989" and raw.info.iso == 100
    white = np.asarray(s.color_response) @ np.ones(3)
    np.testing.assert_allclose(raw.info.as_shot_neutral, white / white.max())


def test_black_scene_sits_on_the_pedestal_and_codes_are_integers():
    raw = capture(np.zeros((8, 8, 3), np.float32), sensor(), get_backend("numpy"))
    assert np.all(raw.mosaic == 64)
    ramp = np.repeat(np.linspace(0, 1, 64, dtype=np.float32)[None, :, None], 3, axis=2)
    raw = capture(np.repeat(ramp, 4, axis=0), sensor(), get_backend("numpy"))
    assert raw.mosaic.min() >= 64 and raw.mosaic.max() <= 1023


def test_iso_is_gain_metadata_in_the_ideal_model():
    scene = np.full((8, 8, 3), 0.3, np.float32)
    base = capture(scene, sensor(), get_backend("numpy"))
    high = capture(scene, sensor("sensor.iso=6400"), get_backend("numpy"))
    np.testing.assert_array_equal(base.mosaic, high.mosaic)  # auto-exposure holds the signal
    assert high.info.analog_gain == 64 and high.info.digital_gain == 1
    assert sensor("sensor.iso=12800").gains == (64, 2)


def test_sensor_config_errors():
    with pytest.raises(ConfigError, match="sensor.mode='cropped' is not a mode of imx989; choose one of full, binned"):
        sensor("sensor.mode=cropped")
    with pytest.raises(ConfigError, match="sensor.iso=50.0 is below the base ISO 100"):
        sensor("sensor.iso=50")
    with pytest.raises(ConfigError, match="exceeds the 10-bit ADC range"):
        sensor("sensor.white_level=4095")
    with pytest.raises(ConfigError, match=r"sensor.bit_depth=20 is out of range \[8, 16\]"):
        sensor("sensor.bit_depth=20")
    with pytest.raises(ConfigError, match="larger than the binned read-out"):
        capture(np.zeros((4000, 8, 3), np.float32), sensor(), get_backend("numpy"))
