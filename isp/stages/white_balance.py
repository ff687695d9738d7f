"""White balance on the mosaic: per-colour gains so that a neutral surface has R = G = B.

Input and output: a RawFrame in the ``linear`` domain (white level 1.0). Balancing on the
mosaic, before demosaicing, matters: gradient-corrected demosaics such as Malvar-He-Cutler
assume balanced channels.

Modes
-----
``as_shot``
    The frame's as-shot neutral (what the camera or the simulation recorded).
``manual``
    Gains given in the tuning.
``region``
    Make the mean of a rectangle (a grey card) neutral.
``grey_world``
    Buchsbaum 1980: the scene's average reflectance is grey, so the mean camera RGB is the
    illuminant's colour.
``white_patch``
    Land's retinex "white patch", made robust as the "bright pixels" of Joze et al. 2012: the
    mean RGB of the brightest tiles (R + G + B at or above the ``percentile``), not each
    channel's maximum, stands for the white. A few hot pixels or glints cannot decide it, and
    the channels come from the same surfaces, which a per-channel maximum or percentile does
    not ensure.
``grey_edge``
    Van de Weijer, Gevers and Gijsenij 2007: the average edge is grey. The illuminant is the
    Minkowski ``p``-norm of each channel's gradient magnitude, after Gaussian smoothing with
    ``sigma`` (their first-order ``e^{1,p,sigma}``); ``p = 1`` averages the edges, a large
    ``p`` follows the strongest ones. The defaults, ``p = 6`` and ``sigma = 1`` tile (2 pixels
    on Bayer), weigh strong edges over noise.

The three estimating modes work on one RGB triple per CFA tile (the mean of the tile's sites of
each colour), so they apply to Bayer and Quad Bayer alike, and leave out tiles with a clipped
site (the clipped channel no longer measures the light, so a saturated highlight turns magenta
after balancing) and tiles whose every channel is dark (read noise and black-level error
dominate them). ``grey_edge`` also leaves out every tile whose gradient filter reaches a clipped
tile, so that a clipped highlight's edge does not count; an edge into a dark surface is a real
edge and counts (on its bright side).

Prior
-----
``prior = planckian`` moves an estimated white to the nearest white near the Planckian
(black-body) locus: its colour temperature is limited to ``prior_cct_range_k`` and its distance
from the locus to ``prior_max_duv`` (Δuv in CIE 1960 UCS, Ohno 2013). Real light sources lie
close to the locus, and a statistic fooled by a dominant coloured surface (a lawn, a blue wall)
usually pulls the estimate off it, mostly along the green-magenta axis. It needs the frame's
colour calibration to map camera RGB to chromaticity.

Every mode sets ``cct_k`` on the returned frame: the correlated colour temperature of the white
the gains imply, from the frame's colour calibration (``None`` without one).

References
----------
- G. Buchsbaum, "A spatial processor model for object colour perception", J. Franklin Inst.
  310(1), 1980.
- E. H. Land, J. J. McCann, "Lightness and retinex theory", JOSA 61(1), 1971.
- H. R. Vaezi Joze, M. S. Drew, G. D. Finlayson, P. A. Troncoso Rey, "The role of bright pixels
  in illumination estimation", Color and Imaging Conference 2012.
- J. van de Weijer, T. Gevers, A. Gijsenij, "Edge-based color constancy", IEEE TIP 16(9), 2007.
- Y. Ohno, "Practical use and calculation of CCT and Duv", LEUKOS 10(1), 2014.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from isp import colorimetry
from isp.backend import Backend, array_module, to_host
from isp.cfa import COLOURS, CFALayout
from isp.config import param
from isp.errors import ConfigError, StageError
from isp.frame import CaptureInfo, RawFrame
from isp.stages.black_level import per_site_affine
from isp.stages.color_correction import interpolate_calibration
from isp.stages.registry import StageContext, register_stage

__all__ = [
    "WhiteBalanceParams",
    "white_balance",
    "gains_from_neutral",
    "region_means",
    "region_neutral",
    "tile_rgb",
    "excluded_tiles",
    "AWB_METHODS",
    "estimate_neutral",
    "planckian_neutral",
    "white_cct",
]


@dataclass(frozen=True)
class WhiteBalanceParams:
    mode: str = param(
        "as_shot",
        choices=("as_shot", "manual", "region", "grey_world", "white_patch", "grey_edge"),
        doc="as_shot: the frame's as-shot neutral; manual: the gains below; region: make the mean of a region (a grey card) "
        "neutral; grey_world, white_patch, grey_edge: estimate the illuminant from the frame",
    )
    gains: list[float] = param([1.0, 1.0, 1.0], range=(0.01, 64.0), shape=(3,), doc="manual R, G, B gains (mode=manual)")
    region: list[int] | None = param(
        None, shape=(4,), range=(0, None), unit="px", doc="[top, left, bottom, right] of a neutral region in mosaic pixels (mode=region)"
    )
    clip_highlights: bool = param(
        True,
        doc="clip to the white level after the gains so that saturated highlights stay neutral instead of turning magenta",
    )
    clip_threshold: float = param(
        0.95, range=(0.05, 1.0), unit="× white level", doc="estimating modes: a tile with a site at or above this is clipped and left out"
    )
    dark_threshold: float = param(
        0.01, range=(0.0, 0.5), unit="× white level", doc="estimating modes: a tile whose every channel is below this is left out"
    )
    min_valid_fraction: float = param(
        0.01, range=(0.0, 1.0), doc="estimating modes: the least fraction of the frame's CFA tiles that must remain to estimate from"
    )
    percentile: float = param(
        99.0, range=(50.0, 100.0), unit="%", doc="white_patch: the tiles whose R + G + B is at or above this percentile are averaged as the white"
    )
    minkowski_p: float = param(6.0, range=(1.0, 64.0), doc="grey_edge: Minkowski norm of the gradient magnitudes (1: mean, large: max)")
    sigma: float = param(
        1.0, range=(0.0, 16.0), unit="CFA tiles", doc="grey_edge: Gaussian smoothing before the derivative; 0 takes central differences"
    )
    prior: str = param(
        "none", choices=("none", "planckian"), doc="planckian: move the estimated white to the nearest one near the black-body locus"
    )
    prior_max_duv: float = param(0.006, range=(0.0, 0.05), doc="prior=planckian: largest distance Δuv (CIE 1960) of the white from the locus")
    prior_cct_range_k: list[float] = param(
        [2000.0, 12000.0], shape=(2,), range=(1000.0, 100000.0), unit="K", doc="prior=planckian: [lowest, highest] colour temperature"
    )

    def __post_init__(self) -> None:
        low, high = self.prior_cct_range_k
        if not low < high:
            raise ConfigError(f"white_balance.prior_cct_range_k={list(self.prior_cct_range_k)}: the lowest must be below the highest")


def gains_from_neutral(neutral: np.ndarray) -> np.ndarray:
    """Gains ``(3,)`` that map the camera neutral to grey, the smallest gain being 1.

    Examples
    --------
    >>> gains_from_neutral(np.array([0.5, 1.0, 0.8])).tolist()
    [2.0, 1.0, 1.25]
    """
    neutral = np.asarray(neutral, dtype=np.float64)
    if neutral.shape != (3,) or not np.all(np.isfinite(neutral)) or np.any(neutral <= 0):
        raise StageError(f"white_balance: as-shot neutral {neutral.tolist()} must be three positive numbers")
    return neutral.max() / neutral


def region_means(frame: RawFrame, region: list[int] | tuple[int, ...], where: str = "white_balance.region") -> np.ndarray:
    """Mean R, G and B ``(3,)`` of a rectangle ``[top, left, bottom, right]`` of the mosaic (host float64).

    The rectangle is shrunk to the whole CFA tiles inside it, so that every colour is sampled in
    its own proportion and nothing outside the rectangle is. ``where`` names the rectangle in
    error messages.
    """
    top, left, bottom, right = (int(v) for v in region)
    h, w = frame.shape
    th, tw = frame.cfa.tile_shape
    if not (0 <= top < bottom <= h and 0 <= left < right <= w) or bottom - top < th or right - left < tw:
        raise StageError(f"{where}={list(region)} is not a rectangle of at least one CFA tile inside the {h}x{w} frame")
    top, left = top + (-top) % th, left + (-left) % tw
    bottom, right = top + (bottom - top) // th * th, left + (right - left) // tw * tw
    if bottom <= top or right <= left:
        raise StageError(f"{where}={list(region)} holds no whole CFA tile ({th}x{tw})")
    rgb, _ = tile_rgb(frame.mosaic[top:bottom, left:right], frame.cfa)
    return to_host(rgb.reshape(-1, 3).mean(axis=0, dtype=array_module(rgb).float64))


def region_neutral(frame: RawFrame, region: list[int] | None) -> np.ndarray:
    """Mean R, G and B of a rectangle of the mosaic: the camera neutral if the region is grey."""
    if region is None:
        raise StageError("white_balance: mode=region needs white_balance.region=[top, left, bottom, right]")
    means = region_means(frame, region)
    if means.min() <= 0:
        raise StageError(f"white_balance.region={list(region)}: a colour has no signal there (means {means.tolist()})")
    return means


def tile_rgb(mosaic: Any, cfa: CFALayout) -> tuple[Any, Any]:
    """One RGB triple per CFA tile, and the brightest site of each tile.

    Parameters
    ----------
    mosaic
        ``(H, W)`` linear mosaic (NumPy or CuPy), a whole number of tiles.
    cfa
        Its layout.

    Returns
    -------
    rgb
        ``(H/th, W/tw, 3)`` float32: each colour's mean over the tile's sites of that colour.
    peak
        ``(H/th, W/tw)`` float32: the largest site value of the tile, to find clipping.

    Examples
    --------
    >>> quad = np.tile(np.repeat(np.repeat([[1.0, 2.0], [2.0, 3.0]], 2, 0), 2, 1), (1, 2))
    >>> rgb, peak = tile_rgb(quad, CFALayout.from_name("quad_RGGB"))
    >>> rgb.shape, rgb[0, 0].tolist(), float(peak.max())
    ((1, 2, 3), [1.0, 2.0, 3.0], 3.0)
    """
    xp = array_module(mosaic)
    blocks = cfa.blocks(xp.asarray(mosaic, dtype=xp.float32))
    th, tw = cfa.tile_shape
    # site by site rather than reductions over the tile axes: NumPy reduces small strided axes slowly
    peak = blocks[:, 0, :, 0]
    for y in range(th):
        for x in range(tw):
            if y or x:
                peak = xp.maximum(peak, blocks[:, y, :, x])
    channels = []
    for colour in range(len(COLOURS)):
        sites = cfa.colour_sites(colour)
        total = blocks[:, sites[0][0], :, sites[0][1]]
        for y, x in sites[1:]:
            total = total + blocks[:, y, :, x]
        channels.append(total * np.float32(1.0 / len(sites)))
    return xp.stack(channels, axis=-1), peak


def excluded_tiles(rgb: Any, peak: Any, white_level: float, params: WhiteBalanceParams) -> tuple[Any, Any]:
    """Boolean ``(h, w)`` masks of the clipped tiles (a site at or above ``clip_threshold``) and
    the dark ones (every channel below ``dark_threshold``)."""
    clipped = peak >= np.float32(params.clip_threshold * white_level)
    xp = array_module(rgb)
    brightest = xp.maximum(xp.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    dark = brightest < np.float32(params.dark_threshold * white_level)
    return clipped, dark


def _grey_world(rgb: Any, clipped: Any, dark: Any, params: WhiteBalanceParams, backend: Backend) -> Any:
    return rgb[~(clipped | dark)].mean(axis=0, dtype=backend.xp.float64)


def _white_patch(rgb: Any, clipped: Any, dark: Any, params: WhiteBalanceParams, backend: Backend) -> Any:
    xp = backend.xp
    kept = rgb[~(clipped | dark)]
    # the brightest tiles as a whole (R + G + B), not each channel's own percentile: a channel's
    # top values can come from different surfaces and from its noise, which biases the ratios
    brightness = kept.sum(axis=1)
    bright = brightness >= xp.percentile(brightness, params.percentile)
    return kept[bright].mean(axis=0, dtype=xp.float64)


def _edge_reach(sigma: float) -> int:
    """Tiles the derivative filter reaches on each side (scipy's default truncation at 4 sigma)."""
    return int(4.0 * sigma + 0.5) if sigma > 0 else 1


def _derivative(rgb: Any, axis: int, sigma: float, backend: Backend) -> Any:
    ndi = backend.ndimage
    if sigma == 0:
        return ndi.correlate1d(rgb, backend.xp.asarray([-0.5, 0.0, 0.5], dtype=rgb.dtype), axis=axis, mode="nearest")
    across = 1 - axis
    smooth = ndi.gaussian_filter1d(rgb, sigma, axis=across, order=0, mode="nearest")
    return ndi.gaussian_filter1d(smooth, sigma, axis=axis, order=1, mode="nearest")


def _grey_edge(rgb: Any, clipped: Any, dark: Any, params: WhiteBalanceParams, backend: Backend) -> Any:
    xp = backend.xp
    magnitude = xp.sqrt(_derivative(rgb, 0, params.sigma, backend) ** 2 + _derivative(rgb, 1, params.sigma, backend) ** 2)
    # An edge into a dark surface is a real edge, but one whose filter reaches a clipped tile is not;
    # a dark tile's own gradient is mostly noise.
    reach = 2 * _edge_reach(params.sigma) + 1
    near_clipped = backend.ndimage.maximum_filter(clipped.astype(xp.uint8), size=reach, mode="nearest").astype(bool)
    edges = magnitude[~(near_clipped | dark)]
    if edges.shape[0] == 0:
        raise StageError(f"white_balance: mode=grey_edge has no tile that is not dark and {reach // 2} tiles away from every clipped one")
    # scale to the largest gradient first so that a large p neither underflows nor overflows float32
    scale = xp.maximum(edges.max(axis=0), xp.float32(np.finfo(np.float32).tiny))
    p = float(params.minkowski_p)
    return ((edges / scale) ** np.float32(p)).mean(axis=0, dtype=xp.float64) ** (1.0 / p) * scale


#: Illuminant estimators by mode: ``fn(tile_rgb (h, w, 3), clipped (h, w), dark (h, w), params,
#: backend)`` returning the illuminant's camera RGB ``(3,)`` on the device, up to scale.
AWB_METHODS: dict[str, Callable[[Any, Any, Any, WhiteBalanceParams, Backend], Any]] = {
    "grey_world": _grey_world,
    "white_patch": _white_patch,
    "grey_edge": _grey_edge,
}


def estimate_neutral(frame: RawFrame, params: WhiteBalanceParams, backend: Backend) -> np.ndarray:
    """The camera RGB of the scene white estimated by ``params.mode``, max 1 (host float64).

    Raises
    ------
    StageError
        Too few tiles are neither clipped nor dark, or a channel's statistic is not positive.
    """
    rgb, peak = tile_rgb(frame.mosaic, frame.cfa)
    clipped, dark = excluded_tiles(rgb, peak, frame.white_level, params)
    total = clipped.size
    kept = total - int((clipped | dark).sum())
    if kept == 0 or kept < params.min_valid_fraction * total:
        raise StageError(
            f"white_balance: mode={params.mode} keeps {kept} of {total} CFA tiles ({kept / total:.2%}), fewer than "
            f"min_valid_fraction={params.min_valid_fraction:g}; the frame is mostly clipped (clip_threshold="
            f"{params.clip_threshold:g}) or dark (dark_threshold={params.dark_threshold:g})"
        )
    estimate = to_host(AWB_METHODS[params.mode](rgb, clipped, dark, params, backend)).astype(np.float64)
    if not np.all(np.isfinite(estimate)) or np.any(estimate <= 0):
        raise StageError(
            f"white_balance: mode={params.mode} estimates the white as {estimate.tolist()}; every channel must be positive "
            "(the frame has no signal, or no edges, in a colour)"
        )
    return estimate / estimate.max()


def planckian_neutral(info: CaptureInfo, neutral: np.ndarray, max_duv: float, cct_range_k: tuple[float, float]) -> np.ndarray:
    """The camera neutral nearest ``neutral`` whose white lies near the Planckian locus.

    The white's chromaticity (through the frame's calibration) is written as CCT and Δuv
    (Ohno 2013); the CCT is clipped to ``cct_range_k`` and Δuv to ``±max_duv``, and the result
    mapped back to camera RGB (max 1). A white inside those limits is returned as it is. With
    two calibrations the matrix depends on the white, so the mapping is repeated to a fixed
    point.
    """
    def limited(xyz_to_camera: np.ndarray) -> tuple[np.ndarray, bool]:
        xyz = np.linalg.solve(xyz_to_camera, neutral)
        cct, duv = colorimetry.xy_to_cct_duv(colorimetry.XYZ_to_xy(xyz))
        within = np.array([np.clip(cct, *cct_range_k), np.clip(duv, -max_duv, max_duv)])
        return within, bool(within[0] == cct and within[1] == duv)

    neutral = np.asarray(neutral, dtype=np.float64)
    target = neutral / neutral.max()
    calibration, _ = interpolate_calibration(info.color_matrices, target)
    cct_duv, plausible = limited(calibration.xyz_to_camera)
    if plausible:
        return target
    for _ in range(10):
        xy = colorimetry.cct_duv_to_xy(cct_duv)
        moved = calibration.xyz_to_camera @ colorimetry.xy_to_XYZ(xy)
        moved = moved / moved.max()
        converged = np.max(np.abs(moved - target)) < 1e-9
        target = moved
        if converged:
            break
        calibration, _ = interpolate_calibration(info.color_matrices, target)
        cct_duv, _ = limited(calibration.xyz_to_camera)
    if not np.all(np.isfinite(target)) or np.any(target <= 0):
        raise StageError(f"white_balance: prior=planckian maps the neutral {np.round(neutral, 4).tolist()} to no usable white")
    return target


def white_cct(info: CaptureInfo, neutral: np.ndarray) -> float | None:
    """CCT (K) of the white whose camera RGB is ``neutral``; ``None`` without a colour
    calibration, or when the calibration maps the neutral to no chromaticity (manual gains far
    from any light)."""
    if not info.color_matrices:
        return None
    with np.errstate(all="ignore"):
        _, cct = interpolate_calibration(info.color_matrices, np.asarray(neutral, dtype=np.float64))
    return cct if cct is not None and np.isfinite(cct) else None


@register_stage("white_balance", WhiteBalanceParams, consumes="raw")
def white_balance(frame: RawFrame, params: WhiteBalanceParams, ctx: StageContext) -> RawFrame:
    """Multiply each CFA colour by its white-balance gain."""
    frame.require("white_balance", domain="linear")
    if frame.wb_gains is not None:
        raise StageError("stage 'white_balance': the frame is already white balanced")
    if params.mode == "as_shot":
        gains = gains_from_neutral(frame.info.as_shot_neutral)
    elif params.mode == "manual":
        gains = np.asarray(params.gains, dtype=np.float64)
    elif params.mode == "region":
        gains = gains_from_neutral(region_neutral(frame, params.region))
    else:
        neutral = estimate_neutral(frame, params, ctx.backend)
        if params.prior == "planckian":
            if not frame.info.color_matrices:
                raise StageError("white_balance: prior=planckian needs the frame's colour calibration, and it has none")
            neutral = planckian_neutral(frame.info, neutral, params.prior_max_duv, tuple(params.prior_cct_range_k))
        gains = gains_from_neutral(neutral)
    ceiling = frame.white_level if params.clip_highlights else None
    balanced = per_site_affine(frame.mosaic, frame.cfa, scale=frame.cfa.per_site(gains), ceiling=ceiling)
    return frame.replace(mosaic=balanced, wb_gains=gains, cct_k=white_cct(frame.info, 1.0 / gains))
