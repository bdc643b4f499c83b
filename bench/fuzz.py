"""The long run of the webhook fuzzer: the generator and properties of tests/fuzz/ (unsigned garbage, hostile
headers, validly signed hostile JSON against every provider's webhook URL), many more requests.

    .venv/bin/python -m bench.fuzz [--requests 10000] [--seed 1] [--out DIR]

Prints requests sent, answers by status and request kind, max and p99 answer time, and every distinct failure
(broken property) with the smallest request that showed it; `--out` also writes each of those requests (body
and headers) to a file. Exit status 1 when any property failed. Everything runs in-process on 127.0.0.1: the
real app served by uvicorn, a real SQLite outbox, the dispatcher and the destinations' strict fakes.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings

from tests.fuzz.report import Stats
from tests.fuzz.strategies import KNOWN, FuzzInput, fuzz_inputs, one_per_source
from tests.fuzz.target import ANSWER_BOUND, FuzzThread


def run(requests: int, rng_seed: int, workdir: Path) -> Stats:
    with FuzzThread(workdir) as runner:
        explicit = [*KNOWN, *one_per_source()]
        for item in explicit:
            runner.check(item)

        @seed(rng_seed)
        @settings(
            max_examples=requests - len(KNOWN) - len(one_per_source()),
            database=None,
            deadline=None,
            phases=(Phase.generate,),
            suppress_health_check=list(HealthCheck),
        )
        @given(item=fuzz_inputs())
        def send(item: FuzzInput) -> None:
            runner.check(item)
            stats = runner.target.stats
            if stats.requests % 1000 == 0:
                print(f"  {stats.requests} requests, {len(stats.failures)} failures", file=sys.stderr)

        send()
        return runner.target.stats


def figures(stats: Stats, seconds: float) -> str:
    times = sorted(stats.times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    kinds = sorted(stats.kinds.items())
    lines = [
        f"requests          {stats.requests} in {seconds:.0f} s ({', '.join(f'{k} {n}' for k, n in kinds)})",
        f"sources           {len(stats.sources)} ({min(stats.sources.values())}..{max(stats.sources.values())} each)",
        f"by status         {', '.join(f'{status}: {n}' for status, n in sorted(stats.statuses.items()))}"
        f" (-2: refused before the body was read, the answer lost to the reset: {stats.cut_off})",
        f"answer time       median {statistics.median(times) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {times[-1] * 1000:.0f} ms (bound {ANSWER_BOUND:.0f} s)",
        f"sentinels         {stats.sentinels} delivered to every destination after a request that made deliveries",
        f"failures          {len(stats.failures)} ({len(stats.distinct())} distinct)",
        f"fresh apps        {stats.restarts} (after a request passed the memory or storage bound)",
    ]
    lines.append("slowest answers:")
    lines += [f"  {seconds * 1000:7.0f} ms  {what[:200]}" for seconds, what in stats.slowest]
    if stats.crashes:
        lines.append("errors logged while answering (the webhook was stored as mapping_failed):")
        lines += [f"  {n:5d}x {what}" for what, n in stats.crashes.most_common()]
    return "\n".join(lines)


def write_reproducers(stats: Stats, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for index, (key, group) in enumerate(sorted(stats.distinct().items()), 1):
        smallest = min(group, key=lambda f: len(f.body))
        (out / f"{index:02d}.body").write_bytes(smallest.body)
        headers = b"".join(name.encode() + b": " + value + b"\n" for name, value in smallest.headers.items())
        (out / f"{index:02d}.headers").write_bytes(headers)
        (out / f"{index:02d}.txt").write_text(f"{key}\n{smallest.reproducer(limit=2000)}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the smallest request of each distinct failure here")
    args = parser.parse_args()
    logging.getLogger("uvicorn.error").setLevel(logging.ERROR)  # "Invalid HTTP request" per hostile header
    logging.getLogger("bridge").setLevel(logging.ERROR)  # the bridge's own errors are collected, not printed
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bridge-fuzz-") as workdir:
        stats = run(args.requests, args.seed, Path(workdir))
    print(figures(stats, time.perf_counter() - started))
    if stats.failures:
        print()
        print(stats.report())
    if args.out is not None:
        write_reproducers(stats, args.out)
    return 1 if stats.failures else 0


if __name__ == "__main__":
    sys.exit(main())
