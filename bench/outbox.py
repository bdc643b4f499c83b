"""The SQLite outbox alone: ingests per second with 32 concurrent callers (group commit), and what each ingest
costs in bytes written to disk and in CPU time — the two figures that do not depend on how busy the disk is.

    .venv/bin/python -m bench.outbox [--requests 20000] [--concurrency 32]

Each request is one provider event (random ids, as real providers send) with a 2.2 KB body and two deliveries of
one 0.6 KB canonical event, received a millisecond after the previous one. Bytes written come from
/proc/self/io (WAL and checkpoints), CPU from the process clock (event loop and writer thread).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import orjson

from bridge.outbox.base import NewDelivery, NewRequest, NewWebhook
from bridge.outbox.sqlite import SqliteOutbox


def request(index: int) -> NewRequest:
    event_id, fact = f"evt_{uuid.uuid4().hex}", f"pi_{uuid.uuid4().hex}"
    payload = orjson.dumps({"name": "purchase", "id": fact, "pad": "x" * 600})
    deliveries = [NewDelivery(name, "purchase", fact, payload) for name in ("conv", "zen")]
    return NewRequest(
        source="stripe",
        provider="stripe",
        received_at=1_700_000_000.0 + index / 1000,
        headers=b'{"stripe-signature": "t=1,v1=00"}',
        body=orjson.dumps({"id": event_id, "pad": "y" * 2200}),
        webhooks=[NewWebhook(event_id, "checkout.session.completed", "accepted", None, b"[]", deliveries)],
    )


def written_bytes() -> int:
    with open("/proc/self/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("write_bytes"))


async def run(count: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bridge-outbox-") as tmp:
        outbox = SqliteOutbox(Path(tmp) / "outbox.db")
        await outbox.open()
        pending = iter([request(i) for i in range(count)])

        async def caller() -> None:
            for item in pending:
                await outbox.ingest(item)

        written, cpu, started = written_bytes(), time.process_time(), time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        cpu, written = time.process_time() - cpu, written_bytes() - written
        per_commit = outbox.stats_ops / max(outbox.stats_commits, 1)
        await outbox.close()
    print(f"SQLite outbox, {count} single-event requests, {concurrency} concurrent callers")
    print(f"  ingests/s          {count / seconds:>8.0f}   ({per_commit:.0f} per commit)")
    print(f"  written per ingest {written / count / 1024:>8.1f} KB")
    print(f"  CPU per ingest     {cpu / count * 1e6:>8.0f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.concurrency))


if __name__ == "__main__":
    main()
