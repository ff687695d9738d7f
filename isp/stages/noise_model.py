"""The noise of every pixel of a raw frame, from its noise profile or estimated from the data.

Raw-domain stages that separate noise from signal (defect correction, raw denoise) need the
temporal noise of each pixel. A sensor's noise is described by the DNG NoiseProfile: for the
normalised signal ``x`` (black subtracted, white = 1.0, before any gain) of each colour plane,

    variance(x) = S·x + O

(``S`` the shot-noise scale, ``O`` read, row and quantisation noise). Stages before these may
have multiplied a pixel by a gain ``g``: the white-balance gain of its colour times the
lens-shading gain (``frame.wb_gains``, ``frame.shading_gain``). A pixel of value ``v = g·x``
then has

    sigma(v) = g·sqrt(S·v/g + O),   i.e.   variance(v) = (S·g)·v + O·g²,

so each pixel has its own linear variance model ``a·v + b`` (:class:`NoiseModel`).

A frame without a noise profile (a raw file that carries none) gets one estimated from its own
data (:func:`estimate_noise_profile`): on each CFA tile site's plane, the finest diagonal Haar
wavelet coefficient of every 2×2 block, ``(p00 - p01 - p10 + p11) / 2``, has the variance of
one pixel and cancels a linear trend; the robust median absolute deviation (MAD) of those
coefficients, in bins of the blocks' mean level, gives the variance at each level (Donoho and
Johnstone), and a non-negative least-squares line through the bins gives ``(S, O)`` in the
frame's current units, gains included (as in Foi et al.). Such an estimate takes a spatially
varying gain (lens shading) as its average over the frame.

Domain: RawFrame in the ``linear`` domain (white = 1.0 before gains), any CFA. Outputs are
float32 arrays on the frame's device.

References
----------
Adobe, Digital Negative (DNG) Specification 1.6, tag NoiseProfile (51041).
D. L. Donoho, I. M. Johnstone, "Ideal spatial adaptation by wavelet shrinkage",
Biometrika 81 (1994): sigma = median(|HH|) / 0.6745.
A. Foi, M. Trimeche, V. Katkovnik, K. Egiazarian, "Practical Poissonian-Gaussian noise
modeling and fitting for single-image raw-data", IEEE TIP 17 (2008).
M. Mäkitalo, A. Foi, "Optimal inversion of the generalized Anscombe transformation for
Poisson-Gaussian noise", IEEE TIP 22 (2013).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.optimize

from isp.backend import array_module, to_host
from isp.cfa import CFALayout
from isp.errors import StageError
from isp.frame import RawFrame

__all__ = [
    "NoiseModel",
    "noise_model",
    "noise_sigma",
    "site_noise_profile",
    "estimate_noise_profile",
    "site_planes",
    "from_site_planes",
]

#: MAD of a zero-mean Gaussian over its standard deviation: Phi^-1(3/4).
_MAD_TO_SIGMA = 1.0 / 0.6744897501960817
#: Level bins of the estimate, and the fewest 2x2 blocks a bin needs.
_ESTIMATE_BINS = 16
_BLOCKS_PER_BIN = 64
#: Variance floor of an estimate (sigma = 1e-6 of white, below any ADC step): a noise-free frame
#: still gets a positive offset.
_MIN_VARIANCE = 1e-12
#: Blocks above this fraction of the white level are left out of the estimate: clipping there
#: takes noise away.
_ESTIMATE_CLIP = 0.9


def site_planes(mosaic: Any, cfa: CFALayout) -> Any:
    """The mosaic as one plane per CFA tile site: ``(th·tw, H/th, W/tw)``, site-major.

    Plane ``k`` holds the pixels at tile site ``(k // tw, k % tw)``; neighbours in a plane are
    the nearest pixels of the same site (two pixels apart in Bayer, four in Quad Bayer).
    """
    th, tw = cfa.tile_shape
    blocks = cfa.blocks(mosaic)
    return blocks.transpose(1, 3, 0, 2).reshape(th * tw, blocks.shape[0], blocks.shape[2])


def from_site_planes(planes: Any, cfa: CFALayout) -> Any:
    """The inverse of :func:`site_planes`: ``(th·tw, h, w)`` planes back to an ``(h·th, w·tw)`` mosaic."""
    th, tw = cfa.tile_shape
    _, h, w = planes.shape
    return planes.reshape(th, tw, h, w).transpose(2, 0, 3, 1).reshape(h * th, w * tw)


@dataclass(frozen=True, eq=False)
class NoiseModel:
    """Per-pixel temporal noise of a frame: ``variance(v) = slope·v + offset``.

    Parameters
    ----------
    slope, offset
        float32 arrays on the frame's device, in the frame's current units (gains included):
        ``(H, W)`` for a frame, or the same pixels in another layout (site planes); ``offset``
        is positive.
    estimated
        True when the model was estimated from the data (the frame had no noise profile).
    """

    slope: Any
    offset: Any
    estimated: bool

    def variance(self, level: Any) -> Any:
        """Noise variance of pixels whose expected value is ``level`` (same shape as the model).

        Negative levels (noise below black) count as zero signal.
        """
        xp = array_module(level)
        return self.slope * xp.maximum(level, np.float32(0.0)) + self.offset

    def sigma(self, level: Any) -> Any:
        """Noise standard deviation of pixels whose expected value is ``level``."""
        return array_module(level).sqrt(self.variance(level))

    def stabilise(self, values: Any) -> Any:
        """The generalised Anscombe transform of ``values``: noise of unit variance at every level.

        ``f(v) = (2/a)·sqrt(max(a·v + 3/8·a² + b, 0))`` for ``variance = a·v + b``; where
        ``a`` is zero (no shot noise) it is the plain scaling ``v / sqrt(b)``.
        """
        xp = array_module(values)
        a, b = self.slope, self.offset
        shot = a > np.float32(0.0)
        safe_a = xp.where(shot, a, np.float32(1.0))
        root = xp.sqrt(xp.maximum(a * values + np.float32(0.375) * a * a + b, np.float32(0.0)))
        return xp.where(shot, np.float32(2.0) * root / safe_a, values / xp.sqrt(b))


def site_noise_profile(frame: RawFrame) -> tuple[np.ndarray, np.ndarray]:
    """The frame's NoiseProfile spread over its CFA tile: ``(S, O)``, each ``(th, tw)`` float64.

    A profile of one pair applies to every plane; three pairs are R, G and B (the DNG's
    CFAPlaneColor order for an RGB mosaic).

    Raises
    ------
    StageError
        The frame has no noise profile, or one of another length.
    """
    profile = frame.info.noise_profile
    if not profile:
        raise StageError(f"frame from {frame.info.source} has no noise profile")
    pairs = np.asarray(profile, dtype=np.float64)
    if pairs.shape == (1, 2):
        pairs = np.repeat(pairs, 3, axis=0)
    if pairs.shape != (3, 2) or not np.all(np.isfinite(pairs)) or np.any(pairs < 0) or np.any(pairs[:, 1] <= 0):
        raise StageError(
            f"frame from {frame.info.source}: noise profile {profile!r} must be one (S, O) pair or one per colour R, G, B, "
            "with S >= 0 and O > 0"
        )
    return frame.cfa.per_site(pairs[:, 0]), frame.cfa.per_site(pairs[:, 1])


def _tiled(frame: RawFrame, per_site: np.ndarray, xp: Any) -> Any:
    return frame.cfa.tile(per_site.astype(np.float32), frame.shape, xp)


def noise_model(frame: RawFrame, xp: Any) -> NoiseModel:
    """The per-pixel noise model of a linear-domain frame, gains included.

    From ``frame.info.noise_profile`` scaled by the white-balance and lens-shading gains
    already applied; estimated from the data when the frame has no profile
    (:func:`estimate_noise_profile`, already in the frame's units).
    """
    frame.require("noise model", domain="linear")
    if not frame.info.noise_profile:
        slope, offset = estimate_noise_profile(frame.mosaic, frame.cfa, frame.white_level)
        return NoiseModel(_tiled(frame, slope, xp), _tiled(frame, offset, xp), True)
    slope, offset = site_noise_profile(frame)
    wb = frame.cfa.per_site(frame.wb_gains) if frame.wb_gains is not None else np.ones(frame.cfa.tile_shape)
    if frame.shading_gain is None:
        return NoiseModel(_tiled(frame, slope * wb, xp), _tiled(frame, offset * wb * wb, xp), False)
    gain = frame.cfa.apply_per_site(xp.asarray(frame.shading_gain, dtype=xp.float32), scale=wb)
    a = frame.cfa.apply_per_site(gain, scale=slope)
    b = frame.cfa.apply_per_site(gain * gain, scale=offset)
    return NoiseModel(a, b, False)


def noise_sigma(frame: RawFrame, xp: Any, level: Any = None) -> Any:
    """Noise standard deviation ``(H, W)`` float32 of every pixel of a linear-domain frame.

    Parameters
    ----------
    frame
        RawFrame in the ``linear`` domain; its noise profile (or, without one, an estimate from
        its data) and the gains applied so far give each pixel's noise.
    xp
        The frame's array module.
    level
        Expected value of each pixel ``(H, W)``; the pixel values themselves when ``None``.

    Examples
    --------
    >>> from isp.cfa import CFALayout
    >>> from isp.frame import CaptureInfo
    >>> info = CaptureInfo("test", noise_profile=((1e-3, 1e-5),))
    >>> flat = RawFrame(np.full((2, 2), 0.5, np.float32), CFALayout.from_name("RGGB"), 0.0, 1.0, info, domain="linear")
    >>> round(float(noise_sigma(flat, np).mean()), 5)  # sqrt(1e-3 * 0.5 + 1e-5)
    0.02258
    """
    model = noise_model(frame, xp)
    return model.sigma(frame.mosaic if level is None else level)


def estimate_noise_profile(mosaic: Any, cfa: CFALayout, white_level: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Estimate ``variance = S·v + O`` for each CFA tile site from one frame's data.

    See the module docstring for the method. Levels are the mosaic's own values (gains
    included); blocks above 90 % of ``white_level`` are left out, as clipping removes noise.

    Parameters
    ----------
    mosaic
        ``(H, W)`` float array, linear (NumPy or CuPy).
    cfa
        Its layout.
    white_level
        The saturation level of ``mosaic``.

    Returns
    -------
    ``(S, O)``, each ``(th, tw)`` float64 on the host; ``S >= 0`` and ``O > 0``.
    """
    xp = array_module(mosaic)
    th, tw = cfa.tile_shape
    planes = site_planes(mosaic, cfa).astype(xp.float32)
    n, h, w = planes.shape
    h, w = h - h % 2, w - w % 2
    p00, p01 = planes[:, 0:h:2, 0:w:2], planes[:, 0:h:2, 1:w:2]
    p10, p11 = planes[:, 1:h:2, 0:w:2], planes[:, 1:h:2, 1:w:2]
    detail = xp.abs(p00 - p01 - p10 + p11).reshape(n, -1) * np.float32(0.5)
    level = ((p00 + p01 + p10 + p11) * np.float32(0.25)).reshape(n, -1)
    bright = xp.maximum(xp.maximum(p00, p01), xp.maximum(p10, p11)).reshape(n, -1) > np.float32(_ESTIMATE_CLIP * white_level)
    level = xp.where(bright, xp.inf, level)
    order = xp.argsort(level, axis=1)
    level = xp.take_along_axis(level, order, axis=1)
    detail = xp.take_along_axis(detail, order, axis=1)
    usable = int(to_host(xp.min(xp.sum(~bright, axis=1))))
    bins = min(_ESTIMATE_BINS, usable // _BLOCKS_PER_BIN)
    if bins < 1:
        raise StageError(
            f"cannot estimate the noise of a {mosaic.shape[0]}x{mosaic.shape[1]} frame: too few unclipped pixels per CFA site"
        )
    per_bin = usable // bins
    level = level[:, : bins * per_bin].reshape(n, bins, per_bin)
    detail = detail[:, : bins * per_bin].reshape(n, bins, per_bin)
    bin_level = to_host(xp.median(level, axis=2)).astype(np.float64)
    bin_variance = (to_host(xp.median(detail, axis=2)).astype(np.float64) * _MAD_TO_SIGMA) ** 2
    slope, offset = np.empty(n), np.empty(n)
    for k in range(n):
        design = np.column_stack([np.maximum(bin_level[k], 0.0), np.ones(bins)])
        (slope[k], offset[k]), _ = scipy.optimize.nnls(design, bin_variance[k])
    return slope.reshape(th, tw), np.maximum(offset, _MIN_VARIANCE).reshape(th, tw)
