"""The fused fast pipeline: the kernel (emulated on the CPU, and on a GPU) against the unfused
stages, the thresholds that encode its output, the decision to fuse, and the fast pipeline config.

The reference is always the unfused pipeline run stage by stage on NumPy. The kernel rounds
where the stages round, so the images are expected to be equal; the comparison allows a few
values (at most one in 2000) to differ by one code, for a machine whose BLAS orders the colour
matrix's sums differently from OpenBLAS on x86-64 (the kernel follows the latter).
"""

from __future__ import annotations

import dataclasses
import logging
import re

import numpy as np
import pytest
from omegaconf import OmegaConf

import isp
from isp.backend import get_backend, to_host
from isp.cfa import CFALayout
from isp.errors import ConfigError
from isp.frame import CaptureInfo, ColorMatrix, Image, RawFrame
from isp.fusion import (
    FUSED_STAGES,
    KERNEL_FUNCTION,
    KERNEL_SOURCE,
    bucket_of,
    code_buckets,
    code_thresholds,
    fusion_refusal,
    plan_fusion,
    plan_key,
)
from isp.paths import config_dir
from isp.pipeline import Pipeline
from isp.stages import STAGES, StageContext
from isp.stages.oetf import srgb_oetf
from isp.stages.quantize import quantize
from isp.stages.tone import ToneParams

from .kernel_emulation import emulate_kernel

CTX = StageContext(get_backend("numpy"))

#: At most this fraction of the output values may differ from the reference, by one code.
OFF_BY_ONE_FRACTION = 1 / 2000

_CALIBRATIONS = (
    ColorMatrix(np.array([[0.9, -0.2, -0.1], [-0.4, 1.3, 0.1], [-0.1, 0.3, 0.4]]), "Standard light A", 2856.0),
    ColorMatrix(np.array([[0.7, -0.1, -0.1], [-0.4, 1.2, 0.2], [-0.1, 0.2, 0.6]]), "D65", 6504.0),
)


def raw_frame(phase: str = "RGGB", shape: tuple[int, int] = (48, 64), seed: int = 5, black: np.ndarray | None = None) -> RawFrame:
    """A 10-bit mosaic with colour gradients, noise, samples below black and a clipped highlight;
    black levels differ per site; two calibrations, so the colour matrix depends on the CCT."""
    rng = np.random.default_rng(seed)
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    base = 0.5 + 0.45 * np.sin(x / 5.0) * np.cos(y / 7.0)
    rgb = np.stack([base, 1.0 - base, x / w], axis=-1)
    cfa = CFALayout.from_name(phase)
    dn = cfa.sample(rgb) * 1100.0 + rng.normal(0.0, 20.0, shape) + 40.0
    dn[h // 8 : h // 4, w // 2 : w // 2 + 10] = 1023.0
    mosaic = np.clip(np.rint(dn), 0, 1023).astype(np.uint16)
    info = CaptureInfo(
        "synthetic", iso=400.0, as_shot_neutral=np.array([0.55, 1.0, 0.7]), color_matrices=_CALIBRATIONS, baseline_exposure_ev=0.25
    )
    return RawFrame(mosaic, cfa, np.array([[64.0, 66.0], [63.0, 65.0]]) if black is None else black, 1023.0, info)


def build_pipeline(pipeline: str, tuning: str, params: dict | None = None, fuse: bool = False) -> Pipeline:
    """The pipeline and tuning configs from configs/, with ``params`` taking the place of the
    tuning's values for those stages."""
    pipeline_cfg = OmegaConf.to_container(OmegaConf.load(config_dir() / "pipeline" / f"{pipeline}.yaml"))
    tuning_cfg = OmegaConf.to_container(OmegaConf.load(config_dir() / "tuning" / f"{tuning}.yaml"))
    pipeline_cfg["fuse"] = fuse
    pipeline_cfg["params"] = params or {}
    for name in params or {}:
        tuning_cfg["params"].pop(name, None)
    return Pipeline.from_config(pipeline_cfg, tuning_cfg)


def emulate_fused(pipeline: Pipeline, frame: RawFrame) -> tuple[np.ndarray, object]:
    """The fused kernel run on the CPU, planned and launched as on a GPU."""
    plan = plan_fusion(pipeline.stages, frame, CTX, gpu=True)
    assert plan is not None, fusion_refusal(pipeline.stages, frame, CTX, gpu=True)
    out = np.zeros((*frame.shape, 3), np.uint8)
    emulate_kernel(KERNEL_SOURCE, KERNEL_FUNCTION, plan.grid, plan.block, plan.arguments(plan.kernel_mosaic(frame.mosaic), out))
    return out, plan


def assert_same_image(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape and got.dtype == expected.dtype == np.uint8
    diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    off = int((diff > 0).sum())
    assert diff.max() <= 1, f"largest difference {diff.max()} codes at {np.argwhere(diff == diff.max())[:5].tolist()}"
    assert off <= OFF_BY_ONE_FRACTION * diff.size, f"{off} of {diff.size} values differ by one code"


# (pipeline, tuning, CFA phase, stage params replacing the tuning's, mosaic shape)
PARITY_CASES = {
    "neutral": ("fast", "neutral", "RGGB", {}, (48, 64)),
    "leica_authentic": ("fast", "leica_authentic", "BGGR", {}, (48, 64)),
    "vignette": ("basic", "leica_authentic", "GRBG", {}, (48, 64)),
    "vignette_linear_falloff_partial_blocks": ("basic", "leica_authentic", "BGGR", {"vignette": {"strength": 0.6, "falloff": 1.0}}, (34, 132)),
    "vignette_power_luminance": (
        "basic", "leica_authentic", "GBRG", {"vignette": {"strength": 0.6, "falloff": 4.5}, "tone": {"mode": "luminance"}}, (50, 70),
    ),
    "luminance_lifted_black_p3": (
        "fast", "neutral", "GBRG",
        {"tone": {"mode": "luminance", "contrast": 0.3, "black_point": -0.02, "exposure_ev": 0.5}, "oetf": {"space": "display_p3"}},
        (48, 64),
    ),
    "curve_p3": ("fast", "leica_authentic", "GRBG", {"oetf": {"space": "display_p3"}}, (48, 64)),
    "identity_tone_p3": ("fast", "neutral", "BGGR", {"oetf": {"space": "display_p3"}}, (48, 64)),
    "manual_unclipped": (
        "fast", "neutral", "RGGB",
        {
            "white_balance": {"mode": "manual", "gains": [2.0, 1.0, 1.6], "clip_highlights": False},
            "demosaic": {"clip": False},
            "black_level": {"clip_negative": True},
            "color_correction": {"saturation": {"iso": [100, 1600], "value": [1.4, 0.8]}},
        },
        (48, 64),
    ),
    "region": ("fast", "neutral", "GRBG", {"white_balance": {"mode": "region", "region": [3, 5, 31, 41]}}, (48, 64)),
    "grey_world": ("fast", "neutral", "GBRG", {"white_balance": {"mode": "grey_world"}}, (48, 64)),
    "white_patch_crushed_toe": (
        "fast", "leica_authentic", "RGGB",
        {"white_balance": {"mode": "white_patch"}, "tone": {"black_point": 0.03, "contrast": 1.0, "shadows": 0.8, "exposure_ev": 1.0}},
        (48, 64),
    ),
    "smallest_frame": ("fast", "leica_authentic", "RGGB", {"tone": {"black_point": -0.03, "highlights": -0.5, "shadows": 0.8}}, (4, 6)),
}


@pytest.mark.parametrize("case", list(PARITY_CASES))
def test_emulated_kernel_equals_the_unfused_stages(case):
    """kernels/fast_pipeline.cu compiled as C++ and run block by block (shared tile and barrier
    included), launched as on a GPU, gives the unfused NumPy pipeline's RGB8 image."""
    pipeline_name, tuning, phase, params, shape = PARITY_CASES[case]
    pipeline = build_pipeline(pipeline_name, tuning, params)
    frame = raw_frame(phase, shape)
    reference = pipeline.run(frame, CTX)
    got, plan = emulate_fused(pipeline, frame)
    assert_same_image(got, reference.output.data)
    if shape[0] * shape[1] >= 1000:  # the frame exercises most of the codes, not a few
        assert len(np.unique(reference.output.data)) > 200
    expected = reference.output
    template = plan.template
    assert (template.space, template.transfer, template.info, template.cct_k) == (expected.space, expected.transfer, expected.info, expected.cct_k)
    np.testing.assert_array_equal(template.wb_gains, expected.wb_gains)
    assert plan.tuned == reference.tuned
    assert plan.label == f"fused(black_level..{pipeline.names[-1]})"


# Quad Bayer black levels: one per colour (R, G, B sites of the 4x4 tile), as a sensor has them.
_QUAD_BLACK = np.where(CFALayout.from_name("quad_GRBG").pattern_array == 1, 64.0, 62.0)


@pytest.mark.parametrize("tuning", ["neutral", "leica_authentic"])
def test_a_quad_bayer_frame_fuses_through_pixel_swap(tuning):
    """The full-resolution read-out: the kernel reads the DN moved onto Bayer sites, and gives
    the unfused pipeline's image (black level, pixel_swap remosaic, then the Bayer stages)."""
    pipeline = build_pipeline("fast", tuning, {"remosaic": {"method": "pixel_swap"}})
    frame = raw_frame("quad_GRBG", (48, 64), black=_QUAD_BLACK)
    reference = pipeline.run(frame, CTX)
    got, plan = emulate_fused(pipeline, frame)
    assert plan.quad_cfa is not None and plan.quad_cfa.name == "quad_GRBG"
    assert_same_image(got, reference.output.data)
    assert plan.template.info == reference.output.info
    # a Bayer frame passes through the remosaic: the same pipeline fuses it without a swap
    bayer_plan = plan_fusion(pipeline.stages, raw_frame("GRBG"), CTX, gpu=True)
    assert bayer_plan is not None and bayer_plan.quad_cfa is None


def test_a_quad_bayer_frame_fuses_only_through_pixel_swap_with_even_black_levels():
    frame = raw_frame("quad_RGGB", (48, 64), black=np.where(CFALayout.from_name("quad_RGGB").pattern_array == 1, 64.0, 62.0))
    directional = build_pipeline("fast", "neutral", {"remosaic": {"method": "directional"}})
    assert "remosaic.method='directional'; the fused kernel reads a Quad Bayer frame through pixel_swap only" in _refusal(directional, frame)
    uneven = frame.replace(black_level=np.arange(16.0).reshape(4, 4) + 56.0)
    swap = build_pipeline("fast", "neutral", {"remosaic": {"method": "pixel_swap"}})
    assert "black levels differ between sites of one colour" in _refusal(swap, uneven)
    no_remosaic = build_pipeline("fast", "neutral", {"remosaic": {"enabled": False}})
    assert "CFA quad_RGGB is not a Bayer layout" in _refusal(no_remosaic, frame)


def test_emulated_kernel_uses_full_frame_coordinates_in_a_crop():
    """A crop of a frame gets the vignette of the same pixels in the whole frame, as unfused."""
    pipeline = build_pipeline("basic", "leica_authentic", {"vignette": {"strength": 0.7, "falloff": 2.5}})
    crop = raw_frame("RGGB", (64, 96)).crop(8, 30, 40, 50)
    got, _ = emulate_fused(pipeline, crop)
    assert_same_image(got, pipeline.run(crop, CTX).output.data)


def _stage_chain(*names_params):
    host = StageContext(get_backend("numpy"))

    def code_of(values):
        image = Image(np.repeat(values[None, :, None], 3, axis=2).astype(np.float32), "srgb", "linear", CaptureInfo("t"))
        for name, params in names_params:
            image = STAGES[name].fn(image, params, host)
        return image.data[0, :, 0].astype(np.int64)

    return code_of


def _probe_values(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    finite = codes[np.isfinite(codes)]
    return np.concatenate([
        finite,
        np.nextafter(finite, np.float32(-np.inf)),
        np.nextafter(finite, np.float32(np.inf)),
        rng.uniform(-0.2, 2.0, 20000).astype(np.float32),
        (10.0 ** rng.uniform(-9, 1, 20000)).astype(np.float32),
        np.array([0.0, -0.0, 1.0, -1e30, 1e30, np.finfo(np.float32).max], np.float32),
    ]).astype(np.float32)


@pytest.mark.parametrize(
    "chain",
    [
        [],
        [("tone", ToneParams(exposure_ev=-0.33, contrast=0.4, shadows=-0.25, highlights=0.4))],
        [("tone", ToneParams(black_point=-0.05, shadows=-1.0, contrast=-0.5))],
    ],
    ids=["srgb", "leica_curve", "lifted_black"],
)
def test_bucketed_thresholds_reproduce_the_stages_code_for_every_value(chain, rng):
    """The kernel's search (a bucket's starting code, then ``fixups`` comparisons), modelled on
    the host, equals tone -> oetf -> quantize run as stages, at each threshold, at its float32
    neighbours and on values spread over the whole range; also when the kernel's approximate
    square root puts a value one bucket off."""
    from isp.stages.oetf import OetfParams
    from isp.stages.quantize import QuantizeParams

    code_of = _stage_chain(*chain, ("oetf", OetfParams()), ("quantize", QuantizeParams()))
    codes = code_thresholds(code_of)
    starts, base, scale, fixups = code_buckets(codes, 4096)
    assert codes[0] == -np.inf and np.all(np.diff(codes) >= 0) and 1 <= fixups <= 3
    values = _probe_values(codes, rng)
    with np.errstate(all="ignore"):
        expected = code_of(values)
    padded = np.append(codes, np.float32(np.inf))
    exact = bucket_of(values, base, scale, 4096)
    for off in (-1, 0, 1):
        searched = starts[np.clip(exact + off, 0, 4095)]
        for _ in range(fixups):
            searched = searched + (values >= padded[searched + 1])
        np.testing.assert_array_equal(searched, expected, err_msg=f"bucket off by {off}")


def test_thresholds_of_the_srgb_encoding_are_where_the_codes_change():
    """An independent check: quantize(srgb_oetf(x)) changes code exactly at each threshold."""
    codes = code_thresholds(lambda x: quantize(srgb_oetf(x), 8).astype(np.int64))
    below = quantize(srgb_oetf(np.nextafter(codes[1:], np.float32(-np.inf))), 8)
    at = quantize(srgb_oetf(codes[1:]), 8)
    np.testing.assert_array_equal(at, np.arange(1, 256))
    np.testing.assert_array_equal(below, np.arange(0, 255))
    # the linear segment: code 1 starts where 255 * 12.92 * x reaches one half (rounded half to even: above it)
    assert codes[1] == pytest.approx(0.5 / (255 * 12.92), rel=1e-6)


def test_thresholds_mark_codes_no_value_or_every_value_reaches():
    codes = code_thresholds(lambda x: np.clip(np.rint(x * 0.0) + 3, 0, 7).astype(np.int64), 8)
    assert codes[1:4].tolist() == [-np.inf] * 3 and codes[4:].tolist() == [np.inf] * 4


# ---------------------------------------------------------------------------------- decisions


def _refusal(pipeline: Pipeline, frame, **kwargs) -> str | None:
    return fusion_refusal(pipeline.stages, frame, CTX, gpu=kwargs.pop("gpu", True), **kwargs)


def test_fast_pipeline_fuses_and_says_why_not_otherwise():
    frame = raw_frame()
    fast = build_pipeline("fast", "neutral")
    assert _refusal(fast, frame) is None
    assert "backend numpy has no GPU" in _refusal(fast, frame, gpu=False)
    assert "the stages to run are (black_level, defect_correction, lens_shading," in _refusal(build_pipeline("default", "neutral"), frame)
    assert "vignette optional" in _refusal(build_pipeline("fast", "neutral", {"tone": {"enabled": False}}), frame)
    assert "pipeline.taps asks for demosaic, tone, inside the fused span" in _refusal(fast, frame, taps=["tone", "demosaic"])
    assert _refusal(fast, frame, taps=["quantize"]) is None
    first, last = fast.span((), None, "oetf")
    assert "the stages to run are (black_level, white_balance, demosaic, color_correction, tone, oetf);" in fusion_refusal(
        fast.stages[first : last + 1], frame, CTX, gpu=True
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"demosaic": {"method": "menon2007"}}, "demosaic.method='menon2007'; the fused kernel computes malvar2004"),
        ({"quantize": {"bits": 16}}, "quantize.bits=16; the fused kernel writes 8 bits"),
        ({"white_balance": {"mode": "region", "region": [0, 0, 100, 10]}}, r"a stage refuses this frame \(white_balance.region=\[0, 0, 100, 10\] is not inside"),
        ({"white_balance": {"mode": "region"}}, r"a stage refuses this frame \(white_balance: mode=region has no region\)"),
    ],
)
def test_unsupported_parameters_are_refused(params, message):
    refusal = _refusal(build_pipeline("fast", "neutral", params), raw_frame())
    assert refusal is not None and re.search(message, refusal), refusal


def test_unsupported_frames_are_refused():
    fast = build_pipeline("fast", "neutral")
    frame = raw_frame()
    linear = STAGES["black_level"].fn(frame, STAGES["black_level"].params(), CTX)
    quad = RawFrame(np.zeros((8, 8), np.uint16), CFALayout.from_name("quad_RGGB"), 64.0, 1023.0, frame.info)
    cases = {
        "the raw frame is in the 'linear' domain, not 'dn'": linear,
        "the mosaic is float32, not uint16": frame.replace(mosaic=frame.mosaic.astype(np.float32)),
        "remosaic.method='directional'; the fused kernel reads a Quad Bayer frame through pixel_swap only": quad,
        "the frame is already white balanced": frame.replace(wb_gains=np.ones(3)),
        "the 2x64 mosaic is smaller than 4x4": frame.replace(mosaic=frame.mosaic[:2]),
        "the input is Image, not a raw frame": Image(np.zeros((4, 4, 3), np.float32), "camera", "linear", frame.info),
        "a stage refuses this frame (color_correction: the frame has no colour calibration; set color_correction.matrix)": frame.replace(
            info=CaptureInfo("uncalibrated")
        ),
    }
    for message, case in cases.items():
        assert _refusal(fast, case) == message


def test_frames_that_differ_only_in_their_pixels_share_a_plan():
    fast = build_pipeline("fast", "neutral")
    frame = raw_frame()
    key = plan_key(fast.stages, frame, CTX)
    assert key is not None and hash(key) is not None
    noisier = frame.replace(mosaic=np.ascontiguousarray(frame.mosaic[::-1]))
    assert plan_key(fast.stages, noisier, CTX) == key
    warmer = frame.replace(info=dataclasses.replace(frame.info, as_shot_neutral=frame.info.as_shot_neutral * [1.0, 1.0, 0.9]))
    assert plan_key(fast.stages, warmer, CTX) != key
    assert plan_key(fast.stages, frame.replace(black_level=frame.black_level + 1), CTX) != key
    assert plan_key(fast.stages, frame, StageContext(CTX.backend, seed=CTX.seed + 1)) != key
    assert plan_key(fast.stages, frame, CTX, taps=["quantize"]) != key
    # an estimating white balance reads the pixels: no plan is reused
    assert plan_key(build_pipeline("fast", "neutral", {"white_balance": {"mode": "grey_world"}}).stages, frame, CTX) is None


def test_a_refusal_is_logged_at_debug_level(caplog):
    with caplog.at_level(logging.DEBUG, logger="isp.fusion"):
        assert plan_fusion(build_pipeline("fast", "neutral").stages, raw_frame(), CTX) is None
    assert "running stage by stage, not fused: backend numpy has no GPU" in caplog.text


def test_fuse_is_read_from_the_pipeline_config():
    stages = {"stages": list(FUSED_STAGES), "params": {}}
    assert Pipeline.from_config(stages).fuse is False
    assert Pipeline.from_config({**stages, "fuse": True}).fuse is True
    with pytest.raises(ConfigError, match="pipeline.fuse='yes': expected true or false"):
        Pipeline.from_config({**stages, "fuse": "yes"})


def test_fused_pipeline_on_the_cpu_runs_stage_by_stage():
    frame = raw_frame()
    fused = build_pipeline("fast", "leica_authentic", fuse=True).run(frame, CTX, taps=["demosaic"])
    plain = build_pipeline("fast", "leica_authentic").run(frame, CTX, taps=["demosaic"])
    np.testing.assert_array_equal(fused.output.data, plain.output.data)
    assert list(fused.times_ms) == list(plain.times_ms) == list(build_pipeline("fast", "neutral").names)
    assert "demosaic" in fused.taps


def test_cli_fast_pipeline_runs_on_the_cpu():
    result = isp.run(["pipeline=fast", "scene.size=[64,96]", "backend=numpy"])
    assert result.image.data.dtype == np.uint8 and result.image.data.shape[2] == 3
    assert list(result.metrics["stage_times_ms"]) == list(build_pipeline("fast", "neutral").names)


# ---------------------------------------------------------------------------------- on a GPU


@pytest.mark.gpu
@pytest.mark.parametrize("case", ["neutral", "leica_authentic", "vignette", "luminance_lifted_black_p3", "manual_unclipped", "grey_world"])
@pytest.mark.parametrize("shape", [(48, 64), (1002, 1502)], ids=["small", "partial_blocks"])
def test_fused_kernel_on_the_gpu_equals_the_unfused_runs(case, shape, cupy_backend):
    pipeline_name, tuning, phase, params, _ = PARITY_CASES[case]
    frame = raw_frame(phase, shape)
    on_gpu = frame.replace(mosaic=cupy_backend.asarray(frame.mosaic))
    gpu_ctx = StageContext(cupy_backend)
    fused = build_pipeline(pipeline_name, tuning, params, fuse=True).run(on_gpu, gpu_ctx)
    assert list(fused.times_ms) == [f"fused(black_level..{build_pipeline(pipeline_name, tuning).names[-1]})"]
    unfused_gpu = build_pipeline(pipeline_name, tuning, params).run(on_gpu, gpu_ctx)
    unfused_cpu = build_pipeline(pipeline_name, tuning, params).run(frame, CTX)
    got = to_host(fused.output.data)
    assert_same_image(got, to_host(unfused_gpu.output.data))
    assert_same_image(got, unfused_cpu.output.data)
    assert fused.output.space == unfused_cpu.output.space and fused.output.cct_k == unfused_cpu.output.cct_k


@pytest.mark.gpu
def test_a_reused_plan_gives_each_frame_its_own_image(cupy_backend):
    fast = build_pipeline("fast", "neutral")
    unfused = Pipeline(fast.stages, fuse=False)
    ctx = StageContext(cupy_backend, 0)
    first = raw_frame()
    second = first.replace(mosaic=np.ascontiguousarray(first.mosaic[::-1]))
    for frame in (first, second, first):
        on_device = frame.replace(mosaic=cupy_backend.asarray(frame.mosaic))
        fused = to_host(fast.run(on_device, ctx).output.data).astype(int)
        reference = to_host(unfused.run(on_device, ctx).output.data).astype(int)
        assert np.abs(fused - reference).max() <= 1
    assert len(fast._plans) == 1
