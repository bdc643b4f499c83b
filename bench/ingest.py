"""Ingest throughput: signed Stripe webhooks against `bridge serve` and, in the same run, against a bare
Starlette endpoint that only reads the body (same server settings: uvicorn, uvloop + httptools, no access log).

    .venv/bin/python -m bench.ingest [--seconds 10] [--concurrency 32 128] [--rounds 3] [--json out.json]
    .venv/bin/python -m bench.ingest --quick     # one second at 4 connections: the CI smoke test

Needs `wrk` (Debian: apt-get install wrk). Every request is a distinct, validly signed Stripe event (so the
bridge really verifies, maps and durably stores each one: SQLite WAL, synchronous=FULL, group commit); the
bodies are generated up front and cycled by a wrk Lua script. Everything runs on 127.0.0.1. Bare and bridge runs
alternate (bare then bridge at each concurrency, per round) so both see the same shared machine; besides req/s
and latency, each run reports the server's CPU per request (utime + stime of its process from /proc over the wrk
run, divided by the requests wrk completed), which moves far less than throughput when the machine is busy.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

from bench._common import (
    ROOT,
    cpu_seconds,
    free_port,
    load_average,
    parse_wrk,
    profiler,
    python,
    spawn,
    stop,
    wait_http,
    write_json,
)
from bridge.demo import stripe_signature

SECRET = "whsec_bench_secret"
BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def webhook(request):
    await request.body()
    return Response(b'{"status":"accepted"}', media_type="application/json")

app = Starlette(routes=[Route("/webhooks/stripe", webhook, methods=["POST"])])
"""

# the floor: bench/_floor_ingest.py (ADR 0009)
TARGETS = ("bare", "floor", "bridge")


def bodies(count: int, run: str) -> list[tuple[bytes, str]]:
    template = orjson.loads((ROOT / "fixtures" / "stripe" / "checkout.session.completed.json").read_bytes())
    now = int(time.time())
    out = []
    for index in range(count):
        template["id"] = f"evt_bench_{run}_{index}"
        template["data"]["object"]["payment_intent"] = f"pi_bench_{run}_{index}"
        body = orjson.dumps(template)
        out.append((body, stripe_signature(body, SECRET, now)))
    return out


def lua_script(requests: list[tuple[bytes, str]], path: Path) -> None:
    # bodies are plain data at load time; requests are formatted in init(), once wrk knows the Host header
    lines = ["local bodies = {}", "local sigs = {}", "local reqs = {}"]
    for index, (body, signature) in enumerate(requests):
        text = body.decode()
        assert "]==]" not in text
        if index % 10_000 == 0:  # a Lua function holds at most 65536 constants: one function per 10k requests
            lines.append("(function()" if index == 0 else "end)(); (function()")
        lines.append(f"bodies[#bodies+1] = [==[{text}]==]; sigs[#sigs+1] = '{signature}'")
    lines.append("end)()")
    lines += [
        "init = function(args)",
        "  for n = 1, #bodies do",
        "    reqs[n] = wrk.format('POST', '/webhooks/stripe',",
        "      {['Content-Type']='application/json', ['Stripe-Signature']=sigs[n]}, bodies[n])",
        "  end",
        "end",
        "local i = 0",
        "request = function()",
        "  i = i + 1",
        "  if i > #reqs then i = 1 end",
        "  return reqs[i]",
        "end",
    ]
    path.write_text("\n".join(lines))


def wrk(url: str, connections: int, seconds: int, script: Path) -> dict[str, float]:
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parse_wrk(output)


def server_command(tmp: Path, target: str, run: str, port: int) -> tuple[list[str], dict[str, str]]:
    """The command (and environment) that serves `target` on `port`, its files in `tmp` named after `run`. The bare
    app's module must be in `tmp` (bare.py, BARE_APP)."""
    if target in ("bare", "floor"):
        app, app_dir = ("bare:app", tmp) if target == "bare" else ("bench._floor_ingest:app", ROOT)
        command = [python(), "-m", "uvicorn", app, "--app-dir", str(app_dir), "--port", str(port)]
        command += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
        return command, {"FLOOR_SECRET": SECRET, "FLOOR_DB": str(tmp / f"{run}.db")}
    config = tmp / f"{run}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "outbox": {"url": f"sqlite:///{tmp / (run + '.db')}"},
                "mappings": str(ROOT / "mappings"),
                "sources": {"stripe": {"provider": "stripe", "secrets": [SECRET]}},
            }
        )
    )
    command = [python(), "-m", "bridge", "serve", "--config", str(config), "--port", str(port)]
    return command + ["--log-level", "WARNING"], {}


def run_one(
    tmp: Path, target: str, connections: int, seconds: int, pool: int, tag: str, profile: Path | None = None
) -> dict[str, float]:
    """One wrk run against a freshly started server; adds the server's CPU per request (µs)."""
    run = f"{target}{connections}{tag}"
    script = tmp / f"{run}.lua"
    lua_script(bodies(pool, run), script)
    port = free_port()
    command, env = server_command(tmp, target, run, port)
    proc = spawn(command, tmp / f"{run}.log", env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        if profile is not None and target == "bridge":
            profile.mkdir(parents=True, exist_ok=True)
            profiler(proc.pid, profile / f"ingest-c{connections}{tag}.txt", tmp / "py-spy.log")
        cpu_before = cpu_seconds(proc.pid)
        result = wrk(f"http://127.0.0.1:{port}/webhooks/stripe", connections, seconds, script)
        cpu = cpu_seconds(proc.pid) - cpu_before
    finally:
        stop(proc)
    result["cpu_us"] = cpu / max(1.0, result.get("requests", result["rps"] * seconds)) * 1e6
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--rounds", type=int, default=1, help="repeat each pair of runs; medians are reported")
    parser.add_argument("--pool", type=int, default=0, help="distinct signed requests per run (default: 15k/s)")
    parser.add_argument("--quick", action="store_true", help="smoke test: --seconds 1 --concurrency 4 --pool 2000")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--profile", type=Path, help="py-spy the bridge runs into DIR (see bench.profile)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.concurrency, args.pool = 1, [4], args.pool or 2000
    pool = args.pool or 15_000 * args.seconds
    load_before = load_average()
    runs: dict[tuple[str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "bare.py").write_text(BARE_APP)
        # the targets alternate, so all see the same (shared, busy) machine as nearly as possible
        for round_ in range(args.rounds):
            for connections in args.concurrency:
                for target in TARGETS:
                    result = run_one(tmp, target, connections, args.seconds, pool, f"r{round_}", args.profile)
                    runs.setdefault((target, connections), []).append(result)
    results = []
    for (target, connections), measured in runs.items():
        row: dict[str, Any] = {"target": target, "connections": connections}
        for key in ("rps", "p50", "p99", "non2xx", "errors", "cpu_us"):
            row[key] = statistics.median(r.get(key, 0.0) for r in measured)
        results.append(row)
    reference = {row["connections"]: row for row in results if row["target"] == "bare"}
    for row in results:
        bare = reference[row["connections"]]
        row["ratio"] = row["rps"] / bare["rps"]
        row["p99_ratio"] = row["p99"] / bare["p99"] if bare["p99"] else 0.0
        row["cpu_ratio"] = row["cpu_us"] / bare["cpu_us"] if bare["cpu_us"] else 0.0
    report = {
        "benchmark": "ingest",
        "seconds": args.seconds,
        "rounds": args.rounds,
        "load": [load_before, load_average()],
        "results": results,
    }
    print_report(report)
    if args.json:
        write_json(args.json, report)
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"ingest, {report['seconds']}s per run, {report['rounds']} round(s) (medians), wrk -t1, one server process, "
        f"127.0.0.1 (load {report['load'][0]:.1f} -> {report['load'][1]:.1f})"
    )
    print(
        f"{'target':<8} {'conns':>5} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'cpu us':>7} "
        f"{'ratio':>6} {'p99 x':>6} {'cpu x':>6}"
    )
    for r in sorted(report["results"], key=lambda r: (r["connections"], r["target"])):
        print(
            f"{r['target']:<8} {r['connections']:>5} {r['rps']:>10.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
            f"{r['non2xx']:>8.0f} {r['cpu_us']:>7.0f} {r['ratio']:>6.2f} {r['p99_ratio']:>6.2f} {r['cpu_ratio']:>6.2f}"
        )
    print("ratio: req/s / bare's; p99 x: p99 / bare's; cpu x: server CPU per request / bare's (same run)")
    print("floor: body read, Stripe HMAC checked, JSON parsed, raw body committed (WAL, FULL) - nothing else")


if __name__ == "__main__":
    main()
