"""Peers timed on the same frame in the same run: rawpy/LibRaw and colour-demosaicing.

The simulated Bayer frame (the same capture the ``pipeline`` rows develop, same config and
seed: compare the rows' ``frame_sha1``) is written to a temporary DNG with
:func:`isp.io.dng.write_dng`, and:

- rawpy/LibRaw ``postprocess()`` with AHD and with LINEAR demosaicing (``use_camera_wb=True,
  no_auto_bright=True, output_bps=8, gamma=(2.4, 12.92)``: as-shot white balance, sRGB curve,
  8-bit output, no auto-brightening). Only ``postprocess()`` is timed, repeatedly on one opened
  and unpacked ``RawPy`` object: LibRaw rebuilds its working image from the unpacked raw data at
  each call (the row checks that the first and the last output are identical). Opening and
  unpacking the file is timed apart and reported as ``open_unpack_ms``.
- colour-demosaicing's ``demosaicing_CFA_Bayer_Malvar2004`` against the project's NumPy
  Malvar-He-Cutler demosaic (:func:`isp.stages.demosaic.demosaic`, ``method="malvar2004"``) on
  the same float32 mosaic: black level subtracted, normalised, white balanced with the as-shot
  neutral (Malvar-He-Cutler assumes balanced channels). The project's row holds the largest
  absolute difference between the two outputs away from a 2-pixel border (colour-demosaicing
  pads the frame differently, its issue #8).

:func:`measure_peers` is the ``peers`` row kind of ``python -m benchmarks.run``. LibRaw keeps a
CFA pattern as two columns, so it cannot read the 4×4 Quad Bayer frame: peers need a Bayer size.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import MemoryMeter, distribution_version, RowSpec, capture_frame, fingerprint, parse_size, simulation, summarise, time_region
from isp.backend import Backend, get_backend
from isp.cfa import CFALayout
from isp.errors import InputError
from isp.io.dng import write_dng
from isp.stages import StageContext
from isp.stages.black_level import BlackLevelParams, black_level
from isp.stages.demosaic import demosaic
from isp.stages.white_balance import WhiteBalanceParams, white_balance

__all__ = ["measure_peers", "peers_spec", "RAWPY_ALGORITHMS", "POSTPROCESS_ARGS", "MALVAR_BORDER_PX", "MALVAR_EQUAL_ATOL"]

#: LibRaw demosaic algorithms timed, by the name rawpy gives them.
RAWPY_ALGORITHMS = ("AHD", "LINEAR")
#: ``postprocess()`` arguments besides the demosaic algorithm: an sRGB rendering as the ISP's.
POSTPROCESS_ARGS = {"use_camera_wb": True, "no_auto_bright": True, "output_bps": 8, "gamma": (2.4, 12.92)}
#: Pixels left out at each edge when the two Malvar-He-Cutler outputs are compared.
MALVAR_BORDER_PX = 2
#: Largest absolute difference (white level 1.0) for the two Malvar-He-Cutler outputs to count
#: as equal: float32 against colour-demosaicing's float64 arithmetic differ by about 1e-7.
MALVAR_EQUAL_ATOL = 1e-5


def peers_spec(size: str, repeats: int, warmup: int = 1, overrides: tuple[str, ...] = ()) -> RowSpec:
    """The peers of a frame size (they run on the CPU: the backend is NumPy)."""
    return RowSpec("peers", "peers", size, "numpy", repeats, warmup, tuple(overrides))


def measure_peers(spec: RowSpec, meter: MemoryMeter) -> list[dict[str, Any]]:
    """rawpy AHD and LINEAR, colour-demosaicing's and the project's Malvar2004, on one frame."""
    size = parse_size(spec.size)
    backend = get_backend("numpy")
    sim = simulation(size, backend.name, spec.overrides)
    raw = capture_frame(sim, backend)
    if not raw.cfa.is_bayer:
        raise InputError(
            f"peers: frame {size.label} has CFA {raw.cfa.name}; LibRaw reads only 2-column CFA patterns, "
            "so the peers need a Bayer frame (12mp, or HxW:binned)"
        )
    frame_sha1 = fingerprint(raw.mosaic)
    rows = []
    with tempfile.TemporaryDirectory(prefix="isp-sim-peers-") as tmp:
        path = write_dng(Path(tmp) / "frame.dng", raw)
        for algorithm in RAWPY_ALGORITHMS:
            rows.append(_rawpy_row(spec, meter, path, algorithm, frame_sha1))
    ctx = StageContext(backend)
    balanced = white_balance(black_level(raw, BlackLevelParams(), ctx), WhiteBalanceParams(), ctx)
    rows += _malvar_rows(spec, meter, backend, balanced.mosaic, raw.cfa, frame_sha1)
    return rows


def _rawpy_row(spec: RowSpec, meter: MemoryMeter, path: Path, algorithm: str, frame_sha1: str) -> dict[str, Any]:
    import rawpy  # noqa: PLC0415 - a peer, only needed here

    megapixels = parse_size(spec.size).megapixels
    open_ms = []
    for _ in range(spec.repeats):
        t0 = time.perf_counter()
        with rawpy.imread(str(path)) as opened:  # opens and unpacks
            opened.raw_image  # noqa: B018 - touch the unpacked data
        open_ms.append((time.perf_counter() - t0) * 1e3)
    kwargs = {"demosaic_algorithm": getattr(rawpy.DemosaicAlgorithm, algorithm), **POSTPROCESS_ARGS}
    outputs: list[np.ndarray] = []

    def develop() -> None:
        rgb = raw.postprocess(**kwargs)
        outputs[:] = [outputs[0] if outputs else rgb, rgb]  # the first and the latest output

    with rawpy.imread(str(path)) as raw, meter.region() as memory:
        times = time_region(get_backend("numpy"), develop, spec.repeats, spec.warmup)
    return spec.row(
        key=f"peer/rawpy_{algorithm.lower()}",
        name=f"rawpy {algorithm} postprocess()",
        device="cpu",
        peer=f"rawpy {distribution_version('rawpy')} / LibRaw {'.'.join(map(str, rawpy.libraw_version))}",
        libraw_flags=dict(rawpy.flags or {}),
        postprocess_args={"demosaic_algorithm": algorithm, **POSTPROCESS_ARGS},
        **summarise(times, megapixels),
        timing="perf_counter around postprocess() only; open + unpack excluded (open_unpack_ms)",
        open_unpack_ms=statistics.median(open_ms),
        repeated_postprocess_identical=bool(np.array_equal(outputs[0], outputs[-1])),
        output={"shape": list(outputs[-1].shape), "dtype": str(outputs[-1].dtype)},
        frame_sha1=frame_sha1,
        **memory,
    )


def _malvar_rows(spec: RowSpec, meter: MemoryMeter, backend: Backend, mosaic: np.ndarray, cfa: CFALayout, frame_sha1: str) -> list[dict[str, Any]]:
    from colour_demosaicing import demosaicing_CFA_Bayer_Malvar2004  # noqa: PLC0415 - a peer, only needed here

    megapixels = parse_size(spec.size).megapixels
    results: dict[str, Any] = {}
    candidates = {
        "colour": lambda: demosaicing_CFA_Bayer_Malvar2004(mosaic, pattern=cfa.name),
        "isp": lambda: demosaic(mosaic, cfa, "malvar2004"),
    }
    figures = {}
    for name, fn in candidates.items():

        def run_once(name: str = name, fn: Callable[[], Any] = fn) -> None:
            results[name] = fn()

        with meter.region() as memory:
            times = time_region(backend, run_once, spec.repeats, spec.warmup)
        figures[name] = {**summarise(times, megapixels), **memory, "output": {"dtype": str(results[name].dtype)}}
    b = MALVAR_BORDER_PX
    difference = float(np.max(np.abs(results["isp"][b:-b, b:-b].astype(np.float64) - results["colour"][b:-b, b:-b])))
    common = {"input": "float32 mosaic, black level subtracted, white level 1.0, white balanced (as-shot)", "frame_sha1": frame_sha1}
    return [
        spec.row(
            key="peer/colour_malvar2004",
            name="colour-demosaicing Malvar2004",
            device="cpu",
            peer=f"colour-demosaicing {distribution_version('colour-demosaicing')}",
            **figures["colour"],
            timing="perf_counter around demosaicing_CFA_Bayer_Malvar2004()",
            **common,
        ),
        spec.row(
            key="peer/isp_malvar2004",
            name="isp-sim Malvar2004 demosaic (NumPy)",
            device="cpu",
            **figures["isp"],
            timing='perf_counter around isp.stages.demosaic.demosaic(method="malvar2004")',
            max_abs_diff_vs_colour=difference,
            border_px=b,
            equal_output=difference <= MALVAR_EQUAL_ATOL,
            equal_atol=MALVAR_EQUAL_ATOL,
            **common,
        ),
    ]

