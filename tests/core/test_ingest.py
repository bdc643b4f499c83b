"""POST /webhooks/{source} through the real app and a real SQLite outbox."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson
import pytest

from bridge.clock import ManualClock
from bridge.sinks.server import serve
from tests.fuzz.wire import http_post
from tests.harness import FIXTURES, STRIPE_SECRET, Bridge, running_bridge, stripe_case, stripe_headers

DESTINATIONS = {
    "capture": {"type": "http", "url": "http://127.0.0.1:9/unused", "events": ["*"]},
}


async def webhook_count(bridge: Bridge) -> dict[str, int]:
    response = await bridge.ops("GET", "/ops/outbox")
    assert response.status_code == 200
    counts: dict[str, int] = response.json()["webhooks"]
    return {status: n for status, n in counts.items() if n}


async def test_signed_webhook_is_stored_mapped_and_routed(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, destinations=DESTINATIONS, dispatch=False) as bridge:
        body = stripe_case("checkout.session.completed")
        response = await bridge.post_stripe(body)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "accepted"
        [webhook_id] = response.json()["webhook_ids"]

        stored = (await bridge.ops("GET", f"/ops/webhooks/{webhook_id}")).json()
        assert stored["status"] == "accepted"
        assert stored["body"].encode() == body  # raw bytes kept exactly
        assert "stripe-signature" in stored["headers"]
        expected = orjson.loads((FIXTURES / "stripe" / "checkout.session.completed.expected.json").read_bytes())
        assert stored["events"] == expected

        [delivery] = await bridge.deliveries()
        assert (delivery["destination"], delivery["event_name"], delivery["status"]) == (
            "capture",
            "purchase",
            "pending",
        )
        assert delivery["event_id"] == expected[0]["id"]


def tamper(body: bytes) -> bytes:
    return body.replace(b'"amount_total": 1099', b'"amount_total": 1')


@pytest.mark.parametrize(
    "case",
    ["bad_signature", "stale", "future", "missing_header", "tampered", "wrong_secret", "garbled", "no_v1"],
)
async def test_bad_signatures_are_refused_and_store_nothing(tmp_path: Path, case: str) -> None:
    body = stripe_case("checkout.session.completed")
    assert tamper(body) != body
    clock = ManualClock(start=1_900_000_000.0)  # the app's "now": signing relative to it leaves nothing to luck
    now = clock.now()
    headers = stripe_headers(body, timestamp=now)
    if case == "bad_signature":
        headers["Stripe-Signature"] = headers["Stripe-Signature"][:-4] + "0000"
    elif case == "stale":
        headers = stripe_headers(body, timestamp=now - 301)
    elif case == "future":
        # the header carries whole seconds: 301 s ahead truncated by int() can land back inside the 300 s window
        headers = stripe_headers(body, timestamp=now + 302)
    elif case == "missing_header":
        del headers["Stripe-Signature"]
    elif case == "tampered":
        body = tamper(body)
    elif case == "wrong_secret":
        headers = stripe_headers(body, secret="whsec_someone_else", timestamp=now)
    elif case == "garbled":
        headers["Stripe-Signature"] = "t=abc,v1=zz"
    elif case == "no_v1":
        headers["Stripe-Signature"] = headers["Stripe-Signature"].replace("v1=", "v0=")
    async with running_bridge(tmp_path, destinations=DESTINATIONS, dispatch=False, clock=clock) as bridge:
        response = await bridge.client.post("/webhooks/stripe", content=body, headers=headers)
        assert response.status_code == 401
        assert response.json() == {"error": "signature verification failed"}  # the reason is logged, not returned
        assert sum((await webhook_count(bridge)).values()) == 0
        assert await bridge.deliveries() == []


async def test_the_tolerance_window_is_exact_in_both_directions(tmp_path: Path) -> None:
    """300 s either side of the app's clock is fresh, 301 s is not: the refusals above are about the window,
    not about how long the app took to start."""
    clock = ManualClock(start=1_900_000_000.0)
    async with running_bridge(tmp_path, destinations=DESTINATIONS, dispatch=False, clock=clock) as bridge:
        for offset, expected in ((-300, 200), (300, 200), (-301, 401), (301, 401)):
            event = orjson.loads(stripe_case("checkout.session.completed"))
            event["id"] = f"evt_window_{offset}"
            body = orjson.dumps(event)
            headers = stripe_headers(body, timestamp=clock.now() + offset)
            response = await bridge.client.post("/webhooks/stripe", content=body, headers=headers)
            assert response.status_code == expected, (offset, response.text)


async def test_rotation_accepts_old_and_new_secret(tmp_path: Path) -> None:
    extra = {"sources": {"stripe": {"provider": "stripe", "secrets": ["whsec_new_one", STRIPE_SECRET]}}}
    async with running_bridge(tmp_path, destinations=DESTINATIONS, dispatch=False, extra=extra) as bridge:
        body = stripe_case("payment_intent.succeeded")
        for secret in ("whsec_new_one", STRIPE_SECRET):
            response = await bridge.client.post("/webhooks/stripe", content=body, headers=stripe_headers(body, secret))
            assert response.status_code == 200


async def test_unknown_source_malformed_json_and_oversized(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, destinations=DESTINATIONS, dispatch=False) as bridge:
        assert (await bridge.client.post("/webhooks/nope", content=b"{}")).status_code == 404
        garbage = b'{"id": "evt_1", "type": '
        response = await bridge.client.post("/webhooks/stripe", content=garbage, headers=stripe_headers(garbage))
        assert response.status_code == 400
        big = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
        response = await bridge.client.post("/webhooks/stripe", content=big, headers=stripe_headers(big))
        assert response.status_code == 413
        assert sum((await webhook_count(bridge)).values()) == 0


async def _status_line(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readline(), timeout=5)


async def test_oversized_body_is_refused_before_the_rest_is_sent(tmp_path: Path) -> None:
    """Over a real socket: 413 arrives while the body is still unfinished (declared or chunked)."""
    async with running_bridge(tmp_path, destinations=DESTINATIONS, dispatch=False) as bridge:
        async with serve(bridge.app, lifespan="off") as url:
            port = int(url.rsplit(":", 1)[1])
            # 1. a declared 10 MB body, none of it sent
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n")
            await writer.drain()
            assert b" 413 " in await _status_line(reader)
            writer.close()
            # 2. chunked with no length: 1.1 MiB sent, never terminated
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(18):
                writer.write(b"10000\r\n" + b"x" * 65536 + b"\r\n")
            await writer.drain()
            assert b" 413 " in await _status_line(reader)
            writer.close()
        assert sum((await webhook_count(bridge)).values()) == 0


async def test_duplicate_event_creates_no_second_delivery(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, destinations=DESTINATIONS, dispatch=False) as bridge:
        body = stripe_case("checkout.session.completed")
        first = await bridge.post_stripe(body)
        second = await bridge.post_stripe(body)
        assert first.status_code == second.status_code == 200
        assert second.json()["status"] == "duplicate"
        assert len(await bridge.deliveries()) == 1
        assert await webhook_count(bridge) == {"accepted": 1}


async def test_duplicate_storm_stores_one_row(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, destinations=DESTINATIONS, dispatch=False) as bridge:
        body = stripe_case("payment_intent.succeeded")
        responses = await asyncio.gather(*(bridge.post_stripe(body) for _ in range(50)))
        assert {r.status_code for r in responses} == {200}
        assert [r.json()["status"] for r in responses].count("accepted") == 1
        assert len(await bridge.deliveries()) == 1


async def test_one_payment_is_one_purchase(tmp_path: Path) -> None:
    """checkout.session.completed and payment_intent.succeeded describe one payment: one delivery."""
    async with running_bridge(tmp_path, destinations=DESTINATIONS, dispatch=False) as bridge:
        assert (await bridge.post_stripe(stripe_case("checkout.session.completed"))).status_code == 200
        assert (await bridge.post_stripe(stripe_case("payment_intent.succeeded"))).status_code == 200
        purchases = [d for d in await bridge.deliveries() if d["event_name"] == "purchase"]
        assert len(purchases) == 1
        assert await webhook_count(bridge) == {"accepted": 2}


async def test_unmapped_type_is_ignored_and_mapping_failure_is_kept(tmp_path: Path) -> None:
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "stripe.yaml").write_text(
        "provider: stripe\n"
        "events:\n"
        "  payment_intent.succeeded:\n"
        "    - name: purchase\n"
        "      fields:\n"
        "        id: data.object.id\n"
        "        occurred_at: to_rfc3339(created)\n"
        "        order.total: data.object.id\n"  # text where money is expected: fails at run time
    )
    async with running_bridge(
        tmp_path, destinations=DESTINATIONS, dispatch=False, extra={"mappings": str(mappings)}
    ) as bridge:
        ignored = await bridge.post_stripe(stripe_case("charge.refunded"))
        failed = await bridge.post_stripe(stripe_case("payment_intent.succeeded"))
        assert ignored.status_code == failed.status_code == 200
        assert await webhook_count(bridge) == {"ignored": 1, "mapping_failed": 1}
        [failed_id] = failed.json()["webhook_ids"]
        stored = (await bridge.ops("GET", f"/ops/webhooks/{failed_id}")).json()
        assert "order.total" in stored["error"]
        assert await bridge.deliveries() == []


async def test_storage_failure_answers_503_and_acknowledges_nothing(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, destinations=DESTINATIONS, dispatch=False) as bridge:
        with sqlite3.connect(tmp_path / "outbox.db") as db:  # break the store under the running service
            db.execute("DROP TABLE deliveries")
        response = await bridge.post_stripe(stripe_case("checkout.session.completed"))
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
    with sqlite3.connect(tmp_path / "outbox.db") as db:
        assert db.execute("SELECT count(*) FROM webhooks").fetchone() == (0,)


async def test_a_client_that_sends_a_whole_oversized_body_reads_its_413(tmp_path: Path) -> None:
    """Over a real socket, a sender that writes all of a too-large body before it reads (what simple HTTP clients
    do) gets its 413, not a reset: the server reads the rest of a declared body and throws it away."""
    async with running_bridge(tmp_path, destinations=DESTINATIONS, dispatch=False) as bridge:
        async with serve(bridge.app, lifespan="off") as url:
            port = int(url.rsplit(":", 1)[1])
            for size in (1_100_000, 3_000_000, 6_000_000):
                big = b'{"pad": "' + b"x" * size + b'"}'
                headers = {name.lower(): value.encode() for name, value in stripe_headers(big).items()}
                answer = await http_post(port, "/webhooks/stripe", big, headers, timeout=5)
                assert answer.status == 413, (size, answer)
        assert sum((await webhook_count(bridge)).values()) == 0


async def test_after_a_refused_body_the_same_connection_serves_the_next_request(tmp_path: Path) -> None:
    """The rest of a refused body is read and dropped by its declared length, never taken for a next request."""
    async with running_bridge(tmp_path, destinations=DESTINATIONS, dispatch=False) as bridge:
        async with serve(bridge.app, lifespan="off") as url:
            port = int(url.rsplit(":", 1)[1])
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            big = b'{"pad": "' + b"POST /webhooks/stripe HTTP/1.1\r\n" * 40_000 + b'"}'
            good = stripe_case("payment_intent.succeeded")
            for body, expected in ((big, b" 413 "), (good, b" 200 ")):
                head = f"POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
                signature = stripe_headers(body)["Stripe-Signature"]
                writer.write(f"{head}Stripe-Signature: {signature}\r\n\r\n".encode() + body)
                await writer.drain()
                assert expected in await _status_line(reader)
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
            writer.close()
        assert await webhook_count(bridge) == {"accepted": 1}
