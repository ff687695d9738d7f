"""The lens in front of the sensor: image-plane photometry, shading, blur and lateral colour.

Two halves share this module:

- **Photometry** (host NumPy, float64): the camera equation, which turns scene luminance into
  image-plane illuminance, and the photon irradiance per lux of a light's spectrum, which turns
  that illuminance into photons for the sensor's quantum efficiency.
- **Image formation** (on the backend, float32 ``(H, W, 3)`` linear RGB): lateral chromatic
  aberration (a radial magnification per channel), the point spread function integrated over
  the pixel aperture, then relative illumination (vignetting) and colour shading.
  :func:`apply_optics` runs them in that order; each is a no-op when its config switches it off.

Positions are measured from the optical axis, which sits at the centre of the full sensor
read-out; the rendered window is a centred crop of it (:class:`Geometry`), so the shading and
aberrations of a crop are those of the same pixels in the full frame. The normalised radius
``r`` is 1 at the read-out's physical corner (half its diagonal).

References
----------
- W. J. Smith, *Modern Optical Engineering*, 4th ed., McGraw-Hill, 2008, ch. 8 (image
  illuminance, the camera equation, the cos⁴ law).
- B. K. P. Horn, *Robot Vision*, MIT Press, 1986, sec. 10.3 (image irradiance, cos⁴ falloff).
- M. Born, E. Wolf, *Principles of Optics*, 7th ed., 1999, sec. 8.5.2 (the Airy pattern and
  Rayleigh's encircled energy ``1 - J0(x)² - J1(x)²``).
- CIE 015:2018 *Colorimetry*, 4th ed. (CIE 1931 2° observer, illuminant D65, K_m = 683 lm/W).
- S. B. Kang, "Automatic Removal of Chromatic Aberration from a Single Image", CVPR 2007
  (lateral colour as a per-channel radial magnification).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

import numpy as np
import scipy.constants
import scipy.special

from isp import colorimetry
from isp.backend import Backend
from isp.config import param
from isp.errors import ConfigError

__all__ = [
    "LUMINOUS_EFFICACY_LM_PER_W",
    "PSF_KINDS",
    "RELATIVE_ILLUMINATION_MODELS",
    "ColorShading",
    "Geometry",
    "LateralCA",
    "OpticsConfig",
    "PSFConfig",
    "RelativeIllumination",
    "apply_optics",
    "blur",
    "focal_plane_illuminance_lux",
    "lateral_ca",
    "photon_irradiance_per_lux",
    "psf_kernel",
    "psf_kernels",
    "radius_map",
    "relative_illumination_map",
    "shading_map",
]

#: Maximum luminous efficacy of photopic vision, K_m (CIE 015:2018).
LUMINOUS_EFFICACY_LM_PER_W = 683.0

RELATIVE_ILLUMINATION_MODELS = ("none", "cos4", "polynomial")
PSF_KINDS = ("none", "gaussian", "airy")


#: Kernels with at most this many taps are convolved directly, larger ones through the FFT.
#: On the CPU (SciPy, 1.5 MP plane) a direct 7×7 takes about as long as the FFT route, whose
#: cost hardly depends on the kernel's size; the direct route needs no padded copies.
_DIRECT_MAX_TAPS = 49


# --------------------------------------------------------------------------------------------
# Photometry
# --------------------------------------------------------------------------------------------


def focal_plane_illuminance_lux(
    luminance_cd_m2: Any,
    f_number: float,
    transmission: float = 1.0,
    magnification: float = 0.0,
) -> Any:
    """On-axis image-plane illuminance of a Lambertian scene (the camera equation).

    ``E = π L T / (4 N² (1 + m)²)``, exact for an aplanatic lens in air whose working f-number
    is ``N (1 + m)``. Off-axis falloff is :func:`relative_illumination_map`'s business.

    Parameters
    ----------
    luminance_cd_m2
        Scene luminance ``L`` in cd/m² (scalar or array, ≥ 0).
    f_number
        Lens f-number ``N`` (focal length over entrance-pupil diameter, > 0).
    transmission
        Lens transmittance ``T`` in [0, 1].
    magnification
        Image magnification ``m`` (≥ 0; 0 for a subject at infinity, 1 at 1:1 macro).

    Returns
    -------
    float or numpy.ndarray
        Illuminance in lux, float64, the shape of ``luminance_cd_m2``.

    Examples
    --------
    >>> round(float(focal_plane_illuminance_lux(1000.0, 2.0)), 3)
    196.35
    """
    if not f_number > 0:
        raise ConfigError(f"f_number={f_number!r} must be positive")
    if not 0.0 <= transmission <= 1.0:
        raise ConfigError(f"transmission={transmission!r} is out of range [0, 1]")
    if not magnification >= 0.0:
        raise ConfigError(f"magnification={magnification!r} must be 0 or more")
    luminance = np.asarray(luminance_cd_m2, dtype=np.float64)
    illuminance = math.pi * luminance * transmission / (4.0 * f_number**2 * (1.0 + magnification) ** 2)
    return illuminance if illuminance.ndim else float(illuminance)


def photon_irradiance_per_lux(
    wavelengths_nm: Any,
    illuminant: Any = "D65",
) -> np.ndarray:
    """Spectral photon irradiance of one lux of a light, at the given wavelengths.

    The light's relative spectral power ``S(λ)`` is scaled to radiometric units so that its
    illuminance ``K_m ∫ S(λ) ȳ(λ) dλ`` (CIE 1931 2° ȳ, 360–830 nm in 1 nm steps) is 1 lux,
    then converted from watts to photons with ``λ / (h c)``. Multiply by the image-plane
    illuminance and a quantum efficiency, integrate over λ, and you have photo-electrons per
    second per square metre of sensor.

    Parameters
    ----------
    wavelengths_nm
        Wavelengths in nm (scalar or array), within 360–830 nm.
    illuminant
        The light: a name in ``colour.SDS_ILLUMINANTS`` (default CIE D65) or a
        ``colour.SpectralDistribution`` of relative spectral power. It is aligned to the
        1 nm grid with colour-science's interpolation (Sprague for CIE's 5 nm tables) and
        constant extrapolation past its ends (D65 is tabulated to 780 nm there; ȳ beyond is
        below 2·10⁻⁵ of its peak).

    Returns
    -------
    numpy.ndarray
        Photons / (s · m² · nm) per lux, float64, the shape of ``wavelengths_nm``. For D65 its
        integral over 380–780 nm is about 1.39·10¹⁶ photons / (s · m²) per lux.

    Raises
    ------
    ConfigError
        A wavelength outside 360–830 nm, or an unknown illuminant name.
    """
    wavelengths = np.asarray(wavelengths_nm, dtype=np.float64)
    grid = colorimetry.PHOTOMETRIC_WAVELENGTHS_NM
    low, high = grid[0], grid[-1]
    if wavelengths.size and (wavelengths.min() < low or wavelengths.max() > high):
        raise ConfigError(f"wavelengths_nm: {wavelengths.min():g}–{wavelengths.max():g} nm is outside [{low:g}, {high:g}] nm")
    try:
        spd = colorimetry.spectral_power(illuminant)
    except KeyError as exc:
        raise ConfigError(f"illuminant={illuminant!r} is not a colour-science illuminant (e.g. D65, A, FL2)") from exc
    step_nm = grid[1] - grid[0]
    watts_per_unit = 1.0 / (LUMINOUS_EFFICACY_LM_PER_W * np.sum(spd * colorimetry.y_bar()) * step_nm)
    photons_per_joule = grid * 1e-9 / (scipy.constants.h * scipy.constants.c)
    return np.interp(wavelengths, grid, spd * watts_per_unit * photons_per_joule)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def _even_polynomial(coefficients: Sequence[float], r2: Any) -> Any:
    """``1 + c1 r² + c2 r⁴ + ...`` by Horner's rule in ``r²`` (works on NumPy and CuPy)."""
    value = r2 * 0.0  # an array of r2's shape and module even with no coefficients
    for c in reversed(coefficients):
        value = (value + c) * r2
    return 1.0 + value


def _check_positive_on_image(coefficients: Sequence[float], where: str) -> None:
    # A gain of zero or below anywhere on the sensor is a typo, not a lens.
    r2 = np.linspace(0.0, 1.0, 257) ** 2
    lowest = float(np.min(_even_polynomial(coefficients, r2)))
    if lowest <= 0.0:
        raise ConfigError(f"{where}={list(coefficients)} gives {lowest:.3g} inside the image (r ≤ 1); it must stay positive")


@dataclass(frozen=True, kw_only=True)
class RelativeIllumination:
    """Image-plane illuminance off-axis relative to on-axis (vignetting), the same for R, G, B."""

    model: str = param(
        "none",
        choices=RELATIVE_ILLUMINATION_MODELS,
        doc="none; cos4: the natural cos⁴θ falloff of a thin lens; polynomial: 1 + c1 r² + c2 r⁴ + ...",
    )
    coefficients: list[float] = param(  # noqa: RUF009 - param() is dataclasses.field
        [],
        range=(-100.0, 100.0),
        doc="c1, c2, ... of the polynomial model in r², r = 1 at the corner of the full read-out",
    )

    def __post_init__(self) -> None:
        if self.model == "polynomial":
            _check_positive_on_image(self.coefficients, "relative_illumination.coefficients")


@dataclass(frozen=True, kw_only=True)
class ColorShading:
    """Per-channel gain on top of the relative illumination (red usually falls off faster)."""

    coefficients: list[list[float]] | None = param(  # noqa: RUF009 - param() is dataclasses.field
        None,
        range=(-100.0, 100.0),
        doc="rows R, G, B of c1, c2, ... in 1 + c1 r² + c2 r⁴ + ..., r = 1 at the read-out corner; null: none",
    )

    def __post_init__(self) -> None:
        if self.coefficients is None:
            return
        if len(self.coefficients) != 3:
            raise ConfigError(f"color_shading.coefficients: expected 3 rows (R, G, B), got {len(self.coefficients)}")
        for name, row in zip("RGB", self.coefficients, strict=True):
            _check_positive_on_image(row, f"color_shading.coefficients[{name}]")


@dataclass(frozen=True, kw_only=True)
class PSFConfig:
    """The lens's point spread function, integrated over each pixel's aperture."""

    kind: str = param(
        "none",
        choices=PSF_KINDS,
        doc="none; gaussian: a Gaussian of sigma_um; airy: the diffraction limit of a circular pupil",
    )
    sigma_um: float | None = param(None, unit="µm", range=(0.001, 100.0), doc="standard deviation of the gaussian PSF on the sensor")
    wavelengths_nm: list[float] = param(  # noqa: RUF009 - param() is dataclasses.field
        [610.0, 540.0, 465.0],
        shape=(3,),
        unit="nm",
        range=(300.0, 1100.0),
        doc="wavelength the airy PSF is computed at for the R, G and B channels",
    )
    oversample: int = param(8, range=(1, 64), doc="sub-samples per pixel side to integrate the PSF over the pixel")

    def __post_init__(self) -> None:
        if self.kind == "gaussian" and self.sigma_um is None:
            raise ConfigError("psf.sigma_um: a value is required for kind=gaussian")


@dataclass(frozen=True, kw_only=True)
class LateralCA:
    """Lateral chromatic aberration: each channel's image magnified about the optical axis."""

    magnification: list[float] = param(  # noqa: RUF009 - param() is dataclasses.field
        [1.0, 1.0, 1.0],
        shape=(3,),
        range=(0.5, 2.0),
        doc="radial magnification of the R, G and B images relative to the ideal one (1: none)",
    )


@dataclass(frozen=True, kw_only=True)
class OpticsConfig:
    """The lens's effects on the image; the defaults switch every one of them off."""

    transmission: float = param(
        0.9,
        range=(0.0, 1.0),
        doc="lens transmittance T in the camera equation (photometry; no effect on the image's shape)",
    )
    relative_illumination: RelativeIllumination = param(RelativeIllumination(), doc="off-axis falloff (vignetting)")  # noqa: RUF009
    color_shading: ColorShading = param(ColorShading(), doc="per-channel falloff on top of it")  # noqa: RUF009
    psf: PSFConfig = param(PSFConfig(), doc="point spread function")  # noqa: RUF009
    lateral_ca: LateralCA = param(LateralCA(), doc="lateral chromatic aberration")  # noqa: RUF009


@dataclass(frozen=True)
class Geometry:
    """Where the rendered pixels sit relative to the lens.

    Parameters
    ----------
    pixel_pitch_um
        Pitch of the sampling grid in µm: the native pitch times the binning factor.
    focal_length_mm
        Focal length in mm.
    f_number
        Lens f-number.
    readout
        ``(H, W)`` of the full sensor read-out in grid pixels; the optical axis is at its centre.
    window
        ``(H, W)`` of the rendered window, centred on the read-out (top-left corner at
        ``((H_readout - H) // 2, (W_readout - W) // 2)``, as the scenes crop).

    Raises
    ------
    ConfigError
        A non-positive length or f-number, or a window that is not inside the read-out.
    """

    pixel_pitch_um: float
    focal_length_mm: float
    f_number: float
    readout: tuple[int, int]
    window: tuple[int, int]

    def __post_init__(self) -> None:
        for name in ("pixel_pitch_um", "focal_length_mm", "f_number"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, numbers.Real) and value > 0):
                raise ConfigError(f"geometry.{name}={value!r} must be a positive number")
        for name in ("readout", "window"):
            value = tuple(getattr(self, name))
            if len(value) != 2 or not all(isinstance(n, (int, np.integer)) and n > 0 for n in value):
                raise ConfigError(f"geometry.{name}={value!r}: expected (height, width) in pixels, both positive integers")
            object.__setattr__(self, name, (int(value[0]), int(value[1])))
        if self.window[0] > self.readout[0] or self.window[1] > self.readout[1]:
            raise ConfigError(f"geometry.window={self.window} does not fit in geometry.readout={self.readout}")

    @property
    def offset(self) -> tuple[int, int]:
        """Top-left corner of the window in read-out pixels."""
        return (self.readout[0] - self.window[0]) // 2, (self.readout[1] - self.window[1]) // 2

    @property
    def centre(self) -> tuple[float, float]:
        """The optical axis in window pixel coordinates (row, column of pixel centres)."""
        return (self.readout[0] - 1) / 2.0 - self.offset[0], (self.readout[1] - 1) / 2.0 - self.offset[1]

    @property
    def half_diagonal_px(self) -> float:
        """Distance from the optical axis to the read-out's physical corner, in pixels."""
        return 0.5 * math.hypot(self.readout[0], self.readout[1])


# --------------------------------------------------------------------------------------------
# Shading
# --------------------------------------------------------------------------------------------


def _radius_px(geometry: Geometry, xp: ModuleType) -> Any:
    cy, cx = geometry.centre
    y = xp.arange(geometry.window[0], dtype=xp.float64)[:, None] - cy
    x = xp.arange(geometry.window[1], dtype=xp.float64)[None, :] - cx
    return xp.sqrt(y * y + x * x)


def radius_map(geometry: Geometry, xp: ModuleType) -> Any:
    """Distance of every window pixel centre from the optical axis, normalised.

    Parameters
    ----------
    geometry
        The window and read-out.
    xp
        ``numpy`` or ``cupy``: where the map is made.

    Returns
    -------
    array
        ``(H, W)`` float32 of the window; 1 at the full read-out's physical corner, so the
        read-out's corner pixel centres lie just inside 1.
    """
    return (_radius_px(geometry, xp) / geometry.half_diagonal_px).astype(xp.float32)


def relative_illumination_map(geometry: Geometry, cfg: RelativeIllumination, xp: ModuleType) -> Any:
    """Illuminance of every window pixel relative to the optical axis.

    ``cos4``: ``cos⁴θ`` with ``tan θ = r_mm / f``, ``r_mm`` the pixel's distance from the axis
    on the sensor (a thin lens with its exit pupil one focal length away). ``polynomial``:
    ``1 + c1 r² + c2 r⁴ + ...`` in the normalised radius of :func:`radius_map`.

    Returns
    -------
    array
        ``(H, W)`` float32 on ``xp``, 1 on the axis; all ones for model ``none``.
    """
    if cfg.model == "none":
        return xp.ones(geometry.window, dtype=xp.float32)
    if cfg.model == "cos4":
        tan_theta = _radius_px(geometry, xp) * (geometry.pixel_pitch_um * 1e-3 / geometry.focal_length_mm)
        # cos⁴(atan t) = 1 / (1 + t²)², without the trigonometry.
        return (1.0 / (1.0 + tan_theta * tan_theta) ** 2).astype(xp.float32)
    if cfg.model == "polynomial":
        r2 = (_radius_px(geometry, xp) / geometry.half_diagonal_px) ** 2
        return _even_polynomial(cfg.coefficients, r2).astype(xp.float32)
    raise ConfigError(f"relative_illumination.model={cfg.model!r} is not allowed; choose one of {', '.join(RELATIVE_ILLUMINATION_MODELS)}")


def shading_map(geometry: Geometry, optics_cfg: OpticsConfig, xp: ModuleType) -> Any | None:
    """Gain of every window pixel and channel: relative illumination times colour shading.

    Returns
    -------
    array or None
        ``(H, W, 3)`` float32 on ``xp``; ``None`` when relative illumination and colour
        shading are both off, so that callers skip the multiplication.
    """
    ri_cfg, cs_cfg = optics_cfg.relative_illumination, optics_cfg.color_shading
    if ri_cfg.model == "none" and cs_cfg.coefficients is None:
        return None
    ri = relative_illumination_map(geometry, ri_cfg, xp)
    if cs_cfg.coefficients is None:
        return xp.repeat(ri[:, :, None], 3, axis=2)
    r2 = (_radius_px(geometry, xp) / geometry.half_diagonal_px) ** 2
    return xp.stack([ri * _even_polynomial(row, r2).astype(xp.float32) for row in cs_cfg.coefficients], axis=-1)


# --------------------------------------------------------------------------------------------
# Point spread function
# --------------------------------------------------------------------------------------------


def psf_kernel(
    kind: str,
    pixel_pitch_um: float,
    f_number: float,
    wavelength_nm: float | None = None,
    sigma_um: float | None = None,
    oversample: int = 8,
) -> np.ndarray:
    """The PSF integrated over a square pixel (fill factor 1), on the pixel grid.

    ``airy``: ``I(r) = (2 J1(x) / x)²`` with ``x = π r / (λ N)``, the in-focus diffraction
    pattern of an aberration-free circular pupil. It is cut at the first dark ring that
    encloses at least 99 % of the energy (about ``20 λ N``; the cut falls where the pattern is
    zero, so it leaves no step), integrated over each pixel with ``oversample²`` sub-samples,
    and renormalised to sum to 1.

    ``gaussian``: a 2-D Gaussian of standard deviation ``sigma_um``, integrated over each
    pixel exactly (it separates into differences of the error function, so ``oversample`` is
    not needed), cut at 4 σ from the centre (99.99 % of the energy kept), renormalised.

    ``none``: ``[[1.0]]``.

    Parameters
    ----------
    kind
        ``"none"``, ``"gaussian"`` or ``"airy"``.
    pixel_pitch_um
        Pitch of the sampling grid in µm (> 0).
    f_number
        Lens f-number ``N`` (> 0), for ``airy``.
    wavelength_nm
        Wavelength ``λ`` in nm, for ``airy``.
    sigma_um
        Standard deviation in µm on the sensor, for ``gaussian``.
    oversample
        Sub-samples per pixel side, for ``airy`` (≥ 1).

    Returns
    -------
    numpy.ndarray
        ``(2 n + 1, 2 n + 1)`` float64 on the host, centred, summing to 1.
    """
    if not pixel_pitch_um > 0:
        raise ConfigError(f"pixel_pitch_um={pixel_pitch_um!r} must be positive")
    if kind == "none":
        return np.ones((1, 1))
    if kind == "gaussian":
        if sigma_um is None or not sigma_um > 0:
            raise ConfigError(f"psf.sigma_um={sigma_um!r}: a positive value is required for kind=gaussian")
        return _gaussian_kernel(float(pixel_pitch_um), float(sigma_um)).copy()
    if kind == "airy":
        if not f_number > 0:
            raise ConfigError(f"f_number={f_number!r} must be positive")
        if wavelength_nm is None or not wavelength_nm > 0:
            raise ConfigError(f"psf.wavelengths_nm: a positive wavelength is required for kind=airy, got {wavelength_nm!r}")
        if int(oversample) < 1:
            raise ConfigError(f"psf.oversample={oversample!r} must be 1 or more")
        return _airy_kernel(float(pixel_pitch_um), float(f_number), float(wavelength_nm), int(oversample)).copy()
    raise ConfigError(f"psf.kind={kind!r} is not allowed; choose one of {', '.join(PSF_KINDS)}")


@lru_cache(maxsize=64)
def _gaussian_kernel(pitch_um: float, sigma_um: float) -> np.ndarray:
    n = max(0, math.ceil(4.0 * sigma_um / pitch_um - 0.5))
    edges = (np.arange(-n, n + 2) - 0.5) * (pitch_um / (math.sqrt(2.0) * sigma_um))
    profile = np.diff(scipy.special.erf(edges))
    kernel = np.outer(profile, profile)
    return kernel / kernel.sum()


@lru_cache(maxsize=64)
def _airy_kernel(pitch_um: float, f_number: float, wavelength_nm: float, oversample: int) -> np.ndarray:
    scale_um = wavelength_nm * 1e-3 * f_number / math.pi  # r = x · scale
    x_cut = _airy_cut(0.99)
    n = max(0, math.ceil(x_cut * scale_um / pitch_um - 0.5))
    # Sub-sample centres, symmetric about each pixel centre, in pixel units.
    sub = (np.arange(oversample) + 0.5) / oversample - 0.5
    pos = (np.arange(-n, n + 1)[:, None] + sub[None, :]).ravel() * (pitch_um / scale_um)
    x = np.hypot(pos[:, None], pos[None, :])
    safe = np.where(x > 0, x, 1.0)
    intensity = np.where(x > 0, (2.0 * scipy.special.j1(safe) / safe) ** 2, 1.0)
    intensity[x > x_cut] = 0.0
    side = 2 * n + 1
    kernel = intensity.reshape(side, oversample, side, oversample).sum(axis=(1, 3))
    return kernel / kernel.sum()


@lru_cache(maxsize=8)
def _airy_cut(energy: float) -> float:
    """First dark ring ``x`` (zero of J1) enclosing at least ``energy`` of the Airy pattern."""
    zeros = scipy.special.jn_zeros(1, 2000)
    enclosed = 1.0 - scipy.special.j0(zeros) ** 2  # Rayleigh: 1 - J0² - J1², and J1 = 0 here
    return float(zeros[np.argmax(enclosed >= energy)])


def psf_kernels(cfg: PSFConfig, geometry: Geometry) -> list[np.ndarray] | None:
    """The R, G, B kernels of :func:`psf_kernel` for a config, or ``None`` for kind ``none``."""
    if cfg.kind == "none":
        return None
    if cfg.kind == "gaussian":
        kernel = psf_kernel("gaussian", geometry.pixel_pitch_um, geometry.f_number, sigma_um=cfg.sigma_um)
        return [kernel, kernel, kernel]
    return [
        psf_kernel("airy", geometry.pixel_pitch_um, geometry.f_number, wavelength_nm=wl, oversample=cfg.oversample)
        for wl in cfg.wavelengths_nm
    ]


def blur(rgb: Any, kernels: Sequence[np.ndarray | None], backend: Backend) -> Any:
    """Convolve each channel with its kernel, the border mirrored (``d c b a | a b c d``).

    Kernels of up to 49 taps (7×7) are applied directly (``backend.ndimage.convolve``); larger ones
    by FFT in float32 over a mirrored pad of the kernel's radius, grown to a length with small
    prime factors. A flat field stays flat to float32 rounding on both routes, borders included.

    Parameters
    ----------
    rgb
        ``(H, W, 3)`` linear RGB.
    kernels
        Three odd-sized 2-D host kernels (R, G, B), each summing to 1; ``None`` leaves that
        channel as it is.
    backend
        Where to compute.

    Returns
    -------
    array
        ``(H, W, 3)`` float32 on the backend (``rgb`` itself when every kernel is ``None``).
    """
    rgb = _as_rgb(rgb, backend)
    if len(kernels) != 3:
        raise ConfigError(f"kernels: expected 3 (R, G, B), got {len(kernels)}")
    out = None
    for channel, kernel in enumerate(kernels):
        if kernel is None:
            continue
        kernel = np.asarray(kernel, dtype=np.float64)
        if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
            raise ConfigError(f"kernels[{channel}]: expected a 2-D kernel of odd size, got shape {kernel.shape}")
        if out is None:
            out = rgb.copy()
        out[:, :, channel] = _convolve(backend.xp.ascontiguousarray(rgb[:, :, channel]), kernel, backend)
    return rgb if out is None else out


def _convolve(plane: Any, kernel: np.ndarray, backend: Backend) -> Any:
    xp = backend.xp
    if kernel.size <= _DIRECT_MAX_TAPS:
        return backend.ndimage.convolve(plane, backend.asarray(kernel), mode="reflect", output=xp.float32)
    height, width = plane.shape
    ry, rx = kernel.shape[0] // 2, kernel.shape[1] // 2
    fy, fx = _fast_length(height + 2 * ry), _fast_length(width + 2 * rx)
    # numpy.pad's "symmetric" is ndimage's "reflect"; the extra rows up to the fast length are
    # more of the same mirror image and are cropped away with the pad.
    padded = xp.pad(plane, ((ry, fy - height - ry), (rx, fx - width - rx)), mode="symmetric")
    # The kernel's centre goes to index (0, 0): the circular convolution is then exact on the
    # window, whose inputs never wrap around.
    wrapped = np.zeros((fy, fx), dtype=np.float32)
    wrapped[: kernel.shape[0], : kernel.shape[1]] = kernel
    wrapped = np.roll(wrapped, (-ry, -rx), axis=(0, 1))
    spectrum = xp.fft.rfft2(padded) * xp.fft.rfft2(backend.asarray(wrapped))
    blurred = xp.fft.irfft2(spectrum, s=(fy, fx))
    return blurred[ry : ry + height, rx : rx + width].astype(xp.float32, copy=False)


def _fast_length(n: int) -> int:
    """The smallest 2·3·5-smooth integer ≥ ``n`` (a size every FFT library handles fast)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


# --------------------------------------------------------------------------------------------
# Lateral chromatic aberration and the whole lens
# --------------------------------------------------------------------------------------------


def lateral_ca(rgb: Any, magnification: Sequence[float], geometry: Geometry, backend: Backend) -> Any:
    """Magnify each channel's image about the optical axis.

    ``out_c(p) = in_c(o + (p - o) / m_c)`` for the axis ``o``, sampled bilinearly
    (``map_coordinates``, order 1) with the nearest edge pixel repeated outside the window.

    Parameters
    ----------
    rgb
        ``(H, W, 3)`` linear RGB of the window.
    magnification
        ``m_c`` for R, G, B (> 0); a channel with ``m_c == 1`` exactly is left untouched.
    geometry
        Where the window sits relative to the axis.
    backend
        Where to compute.

    Returns
    -------
    array
        ``(H, W, 3)`` float32 on the backend (``rgb`` itself when every ``m_c`` is 1).
    """
    rgb = _as_rgb(rgb, backend, geometry)
    if len(magnification) != 3 or not all(m > 0 for m in magnification):
        raise ConfigError(f"lateral_ca.magnification={list(magnification)!r}: expected 3 positive numbers (R, G, B)")
    xp = backend.xp
    cy, cx = geometry.centre
    rows = xp.arange(geometry.window[0], dtype=xp.float32)[:, None] - cy
    cols = xp.arange(geometry.window[1], dtype=xp.float32)[None, :] - cx
    out = None
    for channel, m in enumerate(magnification):
        if m == 1.0:
            continue
        if out is None:
            out = rgb.copy()
        coords = xp.stack(xp.broadcast_arrays(cy + rows / m, cx + cols / m))
        out[:, :, channel] = backend.ndimage.map_coordinates(
            xp.ascontiguousarray(rgb[:, :, channel]), coords, order=1, mode="nearest", output=xp.float32
        )
    return rgb if out is None else out


def apply_optics(rgb: Any, optics_cfg: OpticsConfig, geometry: Geometry, backend: Backend) -> Any:
    """The lens's effect on the image of the window: lateral colour, then blur, then shading.

    Lateral colour comes first because it displaces the sharp image; the PSF then blurs it
    where it lands, and the shading scales the light that reaches each pixel. The lens
    transmission is not applied here: it belongs to the photometry
    (:func:`focal_plane_illuminance_lux`), which sets the exposure.

    Parameters
    ----------
    rgb
        ``(H, W, 3)`` linear scene RGB of the window (``geometry.window``).
    optics_cfg
        What to apply; with the defaults nothing is.
    geometry
        Pixel pitch, lens and where the window sits on the read-out.
    backend
        Where to compute.

    Returns
    -------
    array
        ``(H, W, 3)`` float32 on the backend; ``rgb`` itself (as float32 on the backend) when
        every effect is off.

    Raises
    ------
    ConfigError
        ``rgb`` is not ``(H, W, 3)`` of the window's size.
    """
    rgb = _as_rgb(rgb, backend, geometry)
    if any(m != 1.0 for m in optics_cfg.lateral_ca.magnification):
        rgb = lateral_ca(rgb, optics_cfg.lateral_ca.magnification, geometry, backend)
    kernels = psf_kernels(optics_cfg.psf, geometry)
    if kernels is not None:
        rgb = blur(rgb, kernels, backend)
    shading = shading_map(geometry, optics_cfg, backend.xp)
    if shading is not None:
        rgb = rgb * shading
    return rgb


def _as_rgb(rgb: Any, backend: Backend, geometry: Geometry | None = None) -> Any:
    rgb = backend.asarray(rgb, dtype=backend.xp.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ConfigError(f"rgb: expected an (H, W, 3) image, got shape {tuple(rgb.shape)}")
    if geometry is not None and tuple(rgb.shape[:2]) != geometry.window:
        raise ConfigError(f"rgb: shape {tuple(rgb.shape)} does not match geometry.window={geometry.window}")
    return rgb
