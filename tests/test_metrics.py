"""Colour metrics: CIEDE2000 against scikit-image and Sharma's test data; ColorChecker measurement."""

from __future__ import annotations

import numpy as np
import pytest

from isp import colorimetry
from isp.backend import get_backend
from isp.config import compose
from isp.frame import CaptureInfo, Image
from isp.metrics import colorchecker_delta_e
from isp.scene import build_scene_params, render_scene
from isp.stages.oetf import srgb_oetf
from isp.stages.quantize import quantize


def test_ciede2000_matches_scikit_image(rng):
    from skimage.color import deltaE_ciede2000

    lab_a = np.column_stack([rng.uniform(0, 100, 500), rng.uniform(-80, 80, 500), rng.uniform(-80, 80, 500)])
    lab_b = lab_a + rng.normal(0, 5, size=lab_a.shape)
    np.testing.assert_allclose(colorimetry.delta_e_2000(lab_a, lab_b), deltaE_ciede2000(lab_a, lab_b), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    ("lab_a", "lab_b", "expected"),
    [  # Sharma, Wu, Dalal (2005), table 1, pairs 1, 7 and 17
        ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
        ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
        ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ],
)
def test_ciede2000_published_pairs(lab_a, lab_b, expected):
    assert colorimetry.delta_e_2000(np.array(lab_a), np.array(lab_b)) == pytest.approx(expected, abs=1e-4)


def _chart_image(transform, transfer):
    params = build_scene_params(compose(["scene=colorchecker"]).scene)
    scene = render_scene(params, (240, 360), (2, 2), get_backend("numpy"))
    return scene, Image(transform(scene.linear_rgb), "srgb", transfer, CaptureInfo("t"))


def test_a_perfect_rendering_measures_zero_except_the_out_of_gamut_cyan():
    scene, image = _chart_image(lambda x: x, "linear")
    result = colorchecker_delta_e(image, scene.patches)
    assert result["max"] < 1e-4, "linear float data holds the reference (cyan keeps its negative red)"
    scene, image = _chart_image(lambda x: quantize(srgb_oetf(x), 8), "srgb")
    result = colorchecker_delta_e(image, scene.patches)
    by_name = {p["name"]: p["delta_e"] for p in result["patches"]}
    assert by_name.pop("cyan") > 1.0, "8-bit sRGB cannot hold cyan's negative red"
    assert max(by_name.values()) < 0.6 and result["mean"] < 0.5


def test_a_colour_cast_is_measured():
    scene, image = _chart_image(lambda x: x * np.array([1.1, 1.0, 0.9], np.float32), "linear")
    result = colorchecker_delta_e(image, scene.patches)
    greys = [p["delta_e"] for p in result["patches"] if p["name"].startswith(("white", "neutral"))]
    assert min(greys) > 3.0 and result["mean"] > 2.0


def test_detrended_snr_removes_a_plane_and_recovers_the_noise():
    from isp.metrics import detrended_snr

    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:200, :200]
    values = 100.0 + 0.2 * yy - 0.1 * xx + rng.normal(0.0, 2.0, yy.shape)
    mean, noise = detrended_snr(values, yy, xx)
    assert mean == pytest.approx(values.mean())
    assert noise == pytest.approx(2.0, rel=0.02), "the ramp (40 and 20 across the patch) is not noise"
    assert values.std() > 3 * noise


def test_neutral_patches_of_the_colorchecker_are_the_greys():
    from isp.metrics import neutral_patches

    scene = render_scene(build_scene_params({"kind": "colorchecker"}), (240, 360), (2, 2), get_backend("numpy"))
    names = [p.name for p in neutral_patches(scene.patches)]
    assert len(names) >= 5 and all(p in scene.patches[18:] for p in neutral_patches(scene.patches))
