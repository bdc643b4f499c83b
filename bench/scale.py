"""Flat at scale: the outbox filled to 10k, 100k and 1M deliveries (most delivered, some pending and dead), and at
each size the cost of the hot paths and of the ops view, against the same figures on an empty outbox measured
in the same run.

    .venv/bin/python -m bench.scale [--sizes 10000 100000 1000000] [--json out.json]
    .venv/bin/python -m bench.scale --quick      # sizes 500 and 2000: the CI smoke test

The fill goes through the outbox API (group-committed ingests of real Stripe webhooks with their mapped event,
then claims and completions), so every table, index and counter the outbox keeps is exactly as in production:
per 100 deliveries, 90 delivered, 8 pending (a retry due in a day) and 2 dead, one attempt row each. At each size:

- claim: a claim of 100 due deliveries among all those rows (100 fresh ones are ingested first), median of 20;
- ingest: 100 concurrent ingests through the outbox API (one or two group commits), median of 20, per ingest;
- stats: the outbox's `stats` (what `/ops/outbox` and `/metrics` read), median of 5;
- then `bridge serve` on that file: its start-up time, `GET /ops/outbox` (median of 10), signed webhooks over HTTP
  (16 at a time), and the server's resident memory (VmRSS now, VmHWM peak) after all that.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import uvloop
import yaml

from bench._common import (
    ROOT,
    free_port,
    load_average,
    local_sink,
    memory_kb,
    percentile,
    python,
    spawn,
    stop,
    wait_http,
    write_json,
)
from bridge.demo import stripe_signature
from bridge.outbox import open_outbox
from bridge.outbox.base import AttemptResult, NewDelivery, NewRequest, NewWebhook, Outbox

SECRET = "whsec_bench_secret"
TOKEN = "bench-ops-token-0123456789"
DESTINATION = "sink"
#: per 100 filled deliveries: how many end delivered, pending (retry due in a day), dead
MIX = (("delivered", 90), ("retry", 8), ("dead", 2))


class Rows:
    """Webhooks as the ingest path stores them: the raw Stripe body, its headers, the mapped event, one delivery."""

    def __init__(self) -> None:
        template = orjson.loads((ROOT / "fixtures" / "stripe" / "checkout.session.completed.json").read_bytes())
        template["id"] = "evt_scale_@@"
        template["data"]["object"]["payment_intent"] = "pi_scale_@@"
        self.body = orjson.dumps(template).split(b"@@")
        event = orjson.loads((ROOT / "fixtures" / "stripe" / "checkout.session.completed.expected.json").read_bytes())
        event[0]["id"] = event[0]["order"]["id"] = "pi_scale_@@"
        event[0]["source"]["webhook_id"] = "evt_scale_@@"
        self.payload = orjson.dumps(event[0]).split(b"@@")
        self.next = 0

    def take(self, count: int, now: float) -> list[NewRequest]:
        out = []
        for _ in range(count):
            n = str(self.next).encode()
            self.next += 1
            payload = n.join(self.payload)
            webhook = NewWebhook(
                provider_event_id=f"evt_scale_{self.next - 1}",
                event_type="checkout.session.completed",
                status="accepted",
                error=None,
                events=b"[" + payload + b"]",
                deliveries=[NewDelivery(DESTINATION, "purchase", f"pi_scale_{self.next - 1}", payload)],
            )
            out.append(
                NewRequest(
                    source="stripe",
                    provider="stripe",
                    received_at=now,
                    headers=b'{"stripe-signature":"t=1,v1=00","content-type":"application/json"}',
                    body=n.join(self.body),
                    webhooks=[webhook],
                )
            )
        return out


async def ingest(outbox: Outbox, requests: list[NewRequest]) -> None:
    await asyncio.gather(*(outbox.ingest(r) for r in requests))


async def settle(outbox: Outbox, count: int, now: float, verdicts: list[str]) -> int:
    """Claim up to `count` due deliveries and complete them with `verdicts` (cycled); returns how many."""
    owner = f"bench:{uuid.uuid4().hex[:8]}"
    claimed = await outbox.claim(DESTINATION, count, now, 300.0, owner)
    results = []
    for index, delivery in enumerate(claimed):
        verdict = verdicts[index % len(verdicts)]
        results.append(
            AttemptResult(
                delivery_id=delivery.id,
                owner=owner,
                started_at=now,
                verdict=verdict,  # type: ignore[arg-type]
                next_attempt_at=now + 86_400 if verdict == "retry" else None,
                status_code=200 if verdict == "delivered" else 503,
                latency_ms=3.0,
                error=None if verdict == "delivered" else "HTTP 503",
                response_excerpt=None,
            )
        )
    for start in range(0, len(results), 2000):
        await outbox.complete(results[start : start + 2000])
    return len(claimed)


async def fill(outbox: Outbox, rows: Rows, count: int) -> None:
    """Add `count` deliveries in the MIX proportions, in chunks of 2,000."""
    verdicts = [verdict for verdict, share in MIX for _ in range(share)]
    done = 0
    while done < count:
        chunk = min(2000, count - done)
        now = time.time()
        await ingest(outbox, rows.take(chunk, now))
        await settle(outbox, chunk, now, verdicts)
        done += chunk


async def timed(fn: Any, repeat: int) -> float:
    """Median milliseconds of `await fn()` over `repeat` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def direct(outbox: Outbox, rows: Rows, repeat: int) -> dict[str, float]:
    """claim / ingest / stats figures through the outbox API (the table stays the same size: what is claimed is
    completed as delivered)."""
    claims, ingests = [], []
    for round_ in range(repeat + 1):  # the first round warms caches and statements: not counted
        now = time.time()
        batch = rows.take(100, now)
        started = time.perf_counter()
        await ingest(outbox, batch)
        ingest_ms = (time.perf_counter() - started) * 1000 / len(batch)
        owner = f"bench:{uuid.uuid4().hex[:8]}"
        started = time.perf_counter()
        claimed = await outbox.claim(DESTINATION, 100, now, 300.0, owner)
        if round_:
            claims.append((time.perf_counter() - started) * 1000)
            ingests.append(ingest_ms)
        results = [AttemptResult(d.id, owner, now, "delivered", None, 200, 3.0, None, None) for d in claimed]
        await outbox.complete(results)
        if len(claimed) != 100:
            raise RuntimeError(f"claimed {len(claimed)} of 100 due deliveries")
    stats_ms = await timed(lambda: outbox.stats(time.time()), max(3, repeat // 4))
    return {
        "claim_100_ms": round(statistics.median(claims), 3),
        "ingest_us": round(statistics.median(ingests) * 1000, 1),
        "stats_ms": round(stats_ms, 3),
    }


async def served(tmp: Path, db: Path, sink_url: str, bodies: int) -> dict[str, float]:
    """`bridge serve` on the filled file: start-up, /ops/outbox, HTTP ingest and its memory."""
    config = tmp / "bridge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "outbox": {"url": f"sqlite:///{db}"},
                "ops": {"token": TOKEN},
                "mappings": str(ROOT / "mappings"),
                "sources": {"stripe": {"provider": "stripe", "secrets": [SECRET]}},
                "destinations": {DESTINATION: {"type": "http", "url": f"{sink_url}/collect"}},
            }
        )
    )
    port = free_port()
    started = time.perf_counter()
    command = [python(), "-m", "bridge", "serve", "--config", str(config), "--port", str(port)]
    proc = spawn([*command, "--log-level", "WARNING"], tmp / "serve.log")
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", timeout=600)
        startup = time.perf_counter() - started
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as session:

            async def ops_outbox() -> None:
                async with session.get(f"{base}/ops/outbox", headers=headers) as response:
                    await response.read()
                    assert response.status == 200, response.status

            await ops_outbox()  # first call warms the read connection
            ops_ms = await timed(ops_outbox, 10)
            latencies = await post_webhooks(session, f"{base}/webhooks/stripe", bodies)
        memory = memory_kb(proc.pid)
    finally:
        stop(proc)
    return {
        "startup_s": round(startup, 2),
        "ops_outbox_ms": round(ops_ms, 2),
        "http_ingest_p50_ms": round(percentile(latencies, 50), 2),
        "http_ingest_p99_ms": round(percentile(latencies, 99), 2),
        "rss_mb": round(memory["VmRSS"] / 1024, 1),
        "peak_rss_mb": round(memory["VmHWM"] / 1024, 1),
    }


async def post_webhooks(session: aiohttp.ClientSession, url: str, count: int) -> list[float]:
    template = orjson.loads((ROOT / "fixtures" / "stripe" / "checkout.session.completed.json").read_bytes())
    run = uuid.uuid4().hex[:8]
    now = int(time.time())
    pending = []
    for index in range(count):
        template["id"] = f"evt_scale_http_{run}_{index}"
        template["data"]["object"]["payment_intent"] = f"pi_scale_http_{run}_{index}"
        body = orjson.dumps(template)
        pending.append((body, stripe_signature(body, SECRET, now)))
    latencies: list[float] = []
    queue = iter(pending)

    async def worker() -> None:
        for body, signature in queue:
            started = time.perf_counter()
            headers = {"content-type": "application/json", "stripe-signature": signature}
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"webhook answered {response.status}")
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(worker() for _ in range(16)))
    return latencies


async def run(args: argparse.Namespace, tmp: Path, sink_url: str) -> list[dict[str, Any]]:
    db = tmp / "outbox.db"
    rows = Rows()
    results = []
    filled = 0
    for size in [0, *sorted(args.sizes)]:
        outbox = open_outbox(f"sqlite:///{db}")
        await outbox.open()
        try:
            started = time.perf_counter()
            await fill(outbox, rows, size - filled)
            fill_seconds = time.perf_counter() - started
            filled = size
            figures: dict[str, Any] = {"size": size, "fill_rows_per_s": round(size and size / max(fill_seconds, 1e-9))}
            figures.update(await direct(outbox, rows, args.repeat))
        finally:
            await outbox.close()
        figures.update(await served(tmp, db, sink_url, args.webhooks))
        figures["db_mb"] = round(sum(p.stat().st_size for p in tmp.glob("outbox.db*")) / 2**20, 1)
        print(f"  {size:>9,} rows: {figures}", flush=True)
        results.append(figures)
    return results


#: (key, column title, format) of the printed table; each is also shown as a ratio to the empty outbox
COLUMNS = (
    ("claim_100_ms", "claim100 ms", "{:.2f}"),
    ("ingest_us", "ingest us", "{:.0f}"),
    ("stats_ms", "stats ms", "{:.1f}"),
    ("ops_outbox_ms", "/ops/outbox", "{:.1f}"),
    ("http_ingest_p50_ms", "http p50", "{:.1f}"),
    ("rss_mb", "RSS MB", "{:.0f}"),
)


def print_report(report: dict[str, Any]) -> None:
    print(
        f"scale: outbox filled through its API, SQLite WAL FULL, 127.0.0.1 "
        f"(load {report['load'][0]:.1f} -> {report['load'][1]:.1f}); x = ratio to the empty outbox, same run"
    )
    titles = " ".join(f"{title:>11} {'x':>5}" for _, title, _ in COLUMNS)
    print(f"{'rows':>9} {titles} {'peak MB':>8} {'DB MB':>7}")
    reference = report["results"][0]
    for row in report["results"]:
        cells = []
        for key, _, fmt in COLUMNS:
            ratio = row[key] / reference[key] if reference[key] else 0.0
            cells.append(f"{fmt.format(row[key]):>11} {ratio:>5.2f}")
        print(f"{row['size']:>9,} " + " ".join(cells) + f" {row['peak_rss_mb']:>8.0f} {row['db_mb']:>7.0f}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=20, help="claim/ingest repetitions per size")
    parser.add_argument("--webhooks", type=int, default=500, help="signed webhooks posted to bridge serve per size")
    parser.add_argument("--quick", action="store_true", help="smoke test: --sizes 500 2000 --repeat 3 --webhooks 32")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeat, args.webhooks = [500, 2000], 3, 32
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bridge-scale-") as tmp_name:
        tmp = Path(tmp_name)
        with local_sink(tmp) as sink:
            results = uvloop.run(run(args, tmp, sink))
    report = {"benchmark": "scale", "load": [load_before, load_average()], "results": results}
    print_report(report)
    if args.json:
        write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
