"""The Markdown report of a benchmark result (the JSON ``python -m benchmarks.run`` writes).

    python -m benchmarks.report results.json            # print the tables
    python -m benchmarks.report results.json > table.md

One table of every row (throughput in MP/s with the frame, backend and device), one of the
comparisons with the peers measured in the same run, one of the stages of each pipeline row,
then the notes and the errors. The README's table is regenerated from a committed JSON this way.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["render", "main"]


def render(result: dict[str, Any]) -> str:
    """The Markdown report of a result."""
    rows = result["rows"]
    lines = [f"## isp-sim benchmark, {result['environment']['date'][:10]}", "", *_environment(result), ""]
    settings = result.get("settings", {})
    lines += [
        f"Median of {settings.get('repeats', '?')} timed runs after {settings.get('warmup', '?')} warm-up run(s), the device "
        "synchronised (CUDA events on a GPU); the data is on the device before the timer starts (no host-device transfers "
        "unless a row says so). MP/s: input frame pixels over the median time. Peak RSS: during the timed region (resident "
        "inputs included) / over the row's whole process; peak device memory: the CuPy pool's high-water mark during the region.",
        "",
        "| row | frame | backend | device | median ms | MP/s | peak RSS MB | peak device MB |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(_row(row))
    compared = result.get("comparisons") or []
    if compared:
        lines += [
            "",
            "### Against the peers (same frame, same run)",
            "",
            "Speed-up: the peer's median time over the project's (above 1: the project is faster).",
            "",
            "| project | peer | frame | project ms | peer ms | speed-up | target | note |",
            "|---|---|---|---:|---:|---:|---:|---|",
        ]
        lines += [_comparison(c) for c in compared]
    for row in rows:
        if row.get("stages") and not row.get("error"):
            lines += ["", f"### Stages: {row['name']}, {_frame(row['frame'])}, {row['backend']} on {row['device']}", ""]
            lines += _stages(row)
    notes = result.get("notes") or []
    if notes:
        lines += ["", "### Notes", "", *[f"- {note}" for note in notes]]
    errors = [row for row in rows if row.get("error")]
    if errors:
        lines += ["", "### Errors", "", *[f"- {row['name']}, {_frame(row['frame'])}, {row['backend']}: {row['error']}" for row in errors]]
    return "\n".join(lines) + "\n"


def _environment(result: dict[str, Any]) -> list[str]:
    env = result["environment"]
    cpu = env.get("cpu") or {}
    versions = env.get("versions") or {}
    commit = (env.get("commit") or "unknown")[:12] + (" (uncommitted changes)" if env.get("dirty") else "")
    out = [f"- commit {commit}, {env['date']}", f"- CPU: {cpu.get('model', '?')}, {cpu.get('usable_cores', cpu.get('cores', '?'))} cores usable"]
    gpu = env.get("gpu")
    if gpu:
        out.append(
            f"- GPU: {gpu['name']} ({gpu['memory_gb']:.0f} GiB, compute {gpu['compute_capability']}), driver {gpu.get('driver_version') or '?'}, "
            f"CUDA runtime {gpu['cuda_runtime']}, CuPy {gpu['cupy']}"
        )
    else:
        out.append("- GPU: none")
    shown = ("python", "numpy", "scipy", "rawpy", "libraw", "colour-demosaicing", "isp-sim")
    out.append("- " + ", ".join(f"{name} {versions[name]}" for name in shown if name in versions))
    return out


def _row(row: dict[str, Any]) -> str:
    frame = _frame(row["frame"])
    if row.get("error"):
        return f"| {row['name']} | {frame} | {row['backend']} | {row.get('device', '')} | failed: {_cell(row['error'])} | | | |"
    rss = f"{_number(row.get('region_peak_rss_mb'))} / {_number(row.get('peak_rss_mb'))}"
    name = row["name"] + (" (includes transfers)" if row.get("includes_transfers") else "")
    return (
        f"| {name} | {frame} | {row['backend']} | {row['device']} | {_number(row['median_ms'])} | "
        f"{_number(row.get('mpix_per_s'))} | {rss} | {_number(row.get('peak_device_mb'))} |"
    )


def _comparison(c: dict[str, Any]) -> str:
    target = f"≥ {c['target_speedup']:g}" if c.get("target_speedup") is not None else ""
    if c.get("meets_target") is not None:
        target += " met" if c["meets_target"] else " missed"
    notes = []
    if "max_abs_diff" in c:
        notes.append(f"max abs difference {c['max_abs_diff']:.2g} ({'equal' if c['equal_output'] else 'NOT equal'} within {c['equal_atol']:g})")
    if not c.get("same_frame", True):
        notes.append("different frames")
    return (
        f"| {c['project']} | {c['peer']} | {_frame(c['frame'])} | {_number(c['project_ms'])} | {_number(c['peer_ms'])} | "
        f"{c['speedup']:.2f} | {target} | {'; '.join(notes)} |"
    )


def _stages(row: dict[str, Any]) -> list[str]:
    total = sum(stage["median_ms"] for stage in row["stages"].values()) or 1.0
    lines = ["| stage | median ms | MP/s | share |", "|---|---:|---:|---:|"]
    for name, stage in row["stages"].items():
        lines.append(f"| {name} | {_number(stage['median_ms'])} | {_number(stage.get('mpix_per_s'))} | {100 * stage['median_ms'] / total:.0f} % |")
    lines.append(f"| **pipeline** | **{_number(row['median_ms'])}** | **{_number(row.get('mpix_per_s'))}** | |")
    return lines


def _frame(frame: dict[str, Any]) -> str:
    return f"{frame['width']}×{frame['height']} {frame['mode']} ({_number(frame['megapixels'])} MP)"


def _number(value: float | None) -> str:
    """Whole numbers from 100 up (thousands grouped by a space, as the README writes them), three
    significant figures below."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= 2:
        return f"{value:,.0f}".replace(",", " ")
    return f"{value:.{2 - magnitude}f}"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, help="a JSON file written by python -m benchmarks.run --out")
    args = parser.parse_args(argv)
    print(render(json.loads(args.result.read_text())), end="")


if __name__ == "__main__":
    main()
