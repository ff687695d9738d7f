"""Remosaic: a full-resolution Quad Bayer mosaic to a Bayer mosaic of the same size.

A Quad Bayer sensor (Sony IMX989 and its peers) puts each colour filter over a 2×2 quad of
photodiodes, so its full-resolution read-out repeats a 4×4 tile (``quad_RGGB``: ``R R G G`` /
``R R G G`` / ``G G B B`` / ``G G B B``). Phone ISPs rearrange that read-out into an ordinary
Bayer mosaic at the same pixel pitch (``quad_RGGB`` -> ``RGGB``, the same phase for every
layout) before the Bayer pipeline, which is what this stage does.

Input: a RawFrame in the ``linear`` domain (after ``black_level``), white balanced or not, with
a Quad Bayer CFA. Output: a RawFrame in the same domain and balance, float32, same size, whose
CFA is the matching Bayer layout and whose black level is reduced to the 2×2 tile (0 in the
linear domain). A Bayer frame (a binned mode) passes through unchanged, so a pipeline may keep
the stage for every sensor mode. Lens shading is best corrected before this stage, on the
mosaic its gain maps were made for; the per-pixel ``shading_gain`` of a corrected frame stays as
it is (each output pixel sits where an input pixel did, and shading varies slowly), and gain
maps not yet applied (``info.gain_maps``, one per site of the 4×4 tile) move with the colours
so that each still covers the pixels of its colour.

Methods
-------
``pixel_swap``
    The baseline: within each 4×4 tile the samples on a site of the wrong colour change places
    (the middle two rows and columns are exchanged), so that every colour lands on a Bayer site
    of its own colour. Samples already on a site of their colour stay; no value is interpolated,
    and a sample moves by at most one pixel (diagonally for the R and B swapped into the quads'
    inner corners). Fine detail comes out displaced by up to a pixel.
``directional``
    Edge-adaptive interpolation of every site whose colour the quad did not sample, guided by a
    full-resolution green plane. Every row and column of the quad tile reads ``C C G G`` (C = R
    or B), so green is estimated at the C sites along rows and, separately, along columns, as in
    Hamilton and Adams's colour-plane interpolation: the other colour is first interpolated
    linearly at the green sites from the nearest samples in the line, and the colour difference
    G - C is then interpolated linearly at the C sites, where the C sample is added back. The
    two directional estimates are blended with weights ``1 / g²`` from the variation ``g`` of
    each direction's colour difference along that direction, summed over a 5×5 window (the
    a-posteriori decision of Menon et al.: colour differences stay smooth along an edge, not
    across it). R and B are then interpolated as colour differences to that green (C - G),
    first along the lines that hold them, then at the opposite colour's sites from those, with
    the same direction weights. The channels are balanced with the frame's as-shot neutral
    while the colour differences are formed, since only balanced channels have smooth
    differences, and unbalanced again afterwards.

Both methods are array-module code, the NumPy reference; on a GPU the stage runs them as CUDA
kernels (``kernels/remosaic.cu``, :func:`kernel_launch`): pixel swap as a gather, the directional
method as one fused kernel whose blocks keep the mosaic of a tile and every intermediate plane in
shared memory, so that each pixel is read from and written to device memory once. Parity tests
hold the kernels to the reference, borders included.

Measured on the IMX989 model with its lens (``sensor.mode=full`` against the same noise-free
capture with ``sensor.modes.full.cfa=RGGB``, all 24 Kodak images, 8-pixel border excluded, peak
1.0; see ``tests/test_remosaic.py``), mean PSNR of the linear mosaic: ``pixel_swap`` 30.8 dB,
``directional`` 38.4 dB (at least 5.2 dB better on every image); after white balance and a
Malvar-He-Cutler demosaic of both, against the demosaic of the Bayer capture: 29.8 dB and
37.4 dB. Balancing the channels for the colour differences is worth 0.9 dB of that.

References
----------
Sony Semiconductor Solutions, "Quad Bayer Coding": full-resolution output by array conversion
(remosaic) in the sensor or the ISP.
J. F. Hamilton Jr., J. E. Adams Jr., "Adaptive color plane interpolation in single sensor color
electronic camera", US Patent 5,629,734 (1997).
D. Menon, S. Andriani, G. Calvagno, "Demosaicing with directional filtering and a posteriori
decision", IEEE Transactions on Image Processing 16(1), 132-141 (2007).
Q. Yang et al., "MIPI 2022 Challenge on Quad-Bayer Re-mosaic: Dataset and Report", ECCV
Workshops 2022 (arXiv:2209.07060): PSNR of the remosaiced mosaic against the Bayer ground truth.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from isp.backend import array_module, get_backend
from isp.cfa import B, COLOURS, G, R, CFALayout
from isp.config import param
from isp.errors import ConfigError, StageError
from isp.frame import GainMap, RawFrame
from isp.stages.registry import StageContext, register_stage
from isp.stages.white_balance import gains_from_neutral

__all__ = [
    "REMOSAIC_METHODS",
    "RemosaicParams",
    "bayer_layout",
    "as_bayer",
    "pixel_swap",
    "directional",
    "kernel_launch",
    "remosaic",
    "remosaic_stage",
]

#: The tile's rows (and columns) in the order pixel swap reads them: exchanging the middle two
#: turns every ``C C G G`` line of a Quad Bayer tile into the ``C G C G`` of a Bayer one.
_SWAP = (0, 2, 1, 3)

#: Side of the window over which the variation of each direction's colour difference is
#: summed. Windows of 3, 5, 7 and 9 pixels measured 38.17, 38.35, 38.34 and 38.31 dB mean mosaic
#: PSNR on the 24 Kodak images (the set-up of the module docstring).
_DIRECTION_WINDOW_PX = 5

#: Keeps the direction weights finite where a colour difference does not vary at all (a flat
#: area, where both directions then weigh the same); far below the variation of any detail.
_FLAT = 1e-6


def bayer_layout(cfa: CFALayout) -> CFALayout:
    """The Bayer layout that a Quad Bayer layout remosaics to; a Bayer layout itself.

    Examples
    --------
    >>> bayer_layout(CFALayout.from_name("quad_GRBG")).name
    'GRBG'
    """
    if cfa.is_bayer:
        return cfa
    if cfa.tile_shape != (4, 4):
        raise StageError(f"remosaic: CFA {cfa.name!r} is neither a Bayer nor a Quad Bayer layout")
    return CFALayout.from_name("".join(COLOURS[cfa.pattern[y][x]] for y in (0, 2) for x in (0, 2)))


def _bayer_tile(cfa: CFALayout) -> np.ndarray:
    """The colour each site of the 4×4 Quad Bayer tile has after remosaicing."""
    bayer = bayer_layout(cfa).pattern_array
    return np.tile(bayer, (2, 2))


def _tiles(a: Any) -> Any:
    """View an ``(H, W)`` array as ``(H/4, 4, W/4, 4)`` tiles (splitting axes needs no copy)."""
    h, w = a.shape
    return a.reshape(h // 4, 4, w // 4, 4)


def _tile_rows(a: Any) -> Any:
    """View an ``(H, W)`` array as ``(H/4, 4, W)``: rows grouped by their row in the tile."""
    h, w = a.shape
    return a.reshape(h // 4, 4, w)


def _site(tile: np.ndarray, width: int, xp: Any) -> Any:
    """A per-site ``(4, 4)`` host table repeated along ``width`` columns, ``(1, 4, width)`` on the
    device, to broadcast against :func:`_tile_rows`. Whole rows rather than ``(1, 4, 1, 4)``
    tiles keep the innermost loop long on the CPU."""
    dtype = bool if tile.dtype == bool else np.float32
    return xp.asarray(np.tile(np.asarray(tile, dtype=dtype), (1, width // 4)).reshape(1, 4, width))


def _where_sites(sites: np.ndarray, a: Any, b: Any) -> Any:
    """``a`` on the tile sites marked in ``sites`` and ``b`` elsewhere, both ``(H, W)``."""
    xp = array_module(a)
    return xp.where(_site(sites, a.shape[1], xp), _tile_rows(a), _tile_rows(b)).reshape(a.shape)


def pixel_swap(mosaic: Any, cfa: CFALayout, channel_gains: np.ndarray | None = None) -> Any:
    """Move the samples within each 4×4 tile onto Bayer sites of their colour (see the module docstring).

    ``channel_gains`` is accepted for the common method signature and not needed: a
    permutation does not mix colours.
    """
    swapped = _tiles(mosaic)[:, list(_SWAP)][..., list(_SWAP)].reshape(mosaic.shape)
    # The swap exchanges the two greens on the quads' inner corners, which are already on green
    # Bayer sites: they stay, and the result is still a permutation of the tile.
    return _where_sites(_bayer_tile(cfa) == cfa.pattern_array, mosaic, swapped)


def _line_weights(known: np.ndarray, axis: int) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Linear interpolation along ``axis`` from the nearest known sites, as per-site weights.

    ``known`` marks the ``(4, 4)`` tile sites holding a value. Returns ``{offset: (4, 4)
    weights}`` (a known site keeps its value, weight 1 at offset 0) and the sites that get a
    value: all but those whose tile line holds no known site.
    """
    period = known.shape[axis]
    weights: dict[int, np.ndarray] = {}
    filled = np.zeros(known.shape, dtype=bool)

    def add(offset: int, y: int, x: int, weight: float) -> None:
        weights.setdefault(offset, np.zeros(known.shape))[y, x] = weight

    for y in range(known.shape[0]):
        for x in range(known.shape[1]):
            line, here = (known[y, :], x) if axis == 1 else (known[:, x], y)
            if line[here]:
                add(0, y, x, 1.0)
                filled[y, x] = True
                continue
            before = next((k for k in range(1, period) if line[(here - k) % period]), None)
            after = next((k for k in range(1, period) if line[(here + k) % period]), None)
            if before is None:
                continue
            add(-before, y, x, after / (before + after))
            add(after, y, x, before / (before + after))
            filled[y, x] = True
    return weights, filled


def _mirror_quads(a: Any, pad: int, axis: int) -> Any:
    """Pad ``pad`` (at most 2) pixels at both ends of ``axis`` by mirroring about the centre of
    the outermost quad (pixel ``-k`` takes ``k + 1``): unlike NumPy's mirror modes this keeps
    every padded pixel's colour right in a Quad Bayer mosaic."""
    xp = array_module(a)
    n = a.shape[axis]

    def take(start: int, stop: int) -> Any:
        index = [slice(None)] * 2
        index[axis] = slice(start, stop if stop >= 0 else None, -1)  # a negative stop would wrap
        return a[tuple(index)]

    return xp.concatenate([take(pad + 1, 1), a, take(n - 3, n - 3 - pad)], axis=axis)


def _interpolate_along(values: Any, known: np.ndarray, axis: int) -> tuple[Any, np.ndarray]:
    """``values`` at the ``known`` tile sites, linearly interpolated along ``axis`` at the others.

    Returns the plane and the tile sites that got a value (see :func:`_line_weights`).
    """
    weights, filled = _line_weights(known, axis)
    xp = array_module(values)
    pad = max(abs(k) for k in weights)
    padded = _mirror_quads(values, pad, axis)
    h, w = values.shape

    shifted = {  # the tiles of ``values`` moved by each offset along ``axis``
        offset: _tiles(padded[:, pad + offset : pad + offset + w] if axis == 1 else padded[pad + offset : pad + offset + h, :])
        for offset in weights
    }
    out = xp.empty_like(values)
    out_tiles = _tiles(out)
    term = xp.empty_like(out_tiles[:, 0, :, 0])
    # Site by site with only the terms of non-zero weight, written in place: the same sums as
    # weighting whole shifted planes (adding a zero term changes nothing) without frame-sized
    # temporaries, whose page faults took a quarter of the CPU time at 12 MP.
    for y, x in np.ndindex(*known.shape):
        site = out_tiles[:, y, :, x]
        taps = [(offset, np.float32(tile[y, x])) for offset, tile in weights.items() if tile[y, x] != 0.0]
        if not taps:
            site[...] = 0.0
            continue
        (offset, weight), *rest = taps
        xp.multiply(shifted[offset][:, y, :, x], weight, out=site)
        for offset, weight in rest:
            xp.multiply(shifted[offset][:, y, :, x], weight, out=term)
            site += term
    return out, filled


def _ndimage(xp: Any) -> Any:
    return get_backend("numpy" if xp is np else "cupy").ndimage


def _horizontal_weight(diff_h: Any, diff_v: Any) -> Any:
    """Weight of the horizontal estimate at every pixel (the vertical one gets the rest): each
    direction weighs ``1 / g²``, ``g`` the variation of its colour difference along it."""
    xp = array_module(diff_h)
    ndi = _ndimage(xp)
    padded_h, padded_v = _mirror_quads(diff_h, 1, 1), _mirror_quads(diff_v, 1, 0)
    size = _DIRECTION_WINDOW_PX
    g_h = ndi.uniform_filter(xp.abs(padded_h[:, 2:] - padded_h[:, :-2]), size, mode="reflect")
    g_v = ndi.uniform_filter(xp.abs(padded_v[2:, :] - padded_v[:-2, :]), size, mode="reflect")
    inverse_h = 1.0 / (g_h + _FLAT) ** 2
    inverse_v = 1.0 / (g_v + _FLAT) ** 2
    return inverse_h / (inverse_h + inverse_v)


def directional(mosaic: Any, cfa: CFALayout, channel_gains: np.ndarray | None = None) -> Any:
    """Edge-adaptive remosaic guided by a full-resolution green (see the module docstring).

    ``channel_gains`` ``(3,)`` balance the channels while colour differences are interpolated;
    ``None`` when the mosaic is already balanced.
    """
    m = mosaic if channel_gains is None else cfa.apply_per_site(mosaic, scale=cfa.per_site(channel_gains))
    pattern = cfa.pattern_array
    green_site = pattern == G

    # G - C along rows and along columns: at the green sites from the other colour interpolated
    # there, at the C sites interpolated from those.
    green_minus = {}
    for axis in (1, 0):
        other, _ = _interpolate_along(m, ~green_site, axis)
        green_minus[axis], _ = _interpolate_along(m - other, green_site, axis)
    weight_h = _horizontal_weight(green_minus[1], green_minus[0])
    weight_v = 1.0 - weight_h
    green = _where_sites(green_site, m, m + weight_h * green_minus[1] + weight_v * green_minus[0])

    target = _bayer_tile(cfa)
    out = _where_sites(target == G, green, m)
    colour_minus_green = m - green
    for colour in (R, B):
        own = pattern == colour
        # First along the lines holding the colour (the green sites beside it), then at the
        # opposite colour's sites from the green sites around them.
        along_h, in_rows = _interpolate_along(colour_minus_green, own, 1)
        along_v, in_cols = _interpolate_along(colour_minus_green, own, 0)
        near = _where_sites(in_rows, along_h, along_v)
        second_h, _ = _interpolate_along(near, in_rows | in_cols, 1)
        second_v, _ = _interpolate_along(near, in_rows | in_cols, 0)
        difference = _where_sites(in_rows | in_cols, near, weight_h * second_h + weight_v * second_v)
        out = _where_sites((target == colour) & ~own, green + difference, out)
    if channel_gains is not None:
        bayer = bayer_layout(cfa)
        out = bayer.apply_per_site(out, scale=bayer.per_site(1.0 / np.asarray(channel_gains, dtype=np.float64)))
    # Samples already on a Bayer site of their colour stay exactly as captured.
    return _where_sites(target == pattern, mosaic, out)


#: Output tile of one block of ``quad_directional`` as (rows, columns): ``TILE_H`` and ``TILE_W``
#: of ``kernels/remosaic.cu``, which sizes its shared-memory planes by them.
_DIRECTIONAL_TILE_PX = (16, 32)

#: Threads per block (x: columns, y: rows) of both kernels.
_BLOCK = (32, 8)

#: CUDA kernel of each method in ``kernels/remosaic.cu``.
_KERNELS = {"pixel_swap": "quad_pixel_swap", "directional": "quad_directional"}


def kernel_launch(
    method: str, shape: tuple[int, int], cfa: CFALayout, channel_gains: np.ndarray | None = None
) -> tuple[str, tuple[int, int], tuple[int, int], tuple[np.int32 | np.float32, ...]]:
    """Kernel name, grid, block and scalar arguments of ``method``'s CUDA kernel for a Quad Bayer
    mosaic of ``shape`` (``(H, W)``).

    The kernel's arguments are ``(mosaic, out, *scalars)``: ``height, width, red_row, red_col``
    (the red quad's place among the 2×2 quads), and for ``directional`` the float32 gains and
    their inverses, R, G, B, computed as the reference computes them (1 when ``channel_gains``
    is ``None``). The CPU emulation tests launch the kernels with this same configuration.
    """
    h, w = shape
    ((red_row, red_col),) = bayer_layout(cfa).colour_sites(R)
    scalars: tuple[np.int32 | np.float32, ...] = (np.int32(h), np.int32(w), np.int32(red_row), np.int32(red_col))
    if method == "directional":
        gains = np.ones(3) if channel_gains is None else np.asarray(channel_gains, dtype=np.float64)
        scalars += (*(np.float32(g) for g in gains), *(np.float32(1.0 / g) for g in gains))
        tile_h, tile_w = _DIRECTIONAL_TILE_PX
    else:
        tile_h, tile_w = _BLOCK[1], _BLOCK[0]  # one thread per pixel
    grid = ((w + tile_w - 1) // tile_w, (h + tile_h - 1) // tile_h)  # x: columns, y: rows
    return _KERNELS[method], grid, _BLOCK, scalars


def _remosaic_cuda(method: str, mosaic: Any, cfa: CFALayout, channel_gains: np.ndarray | None) -> Any:
    """CuPy path: ``method``'s kernel from ``kernels/remosaic.cu``, one launch."""
    backend = get_backend("cupy")
    xp = backend.xp
    function, grid, block, scalars = kernel_launch(method, mosaic.shape, cfa, channel_gains)
    src = xp.ascontiguousarray(mosaic, dtype=xp.float32)
    out = xp.empty_like(src)
    backend.kernel("remosaic", function)(grid, block, (src, out, *scalars))
    return out


def _on_device(method: str, reference: Callable[[Any, CFALayout, np.ndarray | None], Any]) -> Callable[..., Any]:
    """``reference`` for NumPy mosaics, the method's CUDA kernel for CuPy ones."""

    def run(mosaic: Any, cfa: CFALayout, channel_gains: np.ndarray | None = None) -> Any:
        if array_module(mosaic) is np:
            return reference(mosaic, cfa, channel_gains)
        return _remosaic_cuda(method, mosaic, cfa, channel_gains)

    run.__doc__ = reference.__doc__
    return run


#: Remosaic methods by name: ``fn(float32 mosaic (H, W), quad cfa, channel_gains or None) ->
#: (H, W)`` float32 Bayer mosaic (layout :func:`bayer_layout`) on the mosaic's device.
#: NumPy mosaics run the array-module functions of the same name, CuPy mosaics their kernels.
REMOSAIC_METHODS: dict[str, Callable[[Any, CFALayout, np.ndarray | None], Any]] = {
    name: _on_device(name, reference) for name, reference in (("pixel_swap", pixel_swap), ("directional", directional))
}


def remosaic(mosaic: Any, cfa: CFALayout, method: str = "directional", channel_gains: np.ndarray | None = None) -> Any:
    """Remosaic a Quad Bayer mosaic to the Bayer layout :func:`bayer_layout` gives.

    Parameters
    ----------
    mosaic
        ``(H, W)`` float array (NumPy or CuPy), linear, white level 1.0; H and W multiples of 4.
    cfa
        Its Quad Bayer layout (``quad_RGGB``, ...).
    method
        A key of :data:`REMOSAIC_METHODS`.
    channel_gains
        R, G, B gains that make a neutral grey (the white-balance gains) when ``mosaic`` is not
        balanced; ``None`` when it is.

    Returns
    -------
    ``(H, W)`` Bayer mosaic on the same device, in the same balance as ``mosaic``; samples that
    already sit on a Bayer site of their colour are unchanged, and nothing is clipped.

    Examples
    --------
    >>> quad = CFALayout.from_name("quad_RGGB")
    >>> tile = np.arange(16, dtype=np.float32).reshape(4, 4)
    >>> remosaic(tile, quad, "pixel_swap").astype(int).tolist()
    [[0, 2, 1, 3], [8, 10, 6, 11], [4, 9, 5, 7], [12, 14, 13, 15]]
    """
    try:
        fn = REMOSAIC_METHODS[method]
    except KeyError:
        raise ConfigError(f"remosaic method {method!r} is not known; choose one of {', '.join(REMOSAIC_METHODS)}") from None
    if cfa.tile_shape != (4, 4):
        raise StageError(f"remosaic needs a Quad Bayer mosaic, got CFA {cfa.name!r}")
    cfa.check_shape(mosaic.shape)
    return fn(mosaic.astype(array_module(mosaic).float32, copy=False), cfa, channel_gains)


def _bayer_gain_maps(gain_maps: tuple[GainMap, ...]) -> tuple[GainMap, ...]:
    """Lens-shading maps of the Quad Bayer tile's sites moved to the sites of the same colour
    that :func:`pixel_swap` moves those sites' samples to, so that each map still applies to the
    pixels of its colour. Maps that do not step by the 4×4 tile stay as they are."""
    moved = []
    for gain_map in gain_maps:
        if (gain_map.row_pitch, gain_map.col_pitch) == (4, 4):
            row, col = gain_map.top % 4, gain_map.left % 4
            gain_map = dataclasses.replace(gain_map, top=gain_map.top - row + _SWAP[row], left=gain_map.left - col + _SWAP[col])
        moved.append(gain_map)
    return tuple(moved)


@dataclass(frozen=True)
class RemosaicParams:
    method: str = param(
        "directional",
        choices=tuple(REMOSAIC_METHODS),
        doc=(
            "pixel_swap: move samples onto Bayer sites of their colour; "
            "directional: edge-adaptive interpolation guided by a full-resolution green"
        ),
    )


@register_stage("remosaic", RemosaicParams, consumes="raw")
def remosaic_stage(frame: RawFrame, params: RemosaicParams, ctx: StageContext) -> RawFrame:
    """Rearrange a full-resolution Quad Bayer mosaic into a Bayer mosaic; a Bayer frame passes through."""
    frame.require("remosaic", domain="linear")
    if frame.cfa.is_bayer:
        return frame
    gains = None
    if frame.wb_gains is None:
        try:
            gains = gains_from_neutral(frame.info.as_shot_neutral)
        except StageError as exc:
            raise StageError(f"stage 'remosaic' balances the channels with the as-shot neutral: {exc}") from None
    return as_bayer(frame, remosaic(frame.mosaic, frame.cfa, params.method, gains))


def as_bayer(frame: RawFrame, mosaic: Any) -> RawFrame:
    """``frame`` with its remosaiced ``mosaic``: the Bayer CFA, and the black levels and
    lens-shading maps of the Bayer sites."""
    # Each Bayer site takes the black level of the quad site bayer_layout reads its colour from.
    black = frame.black_level[np.ix_((0, 2), (0, 2))]
    info = dataclasses.replace(frame.info, gain_maps=_bayer_gain_maps(frame.info.gain_maps))
    return frame.replace(mosaic=mosaic, cfa=bayer_layout(frame.cfa), black_level=black, info=info)
