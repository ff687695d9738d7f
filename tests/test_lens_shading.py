"""Lens-shading correction: DNG OpcodeList2 GainMaps, the simulated module calibration, the stage.

Independent checks: the GainMap arithmetic against a per-pixel transcription of the DNG SDK's
``dng_gain_map_interpolator`` (pixel centres at ``(row + 0.5) / H``, bilinear, edges held); the
GoPro file's tag against a decode by hand with ``struct``; the simulated calibration against the
physics it must undo (a white flat field through the IMX989's lens comes out flat).
"""

from __future__ import annotations

import functools
import logging
import math
import struct

import numpy as np
import pytest

import isp.stages.lens_shading  # noqa: F401 - registers the stage
from isp.backend import get_backend, to_host
from isp.cfa import CFALayout
from isp.config import build, compose
from isp.errors import ConfigError, InputError, StageError
from isp.frame import CaptureInfo, GainMap, RawFrame
from isp.io import read_raw
from isp.sensor import build_sensor, ideal_capture
from isp.sensor.capture import LENS_SHADING_GRID, lens_shading_maps
from isp.stages import STAGES, Stage, StageContext
from isp.stages.lens_shading import LensShadingParams, gain_map_image

CTX = StageContext(get_backend("numpy"))
GOPRO = "raw/gopro_hero6.dng"
#: PSF and lateral colour move light but leave a uniform field uniform (the blur is normalised and
#: mirrored at the borders, the magnification samples the nearest edge pixel), so they are off
#: here to keep the 12.5 MP captures fast; the lens's relative illumination and colour shading stay.
SHARP_LENS = ("sensor.lens.optics.psf.kind=none", "sensor.lens.optics.lateral_ca.magnification=[1,1,1]")


def stage(name: str, **params) -> Stage:
    return Stage(STAGES[name], build(STAGES[name].params, params, name))


def run(name: str, frame, **params):
    return stage(name, **params)(frame, CTX)


@functools.cache
def sensor(*overrides):
    return build_sensor(compose(["sensor=imx989", *SHARP_LENS, *overrides]).sensor)


def linear_frame(mosaic, cfa="RGGB", gain_maps=(), iso=100.0) -> RawFrame:
    info = CaptureInfo(sensor="test", iso=iso, gain_maps=tuple(gain_maps))
    return RawFrame(mosaic, CFALayout.from_name(cfa), 0.0, 1.0, info, domain="linear")


def per_site_maps(rng, shape, tile=2, points=(5, 7), origin=(0.0, 0.0), spacing=None) -> list[GainMap]:
    """Random maps, one per site of a ``tile``×``tile`` CFA tile, as a camera maker writes them."""
    spacing = spacing or (1.0 / (points[0] - 1), 1.0 / (points[1] - 1))
    return [
        GainMap(y, x, shape[0], shape[1], tile, tile, origin[0], origin[1], spacing[0], spacing[1], rng.uniform(1.0, 2.5, points).astype(np.float32))
        for y in range(tile)
        for x in range(tile)
    ]


def dng_sdk_gain(gain_map: GainMap, row: int, col: int, shape: tuple[int, int]) -> float:
    """The gain the DNG SDK's ``dng_gain_map_interpolator`` gives pixel ``(row, col)``, 1 where the map does not apply."""
    if not (gain_map.top <= row < gain_map.bottom and gain_map.left <= col < gain_map.right):
        return 1.0
    if (row - gain_map.top) % gain_map.row_pitch or (col - gain_map.left) % gain_map.col_pitch:
        return 1.0

    def neighbours(pixel, size, origin, spacing, points):
        index = ((pixel + 0.5) / size - origin) / spacing
        if index <= 0.0:
            return 0, 0, 0.0
        low = int(index)
        if low >= points - 1:
            return points - 1, points - 1, 0.0
        return low, low + 1, index - low

    g = gain_map.gains.astype(np.float64)
    r0, r1, fr = neighbours(row, shape[0], gain_map.origin_v, gain_map.spacing_v, g.shape[0])
    c0, c1, fc = neighbours(col, shape[1], gain_map.origin_h, gain_map.spacing_h, g.shape[1])
    left = g[r0, c0] * (1 - fr) + g[r1, c0] * fr
    right = g[r0, c1] * (1 - fr) + g[r1, c1] * fr
    return left * (1 - fc) + right * fc


def reference_gain_image(gain_maps, shape) -> np.ndarray:
    out = np.ones(shape)
    for gain_map in gain_maps:
        for row in range(shape[0]):
            for col in range(shape[1]):
                out[row, col] *= dng_sdk_gain(gain_map, row, col, shape)
    return out


# --- DNG OpcodeList2 written by hand ---------------------------------------------------------


def opcode(opcode_id: int, flags: int, parameters: bytes) -> bytes:
    return struct.pack(">I4sII", opcode_id, bytes((1, 3, 0, 0)), flags, len(parameters)) + parameters


def gain_map_opcode(top, left, bottom, right, pitch, gains, origin=(0.0, 0.0), spacing=(1.0, 1.0), plane=0, flags=1) -> bytes:
    points_v, points_h = gains.shape
    header = struct.pack(">10I4dI", top, left, bottom, right, plane, 1, pitch, pitch, points_v, points_h, *spacing, *origin, 1)
    return opcode(9, flags, header + np.asarray(gains, ">f4").tobytes())


def opcode_list(*opcodes: bytes) -> bytes:
    return struct.pack(">I", len(opcodes)) + b"".join(opcodes)


def write_dng(path, mosaic, opcode_list2: bytes, active_area=None):
    """A minimal RGGB CFA DNG (tifffile) carrying an OpcodeList2; rawpy reads such files."""
    import tifffile

    def rationals(values, denominator=10000):
        return [n for v in values for n in (int(round(v * denominator)), denominator)]

    tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),
        (50707, "B", 4, (1, 3, 0, 0), True),
        (33421, "H", 2, (2, 2), True),
        (33422, "B", 4, (0, 1, 1, 2), True),
        (50714, "H", 1, (0,), True),
        (50717, "H", 1, (4095,), True),
        (50728, "2I", 3, rationals((0.5, 1.0, 0.7), 1000), True),
        (50721, "2i", 9, rationals([0.7, -0.1, -0.1, -0.4, 1.2, 0.2, -0.1, 0.2, 0.6]), True),
        (50778, "H", 1, (21,), True),
        (50708, "s", 0, "isp-sim lens shading test", True),
        (51009, 7, len(opcode_list2), opcode_list2, True),
    ]
    if active_area is not None:
        tags.append((50829, "I", 4, tuple(active_area), True))
    tifffile.imwrite(path, np.asarray(mosaic, np.uint16), photometric=32803, extratags=tags)
    return path


def test_synthetic_dng_gain_maps_follow_the_dng_sdk(tmp_path, rng):
    """A map that does not span the frame (origin 0.1, 0.05; spacing 0.4, 0.3) on an ActiveArea
    of odd height: read_raw drops the odd row, and every kept pixel keeps the gain the DNG SDK
    gives it in the 31-row ActiveArea image."""
    gains = rng.uniform(1.0, 2.0, (3, 4)).astype(np.float32)
    active_shape = (31, 46)
    written = GainMap(1, 0, 31, 46, 2, 2, 0.1, 0.05, 0.4, 0.3, gains)
    data = opcode_list(gain_map_opcode(1, 0, 31, 46, 2, gains, origin=(0.1, 0.05), spacing=(0.4, 0.3)))
    path = write_dng(tmp_path / "active.dng", rng.integers(0, 4095, (34, 50)), data, active_area=(2, 4, 33, 50))
    frame = read_raw(path)
    assert frame.shape == (30, 46)
    (gain_map,) = frame.info.gain_maps
    np.testing.assert_array_equal(gain_map.gains, gains)
    got = gain_map_image(frame.info.gain_maps, frame.shape, np)
    expected = reference_gain_image([written], active_shape)[:30]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.all(got[0::2] == 1.0) and np.all(got[1::2, 1::2] == 1.0), "only the rows and columns of the map's site change"


def test_maps_move_with_a_mosaic_cut_at_other_margins(rng):
    """Where LibRaw's visible area starts inside the ActiveArea (here 3 rows and 4 columns in, and
    short of its end), each mosaic pixel keeps the gain of the ActiveArea pixel it is."""
    from isp.io.raw import _shift_gain_map

    image_shape, offset, mosaic_shape = (40, 52), (3, 4), (34, 44)
    maps = per_site_maps(rng, image_shape, points=(4, 6), origin=(0.05, 0.1), spacing=(0.3, 0.17))
    moved = [_shift_gain_map(m, offset, image_shape, mosaic_shape) for m in maps]
    expected = reference_gain_image(maps, image_shape)[3 : 3 + 34, 4 : 4 + 44]
    np.testing.assert_allclose(gain_map_image(moved, mosaic_shape, np), expected, rtol=1e-6)


def test_gain_map_image_matches_the_dng_sdk_with_maps_past_the_frame(rng):
    """Maps whose grid starts inside the frame and ends beyond it, overlapping maps, and a one-point axis."""
    shape = (22, 30)
    maps = [
        *per_site_maps(rng, shape, points=(4, 5), origin=(0.2, -0.1), spacing=(0.3, 0.35)),
        GainMap(3, 2, 19, 40, 1, 3, 0.0, 0.0, 1.0, 0.5, rng.uniform(0.5, 1.5, (1, 3)).astype(np.float32)),
    ]
    np.testing.assert_allclose(gain_map_image(maps, shape, np), reference_gain_image(maps, shape), rtol=1e-6)


def test_non_optional_opcode_we_do_not_apply_is_a_warning(tmp_path, rng, caplog):
    gains = np.full((2, 2), 1.5, np.float32)
    data = opcode_list(
        opcode(3, 1, bytes(56)),  # optional FixVignetteRadial: skipped quietly
        gain_map_opcode(0, 0, 32, 48, 2, gains),
        opcode(12, 0, bytes(40)),  # ScalePerRow marked required
    )
    path = write_dng(tmp_path / "required.dng", rng.integers(0, 4095, (32, 48)), data)
    with caplog.at_level(logging.WARNING, logger="isp.io.raw"):
        frame = read_raw(path)
    assert len(frame.info.gain_maps) == 1
    (record,) = caplog.records
    assert "required.dng" in record.getMessage() and "ScalePerRow" in record.getMessage() and "not optional" in record.getMessage()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d[:-10], "has 92 parameter bytes, 82 are left"),
        (lambda d: d[:2], "2 bytes, fewer than its 4-byte opcode count"),
        (lambda d: struct.pack(">I", 2) + d[4:], "opcode 2 of 2 starts at byte 112"),
        (lambda d: d + b"\0\0", "2 bytes after the last of its 1 opcodes"),
        (lambda d: d[:56] + struct.pack(">I", 0) + d[60:], "has 2 x 0 points in 1 planes"),
    ],
)
def test_malformed_opcode_list_is_an_input_error_naming_the_file(tmp_path, rng, damage, message):
    good = opcode_list(gain_map_opcode(0, 0, 32, 48, 2, np.full((2, 2), 1.5, np.float32)))
    path = write_dng(tmp_path / "broken_opcodes.dng", rng.integers(0, 4095, (32, 48)), damage(good))
    with pytest.raises(InputError, match=rf"broken_opcodes\.dng: OpcodeList2 is malformed: .*{message}"):
        read_raw(path)


# --- the shared GoPro DNG --------------------------------------------------------------------


@pytest.fixture(scope="module")
def gopro(shared_data):
    return read_raw(shared_data / GOPRO)


@pytest.mark.data
def test_gopro_has_four_plausible_bayer_site_maps(gopro):
    maps = gopro.info.gain_maps
    assert len(maps) == 4
    assert {(m.top, m.left) for m in maps} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    for m in maps:
        assert m.gains.shape == (23, 23) and (m.row_pitch, m.col_pitch) == (2, 2)
        assert (m.bottom, m.right) == gopro.shape
        assert m.gains.min() >= 1.0, "a lens-shading map only brightens"
        centre, corners = m.gains[11, 11], m.gains[[0, 0, -1, -1], [0, -1, 0, -1]]
        assert centre < 1.01 and np.all(corners > 1.7) and corners.min() > m.gains[6:17, 6:17].max()


@pytest.mark.data
def test_gopro_maps_match_the_tag_decoded_by_hand(gopro, shared_data):
    import tifffile

    with tifffile.TiffFile(shared_data / GOPRO) as tif:
        data = tif.pages[0].tags[51009].value
    assert int.from_bytes(data[0:4], "big") == 4
    offset = 4
    for gain_map in gopro.info.gain_maps:
        assert int.from_bytes(data[offset : offset + 4], "big") == 9  # GainMap
        size = int.from_bytes(data[offset + 12 : offset + 16], "big")
        parameters = data[offset + 16 : offset + 16 + size]
        offset += 16 + size
        top, left = struct.unpack(">2I", parameters[0:8])
        points_v, points_h = struct.unpack(">2I", parameters[32:40])
        (spacing_v,) = struct.unpack(">d", parameters[40:48])
        first = struct.unpack(">5f", parameters[76:96])
        (last,) = struct.unpack(">f", parameters[-4:])
        assert (gain_map.top, gain_map.left, *gain_map.gains.shape) == (top, left, points_v, points_h)
        assert gain_map.spacing_v == spacing_v == pytest.approx(1 / 22)
        assert gain_map.gains.ravel()[:5].tolist() == list(first) and gain_map.gains[-1, -1] == last
    assert offset == len(data)


def gopro_boxes(shape, side=200):
    """The four corner boxes and the centre box (last), on whole Bayer tiles."""
    h, w = shape
    rows, cols = (0, h - side, 0, h - side, h // 2 - side // 2), (0, 0, w - side, w - side, w // 2 - side // 2)
    return [(slice(r, r + side), slice(c, c + side)) for r, c in zip(rows, cols, strict=True)]


@pytest.mark.data
def test_gopro_develop_brightens_the_corners(gopro):
    """Developed to linear sRGB (white balance, bilinear demosaic, the file's colour matrices), each
    corner's luminance relative to the centre rises with LSC by about the gain applied there, less
    where the corrected corner clips at white. LSC runs on the whole frame; only the five boxes
    measured are developed."""
    linear = run("black_level", gopro)
    corrected = run("lens_shading", linear)
    boxes = gopro_boxes(gopro.shape)

    def luminance(frame, box):
        crop = frame.replace(mosaic=frame.mosaic[box], shading_gain=None)
        rgb = run("color_correction", run("demosaic", run("white_balance", crop), method="bilinear")).data
        return float((rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32)).mean())

    before = np.array([luminance(linear, box) for box in boxes])
    after = np.array([luminance(corrected, box) for box in boxes])
    before, after = before[:4] / before[4], after[:4] / after[4]
    applied = np.array([corrected.shading_gain[box].mean() for box in boxes])
    applied = applied[:4] / applied[4]
    assert np.all(after > 1.4 * before), (before, after)
    assert np.all(after / before <= applied * 1.01), (after / before, applied)


# --- the simulated module calibration --------------------------------------------------------


@pytest.fixture(scope="module")
def imx989_flat():
    """A noise-free white flat field through the IMX989 (binned 12.5 MP) with its lens shading."""
    s = sensor()
    raw = ideal_capture(np.full((*s.readout, 3), 0.5, np.float32), s, get_backend("numpy"))
    return run("black_level", raw)


def centre_means(mosaic, cfa, half=64):
    h, w = mosaic.shape
    box = (slice(h // 2 - half, h // 2 + half), slice(w // 2 - half, w // 2 + half))
    colour = cfa.colour_map(mosaic.shape)
    return np.array([mosaic[box][colour[box] == c].mean() for c in range(3)]), colour


def flatness(frame) -> np.ndarray:
    """Largest relative deviation of each colour plane from its value at the centre, R, G, B."""
    mosaic = to_host(frame.mosaic)
    centre, colour = centre_means(mosaic, frame.cfa)
    return np.array([np.abs(mosaic[colour == c] / centre[c] - 1.0).max() for c in range(3)])


def test_imx989_calibration_flattens_a_white_field(imx989_flat):
    maps = imx989_flat.info.gain_maps
    assert len(maps) == 4 and all(m.gains.shape == LENS_SHADING_GRID for m in maps)
    mosaic = imx989_flat.mosaic
    centre, colour = centre_means(mosaic, imx989_flat.cfa)
    corner = [mosaic[:2, :2][colour[:2, :2] == c].mean() / centre[c] for c in range(3)]
    assert max(corner) < 0.42 and max(corner) - min(corner) > 0.015, "the lens darkens the corners, red the most"
    corrected = run("lens_shading", imx989_flat)
    assert np.all(flatness(corrected) < 0.01), flatness(corrected)  # every pixel, borders included


@pytest.mark.parametrize(("mode", "window"), [("binned", (1536, 2048)), ("full", (2048, 2048))])
def test_calibration_of_a_window_and_the_quad_bayer_mode(numpy_backend, mode, window):
    """A centred crop gets the calibration of its own pixels; Quad Bayer gets one map per 4×4 site."""
    s = sensor(f"sensor.mode={mode}")
    raw = ideal_capture(np.full((*window, 3), 0.5, np.float32), s, numpy_backend)
    assert len(raw.info.gain_maps) == s.cfa.tile_shape[0] * s.cfa.tile_shape[1]
    linear = run("black_level", raw)
    before, after = flatness(linear), flatness(run("lens_shading", linear))
    assert np.all(before > 0.04) and np.all(after < 0.1 * before), (before, after)


def test_no_shading_no_calibration(numpy_backend):
    s = sensor("sensor.lens.optics.relative_illumination.model=none", "sensor.lens.optics.color_shading.coefficients=null")
    assert lens_shading_maps(s, (64, 96)) == ()
    assert ideal_capture(np.full((64, 96, 3), 0.5, np.float32), s, numpy_backend).info.gain_maps == ()


# --- the stage --------------------------------------------------------------------------------


def test_strength_zero_is_the_identity_and_half_leaves_half_the_falloff(imx989_flat):
    assert run("lens_shading", imx989_flat, strength=0.0) is imx989_flat
    half = run("lens_shading", imx989_flat, strength=0.5)
    np.testing.assert_array_equal(half.mosaic, imx989_flat.mosaic * half.shading_gain)
    centre, colour = centre_means(imx989_flat.mosaic, imx989_flat.cfa)
    centre_half, _ = centre_means(half.mosaic, half.cfa)
    for c in range(3):
        falloff = 1.0 - imx989_flat.mosaic[colour == c] / centre[c]
        left = 1.0 - half.mosaic[colour == c] / centre_half[c]
        assert np.abs(left - falloff / 2).max() < 0.005  # half the falloff, in linear terms


def test_strength_as_an_iso_table(rng):
    maps = per_site_maps(rng, (16, 24))
    frame = linear_frame(rng.uniform(0, 1, (16, 24)).astype(np.float32), gain_maps=maps, iso=800.0)
    out = run("lens_shading", frame, strength={"iso": [100, 3200], "value": [1.0, 0.5]})
    strength = 1.0 - 0.5 * math.log2(800 / 100) / math.log2(3200 / 100)  # linear in stops: 0.7
    expected = 1.0 + strength * (reference_gain_image(maps, (16, 24)) - 1.0)
    np.testing.assert_allclose(out.shading_gain, expected, rtol=1e-6)
    np.testing.assert_allclose(out.mosaic, frame.mosaic * expected, rtol=1e-6)


def test_highlights_are_not_clipped(rng):
    maps = per_site_maps(rng, (8, 8))
    out = run("lens_shading", linear_frame(np.ones((8, 8), np.float32), gain_maps=maps))
    assert out.mosaic.max() > 2.0 and out.white_level == 1.0


def test_frame_without_maps_passes_with_one_warning_or_fails_when_required(rng, caplog):
    frame = linear_frame(rng.uniform(0, 1, (8, 8)).astype(np.float32))
    frame = frame.replace(info=CaptureInfo(sensor="test", source="no_maps_here.dng"))
    with caplog.at_level(logging.WARNING, logger="isp.stages.lens_shading"):
        assert run("lens_shading", frame) is frame and run("lens_shading", frame) is frame
    assert [r.getMessage() for r in caplog.records] == [
        "lens_shading: no_maps_here.dng has no lens-shading gain maps; its shading is left uncorrected"
    ]
    with pytest.raises(StageError, match="no_maps_here.dng has no lens-shading gain maps"):
        run("lens_shading", frame, require_map=True)


def test_stage_order_is_checked(rng):
    frame = linear_frame(rng.uniform(0, 1, (8, 8)).astype(np.float32), gain_maps=per_site_maps(rng, (8, 8)))
    with pytest.raises(StageError, match="must run before white_balance"):
        run("lens_shading", frame.replace(wb_gains=np.ones(3)))
    with pytest.raises(StageError, match="already corrected"):
        run("lens_shading", run("lens_shading", frame))
    with pytest.raises(StageError, match="needs a raw frame in the 'linear' domain"):
        run("lens_shading", frame.replace(mosaic=np.zeros((8, 8), np.uint16), domain="dn", white_level=1023.0))


def test_bad_parameters_are_config_errors():
    with pytest.raises(ConfigError, match=r"tuning\.params\.lens_shading\.strength=1\.5 is out of range \[0, 1\]"):
        build(LensShadingParams, {"strength": 1.5}, "tuning.params.lens_shading")
    with pytest.raises(ConfigError, match=r"tuning\.params\.lens_shading\.require_map=.*expected true or false"):
        build(LensShadingParams, {"require_map": "yes"}, "tuning.params.lens_shading")


@pytest.mark.parametrize(("cfa", "tile"), [("GBRG", 2), ("quad_RGGB", 4)])
def test_numpy_cupy_parity(backend, rng, cfa, tile):
    shape = (96, 128)
    maps = per_site_maps(rng, shape, tile=tile, points=(13, 17))
    mosaic = rng.uniform(0, 1, shape).astype(np.float32)
    expected = run("lens_shading", linear_frame(mosaic, cfa, maps), strength=0.8)
    frame = linear_frame(backend.asarray(mosaic), cfa, maps)
    got = stage("lens_shading", strength=0.8)(frame, StageContext(backend))
    assert got.mosaic.dtype == np.float32 and got.shading_gain.dtype == np.float32
    np.testing.assert_allclose(to_host(got.shading_gain), expected.shading_gain, rtol=1e-6)
    np.testing.assert_allclose(to_host(got.mosaic), expected.mosaic, rtol=1e-6)
