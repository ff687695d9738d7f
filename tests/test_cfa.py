"""CFA layouts: the four Bayer phases and Quad Bayer."""

from __future__ import annotations

import numpy as np
import pytest

from isp.cfa import BAYER_PHASES, CFALayout
from isp.errors import ConfigError


@pytest.mark.parametrize("phase", BAYER_PHASES)
def test_bayer_phases(phase):
    cfa = CFALayout.from_name(phase)
    assert cfa.is_bayer and cfa.tile_shape == (2, 2)
    letters = "".join("RGB"[c] for row in cfa.pattern for c in row)
    assert letters == phase
    masks = cfa.masks((4, 6))
    assert masks.sum(axis=0).tolist() == np.ones((4, 6)).tolist()
    assert masks[1].sum() == 12 and masks[0].sum() == masks[2].sum() == 6


def test_quad_bayer_is_a_4x4_tile_of_2x2_blocks():
    cfa = CFALayout.from_name("quad_RGGB")
    assert cfa.tile_shape == (4, 4) and not cfa.is_bayer
    assert cfa.pattern == ((0, 0, 1, 1), (0, 0, 1, 1), (1, 1, 2, 2), (1, 1, 2, 2))
    assert len(cfa.colour_sites(0)) == 4 and len(cfa.colour_sites(1)) == 8


def test_sample_keeps_the_filtered_channel(rng):
    cfa = CFALayout.from_name("GRBG")
    rgb = rng.uniform(size=(4, 6, 3))
    mosaic = cfa.sample(rgb)
    assert mosaic[0, 0] == rgb[0, 0, 1] and mosaic[0, 1] == rgb[0, 1, 0] and mosaic[1, 0] == rgb[1, 0, 2]


def test_per_site_arithmetic_matches_tiling(rng):
    cfa = CFALayout.from_name("quad_BGGR")
    mosaic = rng.uniform(size=(8, 12)).astype(np.float32)
    scale = rng.uniform(size=(4, 4))
    offset = rng.uniform(size=(4, 4))
    expected = (mosaic + np.tile(offset, (2, 3))) * np.tile(scale, (2, 3))
    np.testing.assert_allclose(cfa.apply_per_site(mosaic, scale=scale, offset=offset), expected, rtol=1e-6)


def test_unknown_layout_and_bad_shapes():
    with pytest.raises(ConfigError, match="CFA layout 'RGBW' is not known"):
        CFALayout.from_name("RGBW")
    with pytest.raises(ConfigError, match=r"mosaic of shape \(5, 6\) does not fit CFA RGGB"):
        CFALayout.from_name("RGGB").check_shape((5, 6))
    with pytest.raises(ConfigError, match="height a multiple of 4"):
        CFALayout.from_name("quad_RGGB").check_shape((6, 8))
