"""Large batches: how long `bridge serve` takes to answer one signed GoCardless webhook of N events, and how big
the outbox file grows for it.

    .venv/bin/python -m bench.batch [--events 250 1000 2500] [--outbox sqlite|postgresql://...]

GoCardless batches events (`{"events": [...]}`; up to ~250 per request in practice). Each request here is a
distinct, validly signed batch of `subscriptions.created` events built from the real fixture, every event with
its own subscription, so each one is mapped and routed to the one destination (a local sink). The time is the
wall time of the HTTP request as the provider sees it, through uvicorn on 127.0.0.1; the provider gives up
after 10 s. Three requests per size; the figure is the median.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson
import yaml

from bench._common import ROOT, free_port, local_sink, python, spawn, stop, wait_http

SECRET = "gocardless-bench-secret"
FIXTURE = ROOT / "fixtures" / "gocardless" / "subscriptions.created+mandates.created.json"


def batch(run: str, count: int) -> bytes:
    template = orjson.loads(FIXTURE.read_bytes())["events"][0]
    events = []
    for index in range(count):
        event = dict(template)
        event["id"] = f"EV{run}{index:06d}"
        event["links"] = {"subscription": f"SB{run}{index:06d}"}
        events.append(event)
    return orjson.dumps({"events": events, "meta": {"webhook_id": f"WB{run}"}})


def post(url: str, body: bytes) -> tuple[int, float]:
    signature = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", "Webhook-Signature": signature}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()
        status = response.status
    return status, time.perf_counter() - started


def run_size(count: int, repeat: int, outbox: str, tmp: Path, sink_url: str) -> tuple[list[float], int, int]:
    """Start `bridge serve` on a fresh outbox, post `repeat` batches of `count` events; (seconds per request,
    body bytes, outbox file bytes after the server stopped, SQLite only)."""
    db = tmp / f"outbox-{count}.db"
    url = f"sqlite:///{db}" if outbox == "sqlite" else outbox
    config = tmp / f"bridge-{count}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "outbox": {"url": url},
                "mappings": str(ROOT / "mappings"),
                "max_body_bytes": 4 * 1024 * 1024,
                "sources": {"gocardless": {"provider": "gocardless", "secrets": [SECRET]}},
                "destinations": {"sink": {"type": "http", "url": sink_url}},
            }
        )
    )
    port = free_port()
    proc = spawn([python(), "-m", "bridge", "serve", "--config", str(config), "--port", str(port)], tmp / "serve.log")
    times = []
    size = 0
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        for attempt in range(repeat):
            body = batch(f"{count}x{attempt}x{int(time.time())}", count)
            size = len(body)
            status, seconds = post(f"http://127.0.0.1:{port}/webhooks/gocardless", body)
            assert status == 200, status
            times.append(seconds)
    finally:
        stop(proc)  # closing the outbox checkpoints the WAL into the file
    return times, size, db.stat().st_size if db.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, nargs="+", default=[250, 1000, 2500])
    parser.add_argument("--outbox", default="sqlite", help="sqlite (a temporary file per size) or a postgresql:// URL")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bridge-batch-") as tmp_name:
        tmp = Path(tmp_name)
        with local_sink(tmp) as sink:
            print(f"one signed GoCardless batch per request, bridge serve on 127.0.0.1, outbox {args.outbox}")
            print(f"{'events':>8} {'body KB':>9} {'median s':>9} {'max s':>7} {'outbox file MB':>15}")
            for count in args.events:
                times, size, file_bytes = run_size(count, args.repeat, args.outbox, tmp, f"{sink}/collect")
                file_mb = f"{file_bytes / 1e6:.1f}" if args.outbox == "sqlite" else "-"
                print(
                    f"{count:>8} {size / 1024:>9.0f} {statistics.median(times):>9.2f} {max(times):>7.2f} {file_mb:>15}"
                )


if __name__ == "__main__":
    main()
