"""Luma unsharp masking: against scikit-image, coring, the halo limit and edge sharpness."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
from skimage.filters import unsharp_mask

from isp.backend import to_host
from isp.config import build
from isp.errors import ConfigError, StageError
from isp.frame import CaptureInfo
from isp.stages.registry import Stage, StageContext
from isp.stages.sharpen import SharpenParams  # importing the stage module registers it
from tests.test_yuv_stages import edge_width_10_90, encoded, noisy_flat, run, ycbcr


def blurred_edge(low: float = 0.2, high: float = 0.8, sigma_px: float = 1.0) -> np.ndarray:
    """A grey vertical step at column 32 of a 32×64 image, blurred by a Gaussian of ``sigma_px``."""
    row = scipy.ndimage.gaussian_filter1d(np.where(np.arange(64) < 32, low, high), sigma_px, mode="nearest")
    return np.repeat(np.tile(row, (32, 1))[..., None], 3, axis=2).astype(np.float32)


def test_unsharp_mask_matches_scikit_image_on_luma(rng):
    rgb = scipy.ndimage.gaussian_filter(rng.uniform(0.3, 0.7, size=(48, 64, 3)), (0.7, 0.7, 0)).astype(np.float32)
    image = encoded(rgb)
    out = run("sharpen", image, radius_px=1.5, amount=0.7, threshold=0.0, overshoot=None)
    before, after = ycbcr(image), ycbcr(out)
    expected = unsharp_mask(before[..., 0].astype(np.float32), radius=1.5, amount=0.7, preserve_range=True)
    assert np.abs(expected - before[..., 0]).max() > 0.01  # it does sharpen, and nothing clips
    assert 0.0 < to_host(out.data).min() and to_host(out.data).max() < 1.0
    # scikit-image blurs with scipy's mode="reflect" as the stage does, so the border matches too
    np.testing.assert_allclose(after[..., 0], expected, atol=1e-5)
    np.testing.assert_allclose(after[..., 1:], before[..., 1:], atol=1e-6)  # chroma is not sharpened


def test_amount_zero_is_identity(rng):
    image = encoded(rng.uniform(0.0, 1.0, size=(16, 16, 3)))
    assert run("sharpen", image, amount=0.0).data is image.data


@pytest.mark.parametrize("overshoot", [0.0, 0.1, 0.3])
def test_overshoot_limit_bounds_the_halo_of_a_step(overshoot):
    image = encoded(blurred_edge(0.3, 0.7, 0.7))
    params = {"radius_px": 2.0, "amount": 3.0, "threshold": 0.0}
    limited = ycbcr(run("sharpen", image, overshoot=overshoot, **params))[..., 0]
    free = ycbcr(run("sharpen", image, overshoot=None, **params))[..., 0]
    step = 0.4
    # unlimited, the halo is large (measured: 0.27 each side) and still inside [0, 1], so not clipped
    assert free.max() - 0.7 > 0.5 * step and 0.3 - free.min() > 0.5 * step and 0.0 < free.min() and free.max() < 1.0
    assert limited.max() - 0.7 <= overshoot * step + 1e-6
    assert 0.3 - limited.min() <= overshoot * step + 1e-6


def test_coring_leaves_noise_below_threshold_unamplified():
    image = encoded(np.repeat(noisy_flat((96, 96), 0.5, 0.004)[..., :1], 3, axis=2))  # grey noise: luma std 0.004
    inner = (slice(8, -8), slice(8, -8))
    noise = ycbcr(image)[inner][..., 0].std()
    cored = ycbcr(run("sharpen", image, amount=2.0, threshold=3 * 0.004, overshoot=None))[inner][..., 0].std()
    plain = ycbcr(run("sharpen", image, amount=2.0, threshold=0.0, overshoot=None))[inner][..., 0].std()
    assert plain / noise > 1.5  # without coring the same sharpening amplifies the noise
    assert cored / noise < 1.02, cored / noise


def test_sharpening_narrows_a_blurred_edge():
    image = encoded(blurred_edge(0.2, 0.8, 1.5))
    profile = lambda im: ycbcr(im)[:, :, 0].mean(axis=0)
    before = edge_width_10_90(profile(image))
    after = edge_width_10_90(profile(run("sharpen", image, radius_px=1.5, amount=1.5)))
    assert after < 0.75 * before, (before, after)  # measured: 3.99 px -> 2.67 px


def test_sharpen_needs_encoded_rgb(rng):
    image = encoded(rng.uniform(0.0, 1.0, size=(8, 8, 3)))
    with pytest.raises(StageError, match="'srgb' transfer"):
        run("sharpen", image.replace(transfer="linear"))
    out = run("sharpen", image.replace(space="display_p3"))
    assert out.space == "display_p3" and out.data.dtype == np.float32


def test_amount_and_threshold_follow_iso_tables():
    tables = {"amount": {"iso": [100, 1600], "value": [1.2, 0.4]}, "threshold": {"iso": [100, 1600], "value": [0.005, 0.02]}}
    stage = Stage.from_config("sharpen", [("tuning.params.sharpen", tables)])
    params = stage.params_for(encoded(np.zeros((4, 4, 3))).replace(info=CaptureInfo("test", iso=400.0)))
    assert params.amount == pytest.approx(0.8) and params.threshold == pytest.approx(0.0125)  # halfway in stops


@pytest.mark.parametrize("values, field", [({"amount": -1.0}, "amount"), ({"radius_px": 0.0}, "radius_px"), ({"overshoot": -0.1}, "overshoot")])
def test_bad_parameter_is_a_config_error(values, field):
    with pytest.raises(ConfigError, match=rf"tuning\.params\.sharpen\.{field}=.* is out of range"):
        build(SharpenParams, values, "tuning.params.sharpen")


@pytest.mark.gpu
@pytest.mark.parametrize("params", [{}, {"threshold": 0.0, "overshoot": None, "amount": 2.0, "radius_px": 2.5}])
def test_sharpen_numpy_cupy_parity(params, cupy_backend, rng):
    rgb = np.clip(blurred_edge() + noisy_flat((32, 64), 0.0, 0.02), 0.0, 1.0)
    expected = run("sharpen", encoded(rgb), **params).data
    got = run("sharpen", encoded(rgb).replace(data=cupy_backend.asarray(rgb)), StageContext(cupy_backend), **params)
    assert got.data.dtype == np.float32
    np.testing.assert_allclose(to_host(got.data), expected, rtol=1e-5, atol=2e-6)


# --- the strip-wise CPU path against whole planes -------------------------------------------


def sharpen_reference(rgb: np.ndarray, radius_px: float, amount: float, threshold: float, overshoot: float | None) -> np.ndarray:
    """The stage written with scipy's filters on the whole float64 luma plane (mirrored borders)."""
    y = ycbcr(encoded(rgb))[..., 0]
    detail = y - scipy.ndimage.gaussian_filter(y, radius_px, mode="reflect", truncate=4.0)
    detail = np.sign(detail) * np.maximum(np.abs(detail) - threshold, 0.0)
    sharpened = y + amount * detail
    if overshoot is not None:
        low, high = scipy.ndimage.minimum_filter(y, size=3, mode="reflect"), scipy.ndimage.maximum_filter(y, size=3, mode="reflect")
        sharpened = np.clip(sharpened, low - overshoot * (high - low), high + overshoot * (high - low))
    return np.clip(rgb + (sharpened - y)[..., None], 0.0, 1.0)


@pytest.mark.parametrize("shape", [(32, 64), (7, 11), (3, 2), (1, 6)])
@pytest.mark.parametrize(
    "params",
    [
        {"radius_px": 1.2, "amount": 0.5, "threshold": 0.004, "overshoot": 0.1},
        {"radius_px": 2.5, "amount": 2.0, "threshold": 0.0, "overshoot": None},
        {"radius_px": 0.6, "amount": 1.0, "threshold": 0.01, "overshoot": 0.0},
    ],
)
def test_sharpen_matches_a_whole_plane_reference(shape, params):
    h, w = shape
    rgb = np.clip(blurred_edge()[:h, 32 - w // 2 : 32 - w // 2 + w] + noisy_flat(shape, 0.0, 0.02), 0.0, 1.0)
    out = to_host(run("sharpen", encoded(rgb), **params).data)
    assert out.shape == rgb.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, sharpen_reference(rgb, **params), atol=2e-6)


def test_sharpen_does_not_depend_on_the_strips(monkeypatch):
    import isp.stages.sharpen as module

    rgb = np.clip(blurred_edge() + noisy_flat((32, 64), 0.0, 0.02), 0.0, 1.0)
    results = []
    for rows in (1, 5, 1000):
        monkeypatch.setattr(module, "CPU_STRIP_ROWS", rows)
        results.append(run("sharpen", encoded(rgb), amount=1.5, threshold=0.002).data)
    np.testing.assert_array_equal(results[0], results[2])
    np.testing.assert_array_equal(results[1], results[2])
