"""Trial 6, storage stalls, three in a row under load from concurrent senders:

1. SQLite held by another writer: a second process takes the write lock (`BEGIN IMMEDIATE`) and holds it.
2. PostgreSQL frozen: every process of a private cluster gets SIGSTOP (connections stay open, nothing answers),
   then SIGCONT.
3. PostgreSQL stopped and started again (`pg_ctl stop -m fast`, then `start`).

Promises: while storage is away a webhook gets 503 within a bound (BOUND seconds), never a 500 and never a hang
(the senders give up after HANG seconds); when storage returns, ingest and delivery resume by themselves; every
acknowledged webhook is delivered.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.faults.harness import (
    CLEANUP,
    CONVULTRA_KEY,
    BridgeProcess,
    Result,
    Senders,
    convultra,
    order_counts,
    outbox_busy,
    until,
    write_config,
)
from bench.faults.pg import PrivateCluster
from bridge.sinks.convultra import ConvultraFake
from bridge.sinks.server import serve

#: a webhook must be answered within this many seconds while storage is away (GitHub gives up after 10 s)
BOUND = 10.0
#: a sender gives up after this long: counted as a hang
HANG = 30.0
#: deliveries whose result could not be recorded while storage was away are sent again when their lease ends
DISPATCHER = {"lease_seconds": 15}
#: hold: how long SQLite stays locked, pg_hold how long PostgreSQL stays frozen or stopped; both must outlast the
#: outbox's own waits (lock wait; pool acquire plus statement timeout) for a 503 to show
SHORT = {"hold": 12.0, "pg_hold": 12.0, "senders": 4, "drain": 20.0}
FULL = {"hold": 20.0, "pg_hold": 20.0, "senders": 8, "drain": 180.0}

HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


async def phase(
    name: str,
    senders: Senders,
    stall: Any,
    resume: Any,
    hold: float,
    figures: dict[str, Any],
    result: Result,
) -> None:
    """Load for a second, stall storage for `hold` seconds, resume it; record what the senders saw."""
    await asyncio.sleep(1.0)
    senders.take_figures()
    await stall()
    await asyncio.sleep(hold)
    during, slowest = senders.take_figures()
    resumed_at = time.monotonic()
    await resume()
    before = senders.statuses["200"]
    recovered = await until(lambda: senders.statuses["200"] > before + 5, timeout=60, every=0.05)
    recovery = time.monotonic() - resumed_at
    await asyncio.sleep(1.0)
    after, slowest_after = senders.take_figures()
    answers = during + after
    worst = max([*slowest.values(), *slowest_after.values()], default=0.0)
    figures[name] = {**dict(during), "slowest_s": round(worst, 2), "recovery_s": round(recovery, 2)}
    bad = {k: v for k, v in answers.items() if k not in ("200", "503")}
    result.check(not bad, f"{name}: answers other than 200/503: {bad}")
    result.check(during["503"] > 0, f"{name}: no 503 while storage was away: {dict(during)}")
    result.check(worst <= BOUND, f"{name}: an answer took {worst:.1f}s (bound {BOUND:g}s)")
    result.check(recovered, f"{name}: ingest did not recover within 60 s")


async def drain(
    result: Result, name: str, senders: Senders, fake: ConvultraFake, bridge: BridgeProcess, timeout: float
) -> None:
    await senders.settle(180)

    async def drained() -> bool:
        return senders.acked <= set(order_counts(fake)) and await outbox_busy(bridge.base) == 0

    finished = await until(drained, timeout=timeout, every=0.2)
    result.check(finished, f"{name}: the backlog did not drain in {timeout:g} s")
    if not finished:
        # stuck or lost? A fresh process on the same storage tells: what it delivers was stored all along
        result.figures[f"{name}_stuck_until_restart"] = len(senders.acked - set(order_counts(fake)))
        bridge.stop()
        await bridge.start_ready()
        await until(drained, timeout=timeout, every=0.2)
    lost = senders.acked - set(order_counts(fake))
    result.figures[f"{name}_acknowledged"] = len(senders.acked)
    result.figures[f"{name}_lost"] = len(lost)
    result.check(not lost, f"{name}: acknowledged but never delivered: {sorted(lost)[:5]}")


async def run(full: bool, workdir: Path, seed: int | None = None) -> Result:
    plan = FULL if full else SHORT
    hold = float(plan["hold"])
    result = Result("stalls", {})
    figures: dict[str, Any] = {}
    bare_503: list[str] = []

    def on_answer(ident: str, status: int, response: httpx.Response | None) -> None:
        if status == 503 and response is not None and "retry-after" not in response.headers:
            bare_503.append(ident)

    # 1. SQLite held by another writer
    fake = ConvultraFake(CONVULTRA_KEY)
    db = workdir / "outbox.db"
    async with serve(fake.app) as sink:
        config = write_config(
            workdir,
            outbox_url=f"sqlite:///{db}",
            destinations={"convultra": convultra(sink, timeout_seconds=5)},
            dispatcher=DISPATCHER,
            name="sqlite.yaml",
        )
        bridge = BridgeProcess(config, workdir / "sqlite.log")
        await bridge.start_ready()
        senders = Senders(
            lambda: bridge.base,
            count=int(plan["senders"]),  # type: ignore[call-overload]
            prefix="lite",
            timeout=HANG,
            on_answer=on_answer,
        )
        senders.start()
        holder: list[subprocess.Popen[bytes]] = []

        async def lock() -> None:
            proc = CLEANUP.process(
                subprocess.Popen([sys.executable, "-c", HOLDER, str(db), str(hold)], stdout=subprocess.PIPE)
            )
            holder.append(proc)
            assert proc.stdout is not None
            await asyncio.get_running_loop().run_in_executor(None, proc.stdout.readline)

        async def unlock() -> None:
            await asyncio.get_running_loop().run_in_executor(None, holder[0].wait)

        try:
            await phase("sqlite_locked", senders, lock, unlock, hold, figures, result)
            await drain(result, "sqlite", senders, fake, bridge, float(plan["drain"]))
        finally:
            await senders.stop()
            bridge.stop()

    # 2 and 3. PostgreSQL frozen, then stopped and started
    cluster = PrivateCluster()
    cluster.init()
    fake = ConvultraFake(CONVULTRA_KEY)
    async with serve(fake.app) as sink:
        config = write_config(
            workdir,
            outbox_url=cluster.url,
            destinations={"convultra": convultra(sink, timeout_seconds=5)},
            dispatcher=DISPATCHER,
            name="postgres.yaml",
        )
        bridge = BridgeProcess(config, workdir / "postgres.log")
        await bridge.start_ready()
        senders = Senders(
            lambda: bridge.base,
            count=int(plan["senders"]),  # type: ignore[call-overload]
            prefix="pg",
            timeout=HANG,
            on_answer=on_answer,
        )
        senders.start()
        loop = asyncio.get_running_loop()

        async def freeze() -> None:
            cluster.freeze()

        async def thaw() -> None:
            cluster.thaw()

        async def stop() -> None:
            await loop.run_in_executor(None, cluster.stop)

        async def start() -> None:
            await loop.run_in_executor(None, cluster.start)

        try:
            pg_hold = float(plan["pg_hold"])
            await phase("postgres_frozen", senders, freeze, thaw, pg_hold, figures, result)
            await phase("postgres_restarted", senders, stop, start, pg_hold, figures, result)
            await drain(result, "postgres", senders, fake, bridge, float(plan["drain"]))
        finally:
            cluster.thaw()
            await senders.stop()
            bridge.stop()
            cluster.destroy()
    result.figures = {**figures, **result.figures}
    result.check(not bare_503, f"{len(bare_503)} answers of 503 without Retry-After")
    return result
