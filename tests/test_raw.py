"""Reading raw files: synthetic DNGs with known tags, the shared real DNGs, and bad files."""

from __future__ import annotations

import numpy as np
import pytest

import isp
from isp import colorimetry
from isp.cfa import BAYER_PHASES
from isp.errors import InputError
from isp.io import read_raw
from isp.stages.oetf import srgb_eotf


def _rationals(values, denominator=10000):
    out = []
    for v in values:
        out += [int(round(v * denominator)), denominator]
    return out


def write_dng(path, mosaic, phase="RGGB", black=128, white=4095, orientation=1, matrices=None, neutral=(0.5, 1.0, 0.7), extra=()):
    """A minimal CFA DNG written with tifffile; rawpy reads such files back bit-exact."""
    import tifffile

    matrices = matrices or [(21, [0.7, -0.1, -0.1, -0.4, 1.2, 0.2, -0.1, 0.2, 0.6])]
    tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),
        (50707, "B", 4, (1, 1, 0, 0), True),
        (33421, "H", 2, (2, 2), True),
        (33422, "B", 4, tuple("RGB".index(c) for c in phase), True),
        (50714, "H", 1, (black,), True),
        (50717, "H", 1, (white,), True),
        (50728, "2I", 3, _rationals(neutral, 1000), True),
        (274, "H", 1, (orientation,), True),
        (50708, "s", 0, "isp-sim test camera", True),
    ]
    for i, (illuminant, matrix) in enumerate(matrices, start=1):
        tags += [(50720 + i, "2i", 9, _rationals(matrix), True), (50777 + i, "H", 1, (illuminant,), True)]
    tifffile.imwrite(path, mosaic, photometric=32803, extratags=[*tags, *extra])
    return path


@pytest.mark.parametrize("phase", BAYER_PHASES)
def test_dng_tags_are_read(tmp_path, rng, phase):
    mosaic = rng.integers(100, 4000, size=(32, 48)).astype(np.uint16)
    cm_a = [0.9, -0.2, -0.1, -0.4, 1.3, 0.1, -0.1, 0.3, 0.4]
    cm_d = [0.7, -0.1, -0.1, -0.4, 1.2, 0.2, -0.1, 0.2, 0.6]
    path = write_dng(
        tmp_path / "t.dng",
        mosaic,
        phase=phase,
        orientation=6,
        matrices=[(17, cm_a), (21, cm_d)],
        extra=[(50730, "2i", 1, (-50, 100), True), (51041, "d", 2, (2e-4, 3e-8), True)],
    )
    frame = read_raw(path)
    np.testing.assert_array_equal(frame.mosaic, mosaic)
    assert frame.cfa.name == phase and frame.domain == "dn"
    assert np.all(frame.black_level == 128) and frame.white_level == 4095
    np.testing.assert_allclose(frame.info.as_shot_neutral, [0.5, 1.0, 0.7])
    (a, d) = frame.info.color_matrices
    np.testing.assert_allclose(a.xyz_to_camera.ravel(), cm_a)
    np.testing.assert_allclose(d.xyz_to_camera.ravel(), cm_d)
    assert (a.illuminant, a.cct_k, d.illuminant, d.cct_k) == ("Standard light A", 2856.0, "D65", 6504.0)
    assert frame.info.orientation == 6 and frame.info.sensor == "isp-sim test camera"
    assert frame.info.baseline_exposure_ev == -0.5
    assert frame.info.noise_profile == ((2e-4, 3e-8),)


def test_synthetic_dng_develops_to_the_scene(tmp_path):
    """A chart mosaicked through a known camera matrix into a DNG comes back as the chart."""
    # the minimal pipeline: the simulated frame's lens-shading maps do not travel into this DNG
    result = isp.run(["pipeline=basic", "tuning=neutral", "sensor=generic_bayer", "scene.size=[240,320]"])
    reference = result.metrics["colorchecker"]["delta_e2000"]["mean"]
    raw = result.raw
    calibration = raw.info.color_matrices[0].xyz_to_camera
    path = write_dng(
        tmp_path / "chart.dng",
        np.asarray(raw.mosaic),
        black=int(raw.black_level[0, 0]),
        white=int(raw.white_level),
        matrices=[(21, calibration.ravel().tolist())],
        neutral=raw.info.as_shot_neutral.tolist(),
    )
    developed = isp.run(["pipeline=basic", "tuning=neutral", "scene=raw_file", f"scene.path={path}"])
    ours = developed.rgb().astype(np.int16)
    assert np.abs(ours - result.rgb()).max() <= 1, "the file path and the simulation give the same image"
    assert reference < 2.0


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InputError, match="nothing.dng: no such file"):
        read_raw(tmp_path / "nothing.dng")
    junk = tmp_path / "junk.dng"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match="junk.dng: not a raw file rawpy can read"):
        read_raw(junk)
    text = tmp_path / "notes.nef"
    text.write_text("not a raw file\n")
    with pytest.raises(InputError, match="notes.nef: not a raw file rawpy can read"):
        read_raw(text)


def test_truncated_dng_is_an_error(tmp_path, rng):
    path = write_dng(tmp_path / "full.dng", rng.integers(0, 4000, size=(64, 64)).astype(np.uint16))
    cut = tmp_path / "cut.dng"
    cut.write_bytes(path.read_bytes()[:600])
    with pytest.raises(InputError, match="cut.dng"):
        read_raw(cut)


def test_file_without_a_usable_colour_matrix_is_an_error(tmp_path, rng, monkeypatch):
    """LibRaw refuses a DNG without ColorMatrix1, so stand in a file whose tags give none:
    rawpy reports a zero matrix for DNGs, and nothing else can calibrate it."""
    import isp.io.raw

    path = write_dng(tmp_path / "bare.dng", rng.integers(0, 4000, size=(32, 48)).astype(np.uint16))
    monkeypatch.setattr(isp.io.raw, "_dng_calibrations", lambda tags: ())
    with pytest.raises(InputError, match="bare.dng: has no colour matrix"):
        read_raw(path)


# --- the shared real files ---------------------------------------------------------------------

#: Centres of the classic 24 chart's patches in the Canon 550D capture (rows, columns), found by
#: inspecting the developed image; the chart is tilted slightly, so boxes are kept small.
CANON_ROWS = (620, 720, 820, 925)
CANON_COLUMNS = (705, 815, 922, 1035, 1145, 1260)


def _chroma(rgb8: np.ndarray, row: int, col: int, half: int = 18) -> tuple[float, float]:
    linear = srgb_eotf(rgb8[row - half : row + half, col - half : col + half].astype(np.float64) / 255.0)
    lab = colorimetry.XYZ_to_Lab(colorimetry.SRGB_TO_XYZ @ linear.reshape(-1, 3).mean(axis=0))
    return float(lab[0]), float(np.hypot(lab[1], lab[2]))


@pytest.mark.data
def test_canon_dng_metadata(shared_data):
    frame = read_raw(shared_data / "raw" / "canon550d_colorchecker.dng")
    assert frame.shape == (1156, 1734) and frame.cfa.name == "RGGB"
    assert np.all(frame.black_level == 2056) and frame.white_level == 15000
    np.testing.assert_allclose(frame.info.as_shot_neutral, np.array([1, 2.477, 1.462]) / 2.477, rtol=1e-6)
    assert len(frame.info.color_matrices) == 1 and frame.info.orientation == 1


@pytest.mark.data
def test_canon_greys_come_out_neutral(shared_data):
    """White balanced on one grey patch, all six greys are neutral, as LibRaw develops them too.

    The file's AsShotNeutral (R/G 0.40, B/G 0.59) does not match this dusk-lit scene: its raw
    greys read R/G 0.65, B/G 0.44, so the as-shot rendering is orange. A grey-card balance shows
    that the pipeline itself adds no cast.
    """
    import rawpy

    path = shared_data / "raw" / "canon550d_colorchecker.dng"
    grey = (CANON_ROWS[3], CANON_COLUMNS[3])
    region = [grey[0] - 20, grey[1] - 20, grey[0] + 20, grey[1] + 20]
    result = isp.run(
        ["scene=raw_file", f"scene.path={path}", "pipeline=basic", "tuning=neutral", "tuning.params.white_balance.mode=region",
         f"+tuning.params.white_balance.region=[{','.join(map(str, region))}]", "pipeline.taps=[white_balance]"]
    )
    ours = result.rgb()
    assert ours.shape == (1156, 1734, 3)
    gains = result.taps["white_balance"].wb_gains
    with rawpy.imread(str(path)) as raw:
        libraw = raw.postprocess(
            user_wb=[gains[0], gains[1], gains[2], gains[1]], gamma=(2.4, 12.92), no_auto_bright=True,
            demosaic_algorithm=rawpy.DemosaicAlgorithm.LINEAR, user_flip=0,
        )
    lightness = []
    for col in CANON_COLUMNS:
        l_ours, c_ours = _chroma(ours, CANON_ROWS[3], col)
        _, c_libraw = _chroma(libraw, CANON_ROWS[3], col)
        lightness.append(l_ours)
        assert c_ours < 4.5, f"grey patch at column {col}: chroma {c_ours:.2f}"
        assert abs(c_ours - c_libraw) < 0.6, f"grey patch at column {col}: LibRaw gives chroma {c_libraw:.2f}, we {c_ours:.2f}"
    assert np.all(np.diff(lightness) < 0), "the grey row darkens from white to black"
    red_l, red_c = _chroma(ours, CANON_ROWS[2], CANON_COLUMNS[2])
    assert red_c > 25, "the red patch is saturated"


@pytest.mark.data
def test_gopro_dng_orientation_and_colour_match_libraw(shared_data):
    import rawpy

    path = shared_data / "raw" / "gopro_hero6.dng"
    frame = read_raw(path)
    assert frame.shape == (3000, 4000) and frame.cfa.name == "RGGB" and frame.white_level == 16383
    assert frame.info.orientation == 2, "the file says: mirrored horizontally"
    (tungsten, d50) = frame.info.color_matrices
    assert (tungsten.illuminant, d50.illuminant) == ("Tungsten", "D50")
    assert np.ravel(frame.info.noise_profile) == pytest.approx([1.562010e-4, 4.880020e-8], rel=1e-5)

    # the minimal pipeline, as LibRaw develops it: no GainMap shading correction, denoise or sharpening
    ours = isp.run(["scene=raw_file", f"scene.path={path}", "pipeline=basic", "tuning=neutral"]).rgb().astype(np.float64)
    with rawpy.imread(str(path)) as raw:
        libraw = raw.postprocess(
            use_camera_wb=True, gamma=(2.4, 12.92), no_auto_bright=True, demosaic_algorithm=rawpy.DemosaicAlgorithm.LINEAR
        ).astype(np.float64)
    assert ours.shape == libraw.shape == (3000, 4000, 3)
    difference = np.abs(ours - libraw).mean()
    mirrored = np.abs(ours[:, ::-1] - libraw).mean()
    assert difference < 3.0, f"mean difference from LibRaw {difference:.2f} levels"
    assert mirrored > 10 * difference, "the orientation is LibRaw's, not its mirror image"
