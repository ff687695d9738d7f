"""Colour filter array layouts and masks.

A layout is a small tile of colour indices (0 = R, 1 = G, 2 = B) repeated over the mosaic:
2×2 for Bayer in its four phases, 4×4 for Quad Bayer (each 2×2 block one colour). Per-site
quantities such as black levels are given per tile position and tiled over the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from isp.backend import array_module
from isp.errors import ConfigError

__all__ = ["R", "G", "B", "COLOURS", "BAYER_PHASES", "CFALayout"]

R, G, B = 0, 1, 2
COLOURS = "RGB"
BAYER_PHASES = ("RGGB", "BGGR", "GRBG", "GBRG")
_QUAD_PREFIX = "quad_"


@dataclass(frozen=True)
class CFALayout:
    """A repeating colour filter tile.

    Parameters
    ----------
    name
        ``"RGGB"``, ``"BGGR"``, ``"GRBG"``, ``"GBRG"`` for Bayer, ``"quad_RGGB"`` etc. for Quad Bayer.
    pattern
        Colour index (0 = R, 1 = G, 2 = B) at each tile site, row by row.

    Examples
    --------
    >>> CFALayout.from_name("GRBG").pattern
    ((1, 0), (2, 1))
    >>> CFALayout.from_name("quad_RGGB").tile_shape
    (4, 4)
    """

    name: str
    pattern: tuple[tuple[int, ...], ...]

    @classmethod
    def from_name(cls, name: str) -> CFALayout:
        """The layout called ``name``; see the class docstring for the names."""
        quad = name.startswith(_QUAD_PREFIX)
        phase = name[len(_QUAD_PREFIX) :] if quad else name
        if phase not in BAYER_PHASES:
            known = [*BAYER_PHASES, *(_QUAD_PREFIX + p for p in BAYER_PHASES)]
            raise ConfigError(f"CFA layout {name!r} is not known; choose one of {', '.join(known)}")
        bayer = tuple(tuple(COLOURS.index(c) for c in phase[i : i + 2]) for i in (0, 2))
        if not quad:
            return cls(name, bayer)
        rows = tuple(tuple(bayer[y // 2][x // 2] for x in range(4)) for y in range(4))
        return cls(name, rows)

    @property
    def tile_shape(self) -> tuple[int, int]:
        return len(self.pattern), len(self.pattern[0])

    @property
    def is_bayer(self) -> bool:
        return self.tile_shape == (2, 2)

    @property
    def pattern_array(self) -> np.ndarray:
        """The tile as an ``int8`` array of shape :attr:`tile_shape`."""
        return np.array(self.pattern, dtype=np.int8)

    def colour_sites(self, colour: int) -> list[tuple[int, int]]:
        """Tile positions ``(row, col)`` of one colour."""
        return [(y, x) for y, row in enumerate(self.pattern) for x, c in enumerate(row) if c == colour]

    def check_shape(self, shape: tuple[int, ...], what: str = "mosaic") -> None:
        """Raise unless ``shape`` is 2-D and a whole number of tiles."""
        th, tw = self.tile_shape
        if len(shape) != 2 or shape[0] % th or shape[1] % tw:
            raise ConfigError(
                f"{what} of shape {tuple(shape)} does not fit CFA {self.name}: "
                f"need 2-D with height a multiple of {th} and width a multiple of {tw}"
            )

    def tile(self, per_site: Any, shape: tuple[int, int], xp: Any = np) -> Any:
        """Repeat a per-site array of shape :attr:`tile_shape` over a frame of ``shape``."""
        self.check_shape(shape)
        th, tw = self.tile_shape
        site = xp.asarray(per_site)
        return xp.tile(site, (shape[0] // th, shape[1] // tw))

    def blocks(self, mosaic: Any) -> Any:
        """View an ``(H, W)`` mosaic as ``(H/th, th, W/tw, tw)`` tiles (no copy)."""
        self.check_shape(mosaic.shape)
        th, tw = self.tile_shape
        return mosaic.reshape(mosaic.shape[0] // th, th, mosaic.shape[1] // tw, tw)

    def site_array(self, per_site: Any, xp: Any = np, dtype: Any = np.float32) -> Any:
        """A per-site tile shaped ``(1, th, 1, tw)`` to broadcast against :meth:`blocks`."""
        th, tw = self.tile_shape
        return xp.asarray(np.asarray(per_site, dtype=dtype).reshape(1, th, 1, tw))

    def apply_per_site(self, mosaic: Any, scale: Any = None, offset: Any = None) -> Any:
        """``(mosaic + offset) * scale`` with per-site ``offset`` and ``scale`` tiles, as float32."""
        xp = array_module(mosaic)
        self.check_shape(mosaic.shape)
        th, tw = self.tile_shape
        h, w = mosaic.shape
        # whole rows of per-site values: NumPy's inner loop then runs along a row, not over a
        # tile's two values (4x faster on the CPU, the same float32 operations)
        out = mosaic.astype(xp.float32).reshape(h // th, th, w)

        def across_row(per_site: Any) -> Any:
            return xp.asarray(np.tile(np.asarray(per_site, dtype=np.float32).reshape(th, tw), (1, w // tw)))

        if offset is not None:
            out += across_row(offset)
        if scale is not None:
            out *= across_row(scale)
        return out.reshape(h, w)

    def per_site(self, per_colour: Any) -> np.ndarray:
        """Spread a per-colour vector ``(3,)`` to a per-site tile (float64, on the host)."""
        return np.asarray(per_colour, dtype=np.float64)[self.pattern_array]

    def colour_map(self, shape: tuple[int, int], xp: Any = np) -> Any:
        """Colour index (``int8``) of every pixel of a mosaic of ``shape``."""
        return self.tile(self.pattern_array, shape, xp)

    def masks(self, shape: tuple[int, int], xp: Any = np) -> Any:
        """Boolean masks of shape ``(3, H, W)``: where R, G and B are sampled."""
        cmap = self.colour_map(shape, xp)
        return xp.stack([cmap == c for c in (R, G, B)])

    def sample(self, rgb: Any) -> Any:
        """Mosaic an ``(H, W, 3)`` image: keep at each pixel the channel its filter passes."""
        xp = array_module(rgb)
        cmap = self.colour_map(rgb.shape[:2], xp)
        return xp.take_along_axis(rgb, cmap[..., None].astype(xp.intp), axis=2)[..., 0]
