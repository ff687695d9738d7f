"""3D LUT: a creative or calibration look from a ``.cube`` file, with tetrahedral interpolation.

Input and output: a float Image with the sRGB transfer (encoded values, nominally [0, 1]) in
the colour space the LUT was made for (sRGB for almost every published look; the stage keeps
the image's space tag). Inputs are clipped to the LUT's domain before the lookup; the LUT's
outputs are used as they are, and ``strength`` blends them with the unclipped input.

Tetrahedral interpolation splits each lattice cell into six tetrahedra around its main
diagonal (black to white corner of the cell) and interpolates linearly inside the one holding
the input. It reproduces the lattice exactly, keeps greys on the diagonal neutral when the LUT
does, and needs four table reads per pixel instead of trilinear's eight. The same
array-module code runs on NumPy and CuPy: the corner offsets are chosen by comparisons, the
four corners are gathered from the flattened table.

References
----------
J. M. Kasson, S. I. Nin, W. Plouffe, J. L. Hafner, "Performing color space conversions with
three-dimensional linear interpolation", J. Electronic Imaging 4(3), 1995.
Adobe Systems, "Cube LUT Specification", version 1.0, 2013.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from isp.backend import array_module
from isp.config import param
from isp.errors import ConfigError
from isp.frame import Image
from isp.io.cube import Lut3D, read_cube
from isp.stages.registry import StageContext, register_stage

__all__ = ["Lut3dParams", "lut3d", "apply_lut3d", "identity_lut", "bake_lut", "load_cube"]


def _lattice(size: int, domain_min: Any, domain_max: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``(N, N, N, 3)`` float64 input RGB of each lattice point, indexed ``[r, g, b]``, and the domain."""
    low = np.broadcast_to(np.asarray(domain_min, dtype=np.float64), (3,))
    high = np.broadcast_to(np.asarray(domain_max, dtype=np.float64), (3,))
    steps = np.linspace(0.0, 1.0, size)
    unit = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1)
    return low + (high - low) * unit, low, high


def identity_lut(size: int = 33, domain_min: Any = 0.0, domain_max: Any = 1.0, title: str = "identity") -> Lut3D:
    """The LUT that returns its (domain-clipped) input: lattice point ``[i, j, k]`` holds its own RGB.

    Examples
    --------
    >>> identity_lut(3).table[2, 1, 0].tolist()
    [1.0, 0.5, 0.0]
    """
    grid, low, high = _lattice(size, domain_min, domain_max)
    return Lut3D(grid, low, high, title=title)


def bake_lut(
    transform: Callable[[np.ndarray], np.ndarray],
    size: int = 33,
    domain_min: Any = 0.0,
    domain_max: Any = 1.0,
    title: str = "",
    comments: tuple[str, ...] = (),
) -> Lut3D:
    """A LUT holding ``transform`` sampled at the lattice points.

    Parameters
    ----------
    transform
        Maps a float64 host array ``(..., 3)`` of input RGB to output RGB of the same shape.
    size
        Lattice points per axis; 33 is the usual trade-off, 65 for sharp looks.

    Examples
    --------
    >>> lut = bake_lut(lambda rgb: 1.0 - rgb, size=2)
    >>> lut.table[0, 0, 0].tolist(), lut.table[1, 0, 1].tolist()
    ([1.0, 1.0, 1.0], [0.0, 1.0, 0.0])
    """
    grid, low, high = _lattice(size, domain_min, domain_max)
    baked = np.asarray(transform(grid), dtype=np.float64)
    if baked.shape != grid.shape or not np.all(np.isfinite(baked)):
        raise ValueError(f"bake_lut: the transform must return finite values of shape {grid.shape}, got {baked.shape}")
    return Lut3D(baked, low, high, title=title, comments=comments)


def apply_lut3d(rgb: Any, lut: Lut3D) -> Any:
    """Look ``rgb`` (``(..., 3)`` float32, any backend) up in ``lut`` with tetrahedral interpolation.

    Inputs are clipped to the LUT's domain first. Returns float32 of the same shape.
    """
    xp = array_module(rgb)
    n = lut.size
    table = xp.asarray(lut.table.reshape(-1, 3))
    low = xp.asarray(lut.domain_min, dtype=xp.float32)
    high = xp.asarray(lut.domain_max, dtype=xp.float32)
    scale = xp.asarray((n - 1) / (lut.domain_max - lut.domain_min), dtype=xp.float32)
    position = (xp.minimum(xp.maximum(rgb, low), high) - low) * scale
    cell = xp.minimum(position.astype(xp.int32), n - 2)  # the last lattice point is the top of cell n-2
    frac = position - cell.astype(xp.float32)
    fr, fg, fb = frac[..., 0], frac[..., 1], frac[..., 2]

    # corners visited from (0,0,0) to (1,1,1) by stepping along the axes in order of falling
    # fraction: first along the largest, then along all but the smallest
    step_r, step_g, step_b = n * n, n, 1
    largest = xp.where((fr >= fg) & (fr >= fb), step_r, xp.where(fg >= fb, step_g, step_b))
    smallest = xp.where((fb <= fr) & (fb <= fg), step_b, xp.where(fg <= fr, step_g, step_r))
    top = step_r + step_g + step_b
    f_max = xp.maximum(xp.maximum(fr, fg), fb)
    f_min = xp.minimum(xp.minimum(fr, fg), fb)
    f_mid = xp.maximum(xp.minimum(fr, fg), xp.minimum(xp.maximum(fr, fg), fb))

    base = (cell[..., 0] * n + cell[..., 1]) * n + cell[..., 2]
    out = (1.0 - f_max)[..., None] * xp.take(table, base, axis=0)
    out += (f_max - f_mid)[..., None] * xp.take(table, base + largest, axis=0)
    out += (f_mid - f_min)[..., None] * xp.take(table, base + (top - smallest), axis=0)
    out += f_min[..., None] * xp.take(table, base + top, axis=0)
    return out


@functools.lru_cache(maxsize=8)
def _read_cached(path: str, mtime_ns: int, size: int) -> Lut3D:
    return read_cube(path)


def load_cube(path: str | Path) -> Lut3D:
    """:func:`isp.io.cube.read_cube` with a cache keyed on the file's path, size and modification
    time, so a pipeline run on many frames parses the file once and an edited file is re-read."""
    path = Path(path).resolve()
    try:
        stat = path.stat()
    except OSError:
        return read_cube(path)  # raises the reader's clear error
    return _read_cached(str(path), stat.st_mtime_ns, stat.st_size)


@dataclass(frozen=True)
class Lut3dParams:
    path: str | None = param(
        None, doc="the .cube 3D LUT file; a relative path is resolved against the current working directory of the run"
    )
    strength: float = param(1.0, range=(0.0, 1.0), doc="blend of the LUT's output with the input: 0 leaves the image, 1 applies the LUT fully")

    def __post_init__(self) -> None:
        if self.path is not None and not Path(self.path).is_file():
            raise ConfigError(f"lut3d.path={self.path!r}: no such file (relative paths are resolved against {Path.cwd()})")


@register_stage("lut3d", Lut3dParams, consumes="image")
def lut3d(image: Image, params: Lut3dParams, ctx: StageContext) -> Image:
    """Apply a 3D LUT from a .cube file to the encoded image, blended by strength."""
    image.require("lut3d", transfer="srgb")
    if params.path is None:
        raise ConfigError("stage 'lut3d': set lut3d.path to a .cube file")
    if params.strength == 0.0:
        return image
    looked_up = apply_lut3d(image.data, load_cube(params.path))
    if params.strength < 1.0:
        looked_up = image.data + float(params.strength) * (looked_up - image.data)
    return image.replace(data=looked_up)
