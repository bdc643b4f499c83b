"""A destination that answers 410 Gone is disabled, durably and visibly, its deliveries held (never dead, never
dropped) until ops enable it again; end to end over HTTP: signed webhooks in, a real SQLite file, real local
destination endpoints, the ops API, the CLI, the status page and /metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bridge.cli import main
from bridge.clock import ManualClock
from bridge.dispatcher import Dispatcher
from bridge.retry import RetryPolicy
from bridge.sinks.server import serve
from tests.harness import Bridge, running_bridge, stripe_case
from tests.ops.support import until

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
FAST = {"dispatcher": {"poll_seconds": 0.2}}


class Endpoint:
    """POST /hook answers `status`; records every request (`hits`: the payment ids) and what it accepted."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.hits: list[str] = []
        self.accepted: list[str] = []

    @property
    def app(self) -> Starlette:
        async def hook(request: Request) -> JSONResponse:
            event = orjson.loads(await request.body())
            order = str(event.get("order_id") or event.get("id"))
            self.hits.append(order)
            if self.status >= 300:
                return JSONResponse({"error": "gone", "detail": "this endpoint was removed"}, self.status)
            self.accepted.append(order)
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


def payment(index: int) -> bytes:
    event = orjson.loads(stripe_case("payment_intent.succeeded"))
    event["id"] = f"evt_gone_{index}"
    event["data"]["object"]["id"] = f"pi_gone_{index}"
    return orjson.dumps(event)


def destinations(gone_url: str, healthy_url: str | None = None) -> dict[str, Any]:
    found = {"gone": {"type": "http", "url": f"{gone_url}/hook?api_key=s3cr3t-value", "events": ["*"]}}
    if healthy_url is not None:
        found["healthy"] = {"type": "http", "url": f"{healthy_url}/hook", "events": ["*"]}
    return found


def dispatcher_of(bridge: Bridge) -> Dispatcher:
    assert bridge.state.dispatcher is not None
    return bridge.state.dispatcher


async def json_of(bridge: Bridge, method: str, path: str, **kwargs: Any) -> Any:
    response = await bridge.ops(method, path, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


async def disabled(bridge: Bridge, name: str = "gone") -> Any:
    return (await json_of(bridge, "GET", "/ops/destinations"))["destinations"][name]["disabled"]


async def statuses(bridge: Bridge, name: str = "gone") -> list[tuple[str, int]]:
    return sorted((row["status"], row["attempts"]) for row in await bridge.deliveries(destination=name))


async def rounds(bridge: Bridge, n: int = 3) -> None:
    """Let the claim loop run `n` more rounds (each asks the outbox about every lane), waking it for each: with a
    long poll interval the loop would otherwise sleep until its next lane renewal between rounds."""
    dispatcher = dispatcher_of(bridge)
    start = dispatcher.claim_rounds

    async def done() -> bool:
        if dispatcher.claim_rounds >= start + n:
            return True
        dispatcher.wake()
        return False

    await until(done, what=f"{n} claim rounds")


def metric(text: str, name: str) -> float:
    match = re.search(rf'^bridge_destination_disabled\{{destination="{name}"\}} (\S+)$', text, re.M)
    assert match is not None, text
    return float(match.group(1))


async def test_a_410_disables_the_destination_holds_its_deliveries_and_enable_sends_each_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "bridge")
    gone, healthy = Endpoint(410), Endpoint(200)
    async with serve(gone.app) as gone_url, serve(healthy.app) as healthy_url:
        config = destinations(gone_url, healthy_url)
        async with running_bridge(tmp_path, destinations=config, extra=FAST) as bridge:
            assert (await bridge.post_stripe(payment(1))).status_code == 200

            async def is_disabled() -> bool:
                return await disabled(bridge) is not None

            await until(is_disabled, what="the destination to be disabled")
            state = await disabled(bridge)
            assert state["by"] == "destination"
            assert state["reason"] == f"410 Gone from {gone_url}/hook"  # no query: no api_key
            [row] = await bridge.deliveries(destination="gone")
            assert (row["status"], row["attempts"], row["last_status_code"]) == ("pending", 1, 410)
            detail = await json_of(bridge, "GET", f"/ops/deliveries/{row['id']}")
            [attempt] = detail["attempts"]
            assert attempt["status_code"] == 410 and "this endpoint was removed" in attempt["response_excerpt"]
            assert "disabled" in attempt["error"]
            assert "destination disabled" in caplog.text and "s3cr3t" not in caplog.text

            # visible: /ops/outbox, /metrics, /readyz, the page
            outbox = await json_of(bridge, "GET", "/ops/outbox")
            assert outbox["destinations"]["gone"]["disabled"] == state
            assert outbox["destinations"]["healthy"]["disabled"] is None
            assert outbox["destinations"]["gone"]["stalled"] is False
            metrics = (await bridge.ops("GET", "/metrics")).text
            assert metric(metrics, "gone") == 1.0 and metric(metrics, "healthy") == 0.0
            ready = await bridge.client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["disabled"] == ["gone"]
            page = (await bridge.ops("GET", "/ops/")).text
            row_html = page.split('data-destination="gone"')[1].split("</tr>")[0]
            assert "badge bad disabled" in row_html and "410 Gone from" in row_html
            assert 'action="/ops/ui/destinations/gone/enable"' in row_html

            # more webhooks: stored and held; the healthy destination beside it keeps delivering
            for i in (2, 3):
                assert (await bridge.post_stripe(payment(i))).status_code == 200

            async def healthy_has_all() -> bool:
                return sorted(healthy.accepted) == ["pi_gone_1", "pi_gone_2", "pi_gone_3"]

            await until(healthy_has_all, what="the healthy destination's deliveries")
            await rounds(bridge)
            assert gone.hits == ["pi_gone_1"]
            assert await statuses(bridge) == [("pending", 0), ("pending", 0), ("pending", 1)]

            # enabled (the endpoint is back): every held delivery is sent, each exactly once
            gone.status = 200
            answer = await json_of(bridge, "POST", "/ops/destinations/gone/enable")
            assert answer == {"destination": "gone", "disabled": None, "changed": True}

            async def all_delivered() -> bool:
                return await statuses(bridge) == [("delivered", 1), ("delivered", 1), ("delivered", 2)]

            await until(all_delivered, what="the held deliveries")
            assert sorted(gone.accepted) == ["pi_gone_1", "pi_gone_2", "pi_gone_3"]
            assert "destination enabled" in caplog.text
            metrics = (await bridge.ops("GET", "/metrics")).text
            assert metric(metrics, "gone") == 0.0


async def test_disabled_survives_a_restart_and_the_cli_enables_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = Endpoint(410)
    async with serve(gone.app) as gone_url:
        config = destinations(gone_url)
        async with running_bridge(tmp_path, destinations=config, extra=FAST) as bridge:
            assert (await bridge.post_stripe(payment(1))).status_code == 200

            async def is_disabled() -> bool:
                return await disabled(bridge) is not None

            await until(is_disabled, what="the destination to be disabled")
            assert (await bridge.post_stripe(payment(2))).status_code == 200

        gone.status = 200  # back, but nobody said so: the restarted bridge still holds the destination
        async with running_bridge(tmp_path, destinations=config, extra=FAST) as bridge:
            assert (await disabled(bridge))["by"] == "destination"
            await rounds(bridge)
            assert gone.hits == ["pi_gone_1"]
            assert await statuses(bridge) == [("pending", 0), ("pending", 1)]

            async with serve(bridge.app, lifespan="off") as url:
                common = ["--config", str(tmp_path / "bridge.yaml"), "--url", url]
                assert await asyncio.to_thread(main, ["outbox", "destinations", *common]) == 0
                listed = json.loads(capsys.readouterr().out)["destinations"]
                assert listed["gone"]["disabled"]["reason"].startswith("410 Gone from")
                assert await asyncio.to_thread(main, ["outbox", "enable", *common]) == 2  # no name
                assert await asyncio.to_thread(main, ["outbox", "enable", "nope", *common]) == 1
                assert "404" in capsys.readouterr().err
                assert await asyncio.to_thread(main, ["outbox", "enable", "gone", *common]) == 0
                assert json.loads(capsys.readouterr().out)["disabled"] is None

            async def all_delivered() -> bool:
                return await statuses(bridge) == [("delivered", 1), ("delivered", 2)]

            await until(all_delivered, what="the held deliveries")
            assert sorted(gone.accepted) == ["pi_gone_1", "pi_gone_2"]


async def test_ops_disable_holds_deliveries_and_the_page_enables_them(tmp_path: Path) -> None:
    sink = Endpoint(200)
    async with serve(sink.app) as url, running_bridge(tmp_path, destinations=destinations(url), extra=FAST) as bridge:
        # refused like every /ops route without the token; an unknown name is a 404
        for path in ("/ops/destinations/gone/disable", "/ops/destinations/gone/enable"):
            assert (await bridge.client.post(path)).status_code == (await bridge.client.get("/ops/outbox")).status_code
            assert (await bridge.client.post(path)).status_code == 401
        assert (await bridge.client.get("/ops/destinations")).status_code == 401
        assert (await bridge.ops("POST", "/ops/destinations/nope/disable")).status_code == 404
        assert (await bridge.ops("POST", "/ops/destinations/gone/disable", content=b"[1]")).status_code == 400
        for hostile in ("x" * 501, "nul\x00byte", "line\nbreak"):  # bounded, and nothing a PostgreSQL text refuses
            answer = await bridge.ops("POST", "/ops/destinations/gone/disable", json={"reason": hostile})
            assert answer.status_code == 400, answer.text

        answer = await json_of(bridge, "POST", "/ops/destinations/gone/disable", json={"reason": "their migration"})
        assert answer["changed"] is True and answer["disabled"]["by"] == "ops"
        assert answer["disabled"]["reason"] == "their migration"
        for i in (1, 2):
            assert (await bridge.post_stripe(payment(i))).status_code == 200
        await rounds(bridge)
        assert sink.hits == []
        assert await statuses(bridge) == [("pending", 0), ("pending", 0)]
        again = await json_of(bridge, "POST", "/ops/destinations/gone/disable")
        assert again["changed"] is False and again["disabled"]["reason"] == "their migration"

        # the page's Enable button: refused without the session's CSRF token, then done with it
        login = await bridge.client.post("/ops/login", data={"token": bridge.settings.ops_token, "next": "/ops/"})
        assert login.status_code == 303
        page = await bridge.client.get("/ops/")
        assert "their migration · by ops" in page.text
        match = CSRF.search(page.text)
        assert match is not None
        refused = await bridge.client.post("/ops/ui/destinations/gone/enable", data={"csrf": "x" * 64})
        assert refused.status_code == 403 and await disabled(bridge) is not None
        enabled = await bridge.client.post("/ops/ui/destinations/gone/enable", data={"csrf": match.group(1)})
        assert enabled.status_code == 303 and "gone+enabled" in enabled.headers["location"]

        async def all_delivered() -> bool:
            return await statuses(bridge) == [("delivered", 1), ("delivered", 1)]

        await until(all_delivered, what="the held deliveries")
        assert sorted(sink.accepted) == ["pi_gone_1", "pi_gone_2"]
        page = await bridge.client.get("/ops/")
        assert "badge bad disabled" not in page.text


async def test_held_deliveries_outlive_the_retry_horizon(tmp_path: Path) -> None:
    """With the clock moved past the whole retry schedule while the destination is disabled, nothing it holds
    goes dead (the schedule counts attempts, and a held delivery makes none); enabled, each is delivered."""
    clock = ManualClock(1_750_000_000.0)
    sink = Endpoint(500)
    extra = {"dispatcher": {"poll_seconds": 0.2, "retry": {"jitter": 0, "schedule": [10, 20]}}}
    async with serve(sink.app) as url, running_bridge(
        tmp_path, destinations=destinations(url), clock=clock, extra=extra
    ) as bridge:
        assert (await bridge.post_stripe(payment(1), timestamp=clock.now())).status_code == 200

        async def attempted(n: int) -> Callable[[], Any]:
            async def check() -> bool:
                return len(sink.hits) >= n and [a for _, a in await statuses(bridge)] == [n]

            return check

        await until(await attempted(1), what="the first attempt (500: a retry in 10 s)")
        sink.status = 410
        clock.advance(10)
        dispatcher_of(bridge).wake()
        await until(await attempted(2), what="the second attempt (410)")

        async def is_disabled() -> bool:
            return await disabled(bridge) is not None

        await until(is_disabled, what="the destination to be disabled")
        assert (await bridge.post_stripe(payment(2), timestamp=clock.now())).status_code == 200
        horizon = RetryPolicy(schedule=(10, 20)).total_window()
        for _ in range(3):  # far past the schedule (which would have ended after 2 retries)
            clock.advance(horizon * 100 + 86400)
            await rounds(bridge)
        assert sink.hits == ["pi_gone_1", "pi_gone_1"]
        assert await statuses(bridge) == [("pending", 0), ("pending", 2)]

        sink.status = 200
        await json_of(bridge, "POST", "/ops/destinations/gone/enable")

        async def all_delivered() -> bool:
            return await statuses(bridge) == [("delivered", 1), ("delivered", 3)]

        await until(all_delivered, what="the held deliveries")
        assert sorted(sink.accepted) == ["pi_gone_1", "pi_gone_2"]
