"""Scenes: the ColorChecker reference and layout, image files as scenes."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from isp import colorimetry
from isp.backend import get_backend
from isp.config import compose
from isp.errors import ConfigError, InputError
from isp.io import write_tiff16
from isp.scene import build_scene_params, render_scene
from isp.stages.oetf import srgb_eotf, srgb_oetf

NUMPY = get_backend("numpy")


def chart(*overrides, readout=(480, 640)):
    params = build_scene_params(compose(["scene=colorchecker", *overrides]).scene)
    return render_scene(params, readout, (2, 2), NUMPY)


def test_chart_patches_hold_the_reference_colour():
    scene = chart()
    assert scene.shape == (480, 640) and len(scene.patches) == 24
    for patch in scene.patches:
        top, left, bottom, right = patch.box
        region = scene.linear_rgb[top:bottom, left:right]
        expected = colorimetry.XYZ_TO_SRGB @ patch.xyz_d65
        np.testing.assert_allclose(region.reshape(-1, 3), np.broadcast_to(expected, (region.size // 3, 3)), rtol=1e-6, atol=1e-7)
    # the surround is neutral, the patches do not overlap and stay inside the frame
    assert np.allclose(scene.linear_rgb[0, 0], 0.18)
    boxes = [p.box for p in scene.patches]
    for a in range(24):
        for b in range(a + 1, 24):
            ta, la, ba, ra = boxes[a]
            tb, lb, bb, rb = boxes[b]
            assert ba <= tb or bb <= ta or ra <= lb or rb <= la


def test_chart_reference_agrees_with_the_shared_csv(shared_data):
    """xyY, CIELAB (D50) and 8-bit sRGB of the published chart, as the reference data folder records them."""
    path = shared_data / "colorchecker" / "colorchecker24_after2014_D50.csv"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24
    names, xyz_d65 = colorimetry.colorchecker_reference()
    assert list(names) == [r["name"] for r in rows]
    import colour

    chart_white = colour.CCS_COLOURCHECKERS["ColorChecker24 - After November 2014"].illuminant  # ICC D50
    xyz_d50 = xyz_d65 @ colorimetry.bradford(colorimetry.D65_XY, chart_white).T
    xyY = np.column_stack([xyz_d50[:, :2] / xyz_d50.sum(axis=1, keepdims=True), xyz_d50[:, 1]])
    np.testing.assert_allclose(xyY, [[float(r[k]) for k in ("x", "y", "Y")] for r in rows], atol=2e-6)
    lab = colorimetry.XYZ_to_Lab(xyz_d50, chart_white)
    np.testing.assert_allclose(lab, [[float(r[k]) for k in ("L_D50", "a_D50", "b_D50")] for r in rows], atol=0.01)
    srgb8 = np.rint(255 * srgb_oetf(xyz_d65 @ colorimetry.XYZ_TO_SRGB.T))
    np.testing.assert_allclose(srgb8, [[float(r[k]) for k in ("sR8", "sG8", "sB8")] for r in rows], atol=1)


def test_window_and_tile_trimming():
    assert chart("scene.size=[101,151]").shape == (100, 150)
    with pytest.raises(ConfigError, match="scene.size: 960x640 is larger than the sensor read-out 480x640"):
        chart("scene.size=[960,640]")
    with pytest.raises(ConfigError, match="leaves ColorChecker patches of"):
        chart("scene.size=[20,30]")


def test_image_scene_is_linearised(tmp_path, rng):
    encoded = rng.integers(0, 65536, size=(10, 14, 3)).astype(np.uint16)
    path = write_tiff16(tmp_path / "scene.tif", encoded)
    params = build_scene_params(compose(["scene=image", f"scene.path={path}"]).scene)
    scene = render_scene(params, (480, 640), (2, 2), NUMPY)
    assert scene.shape == (10, 14)
    np.testing.assert_allclose(scene.linear_rgb, srgb_eotf(encoded / 65535.0), rtol=1e-5, atol=1e-7)
    fitted = render_scene(build_scene_params(compose(["scene=image", f"scene.path={path}", "scene.fit=sensor"]).scene), (48, 64), (2, 2), NUMPY)
    assert fitted.shape == (48, 64)


def test_sixteen_bit_png_is_read_exactly(tmp_path, rng):
    import png

    from isp.io import read_image

    data = rng.integers(0, 65536, size=(5, 7, 3)).astype(np.uint16)
    path = tmp_path / "deep.png"
    png.from_array(data.reshape(5, -1), "RGB;16").save(str(path))
    np.testing.assert_array_equal(np.rint(read_image(path) * 65535).astype(np.uint16), data)


def test_image_scene_errors(tmp_path):
    from PIL import Image

    grey = tmp_path / "grey.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(grey)
    with pytest.raises(InputError, match=r"grey.png: is not an RGB image \(1 channel"):
        render_scene(build_scene_params(compose(["scene=image", f"scene.path={grey}"]).scene), (480, 640), (2, 2), NUMPY)
    with pytest.raises(InputError, match="missing.png: no such file"):
        render_scene(build_scene_params(compose(["scene=image", f"scene.path={tmp_path / 'missing.png'}"]).scene), (480, 640), (2, 2), NUMPY)
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((600, 700, 3), np.uint8)).save(big)
    with pytest.raises(ConfigError, match="larger than the sensor read-out 480x640; use scene.fit=sensor"):
        render_scene(build_scene_params(compose(["scene=image", f"scene.path={big}"]).scene), (480, 640), (2, 2), NUMPY)
    with pytest.raises(ConfigError, match="scene.path: a value is required"):
        build_scene_params(compose(["scene=image"]).scene)


def test_flat_field_is_uniform_at_its_level_and_luminance():
    params = build_scene_params(compose(["scene=flat_field", "scene.level=0.25", "scene.luminance_cd_m2=200", "scene.size=[30,41]"]).scene)
    scene = render_scene(params, (480, 640), (2, 2), get_backend("numpy"))
    assert scene.shape == (30, 40), "trimmed to whole CFA tiles"
    assert np.all(scene.linear_rgb == np.float32(0.25)) and scene.luminance_cd_m2 == 200
    (patch,) = scene.patches
    np.testing.assert_allclose(patch.xyz_d65, 0.25 * colorimetry.xy_to_XYZ(colorimetry.D65_XY), rtol=1e-9)


@pytest.mark.parametrize("spacing", ["linear", "log"])
def test_grey_ramp_steps(spacing):
    params = build_scene_params(compose(["scene=grey_ramp", f"scene.spacing={spacing}", "scene.steps=8", "scene.low=0.01", "scene.size=[16,64]"]).scene)
    scene = render_scene(params, (480, 640), (2, 2), get_backend("numpy"))
    steps = [float(scene.linear_rgb[0, p.box[1], 0]) for p in scene.patches]
    expected = np.geomspace(0.01, 1.0, 8) if spacing == "log" else np.linspace(0.01, 1.0, 8)
    np.testing.assert_allclose(steps, expected, rtol=1e-6)
    assert all(np.all(scene.linear_rgb[:, p.box[1] : p.box[3]] == np.float32(v)) for p, v in zip(scene.patches, expected, strict=True))
    assert [p.box[3] - p.box[1] for p in scene.patches] == [8] * 8


def test_relighting_takes_white_to_the_illuminants_white():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import colour

    np.testing.assert_allclose(colorimetry.relight_matrix("D65"), np.eye(3), atol=1e-12)
    for name in ("A", "D50"):
        white = colorimetry.relight_matrix(name) @ np.ones(3)
        expected = colour.xy_to_XYZ(colour.CCS_ILLUMINANTS["CIE 1931 2 Degree Standard Observer"][name])
        np.testing.assert_allclose(colorimetry.SRGB_TO_XYZ @ white, expected, atol=1e-9)
    with pytest.raises(KeyError, match="illuminant 'F2' is not one of A, D50"):
        colorimetry.relight_matrix("F2")
