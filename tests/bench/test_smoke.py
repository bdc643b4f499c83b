"""Each benchmark, run tiny (`--quick`, seconds), produces its figures: every number it reports is there, finite,
and the counts add up (deliveries = webhooks x fan-out, every size measured, a ratio against its reference).
No timing is asserted: speed is what the benchmarks print, not what tests check."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def run_bench(module: str, tmp_path: Path, *args: str, timeout: float = 110) -> dict[str, Any]:
    out = tmp_path / f"{module}.json"
    completed = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", "--quick", "--json", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report: dict[str, Any] = json.loads(out.read_text())
    assert report["benchmark"] == module
    assert "ratio" in completed.stdout or " x" in completed.stdout  # the printed table has its ratio columns
    return report


def figure(value: Any) -> float:
    assert isinstance(value, int | float) and not isinstance(value, bool), value
    assert math.isfinite(value) and value >= 0, value
    return float(value)


def test_e2e_reports_latency_for_every_fanout_against_the_relay(tmp_path: Path) -> None:
    report = run_bench("e2e", tmp_path)
    assert [r["fanout"] for r in report["results"]] == [1, 2]
    for result in report["results"]:
        for target in ("bridge", "relay"):
            row = result[target]
            assert row["webhooks"] > 0
            assert row["deliveries"] == row["webhooks"] * result["fanout"], row  # every delivery arrived, once
            for key in ("p50_ms", "p99_ms", "ack_p50_ms", "ack_p99_ms", "server_cpu_us_per_webhook"):
                figure(row[key])
            assert row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]


def test_scale_measures_every_size_against_the_empty_outbox(tmp_path: Path) -> None:
    report = run_bench("scale", tmp_path)
    assert [r["size"] for r in report["results"]] == [0, 500, 2000]
    for row in report["results"]:
        for key in ("claim_100_ms", "ingest_us", "stats_ms", "ops_outbox_ms", "http_ingest_p50_ms", "rss_mb", "db_mb"):
            assert figure(row[key]) > 0, (key, row)
    sizes = [r["db_mb"] for r in report["results"]]
    assert sizes == sorted(sizes)  # the fill really grew the file


def test_deliver_compares_the_drain_with_raw_aiohttp(tmp_path: Path) -> None:
    report = run_bench("deliver", tmp_path)
    for side in ("bridge", "raw", "floor"):
        assert figure(report[side]["rate"]) > 0
        assert figure(report[side]["cpu_us"]) > 0
    assert report["floor"]["delivered"] == report["deliveries"]  # the floor really sent and recorded each one
    assert figure(report["ratio"]) > 0 and figure(report["floor_ratio"]) > 0


def test_ingest_compares_bridge_with_the_bare_and_floor_endpoints(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        reason = "bench.ingest drives wrk (scripts/setup installs it with apt-get when it may)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the ingest benchmark: {reason}")
        pytest.skip(reason)
    report = run_bench("ingest", tmp_path)
    rows = {(r["target"], r["connections"]): r for r in report["results"]}
    assert set(rows) == {("bare", 4), ("floor", 4), ("bridge", 4)}
    for row in rows.values():
        assert figure(row["rps"]) > 0
        # every webhook verified (the floor's own HMAC check too: a wrong one answers 400), mapped and stored
        assert row["non2xx"] == 0 and row["errors"] == 0
        figure(row["cpu_us"])
    assert rows[("bare", 4)]["ratio"] == 1.0
    assert figure(rows[("bridge", 4)]["ratio"]) > 0


def test_parts_measures_the_send_and_the_outbox_against_raw(tmp_path: Path) -> None:
    report = run_bench("parts", tmp_path)
    # --quick: one round; the benchmark itself fails unless every send was classified delivered and every
    # claimed delivery's completion applied
    assert len(report["rounds"]) == 1
    for key in ("raw_us", "send_us", "outbox_us", "ratio"):
        assert figure(report[key]) > 0


@pytest.mark.parametrize(
    ("path", "targets"), [("delivery", {"bridge", "floor", "raw"}), ("ingest", {"bridge", "floor", "bare"})]
)
def test_instructions_counts_the_bridge_against_its_references(tmp_path: Path, path: str, targets: set[str]) -> None:
    if shutil.which("valgrind") is None:
        reason = "bench.instructions counts under valgrind"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the instruction benchmark: {reason}")
        pytest.skip(reason)
    # every target runs twice under valgrind
    report = run_bench("instructions", tmp_path, "--path", path, timeout=300)
    # --quick: 50 and 250; each delivery target checked itself that every delivery arrived (and, for the bridge
    # and the floor, was recorded as delivered); the benchmark fails unless every webhook was answered 2xx
    assert report["path"] == path and set(report["results"]) == targets
    for figures in report["results"].values():
        assert figures["large"] > figures["small"] > 0
        assert figure(figures["per_delivery"]) > 0
    reference = "bare" if path == "ingest" else "raw"
    assert figure(report[f"ratio_{reference}"]) > 0 and figure(report["ratio_floor"]) > 0
