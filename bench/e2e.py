"""Balanced load: signed Stripe webhooks at a fixed rate into `bridge serve`, delivered with fan-out 1 and 5 to a
local sink; webhook → destination latency and the highest rate at which the backlog stays flat.

    .venv/bin/python -m bench.e2e [--seconds 5] [--fanout 1 5] [--json out.json]
    .venv/bin/python -m bench.e2e --quick        # a few seconds: one low rate, no search (the CI smoke test)

The sender is open-loop: webhook n leaves at start + n/rate whatever the server does (no coordinated omission),
each a distinct, validly signed `checkout.session.completed` that the bridge verifies, maps and durably commits
(SQLite WAL, synchronous=FULL) before its 2xx. Each of the `fanout` http destinations points at its own path of
one recording sink, which notes when every event arrives (CLOCK_MONOTONIC is shared by all processes of the
machine, so arrival − send is the webhook → destination latency).

Per fan-out: a search doubles the rate from `--start-rate` while the backlog stays flat, then bisects; "flat"
means every webhook got its 2xx, every delivery arrived, and over the second half of the window the backlog
(deliveries owed minus arrived) grew by less than 5 % of the delivery rate. Then one window at half that rate
measures latency, and the same window is run against the reference measured in the same run: a bare relay
(Starlette on the same uvicorn settings) that reads the webhook and posts it to the same `fanout` sink paths
with aiohttp before answering — no verification, mapping, storage or retries.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop
import yaml

from bench._common import (
    ROOT,
    cpu_seconds,
    free_port,
    load_average,
    local_sink,
    percentile,
    profiler,
    python,
    spawn,
    stop,
    wait_http,
    write_json,
)
from bridge.demo import stripe_signature

SECRET = "whsec_bench_secret"
#: backlog growth, as a fraction of the delivery rate, above which a window counts as falling behind
GROWTH_LIMIT = 0.05

RELAY_APP = """
import asyncio, contextlib, os
import aiohttp
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

URLS = os.environ["RELAY_URLS"].split(",")
HEADERS = {"content-type": "application/json"}
state = {}

@contextlib.asynccontextmanager
async def lifespan(app):
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
        state["session"] = session
        yield

async def post(url, body):
    async with state["session"].post(url, data=body, headers=HEADERS) as response:
        await response.read()

async def webhook(request):
    body = await request.body()
    await asyncio.gather(*(post(url, body) for url in URLS))
    return Response(b'{"status":"accepted"}', media_type="application/json")

async def healthz(request):
    return Response(b"ok")

app = Starlette(routes=[Route("/webhooks/stripe", webhook, methods=["POST"]), Route("/healthz", healthz)],
                lifespan=lifespan)
"""


@dataclass
class Window:
    """One fixed-rate window: what was sent, answered and delivered."""

    rate: float
    fanout: int
    seconds: float
    started: float = 0.0
    sends: dict[int, float] = field(default_factory=dict)  # n -> send time (monotonic)
    acks_ms: list[float] = field(default_factory=list)
    failures: int = 0
    lag: float = 0.0  # worst lateness of the sender against its schedule, seconds
    arrivals: dict[tuple[str, int], float] = field(default_factory=dict)  # first arrival per (path, n)
    cpu: float = 0.0  # server CPU seconds over the window and its drain

    @property
    def expected(self) -> int:
        return len(self.sends) * self.fanout

    def latencies_ms(self) -> list[float]:
        return [(t - self.sends[n]) * 1000 for (_, n), t in self.arrivals.items() if n in self.sends]

    def growth(self) -> float:
        """Deliveries per second by which the backlog grew over the second half of the sending window
        (least-squares slope of owed − arrived, sampled 21 times)."""
        sends = sorted(self.sends.values())
        arrived = sorted(self.arrivals.values())
        times = [self.started + self.seconds * (0.5 + 0.025 * i) for i in range(21)]
        backlog = [self.fanout * bisect.bisect_right(sends, t) - bisect.bisect_right(arrived, t) for t in times]
        mean_t = sum(times) / len(times)
        mean_b = sum(backlog) / len(backlog)
        num = sum((t - mean_t) * (b - mean_b) for t, b in zip(times, backlog, strict=True))
        den = sum((t - mean_t) ** 2 for t in times)
        return num / den if den else 0.0

    def verdict(self) -> tuple[bool, str]:
        if self.failures:
            return False, f"{self.failures} webhooks not acknowledged"
        if len(self.arrivals) < self.expected:
            return False, f"{self.expected - len(self.arrivals)} deliveries missing after the drain"
        if self.lag > max(0.25, 0.05 * self.seconds):
            return False, f"the sender fell {self.lag:.2f} s behind its schedule"
        growth = self.growth()
        if growth > GROWTH_LIMIT * self.rate * self.fanout:
            return False, f"backlog grew {growth:.0f}/s"
        return True, f"backlog flat ({growth:+.0f}/s)"

    def summary(self) -> dict[str, Any]:
        latencies = self.latencies_ms()
        sent = max(1, len(self.sends))
        return {
            "rate": self.rate,
            "fanout": self.fanout,
            "webhooks": len(self.sends),
            "deliveries": len(self.arrivals),
            "p50_ms": round(percentile(latencies, 50), 2),
            "p99_ms": round(percentile(latencies, 99), 2),
            "max_ms": round(max(latencies, default=0.0), 2),
            "ack_p50_ms": round(percentile(self.acks_ms, 50), 2),
            "ack_p99_ms": round(percentile(self.acks_ms, 99), 2),
            "server_cpu_us_per_webhook": round(self.cpu / sent * 1e6, 1),
            "flat": self.verdict()[0],
            "note": self.verdict()[1],
        }


class Bodies:
    """Distinct signed Stripe checkout webhooks; the n-th carries the marker `pi_e2e_<n>` the sink looks for."""

    def __init__(self) -> None:
        self.template = orjson.loads((ROOT / "fixtures" / "stripe" / "checkout.session.completed.json").read_bytes())
        self.next = 0

    def take(self, count: int) -> list[tuple[int, bytes, str]]:
        now = int(time.time())
        out = []
        for _ in range(count):
            n = self.next
            self.next += 1
            self.template["id"] = f"evt_bench_{n}"
            self.template["data"]["object"]["payment_intent"] = f"pi_e2e_{n}"
            body = orjson.dumps(self.template)
            out.append((n, body, stripe_signature(body, SECRET, now)))
        return out


class Target:
    """A server under test (bridge or relay) and the sink behind it."""

    def __init__(self, name: str, pid: int, port: int, sink_url: str) -> None:
        self.name = name
        self.pid = pid
        self.url = f"http://127.0.0.1:{port}/webhooks/stripe"
        self.sink_url = sink_url


async def _sink_get(session: aiohttp.ClientSession, sink_url: str, path: str) -> Any:
    async with session.get(f"{sink_url}{path}") as response:
        return orjson.loads(await response.read())


async def run_window(
    session: aiohttp.ClientSession, target: Target, bodies: Bodies, rate: float, seconds: float, fanout: int
) -> Window:
    window = Window(rate=rate, fanout=fanout, seconds=seconds)
    planned = bodies.take(max(1, int(rate * seconds)))
    await _sink_get(session, target.sink_url, "/__arrivals")  # forget anything left from before
    base = await _sink_get(session, target.sink_url, "/__count")
    cpu_before = cpu_seconds(target.pid)
    tasks: list[asyncio.Task[None]] = []

    async def send(n: int, body: bytes, signature: str) -> None:
        sent = time.monotonic()
        window.sends[n] = sent
        headers = {"content-type": "application/json", "stripe-signature": signature}
        try:
            async with session.post(target.url, data=body, headers=headers) as response:
                await response.read()
                ok = 200 <= response.status < 300
        except aiohttp.ClientError:
            ok = False
        window.acks_ms.append((time.monotonic() - sent) * 1000)
        if not ok:
            window.failures += 1
            del window.sends[n]  # nothing is owed for a refused webhook

    window.started = start = time.monotonic() + 0.02
    index = 0
    while index < len(planned):
        now = time.monotonic()
        due = start + index / rate
        if due > now:
            await asyncio.sleep(min(due - now, 0.002))
            continue
        window.lag = max(window.lag, now - due)
        while index < len(planned) and start + index / rate <= now:
            tasks.append(asyncio.create_task(send(*planned[index])))
            index += 1
    await asyncio.gather(*tasks)
    deadline = time.monotonic() + max(10.0, 2 * seconds)
    while time.monotonic() < deadline:  # drain: until everything owed has arrived (or the deadline passes)
        if await _sink_get(session, target.sink_url, "/__count") >= base + window.expected:
            break
        await asyncio.sleep(0.05)
    for path, n, t in await _sink_get(session, target.sink_url, "/__arrivals"):
        window.arrivals.setdefault((path, n), t)  # a redelivery (at least once) keeps the first arrival
    window.cpu = cpu_seconds(target.pid) - cpu_before
    return window


async def search(
    session: aiohttp.ClientSession,
    target: Target,
    bodies: Bodies,
    *,
    fanout: int,
    seconds: float,
    start_rate: float,
    max_rate: float,
    steps: int,
) -> tuple[float, list[dict[str, Any]]]:
    """The highest rate (webhooks/s) found with a flat backlog, and every window tried."""
    tried: list[dict[str, Any]] = []

    async def flat_at(rate: float) -> bool:
        window = await run_window(session, target, bodies, rate, seconds, fanout)
        tried.append(window.summary())
        print(f"    {rate:>8.0f}/s  {window.verdict()[1]}", flush=True)
        return window.verdict()[0]

    good, bad = 0.0, 0.0
    rate = start_rate
    while rate <= max_rate:
        if await flat_at(rate):
            good = rate
            rate *= 2
        else:
            bad = rate
            break
    if good == 0.0:  # not flat even at the start rate: halve down to find a flat one
        rate = start_rate / 2
        while rate >= 5 and good == 0.0:
            if await flat_at(rate):
                good = rate
            else:
                bad = rate
                rate /= 2
    if bad:
        for _ in range(steps):
            middle = round((good + bad) / 2)
            if await flat_at(middle):
                good = middle
            else:
                bad = middle
    return good, tried


def bridge_config(tmp: Path, fanout: int, sink_url: str) -> Path:
    config = tmp / f"bridge-f{fanout}.yaml"
    destinations = {f"d{i}": {"type": "http", "url": f"{sink_url}/d{i}"} for i in range(1, fanout + 1)}
    config.write_text(
        yaml.safe_dump(
            {
                "outbox": {"url": f"sqlite:///{tmp / f'outbox-f{fanout}.db'}"},
                "mappings": str(ROOT / "mappings"),
                "sources": {"stripe": {"provider": "stripe", "secrets": [SECRET]}},
                "destinations": destinations,
            }
        )
    )
    return config


async def run_fanout(args: argparse.Namespace, tmp: Path, sink_url: str, bodies: Bodies, fanout: int) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=args.connections)
    timeout = aiohttp.ClientTimeout(total=30)
    result: dict[str, Any] = {"fanout": fanout}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        port = free_port()
        command = [python(), "-m", "bridge", "serve", "--config", str(bridge_config(tmp, fanout, sink_url))]
        proc = spawn([*command, "--port", str(port), "--log-level", "WARNING"], tmp / f"bridge-f{fanout}.log")
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                profiler(proc.pid, args.profile / f"e2e-f{fanout}.txt", tmp / "py-spy.log")
            bridge = Target("bridge", proc.pid, port, sink_url)
            flat_rate: float | None = None
            tried: list[dict[str, Any]] = []
            if not args.rate:
                print(f"  fan-out {fanout}: searching the highest flat-backlog rate", flush=True)
                flat_rate, tried = await search(
                    session,
                    bridge,
                    bodies,
                    fanout=fanout,
                    seconds=args.seconds,
                    start_rate=args.start_rate,
                    max_rate=args.max_rate,
                    steps=args.steps,
                )
            result["flat_rate"] = flat_rate
            result["tried"] = tried
            rate = args.rate or max(1.0, (flat_rate or 0.0) / 2)
            result["bridge"] = (await run_window(session, bridge, bodies, rate, args.seconds, fanout)).summary()
        finally:
            stop(proc)
        port = free_port()
        urls = ",".join(f"{sink_url}/d{i}" for i in range(1, fanout + 1))
        command = [python(), "-m", "uvicorn", "relay:app", "--app-dir", str(tmp), "--port", str(port)]
        command += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
        proc = spawn(command, tmp / f"relay-f{fanout}.log", env={"RELAY_URLS": urls})
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
            relay = Target("relay", proc.pid, port, sink_url)
            result["relay"] = (await run_window(session, relay, bodies, rate, args.seconds, fanout)).summary()
        finally:
            stop(proc)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each fixed-rate window")
    parser.add_argument("--fanout", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--start-rate", type=float, default=200.0)
    parser.add_argument("--max-rate", type=float, default=20_000.0)
    parser.add_argument("--steps", type=int, default=3, help="bisection steps after the doubling")
    parser.add_argument("--rate", type=float, default=0.0, help="skip the search: measure at this rate")
    parser.add_argument("--connections", type=int, default=512, help="the sender's connection limit")
    parser.add_argument("--quick", action="store_true", help="smoke test: --rate 20 --seconds 1 --fanout 1 2")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--profile", type=Path, help="py-spy the bridge into DIR/e2e-f<fanout>.txt (bench.profile)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rate, args.seconds, args.fanout = args.rate or 20.0, 1.0, [1, 2]
    load_before = load_average()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bridge-e2e-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "relay.py").write_text(RELAY_APP)
        with local_sink(tmp, "--record") as sink_url:
            bodies = Bodies()
            for fanout in args.fanout:
                results.append(uvloop.run(run_fanout(args, tmp, sink_url, bodies, fanout)))
    report = {"benchmark": "e2e", "seconds": args.seconds, "load": [load_before, load_average()], "results": results}
    print_report(report)
    if args.json:
        write_json(args.json, report)
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"e2e: webhook -> destination, open-loop sender, {report['seconds']:g} s windows, 127.0.0.1 "
        f"(load {report['load'][0]:.1f} -> {report['load'][1]:.1f})"
    )
    header = f"{'fan-out':>7} {'target':<7} {'rate/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'ack p99':>8} {'cpu us/wh':>9}"
    print(f"{header} {'p50 x':>6} {'p99 x':>6}")
    for result in report["results"]:
        bridge, relay = result["bridge"], result["relay"]
        for name, row in (("bridge", bridge), ("relay", relay)):
            ratio = ""
            if name == "bridge":
                p50 = bridge["p50_ms"] / relay["p50_ms"] if relay["p50_ms"] else 0.0
                p99 = bridge["p99_ms"] / relay["p99_ms"] if relay["p99_ms"] else 0.0
                ratio = f" {p50:>6.2f} {p99:>6.2f}"
            print(
                f"{result['fanout']:>7} {name:<7} {row['rate']:>7.0f} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
                f"{row['ack_p99_ms']:>8.2f} {row['server_cpu_us_per_webhook']:>9.0f}{ratio}"
                + ("" if row["flat"] else f"  ({row['note']})")
            )
        if result["flat_rate"] is None:
            print(f"{'':>7} (no search: fixed rate given)")
        else:
            print(f"{'':>7} highest flat-backlog rate: {result['flat_rate']:.0f} webhooks/s (latency measured at half)")


if __name__ == "__main__":
    main()
