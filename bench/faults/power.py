"""Trial 2, power loss: the SQLite outbox lives on `bench.faults.lazyfs`, a FUSE file system that keeps every
write not yet fsync'd in a buffer. Under load from concurrent senders, at a random moment, the power is cut:
the buffer is thrown away and the file system fails every further call, `bridge serve` is SIGKILLed, the file
system is unmounted and mounted again on what had reached the disk, and the bridge restarts on it. After every
cut every webhook acknowledged before it must be stored; at the end every one must be delivered.

The same trial then runs with the writer switched to `synchronous=NORMAL` (see bench.faults.serve) to show it
can fail: NORMAL does not fsync at commit, so acknowledged webhooks vanish at a cut, and the trial counts them.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

from bench.faults.harness import (
    CLEANUP,
    CONVULTRA_KEY,
    ROOT,
    BridgeProcess,
    Result,
    Senders,
    TrialError,
    convultra,
    is_mounted,
    order_counts,
    outbox_busy,
    rng,
    stored_event_ids,
    unmount,
    until,
    write_config,
)
from bridge.sinks.convultra import ConvultraFake
from bridge.sinks.server import serve

SHORT = {"cuts": 4, "senders": 4, "up": (0.5, 1.5)}
FULL = {"cuts": 20, "senders": 6, "up": (0.5, 3.0)}


class LazyMount:
    """bench.faults.lazyfs over `backing` at `mountpoint`, as a child process."""

    def __init__(self, backing: Path, mountpoint: Path, log: Path) -> None:
        self.backing = backing
        self.mountpoint = mountpoint
        self.control = mountpoint.parent / f"{mountpoint.name}.control"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    async def mount(self) -> None:
        self.control.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.proc = CLEANUP.process(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "bench.faults.lazyfs",
                        str(self.backing),
                        str(self.mountpoint),
                        str(self.control),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    cwd=ROOT,
                )
            )
        CLEANUP.mount(self.mountpoint)
        if not await until(lambda: is_mounted(self.mountpoint) and self.control.exists(), timeout=20, every=0.02):
            raise TrialError(f"lazyfs did not mount; see {self.log}")

    def command(self, text: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self.control))
            sock.sendall(text.encode())
            return sock.recv(128).decode().strip()

    def cut(self) -> int:
        """The power goes off: unsynced writes are dropped. Returns the bytes dropped."""
        return int(self.command("cut").split()[1])

    def unmount(self) -> None:
        unmount(self.mountpoint)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if is_mounted(self.mountpoint):
            raise TrialError(f"{self.mountpoint} is still mounted")


@dataclass
class Run:
    cuts: int = 0
    acknowledged: int = 0
    lost: set[str] = field(default_factory=set)
    cuts_with_loss: int = 0
    dropped_bytes: int = 0
    delivered_missing: int = 0
    duplicates: int = 0
    integrity: str = "?"
    restarted: int = 0


async def one_run(workdir: Path, plan: dict[str, object], rand: Random, *, normal: bool) -> Run:
    backing, mountpoint = workdir / "disk", workdir / "mnt"
    for directory in (backing, mountpoint):
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    fs = LazyMount(backing, mountpoint, workdir / "lazyfs.log")
    fake = ConvultraFake(CONVULTRA_KEY)
    run = Run()
    async with serve(fake.app) as sink:
        config = write_config(
            workdir,
            outbox_url=f"sqlite:///{mountpoint / 'outbox.db'}",
            destinations={"convultra": convultra(sink, concurrency=4)},
            name="normal.yaml" if normal else "full.yaml",
        )
        launcher = ["--unsafe-synchronous-normal"] if normal else None
        bridge = BridgeProcess(config, workdir / "serve.log", launcher_args=launcher)
        senders = Senders(lambda: bridge.base, count=int(plan["senders"]), prefix="normal" if normal else "full")  # type: ignore[call-overload]
        low, high = plan["up"]  # type: ignore[misc]
        try:
            for cut in range(int(plan["cuts"]) + 1):  # type: ignore[call-overload]
                await fs.mount()
                await bridge.start_ready()
                run.restarted += 1
                stored = {ident.removeprefix("evt_") for ident in await stored_event_ids(bridge.base)}
                missing = senders.acked - stored - run.lost
                if missing:
                    run.cuts_with_loss += 1
                    run.lost |= missing
                if cut == int(plan["cuts"]):  # type: ignore[call-overload]
                    break
                senders.start()
                await asyncio.sleep(rand.uniform(low, high))
                run.dropped_bytes += fs.cut()
                bridge.kill()
                await senders.stop()
                fs.unmount()
                run.cuts += 1
            # after the last restart: resend what was never acknowledged, then let everything drain
            senders.start()
            await senders.settle(120)
            wanted = senders.acked - run.lost

            async def drained() -> bool:
                return wanted <= set(order_counts(fake)) and await outbox_busy(bridge.base) == 0

            await until(drained, timeout=180, every=0.2)
        finally:
            await senders.stop()
            bridge.stop()
            if is_mounted(mountpoint):
                fs.unmount()
    counts = order_counts(fake)
    run.acknowledged = len(senders.acked)
    run.delivered_missing = len(senders.acked - run.lost - set(counts))
    run.duplicates = sum(n - 1 for n in counts.values() if n > 1)
    with sqlite3.connect(backing / "outbox.db") as db:
        run.integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    return run


async def run(full: bool, workdir: Path, seed: int | None = None) -> Result:
    if shutil.which("fusermount") is None or not Path("/dev/fuse").exists():
        raise TrialError("needs FUSE: /dev/fuse and fusermount (apt-get install fuse3 libfuse2)")
    plan = FULL if full else SHORT
    rand = rng(seed)
    started = time.monotonic()
    safe = await one_run(workdir / "full", plan, rand, normal=False)
    unsafe = await one_run(workdir / "normal", plan, rand, normal=True)
    result = Result(
        "power",
        {
            "cuts": safe.cuts,
            "acknowledged": safe.acknowledged,
            "lost": len(safe.lost),
            "undelivered": safe.delivered_missing,
            "duplicates": safe.duplicates,
            "unsynced_bytes_dropped": safe.dropped_bytes,
            "integrity": safe.integrity,
            "normal_cuts": unsafe.cuts,
            "normal_acknowledged": unsafe.acknowledged,
            "normal_lost": len(unsafe.lost),
            "normal_cuts_with_loss": unsafe.cuts_with_loss,
            "seconds": time.monotonic() - started,
        },
    )
    result.check(not safe.lost, f"synchronous=FULL lost acknowledged webhooks: {sorted(safe.lost)[:10]}")
    result.check(safe.delivered_missing == 0, f"{safe.delivered_missing} acknowledged webhooks never delivered")
    result.check(safe.integrity == "ok", f"integrity_check after the cuts: {safe.integrity}")
    result.check(safe.dropped_bytes > 0, "no cut dropped any unsynced write: the trial tested nothing")
    result.check(len(unsafe.lost) > 0, "synchronous=NORMAL lost nothing: this trial cannot tell FULL from NORMAL")
    return result
