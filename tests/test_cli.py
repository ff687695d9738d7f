"""The isp-sim command as a user runs it: outputs, sweeps, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SMALL = "scene.size=[96,128]"


def isp_sim(*args: str, cwd: Path, module: bool = False) -> subprocess.CompletedProcess:
    exe = shutil.which("isp-sim")
    command = [sys.executable, "-m", "isp"] if module or exe is None else [exe]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_a_run_writes_image_metrics_config_and_log(tmp_path):
    out = tmp_path / "run"
    proc = isp_sim(SMALL, "output.tiff16=true", "pipeline.taps=[demosaic]", f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    from PIL import Image

    png = np.asarray(Image.open(out / "image.png"))
    assert png.shape == (96, 128, 3) and png.dtype == np.uint8

    import tifffile

    tif = tifffile.imread(out / "image.tif")
    assert tif.shape == (96, 128, 3) and tif.dtype == np.uint16
    assert np.abs(np.rint(tif / 257.0) - png).max() <= 1, "the 16-bit TIFF is the same image with more depth"
    assert np.load(out / "taps" / "demosaic.npy").shape == (96, 128, 3)

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("backend", "sensor", "tuning", "image", "stage_times_ms", "colorchecker"):
        assert key in metrics
    assert metrics["image"]["width"] == 128 and metrics["sensor"] == "imx989" and metrics["tuning"] == "leica_authentic"
    de = metrics["colorchecker"]["delta_e2000"]
    assert len(de["patches"]) == 24 and de["max"] >= de["mean"] > 0
    assert (out / ".hydra" / "config.yaml").exists() and (out / "isp-sim.log").exists()
    assert not (out / "FAILED").exists()
    assert not list(out.glob(".*.partial")), "no temporary files left behind"


def test_python_dash_m_isp(tmp_path):
    proc = isp_sim(SMALL, "tuning=neutral", f"hydra.run.dir={tmp_path / 'm'}", cwd=tmp_path, module=True)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["colorchecker"]["delta_e2000"]["mean"] <= 2.0


def test_sweep_over_sensors_and_tunings(tmp_path):
    sweep = tmp_path / "sweep"
    proc = isp_sim("-m", "sensor=imx989,generic_bayer", "tuning=neutral,leica_vibrant", SMALL, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = [json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")]
    assert len(runs) == 4
    assert {(m["sensor"], m["tuning"]) for m in runs} == {
        (s, t) for s in ("imx989", "generic_bayer") for t in ("neutral", "leica_vibrant")
    }


def _assert_clean_failure(proc: subprocess.CompletedProcess, message: str, run_dir: Path | None = None) -> None:
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr + proc.stdout
    assert err.count("\n") == 0, f"expected one line, got:\n{err}"
    assert err.startswith("isp-sim: error: ") and message in err, err
    if run_dir is not None and run_dir.exists():
        assert not (run_dir / "image.png").exists() and not (run_dir / "metrics.json").exists()
        assert (run_dir / "FAILED").read_text().strip() in err


def test_bad_inputs_fail_in_one_line(tmp_path):
    from PIL import Image

    grey = tmp_path / "grey.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(grey)
    corrupt = tmp_path / "corrupt.dng"
    corrupt.write_bytes(b"II*\x00" + bytes(range(256)) * 8)
    cases = {
        "unknown sensor": (["sensor=imx999"], "Could not find 'sensor/imx999'; Available options in 'sensor': generic_bayer, imx707, imx766, imx800, imx989"),
        "unknown tuning": (["tuning=vivid"], "Could not find 'tuning/vivid'"),
        "unknown key": (["sensor.isoo=3200"], "Could not override 'sensor.isoo'"),
        "bad override syntax": (["sensor.iso=[1,2"], "no viable alternative at input '[1,2'"),
        "unknown stage": (["pipeline.stages=[black_level,denoise]"], "pipeline.stages[1]: unknown stage 'denoise'"),
        "unknown parameter": (["+tuning.params.tone.gamma=2"], "tuning.params.tone.gamma: unknown parameter"),
        "out of range": (["tuning.params.tone.contrast=3"], "tuning.params.tone.contrast=3.0 is out of range [-0.5, 1]"),
        "missing raw file": (["scene=raw_file", f"scene.path={tmp_path / 'none.dng'}"], "none.dng: no such file"),
        "corrupt raw file": (["scene=raw_file", f"scene.path={corrupt}"], "corrupt.dng: not a raw file rawpy can read"),
        "image not RGB": (["scene=image", f"scene.path={grey}"], "grey.png: is not an RGB image"),
        "no raw path": (["scene=raw_file"], "scene.path: a value is required"),
    }
    for name, (args, message) in cases.items():
        run_dir = tmp_path / name.replace(" ", "_")
        size = [SMALL] if not any(a.startswith("scene=") for a in args) else []
        proc = isp_sim(*args, *size, f"hydra.run.dir={run_dir}", cwd=tmp_path)
        _assert_clean_failure(proc, message, run_dir)
    assert corrupt.read_bytes().startswith(b"II*\x00"), "inputs are never touched"


@pytest.mark.slow
def test_default_run_has_no_arguments(tmp_path):
    """``isp-sim`` alone: the IMX989 binned 12.5 MP ColorChecker through Leica Authentic."""
    proc = isp_sim(cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (metrics_path,) = tmp_path.glob("outputs/*/*/metrics.json")
    metrics = json.loads(metrics_path.read_text())
    assert (metrics["image"]["width"], metrics["image"]["height"]) == (4096, 3072)
    assert metrics["sensor"] == "imx989" and metrics["sensor_mode"] == "binned" and metrics["tuning"] == "leica_authentic"
    assert (metrics_path.parent / "image.png").exists()


def test_ccm_fit_experiment_writes_a_matrix_a_tuning_can_use(tmp_path):
    from omegaconf import OmegaConf

    run_dir = tmp_path / "ccm"
    proc = isp_sim("experiment=ccm_fit", "sensor=generic_bayer", "scene.size=[120,160]", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    fitted = OmegaConf.to_container(OmegaConf.load(run_dir / "ccm.yaml"))
    matrix = np.asarray(fitted["color_correction"]["matrix"])
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-5)  # white stays white
    assert fitted["fit"]["mean_de2000"] < 1.0 and fitted["fit"]["objective"] == "de2000"
    assert not (run_dir / "image.png").exists()


def test_batch_experiment_writes_its_throughput(tmp_path):
    run_dir = tmp_path / "batch"
    args = ("experiment=batch", "sensor=generic_bayer", "scene.size=[64,96]", "experiment.frames=2", "experiment.repeats=1", "experiment.warmup=0")
    proc = isp_sim(*args, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((run_dir / "batch.json").read_text())
    assert result["fps"] > 0 and result["frames"] == 2
    assert not (run_dir / "image.png").exists()
    bad = isp_sim("experiment=batch", "experiment.buffers=9", "scene.size=[64,96]", f"hydra.run.dir={tmp_path / 'bad'}", cwd=tmp_path)
    _assert_clean_failure(bad, "experiment.buffers", tmp_path / "bad")


def test_emva_experiment_writes_figures_and_plots(tmp_path):
    run_dir = tmp_path / "emva"
    proc = isp_sim(
        "experiment=emva", "sensor=generic_bayer", "sensor.iso=800", "experiment.size=[64,64]", "experiment.points=16",
        "experiment.nonuniformity_frames=4", f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads((run_dir / "emva.json").read_text())
    assert result["sensor"] == "generic_bayer" and set(result["channels"]) == {"R", "G", "B"}
    assert result["summary"]["G"]["system_gain_dn_per_e"] == pytest.approx(2.48, rel=0.05)
    for channel in "RGB":
        for plot in ("ptc", "snr", "responsivity", "dark_current"):
            assert (run_dir / "plots" / channel / f"{plot}.png").read_bytes().startswith(b"\x89PNG")
    assert not (run_dir / "image.png").exists()
