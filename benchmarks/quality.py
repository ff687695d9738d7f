"""Image-quality figures of ISP stages that the README quotes, reproducible from the repository.

    python -m benchmarks.quality remosaic [--data DIR] [--images 1 8 19]
    python -m benchmarks.quality raw_denoise [--size 768 1024]

``remosaic``: each Kodak image (the reference data's ``kodak/``) as the scene of the IMX989 in its
full-resolution Quad Bayer mode and of the same sensor with a Bayer CFA, both noise-free; the
PSNR (peak 1, 8-pixel border excluded) of each remosaic method's Bayer mosaic against the Bayer
capture, and of its Malvar-He-Cutler demosaic against the Bayer capture's.

``raw_denoise``: the IMX989 binned at ISO 3200 on the ColorChecker; black level and white
balance, then each raw denoiser; the SNR of the green sites of every grey patch (a fitted plane
removed) and the PSNR of the mosaic against the noise-free capture through the same stages.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from isp.backend import get_backend
from isp.cfa import G
from isp.config import compose
from isp.io import read_image
from isp.metrics.noise import detrended_snr, neutral_patches
from isp.scene import build_scene_params, render_scene
from isp.sensor import build_sensor, capture, ideal_capture
from isp.stages import StageContext
from isp.stages.black_level import BlackLevelParams, black_level
from isp.stages.demosaic import demosaic
from isp.stages.oetf import srgb_eotf
from isp.stages.raw_denoise import RAW_DENOISE_METHODS, RawDenoiseParams, raw_denoise
from isp.stages.remosaic import REMOSAIC_METHODS, RemosaicParams, remosaic_stage
from isp.stages.white_balance import WhiteBalanceParams, gains_from_neutral, white_balance

CTX = StageContext(get_backend("numpy"))


def _psnr(a: np.ndarray, b: np.ndarray, border: int = 0) -> float:
    inner = (slice(border, -border or None), slice(border, -border or None))
    return float(10 * np.log10(1.0 / np.mean((a[inner].astype(np.float64) - b[inner]) ** 2)))


def remosaic_quality(data: Path, images: list[int]) -> None:
    def sensor(cfa: str):
        return build_sensor(compose(["sensor=imx989", "sensor.mode=full", f"sensor.modes.full.cfa={cfa}"]).sensor)

    quad, bayer = sensor("quad_RGGB"), sensor("RGGB")
    rows = []
    for k in images:
        scene = srgb_eotf(read_image(data / "kodak" / f"kodim{k:02d}.png").astype(np.float32))
        q = black_level(ideal_capture(scene, quad, CTX.backend), BlackLevelParams(), CTX)
        b = black_level(ideal_capture(scene, bayer, CTX.backend), BlackLevelParams(), CTX)
        gains = b.cfa.per_site(gains_from_neutral(q.info.as_shot_neutral))
        reference = demosaic(b.cfa.apply_per_site(b.mosaic, scale=gains), b.cfa, "malvar2004")
        row = []
        for method in REMOSAIC_METHODS:
            out = remosaic_stage(q, RemosaicParams(method), CTX)
            rgb = demosaic(out.cfa.apply_per_site(out.mosaic, scale=gains), out.cfa, "malvar2004")
            row += [_psnr(out.mosaic, b.mosaic, 8), _psnr(rgb, reference, 8)]
        rows.append(row)
        print(f"kodim{k:02d} " + "  ".join(f"{m} {row[2 * i]:6.2f} dB (demosaic {row[2 * i + 1]:6.2f})" for i, m in enumerate(REMOSAIC_METHODS)))
    mean = np.mean(rows, axis=0)
    print(f"mean over {len(rows)}: " + "; ".join(f"{m} {mean[2 * i]:.2f} dB, demosaic {mean[2 * i + 1]:.2f} dB" for i, m in enumerate(REMOSAIC_METHODS)))


def raw_denoise_quality(size: tuple[int, int] | None) -> None:
    cfg = compose(["sensor.iso=3200", *([f"scene.size=[{size[0]},{size[1]}]"] if size else [])])
    sensor = build_sensor(cfg.sensor)
    scene = render_scene(build_scene_params(cfg.scene), sensor.readout, sensor.cfa.tile_shape, CTX.backend)

    def linear(raw):
        return white_balance(black_level(raw, BlackLevelParams(), CTX), WhiteBalanceParams(), CTX)

    noisy = linear(capture(scene.linear_rgb, sensor, CTX.backend, seed=0, luminance_cd_m2=scene.luminance_cd_m2))
    ideal = linear(ideal_capture(scene.linear_rgb, sensor, CTX.backend, luminance_cd_m2=scene.luminance_cd_m2))
    green = noisy.cfa.colour_map(noisy.shape) == G
    greys = neutral_patches(scene.patches)

    def snr(mosaic: np.ndarray) -> np.ndarray:
        values = []
        for patch in greys:
            r, c = patch.centre(0.5)
            mask = green[r, c]
            yy, xx = np.nonzero(mask)
            mean, noise = detrended_snr(mosaic[r, c][mask], yy, xx)
            values.append(mean / noise)
        return np.array(values)

    before = snr(noisy.mosaic)
    print(f"IMX989 binned {noisy.shape[1]}x{noisy.shape[0]} ISO 3200, grey patches {[p.name for p in greys]}")
    print(f"no denoise  SNR {np.round(before, 1)}  PSNR {_psnr(noisy.mosaic, ideal.mosaic):.2f} dB")
    for method in RAW_DENOISE_METHODS:
        t0 = time.perf_counter()
        out = raw_denoise(noisy, RawDenoiseParams(method=method), CTX).mosaic
        seconds = time.perf_counter() - t0
        gain = snr(out) / before
        print(f"{method:11s} SNR gain {np.round(gain, 2)} (min {gain.min():.2f}x)  PSNR {_psnr(out, ideal.mosaic):.2f} dB  {seconds:.2f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="figure", required=True)
    rem = sub.add_parser("remosaic")
    rem.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    rem.add_argument("--images", type=int, nargs="*", default=list(range(1, 25)))
    den = sub.add_parser("raw_denoise")
    den.add_argument("--size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"))
    args = parser.parse_args(argv)
    if args.figure == "remosaic":
        remosaic_quality(args.data, args.images)
    else:
        raw_denoise_quality(tuple(args.size) if args.size else None)


if __name__ == "__main__":
    main()
