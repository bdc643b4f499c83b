"""The system under fuzz and the properties every request must keep, shared by tests/fuzz/test_fuzz.py and
`python -m bench.fuzz`.

`FuzzTarget` runs the real app (create_app, a real SQLite outbox file, the shipped mappings, the dispatcher)
with one source per provider case, served by uvicorn on 127.0.0.1, and delivering to the five seed
destinations' strict fakes plus two generic `http` destinations (one with headers templated from the event),
all on 127.0.0.1. Requests go over a raw socket, so any header byte can be sent.

After each request `check()` asserts, and records as a `Failure` with a reproducer when broken:

  no-5xx        the answer is below 500 (and there is one)
  bounded       the answer came within ANSWER_BOUND seconds (a failure signal, not a performance figure)
  refused=none  a 4xx stored nothing: no webhook and no delivery was added
  dispatching   every delivery the request created gets an attempt, and a sentinel purchase posted afterwards
                is delivered to every destination (the dispatcher keeps delivering)

Everything runs on one event loop in a background thread (`FuzzThread`), so the synchronous hypothesis test
and the benchmark drive the same async code.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar

import orjson
import yaml

from bridge.app import create_app
from bridge.clock import ManualClock
from bridge.config import load_settings
from bridge.providers.base import Provider, SourceSettings
from bridge.providers.paypal import PayPalProvider
from bridge.sinks.base import StrictFake
from bridge.sinks.convultra import ConvultraFake
from bridge.sinks.data_activation import PATH as ACTIVATION_PATH
from bridge.sinks.data_activation import DataActivationFake
from bridge.sinks.elevar import PATH as ELEVAR_PATH
from bridge.sinks.elevar import ElevarFake
from bridge.sinks.server import serve
from bridge.sinks.servoki import PATH as SERVOKI_PATH
from bridge.sinks.servoki import ServokiFake
from bridge.sinks.zenovay import ZenovayFake
from tests.fuzz.report import Failure, Stats, generalize
from tests.fuzz.strategies import MAPPINGS, FuzzInput, Request, build, source, sources
from tests.fuzz.wire import CUT_OFF, Answer, CatchAll, ErrorLog, Recorder, http_post
from tests.providers.cases import NOW, Case
from tests.providers.signing import paypal_test_fetcher, sign

#: an answer slower than this is a property failure (a stalled or unbounded request), not a speed figure
ANSWER_BOUND = 5.0
#: the largest canonical event one webhook may make: the largest webhook body a source accepts by default
OUTPUT_BOUND = 1024 * 1024
#: growth of this process (the app, its dispatcher and the fuzzer) past which a run counts as unbounded
MEMORY_BOUND = 1 << 30
#: outbox size past which a run counts as unbounded (a 10,000-request run of ordinary webhooks stays far below)
STORAGE_BOUND = 1 << 30
#: how many distinct events of one request are weighed (a batch repeats one shape)
EVENT_SAMPLE = 20
#: a lane that has unattempted deliveries and makes no progress for this long is stalled
STALL_SECONDS = 10.0
#: how long the sentinel purchase gets to be delivered to every destination
SETTLE_BOUND = 10.0
OPS_TOKEN = "ops-token-for-fuzzing-0123456789"
START = NOW  # the time the cases' test certificates and keys are valid at
SITE = "shop.example.com"
UNLIMITED = [{"requests": 1_000_000, "per_seconds": 1}]
SENTINEL_SECRET = "whsec_fuzz_sentinel_secret"


def _source_entry(case: Case) -> dict[str, Any]:
    entry: dict[str, Any] = {"provider": case.type, **case.options}
    if case.type == "chargebee":
        entry["password"] = case.secret
    elif case.type == "paypal":
        entry["webhook_id"] = case.secret
    elif case.type in ("apple_app_store", "google_play"):
        pass  # no secret: the provider is built with the case's test trust (see FuzzTarget.start)
    else:
        entry["secrets"] = [case.secret]
    if case.tolerance is not None:
        entry["tolerance_seconds"] = case.tolerance
    return entry


class FuzzTarget:
    def __init__(self, workdir: Path, stats: Stats | None = None) -> None:
        self.workdir = workdir
        self.clock = ManualClock(START)
        self.stats = stats or Stats()
        #: set when memory or storage passed its bound: the run goes on with a fresh app (FuzzThread.check)
        self.exhausted = False
        self._rss_start = 0
        self.sinks: dict[str, StrictFake] = {}
        self.catch_all = CatchAll()
        self.port = 0
        self.count = 0
        self.stalled: set[str] = set()  # destinations found stalled: left out of later checks (each would wait)
        self._stack = AsyncExitStack()
        self._recorder: Recorder | None = None
        self._errors = ErrorLog()
        self._webhooks = 0
        self._deliveries = 0
        self._max_delivery = 0

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        stack = self._stack
        self.sinks = {
            "convultra": ConvultraFake("cv_key", rate_limit=(1_000_000, 1.0)),
            "elevar": ElevarFake("site-123", "elevar_key"),
            "servoki": ServokiFake("sv_key", [SITE], rate_limit=(1_000_000, 1.0)),
            "zenovay": ZenovayFake("zcode123", rate_limits=((1_000_000, 1.0),)),
            "activation": DataActivationFake("da_key"),
        }
        url = {name: await stack.enter_async_context(serve(fake.app)) for name, fake in self.sinks.items()}
        anything = await stack.enter_async_context(serve(self.catch_all))
        destinations = {
            "convultra": {"type": "convultra", "url": f"{url['convultra']}/v1/track", "api_key": "cv_key"},
            "elevar": {
                "type": "elevar",
                "url": f"{url['elevar']}{ELEVAR_PATH}",
                "website_id": "site-123",
                "server_key": "elevar_key",
                "default_source_url": f"https://{SITE}/thank_you",
            },
            "servoki": {"type": "servoki", "url": f"{url['servoki']}{SERVOKI_PATH}", "api_key": "sv_key", "site": SITE},
            "zenovay": {
                "type": "zenovay",
                "url": f"{url['zenovay']}/e/zcode123",
                "default_url": f"https://{SITE}/checkout/success",
            },
            "activation": {
                "type": "data_activation",
                "url": f"{url['activation']}{ACTIVATION_PATH}",
                "api_key": "da_key",
            },
            "http": {"type": "http", "url": f"{anything}/plain", "events": ["*"]},
            "http-templated": {
                "type": "http",
                "url": f"{anything}/templated",
                "events": ["*"],
                "headers_template": {
                    "X-Order": "order.id",
                    "X-Email": "customer.email",
                    "X-Agent": "context.user_agent",
                    "X-Total": "to_string(order.total)",
                },
            },
        }
        for entry in destinations.values():
            entry["rate_limits"] = UNLIMITED
        sources_config = {src.name: _source_entry(src.case) for src in sources()}
        sources_config["sentinel"] = {"provider": "stripe", "secrets": [SENTINEL_SECRET]}
        config = {
            "outbox": {"url": f"sqlite:///{self.workdir / 'outbox.db'}"},
            "ops": {"token": OPS_TOKEN},
            "mappings": str(MAPPINGS),
            "sources": sources_config,
            "destinations": destinations,
            "dispatcher": {"lease_seconds": 30, "retry": {"jitter": 0}},
        }
        path = self.workdir / "bridge.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        settings = load_settings(path, {})
        paypal = source("paypal").case
        paypal_settings = SourceSettings(
            "paypal", "paypal", (), paypal.tolerance, options={"webhook_id": paypal.secret}
        )
        providers: dict[str, Provider] = {"paypal": PayPalProvider(paypal_settings, fetch_cert=paypal_test_fetcher)}
        for src in sources():
            if src.type in ("apple_app_store", "google_play"):  # trusting the test PKI / keys of the case
                providers[src.name] = src.case.build()
        app = create_app(settings, clock=self.clock, providers=providers, reload_interval=None)
        self._recorder = Recorder(app)
        base = await stack.enter_async_context(serve(self._recorder))
        self.port = int(base.rsplit(":", 1)[1])
        bridge_log = logging.getLogger("bridge")
        bridge_log.addHandler(self._errors)
        stack.callback(bridge_log.removeHandler, self._errors)
        await self._observe()
        self._rss_start = rss_bytes()

    async def stop(self) -> None:
        await self._stack.aclose()

    # -- the ops API --------------------------------------------------------------------------------

    async def _ops(self, path: str) -> Any:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            head = f"GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {OPS_TOKEN}\r\nconnection: close"
            writer.write(head.encode() + b"\r\n\r\n")
            data = await reader.read()
        finally:
            writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n")[0]:
            raise AssertionError(f"ops {path} answered {head[:80]!r}")
        return orjson.loads(body)

    async def _observe(self) -> tuple[int, int]:
        """(webhooks stored, deliveries created) so far."""
        stats = await self._ops("/ops/outbox")
        webhooks = sum(stats["webhooks"].values())
        deliveries = sum(
            row.get(status, 0)
            for row in stats["destinations"].values()
            for status in ("pending", "in_flight", "delivered", "dead")
        )
        return webhooks, deliveries

    async def _new_deliveries(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        cursor = ""
        while True:
            page = await self._ops(f"/ops/deliveries?limit=500{cursor}")
            fresh = [row for row in page["deliveries"] if row["id"] > self._max_delivery]
            rows += fresh
            if len(fresh) < len(page["deliveries"]) or page["next_cursor"] is None:
                return rows
            cursor = f"&cursor={page['next_cursor']}"

    async def _settled(self, ids: set[int]) -> list[dict[str, Any]]:
        """Wait until each delivery has an attempt (or is finished); the ones still without one once no
        delivery has made progress for STALL_SECONDS."""
        waiting: list[dict[str, Any]] = []
        progress_at, left = time.monotonic(), len(ids) + 1
        while time.monotonic() - progress_at < STALL_SECONDS:
            rows = [r for r in await self._new_deliveries() if r["id"] in ids]
            waiting = [
                r
                for r in rows
                if r["attempts"] == 0
                and r["status"] not in ("delivered", "dead")
                and r["destination"] not in self.stalled
            ]
            if not waiting:
                return []
            if len(waiting) < left:
                progress_at, left = time.monotonic(), len(waiting)
            await asyncio.sleep(0.01 * (1 + len(rows) // 500))  # a page of the ops API per 500 deliveries
        return waiting

    # -- one request --------------------------------------------------------------------------------

    async def check(self, item: FuzzInput) -> Answer:
        """Send one request built from `item` and check every property; failures go to `stats.failures`."""
        self.count += 1
        request = build(item, self.count, self.clock.now())
        assert self._recorder is not None
        errors_before, logged_before = len(self._recorder.errors), len(self._errors.records)
        answer = await http_post(self.port, f"/webhooks/{request.source}", request.body, request.headers, 60.0)
        self.stats.requests += 1
        self.stats.kinds[item.kind] += 1
        self.stats.sources[item.source] += 1
        self.stats.statuses[answer.status] += 1
        self.stats.times.append(answer.seconds)
        self.stats.note_time(answer.seconds, f"HTTP {answer.status}: {item.describe()}")

        def fail(prop: str, what: str) -> None:
            self.stats.failures.append(Failure(prop, what, item.describe(), request.body, dict(request.headers)))

        if answer.status == CUT_OFF:
            # refused before the body was read (413 past the size limit, 400 from the HTTP parser): the server
            # closes while the client is still sending and the reset discards the answer; nothing was stored
            # (checked below), so this is how any HTTP server refuses, not a failure
            self.stats.cut_off += 1
        elif answer.status >= 500 or answer.status <= 0:
            raised = self._recorder.errors[errors_before:]
            what = {0: "no answer (connection closed)", -1: "no answer within 60 s"}.get(answer.status)
            fail(
                "no-5xx",
                f"{src_type(request)}: {what or f'HTTP {answer.status}'}: {'; '.join(raised) or answer.body[:120]!r}",
            )
        if answer.seconds > ANSWER_BOUND:
            fail("bounded", f"{src_type(request)}: answered HTTP {answer.status} after {answer.seconds:.1f} s")
        for record in self._errors.records[logged_before:]:
            self.stats.crashes[f"{src_type(request)}: {generalize(record)}"] += 1
        webhooks, deliveries = await self._observe()
        refused = 400 <= answer.status < 500 or answer.status == CUT_OFF
        if refused and (webhooks, deliveries) != (self._webhooks, self._deliveries):
            added = f"{webhooks - self._webhooks} webhooks, {deliveries - self._deliveries} deliveries"
            fail("refused=none", f"{src_type(request)}: HTTP {answer.status} but stored {added}")
        if deliveries != self._deliveries:
            await self._check_dispatching(fail)
        self._webhooks, self._deliveries = await self._observe()
        self._check_resources(fail)
        for fake in self.sinks.values():  # keep memory flat over a long run
            fake.received.clear()
            fake.rejected.clear()
            fake.dropped_as_bot.clear()
        return answer

    def _check_resources(self, fail: Callable[[str, str], None]) -> None:
        grown = rss_bytes() - self._rss_start
        if grown > MEMORY_BOUND:
            fail(
                "bounded-memory", f"the process grew by {grown >> 20} MiB since start (bound {MEMORY_BOUND >> 20} MiB)"
            )
            self.exhausted = True
        stored = sum(p.stat().st_size for p in self.workdir.glob("outbox.db*"))
        if stored > STORAGE_BOUND:
            fail("bounded-storage", f"the outbox holds {stored >> 20} MiB (bound {STORAGE_BOUND >> 20} MiB)")
            self.exhausted = True

    async def _check_dispatching(self, fail: Callable[[str, str], None]) -> None:
        created = await self._new_deliveries()
        stuck = await self._settled({row["id"] for row in created})
        if stuck:
            names = sorted({f"{r['destination']}#{r['id']} {r['status']}" for r in stuck})
            fail(
                "dispatching",
                f"deliveries without an attempt, no progress for {STALL_SECONDS:.0f} s: {', '.join(names[:6])}",
            )
            self.stalled |= {r["destination"] for r in stuck}
        self._max_delivery = max([self._max_delivery, *(row["id"] for row in created)])
        for size in await self._event_sizes(created):
            if size > OUTPUT_BOUND:
                fail(
                    "bounded-output", f"a canonical event of {size} bytes (the largest body accepted is {OUTPUT_BOUND})"
                )
                break
        sentinel = await self.sentinel()
        if sentinel:
            fail("dispatching", f"a sentinel purchase posted afterwards was not delivered: {sentinel}")

    async def _event_sizes(self, created: list[dict[str, Any]]) -> list[int]:
        """The serialized size of each distinct event the new deliveries carry (the first EVENT_SAMPLE)."""
        sizes = []
        seen: set[tuple[str, str]] = set()
        for row in created:
            if len(seen) >= EVENT_SAMPLE:
                break
            if (row["event_name"], row["event_id"]) not in seen:
                seen.add((row["event_name"], row["event_id"]))
                detail = await self._ops(f"/ops/deliveries/{row['id']}")
                sizes.append(len(orjson.dumps(detail["event"])))
        return sizes

    async def sentinel(self) -> str:
        """Post a normal purchase and wait for every destination to have it delivered; '' or what is missing."""
        self.stats.sentinels += 1
        n = self.stats.sentinels
        event = orjson.loads((MAPPINGS.parent / "fixtures/stripe/payment_intent.succeeded.json").read_bytes())
        event["id"] = f"evt_sentinel_{n}"
        event["data"]["object"]["id"] = f"pi_sentinel_{n}"
        event["data"]["object"]["customer"] = f"cus_sentinel_{n}"
        body = orjson.dumps(event)
        headers = {
            k.lower(): v.encode() for k, v in sign("stripe", body, secret=SENTINEL_SECRET, now=self.clock.now()).items()
        }
        answer = await http_post(self.port, "/webhooks/sentinel", body, headers, 60.0)
        if answer.status != 200:
            return f"the sentinel itself was answered HTTP {answer.status}: {answer.body[:200]!r}"
        created = await self._new_deliveries()
        ids = {row["id"] for row in created}
        deadline = time.monotonic() + SETTLE_BOUND
        late: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = [r for r in await self._new_deliveries() if r["id"] in ids]
            late = [r for r in rows if r["status"] != "delivered" and r["destination"] not in self.stalled]
            if not late and rows:
                self._max_delivery = max([self._max_delivery, *ids])
                return ""
            await asyncio.sleep(0.01)
        self.stalled |= {r["destination"] for r in late}
        return ", ".join(f"{r['destination']}: {r['status']}" for r in late) or "no delivery was created for it"


def rss_bytes() -> int:
    """This process's resident memory (Linux /proc; 0 elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def src_type(request: Request) -> str:
    return (
        f"{request.source} ({source(request.source).type})"
        if request.source != source(request.source).type
        else request.source
    )


T = TypeVar("T")


class FuzzThread:
    """A FuzzTarget on its own event loop in a background thread, for synchronous drivers (hypothesis). When a
    request leaves the app past a memory or storage bound (a failure already recorded), `check` carries on with
    a fresh app and outbox, keeping the figures."""

    def __init__(self, workdir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self.workdir = workdir
        self.generation = 0
        self.target = FuzzTarget(self._fresh_dir())

    def _fresh_dir(self) -> Path:
        self.generation += 1
        path = self.workdir / f"run-{self.generation}"
        path.mkdir(parents=True)
        return path

    def run(self, coroutine: Coroutine[Any, Any, T] | Awaitable[T], timeout: float = 300.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)  # type: ignore[arg-type]

    def check(self, item: FuzzInput) -> Answer:
        answer = self.run(self.target.check(item))
        if self.target.exhausted:
            old = self.target
            self.run(old.stop())
            shutil.rmtree(old.workdir, ignore_errors=True)
            gc.collect()
            self.target = FuzzTarget(self._fresh_dir(), old.stats)
            self.target.stats.restarts += 1
            self.run(self.target.start())
        return answer

    def __enter__(self) -> FuzzThread:
        self.thread.start()
        self.run(self.target.start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self.target.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
