"""Colour accuracy on a ColorChecker: CIEDE2000 of each patch against the chart's reference.

Each patch is measured on the central part of its box (the edges carry demosaicing and blur),
averaged in linear light, taken to CIE XYZ and CIELAB relative to D65 white, and compared with
the chart's reference under D65 (what an output that reproduces the scene white as sRGB white
should show).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from isp import colorimetry
from isp.backend import to_host
from isp.errors import StageError
from isp.frame import Image
from isp.scene.base import Patch
from isp.stages.oetf import srgb_eotf

__all__ = ["linear_srgb", "patch_region", "patch_means", "colorchecker_delta_e"]


def linear_srgb(image: Image, window: tuple[slice, slice] | None = None) -> np.ndarray:
    """The image (or its ``window``, a pair of row and column slices) as linear sRGB float64 on
    the host, decoding the transfer curve and integer codes.

    A Display P3 image is converted to sRGB primaries (values outside the sRGB gamut go
    negative rather than being clipped, so colour differences stay exact). The conversion is
    per pixel, so measuring patches through their windows gives the same figures as measuring
    the whole converted frame, without a float64 copy of a 50 MP image.
    """
    if image.space not in colorimetry.RGB_TO_XYZ:
        raise StageError(f"colour metrics need an sRGB or Display P3 image, got colour space {image.space!r}")
    data = to_host(image.data if window is None else image.data[window])
    if data.dtype.kind in "ui":
        data = data.astype(np.float64) / float(np.iinfo(data.dtype).max)
    data = data.astype(np.float64, copy=False)
    linear = srgb_eotf(data) if image.transfer == "srgb" else data
    if image.space != "srgb":
        linear = linear @ (colorimetry.XYZ_TO_SRGB @ colorimetry.RGB_TO_XYZ[image.space]).T
    return linear


def patch_region(patch: Patch, fraction: float) -> tuple[slice, slice]:
    """The central ``fraction`` of a patch box as row and column slices; an error if empty."""
    rows, cols = patch.centre(fraction)
    if rows.stop <= rows.start or cols.stop <= cols.start:
        raise StageError(f"patch {patch.name!r}: its central {fraction:.0%} is empty at box {patch.box}")
    return rows, cols


def patch_means(linear: np.ndarray, patches: Sequence[Patch], fraction: float = 0.5) -> np.ndarray:
    """Mean linear RGB ``(n, 3)`` over the central ``fraction`` of each patch box."""
    return np.asarray([linear[patch_region(p, fraction)].reshape(-1, 3).mean(axis=0) for p in patches])


def colorchecker_delta_e(image: Image, patches: Sequence[Patch], fraction: float = 0.5) -> dict[str, Any]:
    """CIEDE2000 per patch and its mean and max.

    Parameters
    ----------
    image
        Output image in sRGB (encoded or linear, float or integer), same geometry as the scene.
    patches
        The chart's patches with their reference XYZ under D65.
    fraction
        Central part of each patch box measured, per dimension.
    """
    rgb = np.asarray([linear_srgb(image, patch_region(p, fraction)).reshape(-1, 3).mean(axis=0) for p in patches])
    measured_lab = colorimetry.XYZ_to_Lab(rgb @ colorimetry.SRGB_TO_XYZ.T)
    reference_lab = colorimetry.XYZ_to_Lab(np.asarray([p.xyz_d65 for p in patches]))
    delta_e = colorimetry.delta_e_2000(measured_lab, reference_lab)
    return {
        "mean": float(delta_e.mean()),
        "max": float(delta_e.max()),
        "patch_fraction": fraction,
        "patches": [
            {"name": p.name, "delta_e": float(d), "lab": lab.round(3).tolist(), "reference_lab": ref.round(3).tolist()}
            for p, d, lab, ref in zip(patches, delta_e, measured_lab, reference_lab, strict=True)
        ],
    }
