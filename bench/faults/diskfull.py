"""Trial 3, disk full: the SQLite outbox lives on a tmpfs of a few MiB (a real file system that answers ENOSPC
when full). Concurrent senders fill it. While it is full, every webhook must get 503 with Retry-After (never a
2xx, never a 500, never a hang), nothing may be half-written (a webhook stored without its deliveries, or a
503'd webhook stored), and nothing acknowledged may be lost. Then the file system grows (`mount -o remount`)
and ingest must recover by itself, with the same process, and drain everything.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.faults.harness import (
    CLEANUP,
    CONVULTRA_KEY,
    BridgeProcess,
    Result,
    Senders,
    TrialError,
    convultra,
    is_mounted,
    ops_get,
    order_counts,
    outbox_busy,
    stored_event_ids,
    unmount,
    until,
    write_config,
)
from bridge.sinks.convultra import ConvultraFake
from bridge.sinks.server import serve

SHORT = {"size": "2m", "full_for": 2.0, "senders": 4}
FULL = {"size": "8m", "full_for": 10.0, "senders": 8}
GROWN = "64m"


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    CLEANUP.mount(path)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=False)
    if done.returncode != 0 or not is_mounted(path):
        raise TrialError(f"cannot mount a tmpfs at {path} (needs root)")


async def run(full: bool, workdir: Path, seed: int | None = None) -> Result:
    if os.geteuid() != 0:
        raise TrialError("the disk-full trial mounts a tmpfs: run it as root")
    plan = FULL if full else SHORT
    small = workdir / "small"
    mount_tmpfs(small, str(plan["size"]))
    fake = ConvultraFake(CONVULTRA_KEY)
    # what each id was answered, in order: "only ever 503" ids must not be stored
    answers: dict[str, list[int]] = {}
    other_errors: Counter[str] = Counter()

    def on_answer(ident: str, status: int, response: httpx.Response | None) -> None:
        answers.setdefault(ident, []).append(status)
        if status == 503 and response is not None and "retry-after" not in response.headers:
            other_errors["503 without Retry-After"] += 1

    try:
        async with serve(fake.app) as sink:
            config = write_config(
                workdir,
                outbox_url=f"sqlite:///{small / 'outbox.db'}",
                destinations={"convultra": convultra(sink, concurrency=4, timeout_seconds=5)},
                dispatcher={"lease_seconds": 10},
            )
            bridge = BridgeProcess(config, workdir / "serve.log")
            await bridge.start_ready()
            pid = bridge.proc.pid if bridge.proc else None
            senders = Senders(lambda: bridge.base, count=int(plan["senders"]), prefix="full", on_answer=on_answer)  # type: ignore[call-overload]
            senders.start()
            try:
                filled = await until(lambda: senders.statuses["503"] >= 20, timeout=120, every=0.05)
                if not filled:
                    raise TrialError(f"the file system never filled: {dict(senders.statuses)}")
                acked_when_full = len(senders.acked)
                await asyncio.sleep(float(plan["full_for"]))  # type: ignore[arg-type]
                # while full: nothing half-written, nothing 503'd stored, nothing acknowledged missing
                stored = {i.removeprefix("evt_") for i in await stored_event_ids(bridge.base)}
                only_refused = {i for i, seen in answers.items() if seen and all(s == 503 for s in seen)}
                stats = await ops_get(bridge.base, "/ops/outbox")
                deliveries = sum(
                    d["pending"] + d["in_flight"] + d["delivered"] + d["dead"] for d in stats["destinations"].values()
                )
                statuses_full = Counter(senders.statuses)
                grown_at = time.monotonic()
                subprocess.run(["mount", "-o", f"remount,size={GROWN}", str(small)], check=True)
                before = senders.statuses["200"]
                recovered = await until(lambda: senders.statuses["200"] > before + 10, timeout=60, every=0.02)
                recovery_s = time.monotonic() - grown_at
                await asyncio.sleep(1.0)
                await senders.settle(120)

                async def drained() -> bool:
                    return senders.acked <= set(order_counts(fake)) and await outbox_busy(bridge.base) == 0

                finished = await until(drained, timeout=180, every=0.2)
                same_process = bridge.proc is not None and bridge.proc.pid == pid and bridge.alive
            finally:
                await senders.stop()
                bridge.stop()
        with sqlite3.connect(small / "outbox.db") as db:
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
            orphans = db.execute(
                "SELECT count(*) FROM webhooks w WHERE w.status = 'accepted' "
                "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.webhook_id = w.id)"
            ).fetchone()[0]
    finally:
        unmount(small)
        shutil.rmtree(small, ignore_errors=True)
    counts = order_counts(fake)
    lost = senders.acked - set(counts)
    unexpected = {k: v for k, v in statuses_full.items() if k not in ("200", "503")}
    result = Result(
        "diskfull",
        {
            "fs": plan["size"],
            "acknowledged_before_full": acked_when_full,
            "answers_while_filling": dict(statuses_full),
            "refused_stored": len(only_refused & stored),
            "webhooks_stored_when_full": len(stored),
            "deliveries_stored_when_full": deliveries,
            "recovery_s": recovery_s,
            "acknowledged": len(senders.acked),
            "lost": len(lost),
            "duplicates": sum(n - 1 for n in counts.values() if n > 1),
            "orphan_webhooks": orphans,
            "integrity": integrity,
            "slowest_503_s": senders.slowest.get("503", 0.0),
        },
    )
    result.check(not unexpected, f"answers other than 200/503 while the disk was full: {unexpected}")
    result.check(not other_errors, f"{dict(other_errors)}")
    result.check(not (only_refused & stored), f"webhooks answered 503 were stored: {sorted(only_refused & stored)[:5]}")
    result.check(senders.acked <= stored | set(counts), "acknowledged webhooks missing while the disk was full")
    result.check(deliveries == len(stored), f"{len(stored)} webhooks stored but {deliveries} deliveries")
    result.check(orphans == 0, f"{orphans} accepted webhooks without a delivery")
    result.check(integrity == "ok", f"integrity_check: {integrity}")
    result.check(recovered, "ingest did not recover within 60 s after the file system grew")
    result.check(same_process, "the bridge process did not survive the full disk")
    result.check(finished, "the backlog did not drain after recovery")
    result.check(not lost, f"acknowledged but never delivered: {sorted(lost)[:10]}")
    return result
