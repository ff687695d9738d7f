"""The benchmark harness: an end-to-end smoke run at a tiny size, and its pieces."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks import common, report, run
from benchmarks.common import MemoryMeter, RowSpec, parse_size
from isp.backend import get_backend

_ROW_FIELDS = ("kind", "name", "key", "backend", "device", "frame", "median_ms", "mpix_per_s", "times_ms", "includes_transfers", "peak_rss_mb")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One run of the harness as a user runs it: a child process per row."""
    out = tmp_path_factory.mktemp("bench")
    argv = [
        "--sizes", "64x96", "--repeats", "2", "--warmup", "0", "--backends", "numpy",
        "--kinds", "pipeline", "peers", "--pipelines", "basic", "no_such_pipeline",
        "--out", str(out / "r.json"), "--markdown", str(out / "r.md"),
    ]  # fmt: skip
    assert run.main(argv) == 0
    return json.loads((out / "r.json").read_text()), (out / "r.md").read_text()


def test_smoke_run_writes_every_figure(smoke):
    result, _ = smoke
    env = result["environment"]
    assert result["schema_version"] == run.SCHEMA_VERSION
    assert {"date", "commit", "dirty", "cpu", "gpu", "versions"} <= set(env)
    assert env["cpu"]["cores"] >= 1 and env["versions"]["numpy"] == np.__version__
    for name in ("rawpy", "libraw", "colour-demosaicing", "scipy"):
        assert name in env["versions"]
    assert result["settings"]["sizes"] == ["64x96"] and result["settings"]["repeats"] == 2
    keys = [row["key"] for row in result["rows"]]
    assert keys == ["pipeline/basic", "peer/rawpy_ahd", "peer/rawpy_linear", "peer/colour_malvar2004", "peer/isp_malvar2004"]
    for row in result["rows"]:
        assert not row.get("error"), row
        assert set(_ROW_FIELDS) <= set(row), set(_ROW_FIELDS) - set(row)
        assert row["includes_transfers"] is False and row["backend"] == "numpy" and row["device"] == "cpu"
        assert len(row["times_ms"]) == 2 and all(t > 0 for t in row["times_ms"])
        assert row["median_ms"] == pytest.approx(float(np.median(row["times_ms"])))
        assert row["mpix_per_s"] == pytest.approx(64 * 96 / 1e6 / (row["median_ms"] / 1e3))
        assert row["peak_rss_mb"] > 50
        assert row["frame"] == {"label": "64x96", "height": 64, "width": 96, "megapixels": 64 * 96 / 1e6, "mode": "binned"}


def test_smoke_run_pipeline_row_has_stages(smoke):
    pipeline = smoke[0]["rows"][0]
    assert list(pipeline["stages"]) == ["black_level", "remosaic", "white_balance", "demosaic", "color_correction", "tone", "vignette", "oetf", "quantize"]
    assert all(s["median_ms"] > 0 and len(s["times_ms"]) == 2 for s in pipeline["stages"].values())
    # the whole run is timed around the stages, so it cannot be shorter than their sum
    assert pipeline["median_ms"] >= 0.99 * pipeline["stage_sum_ms"]
    assert pipeline["output"] == {"shape": [64, 96, 3], "dtype": "uint8"}


def test_smoke_run_peers_and_comparisons(smoke):
    result, _ = smoke
    rows = {row["key"]: row for row in result["rows"]}
    ahd = rows["peer/rawpy_ahd"]
    assert ahd["repeated_postprocess_identical"] is True and ahd["open_unpack_ms"] > 0
    assert ahd["output"] == {"shape": [64, 96, 3], "dtype": "uint8"}
    assert len({row["frame_sha1"] for row in result["rows"]}) == 1  # one frame for all
    malvar = rows["peer/isp_malvar2004"]
    assert malvar["equal_output"] and malvar["max_abs_diff_vs_colour"] < 1e-5
    compared = {c["name"]: c for c in result["comparisons"]}
    assert set(compared) == {"pipeline/basic vs peer/rawpy_ahd", "peer/isp_malvar2004 vs peer/colour_malvar2004"}
    c = compared["pipeline/basic vs peer/rawpy_ahd"]
    assert c["same_frame"] and c["speedup"] == pytest.approx(ahd["median_ms"] / rows["pipeline/basic"]["median_ms"])
    assert compared["peer/isp_malvar2004 vs peer/colour_malvar2004"]["target_speedup"] == 3.0
    assert result["notes"] == ["pipeline 'no_such_pipeline' skipped: configs/pipeline/no_such_pipeline.yaml does not exist"]


def test_smoke_run_markdown(smoke):
    result, markdown = smoke
    lines = markdown.splitlines()
    header = lines.index("| row | frame | backend | device | median ms | MP/s | peak RSS MB | peak device MB |")
    assert lines[header + 1].startswith("|---")
    body = [line for line in lines[header + 2 :] if line.startswith("|")][: len(result["rows"])]
    assert [line.split(" | ")[0] for line in body] == [f"| {row['name']}" for row in result["rows"]]
    assert "96×64 binned" in body[0] and " numpy | cpu | " in body[0]
    assert "rawpy AHD postprocess()" in markdown and "no_such_pipeline" in markdown
    assert report.render(result) == markdown  # python -m benchmarks.report regenerates it from the JSON


def test_report_cli_prints_the_table(smoke, tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(smoke[0]))
    report.main([str(path)])
    assert capsys.readouterr().out == smoke[1]


def test_a_failing_row_is_recorded(tmp_path):
    """A child's exception becomes the row's error (the parent reads it and goes on)."""
    spec = RowSpec("pipeline", "pipeline missing", "64x96", "numpy", 1, 0, (), {"pipeline": "no_such_pipeline"})
    out = tmp_path / "row.json"
    assert run._child(spec.to_json(), out) == 1
    payload = json.loads(out.read_text())
    assert "no_such_pipeline" in payload["error"] and "Traceback" in payload["traceback"]


def test_a_killed_row_is_recorded(monkeypatch):
    def killed(*args, **kwargs):
        return SimpleNamespace(returncode=-9, stderr="MemoryError\n")

    monkeypatch.setattr(run.subprocess, "run", killed)
    (row,) = run._run_row(RowSpec("sensor", "sensor capture", "50mp", "numpy", 1, 0, (), {"scope": "optics", "engine": "reference"}), 10)
    assert "SIGKILL" in row["error"] and "out-of-memory" in row["error"] and "MemoryError" in row["error"]
    assert row["frame"]["megapixels"] == pytest.approx(50.331648)


def test_error_rows_in_the_report():
    row = RowSpec("sensor", "sensor capture", "12mp", "cupy", 1).row(error="OutOfMemoryError: out of memory | allocating")
    result = {"environment": {"date": "2026-11-21T00:00:00+00:00"}, "rows": [row], "comparisons": [], "notes": []}
    markdown = report.render(result)
    assert "| sensor capture | 4096×3072 binned (12.6 MP) | cupy |  | failed: OutOfMemoryError: out of memory \\| allocating |" in markdown
    assert "### Errors" in markdown


def test_comparisons_pair_rows_of_one_size():
    def row(key, label, ms, backend="numpy", **more):
        return {"key": key, "name": key, "backend": backend, "frame": {"label": label}, "median_ms": ms, "frame_sha1": "a", **more}

    rows = [
        row("pipeline/default", "12mp", 100.0),
        row("pipeline/default", "12mp", 1.0, backend="cupy"),  # only NumPy is held against the CPU peers
        row("pipeline/default", "50mp", 400.0),  # no peer at this size
        row("peer/rawpy_ahd", "12mp", 150.0),
        row("peer/colour_malvar2004", "12mp", 30.0),
        row("peer/isp_malvar2004", "12mp", 12.0, max_abs_diff_vs_colour=2e-7, equal_output=True),
    ]
    got = {c["name"]: c for c in run.comparisons(rows)}
    assert set(got) == {"pipeline/default vs peer/rawpy_ahd", "peer/isp_malvar2004 vs peer/colour_malvar2004"}
    assert got["pipeline/default vs peer/rawpy_ahd"]["speedup"] == 1.5 and got["pipeline/default vs peer/rawpy_ahd"]["meets_target"]
    malvar = got["peer/isp_malvar2004 vs peer/colour_malvar2004"]
    assert malvar["speedup"] == 2.5 and malvar["meets_target"] is False and malvar["max_abs_diff"] == 2e-7


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12mp", (3072, 4096, "binned")),
        ("50MP", (6144, 8192, "full")),
        ("96x128", (96, 128, "binned")),
        ("3072x4100", (3072, 4100, "full")),  # wider than the binned read-out
        ("64x64:full", (64, 64, "full")),
    ],
)
def test_parse_size(text, expected):
    size = parse_size(text)
    assert (size.height, size.width, size.mode) == expected
    assert parse_size(size.label) == size
    assert f"scene.size=[{expected[0]},{expected[1]}]" in size.overrides


@pytest.mark.parametrize("text", ["12", "0x10", "10x", "axb", "10x10:"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="frame size"):
        parse_size(text)


def test_skipped_peers_at_quad_bayer_sizes():
    settings = run.Settings(sizes=("64x64:full",), backends=("numpy",), pipelines=(), kinds=("peers",), repeats=1)
    specs, notes = run.plan(settings)
    assert specs == [] and "quad_RGGB" in notes[0] and "64x64:full" in notes[0]


def test_every_row_kind_plans_and_measures():
    settings = run.Settings(sizes=("64x96",), backends=("numpy",), pipelines=("basic",), kinds=tuple(run.ROW_KINDS), repeats=1)
    specs, _ = run.plan(settings)
    assert {s.kind for s in specs} == set(run.ROW_KINDS)
    for spec in specs:
        assert RowSpec.from_json(spec.to_json()) == spec


def test_time_region_counts_only_the_timed_runs():
    calls = []
    times = common.time_region(get_backend("numpy"), lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and len(times) == 3 and all(t >= 0 for t in times)


def test_memory_meter_sees_a_host_allocation():
    meter = MemoryMeter(get_backend("numpy"))
    with meter.region() as small:
        pass
    with meter.region() as big:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        del block
    if small["region_peak_rss_mb"] is None:
        pytest.skip("this kernel does not let a process reset its peak RSS")
    with meter.region() as after:
        pass
    assert big["region_peak_rss_mb"] - small["region_peak_rss_mb"] > 50
    assert big["region_peak_rss_mb"] - after["region_peak_rss_mb"] > 50
    # the process's peak keeps the big region's, though each region resets the kernel's mark
    assert meter.process()["peak_rss_mb"] >= big["region_peak_rss_mb"]


def test_device_peak_wrapper_records_the_high_water_mark():
    """The allocator wrapper's logic, on a stand-in for CuPy's pool and allocator API."""

    class Pool:
        used = 100

        def used_bytes(self):
            return self.used

        def total_bytes(self):
            return 4096

    pool = Pool()
    allocator = {}

    def pool_malloc(nbytes):
        pool.used += nbytes
        return f"pointer to {nbytes}"

    cuda = SimpleNamespace(get_allocator=lambda: pool_malloc, set_allocator=lambda fn: allocator.update(current=fn))
    peak = common._DevicePeak(SimpleNamespace(cuda=cuda, get_default_memory_pool=lambda: pool))
    malloc = allocator["current"]
    assert malloc(1000) == "pointer to 1000" and peak.peak_bytes == 1100
    pool.used = 200  # freed back to the pool
    malloc(50)
    assert peak.peak_bytes == 1100
    peak.reset()
    assert peak.peak_bytes == 250 and peak.pool_reserved_bytes() == 4096


def test_legacy_stages_cli(capsys):
    from benchmarks import stages

    stages.main(["--backend", "numpy", "--size", "64", "96", "--repeats", "1", "pipeline=basic", "tuning=neutral"])
    result = json.loads(capsys.readouterr().out)
    (row,) = result["rows"]
    assert row["pipeline"] == "basic" and row["tuning"] == "neutral" and row["median_ms"] > 0 and "demosaic" in row["stages"]


def test_legacy_sensor_cli(capsys):
    from benchmarks import sensor

    sensor.main(["--backend", "numpy", "--size", "64", "96", "--repeats", "1", "sensor.mode=binned"])
    result = json.loads(capsys.readouterr().out)
    rows = {row["key"]: row for row in result["rows"]}
    assert set(rows) == {f"sensor/{scope}/{engine}" for scope, engine in sensor.SENSOR_ROWS}
    lens, bare = rows["sensor/optics/reference"], rows["sensor/sensor_only/fused"]
    assert lens["lens_model"] and not bare["lens_model"] and bare["engine"] == "fused"
    assert lens["all_noise_sources_on"] and lens["frame"]["mode"] == "binned" and lens["frame"]["height"] == 64
    assert re.search(r"sensor capture", lens["name"]) and bare["median_ms"] > 0
    assert rows["sensor/noise_adc/fused"]["scope"] == "noise_adc"


@pytest.mark.gpu
def test_gpu_pipeline_row_in_process():
    """On a GPU: CUDA-event timing and the device-memory high-water mark of a pipeline row."""
    from benchmarks.stages import measure_pipeline

    backend = get_backend("cupy")
    meter = MemoryMeter(backend)
    spec = RowSpec("pipeline", "pipeline basic", "256x384", "cupy", 2, 1, (), {"pipeline": "basic"})
    (row,) = measure_pipeline(spec, meter)
    assert row["device"] != "cpu" and row["timing"].startswith("cuda events")
    assert row["median_ms"] > 0 and len(row["times_ms"]) == 2
    # at least the input mosaic and the float32 RGB image were resident during the region
    assert row["peak_device_mb"] >= 256 * 384 * (2 + 12) / 2**20
    assert row["device_pool_reserved_mb"] >= row["peak_device_mb"]
