"""Lens model: photometry against analytic values, shading maps against hand-computed cos⁴ and
polynomials, PSF kernels against the published Airy encircled energies and the Gaussian's
moments, blur and lateral colour against conservation laws and point sources."""

from __future__ import annotations

import math

import colour
import numpy as np
import pytest
import scipy.ndimage
from scipy.constants import c as SPEED_OF_LIGHT
from scipy.constants import h as PLANCK
from scipy.constants import k as BOLTZMANN

from isp import optics
from isp.config import build
from isp.errors import ConfigError
from isp.optics import (
    Geometry,
    OpticsConfig,
    RelativeIllumination,
    apply_optics,
    blur,
    focal_plane_illuminance_lux,
    lateral_ca,
    photon_irradiance_per_lux,
    psf_kernel,
    radius_map,
    relative_illumination_map,
    shading_map,
)


def geometry(readout=(5, 7), window=None, pitch_um=1.0, focal_length_mm=0.005, f_number=2.0) -> Geometry:
    return Geometry(
        pixel_pitch_um=pitch_um,
        focal_length_mm=focal_length_mm,
        f_number=f_number,
        readout=readout,
        window=window or readout,
    )


# --- photometry ------------------------------------------------------------------------------


def test_camera_equation_worked_example():
    # 1000 cd/m² at f/2 through a perfect lens at infinity: π · 1000 / 16 lux.
    assert focal_plane_illuminance_lux(1000.0, 2.0) == pytest.approx(196.349540849, rel=1e-10)
    assert focal_plane_illuminance_lux(1000.0, 2.0, transmission=0.5) == pytest.approx(98.174770424, rel=1e-10)
    # 1:1 macro: the working f-number doubles, a quarter of the light.
    assert focal_plane_illuminance_lux(1000.0, 2.0, magnification=1.0) == pytest.approx(49.087385212, rel=1e-10)
    lum = np.array([[0.0, 10.0], [100.0, 1000.0]])
    assert focal_plane_illuminance_lux(lum, 2.0).shape == (2, 2)
    with pytest.raises(ConfigError, match="f_number"):
        focal_plane_illuminance_lux(100.0, 0.0)


@pytest.mark.parametrize(("line_nm", "y_bar"), [(555.0, 1.0), (650.0, 0.107), (450.0, 0.038)])
def test_photons_per_lux_of_a_spectral_line(line_nm, y_bar):
    # One lux of a line is 1 / (683 ȳ(λ)) W/m² (ȳ from the CIE 1931 table); each photon carries
    # h c / λ. At 555 nm that is the textbook 4.09e15 photons/(s·m²).
    expected = 1.0 / (683.0 * y_bar) * line_nm * 1e-9 / (PLANCK * SPEED_OF_LIGHT)
    if line_nm == 555.0:
        assert expected == pytest.approx(4.09e15, rel=1e-3)
    band = np.arange(line_nm - 5.0, line_nm + 6.0)
    line = colour.SpectralDistribution(np.where(band == line_nm, 1.0, 0.0), band)
    per_nm = photon_irradiance_per_lux(band, illuminant=line)
    assert per_nm.sum() * 1.0 == pytest.approx(expected, rel=1e-4)


def test_photons_per_lux_of_d65_is_that_of_a_6504k_blackbody():
    wavelengths = np.arange(380.0, 781.0)
    total = float(np.trapezoid(photon_irradiance_per_lux(wavelengths), wavelengths))
    print(f"D65: {total:.4g} photons/(s·m²) per lux over 380-780 nm")
    # The order every radiometry text gives for daylight: about 1e16 photons/(s·m²) per lux.
    assert 1.0e16 < total < 2.0e16
    # Independently: Planck's law at D65's CCT with Wyman, Sloan & Shirley's (JCGT 2013) fit of
    # ȳ; D65 departs from the blackbody by a few per cent.
    grid = np.arange(360.0, 831.0)
    lam = grid * 1e-9
    radiance = 1.0 / (lam**5 * (np.exp(PLANCK * SPEED_OF_LIGHT / (lam * BOLTZMANN * 6504.0)) - 1.0))

    def lobe(x, mu, s1, s2):
        return np.exp(-0.5 * ((x - mu) / np.where(x < mu, s1, s2)) ** 2)

    y_bar = 0.821 * lobe(grid, 568.8, 46.9, 40.5) + 0.286 * lobe(grid, 530.9, 16.3, 31.1)
    watts = radiance / (683.0 * np.sum(radiance * y_bar))
    photons = watts * lam / (PLANCK * SPEED_OF_LIGHT)
    visible = (grid >= 380) & (grid <= 780)
    assert total == pytest.approx(photons[visible].sum(), rel=0.08)


def test_photons_per_lux_domain():
    assert photon_irradiance_per_lux(np.array([])).shape == (0,)
    assert photon_irradiance_per_lux(550.0).shape == ()
    with pytest.raises(ConfigError, match="wavelengths_nm"):
        photon_irradiance_per_lux(np.array([350.0, 500.0]))
    with pytest.raises(ConfigError, match="illuminant"):
        photon_irradiance_per_lux(500.0, illuminant="no such light")


# --- configuration ---------------------------------------------------------------------------


def test_default_config_switches_everything_off():
    cfg = build(OpticsConfig, None, "optics")
    assert cfg.relative_illumination.model == "none"
    assert cfg.color_shading.coefficients is None
    assert cfg.psf.kind == "none"
    assert cfg.lateral_ca.magnification == [1.0, 1.0, 1.0]
    assert cfg.transmission == 0.9
    assert shading_map(geometry(), cfg, np) is None


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"relative_illumination": {"model": "cos3"}}, "relative_illumination.model"),
        ({"relative_illumination": {"model": "polynomial", "coefficients": [-1.5]}}, "relative_illumination.coefficients"),
        ({"color_shading": {"coefficients": [[0.1], [0.2]]}}, "color_shading.coefficients"),
        ({"psf": {"kind": "gaussian"}}, "psf.sigma_um"),
        ({"psf": {"wavelengths_nm": [600.0, 500.0]}}, "psf.wavelengths_nm"),
        ({"lateral_ca": {"magnification": [1.0, 1.0]}}, "lateral_ca.magnification"),
        ({"transmission": 1.5}, "transmission"),
    ],
)
def test_config_rejects(values, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        build(OpticsConfig, values, "optics")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"pixel_pitch_um": 0.0}, "pixel_pitch_um"),
        ({"pixel_pitch_um": -1.0}, "pixel_pitch_um"),
        ({"f_number": 0.0}, "f_number"),
        ({"window": (6, 7)}, "window"),
        ({"readout": (5,)}, "readout"),
    ],
)
def test_geometry_rejects(kwargs, field):
    values = {"pixel_pitch_um": 1.0, "focal_length_mm": 4.0, "f_number": 2.0, "readout": (5, 7), "window": (5, 7)} | kwargs
    with pytest.raises(ConfigError, match=field):
        Geometry(**values)


# --- shading ---------------------------------------------------------------------------------


def test_radius_is_one_at_the_readout_corner():
    r = radius_map(geometry(readout=(4, 6)), np)
    assert r.dtype == np.float32
    # The corner pixel's centre is half a pixel inside the physical corner at (2, 3).
    assert r[0, 0] == pytest.approx(math.hypot(1.5, 2.5) / math.hypot(2.0, 3.0), rel=1e-6)
    assert r.min() == pytest.approx(math.hypot(0.5, 0.5) / math.hypot(2.0, 3.0), rel=1e-6)


def test_cos4_by_hand():
    geo = geometry(readout=(5, 7), pitch_um=1.0, focal_length_mm=0.005)
    ri = relative_illumination_map(geo, RelativeIllumination(model="cos4"), np)
    assert ri.shape == (5, 7) and ri.dtype == np.float32
    assert ri[2, 3] == 1.0
    corner_mm = 1e-3 * math.hypot(2.0, 3.0)
    assert ri[0, 0] == pytest.approx(math.cos(math.atan(corner_mm / 0.005)) ** 4, rel=1e-6)
    edge_mm = 1e-3 * 3.0
    assert ri[2, 0] == pytest.approx(math.cos(math.atan(edge_mm / 0.005)) ** 4, rel=1e-6)


def test_polynomial_by_hand():
    geo = geometry(readout=(5, 7))
    ri = relative_illumination_map(geo, RelativeIllumination(model="polynomial", coefficients=[-0.3, 0.1]), np)
    r2 = (math.hypot(2.0, 3.0) / math.hypot(2.5, 3.5)) ** 2
    assert ri[0, 0] == pytest.approx(1.0 - 0.3 * r2 + 0.1 * r2**2, rel=1e-6)
    assert ri[2, 3] == 1.0
    flat = relative_illumination_map(geo, RelativeIllumination(model="polynomial"), np)
    assert np.array_equal(flat, np.ones((5, 7), np.float32))


@pytest.mark.parametrize("readout", [(5, 7), (6, 8), (6, 7)])
@pytest.mark.parametrize("model", ["cos4", "polynomial"])
def test_maps_are_symmetric(readout, model):
    ri = relative_illumination_map(geometry(readout=readout), RelativeIllumination(model=model, coefficients=[-0.4]), np)
    np.testing.assert_array_equal(ri, ri[::-1, :])
    np.testing.assert_array_equal(ri, ri[:, ::-1])


@pytest.mark.parametrize("window", [(20, 30), (21, 33), (40, 60)])
def test_window_is_the_centre_crop_of_the_full_map(window):
    cfg = build(
        OpticsConfig,
        {
            "relative_illumination": {"model": "cos4"},
            "color_shading": {"coefficients": [[-0.2, 0.05], [], [0.1]]},
        },
        "optics",
    )
    full = shading_map(geometry(readout=(40, 60), focal_length_mm=0.05), cfg, np)
    crop = shading_map(geometry(readout=(40, 60), window=window, focal_length_mm=0.05), cfg, np)
    top, left = (40 - window[0]) // 2, (60 - window[1]) // 2
    np.testing.assert_array_equal(crop, full[top : top + window[0], left : left + window[1]])


def test_color_shading_multiplies_relative_illumination():
    geo = geometry(readout=(9, 11), focal_length_mm=0.02)
    cfg = build(
        OpticsConfig,
        {"relative_illumination": {"model": "cos4"}, "color_shading": {"coefficients": [[-0.2], [], [0.1, 0.05]]}},
        "optics",
    )
    gains = shading_map(geo, cfg, np)
    assert gains.shape == (9, 11, 3) and gains.dtype == np.float32
    ri = relative_illumination_map(geo, cfg.relative_illumination, np)
    r2 = (math.hypot(4.0, 5.0) / math.hypot(4.5, 5.5)) ** 2
    assert gains[0, 0, 0] == pytest.approx(ri[0, 0] * (1 - 0.2 * r2), rel=1e-6)
    assert gains[0, 0, 1] == ri[0, 0]
    assert gains[0, 0, 2] == pytest.approx(ri[0, 0] * (1 + 0.1 * r2 + 0.05 * r2**2), rel=1e-6)


# --- PSF kernels -----------------------------------------------------------------------------


def _encircled(kernel: np.ndarray, pitch_um: float, radius_um: float) -> float:
    n = kernel.shape[0] // 2
    y, x = np.mgrid[-n : n + 1, -n : n + 1] * pitch_um
    return float(kernel[np.hypot(y, x) <= radius_um].sum())


def test_airy_encircled_energy_at_the_dark_rings():
    lam_n_um = 0.5 * 2.0
    pitch = lam_n_um / 6  # the first dark ring spans about 7 pixels
    kernel = psf_kernel("airy", pitch, 2.0, wavelength_nm=500.0, oversample=4)
    # Born & Wolf 8.5.2: 83.8 % inside the first dark ring (1.22 λN), 91.0 % inside the second
    # (2.23 λN). The kernel keeps at least 99 % of the energy and is renormalised, which raises
    # both by at most 1/0.99.
    for radius, published in ((1.2197, 0.8378), (2.2331, 0.9099)):
        energy = _encircled(kernel, pitch, radius * lam_n_um)
        assert published * 0.997 < energy < published / 0.99 * 1.003, (radius, energy)


def test_airy_kernel_shape():
    kernel = psf_kernel("airy", 1.0, 1.8, wavelength_nm=540.0)
    assert kernel.dtype == np.float64 and kernel.ndim == 2
    assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(kernel, kernel[::-1, :], rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(kernel, kernel[:, ::-1], rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(kernel, kernel.T, rtol=1e-12, atol=1e-18)
    n = kernel.shape[0] // 2
    assert kernel[n, n] == kernel.max()
    # Truncated at a dark ring about 21 λN out: at least 20 λN from the centre.
    assert n * 1.0 >= 20 * 0.54 * 1.8


def test_airy_widens_with_wavelength():
    def second_moment(kernel):
        n = kernel.shape[0] // 2
        y, x = np.mgrid[-n : n + 1, -n : n + 1]
        core = np.hypot(y, x) <= 3  # the core: the tails' moment diverges logarithmically
        return (kernel * (x * x + y * y))[core].sum() / kernel[core].sum()

    red, blue = (psf_kernel("airy", 0.8, 2.0, wavelength_nm=wl) for wl in (620.0, 460.0))
    assert second_moment(red) > second_moment(blue)


@pytest.mark.parametrize(("sigma_um", "pitch_um"), [(1.5, 1.0), (0.6, 1.0), (3.0, 0.7)])
def test_gaussian_second_moment(sigma_um, pitch_um):
    kernel = psf_kernel("gaussian", pitch_um, 2.0, sigma_um=sigma_um)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-12)
    n = kernel.shape[0] // 2
    x = np.arange(-n, n + 1) * pitch_um
    variance = float((kernel.sum(axis=0) * x**2).sum())
    # A Gaussian blurred by the pixel's box adds the box's variance p²/12.
    assert variance == pytest.approx(sigma_um**2 + pitch_um**2 / 12, rel=0.02)


def test_kernel_none_and_bad_arguments():
    assert np.array_equal(psf_kernel("none", 1.0, 2.0), np.ones((1, 1)))
    with pytest.raises(ConfigError, match="pixel_pitch_um"):
        psf_kernel("airy", 0.0, 2.0, wavelength_nm=500.0)
    with pytest.raises(ConfigError, match="sigma_um"):
        psf_kernel("gaussian", 1.0, 2.0)
    with pytest.raises(ConfigError, match="psf.kind"):
        psf_kernel("disk", 1.0, 2.0)


# --- blur ------------------------------------------------------------------------------------


def _kernels():
    small = psf_kernel("gaussian", 1.0, 2.0, sigma_um=0.7)  # 5×5: the direct route
    large = [psf_kernel("airy", 1.0, 2.0, wavelength_nm=wl) for wl in (610.0, 540.0, 465.0)]  # FFT
    assert small.size <= 49 < min(k.size for k in large)
    return {"direct": [small, small, small], "fft": large}


@pytest.mark.parametrize("route", ["direct", "fft"])
def test_blur_keeps_a_flat_field_flat(backend, route):
    flat = np.full((37, 45, 3), 0.37, np.float32)
    out = backend.to_host(blur(backend.asarray(flat), _kernels()[route], backend))
    assert out.dtype == np.float32 and out.shape == flat.shape
    np.testing.assert_allclose(out, flat, rtol=2e-6, atol=0)


@pytest.mark.parametrize("route", ["direct", "fft"])
def test_blur_conserves_energy_away_from_the_border(backend, route, rng):
    image = np.zeros((96, 104, 3), np.float32)
    image[40:56, 40:64] = rng.random((16, 24, 3), dtype=np.float32)
    out = backend.to_host(blur(backend.asarray(image), _kernels()[route], backend))
    np.testing.assert_allclose(out.sum(axis=(0, 1)), image.sum(axis=(0, 1)), rtol=1e-5)
    assert not np.allclose(out, image)


@pytest.mark.parametrize("route", ["direct", "fft"])
def test_blurred_point_is_the_kernel(backend, route):
    kernels = _kernels()[route]
    image = np.zeros((81, 85, 3), np.float32)
    image[35, 37] = 1.0
    out = backend.to_host(blur(backend.asarray(image), kernels, backend))
    for channel, kernel in enumerate(kernels):
        n = kernel.shape[0] // 2
        np.testing.assert_allclose(out[35 - n : 36 + n, 37 - n : 38 + n, channel], kernel, atol=2e-7)
        assert out[:, :, channel].sum() == pytest.approx(1.0, abs=1e-5)


def test_blur_fft_route_matches_scipy_with_mirrored_border(backend, rng):
    image = rng.random((40, 52, 3), dtype=np.float32)
    kernels = _kernels()["fft"]
    out = backend.to_host(blur(backend.asarray(image), kernels, backend))
    for channel, kernel in enumerate(kernels):
        expected = scipy.ndimage.convolve(image[:, :, channel].astype(np.float64), kernel, mode="reflect")
        np.testing.assert_allclose(out[:, :, channel], expected, atol=2e-6)


def test_blur_none_kernels_is_identity(numpy_backend, rng):
    image = rng.random((8, 9, 3), dtype=np.float32)
    assert blur(image, [None, None, None], numpy_backend) is image


# --- lateral chromatic aberration ------------------------------------------------------------


def test_lateral_ca_unit_magnification_is_identity(backend, rng):
    image = backend.asarray(rng.random((30, 40, 3), dtype=np.float32))
    out = lateral_ca(image, [1.0, 1.0, 1.0], geometry(readout=(50, 60), window=(30, 40)), backend)
    np.testing.assert_array_equal(backend.to_host(out), backend.to_host(image))


@pytest.mark.parametrize("readout", [(64, 64), (101, 121)])
def test_lateral_ca_moves_a_dot_radially(backend, readout):
    geo = geometry(readout=readout, window=(64, 64))
    cy, cx = (readout[0] - 1) / 2 - (readout[0] - 64) // 2, (readout[1] - 1) / 2 - (readout[1] - 64) // 2
    y, x = np.mgrid[0:64, 0:64]
    dot_y, dot_x = cy + 18.0, cx - 12.0
    image = np.zeros((64, 64, 3), np.float32)
    image[:, :, 2] = np.exp(-((y - dot_y) ** 2 + (x - dot_x) ** 2) / (2 * 1.2**2))
    image[:, :, 1] = image[:, :, 2]
    m = 1.04
    out = backend.to_host(lateral_ca(backend.asarray(image), [1.0, 1.0, m], geo, backend))
    blue = out[:, :, 2]
    centroid = ((blue * y).sum() / blue.sum(), (blue * x).sum() / blue.sum())
    assert centroid[0] == pytest.approx(cy + m * 18.0, abs=0.1)
    assert centroid[1] == pytest.approx(cx - m * 12.0, abs=0.1)
    np.testing.assert_array_equal(out[:, :, :2], image[:, :, :2])


# --- the whole lens --------------------------------------------------------------------------


def test_apply_optics_all_off_is_identity(backend, rng):
    image = rng.random((24, 32, 3), dtype=np.float32)
    out = apply_optics(backend.asarray(image), build(OpticsConfig, None, "optics"), geometry(readout=(24, 32)), backend)
    np.testing.assert_array_equal(backend.to_host(out), image)


def test_apply_optics_flat_field_is_the_shading(backend):
    cfg = build(
        OpticsConfig,
        {
            "relative_illumination": {"model": "cos4"},
            "color_shading": {"coefficients": [[-0.3], [], [0.1]]},
            "psf": {"kind": "airy"},
            "lateral_ca": {"magnification": [1.002, 1.0, 0.998]},
        },
        "optics",
    )
    geo = geometry(readout=(60, 80), window=(40, 48), pitch_um=1.0, focal_length_mm=0.1, f_number=1.8)
    flat = np.full((40, 48, 3), 0.5, np.float32)
    out = backend.to_host(apply_optics(backend.asarray(flat), cfg, geo, backend))
    assert out.dtype == np.float32 and out.shape == flat.shape
    np.testing.assert_allclose(out, 0.5 * shading_map(geo, cfg, np), rtol=1e-5)
    assert out[0, 0, 0] < out[0, 0, 1] < out[0, 0, 2]


def test_apply_optics_rejects_wrong_shapes(numpy_backend):
    cfg = build(OpticsConfig, None, "optics")
    with pytest.raises(ConfigError, match="rgb"):
        apply_optics(np.zeros((5, 7)), cfg, geometry(), numpy_backend)
    with pytest.raises(ConfigError, match="geometry.window"):
        apply_optics(np.zeros((5, 8, 3)), cfg, geometry(), numpy_backend)


def test_public_names_exist():
    for name in optics.__all__:
        assert hasattr(optics, name), name
