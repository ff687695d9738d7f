"""Writing DNGs: rawpy/LibRaw and our own reader read back what was written."""

from __future__ import annotations

import numpy as np
import pytest
import rawpy

import isp
from isp.cfa import BAYER_PHASES, CFALayout
from isp.errors import InputError
from isp.frame import CaptureInfo, ColorMatrix, GainMap, RawFrame
from isp.io.dng import write_dng
from isp.io.raw import read_raw

# LibRaw's colour index of each of our colours (color_desc "RGBG": 0 = R, 1 = G, 2 = B, 3 = second G)
_LIBRAW_LETTER = "RGBG"


@pytest.fixture(scope="module")
def simulated():
    """A small simulated IMX989 binned capture: every noise source, the lens model's gain maps."""
    return isp.run(["backend=numpy", "pipeline=basic", "tuning=neutral", "scene.size=[64,96]"]).raw


def _frame(rng, phase="RGGB", black=(64,), white=1023.0, **info):
    cfa = CFALayout.from_name(phase)
    mosaic = rng.integers(0, int(white) + 1, size=(24, 36)).astype(np.uint16)
    info = {
        "sensor": "test sensor",
        "color_matrices": (ColorMatrix(np.array([[0.7, -0.1, -0.1], [-0.4, 1.2, 0.2], [-0.1, 0.2, 0.6]]), "D65", 6504.0),),
        "as_shot_neutral": np.array([0.5, 1.0, 0.7]),
        **info,
    }
    black_level = np.reshape(black, (2, 2)) if len(black) == 4 else black[0]
    return RawFrame(mosaic, cfa, black_level, white, CaptureInfo(**info), domain="dn")


def test_rawpy_reads_a_simulated_capture_back(tmp_path, simulated):
    path = write_dng(tmp_path / "capture.dng", simulated)
    with rawpy.imread(str(path)) as raw:
        np.testing.assert_array_equal(raw.raw_image, simulated.mosaic)
        assert raw.raw_image.dtype == np.uint16
        letters = "".join(_LIBRAW_LETTER[c] for c in raw.raw_pattern.ravel())
        assert letters == simulated.cfa.name == "RGGB"
        assert raw.white_level == simulated.white_level == 1023
        assert list(raw.black_level_per_channel) == [64] * 4
        assert raw.raw_type == rawpy.RawType.Flat


def test_read_raw_gets_the_calibration_back(tmp_path, simulated):
    path = write_dng(tmp_path / "capture.dng", simulated)
    frame = read_raw(path)
    info, expected = frame.info, simulated.info
    np.testing.assert_array_equal(frame.mosaic, simulated.mosaic)
    assert frame.cfa == simulated.cfa
    np.testing.assert_array_equal(frame.black_level, simulated.black_level)
    assert frame.white_level == simulated.white_level
    (matrix,) = info.color_matrices
    np.testing.assert_allclose(matrix.xyz_to_camera, expected.color_matrices[0].xyz_to_camera, rtol=1e-8, atol=1e-9)
    assert (matrix.illuminant, matrix.cct_k) == ("D65", 6504.0)
    np.testing.assert_allclose(info.as_shot_neutral, expected.as_shot_neutral, rtol=1e-8)
    assert info.iso == expected.iso == 100
    assert info.exposure_time_s == pytest.approx(expected.exposure_time_s, rel=1e-8)
    assert info.sensor == expected.sensor
    np.testing.assert_allclose(info.noise_profile, expected.noise_profile, rtol=1e-15)
    assert len(info.gain_maps) == len(expected.gain_maps) == 4
    for got, want in zip(info.gain_maps, expected.gain_maps, strict=True):
        np.testing.assert_array_equal(got.gains, want.gains)
        assert (got.top, got.left, got.bottom, got.right, got.row_pitch, got.col_pitch) == (
            want.top, want.left, want.bottom, want.right, want.row_pitch, want.col_pitch
        )  # fmt: skip
        assert (got.origin_v, got.origin_h, got.spacing_v, got.spacing_h) == pytest.approx(
            (want.origin_v, want.origin_h, want.spacing_v, want.spacing_h), rel=1e-12
        )


@pytest.mark.parametrize("phase", BAYER_PHASES)
def test_every_bayer_phase_and_per_site_black(tmp_path, rng, phase):
    frame = _frame(rng, phase, black=(60, 62, 64, 66), white=4095.0)
    path = write_dng(tmp_path / "t.dng", frame)
    with rawpy.imread(str(path)) as raw:
        np.testing.assert_array_equal(raw.raw_image, frame.mosaic)
        assert "".join(_LIBRAW_LETTER[c] for c in raw.raw_pattern.ravel()) == phase
        per_channel = np.asarray(raw.black_level_per_channel)
        np.testing.assert_array_equal(per_channel[raw.raw_pattern], frame.black_level)
        assert raw.white_level == 4095
    assert read_raw(path).cfa.name == phase


def test_two_calibrations_and_forward_matrices(tmp_path, rng):
    forward = np.array([[0.6, 0.3, 0.1], [0.25, 0.7, 0.05], [0.05, 0.1, 0.7]])
    matrices = (
        ColorMatrix(np.array([[0.9, -0.2, -0.1], [-0.4, 1.3, 0.1], [-0.1, 0.3, 0.4]]), "Standard light A", 2856.0, forward),
        ColorMatrix(np.array([[0.7, -0.1, -0.1], [-0.4, 1.2, 0.2], [-0.1, 0.2, 0.6]]) / 3.0, "D65", 6504.0),
    )
    frame = _frame(rng, color_matrices=matrices, orientation=6, baseline_exposure_ev=-0.5)
    got = read_raw(write_dng(tmp_path / "t.dng", frame)).info
    assert [(m.illuminant, m.cct_k) for m in got.color_matrices] == [("Standard light A", 2856.0), ("D65", 6504.0)]
    for g, w in zip(got.color_matrices, matrices, strict=True):
        np.testing.assert_allclose(g.xyz_to_camera, w.xyz_to_camera, rtol=1e-9)
    np.testing.assert_allclose(got.color_matrices[0].forward_matrix, forward, rtol=1e-9)
    assert got.color_matrices[1].forward_matrix is None
    assert got.orientation == 6 and got.baseline_exposure_ev == pytest.approx(-0.5)
    assert got.iso is None and got.exposure_time_s is None and got.noise_profile is None and got.gain_maps == ()


def test_libraw_develops_a_grey_card_to_grey(tmp_path):
    """A flat grey field scaled by the as-shot neutral develops to equal R, G, B in LibRaw."""
    neutral = np.array([0.45, 1.0, 0.62])
    cfa = CFALayout.from_name("GRBG")
    sites = np.array([neutral[c] for c in cfa.pattern_array.ravel()]).reshape(2, 2)
    mosaic = np.rint(64 + 600 * np.tile(sites, (16, 24))).astype(np.uint16)
    info = CaptureInfo("grey card", as_shot_neutral=neutral, color_matrices=(ColorMatrix(np.eye(3), "D65", 6504.0),))
    path = write_dng(tmp_path / "grey.dng", RawFrame(mosaic, cfa, 64, 1023.0, info))
    with rawpy.imread(str(path)) as raw:
        rgb = raw.postprocess(use_camera_wb=True, no_auto_bright=True, output_bps=16, gamma=(1, 1), output_color=rawpy.ColorSpace.raw)
    centre = rgb[8:-8, 8:-8].reshape(-1, 3).mean(axis=0)
    assert np.ptp(centre) / centre.max() < 0.01, centre


def test_quad_bayer_is_refused(tmp_path, rng):
    cfa = CFALayout.from_name("quad_RGGB")
    mosaic = rng.integers(0, 1023, size=(16, 16)).astype(np.uint16)
    frame = RawFrame(mosaic, cfa, 64, 1023.0, CaptureInfo("q", color_matrices=(ColorMatrix(np.eye(3)),)))
    with pytest.raises(InputError, match="Quad Bayer.*sensor.mode=binned"):
        write_dng(tmp_path / "q.dng", frame)
    assert not list(tmp_path.iterdir())


def test_linear_frames_and_missing_calibration_are_refused(tmp_path, rng):
    frame = _frame(rng)
    linear = frame.replace(mosaic=frame.mosaic.astype(np.float32) / 1023, domain="linear", black_level=0.0, white_level=1.0)
    with pytest.raises(InputError, match="'linear' domain"):
        write_dng(tmp_path / "a.dng", linear)
    with pytest.raises(InputError, match="no colour matrix"):
        write_dng(tmp_path / "b.dng", frame.replace(info=CaptureInfo("x")))
    with pytest.raises(InputError, match="white level 1023.5"):
        write_dng(tmp_path / "c.dng", frame.replace(white_level=1023.5))
    assert not list(tmp_path.iterdir())


def test_refuses_to_overwrite_its_source(tmp_path, rng):
    path = write_dng(tmp_path / "in.dng", _frame(rng))
    before = path.read_bytes()
    frame = read_raw(path)
    with pytest.raises(InputError, match="read from"):
        write_dng(tmp_path / "." / "in.dng", frame)
    assert path.read_bytes() == before
    np.testing.assert_array_equal(read_raw(write_dng(tmp_path / "copy.dng", frame)).mosaic, frame.mosaic)


def test_a_failed_write_leaves_nothing(tmp_path, rng, monkeypatch):
    import tifffile

    def half_write(path, *args, **kwargs):
        path.write_bytes(b"II*\x00partial")
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", half_write)
    with pytest.raises(OSError, match="disk full"):
        write_dng(tmp_path / "x.dng", _frame(rng))
    assert not list(tmp_path.iterdir())


def test_device_frame_is_written_from_the_host(tmp_path, backend, rng):
    frame = _frame(rng)
    on_device = frame.replace(mosaic=backend.asarray(frame.mosaic))
    with rawpy.imread(str(write_dng(tmp_path / "d.dng", on_device))) as raw:
        np.testing.assert_array_equal(raw.raw_image, frame.mosaic)


def test_gain_map_bytes_parse_back(rng):
    from isp.io.dng import gain_map_opcodes
    from isp.io.raw import parse_gain_maps

    maps = (
        GainMap(0, 1, 24, 36, 2, 2, 0.0, 0.0, 0.5, 0.25, rng.uniform(1, 2, size=(3, 5)).astype(np.float32)),
        GainMap(1, 0, 23, 35, 2, 2, 0.1, -0.2, 0.4, 0.3, rng.uniform(1, 2, size=(4, 2)).astype(np.float32)),
    )
    back = parse_gain_maps(gain_map_opcodes(maps), "test")
    assert len(back) == 2
    for got, want in zip(back, maps, strict=True):
        np.testing.assert_array_equal(got.gains, want.gains)
        fields = [f for f in GainMap.__dataclass_fields__ if f != "gains"]
        assert [getattr(got, f) for f in fields] == [getattr(want, f) for f in fields]


def test_a_real_dng_survives_the_round_trip(tmp_path, shared_data):
    """A GoPro DNG (two calibrations, noise profile, four GainMaps) read, written, read again."""
    source = read_raw(shared_data / "raw" / "gopro_hero6.dng")
    copy = read_raw(write_dng(tmp_path / "copy.dng", source))
    np.testing.assert_array_equal(copy.mosaic, source.mosaic)
    assert (copy.cfa, copy.white_level) == (source.cfa, source.white_level)
    np.testing.assert_array_equal(copy.black_level, source.black_level)
    a, b = copy.info, source.info
    assert (a.sensor, a.iso, a.orientation) == (b.sensor, b.iso, b.orientation)
    assert a.exposure_time_s == pytest.approx(b.exposure_time_s, rel=1e-9)
    np.testing.assert_allclose(a.as_shot_neutral, b.as_shot_neutral, rtol=1e-9)
    assert a.noise_profile == b.noise_profile
    assert len(a.color_matrices) == len(b.color_matrices) == 2
    for got, want in zip(a.color_matrices, b.color_matrices, strict=True):
        np.testing.assert_allclose(got.xyz_to_camera, want.xyz_to_camera, rtol=1e-9, atol=1e-12)
        assert (got.illuminant, got.cct_k) == (want.illuminant, want.cct_k)
    assert len(a.gain_maps) == len(b.gain_maps) == 4
    for got, want in zip(a.gain_maps, b.gain_maps, strict=True):
        np.testing.assert_array_equal(got.gains, want.gains)
        assert (got.top, got.left, got.bottom, got.right) == (want.top, want.left, want.bottom, want.right)
        assert (got.origin_v, got.spacing_v, got.origin_h, got.spacing_h) == pytest.approx(
            (want.origin_v, want.spacing_v, want.origin_h, want.spacing_h), rel=1e-12, abs=1e-15
        )
