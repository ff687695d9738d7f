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

__all__ = ["linear_srgb", "patch_means", "colorchecker_delta_e"]


def linear_srgb(image: Image) -> np.ndarray:
    """The image as linear sRGB float64 on the host, decoding the transfer curve and integer codes.

    A Display P3 image is converted to sRGB primaries (values outside the sRGB gamut go
    negative rather than being clipped, so colour differences stay exact).
    """
    if image.space not in colorimetry.RGB_TO_XYZ:
        raise StageError(f"colour metrics need an sRGB or Display P3 image, got colour space {image.space!r}")
    data = to_host(image.data)
    if data.dtype.kind in "ui":
        data = data.astype(np.float64) / float(np.iinfo(data.dtype).max)
    data = data.astype(np.float64, copy=False)
    linear = srgb_eotf(data) if image.transfer == "srgb" else data
    if image.space != "srgb":
        linear = linear @ (colorimetry.XYZ_TO_SRGB @ colorimetry.RGB_TO_XYZ[image.space]).T
    return linear


def patch_means(linear: np.ndarray, patches: Sequence[Patch], fraction: float = 0.5) -> np.ndarray:
    """Mean linear RGB ``(n, 3)`` over the central ``fraction`` of each patch box."""
    means = []
    for patch in patches:
        rows, cols = patch.centre(fraction)
        region = linear[rows, cols]
        if region.size == 0:
            raise StageError(f"patch {patch.name!r}: its central {fraction:.0%} is empty at box {patch.box}")
        means.append(region.reshape(-1, 3).mean(axis=0))
    return np.asarray(means)


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
    rgb = patch_means(linear_srgb(image), patches, fraction)
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
