"""Film grain for looks: band-limited Gaussian noise, strongest in the mid-tones.

Input and output: a float Image with the sRGB transfer (encoded values in [0, 1], any colour
space). The grain is added to the code values and the result clipped to [0, 1]::

    out = clip(v + amount · 4·v·(1 - v) · n, 0, 1)

``n`` is a unit-variance field: white Gaussian noise low-passed with a Gaussian of sigma
``size_px`` and scaled back to unit variance, so ``amount`` is the standard deviation of the
grain at mid-grey (v = 0.5) whatever its size. The envelope ``4·v·(1 - v)`` is 1 at mid-grey
and fades to 0 at black and white, as the density of developed grain does on film; black and
white pixels are left exactly as they are. ``luma_only`` draws one field for all three
channels (the silver grain of black-and-white film), otherwise one per channel (the dye
clouds of colour film).

The noise is drawn from the run's seed on the ``"grain"`` stream, so the same seed on the
same backend gives the same grain, and NumPy and CuPy give grain of the same statistics (not
the same pixels). The low-pass wraps around the image edges, which keeps the grain's variance
the same at the borders as in the middle.

References
----------
A. Newson, J. Delon, B. Galerne, "A stochastic film grain model for resolution-independent
rendering", Computer Graphics Forum 36(8), 2017: a physical (Boolean) model of grains, of
which the filtered noise here is the cheap second-order approximation a look needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isp.config import param
from isp.frame import Image
from isp.stages.registry import StageContext, register_stage

__all__ = ["GrainParams", "grain", "grain_kernel"]

#: Kernel radius in sigmas: beyond 4 sigma a Gaussian tap is below 3.4e-4 of the centre one.
_TRUNCATE_SIGMAS = 4.0


def grain_kernel(size_px: float) -> np.ndarray:
    """The 1D low-pass applied along rows and columns, scaled so that white noise of unit
    variance stays at unit variance after filtering both axes (host, float64).

    ``size_px = 0`` gives ``[1.0]``: one-pixel grain.

    Examples
    --------
    >>> k = grain_kernel(2.0)
    >>> len(k), round(float(np.sum(k**2)), 12)
    (17, 1.0)
    """
    if size_px == 0.0:
        return np.ones(1)
    radius = int(_TRUNCATE_SIGMAS * size_px + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / size_px) ** 2)
    # the 2D filter is the outer product of two of these, so its energy is the product of theirs
    return taps / np.sqrt(np.sum(taps**2))


@dataclass(frozen=True)
class GrainParams:
    amount: float = param(
        0.0, range=(0.0, 0.25), table="iso", doc="standard deviation of the grain in code values at mid-grey; 0 disables the stage"
    )
    size_px: float = param(1.0, range=(0.0, 8.0), unit="px", doc="grain size: sigma of the Gaussian low-pass of the noise; 0 gives one-pixel grain")
    luma_only: bool = param(True, doc="one grain field for R, G and B (monochrome grain) rather than one per channel (colour grain)")


@register_stage("grain", GrainParams, consumes="image")
def grain(image: Image, params: GrainParams, ctx: StageContext) -> Image:
    """Add film grain, strongest in the mid-tones, fading to nothing at black and white."""
    image.require("grain", transfer="srgb")
    if params.amount == 0.0:
        return image
    xp, ndi = ctx.backend.xp, ctx.backend.ndimage
    h, w, _ = image.shape
    shape = (h, w, 1) if params.luma_only else (h, w, 3)
    noise = ctx.backend.rng(ctx.seed, "grain").standard_normal(shape, dtype=xp.float32)
    kernel = grain_kernel(params.size_px)
    if len(kernel) > 1:
        taps = xp.asarray(kernel, dtype=xp.float32)
        noise = ndi.correlate1d(noise, taps, axis=0, mode="wrap")
        noise = ndi.correlate1d(noise, taps, axis=1, mode="wrap")
    v = xp.clip(image.data, 0.0, 1.0)
    envelope = 4.0 * v * (1.0 - v)
    out = image.data + (float(params.amount) * envelope) * noise
    return image.replace(data=xp.clip(out, 0.0, 1.0))
