"""The YCbCr split, luma/chroma denoise and false-colour suppression on sRGB-encoded images.

Importing the stage modules registers their stages; the package __init__ is not needed.
"""

from __future__ import annotations

import colour
import imageio.v3 as iio
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
from isp.stages.yuv import rgb_to_ycbcr, ycbcr_planes, ycbcr_to_rgb
import isp.stages.yuv_denoise
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


def test_ycbcr_planes_match_colour_science(rng):
    rgb = rng.uniform(0.0, 1.0, size=(16, 24, 3)).astype(np.float32)
    planes = ycbcr_planes(rgb)
    expected = colour.RGB_to_YCbCr(rgb.astype(np.float64), K=BT709, in_legal=False, out_legal=False, out_int=False)
    assert planes.shape == (3, 16, 24) and planes.dtype == np.float32
    np.testing.assert_allclose(np.moveaxis(planes, 0, -1), expected, atol=2e-7)


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


def box_mean(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over (2r + 1)² windows, borders mirrored (d c b a | a b c d): scipy's."""
    return scipy.ndimage.uniform_filter(x, 2 * radius + 1, mode="reflect")


def guided_filter_reference(guide: np.ndarray, p: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He, Sun and Tang's guided filter (TPAMI 2013, Algorithm 1), grey guide, in float64 with scipy."""
    mean_i, mean_p = box_mean(guide, radius), box_mean(p, radius)
    a = (box_mean(guide * p, radius) - mean_i * mean_p) / (box_mean(guide * guide, radius) - mean_i**2 + eps)
    b = mean_p - a * mean_i
    return box_mean(a, radius) * guide + box_mean(b, radius)


def fast_chroma_filter_reference(luma, chroma, chroma_sigma, edge_sigma, radius_blocks, block=4):
    """He and Sun's fast guided filter of one chroma plane with the two-channel guide
    (luma / edge_sigma, chroma / chroma_sigma) and ε = 1, from block means, in float64.

    The colour-guide form of He, Sun and Tang (their eq. 19-21): ``a = (Σ + ε U)⁻¹ cov(I, p)``
    solved per window with numpy; box means by scipy; the coefficient maps are upsampled by
    scipy's bilinear zoom between block centres (``grid_mode``), clamped at the borders.
    """
    h, w = luma.shape
    blocks = lambda x: x.reshape(h // block, block, w // block, block).mean(axis=(1, 3))
    guide = np.stack([blocks(luma) / edge_sigma, blocks(chroma) / chroma_sigma], axis=-1)
    p = blocks(chroma) / chroma_sigma
    mean = lambda x: box_mean(x, radius_blocks)
    mean_g = np.stack([mean(guide[..., i]) for i in range(2)], axis=-1)
    cov_gg = np.empty((*p.shape, 2, 2))
    for i in range(2):
        for j in range(2):
            cov_gg[..., i, j] = mean(guide[..., i] * guide[..., j]) - mean_g[..., i] * mean_g[..., j]
    cov_gp = np.stack([mean(guide[..., i] * p) - mean_g[..., i] * mean(p) for i in range(2)], axis=-1)
    a = np.linalg.solve(cov_gg + np.eye(2), cov_gp[..., None])[..., 0]
    b = mean(p) - (a * mean_g).sum(axis=-1)
    up = lambda x: scipy.ndimage.zoom(mean(x), block, order=1, grid_mode=True, mode="nearest")
    return chroma_sigma * (up(a[..., 0]) * luma / edge_sigma + up(a[..., 1]) * chroma / chroma_sigma + up(b))


def scene_with_edges(shape=(96, 128), noise=0.02, seed=5) -> np.ndarray:
    """Coloured rectangles and a disc on a gradient, with white noise: edges of luma and of colour alone."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rgb = np.stack([0.3 + 0.3 * xx, 0.4 + 0.2 * yy, 0.5 - 0.2 * xx], axis=-1)
    rgb[h // 8 : h // 2, w // 8 : w // 2] = (0.75, 0.3, 0.25)
    rgb[h // 2 :, w // 2 :] = (0.25, 0.3, 0.7)
    rgb[(yy - 0.5) ** 2 + (xx - 0.8) ** 2 < 0.02] = (0.2, 0.6, 0.3)
    rgb += noise * np.random.default_rng(seed).standard_normal(rgb.shape)
    return np.clip(rgb, 0.05, 0.95).astype(np.float32)  # far from 0 and 1: the stage's clip never acts


def box_box_bilinear_noise_gain(radius_blocks: int, block: int = 4) -> float:
    """How much the chroma filter's wide-sigma limit scales white noise's std, from its 1-D kernels.

    A block mean, a (2r + 1)-block box twice and a bilinear interpolation between block centres,
    applied along each axis: a pixel's variance falls by the product of the two axes' sums of
    squared weights, averaged over the ``block`` phases of each axis.
    """
    box = np.ones(2 * radius_blocks + 1) / (2 * radius_blocks + 1)
    per_block = np.kron(np.convolve(box, box), np.ones(block) / block)  # weight of each pixel on one block's value
    kernel = np.zeros(per_block.size + block)
    gains = []
    for phase in range(block):
        offset = (phase + 0.5) / block - 0.5
        kernel[:] = 0.0
        kernel[block:] += (1 - abs(offset)) * per_block  # the nearer block centre ...
        kernel[: per_block.size] += abs(offset) * per_block  # ... and the block before or after it
        gains.append((kernel**2).sum())
    return float(np.mean(gains) ** 2) ** 0.5


def test_denoise_with_zero_sigmas_is_identity(rng):
    image = encoded(rng.uniform(0.0, 1.0, size=(16, 16, 3)))
    assert run("yuv_denoise", image, luma_sigma=0.0, chroma_sigma=0.0).data is image.data


@pytest.mark.parametrize("sigma, radius", [(0.02, 1), (0.05, 2), (0.005, 3)])
def test_luma_denoise_is_the_guided_filter(sigma, radius):
    image = encoded(scene_with_edges())
    out = ycbcr(run("yuv_denoise", image, luma_sigma=sigma, luma_radius_px=radius, chroma_sigma=0.0))
    before = ycbcr(image)
    expected = guided_filter_reference(before[..., 0], before[..., 0], radius, sigma**2)
    np.testing.assert_allclose(out[..., 0], expected, atol=5e-6)  # float32 against float64: measured 8e-7
    np.testing.assert_allclose(out[..., 1:], before[..., 1:], atol=1e-6)  # chroma is left alone


@pytest.mark.parametrize(
    "shape, chroma_sigma, edge_sigma, radius_px",
    [((96, 128), 0.02, 0.02, 8), ((96, 128), 0.005, 0.05, 12), ((93, 126), 0.05, 0.01, 4)],
)
def test_chroma_denoise_is_the_fast_guided_filter(shape, chroma_sigma, edge_sigma, radius_px):
    """Guided by the luma (here not denoised), on 4 x 4 block means; odd sizes by mirroring."""
    rgb = scene_with_edges(shape)
    h, w = shape
    padded = np.pad(rgb, ((0, -h % 4), (0, -w % 4), (0, 0)), mode="symmetric")
    out = ycbcr(run("yuv_denoise", encoded(rgb), luma_sigma=0.0, chroma_sigma=chroma_sigma, chroma_radius_px=radius_px, chroma_edge_sigma=edge_sigma))
    before = ycbcr(encoded(padded))
    for k in (1, 2):
        expected = fast_chroma_filter_reference(before[..., 0], before[..., k], chroma_sigma, edge_sigma, radius_px // 4)
        np.testing.assert_allclose(out[..., k], expected[:h, :w], atol=2e-5)  # float32 against float64: measured 6e-6
    np.testing.assert_allclose(out[..., 0], before[:h, :w, 0], atol=1e-6)  # luma is left alone


def test_denoise_with_wide_sigmas_is_a_box_blur():
    """Sigmas far above the noise leave box blurs, whose noise gains follow from their kernels."""
    image = encoded(noisy_flat((320, 320), 0.5, 0.01))
    out = ycbcr(run("yuv_denoise", image, luma_sigma=1.0, luma_radius_px=1, chroma_sigma=1.0, chroma_radius_px=8, chroma_edge_sigma=1.0))
    before = ycbcr(image)
    np.testing.assert_allclose(out[..., 0], box_mean(box_mean(before[..., 0], 1), 1), atol=1e-5)
    inner = (slice(40, -40), slice(40, -40))
    luma_ratio = out[inner][..., 0].std() / before[inner][..., 0].std()
    assert luma_ratio == pytest.approx(19 / 81, rel=0.05)  # a 3-box twice: (1² + 2² + 3² + 2² + 1²) / 9² per axis
    chroma_gain = box_box_bilinear_noise_gain(2)
    for k in (1, 2):
        ratio = out[inner][..., k].std() / before[inner][..., k].std()
        assert ratio == pytest.approx(chroma_gain, rel=0.15), (k, ratio)  # measured: 0.034, 0.035


def test_default_denoise_takes_more_chroma_noise_than_luma_noise():
    """Flat grey with white noise: luma falls as the guided filter's local linear model predicts.

    With the window variance taken at its mean, ``a = s / (s + ε)`` with ``s = (1 - 1/9) σ²``,
    and the output ``a·y + (1 - a)·(3-box twice of y)`` has the std ratio below; the chroma
    takes about its wide-sigma box blur's gain.
    """
    noise = 0.01
    image = encoded(noisy_flat((256, 256), 0.5, noise))
    inner = (slice(40, -40), slice(40, -40))
    before, after = ycbcr(image)[inner], ycbcr(run("yuv_denoise", image))[inner]
    luma_ratio = after[..., 0].std() / before[..., 0].std()
    chroma_ratio = np.hypot(after[..., 1], after[..., 2]).std() / np.hypot(before[..., 1], before[..., 2]).std()
    kr, kb = BT709
    sigma_y2 = noise**2 * (kr**2 + (1 - kr - kb) ** 2 + kb**2)  # luma of independent R', G', B' noise
    s = (1 - 1 / 9) * sigma_y2
    a = s / (s + YuvDenoiseParams().luma_sigma ** 2)
    predicted = np.sqrt(a**2 + 2 * a * (1 - a) / 9 + (1 - a) ** 2 * (19 / 81) ** 2)
    assert luma_ratio == pytest.approx(predicted, rel=0.1), (luma_ratio, predicted)  # measured 0.29 vs 0.28
    assert chroma_ratio < 0.1 and chroma_ratio < luma_ratio / 4, (luma_ratio, chroma_ratio)  # measured 0.04


def test_denoise_keeps_a_luma_step_sharp():
    rgb = np.full((48, 64, 3), 0.2, dtype=np.float32)
    rgb[:, 32:] = 0.7
    rgb += np.random.default_rng(3).normal(0.0, 0.005, size=(48, 64, 1)).astype(np.float32)  # grey noise: luma only
    image = encoded(rgb)
    profile = lambda y: y[:, 16:48].mean(axis=0)
    before = edge_width_10_90(profile(ycbcr(image)[..., 0]))
    after = edge_width_10_90(profile(ycbcr(run("yuv_denoise", image))[..., 0]))
    blurred = edge_width_10_90(profile(box_mean(box_mean(ycbcr(image)[..., 0], 1), 1)))
    assert abs(after - before) <= 1.0, (before, after)
    assert blurred - before > 1.0  # the same windows without the guided filter's edge model would fail


@pytest.mark.parametrize("edge_sigma, bleeds", [(0.02, False), (0.05, False), (1.0, True)])
def test_chroma_stops_at_luma_edges(edge_sigma, bleeds):
    """A chroma step on a luma step stays put; without the luma guide it would spread."""
    y = np.where(np.arange(64) < 32, 0.3, 0.7) * np.ones((32, 1))
    cb = np.where(np.arange(64) < 32, 0.03, -0.03) * np.ones((32, 1))
    image = encoded(ycbcr_to_rgb(y.astype(np.float32), cb.astype(np.float32), 0.0))
    out = run("yuv_denoise", image, luma_sigma=0.0, chroma_sigma=1.0, chroma_radius_px=8, chroma_edge_sigma=edge_sigma)
    profile = lambda im: -ycbcr(im)[:, 8:56, 1].mean(axis=0)  # Cb falls: negate it to rise
    widening = edge_width_10_90(profile(out)) - edge_width_10_90(profile(image))
    assert (widening > 1.0) == bleeds, widening


@pytest.mark.parametrize("chroma_sigma, bleeds", [(0.005, False), (1.0, True)])
def test_chroma_keeps_an_isoluminant_colour_edge_above_chroma_sigma(chroma_sigma, bleeds):
    """A colour edge without a luma edge is kept when it stands well above ``chroma_sigma``."""
    cb = np.where(np.arange(64) < 32, 0.03, -0.03) * np.ones((32, 1))
    image = encoded(ycbcr_to_rgb(np.full((32, 64), 0.5, dtype=np.float32), cb.astype(np.float32), 0.0))
    out = run("yuv_denoise", image, luma_sigma=0.0, chroma_sigma=chroma_sigma, chroma_radius_px=8)
    profile = lambda im: -ycbcr(im)[:, 8:56, 1].mean(axis=0)
    widening = edge_width_10_90(profile(out)) - edge_width_10_90(profile(image))
    assert (widening > 1.0) == bleeds, widening


def test_denoise_improves_a_noisy_photo(shared_data):
    """Kodak 23 with white noise of std 0.03 on R', G', B': PSNR against the clean image rises."""
    clean = iio.imread(shared_data / "kodak" / "kodim23.png")[128:384, 192:576].astype(np.float32) / 255.0
    noisy = np.clip(clean + 0.03 * np.random.default_rng(11).standard_normal(clean.shape), 0.0, 1.0).astype(np.float32)
    out = to_host(run("yuv_denoise", encoded(noisy), luma_sigma=0.05).data)
    psnr = lambda im: 10 * np.log10(1.0 / np.mean((im - clean) ** 2))
    assert psnr(out) - psnr(noisy) > 4.0, (psnr(noisy), psnr(out))  # measured: 30.6 dB to 35.1 dB


def test_denoise_does_not_depend_on_the_strips(monkeypatch):
    """The CPU runs in strips of rows, a GPU in one: the pixels must not tell them apart."""
    image = encoded(scene_with_edges((70, 90)))
    params = {"luma_radius_px": 2, "chroma_radius_px": 8}
    monkeypatch.setattr(isp.stages.yuv_denoise, "CPU_STRIP_ROWS", 8)
    strips = run("yuv_denoise", image, **params).data
    monkeypatch.setattr(isp.stages.yuv_denoise, "CPU_STRIP_ROWS", 1000)
    whole = run("yuv_denoise", image, **params).data
    np.testing.assert_array_equal(strips, whole)
    assert strips.shape == (70, 90, 3) and strips.dtype == np.float32


def test_denoise_strength_follows_an_iso_table():
    stage = Stage.from_config("yuv_denoise", [("tuning.params.yuv_denoise", {"luma_sigma": {"iso": [100, 3200], "value": [0.01, 0.04]}, "chroma_sigma": {"iso": [100, 3200], "value": [0.01, 0.06]}})])
    image = encoded(np.full((4, 4, 3), 0.5))
    params = stage.params_for(image.replace(info=CaptureInfo("test", iso=3200.0)))
    assert params.luma_sigma == pytest.approx(0.04) and params.chroma_sigma == pytest.approx(0.06)
    assert stage.params_for(image.replace(info=CaptureInfo("test", iso=100.0 * 32**0.5))).luma_sigma == pytest.approx(0.025)


@pytest.mark.parametrize(
    "values, field",
    [({"luma_sigma": -0.1}, "luma_sigma"), ({"chroma_edge_sigma": 0.0}, "chroma_edge_sigma"), ({"chroma_radius_px": 64}, "chroma_radius_px"), ({"luma_radius_px": 0}, "luma_radius_px")],
)
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


#: Strong settings (the stage's mechanism at full effect); the defaults are milder, chosen on Kodak.
FULL_SUPPRESSION = {"strength": 0.9, "edge_threshold": 0.04, "chroma_threshold": 0.01}


def test_false_color_removes_demosaic_colour_at_an_edge_and_keeps_a_flat_patch():
    image = encoded(demosaiced_edge_and_patch())
    out = run("false_color", image, **FULL_SUPPRESSION)
    edge = (slice(4, -4), slice(4, 60))  # away from the frame's border and the patch
    chroma = lambda im: np.hypot(ycbcr(im)[edge][..., 1], ycbcr(im)[edge][..., 2]).sum()
    assert chroma(image) > 5.0  # the bilinear demosaic did leave false colour
    assert chroma(out) <= 0.2 * chroma(image)  # measured: 0.11
    # the defaults remove at most 60 % and start from stronger edges: still at least half here
    assert chroma(run("false_color", image)) <= 0.5 * chroma(image)
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
    assert chroma(run("false_color", image, **FULL_SUPPRESSION)) <= 0.2 * chroma(image)  # measured: 0.10


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
@pytest.mark.parametrize("name, params", [("false_color", {}), ("false_color", {"edge_threshold": 0.01})])
def test_yuv_stages_numpy_cupy_parity(name, params, cupy_backend):
    rgb = np.clip(demosaiced_edge_and_patch() + noisy_flat((64, 96), 0.0, 0.02), 0.0, 1.0)
    expected = run(name, encoded(rgb), **params).data
    got = run(name, encoded(rgb).replace(data=cupy_backend.asarray(rgb)), StageContext(cupy_backend), **params)
    assert got.data.dtype == np.float32
    np.testing.assert_allclose(to_host(got.data), expected, rtol=1e-5, atol=2e-6)


@pytest.mark.gpu
@pytest.mark.parametrize(
    "shape, params",
    [((64, 96), {}), ((64, 96), {"luma_sigma": 0.05, "luma_radius_px": 2, "chroma_radius_px": 12}), ((61, 94), {"chroma_sigma": 0.005, "chroma_edge_sigma": 0.05})],
)
def test_yuv_denoise_numpy_cupy_parity(shape, params, cupy_backend):
    """One strip on the GPU against 32-row strips on the CPU.

    ``E[y²] - E[y]²`` in float32 amplifies rounding differences of the colour matrix product
    (cuBLAS against the CPU's BLAS): a 1-ulp change of the input moves outputs by up to 4e-6.
    """
    h, w = shape
    rgb = np.clip(demosaiced_edge_and_patch()[:h, :w] + noisy_flat(shape, 0.0, 0.02), 0.0, 1.0)
    expected = run("yuv_denoise", encoded(rgb), **params).data
    got = run("yuv_denoise", encoded(rgb).replace(data=cupy_backend.asarray(rgb)), StageContext(cupy_backend), **params)
    assert got.data.dtype == np.float32 and got.data.shape == (h, w, 3)
    np.testing.assert_allclose(to_host(got.data), expected, rtol=1e-5, atol=1e-5)


# --- the strip helpers and the strip-wise CPU paths ------------------------------------------

import isp.stages.false_color  # noqa: E402 - the module itself, to change its strip height
from isp.stages.yuv import extreme_3x3, gaussian_weights, rows_with_halo, symmetric_filter  # noqa: E402


@pytest.mark.parametrize("shape", [(1, 1), (3, 2), (7, 9), (40, 33)])
def test_rows_with_halo_is_a_slice_of_the_mirrored_image(shape, rng):
    planes = rng.uniform(size=(2, *shape)).astype(np.float32)
    halo = 3
    whole = np.pad(planes, ((0, 0), (halo, halo), (halo, halo)), mode="symmetric")
    for start, stop in [(0, shape[0]), (0, 1), (shape[0] // 2, shape[0]), (1, max(2, shape[0] - 1))]:
        stop = min(stop, shape[0])
        if start >= stop:
            continue
        np.testing.assert_array_equal(rows_with_halo(planes, start, stop, halo), whole[:, start : stop + 2 * halo])


def test_extreme_3x3_is_scipys_reflect_filter(rng):
    image = rng.uniform(size=(17, 23)).astype(np.float32)
    mirrored = np.pad(image, 1, mode="symmetric")
    np.testing.assert_array_equal(extreme_3x3(mirrored, np.maximum), scipy.ndimage.maximum_filter(image, size=3, mode="reflect"))
    np.testing.assert_array_equal(extreme_3x3(mirrored, np.minimum), scipy.ndimage.minimum_filter(image, size=3, mode="reflect"))


@pytest.mark.parametrize("sigma", [0.5, 1.2, 2.0, 3.7])
def test_symmetric_filter_is_scipys_gaussian(sigma, rng):
    image = rng.uniform(-0.5, 0.5, size=(2, 31, 45)).astype(np.float32)
    weights = gaussian_weights(sigma)
    reach = len(weights) - 1
    out = symmetric_filter(np.pad(image, ((0, 0), (reach, reach), (reach, reach)), mode="symmetric"), weights, np.empty_like(image))
    for plane, got in zip(image, out, strict=True):
        np.testing.assert_allclose(got, scipy.ndimage.gaussian_filter(plane.astype(np.float64), sigma, mode="reflect"), atol=2e-7)


def false_color_reference(rgb: np.ndarray, strength: float, edge_threshold: float, chroma_threshold: float) -> np.ndarray:
    """The suppression written with scipy's filters on whole float64 planes (mirrored borders)."""
    y, cb, cr = np.moveaxis(colour.RGB_to_YCbCr(rgb.astype(np.float64), K=BT709, in_legal=False, out_legal=False, out_int=False), -1, 0)
    ramp = lambda x, t: np.clip(x / t - 1.0, 0.0, 1.0)  # noqa: E731
    gradient = np.hypot(scipy.ndimage.sobel(y, axis=0, mode="reflect"), scipy.ndimage.sobel(y, axis=1, mode="reflect")) / 8.0
    edge = ramp(scipy.ndimage.maximum_filter(gradient, size=3, mode="reflect"), edge_threshold)
    high = [c - scipy.ndimage.gaussian_filter(c, 2.0, mode="reflect") for c in (cb, cr)]
    removed = edge * ramp(np.hypot(*high), chroma_threshold) * strength
    return np.clip(ycbcr_to_rgb(y, (1.0 - removed) * cb, (1.0 - removed) * cr), 0.0, 1.0)


@pytest.mark.parametrize("shape", [(64, 96), (9, 13), (2, 5)])
@pytest.mark.parametrize("params", [{}, FULL_SUPPRESSION])
def test_false_color_matches_a_whole_plane_reference(shape, params):
    h, w = shape
    first = min(30, 96 - w)  # across the demosaiced edge where the frame allows
    rgb = np.clip(demosaiced_edge_and_patch()[:h, first : first + w] + noisy_flat(shape, 0.0, 0.02), 0.0, 1.0)
    settings = {**{"strength": 0.6, "edge_threshold": 0.08, "chroma_threshold": 0.03}, **params}
    expected = false_color_reference(rgb, **settings)
    out = to_host(run("false_color", encoded(rgb), **params).data)
    assert out.shape == rgb.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=5e-6)  # ramps of slope 1/threshold amplify float32 rounding


def test_false_color_does_not_depend_on_the_strips(monkeypatch):
    rgb = np.clip(demosaiced_edge_and_patch() + noisy_flat((64, 96), 0.0, 0.02), 0.0, 1.0)
    results = []
    for rows in (1, 5, 1000):
        monkeypatch.setattr(isp.stages.false_color, "CPU_STRIP_ROWS", rows)
        results.append(run("false_color", encoded(rgb), **FULL_SUPPRESSION).data)
    np.testing.assert_array_equal(results[0], results[2])
    np.testing.assert_array_equal(results[1], results[2])
