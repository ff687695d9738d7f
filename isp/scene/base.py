"""What every scene source produces: a :class:`Scene` in linear scene-referred RGB."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Patch", "Scene", "LUMINANCE_DOC"]

LUMINANCE_DOC = "luminance of the scene's white (1.0): sets the light the sensor collects"


@dataclass(frozen=True)
class Patch:
    """A region of known colour in a scene, for measurements.

    Parameters
    ----------
    name
        Patch name (``"dark skin"``, ``"neutral 5 (.70 D)"``, ...).
    box
        ``(top, left, bottom, right)`` in pixels, bottom and right exclusive.
    xyz_d65
        Reference CIE XYZ under D65 (Y = 1 for the perfect white diffuser).
    """

    name: str
    box: tuple[int, int, int, int]
    xyz_d65: np.ndarray

    def scaled(self, sy: float, sx: float) -> Patch:
        """The patch in an image resampled by ``sy`` rows and ``sx`` columns per input pixel."""
        top, left, bottom, right = self.box
        box = (int(round(top * sy)), int(round(left * sx)), int(round(bottom * sy)), int(round(right * sx)))
        return dataclasses.replace(self, box=box)

    def centre(self, fraction: float) -> tuple[slice, slice]:
        """Row and column slices of the central ``fraction`` of the box (per dimension)."""
        top, left, bottom, right = self.box
        dy = (bottom - top) * (1.0 - fraction) / 2.0
        dx = (right - left) * (1.0 - fraction) / 2.0
        return slice(int(round(top + dy)), int(round(bottom - dy))), slice(int(round(left + dx)), int(round(right - dx)))


@dataclass(frozen=True, eq=False)
class Scene:
    """Scene radiance as linear RGB on the backend's device.

    Parameters
    ----------
    linear_rgb
        ``(H, W, 3)`` float32, linear sRGB primaries with D65 white, scene-referred:
        1.0 is a perfect white diffuser under the scene light (values above are highlights).
    name
        Scene kind (``"colorchecker"``, ``"image"``).
    source
        What it was made from (a chart reference name, an image path).
    patches
        Regions of known colour, for the colour metrics.
    luminance_cd_m2
        Luminance of the scene's 1.0 (cd/m²): what the optics and sensor turn into photons.
    white_rgb
        Linear sRGB of a white surface under the scene's light (Y = 1): ``(1, 1, 1)`` in D65,
        warmer under tungsten. The sensor's as-shot neutral and auto-exposure follow it.
    """

    linear_rgb: Any
    name: str
    source: str
    patches: tuple[Patch, ...] = ()
    luminance_cd_m2: float = 1000.0
    white_rgb: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.linear_rgb.shape[:2])
