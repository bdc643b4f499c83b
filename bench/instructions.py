"""Instructions per delivery (or per webhook), counted by valgrind: the bridge's dispatcher against a raw aiohttp
client and the delivery floor, sending the same requests to the same local sink; with `--path ingest`, `bridge
serve` taking signed Stripe webhooks against the bare endpoint and the ingest floor of `bench.ingest`.

Unlike CPU seconds on a shared virtual machine (which moved by 1.6x between runs of the same code here), the
bridge's count repeats to within ~0.5 % (raw's and the floor's to ~3 %: how their sends and commits interleave
varies), so a change of a few percent can be seen in one run: use it to decide about a change, and
`bench.deliver` / `bench.ingest` for what it buys per second.

    .venv/bin/python -m bench.instructions [--small 500] [--large 2500] [--targets bridge,floor,raw] [--json out.json]
    .venv/bin/python -m bench.instructions --path ingest [--targets bridge,floor,bare]
    .venv/bin/python -m bench.instructions --quick    # 50 and 250 deliveries: the CI smoke test

Each target runs twice under `valgrind --tool=cachegrind --cache-sim=no`, once with `--small` and once with
`--large` deliveries; start-up and shut-down cancel out of the difference, so per delivery =
(instructions(large) - instructions(small)) / (large - small). Inputs (the outbox backlog, the floor's table, the
pre-rendered requests) are written before, outside valgrind. Counted: the target's process, its threads included
(the outbox's writer thread), user space only (the kernel's share, fsync included, is not an instruction here).

- raw: aiohttp posting the pre-rendered requests from 32 workers (no rendering counted);
- floor: bench/_floor_dispatch.py, the least durable dispatcher (docs/adr/0009-…);
- bridge: `bridge serve`'s app without its HTTP server (config, JSON logs, mappings, the lifespan: SQLite outbox,
  dispatcher with its metrics hook, upkeep; the collector tuned), an http destination of concurrency 32, until
  every delivery is recorded as delivered.

Ingest: each server (the commands of `bench.ingest`) runs under valgrind from start to exit, taking `--small`, then
in another run `--large`, distinct validly signed webhooks from 32 concurrent connections of a client outside
valgrind; every answer must be a 2xx. Counted: the server process, its writer thread included (and, for the
bridge, its once-a-second mapping watcher and idle dispatcher, a few thousand instructions per webhook here).

Under valgrind the target runs ~40x slower while the sink and the disk do not, so the share of waiting differs
from a real run (commits group fewer results, for one), and work done per second rather than per delivery (WAL
checkpoints every 0.25 s, the claim loop's polls) counts ~40x more than it does in a real run; the mapping-reload
watcher (once a second) is left out for that reason. The counts compare code, not rates.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop

from bench._common import free_port, local_sink, python, spawn, stop, wait_http, write_json
from bench._floor_dispatch import fill
from bench.deliver import prefill, rendered
from bench.ingest import BARE_APP, bodies, server_command

TARGETS = {"delivery": ("bridge", "floor", "raw"), "ingest": ("bridge", "floor", "bare")}
VALGRIND = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
CONCURRENCY = 32
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def counted(target: str, workdir: Path, url: str, count: int) -> int:
    """Instructions of one run of the delivery target with `count` deliveries (valgrind's `I refs`)."""
    command = [python(), "-m", "bench._instructions_target", target, str(workdir), url, str(count)]
    completed = subprocess.run([*VALGRIND, *command], capture_output=True, text=True, timeout=1800)
    found = _REFS.search(completed.stderr)
    if completed.returncode != 0 or found is None:
        raise RuntimeError(f"{target} ({count}) failed under valgrind:\n{completed.stderr[-3000:]}")
    return int(found.group(1).replace(",", ""))


def ingest_counted(target: str, workdir: Path, count: int) -> int:
    """Instructions of one run of an ingest server, start to exit, that took `count` signed webhooks."""
    run = f"{target}-{count}"
    port = free_port()
    command, env = server_command(workdir, target, run, port)
    log = workdir / f"{run}.log"
    proc = spawn([*VALGRIND, *command], log, env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=600)
        statuses = uvloop.run(post_all(f"http://127.0.0.1:{port}/webhooks/stripe", bodies(count, run)))
    finally:
        stop(proc)  # SIGTERM: the server exits and valgrind writes its count
    refused = [status for status in statuses if not 200 <= status < 300]
    if refused:
        raise RuntimeError(f"{target}: {len(refused)} of {count} webhooks answered {sorted(set(refused))}")
    found = _REFS.search(log.read_text())
    if proc.returncode not in (0, -signal.SIGTERM) or found is None:  # uvicorn ends by re-raising the SIGTERM
        raise RuntimeError(f"{target} ({count}) failed under valgrind (exit {proc.returncode}); see {log}")
    return int(found.group(1).replace(",", ""))


async def post_all(url: str, requests: list[tuple[bytes, str]]) -> list[int]:
    """POST each (body, Stripe-Signature) from CONCURRENCY connections; the statuses."""
    queue = iter(requests)
    statuses: list[int] = []
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:

        async def client() -> None:
            for body, signature in queue:
                headers = {"Content-Type": "application/json", "Stripe-Signature": signature}
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    statuses.append(response.status)

        await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
    return statuses


def prepare(target: str, workdir: Path, url: str, count: int) -> None:
    if target == "bridge":
        uvloop.run(prefill(workdir / f"outbox-{count}.db", count))
    elif target == "floor":
        fill(workdir / f"floor-{count}.db", [r.body for r in rendered(url, count)])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=2500)
    parser.add_argument("--path", choices=sorted(TARGETS), default="delivery", help="what is counted per item")
    parser.add_argument("--targets", help="comma-separated: bridge, floor, raw (delivery) or bare (ingest)")
    parser.add_argument("--quick", action="store_true", help="smoke test: --small 50 --large 250")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.small, args.large = 50, 250
    targets = [t for t in (args.targets or ",".join(TARGETS[args.path])).split(",") if t]
    if unknown := set(targets) - set(TARGETS[args.path]):
        parser.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    if args.large <= args.small:
        parser.error("--large must be more than --small")
    if shutil.which("valgrind") is None:
        raise SystemExit("bench.instructions needs valgrind (apt-get install valgrind)")
    sizes = (args.small, args.large)
    with tempfile.TemporaryDirectory(prefix="bridge-instructions-") as tmp_name:
        tmp = Path(tmp_name)
        if args.path == "ingest":
            (tmp / "bare.py").write_text(BARE_APP)
            totals = {target: {n: ingest_counted(target, tmp, n) for n in sizes} for target in targets}
        else:
            totals = delivery_counts(tmp, targets, sizes)
    results = {
        target: {
            "small": n[args.small],
            "large": n[args.large],
            "per_delivery": (n[args.large] - n[args.small]) / (args.large - args.small),
        }
        for target, n in totals.items()
    }
    report: dict[str, Any] = {
        "benchmark": "instructions",
        "path": args.path,
        "small": args.small,
        "large": args.large,
        "results": results,
    }
    reference = "bare" if args.path == "ingest" else "raw"
    for other in (reference, "floor"):
        if "bridge" in results and other in results:
            report[f"ratio_{other}"] = results[other]["per_delivery"] / results["bridge"]["per_delivery"]
    print_report(report)
    if args.json:
        write_json(args.json, report)
    return report


def delivery_counts(tmp: Path, targets: list[str], sizes: tuple[int, int]) -> dict[str, dict[int, int]]:
    """Per delivery target, its instructions at each size, against one local sink."""
    with local_sink(tmp) as sink:
        url = f"{sink}/collect"
        requests = rendered(url, max(sizes))
        (tmp / "requests.json").write_bytes(
            orjson.dumps([[r.method, r.url, r.headers, r.body.decode()] for r in requests])
        )
        totals: dict[str, dict[int, int]] = {}
        for target in targets:
            totals[target] = {}
            for count in sizes:
                prepare(target, tmp, url, count)
                totals[target][count] = counted(target, tmp, url, count)
        return totals


def print_report(report: dict[str, Any]) -> None:
    item = "webhook" if report["path"] == "ingest" else "delivery"
    print(
        f"instructions per {item} (valgrind; runs of {report['small']} and {report['large']}, the difference), "
        "127.0.0.1"
    )
    names = {
        "bridge": "bridge serve" if item == "webhook" else "bridge dispatcher",
        "floor": "floor: durable, nothing else",
        "raw": "raw aiohttp",
        "bare": "bare Starlette endpoint",
    }
    for target, figures in report["results"].items():
        print(f"  {names[target]:<30} {figures['per_delivery']:>12,.0f}")
    for reference in ("bare", "raw", "floor"):
        if f"ratio_{reference}" in report:
            print(f"  {f'ratio {reference} / bridge':<30} {report[f'ratio_{reference}']:>12.2f}")


if __name__ == "__main__":
    main()
