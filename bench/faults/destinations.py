"""Trial 4, the destination fault matrix: beside one healthy destination (the strict Convultra sink), one
destination per fault, each a tiny server on 127.0.0.1 that behaves that way. Signed webhooks fan out to all of
them. For each fault the trial reads the attempt log through the ops API: the verdict of each attempt (retry,
dead, delivered; a 410 disables the destination and holds its deliveries, pending and unsent), how many attempts
were recorded, the wait between the first two (Retry-After honoured?), and checks that the healthy destination got
everything at once, never waiting behind a broken one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.faults.harness import (
    CONVULTRA_KEY,
    BridgeProcess,
    Result,
    Senders,
    convultra,
    ops_get,
    order_counts,
    until,
    write_config,
)
from bridge.sinks.convultra import ConvultraFake
from bridge.sinks.server import free_port, serve

#: seconds a fault destination waits for an answer (hang, trickle)
TIMEOUT = 2.0
#: the retry schedule of this trial: quick retries so several attempts fit in a short run
SCHEDULE = [1.0, 1.0, 1.0, 1.0]
RETRY_AFTER = 4
CONCURRENCY = 2

SHORT = {"webhooks": 2, "watch": 9.0}
FULL = {"webhooks": 10, "watch": 14.0}

#: a 410 disables the destination: its deliveries stay pending (the attempt is recorded as a retry) and unsent
HELD = "disabled, held"
#: fault -> (path on the fault server, or a special kind) and the expected first verdict
FAULTS: dict[str, tuple[str, str]] = {
    "500": ("/status/500", "retry"),
    "502": ("/status/502", "retry"),
    "502+retry-after": ("/status/502?ra=seconds", "retry"),
    "503": ("/status/503", "retry"),
    "503+retry-after": ("/status/503?ra=seconds", "retry"),
    "429+retry-after-seconds": ("/status/429?ra=seconds", "retry"),
    "429+retry-after-date": ("/status/429?ra=date", "retry"),
    "400": ("/status/400", "dead"),
    "404": ("/status/404", "dead"),
    "410": ("/status/410", HELD),
    "422": ("/status/422", "dead"),
    "301": ("/status/301", "retry"),
    "302": ("/status/302", "retry"),
    "307": ("/status/307", "retry"),
    "refused": ("refused", "retry"),
    "reset-mid-response": ("reset", "retry"),
    "never-answers": ("/hang", "retry"),
    "trickle-1-byte-per-s": ("/trickle", "retry"),
    "elevar-debug-200-error": ("/elevar", "dead"),
}
#: faults whose answer asks for a longer wait than the schedule's
HONOURS_RETRY_AFTER = {"502+retry-after", "503+retry-after", "429+retry-after-seconds", "429+retry-after-date"}


class FaultServer:
    """The HTTP faults (status codes, hang, trickle, Elevar debug) on one aiohttp app, counting hits per path."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.hit_times: dict[str, list[float]] = {}
        self.app = web.Application()
        self.app.router.add_route("*", "/status/{code}", self.status)
        self.app.router.add_route("*", "/hang", self.hang)
        self.app.router.add_route("*", "/trickle", self.trickle)
        self.app.router.add_route("*", "/elevar", self.elevar)
        self.app.router.add_route("*", "/landed", self.landed)

    def _hit(self, request: web.Request) -> None:
        self.hits[request.path_qs] = self.hits.get(request.path_qs, 0) + 1
        self.hit_times.setdefault(request.path_qs, []).append(time.monotonic())

    async def status(self, request: web.Request) -> web.StreamResponse:
        self._hit(request)
        await request.read()
        code = int(request.match_info["code"])
        headers = {}
        if request.query.get("ra") == "seconds":
            headers["Retry-After"] = str(RETRY_AFTER)
        elif request.query.get("ra") == "date":
            headers["Retry-After"] = formatdate(time.time() + RETRY_AFTER + 1, usegmt=True)
        if 300 <= code < 400:
            headers["Location"] = "/landed"
        return web.Response(status=code, headers=headers, text=f"fault {code}")

    async def hang(self, request: web.Request) -> web.StreamResponse:
        self._hit(request)
        await asyncio.sleep(3600)
        return web.Response()

    async def trickle(self, request: web.Request) -> web.StreamResponse:
        self._hit(request)
        await request.read()
        response = web.StreamResponse(status=200, headers={"Content-Length": "60", "Content-Type": "text/plain"})
        await response.prepare(request)
        for _ in range(60):
            await response.write(b".")
            await asyncio.sleep(1.0)
        return response

    async def elevar(self, request: web.Request) -> web.StreamResponse:
        """Elevar in debug mode: 200, but the body says the event was rejected."""
        self._hit(request)
        await request.read()
        return web.json_response({"result": "rejected", "errors": ["ecommerce.currencyCode: a 3-letter code"]})

    async def landed(self, request: web.Request) -> web.StreamResponse:
        self._hit(request)
        return web.Response(text="a redirect was followed")


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read the request, send half a response, then reset the connection (RST, not FIN)."""
    with contextlib.suppress(Exception):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: application/json\r\n\r\n{"succ')
        await writer.drain()
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.transport.abort()


@contextlib.asynccontextmanager
async def fault_servers() -> AsyncIterator[tuple[FaultServer, str, str, int]]:
    faults = FaultServer()
    runner = web.AppRunner(faults.app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    http_port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", http_port)
    await site.start()
    reset_server = await asyncio.start_server(_reset, "127.0.0.1", 0)
    reset_port = reset_server.sockets[0].getsockname()[1]
    refused_port = free_port()  # nobody listens there
    try:
        yield faults, f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{reset_port}", refused_port
    finally:
        reset_server.close()
        await runner.cleanup()


def destination_for(name: str, kind: str, base: str, reset: str, refused: int) -> dict[str, Any]:
    common = {"events": ["purchase"], "timeout_seconds": TIMEOUT, "concurrency": CONCURRENCY}
    if kind == "/elevar":
        return {
            "type": "elevar",
            "url": f"{base}/elevar",
            "website_id": "site-1",
            "server_key": "elevar-key",
            "default_source_url": "https://shop.example.com/thank_you",
            "debug": True,
            **common,
        }
    url = {"refused": f"http://127.0.0.1:{refused}/x", "reset": f"{reset}/x"}.get(kind, f"{base}{kind}")
    return {"type": "http", "url": url, **common}


def slug(name: str) -> str:
    return "f_" + "".join(ch if ch.isalnum() else "_" for ch in name)


async def run(full: bool, workdir: Path, seed: int | None = None) -> Result:
    plan = FULL if full else SHORT
    fake = ConvultraFake(CONVULTRA_KEY)
    arrived: dict[str, float] = {}
    original = fake.handle

    async def stamped(record: dict[str, Any]) -> Any:
        answer = await original(record)
        for order in order_counts_of(record):
            arrived.setdefault(order, time.monotonic())
        return answer

    fake.handle = stamped  # type: ignore[method-assign]
    sent_at: dict[str, float] = {}
    async with fault_servers() as (faults, base, reset, refused), serve(fake.app) as sink:
        destinations: dict[str, Any] = {"healthy": convultra(sink)}
        for name, (kind, _) in FAULTS.items():
            destinations[slug(name)] = destination_for(name, kind, base, reset, refused)
        config = write_config(
            workdir,
            outbox_url=f"sqlite:///{workdir / 'outbox.db'}",
            destinations=destinations,
            dispatcher={"retry": {"schedule": SCHEDULE, "jitter": 0}},
        )
        bridge = BridgeProcess(config, workdir / "serve.log")
        await bridge.start_ready()
        senders = Senders(
            lambda: bridge.base,
            count=1,
            prefix="matrix",
            limit=int(plan["webhooks"]),  # type: ignore[call-overload]
            on_answer=lambda ident, status, _: sent_at.setdefault(ident, time.monotonic()),
        )
        try:
            senders.start()
            await senders.wait()
            await asyncio.sleep(float(plan["watch"]))  # type: ignore[arg-type]
            rows: dict[str, list[dict[str, Any]]] = {}
            for name in FAULTS:
                listing = await ops_get(bridge.base, "/ops/deliveries", destination=slug(name), limit=500)
                rows[name] = [
                    await ops_get(bridge.base, f"/ops/deliveries/{row['id']}") for row in listing["deliveries"]
                ]
            disabled = {
                name: state["disabled"]
                for name, state in (await ops_get(bridge.base, "/ops/destinations"))["destinations"].items()
            }
            await until(lambda: senders.acked <= set(order_counts(fake)), timeout=10)
        finally:
            await senders.stop()
            bridge.stop()
    matrix: dict[str, str] = {}
    result = Result("destinations", {})
    for name, (kind, expected) in FAULTS.items():
        deliveries = rows[name]
        if not deliveries:
            result.problems.append(f"{name}: no deliveries")
            continue
        first = max(deliveries, key=lambda d: len(d["attempts"]))
        attempts = first["attempts"]
        verdicts = [a["verdict"] for a in attempts]
        gap = attempts[1]["started_at"] - attempts[0]["started_at"] if len(attempts) > 1 else None
        cell = f"{verdicts[0] if verdicts else '-'}x{len(attempts)}/{first['status']}"
        if gap is not None:
            cell += f"/gap{gap:.1f}s"
        matrix[name] = cell
        result.check(len(deliveries) == len(senders.acked), f"{name}: {len(deliveries)} deliveries")
        recorded = "retry" if expected == HELD else expected  # held: the attempt is a retry nobody makes
        result.check(
            bool(verdicts) and verdicts[0] == recorded, f"{name}: first verdict {verdicts[:1]}, expected {expected}"
        )
        if expected == HELD:
            tried = [a for d in deliveries for a in d["attempts"]]
            matrix[name] = f"disabled/{len(tried)} requests/" + ",".join(sorted({d["status"] for d in deliveries}))
            result.check(bool(disabled.get(slug(name))), f"{name}: the destination is not disabled")
            result.check(all(d["status"] == "pending" for d in deliveries), f"{name}: held deliveries must be pending")
            result.check(
                1 <= len(tried) <= CONCURRENCY and all(a["status_code"] == 410 for a in tried),
                f"{name}: {len(tried)} requests; after the first 410s nothing may be sent",
            )
        elif expected == "dead":
            result.check(
                len(attempts) == 1 and first["status"] == "dead", f"{name}: dead needs 1 attempt, got {verdicts}"
            )
            result.check(bool(first.get("last_error")) or bool(attempts[0]["error"]), f"{name}: dead without a reason")
        elif kind.startswith("/status/429"):
            # a 429 pauses the destination's whole lane for Retry-After: with many deliveries queued, each may
            # wait several pauses for its turn. What must hold: tried again, and never more than `concurrency`
            # requests inside one Retry-After window.
            times = faults.hit_times.get(kind, [])
            crowded = max((sum(1 for u in times if t <= u < t + RETRY_AFTER - 0.5) for t in times), default=0)
            matrix[name] += f"/{len(times)}req"
            result.check(len(times) >= 2, f"{name}: a retryable fault was tried only {len(times)} time(s)")
            result.check(crowded <= CONCURRENCY, f"{name}: {crowded} requests inside one Retry-After window")
        else:
            result.check(len(attempts) >= 2, f"{name}: a retryable fault was tried only {len(attempts)} time(s)")
        if name in HONOURS_RETRY_AFTER and gap is not None:
            result.check(gap >= RETRY_AFTER - 1.0, f"{name}: retried after {gap:.1f}s, Retry-After said {RETRY_AFTER}")
        elif expected == "retry" and gap is not None and kind not in ("/hang", "/trickle"):
            result.check(gap < RETRY_AFTER - 1.0, f"{name}: waited {gap:.1f}s, the schedule says {SCHEDULE[0]}s")
    followed = faults.hits.get("/landed", 0)
    result.check(followed == 0, f"a redirect was followed {followed} time(s)")
    healthy_waits = [arrived[i] - sent_at[i] for i in senders.acked if i in arrived and i in sent_at]
    counts = order_counts(fake)
    result.check(senders.acked <= set(counts), "the healthy destination did not get every event")
    worst = max(healthy_waits, default=float("inf"))
    result.check(worst < TIMEOUT, f"the healthy destination waited {worst:.2f}s (a broken one's timeout is {TIMEOUT}s)")
    result.figures = {
        "webhooks": len(senders.acked),
        "healthy_delivered": len(set(counts) & senders.acked),
        "healthy_slowest_s": worst,
        "redirects_followed": followed,
        **{f"[{name}]": cell for name, cell in matrix.items()},
    }
    return result


def order_counts_of(record: dict[str, Any]) -> list[str]:
    body = record.get("json")
    events = body["events"] if isinstance(body, dict) and "events" in body else [body]
    out = []
    for event in events:
        if isinstance(event, dict):
            order = (event.get("properties") or {}).get("order_id")
            if isinstance(order, str):
                out.append(order.removeprefix("pi_"))
    return out
