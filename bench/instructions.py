"""Instructions per delivery, counted by valgrind: the bridge's dispatcher against a raw aiohttp client and the
delivery floor, sending the same requests to the same local sink. Unlike CPU seconds on a shared virtual machine
(which moved by 1.6x between runs of the same code here), the bridge's count repeats to within ~0.5 % (raw's and
the floor's to ~3 %: how their sends and commits interleave varies), so a change of a few percent can be seen in
one run: use it to decide about a change, and `bench.deliver` for what it buys in
deliveries per second.

    .venv/bin/python -m bench.instructions [--small 500] [--large 2500] [--targets bridge,floor,raw] [--json out.json]
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

Under valgrind the target runs ~40x slower while the sink and the disk do not, so the share of waiting differs
from a real run (commits group fewer results, for one), and work done per second rather than per delivery (WAL
checkpoints every 0.25 s, the claim loop's polls) counts ~40x more than it does in a real run; the mapping-reload
watcher (once a second) is left out for that reason. The counts compare code, not rates.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench._common import local_sink, python, write_json
from bench._floor_dispatch import fill
from bench.deliver import prefill, rendered

TARGETS = ("bridge", "floor", "raw")
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def counted(target: str, workdir: Path, url: str, count: int) -> int:
    """Instructions of one run of the target with `count` deliveries (valgrind's `I refs`)."""
    completed = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            python(),
            "-m",
            "bench._instructions_target",
            target,
            str(workdir),
            url,
            str(count),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    found = _REFS.search(completed.stderr)
    if completed.returncode != 0 or found is None:
        raise RuntimeError(f"{target} ({count}) failed under valgrind:\n{completed.stderr[-3000:]}")
    return int(found.group(1).replace(",", ""))


def prepare(target: str, workdir: Path, url: str, count: int) -> None:
    if target == "bridge":
        uvloop.run(prefill(workdir / f"outbox-{count}.db", count))
    elif target == "floor":
        fill(workdir / f"floor-{count}.db", [r.body for r in rendered(url, count)])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=2500)
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated, of bridge, floor, raw")
    parser.add_argument("--quick", action="store_true", help="smoke test: --small 50 --large 250")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.small, args.large = 50, 250
    targets = [t for t in args.targets.split(",") if t]
    if unknown := set(targets) - set(TARGETS):
        parser.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    if args.large <= args.small:
        parser.error("--large must be more than --small")
    if shutil.which("valgrind") is None:
        raise SystemExit("bench.instructions needs valgrind (apt-get install valgrind)")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bridge-instructions-") as tmp_name:
        tmp = Path(tmp_name)
        with local_sink(tmp) as sink:
            url = f"{sink}/collect"
            requests = rendered(url, args.large)
            (tmp / "requests.json").write_bytes(
                orjson.dumps([[r.method, r.url, r.headers, r.body.decode()] for r in requests])
            )
            for target in targets:
                totals = {}
                for count in (args.small, args.large):
                    prepare(target, tmp, url, count)
                    totals[count] = counted(target, tmp, url, count)
                per = (totals[args.large] - totals[args.small]) / (args.large - args.small)
                results[target] = {"small": totals[args.small], "large": totals[args.large], "per_delivery": per}
    report: dict[str, Any] = {
        "benchmark": "instructions",
        "small": args.small,
        "large": args.large,
        "results": results,
    }
    for reference in ("raw", "floor"):
        if "bridge" in results and reference in results:
            report[f"ratio_{reference}"] = results[reference]["per_delivery"] / results["bridge"]["per_delivery"]
    print_report(report)
    if args.json:
        write_json(args.json, report)
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"instructions per delivery (valgrind; runs of {report['small']} and {report['large']} deliveries, "
        "the difference), 127.0.0.1"
    )
    names = {"bridge": "bridge dispatcher", "floor": "floor: durable, nothing else", "raw": "raw aiohttp"}
    for target, figures in report["results"].items():
        print(f"  {names[target]:<30} {figures['per_delivery']:>12,.0f}")
    for reference in ("raw", "floor"):
        if f"ratio_{reference}" in report:
            print(f"  {f'ratio {reference} / bridge':<30} {report[f'ratio_{reference}']:>12.2f}")


if __name__ == "__main__":
    main()
