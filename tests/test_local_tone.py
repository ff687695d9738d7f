"""Local tone mapping: the guided filter against a direct per-window reference, and the stage on
synthetic HDR scenes (range compression, detail, halos, colour) and a Kodak image."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage

import isp.stages.local_tone  # noqa: F401 - registers the stage
from isp.backend import get_backend, to_host
from isp.config import build
from isp.errors import ConfigError, StageError
from isp.frame import CaptureInfo, Image
from isp.stages.local_tone import LocalToneParams, guided_filter, radius_px
from isp.stages.oetf import srgb_eotf
from isp.stages.registry import STAGES, Stage, StageContext

CTX = StageContext(get_backend("numpy"))
#: Linear sRGB luminance weights, ITU-R BT.709 (the published values, not the stage's own).
BT709_Y = np.array([0.2126, 0.7152, 0.0722])


def run(frame: Image, ctx: StageContext = CTX, **values) -> Image:
    return Stage(STAGES["local_tone"], build(LocalToneParams, values, "tuning.params.local_tone"))(frame, ctx)


def log_luminance(frame: Image) -> np.ndarray:
    return np.log2(to_host(frame.data).astype(np.float64) @ BT709_Y)


H, W = 128, 256
ROWS, COLS = np.mgrid[0:H, 0:W]
#: Texture: ±0.25 stop, period 8 px, multiplied onto the scene.
TEXTURE_EV = 0.25 * np.sin(2 * np.pi * COLS / 8) * np.sin(2 * np.pi * ROWS / 8)
#: Illumination: a dark half at 0.01 and a bright half at 1.0, 6.64 stops apart.
HALVES_EV = np.where(COLS < W // 2, np.log2(0.01), 0.0)
TINT = np.array([1.0, 0.8, 0.55])


def scene(log2_luminance: np.ndarray) -> Image:
    rgb = 2.0 ** log2_luminance[..., None] * TINT / (TINT @ BT709_Y)
    return Image(rgb.astype(np.float32), "srgb", "linear", CaptureInfo("test"))


def halves(radius: float) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Interiors of the dark and bright halves, three filter radii clear of the edge and the borders."""
    m = 3 * radius_px(radius, (H, W))
    return (slice(m, H - m), slice(m, W // 2 - m)), (slice(m, H - m), slice(W // 2 + m, W - m))


# --- the guided filter ---------------------------------------------------------------------


def guided_filter_direct(guide: np.ndarray, src: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al. (2010), eqs. (5)-(8), window by window in float64; borders mirrored (d c b a | a b c d)."""
    h, w = guide.shape
    gi, pi = np.pad(guide, r, mode="symmetric").astype(np.float64), np.pad(src, r, mode="symmetric").astype(np.float64)
    a, b = np.empty((h, w)), np.empty((h, w))
    for y in range(h):
        for x in range(w):
            wi, wp = gi[y : y + 2 * r + 1, x : x + 2 * r + 1], pi[y : y + 2 * r + 1, x : x + 2 * r + 1]
            a[y, x] = ((wi * wp).mean() - wi.mean() * wp.mean()) / (wi.var() + eps)
            b[y, x] = wp.mean() - a[y, x] * wi.mean()
    pa, pb = np.pad(a, r, mode="symmetric"), np.pad(b, r, mode="symmetric")
    q = np.empty((h, w))
    for y in range(h):
        for x in range(w):
            q[y, x] = pa[y : y + 2 * r + 1, x : x + 2 * r + 1].mean() * guide[y, x] + pb[y : y + 2 * r + 1, x : x + 2 * r + 1].mean()
    return q


@pytest.mark.parametrize(("r", "eps"), [(1, 0.01), (2, 0.1), (3, 1.0)])
def test_guided_filter_matches_the_direct_definition(rng, r, eps):
    guide = rng.normal(0.0, 1.0, size=(13, 17)).astype(np.float32)
    guide[:, 9:] += 3.0  # an edge
    src = (guide + rng.normal(0.0, 0.5, size=guide.shape)).astype(np.float32)
    np.testing.assert_allclose(guided_filter(guide, src, r, eps, scipy.ndimage), guided_filter_direct(guide, src, r, eps), atol=2e-5)
    np.testing.assert_allclose(guided_filter(guide, guide, r, eps, scipy.ndimage), guided_filter_direct(guide, guide, r, eps), atol=2e-5)


def test_guided_filter_keeps_strong_edges_and_flattens_weak_texture():
    step = np.where(COLS < W // 2, -3.0, 3.0)
    texture = 0.2 * TEXTURE_EV  # ±0.05
    base = guided_filter(step + texture, step + texture, 8, 0.25, scipy.ndimage)
    assert (base[:, W // 2] - base[:, W // 2 - 1]).min() > 0.9 * 6.0, "the 6-stop edge stays a step"
    far = np.abs(COLS - W // 2) > 3 * 8
    assert np.abs(base - step)[far].max() < 0.05 * 0.05, "less than 5 % of the texture is left in the base"


def test_radius_is_a_fraction_of_the_diagonal():
    assert radius_px(0.02, (3000, 4000)) == 100 and radius_px(0.02, (300, 400, 3)) == 10
    assert radius_px(0.001, (16, 16)) == 1


# --- the stage -----------------------------------------------------------------------------


def test_strength_zero_is_the_identity(rng):
    frame = scene(HALVES_EV + TEXTURE_EV)
    assert run(frame, compression=0.8, detail=2.0).data is frame.data, "strength defaults to 0"
    np.testing.assert_allclose(run(frame, strength=1e-6, compression=0.8).data, frame.data, rtol=1e-5)


@pytest.mark.parametrize(("strength", "compression"), [(1.0, 0.5), (0.5, 0.6), (1.0, 0.9)])
def test_base_range_shrinks_by_the_requested_amount(strength, compression):
    frame = scene(HALVES_EV + TEXTURE_EV)
    out = run(frame, strength=strength, compression=compression, radius=0.03)
    dark, bright = halves(0.03)
    lin, lout = log_luminance(frame), log_luminance(out)
    range_in = lin[bright].mean() - lin[dark].mean()
    range_out = lout[bright].mean() - lout[dark].mean()
    assert range_out / range_in == pytest.approx(1.0 - strength * compression, rel=0.01)
    anchor = np.log2(0.18)
    assert lout[bright].mean() - anchor == pytest.approx((lin[bright].mean() - anchor) * (1 - strength * compression), rel=0.01)


@pytest.mark.parametrize(("detail", "low", "high"), [(1.0, 0.95, 1.0), (1.5, 1.4, 1.5)])
def test_local_contrast_of_the_texture_is_kept_or_boosted(detail, low, high):
    """Detail: the texture's spread in log luminance, output over input, in each half's interior."""
    frame = scene(HALVES_EV + TEXTURE_EV)
    out = run(frame, strength=1.0, compression=0.5, detail=detail, radius=0.03)
    lin, lout = log_luminance(frame), log_luminance(out)
    for part in halves(0.03):
        assert low < lout[part].std() / lin[part].std() < high


def test_no_halo_at_a_sharp_step():
    """Overshoot: how far the output's log luminance goes past its plateau on either side of a
    6.64-stop step, in stops. The default eps keeps it under 0.1 stop (3 % of the 3.3-stop output
    step); a filter that does not keep edges (eps = 16 stops²) overshoots by over a stop."""
    frame = scene(HALVES_EV)
    overshoot = {}
    for eps in (0.25, 16.0):
        row = log_luminance(run(frame, strength=1.0, compression=0.5, radius=0.05, eps=eps))[H // 2]
        dark_plateau, bright_plateau = row[0], row[-1]
        assert bright_plateau - dark_plateau == pytest.approx(0.5 * np.log2(100), rel=1e-3)
        overshoot[eps] = max(row[W // 2 :].max() - bright_plateau, dark_plateau - row[: W // 2].min())
    assert overshoot[0.25] < 0.1
    assert overshoot[16.0] > 1.0, "the measurement sees a halo when there is one"


def test_colour_ratios_are_kept(rng):
    rgb = rng.uniform(0.001, 2.0, size=(48, 64, 3)).astype(np.float32)
    frame = Image(rgb, "srgb", "linear", CaptureInfo("test"))
    out = run(frame, strength=0.8, compression=0.7, detail=1.3).data
    np.testing.assert_allclose(out / out[..., 1:2], rgb / rgb[..., 1:2], rtol=2e-6)
    assert not np.allclose(out, rgb, rtol=0.05)


def test_target_range_compresses_only_what_exceeds_it():
    frame = scene(HALVES_EV + TEXTURE_EV)
    out = run(frame, strength=1.0, compression=1.0, target_range_ev=3.0, radius=0.03)
    dark, bright = halves(0.03)
    lout = log_luminance(out)
    assert lout[bright].mean() - lout[dark].mean() == pytest.approx(3.0, rel=0.03)
    capped = run(frame, strength=1.0, compression=0.2, target_range_ev=3.0, radius=0.03)
    lcap = log_luminance(capped)
    assert lcap[bright].mean() - lcap[dark].mean() == pytest.approx(0.8 * np.log2(100), rel=0.01)
    gentle = scene(HALVES_EV / 6.0 + TEXTURE_EV)  # 1.1 stops: within the target
    np.testing.assert_array_equal(run(gentle, strength=1.0, target_range_ev=3.0).data, gentle.data)


def test_a_nan_pixel_stays_in_its_pixel():
    data = scene(HALVES_EV + TEXTURE_EV).data.copy()
    data[40, 60] = np.nan
    out = run(Image(data, "srgb", "linear", CaptureInfo("test")), strength=1.0).data
    assert np.isnan(out[40, 60]).all() and np.isfinite(np.delete(out.reshape(-1, 3), 40 * W + 60, axis=0)).all()


def test_strength_table_by_iso():
    stage = Stage.from_config("local_tone", [("tuning.params.local_tone", {"strength": {"iso": [100, 1600], "value": [1.0, 0.0]}})])
    frame = scene(HALVES_EV + TEXTURE_EV)
    night = frame.replace(info=CaptureInfo("test", iso=1600.0))
    assert stage(night, CTX).data is night.data
    day = frame.replace(info=CaptureInfo("test", iso=100.0))
    np.testing.assert_array_equal(stage(day, CTX).data, run(day, strength=1.0).data)


def test_needs_linear_srgb():
    with pytest.raises(StageError, match="'local_tone' needs 'linear' transfer"):
        run(scene(HALVES_EV).replace(transfer="srgb"), strength=1.0)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"strength": 1.5}, r"tuning.params.local_tone.strength=1.5 is out of range \[0, 1\]"),
        ({"radius": 0.0}, r"tuning.params.local_tone.radius=0.0 is out of range \[0.001, 0.25\] image diagonal"),
        ({"eps": -1.0}, r"tuning.params.local_tone.eps=-1.0 is out of range \[0.0001, 16\] stops\^2"),
        ({"target_range_ev": "wide"}, r"tuning.params.local_tone.target_range_ev='wide': expected a number"),
        ({"radius_px": 30}, r"tuning.params.local_tone.radius_px: unknown parameter"),
    ],
)
def test_bad_parameters_are_config_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        build(LocalToneParams, values, "tuning.params.local_tone")


@pytest.mark.data
def test_kodak_image_large_scale_range_halves_and_detail_outlasts_it(shared_data):
    """kodim08 (a sunlit facade with deep shadows). Large scale: the spread of the 61-px box mean
    of log luminance, halved by compression 0.5. Detail: the mean log-luminance gradient, which a
    global compression of the same range would also halve; the local mapper keeps more of it, and
    more again with the detail boost. Much of this image's gradient is in edges strong enough
    (over eps) to stay in the base and be compressed with it, hence the modest margins."""
    import imageio.v3 as iio

    encoded = iio.imread(shared_data / "kodak" / "kodim08.png").astype(np.float32) / 255.0
    frame = Image(srgb_eotf(encoded) + np.float32(1e-3), "srgb", "linear", CaptureInfo("kodim08"))
    lin = log_luminance(frame)
    large_in, grad_in = scipy.ndimage.uniform_filter(lin, 61).std(), np.hypot(*np.gradient(lin)).mean()
    kept = []
    for detail in (1.0, 1.5):
        lout = log_luminance(run(frame, strength=1.0, compression=0.5, detail=detail, radius=0.03))
        assert scipy.ndimage.uniform_filter(lout, 61).std() / large_in == pytest.approx(0.5, abs=0.05)
        kept.append(np.hypot(*np.gradient(lout)).mean() / grad_in)
    assert 0.53 < kept[0] < kept[1] - 0.04, f"gradient kept: {kept} (measured 0.565 and 0.630)"


@pytest.mark.gpu
@pytest.mark.parametrize("target", [None, 3.0])
def test_numpy_cupy_parity(cupy_backend, target):
    frame = scene(HALVES_EV + TEXTURE_EV)
    setting = dict(strength=0.9, compression=0.6, detail=1.4, radius=0.05, target_range_ev=target)
    expected = run(frame, **setting).data
    got = to_host(run(frame.replace(data=cupy_backend.asarray(frame.data)), StageContext(cupy_backend), **setting).data)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=5e-5)
