"""lut3d and .cube files: colour-science's tetrahedral interpolation and reader, round trips, errors."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from isp.backend import get_backend, to_host
from isp.config import build
from isp.errors import ConfigError, InputError, StageError
from isp.frame import CaptureInfo, Image
from isp.io.cube import Lut3D, read_cube, write_cube
from isp.stages.lut3d import Lut3dParams, apply_lut3d, bake_lut, identity_lut, lut3d
from isp.stages.registry import StageContext

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # colour-science warns at import that matplotlib is absent
    import colour

WHERE = "tuning.params.lut3d"


def warm_fade(rgb: np.ndarray) -> np.ndarray:
    """A non-separable look: a channel cross-talk, a lifted black and a curve."""
    mixed = rgb @ np.array([[0.9, 0.1, 0.0], [0.05, 0.85, 0.1], [0.0, 0.2, 0.8]]).T
    return 0.04 + 0.92 * mixed**0.8 * np.array([1.05, 1.0, 0.9])


def encoded(data: np.ndarray, backend=None) -> Image:
    backend = backend or get_backend("numpy")
    return Image(backend.asarray(np.asarray(data, dtype=np.float32)), "srgb", "srgb", CaptureInfo("test"))


def run(image: Image, backend=None, **values) -> np.ndarray:
    backend = backend or get_backend("numpy")
    return to_host(lut3d(image, build(Lut3dParams, values, WHERE), StageContext(backend)).data)


# --- interpolation -------------------------------------------------------------------------


def test_identity_cube_is_the_identity(tmp_path, rng, backend):
    path = write_cube(tmp_path / "identity.cube", identity_lut(17))
    rgb = rng.uniform(0.0, 1.0, size=(40, 50, 3))
    np.testing.assert_allclose(run(encoded(rgb, backend), backend, path=str(path)), rgb, atol=1e-6)


def test_exact_on_lattice_points(backend):
    lut = bake_lut(warm_fade, size=9)
    steps = np.linspace(0.0, 1.0, 9)
    lattice = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1)
    got = to_host(apply_lut3d(backend.asarray(lattice.astype(np.float32)), lut))
    np.testing.assert_allclose(got, warm_fade(lattice), rtol=1e-6, atol=1e-7)


def test_agrees_with_colour_science_tetrahedral(rng):
    lut = bake_lut(warm_fade, size=17)
    rgb = rng.uniform(0.0, 1.0, size=(5000, 3))
    rgb[:50] = rgb[:50, :1]  # on the grey diagonal, where the tetrahedra meet
    reference = colour.LUT3D(lut.table.astype(np.float64), domain=np.array([[0.0] * 3, [1.0] * 3])).apply(
        rgb, interpolator=colour.algebra.table_interpolation_tetrahedral
    )
    np.testing.assert_allclose(apply_lut3d(rgb.astype(np.float32), lut), reference, atol=2e-6)


def test_inputs_are_clipped_to_a_non_unit_domain(rng):
    lut = bake_lut(lambda rgb: rgb**2, size=33, domain_min=[-0.25, 0.0, 0.0], domain_max=[1.25, 2.0, 1.0])
    rgb = rng.uniform(-1.0, 3.0, size=(3000, 3))
    clipped = np.clip(rgb, lut.domain_min, lut.domain_max)
    reference = colour.LUT3D(lut.table.astype(np.float64), domain=np.stack([lut.domain_min, lut.domain_max])).apply(
        clipped, interpolator=colour.algebra.table_interpolation_tetrahedral
    )
    np.testing.assert_allclose(apply_lut3d(rgb.astype(np.float32), lut), reference, atol=1e-5)


def test_strength_blends_with_the_input(tmp_path, rng):
    path = str(write_cube(tmp_path / "look.cube", bake_lut(warm_fade, size=17)))
    rgb = rng.uniform(0.0, 1.0, size=(16, 16, 3))
    full = run(encoded(rgb), path=path)
    np.testing.assert_allclose(run(encoded(rgb), path=path, strength=0.25), rgb + 0.25 * (full - rgb), atol=1e-6)
    np.testing.assert_array_equal(run(encoded(rgb), path=path, strength=0.0), rgb.astype(np.float32))


# --- .cube files ---------------------------------------------------------------------------


def test_write_read_round_trip_is_exact(tmp_path):
    lut = Lut3D(
        bake_lut(warm_fade, size=5).table - 0.03,
        domain_min=[0.0, -0.1, 0.0],
        domain_max=[1.0, 1.5, 2.0],
        title="warm fade",
        comments=("made by isp-sim tests", "second line"),
    )
    back = read_cube(write_cube(tmp_path / "look.cube", lut))
    np.testing.assert_array_equal(back.table, lut.table)
    np.testing.assert_array_equal(back.domain_min, lut.domain_min)
    np.testing.assert_array_equal(back.domain_max, lut.domain_max)
    assert back.title == "warm fade" and back.comments == lut.comments


def test_colour_science_reads_what_we_write(tmp_path):
    lut = bake_lut(warm_fade, size=9, title="warm fade")
    theirs = colour.io.read_LUT(str(write_cube(tmp_path / "look.cube", lut)))
    assert isinstance(theirs, colour.LUT3D) and theirs.name == "warm fade"
    np.testing.assert_allclose(theirs.table, lut.table, rtol=1e-7)
    np.testing.assert_array_equal(theirs.domain, [[0.0] * 3, [1.0] * 3])


def test_we_read_what_colour_science_writes(tmp_path):
    table = warm_fade(colour.LUT3D.linear_table(7))
    path = str(tmp_path / "theirs.cube")
    colour.io.write_LUT(colour.LUT3D(table, name="theirs", comments=["from colour-science"]), path)
    ours = read_cube(path)
    np.testing.assert_allclose(ours.table, table, rtol=1e-6, atol=1e-7)
    assert ours.title == "theirs" and ours.comments == ("from colour-science",)


def test_red_varies_fastest_in_the_file(tmp_path):
    rows = [f"{r} {g} {b}" for b in (0, 0.3) for g in (0, 0.2) for r in (0, 0.1)]
    path = tmp_path / "order.cube"
    path.write_text("# hand written\nLUT_3D_SIZE 2\n\n" + "\n".join(rows) + "\n")
    table = read_cube(path).table
    assert table[1, 0, 0].tolist() == pytest.approx([0.1, 0.0, 0.0])  # second line
    assert table[0, 1, 0].tolist() == pytest.approx([0.0, 0.2, 0.0])  # third line
    assert table[0, 0, 1].tolist() == pytest.approx([0.0, 0.0, 0.3])  # fifth line


def test_resolve_input_range_is_the_domain(tmp_path):
    path = tmp_path / "resolve.cube"
    path.write_text("LUT_3D_SIZE 2\nLUT_3D_INPUT_RANGE -0.5 1.5\n" + "0 0 0\n" * 8)
    lut = read_cube(path)
    assert lut.domain_min.tolist() == [-0.5] * 3 and lut.domain_max.tolist() == [1.5] * 3


def test_writing_over_the_file_being_used_leaves_no_partial_file(tmp_path):
    path = write_cube(tmp_path / "look.cube", identity_lut(5))
    write_cube(path, read_cube(path))  # read fully, then replaced in one step
    assert read_cube(path).size == 5
    assert sorted(os.listdir(tmp_path)) == ["look.cube"]


GOOD_HEADER = 'TITLE "t"\nLUT_3D_SIZE 2\n'
EIGHT_ROWS = "0 0 0\n" * 8


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (GOOD_HEADER + "0 0 0\n" * 7, r"LUT_3D_SIZE 2 needs 8 table lines, found 7"),
        (GOOD_HEADER + "0 0 0\n" * 9, r"line 11: more table lines than LUT_3D_SIZE 2 allows"),
        (GOOD_HEADER + "0 0 0\n" * 3 + "0 0\n" + "0 0 0\n" * 4, r"line 6: expected three numbers \(r g b\), got 2"),
        (GOOD_HEADER + "0 0 0\n" * 3 + "0 zero 0\n" + "0 0 0\n" * 4, r"line 6: not three finite numbers: '0 zero 0'"),
        (GOOD_HEADER + "0 0 nan\n" + "0 0 0\n" * 7, r"line 3: not three finite numbers"),
        ("TITLE \"t\"\n" + EIGHT_ROWS, r"no LUT_3D_SIZE line"),
        ("LUT_3D_SIZE 1\n0 0 0\n", r"line 1: LUT_3D_SIZE 1 must be an integer from 2 to 256"),
        ("LUT_3D_SIZE 2.5\n" + EIGHT_ROWS, r"line 1: LUT_3D_SIZE 2.5 must be an integer"),
        ("LUT_1D_SIZE 4\n0 0 0\n", r"line 1: LUT_1D_SIZE: 1D LUTs .* are not supported"),
        ("LUT_3D_SIZE 2\nLUT_IN_VIDEO_RANGE\n" + EIGHT_ROWS, r"line 2: unknown keyword 'LUT_IN_VIDEO_RANGE'"),
        ("LUT_3D_SIZE 2\nDOMAIN_MIN 0 0\n" + EIGHT_ROWS, r"line 2: DOMAIN_MIN needs 3 numbers, got '0 0'"),
        ("LUT_3D_SIZE 2\nDOMAIN_MIN 0 0 1\n" + EIGHT_ROWS, r"line 2: the domain maximum .* must exceed the minimum"),
        ("LUT_3D_SIZE 2\nLUT_3D_SIZE 2\n" + EIGHT_ROWS, r"line 2: LUT_3D_SIZE given twice \(first on line 1\)"),
        ("LUT_3D_SIZE 2\n0 0 0\nDOMAIN_MAX 1 1 1\n" + "0 0 0\n" * 7, r"line 3: keyword DOMAIN_MAX after the table data"),
        ("TITLE untitled\nLUT_3D_SIZE 2\n" + EIGHT_ROWS, r"line 1: TITLE needs a quoted string"),
    ],
)
def test_malformed_files_name_the_file_and_line(tmp_path, text, match):
    path = tmp_path / "bad.cube"
    path.write_text(text)
    with pytest.raises(InputError, match=match) as caught:
        read_cube(path)
    assert str(caught.value).startswith(str(path))


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(InputError, match=r"missing\.cube: no such file"):
        read_cube(tmp_path / "missing.cube")
    (tmp_path / "binary.cube").write_bytes(b"\xff\xfe\x00\x81" * 16)
    with pytest.raises(InputError, match=r"binary\.cube: cannot read as a \.cube LUT"):
        read_cube(tmp_path / "binary.cube")


# --- the stage's parameters and input ------------------------------------------------------


def test_relative_path_is_resolved_against_the_working_directory(tmp_path, monkeypatch, rng):
    write_cube(tmp_path / "look.cube", bake_lut(warm_fade, size=9))
    monkeypatch.chdir(tmp_path)
    rgb = rng.uniform(0.0, 1.0, size=(8, 8, 3))
    np.testing.assert_allclose(run(encoded(rgb), path="look.cube"), apply_lut3d(rgb.astype(np.float32), read_cube("look.cube")))


def test_bad_parameters_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"tuning\.params\.lut3d\.strength=1\.5 is out of range \[0, 1\]"):
        build(Lut3dParams, {"strength": 1.5}, WHERE)
    with pytest.raises(ConfigError, match=r"lut3d\.path='nowhere\.cube': no such file \(relative paths are resolved against"):
        build(Lut3dParams, {"path": "nowhere.cube"}, WHERE)
    with pytest.raises(ConfigError, match=r"set lut3d\.path to a \.cube file"):
        run(encoded(np.zeros((2, 2, 3))))


def test_needs_encoded_float_input(tmp_path):
    path = str(write_cube(tmp_path / "id.cube", identity_lut(2)))
    linear = Image(np.zeros((2, 2, 3), np.float32), "srgb", "linear", CaptureInfo("test"))
    with pytest.raises(StageError, match=r"'lut3d' needs 'srgb' transfer"):
        run(linear, path=path)


@pytest.mark.gpu
def test_cupy_matches_numpy(tmp_path, rng, cupy_backend):
    path = str(write_cube(tmp_path / "look.cube", bake_lut(warm_fade, size=33)))
    rgb = rng.uniform(-0.1, 1.1, size=(96, 128, 3))
    expected = run(encoded(rgb), path=path, strength=0.8)
    got = run(encoded(rgb, cupy_backend), cupy_backend, path=path, strength=0.8)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
