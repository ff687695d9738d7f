"""Menon, Andriani and Calvagno (2007) demosaicing: directional filtering and a posteriori decision.

DDFAPD interpolates green twice at every red and blue site, once along the row and once along
the column, with the 5-tap filter ``[-1/4, 1/2, 1/2, 1/2, -1/4]``; it keeps the direction in
which the colour difference ``R - G`` (or ``B - G``) varies least over a 5×5 window, then fills
red and blue from colour differences along the chosen direction. The refining step (on here, as
in colour-demosaicing's ``demosaicing_CFA_Bayer_Menon2007``) re-estimates green from 3-tap
averages of the colour differences, then red and blue again.

Domain: a Bayer mosaic ``(H, W)``, linear, white level 1.0, ideally white balanced (the colour
differences are smallest on balanced data). Returns ``(H, W, 3)`` float32 RGB on the mosaic's
device, not clipped.

Every estimate depends only on the pixel's site in the 2×2 tile, so the algorithm is written as
array expressions over strided views of the four sites of the tile, each touching
only the pixels it is defined at. Borders are mirrored without repeating the edge
(``d c b | a b c d``), so a border pixel gets the value it would have in the interior of the
mirrored mosaic. Working memory peaks at about eight float32 frames, the output included.

References
----------
D. Menon, S. Andriani, G. Calvagno, "Demosaicing with directional filtering and a posteriori
decision", IEEE Transactions on Image Processing 16(1), 132-141, 2007, doi:10.1109/TIP.2006.884928.

colour-demosaicing, ``colour_demosaicing/bayer/demosaicing/menon2007.py`` (BSD-3-Clause):
the reference this implementation is checked against.
"""

from __future__ import annotations

from typing import Any

from isp.backend import array_module
from isp.cfa import R, CFALayout
from isp.errors import StageError

__all__ = ["demosaic_menon2007"]

# Sites of the 2×2 tile of a _PaddedBayer, which always has red at even rows and columns.
_RED, _GREEN_IN_RED_ROW, _GREEN_IN_BLUE_ROW, _BLUE = (0, 0), (0, 1), (1, 0), (1, 1)

_HORIZONTAL, _VERTICAL = (0, 1), (1, 0)


#: Mirrored rim, beyond the one-pixel phase shift. The chain of estimates (green, then red and
#: blue, then both refined) reaches 8 pixels into it: with a 6-pixel rim the outer 2 pixels of
#: the result change. 10 leaves a margin; the border test against a larger mirrored mosaic
#: holds it to account.
_PAD = 10
#: The largest offset one expression reads.
_REACH = 2


class _PaddedBayer:
    """A Bayer mosaic mirrored outwards so that red lies at even rows and columns.

    Mirroring without repeating the edge keeps the CFA phase at any width, so padding one pixel
    more at the top or left turns each of the four Bayer phases into RGGB, and the algorithm,
    written for RGGB, serves all four. :meth:`at` gives strided views of one site of the tile.
    """

    def __init__(self, mosaic: Any, cfa: CFALayout) -> None:
        if not cfa.is_bayer:
            raise StageError(f"demosaic: CFA {cfa.name!r} is not a Bayer layout")
        self.xp = array_module(mosaic)
        ((red_row, red_col),) = cfa.colour_sites(R)
        self.top, self.left = _PAD + red_row, _PAD + red_col
        self.height, self.width = mosaic.shape
        self.mosaic = self.xp.pad(
            mosaic.astype(self.xp.float32, copy=False), ((self.top, self.top), (self.left, self.left)), mode="reflect"
        )
        self.shape = self.mosaic.shape

    def at(self, a: Any, site: tuple[int, int], dy: int = 0, dx: int = 0) -> Any:
        """View of padded-frame array ``a`` holding, for every pixel of ``site``, its neighbour at ``(dy, dx)``."""
        y, x = site
        return a[_REACH + y + dy : self.shape[0] - _REACH + dy : 2, _REACH + x + dx : self.shape[1] - _REACH + dx : 2]

    def zeros(self) -> Any:
        """A float32 padded-frame array of zeros."""
        return self.xp.zeros(self.shape, dtype=self.xp.float32)

    def channels(self) -> Any:
        """``(3, H', W')`` float32 planes of the padded frame, each starting as the mosaic."""
        return self.xp.repeat(self.mosaic[None], 3, axis=0)

    def crop(self, planes: Any) -> Any:
        """The ``(H, W, 3)`` image of the original mosaic from ``(3, H', W')`` padded planes."""
        window = planes[:, self.top : self.top + self.height, self.left : self.left + self.width]
        return self.xp.ascontiguousarray(self.xp.moveaxis(window, 0, -1))


def demosaic_menon2007(mosaic: Any, cfa: CFALayout) -> Any:
    """Demosaic a Bayer mosaic with DDFAPD (Menon et al. 2007), refining step included.

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
    >>> import numpy as np
    >>> flat = np.full((6, 8), 0.25, dtype=np.float32)
    >>> float(np.abs(demosaic_menon2007(flat, CFALayout.from_name("GBRG")) - 0.25).max())
    0.0
    """
    grid = _PaddedBayer(mosaic, cfa)
    at, m = grid.at, grid.mosaic
    rgb = grid.channels()
    green = rgb[1]
    horizontal = _choose_direction(grid, green)
    _chroma_at_green(grid, rgb)
    _chroma_at_chroma(grid, rgb, horizontal, include_centre=False)
    # Refining step: green again from the mean colour difference over the pixel and its two
    # neighbours along the chosen direction, then red and blue again from the new green.
    for site, own in ((_RED, rgb[0]), (_BLUE, rgb[2])):
        along_h = _sum_along(grid, own, green, site, _HORIZONTAL)
        along_v = _sum_along(grid, own, green, site, _VERTICAL)
        at(green, site)[...] = at(m, site) - grid.xp.where(horizontal[site], along_h, along_v) * (1.0 / 3.0)
    _chroma_at_green(grid, rgb)
    _chroma_at_chroma(grid, rgb, horizontal, include_centre=True)
    return grid.crop(rgb)


def _choose_direction(grid: _PaddedBayer, green: Any) -> dict[tuple[int, int], Any]:
    """Fill green at red and blue sites; return, per such site, where the row estimate won."""
    xp, at, m = grid.xp, grid.at, grid.mosaic
    estimates = {}
    gradients = {}
    for direction in (_HORIZONTAL, _VERTICAL):
        dy, dx = direction
        difference = grid.zeros()
        for site in (_RED, _BLUE):
            sampled = at(m, site)
            g = 0.5 * (at(m, site, -dy, -dx) + sampled + at(m, site, dy, dx)) - 0.25 * (
                at(m, site, -2 * dy, -2 * dx) + at(m, site, 2 * dy, 2 * dx)
            )
            estimates[site, direction] = g
            at(difference, site)[...] = sampled - g
        # How much the colour difference changes between same-colour samples along the direction.
        change = grid.zeros()
        for site in (_RED, _BLUE):
            at(change, site)[...] = xp.abs(at(difference, site) - at(difference, site, 2 * dy, 2 * dx))
        del difference
        for site in (_RED, _BLUE):
            gradients[site, direction] = _classifier_sum(grid, change, site, direction)
        del change
    horizontal = {}
    for site in (_RED, _BLUE):
        horizontal[site] = gradients[site, _VERTICAL] >= gradients[site, _HORIZONTAL]
        at(green, site)[...] = xp.where(horizontal[site], estimates[site, _HORIZONTAL], estimates[site, _VERTICAL])
    return horizontal


def _classifier_sum(grid: _PaddedBayer, change: Any, site: tuple[int, int], direction: tuple[int, int]) -> Any:
    """The paper's 5×5 weighted sum of colour-difference changes about ``site`` along ``direction``.

    Written for the row direction (the column direction is its transpose): weight 3 on the two
    changes that span the pixel in its own row, 1 on the matching pairs two rows above and
    below, and 1 on the changes that span the pixel's column one row above and one below
    (between samples of the other chroma colour).
    """

    def c(along: int, across: int) -> Any:
        dy, dx = (across, along) if direction == _HORIZONTAL else (along, across)
        return grid.at(change, site, dy, dx)

    total = 3.0 * (c(0, 0) + c(-2, 0))
    for along, across in ((0, 2), (-2, 2), (0, -2), (-2, -2), (-1, 1), (-1, -1)):
        total += c(along, across)
    return total


def _sum_along(grid: _PaddedBayer, own: Any, green: Any, site: tuple[int, int], direction: tuple[int, int]) -> Any:
    """``own - green`` summed over the pixel at ``site`` and its two neighbours along ``direction``."""
    at = grid.at
    dy, dx = direction
    total = at(own, site) - at(green, site)
    for sign in (-1, 1):
        total += at(own, site, sign * dy, sign * dx) - at(green, site, sign * dy, sign * dx)
    return total


def _chroma_at_green(grid: _PaddedBayer, rgb: Any) -> None:
    """Red and blue at green sites: green plus the mean colour difference of the two samples of that colour."""
    at, m = grid.at, grid.mosaic
    green = rgb[1]
    # Red neighbours lie along the row at a green site of a red row, along the column in a blue row.
    layout = {_GREEN_IN_RED_ROW: {0: _HORIZONTAL, 2: _VERTICAL}, _GREEN_IN_BLUE_ROW: {0: _VERTICAL, 2: _HORIZONTAL}}
    for site, directions in layout.items():
        for channel, (dy, dx) in directions.items():
            before = at(m, site, -dy, -dx) - at(green, site, -dy, -dx)
            after = at(m, site, dy, dx) - at(green, site, dy, dx)
            at(rgb[channel], site)[...] = at(m, site) + 0.5 * (before + after)


def _chroma_at_chroma(grid: _PaddedBayer, rgb: Any, horizontal: dict, include_centre: bool) -> None:
    """Blue at red sites and red at blue sites from the mean ``R - B`` along the chosen direction.

    The neighbours along either direction are green sites, where both are estimated; with
    ``include_centre`` the pixel's own current estimate joins the mean (the refining step).
    """
    xp, at, m = grid.xp, grid.at, grid.mosaic
    red_minus_blue = rgb[0] - rgb[2]
    weight = 1.0 / 3.0 if include_centre else 0.5
    means = {}
    for site in (_RED, _BLUE):
        along = []
        for dy, dx in (_HORIZONTAL, _VERTICAL):
            total = at(red_minus_blue, site, -dy, -dx) + at(red_minus_blue, site, dy, dx)
            if include_centre:
                total += at(red_minus_blue, site)
            along.append(total)
        means[site] = xp.where(horizontal[site], along[0], along[1]) * weight
    del red_minus_blue
    at(rgb[2], _RED)[...] = at(m, _RED) - means[_RED]
    at(rgb[0], _BLUE)[...] = at(m, _BLUE) + means[_BLUE]
