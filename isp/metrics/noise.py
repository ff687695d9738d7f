"""Signal-to-noise ratio of uniform patches, on the output image and on the raw frame.

Noise is measured the ISO 15739 way: over a uniform patch, after removing a fitted plane, so
that slow variations across the patch (lens shading, vignetting looks, illumination falloff)
are not counted as noise. The output image is measured on linear luminance Y (linear sRGB to
CIE Y); the raw frame on the green CFA sites minus the black level, the sensor's own SNR.
Neutral patches are those whose reference chroma C*ab is below 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from isp import colorimetry
from isp.backend import to_host
from isp.cfa import G
from isp.frame import Image, RawFrame
from isp.metrics.colorchecker import linear_srgb, patch_region
from isp.scene.base import Patch

__all__ = ["detrended_snr", "neutral_patches", "grey_patch_snr"]

_NEUTRAL_CHROMA = 3.0


def detrended_snr(values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[float, float]:
    """``(mean, noise)`` of samples at ``(rows, cols)``: their mean, and the standard deviation
    of the residual after a least-squares plane ``a + b*row + c*col`` is removed."""
    values = np.asarray(values, dtype=np.float64).ravel()
    design = np.column_stack([np.ones_like(values), np.ravel(rows) - np.mean(rows), np.ravel(cols) - np.mean(cols)])
    coefficients, *_ = np.linalg.lstsq(design, values, rcond=None)
    residual = values - design @ coefficients
    return float(values.mean()), float(np.sqrt(residual @ residual / max(values.size - 3, 1)))


def neutral_patches(patches: Sequence[Patch]) -> list[Patch]:
    """The patches whose reference colour is neutral (C*ab below 3)."""
    lab = colorimetry.XYZ_to_Lab(np.asarray([p.xyz_d65 for p in patches]))
    return [p for p, (_, a, b) in zip(patches, lab, strict=True) if np.hypot(a, b) < _NEUTRAL_CHROMA]


def _row(name: str, mean: float, noise: float) -> dict[str, Any]:
    snr = mean / noise if noise > 0 else float("inf")
    return {"name": name, "mean": mean, "noise": noise, "snr": snr, "snr_db": 20.0 * np.log10(snr) if snr > 0 else None}


def grey_patch_snr(image: Image | None, raw: RawFrame | None, patches: Sequence[Patch], fraction: float = 0.5) -> dict[str, Any]:
    """SNR of every neutral patch: on the output's luminance and on the raw green sites.

    Parameters
    ----------
    image
        The output image (sRGB, any transfer), same geometry as the scene; ``None`` to skip.
    raw
        The raw frame the image was made from (``dn`` domain); ``None`` to skip.
    patches
        The scene's patches; only the neutral ones are measured.
    fraction
        Central part of each patch box measured, per dimension.
    """
    greys = neutral_patches(patches)
    result: dict[str, Any] = {"method": "mean / std after removing a fitted plane (ISO 15739)", "patch_fraction": fraction}
    if image is not None:
        rows_out = []
        for patch in greys:
            block = linear_srgb(image, patch_region(patch, fraction)) @ colorimetry.SRGB_TO_XYZ[1]
            yy, xx = np.mgrid[: block.shape[0], : block.shape[1]]
            rows_out.append(_row(patch.name, *detrended_snr(block, yy, xx)))
        result["output_luminance"] = rows_out
    if raw is not None and raw.domain == "dn":
        # Patch by patch: the colour and black level of each site come from the CFA tile, so
        # no frame-sized float64 copy is made (a 50 MP frame would need 400 MB per copy).
        th, tw = raw.cfa.tile_shape
        pattern = raw.cfa.colour_map((th, tw))
        black = np.asarray(raw.black_level, dtype=np.float64)
        rows_raw = []
        for patch in greys:
            r, c = patch_region(patch, fraction)
            sites = np.ix_(np.arange(r.start, r.stop) % th, np.arange(c.start, c.stop) % tw)
            mask = pattern[sites] == G
            signal = to_host(raw.mosaic[r, c]).astype(np.float64) - black[sites]
            yy, xx = np.nonzero(mask)
            rows_raw.append(_row(patch.name, *detrended_snr(signal[mask], yy, xx)))
        result["raw_green"] = rows_raw
    return result
