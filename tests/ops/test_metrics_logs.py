"""/metrics through prometheus-client (one registry per app), /readyz, and log lines: context on every line,
no secret, signature or personal data anywhere in a full run's output."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bridge import logs
from bridge.sinks.server import serve
from tests.harness import OPS_TOKEN, STRIPE_SECRET, Bridge, running_bridge, stripe_case, stripe_headers
from tests.ops.support import SwitchSink, until

HEADER_SECRET = "header-credential-7f3a9c2e51"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def settle(bridge: Bridge) -> None:
    async def idle() -> bool:
        rows = await bridge.deliveries()
        return bool(rows) and all(r["status"] in ("delivered", "dead") for r in rows)

    await until(idle, what="deliveries to settle")


async def test_metrics_count_what_happened_per_app(tmp_path: Path) -> None:
    sink = SwitchSink(200)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with serve(sink.app) as url:
        destinations = {"collector": {"type": "http", "url": f"{url}/collect", "events": ["*"]}}
        async with running_bridge(tmp_path / "a", destinations=destinations) as bridge:
            for case in ("checkout.session.completed", "charge.refunded"):
                assert (await bridge.post_stripe(stripe_case(case))).status_code == 200
            assert (await bridge.post_stripe(stripe_case("charge.refunded"))).json()["status"] == "duplicate"
            await bridge.post_stripe(stripe_case("invoice.paid"), secret="whsec_forged")
            await bridge.client.post("/webhooks/nobody-configured-this", content=b"{}")
            await settle(bridge)
            response = await bridge.ops("GET", "/metrics")
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
            found = samples(response.text)
            assert value(found, "bridge_webhooks_total", source="stripe", status="accepted") == 2
            assert value(found, "bridge_webhooks_total", source="stripe", status="duplicate") == 1
            assert value(found, "bridge_webhooks_rejected_total", source="stripe", reason="signature") == 1
            assert value(found, "bridge_webhook_handling_seconds_count", source="stripe") == 4
            assert "nobody-configured-this" not in response.text  # a stranger's path is never a label
            assert value(found, "bridge_delivery_request_seconds_count", destination="collector") == 2
            assert value(found, "bridge_delivery_attempts_total", destination="collector", verdict="delivered") == 2
            assert value(found, "bridge_deliveries", destination="collector", status="delivered") == 2
            assert value(found, "bridge_deliveries", destination="collector", status="dead") == 0
            assert value(found, "bridge_outbox_up") == 1
            assert ("bridge_oldest_pending_age_seconds", (("destination", "collector"),)) in found
            assert not any(name.endswith("_created") for name, _ in found)

            # a second app in the same process has its own registry
            async with running_bridge(tmp_path / "b", destinations=destinations, dispatch=False) as other:
                fresh = samples((await other.ops("GET", "/metrics")).text)
                assert value(fresh, "bridge_webhooks_total", source="stripe", status="accepted") == 0


async def test_readyz_fails_when_the_outbox_does_not_answer(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, destinations={}, dispatch=False) as bridge:
        assert (await bridge.client.get("/readyz")).status_code == 200
        outbox = bridge.state.outbox
        assert outbox is not None
        await outbox.close()
        try:
            response = await bridge.client.get("/readyz")
            assert response.status_code == 503 and response.json()["status"] == "unavailable"
            assert (await bridge.client.get("/healthz")).status_code == 200  # liveness only
            found = samples((await bridge.ops("GET", "/metrics")).text)
            assert value(found, "bridge_outbox_up") == 0
        finally:
            await outbox.open()


def echoing_sink() -> Starlette:
    """Refuses every event with 400, echoing the customer's email back (as some APIs do in their errors)."""

    async def collect(request: Request) -> JSONResponse:
        event = orjson.loads(await request.body())
        email = (event.get("customer") or {}).get("email")
        return JSONResponse({"error": f"customer {email} rejected", "phone": "+44 20 7946 0958"}, 400)

    return Starlette(routes=[Route("/collect", collect, methods=["POST"])])


@pytest.fixture
def captured_logs() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("fmt", ["json", "text"])
async def test_a_full_runs_logs_name_what_they_concern_and_leak_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], captured_logs: None, fmt: logs.LogFormat
) -> None:
    async with serve(echoing_sink()) as url:
        destinations = {
            "collector": {"type": "http", "url": f"{url}/collect", "headers": {"X-Api-Key": HEADER_SECRET}}
        }
        async with running_bridge(tmp_path, destinations=destinations) as bridge:
            logs.configure("INFO", fmt, logs.secret_values(bridge.settings))
            bodies = [stripe_case(c) for c in ("checkout.session.completed", "charge.refunded")]
            signatures = [stripe_headers(b)["Stripe-Signature"] for b in bodies]
            for body, signature in zip(bodies, signatures, strict=True):
                await bridge.client.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": signature})
            forged = stripe_headers(bodies[0], secret="whsec_forged")["Stripe-Signature"]
            await bridge.client.post("/webhooks/stripe", content=bodies[0], headers={"Stripe-Signature": forged})
            await settle(bridge)
            await bridge.client.post("/ops/login", data={"token": "not-the-token-0123456789"})
            await bridge.ops("GET", "/ops/ui/webhooks/1?reveal=1")
    output = capsys.readouterr().err
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines
    secrets = [STRIPE_SECRET, OPS_TOKEN, HEADER_SECRET, *signatures, forged, forged.split("v1=")[1]]
    for secret in secrets:
        assert secret not in output
    emails = {e.decode() for body in bodies for e in re.findall(rb"[\w.+-]+@[\w-]+\.[\w.]+", body)}
    assert emails
    for email in emails:
        assert email not in output
    assert "7946" not in output  # the phone number in the destination's answer
    if fmt == "json":
        # other tests' libraries may have left their own handlers on non-root loggers: judge our handler's lines
        records = [orjson.loads(line) for line in lines if line.startswith('{"ts":')]
        assert records
        webhooks = [r for r in records if r["msg"] == "webhook"]
        assert len(webhooks) == 2 and all(r["source"] == "stripe" and r["webhook_ids"] for r in webhooks)
        rejected = [r for r in records if r["msg"] == "signature rejected"]
        assert rejected and rejected[0]["source"] == "stripe"
        failed = [r for r in records if r["msg"] == "delivery attempt failed"]
        assert failed and all(r["destination"] == "collector" and r["delivery_ids"] for r in failed)
        assert all(r["webhook_ids"] for r in failed)
        revealed = [r for r in records if r["msg"] == "ops page revealed personal data"]
        assert revealed and revealed[0]["webhook_ids"] == [1]
    else:
        assert not any(line.startswith('{"ts":') for line in lines)
        assert any(" webhook " in line and "source=stripe" in line for line in lines)
        assert any("delivery attempt failed" in line and "destination=collector" in line for line in lines)


def test_every_metric_is_documented_and_every_alert_uses_real_metrics() -> None:
    from bridge.metrics import Metrics

    class Tally:
        delivered = retried = dead = lost_leases = 1

    class Health:
        paused_until = 2.0
        stalled = True

    metrics = Metrics()
    metrics.webhook("s", "accepted")
    metrics.rejected("s", "signature")
    metrics.webhook_handled("s", 0.01)
    metrics.request("d", 0.01)
    stats = {"destinations": {"d": {"pending": 1, "oldest_pending_age_seconds": 3.0}}}
    text = metrics.render(stats, {"d": Tally()}, {"d": Health()}, 1.0).decode()
    exposed = {family.name for family in text_string_to_metric_families(text)}
    root = Path(__file__).resolve().parent.parent.parent
    operations = (root / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"^\| `(bridge_\w+)` \|", operations, re.M))
    base = {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in documented}
    assert base == exposed
    alerts = (root / "docs" / "alerts.yaml").read_text()
    for used in set(re.findall(r"\b(bridge_\w+)", alerts)):
        assert re.sub(r"_(bucket|sum|count|total)$", "", used) in exposed, used
