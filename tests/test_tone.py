"""The global tone stage: exposure and the filmic curve, against analytic properties and colour-science."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import isp.stages.tone  # noqa: F401 - registers the stage
from isp.backend import get_backend, to_host
from isp.config import build, resolve_tables
from isp.errors import ConfigError
from isp.frame import CaptureInfo, Image
from isp.stages.registry import STAGES, Stage, StageContext
from isp.stages.tone import ToneParams, curve_knots, tone_curve

CTX = StageContext(get_backend("numpy"))


def params(**values) -> ToneParams:
    return build(ToneParams, values, "tuning.params.tone")


def image(data, **info) -> Image:
    return Image(np.asarray(data, dtype=np.float32), "srgb", "linear", CaptureInfo("test", **info))


def grey_ramp(values) -> Image:
    return image(np.repeat(np.asarray(values, dtype=np.float32)[None, :, None], 3, axis=2))


def run(frame: Image, ctx: StageContext = CTX, **values) -> Image:
    return Stage(STAGES["tone"], params(**values))(frame, ctx)


#: Settings at the corners of the parameter ranges, and a few in between.
CORNERS = [
    dict(contrast=c, shadows=s, highlights=h, black_point=b, white_point=w)
    for c, s, h, b, w in itertools.product((-0.5, 0.35, 1.0), (-1.0, 0.6), (-1.0, 0.5, 1.0), (-0.05, 0.0, 0.04), (0.6, 1.0, 16.0))
]


def test_defaults_are_the_identity_and_clip_to_display_range(rng):
    data = rng.uniform(0.0, 1.0, size=(16, 24, 3)).astype(np.float32)
    np.testing.assert_array_equal(run(image(data)).data, data)
    x = np.linspace(0.0, 1.0, 1001)
    np.testing.assert_allclose(tone_curve(x, ToneParams()), x, rtol=0, atol=1e-15)
    out = run(grey_ramp([-0.1, 0.5, 1.7])).data[0, :, 0]
    assert out.tolist() == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("mode", ["rgb", "luminance"])
def test_neutral_controls_are_the_identity_in_either_mode(rng, mode):
    data = rng.uniform(0.0, 1.0, size=(8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(run(image(data), mode=mode, pivot=0.3).data, data)


@pytest.mark.parametrize("setting", CORNERS, ids=lambda s: ",".join(f"{v:g}" for v in s.values()))
def test_curve_is_monotone_and_ends_at_black_and_white(setting):
    p = params(**setting)
    (black, pivot, white), _ = curve_knots(p)
    x = np.linspace(-0.1, white + 0.5, 20001)
    y = tone_curve(x, p)
    assert np.all(np.diff(y) >= 0.0)
    assert tone_curve(np.array([black, pivot, white]), p).tolist() == pytest.approx([0.0, pivot, 1.0], abs=1e-12)
    assert np.all(y[x <= black] == 0.0) and np.all(y[x >= white] == 1.0)
    stage = run(grey_ramp(x), **setting).data[0, :, 0]
    assert np.all(np.diff(stage) >= 0.0), "the interpolated table keeps the curve monotone"


@pytest.mark.parametrize("setting", [dict(contrast=c, shadows=s) for c in (-0.5, 0.0, 0.4, 1.0) for s in (-1.0, 0.0, 1.0)])
def test_black_maps_to_black_and_white_to_white(setting):
    assert tone_curve(np.array([0.0, 1.0]), params(**setting, highlights=-0.5)).tolist() == [0.0, 1.0]


@pytest.mark.parametrize("setting", [dict(contrast=0.8, shadows=-0.7, highlights=0.6), dict(contrast=-0.5, shadows=1.0, black_point=-0.05)])
def test_curve_is_c1(setting):
    """Finite-difference slopes change by no more than the curvature allows, at the pivot too."""
    p = params(**setting)
    (black, pivot, white), slopes = curve_knots(p)
    step = 1e-5
    x = np.arange(black, white, step)
    slope = np.diff(tone_curve(x, p)) / step
    # a kink of the size the controls produce (|slope jump| >= 0.1) would show up as one large step
    assert np.abs(np.diff(slope)).max() < 1e-3
    left = (tone_curve(np.array(pivot), p) - tone_curve(np.array(pivot - 1e-7), p)) / 1e-7
    right = (tone_curve(np.array(pivot + 1e-7), p) - tone_curve(np.array(pivot), p)) / 1e-7
    assert left == pytest.approx(slopes[1], rel=1e-4) and right == pytest.approx(slopes[1], rel=1e-4)


@pytest.mark.parametrize("contrast", [-0.5, 0.35, 1.0])
@pytest.mark.parametrize("pivot", [0.18, 0.3])
def test_contrast_sets_the_slope_at_the_pivot(contrast, pivot):
    delta = 5e-4  # small enough that the curvature, different on each side of the pivot, stays out
    out = run(grey_ramp([pivot - delta, pivot, pivot + delta]), contrast=contrast, pivot=pivot).data[0, :, 0]
    assert out[1] == pytest.approx(pivot, rel=1e-4), "the pivot maps to itself"
    assert (out[2] - out[0]) / (2 * delta) == pytest.approx(1.0 + contrast, rel=5e-3)


def test_contrast_is_an_s_curve():
    x = np.linspace(0.0, 1.0, 2001)
    y = tone_curve(x, params(contrast=0.5))
    toe, shoulder = (x > 0) & (x < 0.18), (x > 0.18) & (x < 1.0)
    assert np.all(y[toe] < x[toe]) and np.all(y[shoulder] > x[shoulder])
    flat = tone_curve(x, params(contrast=-0.4))
    assert np.all(flat[toe] > x[toe]) and np.all(flat[shoulder] < x[shoulder])


def test_shadows_move_the_toe_and_leave_the_shoulder():
    x = np.linspace(0.0, 1.0, 2001)
    toe, upper = (x > 0) & (x < 0.18), x >= 0.18
    curves = [tone_curve(x, params(shadows=s)) for s in (-1.0, -0.4, 0.0, 0.4, 1.0)]
    for darker, lighter in zip(curves, curves[1:], strict=False):
        assert np.all(darker[toe] < lighter[toe])
        np.testing.assert_allclose(darker[upper], x[upper], rtol=1e-12)
    assert tone_curve(np.array(1e-7), params(shadows=-1.0)) / 1e-7 < 1e-4, "shadows=-1: flat at black"


def test_black_point_crushes_or_lifts_black():
    x = np.linspace(0.0, 0.5, 501)
    crushed = tone_curve(x, params(black_point=0.02))
    assert np.all(crushed[x <= 0.02] == 0.0) and np.all(crushed[(x > 0.02) & (x < 0.18)] < x[(x > 0.02) & (x < 0.18)])
    lifted = tone_curve(x, params(black_point=-0.03))
    assert lifted[0] == pytest.approx(0.03 * 0.18 / 0.21, rel=0.05), "black comes out at about the toe secant times the lift"
    assert np.all(lifted[x < 0.18] > x[x < 0.18])


def test_highlights_recover_the_shoulder_softly():
    x = np.linspace(0.0, 3.0, 30001)
    mids = (x > 0.2) & (x < 1.0)
    recovered = tone_curve(x, params(highlights=1.0))
    identity = tone_curve(x, params())
    assert np.all(recovered[mids] < identity[mids]), "the shoulder is pulled down"
    np.testing.assert_allclose(recovered[x <= 0.18], x[x <= 0.18], rtol=1e-12)
    assert recovered[np.searchsorted(x, 1.0)] < 0.8, "nominal white is no longer clipped"
    over = (x > 1.0) & (x < 2.0)
    assert np.all(np.diff(recovered[over]) > 0), "one stop above white is kept, not clipped"
    end_slope = (recovered[x <= 2.0][-1] - recovered[x <= 2.0][-11]) / (10 * (x[1] - x[0]))
    assert end_slope < 2e-3, "highlights=1 meets white with zero slope: no hard clip"
    half = tone_curve(x, params(highlights=0.5))
    assert np.all(recovered[mids] < half[mids]) and np.all(half[mids] < identity[mids])
    harder = tone_curve(x, params(highlights=-1.0))
    assert np.all(harder[mids] < identity[mids]) and harder[x <= 1.0][-1] == 1.0
    assert (harder[x <= 1.0][-1] - harder[x <= 1.0][-11]) / (10 * (x[1] - x[0])) > 1.5, "a steeper approach to white"


@pytest.mark.parametrize("ev", [1.0, 2.0, -1.0])
def test_exposure_scales_linear_values_below_the_shoulder(ev):
    x = np.linspace(0.0, 0.18 / 2**max(ev, 0.0), 64)
    out = run(grey_ramp(x), exposure_ev=ev, highlights=1.0).data[0, :, 0]
    np.testing.assert_allclose(out, x * 2.0**ev, rtol=2e-4, atol=1e-7)


def test_baseline_exposure_is_added_unless_disabled():
    x = np.linspace(0.0, 0.4, 9)
    frame = grey_ramp(x).replace(info=CaptureInfo("test", baseline_exposure_ev=1.0))
    np.testing.assert_allclose(run(frame).data[0, :, 0], np.minimum(2 * x, 1.0), rtol=1e-6)
    np.testing.assert_allclose(run(frame, use_baseline_exposure=False).data[0, :, 0], x, rtol=1e-6)


def test_rgb_mode_applies_the_curve_to_each_channel(rng):
    data = rng.uniform(0.0, 1.6, size=(32, 32, 3))
    setting = dict(contrast=0.6, shadows=-0.3, highlights=0.7, black_point=0.01)
    out = run(image(data), **setting).data
    np.testing.assert_allclose(out, tone_curve(data.astype(np.float32), params(**setting)), rtol=2e-4, atol=2e-6)


def test_luminance_mode_keeps_rgb_ratios_and_maps_luminance():
    """Output luminance (colour-science's sRGB Y) is the curve of the input's; R:G:B stays."""
    import colour

    colours = np.array([[0.05, 0.04, 0.03], [0.20, 0.10, 0.05], [0.10, 0.30, 0.20], [0.02, 0.05, 0.30], [0.4, 0.5, 0.45]])
    setting = dict(contrast=0.5, shadows=0.3, highlights=0.5, mode="luminance")
    out = run(image(colours[None]), **setting).data[0].astype(np.float64)
    srgb = colour.RGB_COLOURSPACES["sRGB"]
    y_in = colour.RGB_to_XYZ(colours, srgb, apply_cctf_decoding=False)[:, 1]
    y_out = colour.RGB_to_XYZ(out, srgb, apply_cctf_decoding=False)[:, 1]
    np.testing.assert_allclose(y_out, tone_curve(y_in, params(**setting)), rtol=2e-4)
    np.testing.assert_allclose(out / out[:, 1:2], colours / colours[:, 1:2], rtol=1e-5)


def test_luminance_mode_scales_a_pixel_past_white_back_whole():
    red = np.array([[[0.9, 0.1, 0.05]]])
    out = run(image(red), contrast=0.8, exposure_ev=1.0, mode="luminance").data[0, 0]
    assert out.max() == pytest.approx(1.0)
    np.testing.assert_allclose(out / out[0], red[0, 0] / red[0, 0, 0], rtol=1e-5)


def test_luminance_mode_black_lift_is_neutral():
    black = np.zeros((1, 2, 3))
    black[0, 1] = [1e-4, 0.0, 0.0]
    out = run(image(black), black_point=-0.04, mode="luminance").data[0]
    lift = float(tone_curve(np.array(0.0), params(black_point=-0.04)))
    np.testing.assert_allclose(out[0], lift, rtol=1e-4)
    assert out[1, 0] > lift and out[1, 1] == pytest.approx(lift, rel=1e-4), "no runaway gain near black"


def test_a_nan_pixel_stays_in_its_pixel():
    data = np.full((1, 3, 3), 0.3)
    data[0, 1, 1] = np.nan
    with np.errstate(invalid="ignore"):
        out = run(image(data), contrast=0.4).data
    assert np.isnan(out[0, 1, 1]) and np.isfinite(np.delete(out.reshape(-1), 4)).all()


def test_iso_table_is_resolved_per_frame():
    """A contrast table by ISO: full contrast at ISO 100, none at ISO 3200 (identity)."""
    stage = Stage.from_config("tone", [("tuning.params.tone", {"contrast": {"iso": [100, 3200], "value": [0.5, 0.0]}})])
    ramp = np.linspace(0.0, 1.0, 33)
    night = grey_ramp(ramp).replace(info=CaptureInfo("test", iso=3200.0))
    np.testing.assert_array_equal(stage(night, CTX).data[0, :, 0], ramp.astype(np.float32))
    day = grey_ramp(ramp).replace(info=CaptureInfo("test", iso=100.0))
    np.testing.assert_allclose(stage(day, CTX).data[0, :, 0], tone_curve(ramp, params(contrast=0.5)), atol=1e-5)
    with pytest.raises(ConfigError, match="tone.contrast is a tuning table"):
        tone_curve(ramp, stage.params)
    assert resolve_tables(stage.params, {"iso": 400.0}, "tone").contrast == pytest.approx(0.5 * (1 - 2 / 5))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"contrast": 2.0}, r"tuning.params.tone.contrast=2.0 is out of range \[-0.5, 1\]"),
        ({"highlights": -1.5}, r"tuning.params.tone.highlights=-1.5 is out of range \[-1, 1\]"),
        ({"pivot": 0.9}, r"tuning.params.tone.pivot=0.9 is out of range \[0.05, 0.5\] linear"),
        ({"mode": "log"}, r"tuning.params.tone.mode='log' is not allowed; choose one of rgb, luminance"),
        ({"gamma": 2.2}, r"tuning.params.tone.gamma: unknown parameter"),
    ],
)
def test_bad_parameters_are_config_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        build(ToneParams, values, "tuning.params.tone")


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["rgb", "luminance"])
def test_numpy_cupy_parity(rng, cupy_backend, mode):
    data = rng.uniform(-0.05, 1.5, size=(64, 96, 3)).astype(np.float32)
    setting = dict(exposure_ev=0.3, contrast=0.4, shadows=0.2, highlights=0.6, black_point=-0.01, mode=mode)
    expected = run(image(data), **setting).data
    got = to_host(run(image(data).replace(data=cupy_backend.asarray(data)), StageContext(cupy_backend), **setting).data)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# --- the chunked CPU path --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["rgb", "luminance"])
def test_chunks_do_not_change_the_result(rng, mode, monkeypatch):
    data = rng.uniform(-0.1, 2.0, size=(37, 29, 3)).astype(np.float32)
    data[3, 4] = [np.inf, 0.0, -np.inf]
    setting = dict(exposure_ev=0.5, contrast=0.4, shadows=-0.25, highlights=0.4, black_point=-0.01, mode=mode)
    results = []
    for size in (7, 300, 1 << 20):
        monkeypatch.setattr(isp.stages.tone, "CPU_CHUNK_VALUES", size)
        with np.errstate(invalid="ignore"):
            results.append(run(image(data), **setting).data)
    np.testing.assert_array_equal(results[0], results[2])
    np.testing.assert_array_equal(results[1], results[2])


@pytest.mark.parametrize("setting", [dict(contrast=0.4, shadows=-0.25, highlights=0.4, exposure_ev=-0.33), dict(contrast=1.0, black_point=0.04, white_point=0.6)])
def test_rgb_mode_is_the_exact_curve_of_the_exposed_values_everywhere(setting):
    """Past the black and white points, at them, and for infinities: the table ends as the curve does."""
    p = params(**setting)
    (black, _, white), _ = curve_knots(p)
    gain = 2.0 ** p.exposure_ev
    x = np.concatenate([np.linspace(-0.2, 1.5 * white / gain, 4001), [black / gain, white / gain, np.inf, -np.inf, 1e30]])
    out = run(grey_ramp(x), **setting).data[0, :, 0]
    expected = tone_curve(np.clip(x * gain, -1.0, 1e6), p)
    np.testing.assert_allclose(out, expected, atol=3e-6)
