"""What every fault trial shares: `bridge serve` as a child process on a free 127.0.0.1 port with a generated
config, strict sinks served in this process, concurrent senders of signed Stripe webhooks that keep the ids
acknowledged with a 2xx, the ops API, and a cleanup that ends every process and unmounts every mount the trial
made (also at interpreter exit).

Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from bridge.demo import stripe_signature
from bridge.sinks.base import StrictFake
from bridge.sinks.server import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
MAPPINGS = ROOT / "mappings"
STRIPE_SECRET = "whsec_fault_trials_0123456789abcdef"
OPS_TOKEN = "ops-token-fault-trials-0123456789"
CONVULTRA_KEY = "cv_fault_trials_key"


# -- cleanup -------------------------------------------------------------------------------------------------


class Cleanup:
    """Every child process and mount a trial made; `release()` ends and removes them all (also at exit)."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self.mounts: list[Path] = []
        self.hooks: list[Callable[[], None]] = []
        atexit.register(self.release)

    def process(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        self.processes.append(proc)
        return proc

    def mount(self, path: Path) -> Path:
        self.mounts.append(path)
        return path

    def hook(self, fn: Callable[[], None]) -> None:
        self.hooks.append(fn)

    def release(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)  # a stopped process cannot die of SIGTERM
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
        self.processes.clear()
        for path in reversed(self.mounts):
            unmount(path)
        self.mounts.clear()
        for fn in reversed(self.hooks):
            with contextlib.suppress(Exception):
                fn()
        self.hooks.clear()


CLEANUP = Cleanup()


def is_mounted(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


def unmount(path: Path) -> None:
    for command in (["fusermount", "-u", "-q", str(path)], ["umount", str(path)], ["umount", "-l", str(path)]):
        if not is_mounted(path):
            return
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


# -- the bridge process ------------------------------------------------------------------------------------


def write_config(
    directory: Path,
    *,
    outbox_url: str,
    destinations: dict[str, Any],
    dispatcher: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    name: str = "bridge.yaml",
) -> Path:
    config: dict[str, Any] = {
        "outbox": {"url": outbox_url},
        "ops": {"token": OPS_TOKEN},
        "mappings": str(MAPPINGS),
        "sources": {"stripe": {"provider": "stripe", "secrets": [STRIPE_SECRET], **(source or {})}},
        "destinations": destinations,
    }
    if dispatcher:
        config["dispatcher"] = dispatcher
    path = directory / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def convultra(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "convultra", "url": f"{url}/v1/track", "api_key": CONVULTRA_KEY, "events": ["purchase"], **extra}


class BridgeProcess:
    """One `bridge serve` child (or the trial launcher, `bench.faults.serve`, when given `launcher_args`)."""

    def __init__(self, config: Path, log: Path, *, port: int | None = None, launcher_args: list[str] | None = None):
        self.config = config
        self.log = log
        self.port = port or free_port()
        self.launcher_args = launcher_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.launcher_args is None:
            command = [sys.executable, "-m", "bridge", "serve"]
        else:
            command = [sys.executable, "-m", "bench.faults.serve", *self.launcher_args]
        command += ["--config", str(self.config), "--port", str(self.port), "--log-level", "WARNING"]
        with self.log.open("ab") as log:
            self.proc = CLEANUP.process(
                subprocess.Popen(
                    command,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    cwd=ROOT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            )
        self.starts += 1

    async def ready(self, timeout: float = 60.0) -> float:
        """Wait for /readyz to answer 200; returns the seconds it took."""
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() - started < timeout:
                if self.proc is None or self.proc.poll() is not None:
                    code = None if self.proc is None else self.proc.returncode
                    raise TrialError(f"bridge exited with {code} before it was ready; log: {self.log}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.base}/readyz")).status_code == 200:
                        return time.monotonic() - started
                await asyncio.sleep(0.05)
        raise TrialError(f"bridge not ready after {timeout:g}s; log: {self.log}")

    async def start_ready(self) -> float:
        self.start()
        return await self.ready()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL after `timeout`); the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class TrialError(Exception):
    """The trial itself could not run (not a finding about the bridge)."""


# -- webhooks and senders ----------------------------------------------------------------------------------

_PAYMENT = orjson.loads((ROOT / "fixtures" / "stripe" / "payment_intent.succeeded.json").read_bytes())
_REFUND = orjson.loads((ROOT / "fixtures" / "stripe" / "charge.refunded.json").read_bytes())


def payment(ident: str, created: float | None = None) -> bytes:
    """A real Stripe payment_intent.succeeded body with its own ids: maps to one `purchase` whose order id is
    `pi_<ident>`."""
    event = orjson.loads(orjson.dumps(_PAYMENT))
    event["id"] = f"evt_{ident}"
    event["data"]["object"]["id"] = f"pi_{ident}"
    if created is not None:
        event["created"] = int(created)
    return orjson.dumps(event)


def refund(ident: str) -> bytes:
    """A real Stripe charge.refunded body with its own ids (maps to one `refund`)."""
    event = orjson.loads(orjson.dumps(_REFUND))
    event["id"] = f"evt_{ident}"
    event["data"]["object"]["id"] = f"ch_{ident}"
    for item in event["data"]["object"].get("refunds", {}).get("data", []):
        item["id"] = f"re_{ident}"  # the canonical refund's id: one refund per webhook
    return orjson.dumps(event)


def signed_headers(body: bytes, now: float) -> dict[str, str]:
    return {"Stripe-Signature": stripe_signature(body, STRIPE_SECRET, int(now)), "Content-Type": "application/json"}


@dataclass
class Senders:
    """`count` concurrent senders posting signed payments to `base` like a provider: a webhook not answered 2xx
    is sent again later; `acked` holds every id answered 2xx (the bridge's promise). Stop with `stop()`."""

    base: Callable[[], str]
    count: int = 4
    prefix: str = "t"
    limit: int | None = None
    now: Callable[[], float] = time.time
    timeout: float = 10.0
    body: Callable[[str, float], bytes] = payment
    acked: set[str] = field(default_factory=set)
    statuses: Counter[str] = field(default_factory=Counter)
    #: slowest answer of each status (seconds)
    slowest: dict[str, float] = field(default_factory=dict)
    retry_after: Counter[str] = field(default_factory=Counter)
    on_answer: Callable[[str, int, httpx.Response | None], None] | None = None
    _next: int = 0
    _again: list[str] = field(default_factory=list)
    _stopping: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._stopping = False
        self._tasks = [asyncio.create_task(self._run()) for _ in range(self.count)]

    async def stop(self) -> None:
        self._stopping = True
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def wait(self) -> None:
        """Until every sender has run out of webhooks to send (`limit` reached, everything acknowledged)."""
        await asyncio.gather(*self._tasks)

    async def settle(self, timeout: float) -> None:
        """Send nothing new; resend what is not acknowledged yet until it is, as a provider would; wait for that."""
        self.limit = self._next
        await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), timeout)

    def take_figures(self) -> tuple[Counter[str], dict[str, float]]:
        """The answers counted and slowest times since the last call (and start counting afresh)."""
        figures = (self.statuses, self.slowest)
        self.statuses, self.slowest = Counter(), {}
        return figures

    @property
    def sent(self) -> int:
        return self._next

    @property
    def unacked(self) -> int:
        return len(self._again)

    def _take(self) -> str | None:
        if self._again:
            return self._again.pop(0)
        if self.limit is not None and self._next >= self.limit:
            return None
        ident = f"{self.prefix}_{self._next}"
        self._next += 1
        return ident

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout, limits=httpx.Limits(max_connections=2)) as client:
            while not self._stopping:
                ident = self._take()
                if ident is None:
                    return  # a sender whose post fails queues it again and takes it back itself
                await self.post(client, ident)

    async def post(self, client: httpx.AsyncClient, ident: str) -> int:
        body = self.body(ident, self.now())
        started = time.monotonic()
        response: httpx.Response | None = None
        try:
            response = await client.post(
                f"{self.base()}/webhooks/stripe", content=body, headers=signed_headers(body, self.now())
            )
            status = response.status_code
            key = str(status)
        except httpx.TimeoutException:
            status, key = 0, "timeout"
        except httpx.HTTPError:
            status, key = 0, "connection"
        took = time.monotonic() - started
        self.statuses[key] += 1
        self.slowest[key] = max(self.slowest.get(key, 0.0), took)
        if response is not None and "retry-after" in response.headers:
            self.retry_after[key] += 1
        if self.on_answer is not None:
            self.on_answer(ident, status, response)
        if 200 <= status < 300:
            self.acked.add(ident)
        else:
            self._again.append(ident)
            if status == 0:
                await asyncio.sleep(0.05)  # nobody listening: back off a little, as a provider would
        return status


# -- sinks -------------------------------------------------------------------------------------------------


class Slow:
    """Wrap an ASGI app so every HTTP request waits `delay` seconds first: deliveries stay in flight."""

    def __init__(self, app: Any, delay: float) -> None:
        self.app = app
        self.delay = delay
        self.waiting = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.waiting += 1
            try:
                await asyncio.sleep(self.delay)
            finally:
                self.waiting -= 1
        await self.app(scope, receive, send)


def events_of(fake: StrictFake) -> Iterable[dict[str, Any]]:
    for request in fake.received:
        body = request["json"]
        yield from (body["events"] if isinstance(body, dict) and "events" in body else [body])


def order_counts(fake: StrictFake) -> Counter[str]:
    """How many times each order id was accepted (single or batched): more than once is a duplicate delivery."""
    counts: Counter[str] = Counter()
    for event in events_of(fake):
        order = (event.get("properties") or {}).get("order_id") or event.get("event_id")
        if isinstance(order, str):
            counts[order.removeprefix("pi_")] += 1
    return counts


# -- the ops API -------------------------------------------------------------------------------------------


async def ops_get(base: str, path: str, **params: Any) -> Any:
    async with httpx.AsyncClient(timeout=30.0) as client:
        response = await client.get(f"{base}{path}", params=params, headers={"Authorization": f"Bearer {OPS_TOKEN}"})
        if response.status_code != 200:
            raise TrialError(f"GET {path}: {response.status_code} {response.text[:200]}")
        return response.json()


async def stored_event_ids(base: str) -> set[str]:
    """Provider event ids of every stored webhook, through GET /ops/webhooks (all pages)."""
    ids: set[str] = set()
    cursor: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = await ops_get(base, "/ops/webhooks", **params)
        ids.update(row["provider_event_id"] for row in page["webhooks"])
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


async def outbox_busy(base: str) -> int:
    stats = await ops_get(base, "/ops/outbox")
    return sum(d["pending"] + d["in_flight"] for d in stats["destinations"].values())


async def until(check: Callable[[], Awaitable[bool]] | Callable[[], bool], timeout: float, every: float = 0.1) -> bool:
    """Poll `check` until it is true or `timeout` (real seconds) passes; returns whether it became true."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every)


def rng(seed: int | None) -> random.Random:
    return random.Random(seed)


@dataclass
class Result:
    """One trial's figures; `ok` when every promise held. `problems` says which did not."""

    trial: str
    figures: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def check(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)

    def line(self) -> str:
        parts = [f"{key}={_fmt(value)}" for key, value in self.figures.items()]
        verdict = "ok" if self.ok else "FAILED: " + "; ".join(self.problems)
        return f"{self.trial}: " + " ".join(parts) + f" -> {verdict}"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)
