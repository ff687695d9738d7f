"""Philox4x32-10 against the Random123 known-answer vectors, and the properties the sensor and
the grain rely on: pixel draws independent of the crop, uniforms in (0, 1), normals N(0, 1)."""

from __future__ import annotations

import numpy as np
import pytest

from isp.rng import normal_pair, philox4x32, pixel_counters, stream_id, uniform01

# Random123 1.14, examples/kat_vectors: philox4x32 10 rounds (counter, key, expected).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0), (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_philox_matches_the_reference_vectors(counter, key, expected):
    out = philox4x32(tuple(np.uint32(c) for c in counter), key)
    assert tuple(int(v) for v in out) == expected


def test_a_crop_draws_what_the_same_pixels_draw_in_the_whole_frame():
    full = philox4x32((*pixel_counters((40, 50)), 0, stream_id("grain")), (7, 0))[0]
    lo, hi = pixel_counters((10, 12), origin=(20, 31), full_width=50)
    crop = philox4x32((lo, hi, 0, stream_id("grain")), (7, 0))[0]
    np.testing.assert_array_equal(crop, full[20:30, 31:43])


def test_uniforms_stay_inside_the_open_interval_at_the_extreme_bits():
    u = uniform01(np.array([0, 0xFFFFFFFF], dtype=np.uint32))
    assert 0 < u[0] and u[1] < 1


def test_uniforms_and_normals_have_the_right_distribution():
    lo, hi = pixel_counters((512, 512))
    bits = philox4x32((lo, hi, 0, 1), (3, 0))
    u1, u2 = uniform01(bits[0]), uniform01(bits[1])
    assert u1.dtype == np.float32 and 0 < u1.min() and u1.max() < 1
    assert abs(u1.mean() - 0.5) < 2e-3
    z1, z2 = normal_pair(u1, u2)
    for z in (z1, z2):
        assert abs(z.mean()) < 5e-3 and abs(z.std() - 1) < 5e-3
    assert abs(np.corrcoef(z1.ravel(), z2.ravel())[0, 1]) < 5e-3


def test_streams_and_keys_decorrelate():
    lo, hi = pixel_counters((256, 256))
    a = uniform01(philox4x32((lo, hi, 0, stream_id("shot")), (1, 0))[0])
    b = uniform01(philox4x32((lo, hi, 0, stream_id("read")), (1, 0))[0])
    c = uniform01(philox4x32((lo, hi, 0, stream_id("shot")), (2, 0))[0])
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(a.ravel(), c.ravel())[0, 1]) < 0.01
    assert stream_id("shot") != stream_id("read")
