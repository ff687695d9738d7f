"""Tiled processing with halos: a frame too large for memory runs through the pipeline in tiles.

The frame is cut into tiles whose cores cover it; each tile is cropped with a halo around its
core (clamped at the frame's edges), run through the stages, and its core written into the
output. The halo is the sum of the stages' stencil supports (:func:`halo_px`), each in its
input's pixels, so every core pixel sees exactly the data it sees in the whole frame, and the
tiled output equals the untiled one bit for bit: at a real edge of the frame the tile reaches
that edge and the stage's own border handling applies, as untiled.

What makes this exact:

- **Stencils**: :func:`halo_px` gives, for each stage and its parameters, how far beyond a tile
  core its input may change the core (the audit below). Cores start and end on the CFA tile (2
  Bayer, 4 Quad Bayer, also after remosaic; 4-pixel blocks for ``yuv_denoise``) and the summed
  halo is rounded up to it, so a crop keeps the CFA phase and the raw stages' site planes.
- **Position**: lens shading, vignette and grain compute in full-frame coordinates
  (``origin`` and ``full_shape`` of :class:`~isp.frame.RawFrame` and :class:`~isp.frame.Image`);
  grain's noise is counter-based (:mod:`isp.rng`), a function of the full-frame position.
- **Frame-level decisions** (white-balance gains and CCT, tuning-table values) come from the
  frame's metadata, the same in every tile; a tiled run checks that every tile made the same
  ones. A stage that needs the whole frame for a statistic (white balance in ``region`` and the
  estimating modes) or that changes the pixel grid (``resize``) runs on the whole frame between
  two tiled segments, from the stitched output of the first: exact, at the cost of holding its
  input and output whole. Stages that cannot be tiled exactly are refused with a
  :class:`~isp.errors.ConfigError` naming the stage and the reason (:func:`tiling_of`).

Stage audit: the halo in input pixels beyond a core aligned as above (``t`` = the CFA tile side
at the stage's input, 2 or 4). Each figure is derived from the stage's filters and checked by
``tests/test_tiling.py``: changing every input pixel beyond it leaves the core bit-exact, and,
where marked *tight*, changing those one pixel nearer does not.

==================  ============================================================================
black_level         0 (per pixel)
defect_correction   ``2t``: a pixel's flag reads its 8 same-site neighbours, its repair reads
                    theirs (their flags); a static defect list is in frame coordinates: refused
lens_shading        0 (per pixel, gain maps at full-frame coordinates)
remosaic            0 for Bayer input (passes through) and ``pixel_swap`` (within the 4x4 tile);
                    ``directional`` 7, tight (line interpolations of 1-2 pixels, chained for
                    G - C and then R - G and B - G, and the 5x5 window of the direction weights;
                    from a 4-aligned core the chain reaches 7)
white_balance       0 for ``as_shot`` and ``manual`` (gains from metadata); ``region`` and the
                    estimating modes: whole frame (a statistic of the frame)
raw_denoise         ``wavelet`` ``2^(levels+1)·t``, tight (the à trous B3 reaches ``2·2^j``
                    same-site pixels at level ``j``, the 5x5 energy window 2 more); ``nlm``
                    ``radius·t + patch_radius``, tight; ``bilateral`` ``max(radius, 1)·t``, tight;
                    0 at strength 0
demosaic            ``bilinear`` 1, ``malvar2004`` 2, ``menon2007`` 8, all tight; ``mlri``
                    refused (scipy's box filters sum with a running sum, whose rounding depends
                    on where a row starts)
color_correction    0 (per pixel, matrix from metadata)
local_tone          0 at strength 0; otherwise refused (window radius from the diagonal of the
                    frame it gets, running-sum box filters, a percentile for ``target_range_ev``)
tone, color_look,   0 (per pixel)
monochrome, oetf,
lut3d, quantize
vignette            0 (per pixel, centre and corners of the full frame)
false_color         8, tight (Sobel and 3x3 maximum: 2; Gaussian of sigma 2 truncated at 4
                    sigma: 8); 0 at strength 0
yuv_denoise         luma ``2·r``; chroma adds ``4·(2·r_blocks + 1)`` (two window means of 4x4-block
                    statistics and the bilinear upsampling between block centres), tight
sharpen             ``int(4·radius_px + 0.5)`` (Gaussian), at least 1 with the overshoot limit, tight
resize              0 when it keeps the size; otherwise whole frame (it resamples the grid)
grain               0 (counter-based noise at full-frame positions, wrapped at the frame's
                    edges as untiled)
==================  ============================================================================

A frame without a noise profile has its noise estimated from the data of the whole frame
(:func:`isp.stages.noise_model.estimate_noise_profile`), which a tile cannot reproduce: defect
correction and raw denoise refuse it.

``remosaic``'s direction weights use ``scipy.ndimage.uniform_filter`` too, whose double-precision
running sum could in principle round a float32 weight differently from where a tile's row
starts; on float32 data the sum's error stays far below float32 resolution, and no difference
has shown in any test (frames up to 12.6 MP).

Config (``pipeline.tiles``): ``size_px`` the side of a tile's core (0: off; ``auto``: tiles only
when the frame's estimated working memory, :data:`WORKING_BYTES_PER_PX`, exceeds ``budget_gb``),
``workers`` (CPU: tiles processed at once by a thread pool, NumPy releasing the GIL in most array
operations; ``auto`` one per core, and then ``size_px: auto`` also tiles a frame of
:data:`PARALLEL_MIN_PIXELS` or more within the budget, two tiles per worker, for speed),
``budget_gb``.

Taps: the outputs of tapped stages are stitched too, each held whole as in an untiled run.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from isp.backend import array_module
from isp.config import param
from isp.errors import ConfigError, StageError
from isp.frame import Image, RawFrame
from isp.pipeline import Pipeline, PipelineResult
from isp.stages import Stage, StageContext
from isp.stages.false_color import CHROMA_LOWPASS_SIGMA_PX
from isp.stages.resize import output_size
from isp.stages.yuv_denoise import CHROMA_BLOCK_PX

__all__ = [
    "TileSettings",
    "StageInput",
    "Tiling",
    "TILING_RULES",
    "tiling_of",
    "halo_px",
    "Segment",
    "plan_segments",
    "tile_windows",
    "WORKING_BYTES_PER_PX",
    "resolve_tile_px",
    "run_tiled",
]

log = logging.getLogger(__name__)

#: Peak working memory of the default pipeline per pixel of the frame it runs on, in bytes, what
#: ``size_px: auto`` plans tiles with: the NumPy backend measured 106 on a full-resolution Quad
#: Bayer frame (IMX989, 4096x3072 window, Leica Authentic; peak RSS during the pipeline less the
#: RSS before it); on the whole 50 MP frame, after the stages' own memory work, the pipeline
#: peaked at 5.09 GB (in the remosaic) over about 1.4 GB held before it, about 73. The larger
#: figure, rounded up, keeps a margin.
WORKING_BYTES_PER_PX = 110
#: ``size_px: auto`` with several workers tiles frames at least this large for speed.
PARALLEL_MIN_PIXELS = 2_000_000
_MAX_WORKERS = 8


@dataclass(frozen=True)
class TileSettings:
    """``pipeline.tiles``: whether and how the pipeline runs in tiles (a pipeline config without
    the key runs the whole frame at once)."""

    size_px: int | str = param(
        0,
        doc="side of a tile's core in pixels (rounded down to the CFA tile); 0: no tiling; "
        "auto: tiles only when the frame's working memory would exceed budget_gb",
    )
    workers: int | str = param(
        1, doc="CPU: tiles processed at once by a thread pool (auto: one per core, up to 8); a GPU runs them one after another"
    )
    budget_gb: float = param(
        4.0, range=(0.05, 4096.0), unit="GB", doc="size_px=auto: the working memory (host or GPU) the pipeline's stages may use"
    )

    def __post_init__(self) -> None:
        if (isinstance(self.size_px, str) and self.size_px != "auto") or (isinstance(self.size_px, int) and self.size_px < 0):
            raise ConfigError(f"pipeline.tiles.size_px={self.size_px!r}: expected a number of pixels, 0 (off) or auto")
        if self.workers != "auto" and (isinstance(self.workers, str) or not 1 <= self.workers <= _MAX_WORKERS):
            raise ConfigError(f"pipeline.tiles.workers={self.workers!r}: expected 1 to {_MAX_WORKERS}, or auto")

    def worker_count(self, on_gpu: bool) -> int:
        """Tiles run at once: 1 on a GPU (one stream); ``auto`` is one per CPU core, up to 8."""
        if on_gpu:
            return 1
        if self.workers == "auto":
            return max(1, min(os.cpu_count() or 1, _MAX_WORKERS))
        return int(self.workers)


@dataclass(frozen=True)
class StageInput:
    """What the audit needs to know of a stage's input.

    Parameters
    ----------
    cfa_tile_px
        Side of the CFA tile of a raw frame (2 Bayer, 4 Quad Bayer); 1 for an image.
    noise_profile
        Whether the frame carries a noise profile (else its noise is estimated from the data).
    full_shape
        ``(height, width)`` of the full frame; ``None`` when not known.
    """

    cfa_tile_px: int = 1
    noise_profile: bool = True
    full_shape: tuple[int, int] | None = None

    @classmethod
    def of(cls, frame: RawFrame | Image) -> StageInput:
        tile = frame.cfa.tile_shape[0] if isinstance(frame, RawFrame) else 1
        return cls(tile, bool(frame.info.noise_profile), tuple(frame.full_shape))


@dataclass(frozen=True)
class Tiling:
    """How one stage, with its parameters, can run on tiles.

    Parameters
    ----------
    halo_px
        How far from an output pixel, in input pixels, the input may change it.
    align_px
        Tile origins must be multiples of this (besides the CFA tile).
    whole_frame
        Why the stage runs on the whole frame between tiled segments; ``None``: it tiles.
    refused
        Why the stage cannot run in a tiled pipeline; ``None``: it can.
    """

    halo_px: int = 0
    align_px: int = 1
    whole_frame: str | None = None
    refused: str | None = None


_PER_PIXEL = Tiling()
_NO_PROFILE = "the frame has no noise profile, and its noise is estimated from the data of the whole frame"


def _per_pixel(params: Any, given: StageInput) -> Tiling:
    return _PER_PIXEL


def _defect_correction(params: Any, given: StageInput) -> Tiling:
    if params.mode != "dynamic":
        return Tiling(refused=f"mode={params.mode}: its defect list is in the frame's coordinates, not a tile's")
    if not given.noise_profile:
        return Tiling(refused=_NO_PROFILE)
    return Tiling(2 * given.cfa_tile_px)


def _remosaic(params: Any, given: StageInput) -> Tiling:
    if given.cfa_tile_px != 4 or params.method == "pixel_swap":
        return _PER_PIXEL  # a Bayer frame passes through; pixel swap stays within each 4x4 tile
    return Tiling(7)


def _white_balance(params: Any, given: StageInput) -> Tiling:
    if params.mode in ("as_shot", "manual"):
        return _PER_PIXEL
    return Tiling(whole_frame=f"mode={params.mode} takes its gains from a statistic of the whole frame")


def _raw_denoise(params: Any, given: StageInput) -> Tiling:
    if params.strength == 0.0:
        return _PER_PIXEL
    if not given.noise_profile:
        return Tiling(refused=_NO_PROFILE)
    t = given.cfa_tile_px
    if params.method == "wavelet":
        return Tiling(2 ** (params.levels + 1) * t)
    if params.method == "nlm":
        return Tiling(params.radius * t + params.patch_radius)
    return Tiling(max(params.radius, 1) * t)


#: The reach of the demosaics that tile exactly.
_DEMOSAIC_HALO_PX = {"bilinear": 1, "malvar2004": 2, "menon2007": 8}


def _demosaic(params: Any, given: StageInput) -> Tiling:
    if params.method not in _DEMOSAIC_HALO_PX:
        return Tiling(
            refused=f"method={params.method} sums its windows with scipy's running-sum box filter, "
            "whose rounding depends on where a row starts"
        )
    return Tiling(_DEMOSAIC_HALO_PX[params.method])


def _local_tone(params: Any, given: StageInput) -> Tiling:
    if params.strength == 0.0:
        return _PER_PIXEL
    return Tiling(
        refused="its window radius is a fraction of the diagonal of the frame it gets, its box filters sum with "
        "a running sum, and target_range_ev takes a percentile of the whole frame"
    )


def _gaussian_radius_px(sigma: float, truncate: float = 4.0) -> int:
    """The radius of scipy's (and CuPy's) ``gaussian_filter`` for ``sigma``."""
    return int(truncate * float(sigma) + 0.5)


def _false_color(params: Any, given: StageInput) -> Tiling:
    if not params.strength:
        return _PER_PIXEL
    return Tiling(max(2, _gaussian_radius_px(CHROMA_LOWPASS_SIGMA_PX)))


def _yuv_denoise(params: Any, given: StageInput) -> Tiling:
    if not params.luma_sigma and not params.chroma_sigma:
        return _PER_PIXEL
    halo = 2 * params.luma_radius_px if params.luma_sigma else 0
    if params.chroma_sigma:
        radius_blocks = (params.chroma_radius_px + CHROMA_BLOCK_PX // 2) // CHROMA_BLOCK_PX
        halo += CHROMA_BLOCK_PX * (2 * radius_blocks + 1)
    # the chroma statistics are means of 4x4 blocks anchored at the image's top-left pixel
    return Tiling(halo, align_px=CHROMA_BLOCK_PX)


def _sharpen(params: Any, given: StageInput) -> Tiling:
    if not params.amount:
        return _PER_PIXEL
    return Tiling(max(_gaussian_radius_px(params.radius_px), 0 if params.overshoot is None else 1))


def _resize(params: Any, given: StageInput) -> Tiling:
    keeps = given.full_shape is not None and output_size(given.full_shape, params) == tuple(given.full_shape)
    return _PER_PIXEL if keeps else Tiling(whole_frame="it resamples the whole frame to another size")


#: The audit of every stage: ``fn(params with tables resolved, StageInput) -> Tiling``. A stage
#: missing here is refused: its stencil support is not known.
TILING_RULES: dict[str, Callable[[Any, StageInput], Tiling]] = {
    "black_level": _per_pixel,
    "defect_correction": _defect_correction,
    "lens_shading": _per_pixel,
    "remosaic": _remosaic,
    "white_balance": _white_balance,
    "raw_denoise": _raw_denoise,
    "demosaic": _demosaic,
    "color_correction": _per_pixel,
    "local_tone": _local_tone,
    "tone": _per_pixel,
    "color_look": _per_pixel,
    "monochrome": _per_pixel,
    "vignette": _per_pixel,
    "oetf": _per_pixel,
    "lut3d": _per_pixel,
    "false_color": _false_color,
    "yuv_denoise": _yuv_denoise,
    "sharpen": _sharpen,
    "resize": _resize,
    "grain": _per_pixel,
    "quantize": _per_pixel,
}


def tiling_of(stage: str, params: Any, given: StageInput) -> Tiling:
    """How ``stage`` with ``params`` (tuning tables resolved) can run on tiles of an input ``given``."""
    rule = TILING_RULES.get(stage)
    if rule is None:
        return Tiling(refused="its stencil support is not in the audit of isp.tiling (TILING_RULES)")
    return rule(params, given)


def halo_px(stage: str, params: Any, cfa_tile_px: int = 1) -> int:
    """Input pixels on each side of an output pixel of ``stage`` that may change it.

    Parameters
    ----------
    stage
        The stage's name.
    params
        Its parameters, tuning tables resolved.
    cfa_tile_px
        Side of the CFA tile of its input (2 Bayer, 4 Quad Bayer; 1 for an image): stages that
        work on same-site planes reach that many pixels per step.

    Raises
    ------
    ConfigError
        The stage cannot run on tiles, or only on the whole frame (see :func:`tiling_of`).

    Examples
    --------
    >>> from isp.stages.raw_denoise import RawDenoiseParams
    >>> halo_px("raw_denoise", RawDenoiseParams(levels=3), cfa_tile_px=2)
    32
    """
    tiling = tiling_of(stage, params, StageInput(cfa_tile_px))
    reason = tiling.refused or tiling.whole_frame
    if reason:
        raise ConfigError(f"pipeline.tiles: stage '{stage}' cannot run on tiles: {reason}")
    return tiling.halo_px


def _after(stage: Stage, given: StageInput, params: Any) -> StageInput:
    """What the stage's output is, as its successor's input."""
    if stage.name == "remosaic":
        return dataclasses.replace(given, cfa_tile_px=min(given.cfa_tile_px, 2))
    if stage.name == "demosaic":
        return dataclasses.replace(given, cfa_tile_px=1)
    if stage.name == "resize" and given.full_shape is not None:
        return dataclasses.replace(given, full_shape=output_size(given.full_shape, params))
    return given


@dataclass
class Segment:
    """Consecutive enabled stages that run together, on tiles or on the whole frame.

    Parameters
    ----------
    stages
        The stages, in order.
    halo_px
        The halo of each tile: the sum of the stages' halos, rounded up to ``align_px``
        (0 for a whole-frame segment).
    align_px
        Tile cores start on multiples of this: the CFA tile and the stages' own alignment.
    whole_frame
        Why the segment's one stage runs on the whole frame; ``None`` for a tiled segment.
    """

    stages: list[Stage]
    halo_px: int = 0
    align_px: int = 1
    whole_frame: str | None = None


def plan_segments(stages: Iterable[Stage], frame: RawFrame | Image) -> list[Segment]:
    """Split the enabled ``stages`` into tiled and whole-frame segments for ``frame``.

    Each stage's parameters are resolved at the frame's capture conditions (the stencils
    depend only on tables by ISO).

    Raises
    ------
    ConfigError
        A stage cannot run in a tiled pipeline; the message names it and why.
    """
    given = StageInput.of(frame)
    segments: list[Segment] = []
    tiled: Segment | None = None
    for stage in stages:
        if not stage.enabled:
            continue
        params = stage.params_for(frame)
        tiling = tiling_of(stage.name, params, given)
        if tiling.refused:
            raise ConfigError(
                f"pipeline.tiles: stage '{stage.name}' cannot run on tiles: {tiling.refused}; "
                "set pipeline.tiles.size_px=0 to run the whole frame at once"
            )
        if tiling.whole_frame:
            segments.append(Segment([stage], whole_frame=tiling.whole_frame))
            tiled = None
        else:
            if tiled is None:
                tiled = Segment([], align_px=given.cfa_tile_px)
                segments.append(tiled)
            tiled.stages.append(stage)
            tiled.halo_px += tiling.halo_px
            tiled.align_px = math.lcm(tiled.align_px, tiling.align_px, given.cfa_tile_px)
        given = _after(stage, given, params)
    for segment in segments:
        segment.halo_px = -(-segment.halo_px // segment.align_px) * segment.align_px
    return segments


def tile_windows(length: int, core_px: int, halo: int) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis: ``(core_start, core_stop, crop_start, crop_stop)`` for each.

    The cores cover ``[0, length)`` in steps of ``core_px``; each crop is its core grown by
    ``halo`` on both sides, clamped to the axis.

    Examples
    --------
    >>> tile_windows(10, 4, 2)
    [(0, 4, 0, 6), (4, 8, 2, 10), (8, 10, 6, 10)]
    """
    return [(start, min(start + core_px, length), max(0, start - halo), min(length, start + core_px + halo)) for start in range(0, length, core_px)]


def _pixels(frame: RawFrame | Image) -> Any:
    return frame.mosaic if isinstance(frame, RawFrame) else frame.data


def resolve_tile_px(settings: TileSettings, stages: Sequence[Stage], frame: RawFrame | Image) -> int:
    """The core size to tile ``frame`` with under ``settings``; 0: run it whole.

    ``size_px: auto`` tiles only when the frame's estimated working memory
    (:data:`WORKING_BYTES_PER_PX`) exceeds ``budget_gb``: with as few tiles as keep each tile's
    working memory, halo included and times ``workers``, within it, made as even as they can be
    so that no tile is a thin sliver. If the pipeline cannot be tiled, ``auto`` runs the frame
    whole (with a warning); an explicit size is then a :class:`~isp.errors.ConfigError` (from
    :func:`run_tiled`).
    """
    if settings.size_px != "auto":
        return int(settings.size_px)
    budget = settings.budget_gb * 1e9
    h, w = frame.shape[:2]
    workers = settings.worker_count(array_module(_pixels(frame)) is not np)
    if h * w * WORKING_BYTES_PER_PX <= budget:
        if workers == 1 or h * w < PARALLEL_MIN_PIXELS:
            return 0
        # within budget but on several cores: tiles for the thread pool, two per worker, when
        # the pipeline can be tiled (the image is the same either way)
        try:
            segments = plan_segments(stages, frame)
        except ConfigError as exc:
            log.debug("pipeline.tiles: running the frame whole on %d cores: %s", workers, exc)
            return 0
        align = math.lcm(*(s.align_px for s in segments)) if segments else 1
        side = math.isqrt(h * w // (2 * workers))
        return max(align, side // align * align)
    try:
        segments = plan_segments(stages, frame)
    except ConfigError as exc:
        log.warning("pipeline.tiles.size_px=auto: running the %dx%d frame whole, beyond budget_gb=%g: %s", h, w, settings.budget_gb, exc)
        return 0
    halo = max((s.halo_px for s in segments), default=0)
    align = math.lcm(*(s.align_px for s in segments)) if segments else 1
    largest = max(align, int(math.sqrt(budget / (WORKING_BYTES_PER_PX * workers))) - 2 * halo)
    # the fewest tiles along each axis, then their even size there; the square tile covers both
    even = [-(-length // -(-length // largest)) for length in (h, w)]
    return max(-(-side // align) * align for side in even)


def run_tiled(
    pipeline: Pipeline,
    frame: RawFrame | Image,
    ctx: StageContext,
    tile_px: int,
    *,
    workers: int = 1,
    taps: Iterable[str] = (),
    start: str | None = None,
    stop: str | None = None,
    time_stages: bool = True,
) -> PipelineResult:
    """Run the stages from ``start`` to ``stop`` on tiles of ``frame``; the result equals
    :meth:`Pipeline.run`'s on the whole frame.

    Parameters
    ----------
    pipeline
        The pipeline.
    frame
        Input of the first stage that runs.
    ctx
        Backend and seed.
    tile_px
        Side of a tile's core in pixels, rounded down to the alignment the stages need (the
        CFA tile at least); the last tile of a row or column takes what is left.
    workers
        CPU: tiles run at once in a thread pool. A GPU runs them one after another.
    taps
        Stages whose (stitched, whole) outputs to return.
    start, stop
        First and last stage to run; default the whole pipeline.
    time_stages
        Record each stage's time, summed over the tiles (device synchronised).

    Raises
    ------
    ConfigError
        A stage cannot run in a tiled pipeline (the message names it and why).
    StageError
        Tiles made different frame-level decisions (a stage took one from its tile's pixels).
    """
    if tile_px < 1:
        raise ConfigError(f"pipeline.tiles.size_px={tile_px}: a tile needs at least one pixel")
    wanted = set(taps)
    first, last = pipeline.span(wanted, start, stop)
    result = PipelineResult(output=frame)
    workers = 1 if ctx.backend.is_gpu else workers
    for segment in plan_segments(pipeline.stages[first : last + 1], frame):
        names = (segment.stages[0].name, segment.stages[-1].name)
        seg_taps = wanted & {s.name for s in segment.stages}
        if segment.whole_frame:
            log.info("tiles: stage '%s' runs on the whole frame: %s", names[0], segment.whole_frame)
            part = pipeline.run(result.output, ctx, taps=seg_taps, start=names[0], stop=names[1], time_stages=time_stages)
        else:
            part = _run_segment(pipeline, result.output, ctx, segment, tile_px, workers, seg_taps, time_stages)
        result.output = part.output
        result.taps.update(part.taps)
        for name, ms in part.times_ms.items():
            result.times_ms[name] = result.times_ms.get(name, 0.0) + ms
        result.tuned.update(part.tuned)
    return result


class _Canvas:
    """The whole-frame arrays a tiled segment's cores are written into, for one frame kind."""

    def __init__(self, template: RawFrame | Image, shape: tuple[int, int], xp: Any):
        self.template = template
        self.arrays = {}
        for name in template.PIXEL_FIELDS:
            tile = getattr(template, name)
            if tile is not None:
                self.arrays[name] = xp.empty((*shape, *tile.shape[2:]), dtype=tile.dtype)

    def put(self, tile: RawFrame | Image, core: tuple[slice, slice], in_tile: tuple[slice, slice]) -> None:
        present = {name for name in tile.PIXEL_FIELDS if getattr(tile, name) is not None}
        if type(tile) is not type(self.template) or present != set(self.arrays) or _decisions(tile) != _decisions(self.template):
            raise StageError(
                "tiles: two tiles of the frame came out differently described (kind, per-pixel fields, white balance, "
                f"colour space): {_decisions(self.template)} and {_decisions(tile)}; a stage decided from its tile's pixels"
            )
        for name, whole in self.arrays.items():
            whole[core] = getattr(tile, name)[in_tile]

    def frame(self, like: RawFrame | Image) -> RawFrame | Image:
        """The stitched frame, positioned as ``like`` (the segment's input) is in the full frame."""
        info = dataclasses.replace(self.template.info, crop_origin=like.info.crop_origin, full_shape=like.info.full_shape)
        return self.template.replace(info=info, **self.arrays)


def _decisions(frame: RawFrame | Image) -> tuple:
    """What must be the same in every tile: the frame's kind and its frame-level values."""
    gains = None if frame.wb_gains is None else tuple(np.asarray(frame.wb_gains, dtype=np.float64).tolist())
    if isinstance(frame, RawFrame):
        described = (frame.cfa.name, frame.domain, frame.white_level, tuple(frame.black_level.ravel().tolist()))
    else:
        described = (frame.space, frame.transfer, str(frame.data.dtype))
    return (type(frame).__name__, gains, frame.cct_k, *described)


def _run_segment(
    pipeline: Pipeline,
    frame: RawFrame | Image,
    ctx: StageContext,
    segment: Segment,
    tile_px: int,
    workers: int,
    taps: set[str],
    time_stages: bool,
) -> PipelineResult:
    core_px = max(segment.align_px, tile_px // segment.align_px * segment.align_px)
    h, w = frame.shape[:2]
    tiles = [(ry, rx) for ry in tile_windows(h, core_px, segment.halo_px) for rx in tile_windows(w, core_px, segment.halo_px)]
    start, stop = segment.stages[0].name, segment.stages[-1].name
    xp = ctx.backend.xp
    canvases: dict[str, _Canvas] = {}
    result = PipelineResult(output=None)

    def run_one(window: tuple[tuple[int, ...], tuple[int, ...]]) -> PipelineResult:
        """Run one tile and write its core; returns its times, tuned values and tap names only,
        so that finished tiles waiting in the pool hold no pixels."""
        (core_y0, core_y1, y0, y1), (core_x0, core_x1, x0, x1) = window
        tile = frame.crop(y0, x0, y1 - y0, x1 - x0)
        part = pipeline.run(tile, ctx, taps=taps, start=start, stop=stop, time_stages=time_stages)
        core = (slice(core_y0, core_y1), slice(core_x0, core_x1))
        in_tile = (slice(core_y0 - y0, core_y1 - y0), slice(core_x0 - x0, core_x1 - x0))
        if not canvases:  # the first tile, run alone, shapes the canvases; a tap that is the output is stitched once
            kept = {name: out for name, out in part.taps.items() if out is not part.output}
            canvases.update({key: _Canvas(out, (h, w), xp) for key, out in {"": part.output, **kept}.items()})
        for key, canvas in canvases.items():
            canvas.put(part.taps[key] if key else part.output, core, in_tile)
        return PipelineResult(output=None, taps=dict.fromkeys(part.taps), times_ms=part.times_ms, tuned=part.tuned)

    def account(part: PipelineResult) -> None:
        for name, ms in part.times_ms.items():
            result.times_ms[name] = result.times_ms.get(name, 0.0) + ms
        if not result.tuned:
            result.tuned = part.tuned

    first = run_one(tiles[0])
    account(first)
    if workers > 1 and len(tiles) > 2:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="isp-tile") as pool:
            for part in pool.map(run_one, tiles[1:]):
                account(part)
    else:
        for window in tiles[1:]:
            account(run_one(window))
    result.output = canvases.pop("").frame(frame)
    result.taps = {name: canvases[name].frame(frame) if name in canvases else result.output for name in first.taps}
    return result
