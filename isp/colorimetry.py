"""Host-side colour science: matrices, white points, CCT, CIELAB and CIEDE2000.

A thin layer over colour-science (https://www.colour-science.org) so that the rest of the code
names what it needs in camera terms. Everything here works on small NumPy arrays on the host
(3×3 matrices, patch means); per-pixel colour work lives in the stages on the backend's device.

References
----------
- IEC 61966-2-1:1999 (sRGB primaries and D65 white).
- SMPTE EG 432-1:2010 (P3 primaries); Apple's Display P3 uses them with D65 and the sRGB curve.
- Adobe DNG Specification 1.6, chapter 6 "Mapping Camera Color Space to CIE XYZ Space".
- G. Sharma, W. Wu, E. N. Dalal, "The CIEDE2000 color-difference formula", 2005.
"""

from __future__ import annotations

import warnings
from functools import cache, lru_cache
from typing import Any

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # colour-science warns at import that matplotlib is absent
    import colour

__all__ = [
    "D50_XY",
    "D65_XY",
    "SRGB_TO_XYZ",
    "XYZ_TO_SRGB",
    "P3_TO_XYZ",
    "RGB_TO_XYZ",
    "xy_to_XYZ",
    "XYZ_to_xy",
    "bradford",
    "SCENE_ILLUMINANTS",
    "relight_matrix",
    "xy_to_cct",
    "xy_to_cct_duv",
    "cct_duv_to_xy",
    "EXIF_LIGHT_SOURCES",
    "light_source",
    "PHOTOMETRIC_WAVELENGTHS_NM",
    "y_bar",
    "spectral_power",
    "XYZ_to_Lab",
    "delta_e_2000",
    "colorchecker_reference",
]

_OBSERVER = "CIE 1931 2 Degree Standard Observer"
D65_XY = np.asarray(colour.CCS_ILLUMINANTS[_OBSERVER]["D65"], dtype=np.float64)
D50_XY = np.asarray(colour.CCS_ILLUMINANTS[_OBSERVER]["D50"], dtype=np.float64)

_SRGB = colour.RGB_COLOURSPACES["sRGB"]
#: Linear sRGB (D65) to CIE XYZ (Y = 1 for white), IEC 61966-2-1, derived from the primaries and
#: the D65 chromaticity rather than the standard's 4-decimal rounding, so that RGB white maps to
#: D65 exactly and white balance, adaptation and the CCM agree to machine precision.
SRGB_TO_XYZ = np.asarray(colour.normalised_primary_matrix(_SRGB.primaries, _SRGB.whitepoint), dtype=np.float64)
XYZ_TO_SRGB = np.linalg.inv(SRGB_TO_XYZ)

_P3 = colour.RGB_COLOURSPACES["Display P3"]
#: Linear Display P3 (DCI-P3 primaries, D65 white) to CIE XYZ, from the primaries as for sRGB.
P3_TO_XYZ = np.asarray(colour.normalised_primary_matrix(_P3.primaries, _P3.whitepoint), dtype=np.float64)
#: Linear RGB to XYZ for each :data:`isp.frame.SPACES` entry with fixed primaries.
RGB_TO_XYZ = {"srgb": SRGB_TO_XYZ, "display_p3": P3_TO_XYZ}


def xy_to_XYZ(xy: np.ndarray) -> np.ndarray:  # noqa: N802 - colour-science naming
    """CIE xy chromaticity to XYZ with Y = 1."""
    return np.asarray(colour.xy_to_XYZ(np.asarray(xy, dtype=np.float64)))


def XYZ_to_xy(XYZ: np.ndarray) -> np.ndarray:  # noqa: N802, N803
    """CIE XYZ to xy chromaticity."""
    return np.asarray(colour.XYZ_to_xy(np.asarray(XYZ, dtype=np.float64)))


def bradford(source_xy: np.ndarray, target_xy: np.ndarray) -> np.ndarray:
    """The 3×3 Bradford chromatic adaptation from one white (xy) to another, on XYZ."""
    return np.asarray(
        colour.adaptation.matrix_chromatic_adaptation_VonKries(
            xy_to_XYZ(source_xy), xy_to_XYZ(target_xy), transform="Bradford"
        )
    )


#: CIE illuminants a scene may be lit by.
SCENE_ILLUMINANTS = ("A", "D50", "D55", "D65", "D75")


def relight_matrix(illuminant: str) -> np.ndarray:
    """3×3 matrix taking linear sRGB of surfaces under D65 to the same surfaces under ``illuminant``.

    A von Kries (Bradford) relighting: white goes to the illuminant's white at Y = 1 (in sRGB
    primaries, so an illuminant other than D65 gives an unequal R, G, B). It stands in for the
    spectral product of reflectance and light, which the tristimulus scenes here do not carry.
    """
    if illuminant not in SCENE_ILLUMINANTS:
        raise KeyError(f"illuminant {illuminant!r} is not one of {', '.join(SCENE_ILLUMINANTS)}")
    target = np.asarray(colour.CCS_ILLUMINANTS[_OBSERVER][illuminant], dtype=np.float64)
    return XYZ_TO_SRGB @ bradford(D65_XY, target) @ SRGB_TO_XYZ


def xy_to_cct(xy: np.ndarray) -> float:
    """Correlated colour temperature (K) of a chromaticity, McCamy's 1992 approximation."""
    return float(colour.xy_to_CCT(np.asarray(xy, dtype=np.float64), method="McCamy 1992"))


def xy_to_cct_duv(xy: np.ndarray) -> np.ndarray:
    """``[CCT (K), Δuv]`` of a chromaticity: temperature and distance from the Planckian locus (Ohno 2013)."""
    return np.asarray(colour.uv_to_CCT(colour.xy_to_UCS_uv(np.asarray(xy, dtype=np.float64)), method="Ohno 2013"))


def cct_duv_to_xy(cct_duv: np.ndarray) -> np.ndarray:
    """The chromaticity of ``[CCT (K), Δuv]``, the inverse of :func:`xy_to_cct_duv`."""
    return np.asarray(colour.UCS_uv_to_xy(colour.CCT_to_uv(np.asarray(cct_duv, dtype=np.float64), method="Ohno 2013")))


#: EXIF / DNG LightSource codes: (name, CCT in kelvin used for matrix interpolation). The
#: temperatures for the broad classes (daylight, fluorescent types) are those of the DNG SDK.
EXIF_LIGHT_SOURCES: dict[int, tuple[str, float | None]] = {
    0: ("unknown", None),
    1: ("Daylight", 5500.0),
    2: ("Fluorescent", 4150.0),
    3: ("Tungsten", 2850.0),
    4: ("Flash", 5500.0),
    9: ("Fine weather", 5500.0),
    10: ("Cloudy weather", 6500.0),
    11: ("Shade", 7500.0),
    12: ("Daylight fluorescent", 6400.0),
    13: ("Day white fluorescent", 5050.0),
    14: ("Cool white fluorescent", 4150.0),
    15: ("White fluorescent", 3525.0),
    16: ("Warm white fluorescent", 2925.0),
    17: ("Standard light A", 2856.0),
    18: ("Standard light B", 4874.0),
    19: ("Standard light C", 6774.0),
    20: ("D55", 5503.0),
    21: ("D65", 6504.0),
    22: ("D75", 7504.0),
    23: ("D50", 5003.0),
    24: ("ISO studio tungsten", 3200.0),
    255: ("other", None),
}


def light_source(code: int) -> tuple[str, float | None]:
    """Name and CCT of an EXIF LightSource code (``("unknown", None)`` when not listed)."""
    return EXIF_LIGHT_SOURCES.get(int(code), (f"code {int(code)}", None))


_PHOTOMETRIC_SHAPE = colour.SpectralShape(360, 830, 1)
#: The CIE 1931 observer's tabulated range in 1 nm steps, on which photometric integrals are taken.
PHOTOMETRIC_WAVELENGTHS_NM = np.asarray(_PHOTOMETRIC_SHAPE.wavelengths, dtype=np.float64)


@cache
def y_bar() -> np.ndarray:
    """The CIE 1931 2° luminous efficiency ȳ(λ) on :data:`PHOTOMETRIC_WAVELENGTHS_NM`."""
    cmfs = colour.MSDS_CMFS[_OBSERVER].copy().align(_PHOTOMETRIC_SHAPE)
    return np.asarray(cmfs.signals["y_bar"].values, dtype=np.float64)


def spectral_power(illuminant: Any) -> np.ndarray:
    """Relative spectral power of a light on :data:`PHOTOMETRIC_WAVELENGTHS_NM`.

    ``illuminant`` is a name in ``colour.SDS_ILLUMINANTS`` (``KeyError`` if unknown) or a
    ``colour.SpectralDistribution``; it is aligned with colour-science's interpolation (Sprague
    for CIE's 5 nm tables) and constant extrapolation past its ends.
    """
    if isinstance(illuminant, str):
        if illuminant not in colour.SDS_ILLUMINANTS:
            raise KeyError(illuminant)
        return _named_spectral_power(illuminant)
    return np.asarray(illuminant.copy().align(_PHOTOMETRIC_SHAPE).values, dtype=np.float64)


@lru_cache(maxsize=32)
def _named_spectral_power(name: str) -> np.ndarray:
    return spectral_power(colour.SDS_ILLUMINANTS[name])


def XYZ_to_Lab(XYZ: np.ndarray, white_xy: np.ndarray = D65_XY) -> np.ndarray:  # noqa: N802, N803
    """CIE XYZ (Y = 1 for the reference white) to CIELAB relative to ``white_xy``."""
    return np.asarray(colour.XYZ_to_Lab(np.asarray(XYZ, dtype=np.float64), np.asarray(white_xy)))


def delta_e_2000(lab_a: np.ndarray, lab_b: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (Sharma et al. 2005) between CIELAB arrays ``(..., 3)``."""
    return np.asarray(colour.delta_E(np.asarray(lab_a), np.asarray(lab_b), method="CIE 2000"))


@cache
def colorchecker_reference(
    name: str = "ColorChecker24 - After November 2014",
) -> tuple[tuple[str, ...], np.ndarray]:
    """Patch names and CIE XYZ under D65 (Y = 1 for the perfect white diffuser) of a chart.

    The published values (X-Rite, colour-science's ``CCS_COLOURCHECKERS``) are xyY under the
    chart's own illuminant (D50); they are adapted to D65 with Bradford, as a camera white
    balanced to D65 light would see them.
    """
    try:
        chart = colour.CCS_COLOURCHECKERS[name]
    except KeyError:
        known = ", ".join(k for k in colour.CCS_COLOURCHECKERS if "24" in k)
        raise KeyError(f"ColorChecker reference {name!r} is not known; choose one of {known}") from None
    xyY = np.asarray(list(chart.data.values()), dtype=np.float64)  # noqa: N806
    XYZ = np.asarray(colour.xyY_to_XYZ(xyY))  # noqa: N806
    XYZ_d65 = XYZ @ bradford(chart.illuminant, D65_XY).T  # noqa: N806
    return tuple(chart.data.keys()), XYZ_d65
