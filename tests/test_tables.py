"""Tuning tables: parameters indexed by ISO or CCT, validated in the config, interpolated per frame."""

from __future__ import annotations

import numpy as np
import pytest

from isp import colorimetry
from isp.backend import get_backend
from isp.config import Table, build, resolve_tables
from isp.errors import ConfigError
from isp.frame import CaptureInfo, ColorMatrix, Image
from isp.pipeline import Pipeline
from isp.stages import STAGES, Stage, StageContext
from isp.stages.color_correction import ColorCorrectionParams
from isp.stages.registry import frame_conditions

WHERE = "tuning.params.color_correction"


def test_iso_tables_interpolate_in_stops_and_hold_their_ends():
    table = build(ColorCorrectionParams, {"saturation": {"iso": [100, 400, 3200], "value": [1.0, 0.8, 0.5]}}, WHERE).saturation
    assert isinstance(table, Table)
    assert table.at(200) == pytest.approx(0.9)  # one stop of two between 100 and 400
    assert table.at(400 * 2**1.5) == pytest.approx(0.65)  # half of the three stops to 3200
    assert table.at(50) == 1.0 and table.at(12800) == 0.5


def test_cct_tables_interpolate_in_mireds_element_by_element():
    a, d65 = np.eye(3), np.full((3, 3), 1.0 / 3.0)
    table = build(ColorCorrectionParams, {"matrix": {"cct": [2856, 6504], "value": [a.tolist(), d65.tolist()]}}, WHERE).matrix
    mid_mired = (1e6 / 2856 + 1e6 / 6504) / 2
    np.testing.assert_allclose(table.at(1e6 / mid_mired), (a + d65) / 2)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"iso": [100, 100], "value": [1, 1]}, r"saturation.iso=\[100.0, 100.0\]: expected positive values in increasing order"),
        ({"iso": [100, 200], "value": [1]}, r"saturation.value: expected a list of 2 values"),
        ({"iso": [100, 200], "value": [1, 9]}, r"saturation.value\[1\]=9.0 is out of range \[0, 3\]"),
        ({"cct": [3000, 6000], "value": [1, 1]}, r"a tuning table is written \{iso: \[...\], value: \[...\]\}"),
        ({"iso": [100, "x"], "value": [1, 1]}, r"saturation.iso\[1\]='x': expected a number"),
    ],
)
def test_bad_tables_name_the_field(value, message):
    with pytest.raises(ConfigError, match=message):
        build(ColorCorrectionParams, {"saturation": value}, WHERE)


def test_a_plain_mapping_is_not_a_table_where_tables_are_not_allowed():
    with pytest.raises(ConfigError, match="expected a number"):
        build(STAGES["tone"].params, {"exposure_ev": {"iso": [100], "value": [1.0]}}, "tuning.params.tone")


def _image(iso, neutral=(0.5, 1.0, 0.7)) -> Image:
    xyz_to_camera = np.diag([0.5, 1.0, 0.7]) @ colorimetry.XYZ_TO_SRGB
    info = CaptureInfo("test", iso=iso, as_shot_neutral=np.asarray(neutral), color_matrices=(ColorMatrix(xyz_to_camera, "D65", 6504.0),))
    return Image(np.full((4, 4, 3), 0.5, np.float32), "camera", "linear", info, wb_gains=np.array([2.0, 1.0, 1 / 0.7]))


def test_the_stage_gets_the_value_for_the_frames_iso():
    params = build(ColorCorrectionParams, {"saturation": {"iso": [100, 1600], "value": [1.0, 0.0]}}, WHERE)
    stage = Stage(STAGES["color_correction"], params)
    assert stage.params_for(_image(100)).saturation == 1.0
    assert stage.params_for(_image(400)).saturation == pytest.approx(0.5)
    # saturation 0 at ISO 1600 makes every pixel grey
    out = stage(_image(1600).replace(data=np.random.default_rng(0).random((4, 4, 3), dtype=np.float32)), StageContext(get_backend("numpy")))
    assert np.ptp(out.data, axis=2).max() < 1e-6


def test_conditions_come_from_the_frame_and_its_calibration():
    conditions = frame_conditions(_image(800))
    assert conditions["iso"] == 800
    # the as-shot neutral is the D65 white of this calibration
    assert conditions["cct"] == pytest.approx(6504, abs=30)
    assert frame_conditions(_image(800).replace(cct_k=3000.0))["cct"] == 3000.0


def test_a_frame_without_an_iso_is_developed_as_iso_100(caplog):
    assert frame_conditions(_image(None))["iso"] == 100.0
    params = build(ColorCorrectionParams, {"saturation": {"iso": [100, 1600], "value": [1.0, 0.0]}}, WHERE)
    assert resolve_tables(params, frame_conditions(_image(None)), "stage 'color_correction'").saturation == 1.0


def test_a_table_on_a_missing_condition_is_a_clear_error():
    params = build(ColorCorrectionParams, {"saturation": {"iso": [100, 1600], "value": [1.0, 0.0]}}, WHERE)
    with pytest.raises(ConfigError, match="parameter saturation is a table by iso, but the frame has no iso"):
        resolve_tables(params, {"iso": None, "cct": None}, "stage 'color_correction'")


def test_the_pipeline_reports_the_values_its_tables_gave():
    pipeline = Pipeline.from_config(
        {"stages": ["color_correction"]}, {"params": {"color_correction": {"saturation": {"iso": [100, 1600], "value": [1.0, 0.0]}}}}
    )
    result = pipeline.run(_image(400), StageContext(get_backend("numpy")))
    assert result.tuned == {"color_correction": {"saturation": pytest.approx(0.5)}}
