"""Quantum efficiency: how many electrons each CFA colour collects from D65 light.

Each colour channel's QE is a curve over wavelength: either given in the config (a measured
or published spectral QE) or a Gaussian band with a peak value, a centre and a full width at
half maximum. Integrated against the photon spectrum of one lux of D65 light
(:func:`isp.optics.photon_irradiance_per_lux`) it gives the electrons per lux-second per square
metre of pixel, the sensitivity the sensor model scales its colour response by.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from isp.config import param
from isp.errors import ConfigError
from isp.optics import photon_irradiance_per_lux

__all__ = ["QECurve", "QEConfig", "WAVELENGTHS_NM", "qe_curves", "electrons_per_lux_second", "photons_per_lux_second"]

#: Visible band sampled for the integrals (nm).
WAVELENGTHS_NM = np.arange(380.0, 781.0, 1.0)


@dataclass(frozen=True, kw_only=True)
class QECurve:
    wavelength_nm: list[float] = param(doc="sample wavelengths, increasing", unit="nm", range=(200.0, 1200.0))
    r: list[float] = param(doc="QE of the red channel at each wavelength", range=(0.0, 1.0))
    g: list[float] = param(doc="QE of the green channel at each wavelength", range=(0.0, 1.0))
    b: list[float] = param(doc="QE of the blue channel at each wavelength", range=(0.0, 1.0))

    def __post_init__(self) -> None:
        n = len(self.wavelength_nm)
        if n < 2 or any(len(c) != n for c in (self.r, self.g, self.b)):
            raise ConfigError(f"sensor.qe.curve: r, g and b need one value per wavelength ({n} wavelengths)")
        if np.any(np.diff(self.wavelength_nm) <= 0):
            raise ConfigError("sensor.qe.curve.wavelength_nm must increase")


@dataclass(frozen=True, kw_only=True)
class QEConfig:
    peak: list[float] = param(shape=(3,), range=(0.0, 1.0), doc="peak QE of the R, G and B channels")
    centre_nm: list[float] = param([600.0, 535.0, 460.0], shape=(3,), range=(300.0, 1100.0), unit="nm", doc="band centres")
    fwhm_nm: list[float] = param([100.0, 100.0, 100.0], shape=(3,), range=(5.0, 500.0), unit="nm", doc="band widths (FWHM)")
    curve: QECurve | None = param(None, doc="spectral QE per channel; when given it replaces the Gaussian bands")


def qe_curves(qe: QEConfig, wavelengths_nm: np.ndarray = WAVELENGTHS_NM) -> np.ndarray:
    """QE of R, G and B at ``wavelengths_nm``, shape ``(3, n)`` (0 outside a given curve's range)."""
    if qe.curve is not None:
        c = qe.curve
        return np.stack([np.interp(wavelengths_nm, c.wavelength_nm, values, left=0.0, right=0.0) for values in (c.r, c.g, c.b)])
    peak, centre, fwhm = (np.asarray(v, dtype=np.float64)[:, None] for v in (qe.peak, qe.centre_nm, qe.fwhm_nm))
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    return peak * np.exp(-0.5 * ((wavelengths_nm[None, :] - centre) / sigma) ** 2)


@lru_cache(maxsize=1)
def _photons() -> np.ndarray:
    return photon_irradiance_per_lux(WAVELENGTHS_NM)


def photons_per_lux_second() -> float:
    """Photons (380-780 nm) per second per square metre in one lux of D65 light."""
    return float(np.trapezoid(_photons(), WAVELENGTHS_NM))


def electrons_per_lux_second(qe: QEConfig) -> np.ndarray:
    """Photo-electrons per second per square metre per lux of D65 light, for R, G and B ``(3,)``."""
    return np.trapezoid(qe_curves(qe) * _photons()[None, :], WAVELENGTHS_NM, axis=1)
