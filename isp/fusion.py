"""The fast pipeline fused into one GPU pass: raw uint16 mosaic in, RGB8 out.

``kernels/fast_pipeline.cu`` computes black_level, white_balance, demosaic (malvar2004),
color_correction, tone, vignette (optional), oetf (sRGB or Display P3) and quantize (8 bits)
in one kernel that reads each raw sample once and writes each output byte once. The unfused
stages stay the reference: every constant the kernel uses is taken from the stages' own code,
run on probe frames of a few pixels that carry the real frame's metadata (so tuning tables,
white-balance gains, the CCT and the colour matrix are exactly the ones the stages would use),
and the result carries the metadata the unfused stages give the output Image.

After the colour matrix, each of the stages tone (per channel), oetf (sRGB) and quantize maps
one channel value to another without looking at the others, and each is non-decreasing, so
their composition is fully described by 255 thresholds: the least float32 input that reaches
each 8-bit code (:func:`code_thresholds`). They are found by bisection over the float32
values, evaluating the stages themselves, so the kernel reproduces their rounding exactly with
no transcendental function per pixel: a table of buckets gives a code to start from and one or
two comparisons with the thresholds finish it (:func:`code_buckets`). When the tone works on
luminance, a vignette runs, or the output is Display P3, the kernel computes the tone curve
from the stage's table, in the stage's order of float32 operations, and the thresholds cover
the sRGB curve and quantize alone.

White balance: as_shot and manual gains are known from the metadata. ``region`` runs
black_level and white_balance on the smallest crop of whole CFA tiles holding the region (the
same samples, so the same gains). The estimating modes (grey_world, white_patch, grey_edge)
need statistics of the whole frame: black_level and white_balance run unfused first, and the
fused pass uses the gains and CCT they chose.

:func:`plan_fusion` decides; when it cannot fuse it says why at DEBUG level and the pipeline
runs stage by stage.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from isp.backend import array_module, get_backend
from isp.cfa import CFALayout
from isp.colorimetry import SRGB_TO_XYZ
from isp.config import tabled_fields
from isp.errors import IspError, StageError
from isp.frame import CaptureInfo, Image, RawFrame
from isp.stages import STAGES, Stage, StageContext
from isp.stages.oetf import OetfParams, srgb_to
from isp.stages.quantize import QuantizeParams
from isp.stages.remosaic import as_bayer, pixel_swap
from isp.stages.tone import LUT_SIZE, ToneParams, _curve_table, _is_identity

__all__ = [
    "FUSED_STAGES",
    "KERNEL_SOURCE",
    "KERNEL_FUNCTION",
    "FusedPlan",
    "plan_fusion",
    "fusion_refusal",
    "code_thresholds",
    "code_buckets",
    "bucket_of",
]

log = logging.getLogger(__name__)

#: The stages the kernel computes, in the order they must run; ``vignette`` may be absent.
FUSED_STAGES = ("black_level", "white_balance", "demosaic", "color_correction", "tone", "vignette", "oetf", "quantize")
_WITHOUT_VIGNETTE = tuple(name for name in FUSED_STAGES if name != "vignette")

KERNEL_SOURCE = "fast_pipeline"
KERNEL_FUNCTION = "fast_pipeline"

#: Threads per block (x: quads along a row, y: quad rows); each thread writes a 2x2 quad.
_BLOCK = (32, 8)

# Layout of the kernel's float32 `tables` argument (kernels/fast_pipeline.cu, C_* and below).
_C_OFFSET, _C_SCALE, _C_GAIN, _C_WHITE, _C_CCM = 0, 4, 8, 12, 13
_C_EXPOSURE, _C_TONE_BLACK, _C_TONE_SCALE, _C_TONE_LIFT, _C_LUMA = 22, 23, 24, 25, 26
_C_VIG_STRENGTH, _C_VIG_EXPONENT, _C_VIG_CY, _C_VIG_CX, _C_VIG_NORM, _C_VIG_TOP, _C_VIG_LEFT = 29, 30, 31, 32, 33, 34, 35
_C_P3, _C_CODE_BASE, _C_CODE_SCALE, _C_CODE_FIXUPS = 36, 45, 46, 47
_CODES = 64  # 257 thresholds
_BUCKETS = 384
_BUCKET_COUNT = 4096
_TONE_TABLE = _BUCKETS + _BUCKET_COUNT
_TONE_TABLE_SIZE = 4096  # TONE_LAST + 1 in the kernel

# Bits of the kernel's `flags` argument.
_F_CLIP_NEGATIVE, _F_CLIP_HIGHLIGHTS, _F_DEMOSAIC_CLIP = 1, 2, 4
_F_TONE_SHIFT = 3
_TONE_FOLDED, _TONE_CLIP, _TONE_RGB, _TONE_LUMINANCE = 0, 1, 2, 3
_F_VIGNETTE, _F_P3 = 32, 64

#: White-balance modes whose gains come from the metadata alone.
_GAINS_FROM_METADATA = ("as_shot", "manual")
_MIN_SIDE_PX = 4  # the kernel's mirrored 5x5 window needs two pixels on each side


@dataclass(frozen=True, eq=False)
class FusedPlan:
    """Everything one fused launch needs, derived on the host from the stages' own code.

    Parameters
    ----------
    label
        The entry of :attr:`isp.pipeline.PipelineResult.times_ms`, ``"fused(first..last)"``.
    last_stage
        Name of the last fused stage: a tap on it is the fused output.
    shape
        ``(height, width)`` of the mosaic.
    red_site
        ``(row, col)`` of red in the 2x2 Bayer tile.
    flags
        The kernel's ``flags`` bits.
    tables
        The kernel's float32 ``tables``: per-site constants, matrices, thresholds, tone table.
    template
        What the unfused stages return for this frame, with a probe's data: the fused result
        is ``template.replace(data=rgb8)``.
    tuned
        Tuning-table values per stage, as :attr:`isp.pipeline.PipelineResult.tuned` holds them.
    quad_cfa
        The Quad Bayer layout of the input when a ``pixel_swap`` remosaic comes first: its DN
        are moved onto Bayer sites before the kernel reads them (:meth:`kernel_mosaic`).
    """

    label: str
    last_stage: str
    shape: tuple[int, int]
    red_site: tuple[int, int]
    flags: int
    tables: np.ndarray
    template: Image
    tuned: dict[str, dict[str, Any]] = field(default_factory=dict)
    quad_cfa: CFALayout | None = None

    @property
    def grid(self) -> tuple[int, int]:
        """Blocks along x (columns) and y (rows): one thread per 2x2 quad."""
        h, w = self.shape
        return (-(-w // (2 * _BLOCK[0])), -(-h // (2 * _BLOCK[1])))

    @property
    def block(self) -> tuple[int, int]:
        return _BLOCK

    def arguments(self, mosaic: Any, out: Any, xp: Any = np) -> list[Any]:
        """The kernel's arguments in order, ``tables`` moved to ``xp``'s device.

        ``mosaic`` is the ``(H, W)`` uint16 mosaic (C-contiguous, 4-byte aligned) and ``out``
        the ``(H, W, 3)`` uint8 output, both on that device.
        """
        h, w = self.shape
        ry, rx = self.red_site
        return [mosaic, out, np.int32(h), np.int32(w), np.int32(ry), np.int32(rx), np.int32(self.flags), xp.asarray(self.tables)]

    def kernel_mosaic(self, mosaic: Any) -> Any:
        """The Bayer uint16 mosaic the kernel reads (C-contiguous): ``mosaic`` itself, or a Quad
        Bayer mosaic's samples moved onto Bayer sites of their colour.

        Moving DN before the black level is taken off equals the unfused path (black level,
        then ``pixel_swap``) because the planner only allows it when every site of a colour has
        the same black level; it costs one more pass (2 bytes read and written per pixel).
        """
        xp = array_module(mosaic)
        if self.quad_cfa is not None:
            mosaic = pixel_swap(mosaic, self.quad_cfa)
        return xp.ascontiguousarray(mosaic)

    def run(self, frame: RawFrame, ctx: StageContext) -> Image:
        """Launch the kernel on ``frame``'s mosaic; the Image the unfused stages would return."""
        backend = ctx.backend
        xp = backend.xp
        mosaic = self.kernel_mosaic(frame.mosaic)
        if mosaic.data.ptr % 4:  # the kernel loads pairs of samples as 32-bit words
            mosaic = mosaic.copy()
        out = xp.empty((*self.shape, 3), dtype=xp.uint8)
        backend.kernel(KERNEL_SOURCE, KERNEL_FUNCTION)(self.grid, self.block, tuple(self.arguments(mosaic, out, xp)))
        return self.template.replace(data=out)


def plan_fusion(stages: Sequence[Stage], frame: Any, ctx: StageContext, *, taps: Iterable[str] = (), gpu: bool | None = None) -> FusedPlan | None:
    """The fused plan for running ``stages`` on ``frame``, or ``None`` (logged at DEBUG) when
    they must run one by one.

    Parameters
    ----------
    stages
        The stages the run covers, in order (disabled ones included; they are skipped).
    frame
        The run's input.
    ctx
        Backend and seed; an estimating white balance runs its statistics pass here.
    taps
        Stage names whose outputs the run must return: only the last fused stage's can be.
    gpu
        Whether the kernel can run; default ``ctx.backend.is_gpu``. Tests pass ``True`` to
        plan on the CPU and launch the kernel in an emulator.
    """
    plan = _plan(stages, frame, ctx, taps, ctx.backend.is_gpu if gpu is None else gpu)
    if isinstance(plan, str):
        log.debug("pipeline: running stage by stage, not fused: %s", plan)
        return None
    return plan


#: White-balance modes whose gains come from the frame's metadata alone: a plan made for one
#: frame holds for every frame with the same metadata.
_METADATA_WB_MODES = ("as_shot", "manual")
_METADATA_ARRAY_MAX_BYTES = 1 << 20


def plan_key(stages: Sequence[Stage], frame: Any, ctx: StageContext, taps: Iterable[str] = ()) -> Hashable | None:
    """A key under which a plan for ``frame`` can be reused, or ``None`` when it cannot.

    A plan depends on the stages (fixed for a pipeline), the run's seed and backend, the taps
    and every field of the frame but its pixels: when the white balance takes its gains from
    metadata, frames that differ only in their pixels (a burst, a sweep over seeds, a batch)
    share one plan, so the host's per-frame planning (CCT and calibration interpolation, about
    8 ms) is paid once. An estimating white balance reads the pixels: no key.
    """
    balance = next((s for s in stages if s.enabled and s.name == "white_balance"), None)
    if not isinstance(frame, RawFrame) or balance is None or balance.params.mode not in _METADATA_WB_MODES:
        return None
    metadata = _metadata_key({f.name: getattr(frame, f.name) for f in fields(frame) if f.name != "mosaic"})
    if metadata is None:
        return None
    return (ctx.backend.name, ctx.seed, tuple(sorted(taps)), tuple(frame.mosaic.shape), str(frame.mosaic.dtype), metadata)


def _metadata_key(value: Any) -> Hashable | None:
    """A hashable image of metadata (dataclasses, arrays, tuples, scalars); ``None`` for device arrays."""
    if value is None or isinstance(value, (str, int, float, bool, np.generic)):
        return value
    if isinstance(value, np.ndarray):
        # calibration tables and gain maps are small; a per-pixel array is not metadata
        return (value.shape, value.dtype.str, value.tobytes()) if value.nbytes <= _METADATA_ARRAY_MAX_BYTES else None
    if is_dataclass(value):
        parts = tuple((f.name, _metadata_key(getattr(value, f.name))) for f in fields(value))
        return None if any(part is None and getattr(value, name) is not None for name, part in parts) else (type(value).__name__, parts)
    if isinstance(value, (tuple, list)):
        parts = tuple(_metadata_key(v) for v in value)
        return None if any(p is None and v is not None for p, v in zip(parts, value, strict=True)) else parts
    if isinstance(value, dict):
        parts = tuple((k, _metadata_key(v)) for k, v in sorted(value.items()))
        return None if any(p is None and value[k] is not None for k, p in parts) else parts
    return None  # an array on a device, or something unknown: never guess


def fusion_refusal(stages: Sequence[Stage], frame: Any, ctx: StageContext, *, taps: Iterable[str] = (), gpu: bool | None = None) -> str | None:
    """Why :func:`plan_fusion` would not fuse this run (``None`` when it would); same arguments."""
    plan = _plan(stages, frame, ctx, taps, ctx.backend.is_gpu if gpu is None else gpu)
    return plan if isinstance(plan, str) else None


def _plan(stages: Sequence[Stage], frame: Any, ctx: StageContext, taps: Iterable[str], gpu: bool) -> FusedPlan | str:
    if not gpu:
        return f"backend {ctx.backend.name} has no GPU for the fused kernel"
    enabled = [s for s in stages if s.enabled]
    remosaic = enabled[1] if len(enabled) > 1 and enabled[1].name == "remosaic" else None
    enabled = [s for s in enabled if s is not remosaic]
    names = tuple(s.name for s in enabled)
    if names not in (FUSED_STAGES, _WITHOUT_VIGNETTE):
        return (
            f"the stages to run are ({', '.join(names)}); the fused kernel runs exactly ({', '.join(FUSED_STAGES)}), "
            "vignette optional, remosaic optional after black_level, all enabled, none cut off by pipeline.start or pipeline.stop"
        )
    inner = sorted(set(taps) & set(names[:-1]))
    if inner:
        return f"pipeline.taps asks for {', '.join(inner)}, inside the fused span"
    if not isinstance(frame, RawFrame):
        return f"the input is {type(frame).__name__}, not a raw frame"
    if frame.domain != "dn":
        return f"the raw frame is in the {frame.domain!r} domain, not 'dn'"
    if np.dtype(frame.mosaic.dtype) != np.uint16:
        return f"the mosaic is {np.dtype(frame.mosaic.dtype)}, not uint16"
    quad = None
    if not frame.cfa.is_bayer and remosaic is not None:
        swapped = _swapped_quad(frame, remosaic)
        if isinstance(swapped, str):
            return swapped
        quad, frame = frame.cfa, swapped
    if not frame.cfa.is_bayer:
        return f"CFA {frame.cfa.name} is not a Bayer layout"
    if frame.wb_gains is not None:
        return "the frame is already white balanced"
    if min(frame.shape) < _MIN_SIDE_PX:
        return f"the {frame.shape[0]}x{frame.shape[1]} mosaic is smaller than {_MIN_SIDE_PX}x{_MIN_SIDE_PX}"
    try:
        plan = _build(dict(zip(names, enabled, strict=True)), frame, ctx)
        return dataclasses.replace(plan, quad_cfa=quad) if quad is not None else plan
    except _Refused as exc:
        return str(exc)
    except IspError as exc:  # the unfused run raises it again, from the stage, in context
        return f"a stage refuses this frame ({exc})"


def _swapped_quad(frame: RawFrame, remosaic: Stage) -> RawFrame | str:
    """A Quad Bayer DN frame with its samples on Bayer sites, as the kernel will read it (its
    metadata as the ``remosaic`` stage leaves it), or why it cannot be fused."""
    if remosaic.params.method != "pixel_swap":
        return f"remosaic.method={remosaic.params.method!r}; the fused kernel reads a Quad Bayer frame through pixel_swap only"
    if frame.cfa.tile_shape != (4, 4):
        return f"CFA {frame.cfa.name} is neither Bayer nor Quad Bayer"
    pattern = frame.cfa.pattern_array
    uneven = [c for c in np.unique(pattern) if np.ptp(frame.black_level[pattern == c]) > 0]
    if uneven:
        return "the Quad Bayer black levels differ between sites of one colour: samples cannot move before the black level is taken off"
    return as_bayer(frame, pixel_swap(frame.mosaic, frame.cfa))


class _Refused(Exception):
    """A stage's parameters ask for something the kernel does not compute."""


def _build(stages: dict[str, Stage], frame: RawFrame, ctx: StageContext) -> FusedPlan:
    """Run the stages on probe frames to take their constants; the plan for ``frame``."""
    host = StageContext(get_backend("numpy"), ctx.seed)
    tuned: dict[str, dict[str, Any]] = {}

    def params(name: str, entering: Any) -> Any:
        stage = stages[name]
        resolved = stage.params_for(entering)
        tabled = tabled_fields(stage.params)
        if tabled:
            tuned[name] = {n: getattr(resolved, n) for n in tabled}
        return resolved

    def run(name: str, entering: Any, resolved: Any, on: StageContext = host) -> Any:
        return stages[name].spec.fn(entering, resolved, on)

    # raw domain: metadata probes, except where the white balance needs the pixels
    black_params = params("black_level", frame)
    linear = run("black_level", frame.replace(mosaic=np.zeros((4, 4), np.uint16), shading_gain=None), black_params)
    wb_params = params("white_balance", linear)
    if wb_params.mode in _GAINS_FROM_METADATA:
        balanced = run("white_balance", linear, wb_params)
    elif wb_params.mode == "region":
        balanced = _balance_region(stages, frame, black_params, wb_params, ctx)
    else:
        balanced = run("white_balance", run("black_level", frame, black_params, ctx), wb_params, ctx)
    balanced = balanced.replace(mosaic=np.zeros((4, 4), np.float32), shading_gain=None)

    demosaic_params = params("demosaic", balanced)
    if demosaic_params.method != "malvar2004":
        raise _Refused(f"demosaic.method={demosaic_params.method!r}; the fused kernel computes malvar2004")
    image = run("demosaic", balanced, demosaic_params)
    cc_params = params("color_correction", image)
    # the stage's matrix, as float32, from its action on the unit vectors
    image = run("color_correction", image.replace(data=np.eye(3, dtype=np.float32)[None]), cc_params)
    ccm = np.ascontiguousarray(image.data[0].T, dtype=np.float32)

    tone_params = params("tone", image)
    # f(0), the black lift of the luminance mode: the stage's output for a black pixel
    lift = float(run("tone", image.replace(data=np.zeros((1, 1, 3), np.float32)), tone_params).data[0, 0, 0])
    image = run("tone", image, tone_params)
    vignette_params = None
    if "vignette" in stages:
        vignette_params = params("vignette", image)
        image = run("vignette", image, vignette_params)
        if vignette_params.strength == 0.0:  # the stage passes the image through
            vignette_params = None
    oetf_params = params("oetf", image)
    image = run("oetf", image, oetf_params)
    quantize_params = params("quantize", image)
    if quantize_params.bits != 8:
        raise _Refused(f"quantize.bits={quantize_params.bits}; the fused kernel writes 8 bits")
    template = run("quantize", image, quantize_params)

    identity = _is_identity(tone_params)
    folded = (identity or tone_params.mode == "rgb") and vignette_params is None and oetf_params.space == "srgb"
    tone_mode = _TONE_FOLDED if folded else _TONE_CLIP if identity else _TONE_RGB if tone_params.mode == "rgb" else _TONE_LUMINANCE
    tone_table = None
    if tone_mode in (_TONE_RGB, _TONE_LUMINANCE):
        tone_table, b, w = _curve_table(tone_params)
        if tone_table.shape != (_TONE_TABLE_SIZE,):
            raise _Refused(f"the tone stage's table has {LUT_SIZE} entries; the fused kernel's has {_TONE_TABLE_SIZE}")
    encoder = _encoder(tone_params if folded else None, frame.info.baseline_exposure_ev if folded else 0.0, quantize_params)

    # every value below is cast to float32 as the stages cast it
    tables = np.zeros(_TONE_TABLE + (_TONE_TABLE_SIZE if tone_table is not None else 0), np.float32)
    black = np.asarray(frame.black_level, dtype=np.float64)
    tables[_C_OFFSET : _C_OFFSET + 4] = (-black).ravel()
    tables[_C_SCALE : _C_SCALE + 4] = (1.0 / (frame.white_level - black)).ravel()
    tables[_C_GAIN : _C_GAIN + 4] = frame.cfa.per_site(balanced.wb_gains).ravel()
    tables[_C_WHITE] = linear.white_level
    tables[_C_CCM : _C_CCM + 9] = ccm.ravel()
    tables[_C_CODE_BASE], tables[_C_CODE_SCALE], tables[_C_CODE_FIXUPS] = encoder.base, encoder.scale, encoder.fixups
    tables[_CODES : _CODES + encoder.codes.size] = encoder.codes
    tables[_BUCKETS : _BUCKETS + _BUCKET_COUNT] = encoder.starts
    flags = (
        _F_CLIP_NEGATIVE * black_params.clip_negative
        + _F_CLIP_HIGHLIGHTS * wb_params.clip_highlights
        + _F_DEMOSAIC_CLIP * demosaic_params.clip
        + (tone_mode << _F_TONE_SHIFT)
    )
    if not folded:
        ev = tone_params.exposure_ev + (frame.info.baseline_exposure_ev if tone_params.use_baseline_exposure else 0.0)
        tables[_C_EXPOSURE] = 2.0**ev
    if tone_table is not None:
        tables[_C_TONE_BLACK] = b
        tables[_C_TONE_SCALE] = 1.0 / (w - b)
        tables[_C_TONE_LIFT] = lift
        tables[_C_LUMA : _C_LUMA + 3] = SRGB_TO_XYZ[1]
        tables[_TONE_TABLE:] = tone_table
    if vignette_params is not None:
        (top, left), (full_h, full_w) = frame.origin, frame.full_shape
        flags += _F_VIGNETTE
        tables[_C_VIG_STRENGTH] = vignette_params.strength
        tables[_C_VIG_EXPONENT] = vignette_params.falloff / 2.0
        tables[_C_VIG_CY] = (full_h - 1) / 2.0
        tables[_C_VIG_CX] = (full_w - 1) / 2.0
        tables[_C_VIG_NORM] = ((full_h - 1) / 2.0) ** 2 + ((full_w - 1) / 2.0) ** 2
        tables[_C_VIG_TOP] = top
        tables[_C_VIG_LEFT] = left
    if oetf_params.space != "srgb":
        flags += _F_P3
        tables[_C_P3 : _C_P3 + 9] = srgb_to(oetf_params.space).ravel()

    ((ry, rx),) = frame.cfa.colour_sites(0)
    names = list(stages)
    return FusedPlan(
        label=f"fused({names[0]}..{names[-1]})",
        last_stage=names[-1],
        shape=frame.shape,
        red_site=(ry, rx),
        flags=int(flags),
        tables=tables,
        template=template,
        tuned=tuned,
    )


def _balance_region(stages: dict[str, Stage], frame: RawFrame, black_params: Any, wb_params: Any, ctx: StageContext) -> RawFrame:
    """white_balance mode=region run on the smallest crop of whole CFA tiles holding the region."""
    if wb_params.region is None:
        raise StageError("white_balance: mode=region has no region")
    top, left, bottom, right = (int(v) for v in wb_params.region)
    h, w = frame.shape
    th, tw = frame.cfa.tile_shape
    if not (0 <= top < bottom <= h and 0 <= left < right <= w):
        raise StageError(f"white_balance.region={list(wb_params.region)} is not inside the {h}x{w} frame")
    # the crop starts on a tile boundary, so the stage shrinks the region to the same tiles
    top0, left0 = top - top % th, left - left % tw
    bottom0, right0 = bottom + (-bottom) % th, right + (-right) % tw
    crop = frame.replace(mosaic=frame.mosaic[top0:bottom0, left0:right0], shading_gain=None)
    local = dataclasses.replace(wb_params, region=[top - top0, left - left0, bottom - top0, right - left0])
    linear = stages["black_level"].spec.fn(crop, black_params, ctx)
    return stages["white_balance"].spec.fn(linear, local, ctx)


@dataclass(frozen=True)
class _Encoder:
    """The kernel's encoding tables: thresholds and the bucket index into them.

    ``codes`` holds the thresholds of :func:`code_thresholds` and a ``+inf`` sentinel (257
    values); ``starts[j]`` is the code at the start of bucket ``j`` (see :func:`code_buckets`)
    and ``fixups`` the most thresholds inside one bucket.
    """

    codes: np.ndarray
    starts: np.ndarray
    base: float
    scale: float
    fixups: int


@lru_cache(maxsize=32)
def _encoder(tone_params: ToneParams | None, baseline_exposure_ev: float, quantize_params: QuantizeParams) -> _Encoder:
    """The encoding of tone, oetf (sRGB) and quantize, or of the last two alone when
    ``tone_params`` is ``None``: each stage evaluated by itself on probe pixels."""
    host = StageContext(get_backend("numpy"))
    info = CaptureInfo("fusion probe", baseline_exposure_ev=baseline_exposure_ev)
    chain = [("oetf", OetfParams(space="srgb")), ("quantize", quantize_params)]
    if tone_params is not None:
        chain.insert(0, ("tone", tone_params))

    def code_of(values: np.ndarray) -> np.ndarray:
        image = Image(np.repeat(values[None, :, None], 3, axis=2), "srgb", "linear", info)
        for name, stage_params in chain:
            image = STAGES[name].fn(image, stage_params, host)
        return image.data[0, :, 0].astype(np.int64)

    thresholds = code_thresholds(code_of, 2**quantize_params.bits)
    starts, base, scale, fixups = code_buckets(thresholds, _BUCKET_COUNT)
    encoder = _Encoder(np.append(thresholds, np.float32(np.inf)), starts.astype(np.float32), base, scale, fixups)
    for table in (encoder.codes, encoder.starts):
        table.setflags(write=False)
    return encoder


def bucket_of(values: np.ndarray, base: float, scale: float, buckets: int) -> np.ndarray:
    """The bucket of each float32 value: uniform in ``sqrt((value - base) * scale)`` over
    [0, 1], values outside falling into the first or the last. The kernel computes it with an
    approximate square root, which may land one bucket off (see :func:`code_buckets`)."""
    with np.errstate(over="ignore", invalid="ignore"):  # a huge value overflows to inf, which the clip takes to the last bucket
        t = np.clip((np.asarray(values, dtype=np.float32) - np.float32(base)) * np.float32(scale), np.float32(0.0), np.float32(1.0))
    return np.minimum((np.sqrt(t) * np.float32(buckets)).astype(np.int64), buckets - 1)


def code_buckets(thresholds: np.ndarray, buckets: int) -> tuple[np.ndarray, float, float, int]:
    """Index the thresholds of :func:`code_thresholds` by :func:`bucket_of`, for a search of one
    table read and a few comparisons that stays exact when the bucket is one off.

    Returns
    -------
    starts
        ``(buckets,)`` int64: for bucket ``j``, the code of the least value of bucket ``j - 1``
        (of bucket 0 for ``j = 0``): a lower bound of the code of every value whose exact
        bucket is ``j - 1``, ``j`` or ``j + 1``.
    base, scale
        Float32 values of :func:`bucket_of`'s parameters: the buckets span the finite thresholds.
    fixups
        The most thresholds in three neighbouring buckets: a value's code is ``starts[j]`` plus
        the number of the next ``fixups`` thresholds it reaches, for its bucket ``j`` give or
        take one.
    """
    codes = np.asarray(thresholds, dtype=np.float32)[1:]
    finite = codes[np.isfinite(codes)]
    base = float(finite[0]) if finite.size else 0.0
    span = float(finite[-1]) - base if finite.size else 0.0
    scale = float(np.float32(1.0 / span)) if span > 0 and np.isfinite(np.float32(1.0 / span)) else 1.0
    # -inf thresholds lie before every bucket, +inf ones after
    where = np.where(codes == -np.inf, -1, np.where(codes == np.inf, buckets, bucket_of(codes, base, scale, buckets)))
    exact = np.searchsorted(np.sort(where), np.arange(buckets), side="left")  # the code where each bucket starts
    starts = exact[np.maximum(np.arange(buckets) - 1, 0)]
    inside = np.bincount(where[(where >= 0) & (where < buckets)], minlength=buckets)
    three = np.convolve(inside, np.ones(3, dtype=np.int64), mode="full")
    return starts.astype(np.int64), base, scale, int(three.max(initial=0))


_MAX_KEY = int(np.array(np.finfo(np.float32).max, dtype=np.float32).view(np.int32))


def _to_key(values: np.ndarray) -> np.ndarray:
    """float32 -> int64 with the same order (-0.0 and 0.0 share a key)."""
    bits = np.asarray(values, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def _from_key(keys: np.ndarray) -> np.ndarray:
    bits = np.where(keys < 0, (-keys) | 0x80000000, keys)
    return bits.astype(np.uint32).view(np.float32)


def code_thresholds(code_of: Callable[[np.ndarray], np.ndarray], levels: int = 256) -> np.ndarray:
    """For a non-decreasing map from float32 values to integer codes, the least float32 value
    that reaches each code.

    Parameters
    ----------
    code_of
        ``(n,)`` float32 -> ``(n,)`` integer codes in ``[0, levels)``, non-decreasing in the
        value; it sees finite values only.
    levels
        Number of codes.

    Returns
    -------
    ``(levels,)`` float32: entry ``k`` is the least finite value whose code is at least ``k``,
    ``-inf`` when even the lowest finite value reaches it (always for ``k = 0``) and ``+inf``
    when no finite value does. The code of ``x`` is then the number of entries ``1..levels-1``
    at or below ``x``.

    Examples
    --------
    Two bits of [0, 1], rounded half to even as quantize does (3 · 0.5 = 1.5 rounds to 2, while
    the float32 nearest 1/6 gives 0.5, which rounds to 0):

    >>> codes = code_thresholds(lambda x: np.rint(np.clip(x, 0, 1) * 3).astype(int), 4)
    >>> codes.tolist()
    [-inf, 0.1666666865348816, 0.5, 0.833333432674408]
    """
    wanted = np.arange(1, levels, dtype=np.int64)
    lo = np.full(wanted.shape, -_MAX_KEY, dtype=np.int64)  # code(lo) < wanted <= code(hi) where it can hold
    hi = np.full(wanted.shape, _MAX_KEY, dtype=np.int64)
    with np.errstate(all="ignore"):  # the probes reach the float32 extremes
        lowest = code_of(_from_key(lo))
        highest = code_of(_from_key(hi))
        for _ in range(34):  # the keys span less than 2**33
            mid = (lo + hi) // 2
            reached = code_of(_from_key(mid)) >= wanted
            hi = np.where(reached, mid, hi)
            lo = np.where(reached, lo, mid)
    codes = np.empty(levels, dtype=np.float32)
    codes[0] = -np.inf
    codes[1:] = np.where(highest < wanted, np.inf, np.where(lowest >= wanted, -np.inf, _from_key(hi)))
    return codes
