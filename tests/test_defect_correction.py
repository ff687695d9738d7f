"""Defect correction: every injected defect found, false flags within the Gaussian tail's
prediction, edges left alone, listed defects repaired from their same-site neighbours, Quad
Bayer, errors, and NumPy/CuPy parity.

The false-flag rate of a clean pixel whose value and 8 neighbours share Gaussian noise of one
standard deviation is ``∫ φ(x) Φ(x - t)^8 dx`` at threshold ``t`` (for each of hot and cold),
integrated here with SciPy, independently of the stage.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy import integrate, stats

from isp.backend import get_backend, to_host
from isp.cfa import CFALayout
from isp.config import build, compose
from isp.errors import ConfigError, InputError, StageError
from isp.frame import CaptureInfo, RawFrame
from isp.scene import build_scene_params, render_scene
from isp.sensor import build_sensor, capture, ideal_capture
from isp.stages.black_level import BlackLevelParams, black_level
from isp.stages.defect_correction import DefectCorrectionParams, correct_defects, defect_correction, find_defects
from isp.stages.registry import STAGES, Stage, StageContext
from isp.stages.white_balance import WhiteBalanceParams, white_balance

CTX = StageContext(get_backend("numpy"))
SHOT_SCALE = 1e-3  # S: 1000 e- at white
READ_VARIANCE = 1e-5  # O: about 3 e- of read noise


def false_flag_rate(threshold: float) -> float:
    """Chance that a clean pixel is flagged hot (or, alike, cold), for Gaussian noise."""
    value, _ = integrate.quad(lambda x: stats.norm.pdf(x) * stats.norm.cdf(x - threshold) ** 8, -np.inf, np.inf, epsrel=1e-10)
    return value


def poisson_frame(level: np.ndarray, cfa: str = "RGGB", seed: int = 0, **changes) -> RawFrame:
    """Poisson-Gaussian noise around ``level`` with the noise profile that describes it."""
    rng = np.random.default_rng(seed)
    electrons = rng.poisson(np.maximum(level, 0.0) / SHOT_SCALE)
    mosaic = electrons * SHOT_SCALE + rng.normal(0.0, np.sqrt(READ_VARIANCE), level.shape)
    info = CaptureInfo("synthetic", iso=800.0, noise_profile=((SHOT_SCALE, READ_VARIANCE),))
    return RawFrame(mosaic.astype(np.float32), CFALayout.from_name(cfa), 0.0, 1.0, info, domain="linear", **changes)


def params(**values) -> DefectCorrectionParams:
    return build(DefectCorrectionParams, values, "tuning.params.defect_correction")


@functools.cache
def imx989_capture(iso: int, shape: tuple[int, int]) -> tuple[RawFrame, RawFrame]:
    """The ColorChecker through the IMX989 (binned), sensor defects off: linear and balanced,
    noisy and noise-free."""
    cfg = compose([f"sensor.iso={iso}", "sensor.noise.defects=false", f"scene.size=[{shape[0]},{shape[1]}]"])
    sensor = build_sensor(cfg.sensor)
    backend = get_backend("numpy")
    scene = render_scene(build_scene_params(cfg.scene), sensor.readout, sensor.cfa.tile_shape, backend)

    def linear(raw: RawFrame) -> RawFrame:
        raw = black_level(raw, BlackLevelParams(), CTX)
        return white_balance(raw, build(WhiteBalanceParams, {}, "wb"), CTX)

    noisy = capture(scene.linear_rgb, sensor, backend, seed=3, luminance_cd_m2=scene.luminance_cd_m2)
    ideal = ideal_capture(scene.linear_rgb, sensor, backend, luminance_cd_m2=scene.luminance_cd_m2)
    return linear(noisy), linear(ideal)


def spaced_positions(rng: np.random.Generator, ideal: np.ndarray, count: int, spacing: int = 8) -> np.ndarray:
    """``count`` distinct pixels at least ``spacing`` apart, inside the chart's uniform areas
    (a defect on the dark side of an edge, within its bright neighbours' range, is not a
    defect any detector can tell)."""
    h, w = ideal.shape
    rows, cols = np.meshgrid(np.arange(spacing, h - spacing, spacing), np.arange(spacing, w - spacing, spacing), indexing="ij")
    cells = np.column_stack([rows.ravel(), cols.ravel()]) + rng.integers(0, 2, size=(rows.size, 2))  # every CFA site
    window = np.stack([ideal[cells[:, 0] + dy, cells[:, 1] + dx] for dy in range(-2, 3) for dx in range(-2, 3)])
    uniform = cells[window.max(axis=0) - window.min(axis=0) < 0.02]
    return uniform[rng.choice(len(uniform), count, replace=False)]


# -- dynamic detection ----------------------------------------------------------------------


def test_every_injected_defect_is_found_on_a_simulated_capture():
    noisy, ideal = imx989_capture(800, (480, 640))
    rng = np.random.default_rng(7)
    hot, dead = np.split(spaced_positions(rng, ideal.mosaic, 80), 2)
    mosaic = noisy.mosaic.copy()
    mosaic[hot[:, 0], hot[:, 1]] += 0.25
    mosaic[dead[:, 0], dead[:, 1]] = 0.0
    injected = np.zeros(noisy.shape, bool)
    injected[hot[:, 0], hot[:, 1]] = injected[dead[:, 0], dead[:, 1]] = True

    found = find_defects(noisy.replace(mosaic=mosaic), 4.0, np)
    assert np.all(found[injected]), f"missed {np.count_nonzero(injected & ~found)} of {injected.sum()} injected defects"
    false_flags = np.count_nonzero(found & ~injected)
    assert false_flags <= 2, f"{false_flags} clean pixels of the chart (patch edges included) flagged"

    out = defect_correction(noisy.replace(mosaic=mosaic), params(), CTX).mosaic
    error = np.abs(out - ideal.mosaic)[injected]
    assert error.max() < 0.05, "a repaired defect is far from the noise-free value"
    np.testing.assert_array_equal(out[~found], mosaic[~found], err_msg="only flagged pixels change")


@pytest.mark.parametrize("threshold", [2.0, 3.0])
def test_false_flags_on_a_flat_field_follow_the_gaussian_tail(threshold):
    frame = poisson_frame(np.full((512, 512), 0.3))
    flagged = np.count_nonzero(find_defects(frame, threshold, np))
    expected = 2.0 * false_flag_rate(threshold) * frame.mosaic.size  # hot and cold
    # Poisson noise at 300 e- is slightly skewed: allow 30 % beyond five standard errors.
    assert flagged <= 1.3 * expected + 5.0 * np.sqrt(expected), (flagged, expected)
    assert flagged >= 0.6 * expected - 5.0 * np.sqrt(expected), f"{flagged} flags, {expected:.1f} expected: the noise is misjudged"


def test_default_threshold_leaves_a_flat_field_alone():
    frame = poisson_frame(np.full((512, 512), 0.3), seed=1)
    expected = 2.0 * false_flag_rate(4.0) * frame.mosaic.size
    assert expected < 0.5
    assert np.count_nonzero(find_defects(frame, 4.0, np)) <= 1


@pytest.mark.parametrize("direction", ["vertical", "horizontal", "diagonal"])
def test_a_sharp_step_edge_is_not_flagged(direction):
    rows, cols = np.mgrid[:256, :256]
    coordinate = {"vertical": cols, "horizontal": rows, "diagonal": rows + cols}[direction]
    edge = coordinate.max() / 2
    level = np.where(coordinate < edge, 0.05, 0.8)
    near_edge = np.abs(coordinate - edge) < 4
    for seed in range(4):
        flagged = find_defects(poisson_frame(level, seed=seed), 4.0, np)
        assert np.count_nonzero(flagged & near_edge) == 0, f"seed {seed}: a pixel of the edge flagged"
        assert np.count_nonzero(flagged) <= 2, f"seed {seed}: more flags than the Gaussian tail allows"


def test_noise_judged_after_white_balance_and_shading_gains():
    """The same sensor noise, amplified by gains, is not mistaken for defects."""
    level = np.full((256, 256), 0.2)
    frame = poisson_frame(level, seed=4)
    shading = np.linspace(1.0, 3.0, 256, dtype=np.float32)[None, :].repeat(256, 0)
    gains = np.array([2.0, 1.0, 1.6])
    boosted = frame.cfa.apply_per_site(frame.mosaic * shading, scale=frame.cfa.per_site(gains))
    gained = frame.replace(mosaic=boosted, wb_gains=gains, shading_gain=shading)
    assert np.count_nonzero(find_defects(gained, 3.0, np)) <= 2.0 * false_flag_rate(3.0) * level.size * 1.3 + 5
    blind = gained.replace(shading_gain=None, wb_gains=None)
    assert np.count_nonzero(find_defects(blind, 3.0, np)) > 100, "ignoring the gains would flag the amplified noise"


# -- correction -----------------------------------------------------------------------------


def test_a_defect_becomes_the_median_of_its_same_colour_neighbours():
    rng = np.random.default_rng(3)
    mosaic = rng.uniform(0.1, 0.9, (32, 32)).astype(np.float32)
    cfa = CFALayout.from_name("GRBG")
    mask = np.zeros(mosaic.shape, bool)
    mask[10, 13] = True
    out = correct_defects(mosaic, cfa, mask)
    neighbours = [mosaic[10 + dy, 13 + dx] for dy in (-2, 0, 2) for dx in (-2, 0, 2) if dy or dx]
    assert out[10, 13] == pytest.approx(np.median(neighbours), rel=1e-6)
    out[10, 13] = mosaic[10, 13]
    np.testing.assert_array_equal(out, mosaic)


def test_a_cluster_is_repaired_from_clean_neighbours():
    mosaic = np.full((32, 32), 0.2, np.float32)
    mosaic[10, 10] = mosaic[10, 12] = mosaic[12, 10] = 1.0  # three hot pixels of one site, touching
    frame = poisson_frame(np.zeros((32, 32))).replace(mosaic=mosaic)
    mask = find_defects(frame, 4.0, np)
    mask[10, 10] = mask[10, 12] = mask[12, 10] = True
    np.testing.assert_allclose(correct_defects(mosaic, frame.cfa, mask), 0.2)


def test_static_list_from_config_csv_and_npy(tmp_path):
    rng = np.random.default_rng(5)
    mosaic = rng.uniform(0.2, 0.3, (64, 64)).astype(np.float32)
    listed = [(5, 7), (20, 30), (41, 2), (63, 63)]
    for row, col in listed:
        mosaic[row, col] = 1.0
    mosaic[30, 30] = 1.0  # hot, but not listed: static mode leaves it
    frame = poisson_frame(np.zeros((64, 64))).replace(mosaic=mosaic)
    (tmp_path / "defects.csv").write_text("row,col\n20,30\n41,2 # a comment\n")
    np.save(tmp_path / "defects.npy", np.array([[63, 63]]))
    for extra in ("defects.csv", "defects.npy"):
        p = params(mode="static", defects=[[5, 7]], defects_file=str(tmp_path / extra))
        out = defect_correction(frame, p, CTX).mosaic
        in_file = [(20, 30), (41, 2)] if extra.endswith("csv") else [(63, 63)]
        for row, col in [(5, 7), *in_file]:
            assert 0.2 <= out[row, col] <= 0.3, (extra, row, col)
        assert out[30, 30] == 1.0
    both = defect_correction(frame, params(mode="both", defects=[[5, 7]]), CTX).mosaic
    assert both[30, 30] < 0.3 and both[5, 7] < 0.3


def test_unreadable_defect_files_name_the_file(tmp_path):
    frame = poisson_frame(np.full((16, 16), 0.2))
    bad = tmp_path / "bad.csv"
    bad.write_text("row,col\n1,two\n")
    wrong_shape = tmp_path / "three.npy"
    np.save(wrong_shape, np.zeros((2, 3)))
    for path in (tmp_path / "missing.csv", bad, wrong_shape, tmp_path / "list.txt"):
        with pytest.raises(InputError, match=path.name):
            defect_correction(frame, params(mode="static", defects_file=str(path)), CTX)


def test_a_listed_defect_outside_the_frame_is_an_error():
    frame = poisson_frame(np.full((16, 16), 0.2))
    with pytest.raises(StageError, match=r"\[16, 3\] lies outside the 16x16 frame"):
        defect_correction(frame, params(mode="static", defects=[[16, 3]]), CTX)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"threshold_sigma": 0.5}, r"tuning.params.defect_correction.threshold_sigma=0.5 is out of range \[1, 1000\]"),
        ({"mode": "median"}, r"tuning.params.defect_correction.mode='median' is not allowed"),
        ({"defects": [[1, 2, 3]]}, r"defects\[0\]=\[1, 2, 3\]: expected \[row, col\]"),
        ({"defects": [[1, -2]]}, r"tuning.params.defect_correction.defects=.* is out of range"),
        ({"mode": "static"}, "mode=static needs defects or defects_file"),
        ({"threshold_sigma": {"iso": [100, 3200], "value": [4.0, 0.1]}}, r"threshold_sigma.value\[1\]=0.1 is out of range"),
    ],
)
def test_bad_parameters_are_config_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        params(**values)


def test_threshold_as_an_iso_table():
    stage = Stage(STAGES["defect_correction"], params(threshold_sigma={"iso": [100, 3200], "value": [3.0, 6.0]}))
    frame = poisson_frame(np.full((64, 64), 0.3))
    assert stage.params_for(frame).threshold_sigma == pytest.approx(3.0 + 3.0 * np.log2(800 / 100) / np.log2(32))
    stage(frame, CTX)


# -- Quad Bayer -------------------------------------------------------------------------------


def test_quad_bayer_compares_a_pixel_with_its_own_tile_site():
    """A sub-pixel gain pattern repeating with the 4x4 tile is not a defect; a hot pixel is,
    and it is repaired from the pixels of its own site, four apart."""
    cfa = CFALayout.from_name("quad_RGGB")
    tile_gain = 1.0 + 0.05 * np.random.default_rng(6).standard_normal((4, 4))
    level = 0.3 * cfa.tile(tile_gain, (128, 128))
    frame = poisson_frame(level, cfa="quad_RGGB", seed=8)
    frame = frame.replace(info=CaptureInfo("synthetic", iso=800.0, noise_profile=((SHOT_SCALE * 1e-2, READ_VARIANCE * 1e-2),)))
    # 100x the light: the 5 % site pattern is 20 noise standard deviations
    frame = frame.replace(mosaic=(level + (frame.mosaic - level) * 0.1).astype(np.float32))
    assert np.count_nonzero(find_defects(frame, 4.0, np)) == 0
    mosaic = frame.mosaic.copy()
    mosaic[61, 70] += 0.3
    found = find_defects(frame.replace(mosaic=mosaic), 4.0, np)
    assert found[61, 70] and np.count_nonzero(found) == 1
    out = correct_defects(mosaic, cfa, found)
    neighbours = [mosaic[61 + dy, 70 + dx] for dy in (-4, 0, 4) for dx in (-4, 0, 4) if dy or dx]
    assert out[61, 70] == pytest.approx(np.median(neighbours), rel=1e-6)


# -- NumPy / CuPy parity ----------------------------------------------------------------------


@pytest.mark.parametrize("cfa", ["BGGR", "quad_GRBG"])
def test_numpy_cupy_parity(backend, cfa):
    level = np.full((96, 128), 0.25)
    frame = poisson_frame(level, cfa=cfa, seed=9)
    mosaic = frame.mosaic.copy()
    mosaic[::17, ::13] = 1.0
    mosaic[5::19, 3::11] = 0.0
    frame = frame.replace(mosaic=mosaic, wb_gains=np.array([1.8, 1.0, 1.4]), shading_gain=np.full(level.shape, 1.2, np.float32))
    p = params(mode="both", defects=[[40, 41]], threshold_sigma=3.0)
    expected = defect_correction(frame, p, CTX).mosaic
    moved = frame.replace(mosaic=backend.asarray(mosaic), shading_gain=backend.asarray(frame.shading_gain))
    got = to_host(defect_correction(moved, p, StageContext(backend)).mosaic)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert not np.array_equal(expected, mosaic), "the case exercises a correction"


@pytest.mark.data
def test_fine_texture_is_not_taken_for_defects(shared_data):
    """kodim08 (brick and shutters) sampled as a low-noise mosaic: judged by noise alone, much of
    its texture stands out of its same-colour neighbours; the spread rule leaves it alone while
    still catching a hot pixel on a flat area."""
    import imageio.v3 as iio

    rgb = iio.imread(shared_data / "kodak" / "kodim08.png").astype(np.float64) / 255.0
    level = CFALayout.from_name("RGGB").sample(rgb ** 2.2 * 0.8 + 0.01)
    frame = poisson_frame(level, seed=3)
    by_noise_alone = np.count_nonzero(find_defects(frame, 4.0, np))
    with_spread = find_defects(frame, 4.0, np, spread_ratio=1.0)
    assert by_noise_alone > 1000
    assert np.count_nonzero(with_spread) < by_noise_alone / 5
    sky = (54, 658)  # a flat area (the 5x5 range of green is 0 there in the 8-bit image)
    mosaic = frame.mosaic.copy()
    mosaic[sky] = min(1.0, mosaic[sky] * 3 + 0.2)
    assert find_defects(frame.replace(mosaic=mosaic), 4.0, np, spread_ratio=1.0)[sky]


# -- strips and borders (the CPU path runs in strips of rows, in the mosaic's own layout) -----


def reference_find_defects(frame: RawFrame, threshold: float, spread_ratio: float) -> np.ndarray:
    """The detector written plainly on site planes, borders mirrored with np.pad's reflect, in float64."""
    th, tw = frame.cfa.tile_shape
    h, w = frame.shape
    planes = frame.mosaic.astype(np.float64).reshape(h // th, th, w // tw, tw).transpose(1, 3, 0, 2).reshape(th * tw, h // th, w // tw)
    padded = np.pad(planes, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    hp, wp = planes.shape[1:]
    views = np.stack([padded[:, 1 + dy : 1 + dy + hp, 1 + dx : 1 + dx + wp] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx])
    highest, lowest = views.max(axis=0), views.min(axis=0)
    slope, offset = SHOT_SCALE, READ_VARIANCE
    sigma = lambda level: np.sqrt(slope * np.maximum(level, 0.0) + offset)  # noqa: E731 - the profile of poisson_frame
    spread = (highest - lowest) * spread_ratio
    flags = (planes > highest + threshold * sigma(highest) + spread) | (planes < lowest - threshold * sigma(lowest) - spread)
    return flags.reshape(th, tw, hp, wp).transpose(2, 0, 3, 1).reshape(h, w)


@pytest.mark.parametrize("cfa", ["RGGB", "quad_BGGR"])
@pytest.mark.parametrize("shape", [(2, 2), (4, 4), (2, 8), (8, 4), (12, 20), (70, 36)])
def test_detection_at_every_border_matches_a_plain_reference(cfa, shape):
    """Frames of one or two tiles per side mirror onto themselves; larger ones mirror a tile in."""
    th = 4 if cfa.startswith("quad") else 2
    shape = (shape[0] * th // 2, shape[1] * th // 2)
    rng = np.random.default_rng(sum(shape))
    frame = poisson_frame(rng.uniform(0.05, 0.6, size=shape), cfa=cfa, seed=sum(shape))
    mosaic = frame.mosaic.copy()
    mosaic[rng.integers(0, shape[0], 3), rng.integers(0, shape[1], 3)] = 1.0  # some hot pixels, borders included
    mosaic[0, 0] = 0.0
    frame = frame.replace(mosaic=mosaic)
    for threshold, ratio in ((3.0, 0.0), (2.0, 0.5)):
        expected = reference_find_defects(frame, threshold, ratio)
        found = find_defects(frame, threshold, np, spread_ratio=ratio)
        # float32 against float64: only a pixel within rounding of its bound may differ
        assert np.count_nonzero(found != expected) <= 1, (threshold, ratio)


def test_detection_and_repair_do_not_depend_on_the_strips(monkeypatch):
    import isp.stages.defect_correction as module

    frame = poisson_frame(np.random.default_rng(4).uniform(0.05, 0.6, size=(88, 64)), cfa="quad_RGGB", seed=4)
    mosaic = frame.mosaic.copy()
    mosaic[::7, ::9] = 1.0
    frame = frame.replace(mosaic=mosaic)
    results = []
    for rows in (4, 12, 1000):
        monkeypatch.setattr(module, "CPU_STRIP_ROWS", rows)
        results.append(defect_correction(frame, params(threshold_sigma=3.0), CTX).mosaic)
    np.testing.assert_array_equal(results[0], results[2])
    np.testing.assert_array_equal(results[1], results[2])
    assert not np.array_equal(results[2], mosaic)


def bayer_site_planes(mosaic: np.ndarray) -> np.ndarray:
    """``(2, 2, H/2, W/2)``: the plane of each Bayer tile site."""
    h, w = mosaic.shape
    return mosaic.reshape(h // 2, 2, w // 2, 2).transpose(1, 3, 0, 2)


def test_repair_mirrors_neighbours_at_the_borders_like_the_site_planes():
    """Defects on the first and last rows and columns, and a frame of a single tile row: each
    becomes the median of its clean same-site neighbours, mirrored past the border."""
    cfa = CFALayout.from_name("RGGB")
    rng = np.random.default_rng(11)
    for shape in ((10, 12), (2, 12), (10, 2)):
        mosaic = rng.uniform(0.1, 0.9, size=shape).astype(np.float32)
        defects = np.zeros(shape, bool)
        defects[0, :] = rng.random(shape[1]) < 0.5
        defects[-1, -1] = defects[shape[0] // 2, 0] = True
        out = correct_defects(mosaic, cfa, defects)
        values, flags = (np.pad(bayer_site_planes(a), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect") for a in (mosaic, defects))
        for r, c in zip(*np.nonzero(defects), strict=True):
            sy, sx, pr, pc = r % 2, c % 2, r // 2 + 1, c // 2 + 1
            near = [values[sy, sx, pr + dy, pc + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy or dx) and not flags[sy, sx, pr + dy, pc + dx]]
            expected = np.median(near) if near else mosaic[r, c]
            assert out[r, c] == pytest.approx(expected, rel=1e-6), (shape, r, c)
        np.testing.assert_array_equal(out[~defects], mosaic[~defects])
