"""Demosaicing: published Kodak quality, a peer library, every CFA phase, and the CUDA kernel."""

from __future__ import annotations

import numpy as np
import pytest

from isp.backend import to_host
from isp.cfa import BAYER_PHASES, CFALayout
from isp.errors import ConfigError
from isp.stages.demosaic import BILINEAR, MALVAR2004, _demosaic_cuda, _demosaic_xp, demosaic, kernel_launch

from .kernel_emulation import emulate_kernel

BORDER = 10

#: Published mean CPSNR on Kodak 24 (see ../shared/data/README.md) and the issue's floors.
KODAK_FLOOR_DB = {"bilinear": 30.2, "malvar2004": 35.7}


def cpsnr(estimate: np.ndarray, truth: np.ndarray, border: int = BORDER) -> float:
    """Colour PSNR over the three channels, ``border`` pixels excluded, peak 1.0."""
    crop = (slice(border, -border), slice(border, -border))
    mse = np.mean((estimate[crop].astype(np.float64) - truth[crop]) ** 2)
    return float(10.0 * np.log10(1.0 / mse))


@pytest.fixture(scope="module")
def kodak(shared_data):
    import imageio.v3 as iio

    folder = shared_data / "kodak"
    files = sorted(folder.glob("kodim*.png"))
    if len(files) != 24:
        pytest.skip(f"Kodak set incomplete in {folder} ({len(files)} of 24 images)")
    return [(f.stem, iio.imread(f).astype(np.float64) / 255.0) for f in files]


@pytest.mark.data
@pytest.mark.parametrize("method", sorted(KODAK_FLOOR_DB))
def test_kodak_cpsnr_reaches_the_published_figure(kodak, method):
    """RGGB mosaic of each image in [0, 1]; the output clipped to [0, 1] as an image is."""
    cfa = CFALayout.from_name("RGGB")
    scores = []
    for _, truth in kodak:
        mosaic = cfa.sample(truth).astype(np.float32)
        scores.append(cpsnr(np.clip(demosaic(mosaic, cfa, method), 0.0, 1.0), truth))
    mean = float(np.mean(scores))
    print(f"Kodak 24 mean CPSNR {method}: {mean:.3f} dB")
    assert mean >= KODAK_FLOOR_DB[method]


@pytest.mark.data
def test_kodak_matches_colour_demosaicing(kodak):
    """Interior pixels equal colour-demosaicing's implementations (it pads differently at borders)."""
    colour_demosaicing = pytest.importorskip("colour_demosaicing")
    cfa = CFALayout.from_name("RGGB")
    peers = {
        "bilinear": colour_demosaicing.demosaicing_CFA_Bayer_bilinear,
        "malvar2004": colour_demosaicing.demosaicing_CFA_Bayer_Malvar2004,
    }
    crop = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    for name, truth in kodak[:6]:
        mosaic = cfa.sample(truth)
        for method, peer in peers.items():
            ours = demosaic(mosaic.astype(np.float32), cfa, method)
            np.testing.assert_allclose(ours[crop], peer(mosaic, "RGGB")[crop], atol=2e-6, err_msg=f"{name} {method}")


@pytest.mark.parametrize("phase", BAYER_PHASES)
@pytest.mark.parametrize("method", ["bilinear", "malvar2004"])
def test_every_phase_matches_colour_demosaicing(phase, method, rng):
    colour_demosaicing = pytest.importorskip("colour_demosaicing")
    peer = {"bilinear": colour_demosaicing.demosaicing_CFA_Bayer_bilinear, "malvar2004": colour_demosaicing.demosaicing_CFA_Bayer_Malvar2004}[method]
    mosaic = rng.uniform(0, 1, size=(40, 52))
    ours = demosaic(mosaic.astype(np.float32), CFALayout.from_name(phase), method)
    np.testing.assert_allclose(ours[4:-4, 4:-4], peer(mosaic, phase)[4:-4, 4:-4], atol=2e-6)


@pytest.mark.parametrize("method", ["bilinear", "malvar2004"])
def test_flat_and_linear_fields_are_reproduced(method):
    """Both filters have unit DC gain; bilinear and MHC reproduce a linear ramp in the interior."""
    cfa = CFALayout.from_name("GBRG")
    flat = np.full((16, 20), 0.37, dtype=np.float32)
    np.testing.assert_allclose(demosaic(flat, cfa, method), 0.37, rtol=1e-6)
    yy, xx = np.mgrid[0:24, 0:30].astype(np.float32)
    ramp = 0.01 * yy + 0.02 * xx
    out = demosaic(ramp, cfa, method)
    np.testing.assert_allclose(out[3:-3, 3:-3], np.repeat(ramp[3:-3, 3:-3, None], 3, axis=2), atol=1e-5)


def test_sampled_channel_is_kept(rng):
    cfa = CFALayout.from_name("RGGB")
    truth = rng.uniform(0, 1, size=(12, 14, 3)).astype(np.float32)
    mosaic = cfa.sample(truth)
    out = demosaic(mosaic, cfa, "malvar2004")
    masks = cfa.masks(mosaic.shape)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c][masks[c]], truth[..., c][masks[c]])


@pytest.mark.parametrize("phase", BAYER_PHASES)
def test_border_is_the_mirrored_mosaic(phase, rng):
    """At the border the result equals the interior result of the mosaic mirrored without
    repeating the edge (d c b | a b c d), which keeps the CFA phase (colour-demosaicing as the
    reference on the explicitly padded mosaic)."""
    colour_demosaicing = pytest.importorskip("colour_demosaicing")
    mosaic = rng.uniform(0, 1, size=(14, 18))
    padded = np.pad(mosaic, 4, mode="reflect")  # 4 keeps the phase of the padded mosaic
    reference = colour_demosaicing.demosaicing_CFA_Bayer_Malvar2004(padded, phase)[4:-4, 4:-4]
    np.testing.assert_allclose(demosaic(mosaic.astype(np.float32), CFALayout.from_name(phase), "malvar2004"), reference, atol=2e-6)


def test_unknown_method_is_a_config_error():
    with pytest.raises(ConfigError, match="demosaic method 'ahd' is not known; choose one of bilinear, malvar2004"):
        demosaic(np.zeros((4, 4), np.float32), CFALayout.from_name("RGGB"), "ahd")


@pytest.mark.parametrize("filters", [BILINEAR, MALVAR2004], ids=["bilinear", "malvar2004"])
@pytest.mark.parametrize("phase", BAYER_PHASES)
def test_cuda_kernel_logic_on_the_cpu(filters, phase, rng):
    """kernels/demosaic.cu compiled as C++ and run thread by thread, launched exactly as the
    CuPy path launches it, equals the NumPy reference (a partial block in both directions)."""
    cfa = CFALayout.from_name(phase)
    h, w = 18, 38
    mosaic = rng.uniform(0, 1, size=(h, w)).astype(np.float32)
    out = np.zeros((h, w, 3), np.float32)
    grid, block, scalars = kernel_launch((h, w), cfa)
    emulate_kernel("demosaic", "bayer_demosaic_5x5", grid, block, [mosaic, out, *scalars, filters.stacked()])
    np.testing.assert_allclose(out, _demosaic_xp(mosaic, cfa, filters), rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("filters", [BILINEAR, MALVAR2004], ids=["bilinear", "malvar2004"])
@pytest.mark.parametrize("phase", BAYER_PHASES)
def test_cuda_kernel_matches_numpy(filters, phase, rng, cupy_backend):
    cfa = CFALayout.from_name(phase)
    mosaic = rng.uniform(0, 1, size=(98, 130)).astype(np.float32)  # partial blocks in x and y
    expected = _demosaic_xp(mosaic, cfa, filters)
    got = to_host(_demosaic_cuda(cupy_backend.asarray(mosaic), cfa, filters))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    xp_on_gpu = to_host(_demosaic_xp(cupy_backend.asarray(mosaic), cfa, filters))
    np.testing.assert_allclose(xp_on_gpu, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["bilinear", "malvar2004"])
def test_numpy_path_does_not_depend_on_the_strips(method, rng, monkeypatch):
    import isp.stages.demosaic as module

    mosaic = rng.uniform(0, 1, size=(70, 36)).astype(np.float32)
    cfa = CFALayout.from_name("GBRG")
    results = []
    for rows in (2, 6, 1000):
        monkeypatch.setattr(module, "CPU_STRIP_ROWS", rows)
        results.append(demosaic(mosaic, cfa, method))
    np.testing.assert_array_equal(results[0], results[2])
    np.testing.assert_array_equal(results[1], results[2])
