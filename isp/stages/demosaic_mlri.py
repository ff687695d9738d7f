"""Minimized-Laplacian residual interpolation (MLRI) demosaicing, Kiku, Monno, Tanaka and Okutomi.

Residual interpolation interpolates the residual of a first, guided estimate rather than a
colour difference. Each missing value starts as a *tentative* estimate from a guided filter: in
every window the samples of the colour wanted are fitted as a linear function ``a·guide + b`` of
a guide image, and the coefficients, averaged over the windows covering the pixel, are applied to
the guide there. The residual ``sample - tentative`` is known at the samples; interpolated
linearly and added back, it corrects the estimate. MLRI fits the slope ``a`` to the Laplacians of
guide and samples instead of to their values, which keeps the residual smooth and so easy to
interpolate.

1. Green, once along rows and once along columns: the colour of each line (red or blue) is
   estimated at its green sites with the green line as guide, and green at the colour's sites
   with the colour line as guide (each line completed by the mean of its two neighbours), both by
   residual interpolation in 7×7 windows with a 1-D Laplacian ``[-1, 0, 2, 0, -1]``. This gives a
   colour difference ``G - R`` or ``G - B`` at every pixel per direction.
2. The colour differences of the four half-lines from the pixel (north, south, west, east) are
   smoothed by one-sided Gaussian weights over five pixels and blended with weights
   ``1 / (E² + 1e-32)``, ``E`` the 3×3 sum of the difference's gradient beside the pixel on that
   side (as in gradient-based threshold-free demosaicing); green is the sample plus the blend.
3. Red and blue: a guided filter from the full green plane in 11×11 windows with the 2-D
   Laplacian, then the residual interpolated bilinearly.

Domain: a Bayer mosaic ``(H, W)``, linear, white level 1.0, ideally white balanced. Returns
``(H, W, 3)`` float32 RGB on the mosaic's device, not clipped. The sampled value is kept at each
pixel. Filters mirror the frame at its edges without repeating the edge pixel, which keeps the
CFA phase. The floor of the guide's mean squared Laplacian, ``1e-5``, is relative to a white level
of 1.0 and sets how much slope a flat window may fit.

The Gaussian of step 2 has the authors' default standard deviation, 1.4 pixels. The authors
note that a wider one suits the Kodak images: with a flat one (sigma to infinity) the Kodak 24
mean CPSNR here rises from 39.62 to 40.34 dB; the default is kept rather than a value tuned to
one test set. The intermediate estimates are not clipped to the data range as the reference
code clips them to [0, 255]: on Kodak that costs 0.03 dB (a float64 transcription of the
reference gives 39.65 dB), and it keeps the method free of an assumed white level.

Array-module code: NumPy with ``scipy.ndimage`` or CuPy with ``cupyx.scipy.ndimage``, every
filter a 1-D correlation or a box mean. Working memory peaks at about fifteen float32 frames,
the output included.

References
----------
D. Kiku, Y. Monno, M. Tanaka, M. Okutomi, "Minimized-Laplacian residual interpolation for color
image demosaicking", Proc. SPIE 9023, Digital Photography X, 2014, doi:10.1117/12.2038425.

D. Kiku, Y. Monno, M. Tanaka, M. Okutomi, "Beyond color difference: residual interpolation for
color image demosaicking", IEEE Transactions on Image Processing 25(3), 1288-1300, 2016.

Q. Jin, Y. Guo, G. Facciolo, J.-M. Morel, "A mathematical analysis and implementation of residual
interpolation demosaicking algorithms", Image Processing On Line 11, 234-283, 2021
(the formulation of the guided filter and its constants followed here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from isp.backend import array_module, get_backend
from isp.cfa import R, CFALayout
from isp.errors import StageError

__all__ = ["demosaic_mlri"]

#: Radii of the guided filter's windows: 7×7 for green, 11×11 for red and blue.
_GREEN_RADIUS = 3
_CHROMA_RADIUS = 5
#: Floor of the guide's mean squared Laplacian in a window (white level 1.0).
_MIN_LAPLACIAN_ENERGY = 1e-5
#: Standard deviation in pixels of the one-sided Gaussian smoothing of colour differences.
_SIGMA_PX = 1.4
#: Keeps the directional weights finite where a colour difference is perfectly flat.
_WEIGHT_FLOOR = 1e-32

_NEIGHBOUR_MEAN = (0.5, 0.0, 0.5)
_LAPLACIAN = (-1.0, 0.0, 2.0, 0.0, -1.0)
_CENTRAL_DIFFERENCE = (1.0, 0.0, -1.0)
_TENT = (0.5, 1.0, 0.5)


def _one_sided_gaussian(sigma_px: float) -> tuple[float, ...]:
    """Nine taps: a normalised Gaussian over offsets 0 to +4, zeros over -4 to -1."""
    half = np.exp(-(np.arange(5.0) ** 2) / (2.0 * sigma_px**2))
    return (0.0,) * 4 + tuple(half / half.sum())


_AHEAD = _one_sided_gaussian(_SIGMA_PX)
_BEHIND = _AHEAD[::-1]


@dataclass(frozen=True)
class _Site:
    """One site of the 2×2 CFA tile: ``rows`` ``(H, 1)`` and ``cols`` ``(1, W)`` say which rows and columns hold it.

    Kept as two vectors, so that weighting by the site and counting its pixels in a window
    (a separable box of a separable mask) cost no frame-sized mask.
    """

    rows: Any
    cols: Any

    @property
    def mask(self) -> Any:
        return self.rows & self.cols

    def weighted(self, a: Any) -> Any:
        """``a`` where the site is, zero elsewhere (a new array)."""
        out = a * self.rows
        out *= self.cols
        return out

    def divide_by_share(self, a: Any, radius: int, filters: _Filters) -> Any:
        """``a`` divided in place by the share of the window's pixels that are of this site."""
        size = 2 * radius + 1
        a /= filters.ndimage.uniform_filter1d(self.rows.astype(filters.xp.float32), size, axis=0, mode="mirror")
        a /= filters.ndimage.uniform_filter1d(self.cols.astype(filters.xp.float32), size, axis=1, mode="mirror")
        return a


@dataclass(frozen=True)
class _Sites:
    """Red, blue and green sites; ``beside_red[axis]``: the green site whose neighbours along ``axis`` are red."""

    red: _Site
    blue: _Site
    green: Any
    beside_red: dict[int, _Site]
    beside_blue: dict[int, _Site]

    @classmethod
    def of(cls, cfa: CFALayout, shape: tuple[int, int], xp: Any) -> _Sites:
        if not cfa.is_bayer:
            raise StageError(f"demosaic: CFA {cfa.name!r} is not a Bayer layout")
        ((red_row, red_col),) = cfa.colour_sites(R)
        red_rows = (xp.arange(shape[0]) % 2 == red_row)[:, None]
        red_cols = (xp.arange(shape[1]) % 2 == red_col)[None, :]
        green_in_red_row = _Site(red_rows, ~red_cols)
        green_in_blue_row = _Site(~red_rows, red_cols)
        return cls(
            red=_Site(red_rows, red_cols),
            blue=_Site(~red_rows, ~red_cols),
            green=red_rows != red_cols,
            beside_red={1: green_in_red_row, 0: green_in_blue_row},
            beside_blue={1: green_in_blue_row, 0: green_in_red_row},
        )


class _Filters:
    """The filters MLRI needs, on the mosaic's device, borders mirrored."""

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        self.ndimage = get_backend("numpy" if xp is np else "cupy").ndimage

    def along(self, a: Any, taps: tuple[float, ...], axis: int) -> Any:
        """Correlation with odd-length ``taps`` centred on the pixel, along ``axis``."""
        weights = self.xp.asarray(np.asarray(taps, dtype=np.float32))
        return self.ndimage.correlate1d(a, weights, axis=axis, mode="mirror")

    def box_mean(self, a: Any, radius: int) -> Any:
        """Mean over the ``(2·radius + 1)²`` window centred on each pixel."""
        return self.ndimage.uniform_filter(a, size=2 * radius + 1, mode="mirror")


def demosaic_mlri(mosaic: Any, cfa: CFALayout) -> Any:
    """Demosaic a Bayer mosaic by minimized-Laplacian residual interpolation (Kiku et al. 2014).

    Parameters
    ----------
    mosaic
        ``(H, W)`` float array (NumPy or CuPy), linear, white level 1.0, ideally white balanced.
    cfa
        Its Bayer layout (any of the four phases).

    Returns
    -------
    ``(H, W, 3)`` float32 array on the same device, not clipped.

    Examples
    --------
    >>> flat = np.full((8, 10), 0.25, dtype=np.float32)
    >>> bool(np.allclose(demosaic_mlri(flat, CFALayout.from_name("BGGR")), 0.25, rtol=1e-6))
    True
    """
    xp = array_module(mosaic)
    raw = mosaic.astype(xp.float32, copy=False)
    sites = _Sites.of(cfa, raw.shape, xp)
    filters = _Filters(xp)
    rgb = xp.empty((*raw.shape, 3), dtype=xp.float32)
    rgb[..., 1] = _green(raw, sites, filters)

    def laplacian_2d(a: Any) -> Any:
        out = filters.along(a, _LAPLACIAN, 0)
        out += filters.along(a, _LAPLACIAN, 1)
        return out

    for channel, site in ((0, sites.red), (2, sites.blue)):
        tentative = _guided_estimate(rgb[..., 1], site.weighted(raw), site, laplacian_2d, _CHROMA_RADIUS, filters)
        residual = site.weighted(raw - tentative)
        tentative += filters.along(filters.along(residual, _TENT, 0), _TENT, 1)
        rgb[..., channel] = tentative
    return rgb


def _guided_estimate(
    guide: Any, samples: Any, site: _Site, laplacian: Callable[[Any], Any], radius: int, filters: _Filters
) -> Any:
    """The minimized-Laplacian guided filter: ``samples`` (zero off ``site``) predicted from ``guide``.

    In each window the slope is the least-squares fit of the samples' Laplacian to the guide's
    Laplacian at the sampled pixels, the offset makes the fit pass through the means of the
    samples and of the guide there; slope and offset are averaged over the windows covering a
    pixel and applied to the guide at it. Every window holds samples of every CFA site.
    """
    xp = filters.xp
    guide_at_samples = site.weighted(guide)
    guide_laplacian = site.weighted(laplacian(guide_at_samples))
    product = laplacian(samples)
    product *= guide_laplacian
    slope = site.divide_by_share(filters.box_mean(product, radius), radius, filters)
    del product
    guide_laplacian *= guide_laplacian
    energy = site.divide_by_share(filters.box_mean(guide_laplacian, radius), radius, filters)
    del guide_laplacian
    slope /= xp.maximum(energy, _MIN_LAPLACIAN_ENERGY, out=energy)
    del energy
    offset = filters.box_mean(samples, radius)
    offset -= slope * filters.box_mean(guide_at_samples, radius)
    del guide_at_samples
    site.divide_by_share(offset, radius, filters)
    estimate = filters.box_mean(slope, radius)
    del slope
    estimate *= guide
    estimate += filters.box_mean(offset, radius)
    return estimate


def _colour_difference(raw: Any, sites: _Sites, axis: int, filters: _Filters) -> Any:
    """``G - R`` or ``G - B`` at every pixel, from residual interpolation along ``axis`` only."""
    xp = filters.xp

    def laplacian(a: Any) -> Any:
        return filters.along(a, _LAPLACIAN, axis)

    def interpolated(tentative: Any, site: _Site) -> Any:
        """``tentative`` corrected by the residual at ``site``, averaged from the two neighbours along the axis."""
        tentative += filters.along(site.weighted(raw - tentative), _NEIGHBOUR_MEAN, axis)
        return tentative

    # Each line completed by the mean of the two neighbours along the axis: green lines where green
    # is not sampled, red or blue lines at their green sites.
    neighbour_mean = filters.along(raw, _NEIGHBOUR_MEAN, axis)
    green_line = xp.where(sites.green, raw, neighbour_mean)
    difference = xp.zeros_like(raw)
    for colour, green_beside in ((sites.red, sites.beside_red[axis]), (sites.blue, sites.beside_blue[axis])):
        # The colour at the green sites between its samples, guided by the green line.
        estimate = _guided_estimate(green_line, colour.weighted(raw), colour, laplacian, _GREEN_RADIUS, filters)
        estimate = interpolated(estimate, colour)
        difference = xp.where(green_beside.mask, raw - estimate, difference)
        # Green at the colour's samples, guided by the colour line.
        colour_line = xp.where(colour.mask, raw, neighbour_mean)
        estimate = _guided_estimate(colour_line, green_beside.weighted(raw), green_beside, laplacian, _GREEN_RADIUS, filters)
        del colour_line
        estimate = interpolated(estimate, green_beside)
        difference = xp.where(colour.mask, estimate - raw, difference)
        del estimate
    return difference


def _green(raw: Any, sites: _Sites, filters: _Filters) -> Any:
    """Green everywhere: the sample, or the sample plus a gradient-weighted blend of directional colour differences."""
    xp = filters.xp
    weighted_sum = xp.zeros_like(raw)
    total_weight = xp.zeros_like(raw)
    for axis in (1, 0):
        difference = _colour_difference(raw, sites, axis, filters)
        gradient = xp.abs(filters.along(difference, _CENTRAL_DIFFERENCE, axis))
        energy = filters.box_mean(gradient, 1)
        energy *= 9.0
        del gradient
        for side_taps, smoothing in (((1.0, 0.0, 0.0), _BEHIND), ((0.0, 0.0, 1.0), _AHEAD)):
            weight = filters.along(energy, side_taps, axis)
            weight *= weight
            weight += _WEIGHT_FLOOR
            xp.reciprocal(weight, out=weight)
            total_weight += weight
            weight *= filters.along(difference, smoothing, axis)
            weighted_sum += weight
            del weight
        del difference, energy
    weighted_sum /= total_weight
    del total_weight
    weighted_sum += raw
    return xp.where(sites.green, raw, weighted_sum)
