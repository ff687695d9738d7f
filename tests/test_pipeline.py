"""Config validation, the stage registry and the pipeline: order, taps, start/stop, timing, errors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from isp.backend import get_backend
from isp.config import build, compose, describe, param
from isp.errors import ConfigError, StageError
from isp.pipeline import Pipeline
from isp.sensor import build_sensor, capture
from isp.stages import STAGES, StageContext

CTX = StageContext(get_backend("numpy"))


@dataclass(frozen=True)
class Example:
    gain: float = param(1.0, range=(0.0, 4.0), unit="x")
    mode: str = param("a", choices=("a", "b"))
    matrix: list[list[float]] | None = param(None, shape=(2, 2))
    count: int = param(3, range=(1, None))


def test_build_checks_keys_types_ranges_choices_and_shapes():
    assert build(Example, {"gain": 2, "mode": "b", "matrix": [[1, 0], [0, 1]]}, "x") == Example(2.0, "b", [[1.0, 0.0], [0.0, 1.0]], 3)
    cases = {
        "x.gian: unknown parameter; known: gain, mode, matrix, count": {"gian": 1.0},
        r"x.gain=5.0 is out of range \[0, 4\] x": {"gain": 5.0},
        "x.mode='c' is not allowed; choose one of a, b": {"mode": "c"},
        r"x.matrix: expected shape \(2, 2\), got \(2, 3\)": {"matrix": [[1, 0, 0], [0, 1, 0]]},
        "x.gain='fast': expected a number": {"gain": "fast"},
        r"x.count=0 is out of range \[1, inf\]": {"count": 0},
        "x.count=1.5: expected an integer": {"count": 1.5},
    }
    for message, values in cases.items():
        with pytest.raises(ConfigError, match=message):
            build(Example, values, "x")


def test_describe_lists_units_and_ranges():
    rows = {row["name"]: row for row in describe(Example)}
    assert rows["gain"]["range"] == (0.0, 4.0) and rows["gain"]["unit"] == "x" and rows["mode"]["choices"] == ("a", "b")


def test_every_stage_documents_its_parameters():
    for name, spec in STAGES.items():
        assert spec.summary, f"stage {name} has no docstring"
        for row in describe(spec.params):
            assert row["doc"], f"{name}.{row['name']} has no doc"


def _pipeline(**overrides) -> Pipeline:
    cfg = {"stages": ["black_level", "white_balance", "demosaic", "color_correction", "tone", "oetf", "quantize"], "params": {}}
    cfg.update(overrides)
    return Pipeline.from_config(cfg, {"name": "t", "params": {}})


def _raw(shape=(32, 48)):
    sensor = build_sensor(compose(["sensor=generic_bayer"]).sensor)
    scene = np.random.default_rng(0).uniform(0, 1, size=(*shape, 3)).astype(np.float32)
    return capture(scene, sensor, get_backend("numpy"))


def test_pipeline_order_comes_from_config():
    assert _pipeline().names == ["black_level", "white_balance", "demosaic", "color_correction", "tone", "oetf", "quantize"]


def test_unknown_stage_and_parameters_are_named():
    with pytest.raises(ConfigError, match=r"pipeline.stages\[1\]: unknown stage 'denoise'; known stages: black_level"):
        _pipeline(stages=["black_level", "denoise"])
    with pytest.raises(ConfigError, match="pipeline.params.demosaic.methd: unknown parameter"):
        _pipeline(params={"demosaic": {"methd": "bilinear"}})
    with pytest.raises(ConfigError, match=r"tuning.params.tone.contrast=2.0 is out of range \[-0.5, 1\]"):
        Pipeline.from_config({"stages": ["tone"]}, {"params": {"tone": {"contrast": 2.0}}})
    with pytest.raises(ConfigError, match="tuning.params.sharpn: unknown stage 'sharpn'"):
        Pipeline.from_config({"stages": ["tone"]}, {"params": {"sharpn": {}}})
    with pytest.raises(ConfigError, match="stage 'tone' is listed more than once"):
        _pipeline(stages=["tone", "tone"])


def test_tuning_overrides_pipeline_params():
    pipeline = Pipeline.from_config(
        {"stages": ["tone"], "params": {"tone": {"exposure_ev": 1.0, "contrast": 0.1}}}, {"params": {"tone": {"contrast": 0.3}}}
    )
    params = pipeline.stage("tone").params
    assert params.exposure_ev == 1.0 and params.contrast == 0.3


def test_a_tuning_can_switch_a_listed_stage_off_and_on():
    cfg = {"stages": ["tone", "vignette"], "params": {"vignette": {"enabled": False, "strength": 0.5}}}
    off = Pipeline.from_config(cfg)
    assert not off.stage("vignette").enabled and off.stage("tone").enabled
    on = Pipeline.from_config(cfg, {"params": {"vignette": {"enabled": True}}})
    assert on.stage("vignette").enabled and on.stage("vignette").params.strength == 0.5
    with pytest.raises(ConfigError, match=r"tuning.params.vignette.enabled='yes': expected true or false"):
        Pipeline.from_config(cfg, {"params": {"vignette": {"enabled": "yes"}}})


def test_taps_start_stop_and_times():
    pipeline = _pipeline()
    raw = _raw()
    full = pipeline.run(raw, CTX, taps=["demosaic", "oetf"])
    assert list(full.times_ms) == pipeline.names and all(t >= 0 for t in full.times_ms.values())
    assert full.taps["demosaic"].space == "camera" and full.taps["oetf"].transfer == "srgb"
    assert full.output.data.dtype == np.uint8

    # a disabled stage passes the frame through and takes no time
    without_tone = Pipeline([s if s.name != "tone" else s.__class__(s.spec, s.params, enabled=False) for s in pipeline.stages])
    skipped = without_tone.run(raw, CTX)
    assert "tone" not in skipped.times_ms and len(skipped.times_ms) == len(pipeline.names) - 1

    head = pipeline.run(raw, CTX, stop="demosaic")
    assert list(head.times_ms) == ["black_level", "white_balance", "demosaic"]
    np.testing.assert_array_equal(head.output.data, full.taps["demosaic"].data)
    tail = pipeline.run(head.output, CTX, start="color_correction")
    np.testing.assert_array_equal(tail.output.data, full.output.data)
    # taps stay valid: later stages never modify a stage's output in place
    np.testing.assert_array_equal(full.taps["demosaic"].data, head.output.data)


def test_run_errors_name_the_stage():
    pipeline = _pipeline()
    raw = _raw()
    with pytest.raises(ConfigError, match="pipeline.start: 'sharpen' is not a stage of this pipeline"):
        pipeline.run(raw, CTX, start="sharpen")
    with pytest.raises(ConfigError, match="start stage 'oetf' comes after stop stage 'demosaic'"):
        pipeline.run(raw, CTX, start="oetf", stop="demosaic")
    with pytest.raises(StageError, match="stage 'color_correction' takes an image, got a raw frame"):
        pipeline.run(raw, CTX, start="color_correction")
    with pytest.raises(StageError, match="stage 'white_balance' needs a raw frame in the 'linear' domain, got 'dn'"):
        pipeline.run(raw, CTX, start="white_balance")


def test_quad_bayer_frame_stops_at_the_demosaic_with_a_clear_error():
    sensor = build_sensor(compose(["sensor=imx989", "sensor.mode=full"]).sensor)
    scene = np.full((16, 16, 3), 0.5, np.float32)
    raw = capture(scene, sensor, get_backend("numpy"))
    assert raw.cfa.name == "quad_RGGB"
    with pytest.raises(StageError, match="'demosaic' needs a Bayer mosaic, got CFA 'quad_RGGB'"):
        _pipeline().run(raw, CTX)
