"""The YCbCr split, luma/chroma denoise and false-colour suppression on sRGB-encoded images.

Importing the stage modules registers their stages; the package __init__ is not needed.
"""

from __future__ import annotations

import colour
import numpy as np
import pytest
import scipy.ndimage

from isp.backend import get_backend, to_host
from isp.cfa import CFALayout
from isp.config import build
from isp.errors import ConfigError, StageError
from isp.frame import CaptureInfo, Image
from isp.stages.demosaic import demosaic
from isp.stages.false_color import FalseColorParams
from isp.stages.oetf import srgb_oetf
from isp.stages.registry import Stage, StageContext
from isp.stages.yuv import rgb_to_ycbcr, ycbcr_to_rgb
from isp.stages.yuv_denoise import YuvDenoiseParams

CTX = StageContext(get_backend("numpy"))
BT709 = colour.WEIGHTS_YCBCR["ITU-R BT.709"]


def encoded(data: np.ndarray, space: str = "srgb", iso: float = 100.0) -> Image:
    """An sRGB-encoded float32 Image holding ``data``."""
    return Image(np.asarray(data, dtype=np.float32), space, "srgb", CaptureInfo("test", iso=iso))


def run(name: str, image: Image, ctx: StageContext = CTX, **params) -> Image:
    return Stage.from_config(name, [(f"tuning.params.{name}", params)])(image, ctx)


def ycbcr(image: Image) -> np.ndarray:
    """Full-range BT.709 Y'CbCr of an image, computed by colour-science: ``(H, W, 3)``."""
    return colour.RGB_to_YCbCr(to_host(image.data).astype(np.float64), K=BT709, in_legal=False, out_legal=False, out_int=False)


def edge_width_10_90(profile: np.ndarray) -> float:
    """Distance in pixels between the 10 % and 90 % crossings of a rising edge profile.

    The levels are the profile's first and last values (its plateaus); each crossing is
    interpolated linearly, the 10 % one on the last rise through 10 % and the 90 % one on the
    first rise through 90 %, so that an undershoot or overshoot beside the edge does not count.
    """
    p = (profile - profile[0]) / (profile[-1] - profile[0])
    below = np.nonzero(p < 0.1)[0][-1]
    above = below + 1 + np.nonzero(p[below + 1 :] >= 0.9)[0][0]
    x10 = below + (0.1 - p[below]) / (p[below + 1] - p[below])
    x90 = above - 1 + (0.9 - p[above - 1]) / (p[above] - p[above - 1])
    return float(x90 - x10)


def noisy_flat(shape: tuple[int, int], level: float, noise: float, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (level + noise * rng.standard_normal((*shape, 3))).astype(np.float32)


def gaussian_noise_gain(sigma_px: float) -> float:
    """How much a normalised 2-D Gaussian window cut at int(3 sigma + 0.5) scales white noise's std."""
    r = int(3.0 * sigma_px + 0.5)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_px) ** 2)
    k2 = np.outer(k, k) / k.sum() ** 2
    return float(np.sqrt((k2**2).sum()))


# --- the YCbCr split -------------------------------------------------------------------------


def test_ycbcr_matches_colour_science_and_inverts(rng):
    rgb = rng.uniform(0.0, 1.0, size=(16, 24, 3)).astype(np.float32)
    y, cb, cr = rgb_to_ycbcr(rgb)
    expected = colour.RGB_to_YCbCr(rgb.astype(np.float64), K=BT709, in_legal=False, out_legal=False, out_int=False)
    np.testing.assert_allclose(np.stack([y, cb, cr], axis=-1), expected, atol=2e-7)
    assert y.dtype == cb.dtype == cr.dtype == np.float32
    back = ycbcr_to_rgb(y, cb, cr)
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, rgb, atol=1e-6)


@pytest.mark.parametrize("name", ["yuv_denoise", "false_color"])
def test_stages_need_encoded_rgb(name, rng):
    data = rng.uniform(0.0, 1.0, size=(8, 8, 3))
    with pytest.raises(StageError, match="'srgb' transfer"):
        run(name, encoded(data).replace(transfer="linear"))
    with pytest.raises(StageError, match="colour space 'srgb' or 'display_p3', got 'camera'"):
        run(name, encoded(data, space="camera"))
    out = run(name, encoded(data, space="display_p3"))
    assert out.space == "display_p3" and out.transfer == "srgb" and out.data.dtype == np.float32


# --- yuv_denoise -----------------------------------------------------------------------------


def test_denoise_with_zero_sigmas_is_identity(rng):
    image = encoded(rng.uniform(0.0, 1.0, size=(16, 16, 3)))
    assert run("yuv_denoise", image, luma_sigma=0.0, chroma_sigma=0.0).data is image.data


def test_denoise_with_wide_range_sigmas_is_a_gaussian_blur():
    """Range sigmas far above the noise leave only the spatial Gaussian: scipy's, noise down by its gain."""
    rgb = noisy_flat((160, 160), 0.5, 0.01)
    image = encoded(rgb)
    params = {"luma_sigma": 1.0, "luma_radius_px": 1.0, "chroma_sigma": 1.0, "chroma_radius_px": 2.5, "chroma_edge_sigma": 1.0}
    out = ycbcr(run("yuv_denoise", image, **params))
    before = ycbcr(image)
    blur = [scipy.ndimage.gaussian_filter(before[..., c], s, mode="reflect", truncate=3.0) for c, s in ((0, 1.0), (1, 2.5), (2, 2.5))]
    np.testing.assert_allclose(out, np.stack(blur, axis=-1), atol=1e-5)
    inner = (slice(8, -8), slice(8, -8))
    for c, sigma_px in ((0, 1.0), (1, 2.5), (2, 2.5)):
        ratio = out[inner][..., c].std() / before[inner][..., c].std()
        assert ratio == pytest.approx(gaussian_noise_gain(sigma_px), rel=0.1), (c, ratio)


def test_default_denoise_takes_more_chroma_noise_than_luma_noise():
    image = encoded(noisy_flat((96, 96), 0.5, 0.01))
    before, after = ycbcr(image)[8:-8, 8:-8], ycbcr(run("yuv_denoise", image))[8:-8, 8:-8]
    luma_ratio = after[..., 0].std() / before[..., 0].std()
    chroma_ratio = np.hypot(after[..., 1], after[..., 2]).std() / np.hypot(before[..., 1], before[..., 2]).std()
    assert chroma_ratio < 0.3 and chroma_ratio < luma_ratio < 0.9, (luma_ratio, chroma_ratio)


def test_denoise_keeps_a_luma_step_sharp():
    rgb = np.full((48, 64, 3), 0.2, dtype=np.float32)
    rgb[:, 32:] = 0.7
    rgb += np.random.default_rng(3).normal(0.0, 0.005, size=(48, 64, 1)).astype(np.float32)  # grey noise: luma only
    image = encoded(rgb)
    profile = lambda y: y[:, 16:48].mean(axis=0)
    before = edge_width_10_90(profile(ycbcr(image)[..., 0]))
    after = edge_width_10_90(profile(ycbcr(run("yuv_denoise", image))[..., 0]))
    blurred = edge_width_10_90(profile(scipy.ndimage.gaussian_filter(ycbcr(image)[..., 0], 1.0)))
    assert abs(after - before) <= 1.0, (before, after)
    assert blurred - before > 1.0  # the same window without the range term would fail


@pytest.mark.parametrize("edge_sigma, bleeds", [(0.05, False), (1.0, True)])
def test_chroma_stops_at_luma_edges(edge_sigma, bleeds):
    """A chroma step on a luma step stays put; without the luma guide it would spread."""
    y = np.where(np.arange(64) < 32, 0.3, 0.7) * np.ones((32, 1))
    cb = np.where(np.arange(64) < 32, 0.03, -0.03) * np.ones((32, 1))
    image = encoded(ycbcr_to_rgb(y.astype(np.float32), cb.astype(np.float32), 0.0))
    out = run("yuv_denoise", image, luma_sigma=0.0, chroma_sigma=1.0, chroma_radius_px=2.5, chroma_edge_sigma=edge_sigma)
    profile = lambda im: -ycbcr(im)[:, 8:56, 1].mean(axis=0)  # Cb falls: negate it to rise
    widening = edge_width_10_90(profile(out)) - edge_width_10_90(profile(image))
    assert (widening > 1.0) == bleeds, widening


def test_denoise_strength_follows_an_iso_table():
    stage = Stage.from_config("yuv_denoise", [("tuning.params.yuv_denoise", {"luma_sigma": {"iso": [100, 3200], "value": [0.01, 0.04]}})])
    image = encoded(np.full((4, 4, 3), 0.5))
    assert stage.params_for(image.replace(info=CaptureInfo("test", iso=3200.0))).luma_sigma == pytest.approx(0.04)
    assert stage.params_for(image.replace(info=CaptureInfo("test", iso=100.0 * 32**0.5))).luma_sigma == pytest.approx(0.025)


@pytest.mark.parametrize("values, field", [({"luma_sigma": -0.1}, "luma_sigma"), ({"chroma_edge_sigma": 0.0}, "chroma_edge_sigma"), ({"chroma_radius_px": 9}, "chroma_radius_px")])
def test_denoise_bad_parameter_is_a_config_error(values, field):
    with pytest.raises(ConfigError, match=rf"tuning\.params\.yuv_denoise\.{field}=.* is out of range"):
        build(YuvDenoiseParams, values, "tuning.params.yuv_denoise")


# --- false_color -----------------------------------------------------------------------------

SATURATED = (0.85, 0.15, 0.1)


def demosaiced_edge_and_patch() -> np.ndarray:
    """sRGB-encoded bilinear demosaic of a grey slanted edge (5°), beside a flat saturated patch.

    Returns ``(64, 96, 3)``: columns 0-63 the demosaiced edge, 64-95 the patch.
    """
    ss, h, w = 8, 64, 64
    yy, xx = (np.mgrid[0 : h * ss, 0 : w * ss] + 0.5) / ss
    angle = np.deg2rad(5.0)
    bright = (xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle) > 0
    scene = np.where(bright, 0.8, 0.05).reshape(h, ss, w, ss).mean(axis=(1, 3)).astype(np.float32)
    rgb = srgb_oetf(np.clip(demosaic(scene, CFALayout.from_name("RGGB"), "bilinear"), 0.0, 1.0))
    patch = np.broadcast_to(np.asarray(SATURATED, dtype=np.float32), (h, 32, 3))
    return np.concatenate([rgb, patch], axis=1)


def test_false_color_removes_demosaic_colour_at_an_edge_and_keeps_a_flat_patch():
    image = encoded(demosaiced_edge_and_patch())
    out = run("false_color", image)
    edge = (slice(4, -4), slice(4, 60))  # away from the frame's border and the patch
    chroma = lambda im: np.hypot(ycbcr(im)[edge][..., 1], ycbcr(im)[edge][..., 2]).sum()
    assert chroma(image) > 5.0  # the bilinear demosaic did leave false colour
    assert chroma(out) <= 0.2 * chroma(image)  # measured: 0.11 with the defaults
    patch = (slice(None), slice(67, None))  # from 3 px inside the patch, past the edge detector's reach
    assert np.abs(out.data[patch] - image.data[patch]).max() <= 1e-6
    np.testing.assert_allclose(ycbcr(out)[..., 0], ycbcr(image)[..., 0], atol=1e-6)  # luma is left alone


def test_false_color_removes_moire_on_a_fine_grating():
    ss = 8
    bars = np.sin(2 * np.pi * (np.arange(64 * ss) + 0.5) / ss / 3.0) > 0
    scene = np.tile(np.where(bars, 0.8, 0.05).reshape(64, ss).mean(axis=1), (48, 1)).astype(np.float32)
    image = encoded(srgb_oetf(np.clip(demosaic(scene, CFALayout.from_name("GRBG"), "bilinear"), 0.0, 1.0)))
    inner = (slice(8, -8), slice(8, -8))
    chroma = lambda im: np.hypot(ycbcr(im)[inner][..., 1], ycbcr(im)[inner][..., 2]).mean()
    assert chroma(image) > 0.1
    assert chroma(run("false_color", image)) <= 0.2 * chroma(image)  # measured: 0.10


def test_false_color_keeps_an_isoluminant_colour_edge():
    """Real colour edges without a luma edge are not what a demosaic invents: left bit-exact."""
    cb = np.where(np.arange(32) < 16, 0.2, -0.2).astype(np.float32) * np.ones((16, 1), dtype=np.float32)
    image = encoded(np.clip(ycbcr_to_rgb(np.full((16, 32), 0.5, dtype=np.float32), cb, 0.0), 0.0, 1.0))
    np.testing.assert_array_equal(run("false_color", image).data, image.data)


def test_false_color_strength_zero_is_identity():
    image = encoded(demosaiced_edge_and_patch())
    assert run("false_color", image, strength=0.0).data is image.data


@pytest.mark.parametrize("values, field", [({"strength": 1.5}, "strength"), ({"edge_threshold": 0.0}, "edge_threshold")])
def test_false_color_bad_parameter_is_a_config_error(values, field):
    with pytest.raises(ConfigError, match=rf"tuning\.params\.false_color\.{field}=.* is out of range"):
        build(FalseColorParams, values, "tuning.params.false_color")


# --- NumPy / CuPy parity ---------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize(
    "name, params",
    [("yuv_denoise", {}), ("yuv_denoise", {"luma_sigma": 0.05, "chroma_radius_px": 3.5}), ("false_color", {}), ("false_color", {"edge_threshold": 0.01})],
)
def test_yuv_stages_numpy_cupy_parity(name, params, cupy_backend):
    rgb = np.clip(demosaiced_edge_and_patch() + noisy_flat((64, 96), 0.0, 0.02), 0.0, 1.0)
    expected = run(name, encoded(rgb), **params).data
    got = run(name, encoded(rgb).replace(data=cupy_backend.asarray(rgb)), StageContext(cupy_backend), **params)
    assert got.data.dtype == np.float32
    np.testing.assert_allclose(to_host(got.data), expected, rtol=1e-5, atol=2e-6)
