"""The bench harness keeps working: `bench/run.py --quick --no-peers` runs every case small.

Our own cases and their in-run baselines (bare aiohttp, sqlite3) must produce numbers. The peers
(Huey, SAQ, arq, procrastinate, socketio) are left out here: building their environment and
running them tripled this test's time (about 200 s against 60 s), and the benchmark run that
docs/benchmarks.md records exercises them in full.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def numbers(results: dict[str, Any], case: str, label: str, key: str) -> list[float]:
    runs = results.get(case, {}).get(label, [])
    assert runs, f"no runs of {label} in {case}"
    errors = [r["error"] for r in runs if "error" in r]
    assert not errors, f"{case} {label}: {errors}"
    values = [float(r[key]) for r in runs]
    assert all(not math.isnan(v) for v in values), f"{case} {label} {key}: {values}"
    return values


@pytest.mark.timeout(400)
def test_bench_quick_runs_every_case(tmp_path: Path) -> None:
    out, raw = tmp_path / "benchmarks.md", tmp_path / "results.json"
    cmd = ["bench/run.py", "--quick", "--no-peers", "--out", str(out), "--json", str(raw)]
    proc = subprocess.run(
        [sys.executable, *cmd],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=380,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    data = json.loads(raw.read_text())
    results, skipped = data["results"], data["skipped"]

    for case in ("user-0", "user-10"):
        for mode in ("one", "inflight", "batch"):
            assert min(numbers(results, case, f"jobserver {mode}", "jobs_per_s")) > 0
            runs = results[case][f"jobserver {mode}"]
            assert all(r["completed_seen"] == r["jobs"] + 1 for r in runs)
    latency = results["enqueue"]["jobserver"]
    assert min(numbers(results, "enqueue", "jobserver", "post_p50_ms")) > 0
    assert all(r["paced"] > 0 and r["load_events_per_s"] > 0 for r in latency)
    assert min(numbers(results, "throughput-0", "jobserver c=64", "jobs_per_s")) > 0
    runs = results["throughput-10"]["jobserver c=64"]
    assert all(r["all_durable_and_delivered"] for r in runs)
    assert min(numbers(results, "fanout-100", "ours", "deliveries_per_s")) > 0
    assert all(r["received"] == r["expected"] for r in results["fanout-100"]["ours"])
    assert max(numbers(results, "latency", "ours", "latency_p99_ms")) > 0
    numbers(results, "connections-200", "ours", "bytes_per_connection")
    numbers(results, "connections-200", "bare", "bytes_per_connection")
    assert all(r["woken"] == r["clients"] for r in results["longpoll"]["ours"])
    assert min(numbers(results, "sqlite", "sqlite3", "single_rows_per_s")) > 0
    pipeline = results["pdf"]["pdf_pipeline"]
    assert pipeline and all("ratio pipeline / pypdf" in r["markdown"] for r in pipeline)

    assert skipped.get("peers") == "--no-peers"
    assert "pg-0" not in results  # issue 17's PostgreSQL case runs only when named

    report = out.read_text()
    assert "## Targets (issues 2, 3, 4, 14, 17)" in report
    assert "| jobserver one |" in report
    assert "| jobserver c=64 |" in report
