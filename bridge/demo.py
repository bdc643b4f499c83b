"""`bridge demo`: the whole flow on loopback, start to finish, in one command.

Starts the five seed destinations' strict sinks (bridge.sinks) and the bridge itself (real HTTP on 127.0.0.1,
a temporary SQLite outbox, the shipped mappings, freshly generated secrets), posts the Stripe sample webhooks
signed exactly as Stripe signs them, waits until every delivery is settled, then prints what arrived where and
the outbox status. Exits 0 when everything was delivered and nothing was refused. `--source <provider>` does
the same with another provider's sample webhooks (`bridge/demo_sources/`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from bridge import demo_platforms, logs, shipped
from bridge.app import create_app
from bridge.config import load_settings
from bridge.demo_sources import DemoSource, demo_source, post_samples, report_unrenderable
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

#: (fixture case, what it shows)
SAMPLES = [
    ("checkout.session.completed", "a paid Checkout session"),
    ("payment_intent.succeeded", "the same payment's PaymentIntent (counted once)"),
    ("charge.refunded", "a refund"),
    ("customer.subscription.created", "a new subscription"),
    ("invoice.paid", "a renewal invoice"),
    ("customer.subscription.updated.period_end", "a plan change moving the period end"),
    ("customer.subscription.deleted", "a cancellation"),
    ("invoice.payment_failed", "a failed payment"),
    ("plan.created", "an event type the mapping ignores"),
]
SITE = "shop.example.com"


def stripe_signature(body: bytes, secret: str, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def demo_config(
    directory: Path, sinks: dict[str, str], extra: dict[str, Any] | None = None, demo: DemoSource | None = None
) -> Path:
    """bridge.yaml for the demo; every secret is a ${VAR} reference, as in production."""
    stripe = {"stripe": {"provider": "stripe", "secrets": ["${STRIPE_WEBHOOK_SECRET}"]}}
    config = {
        "outbox": {"url": f"sqlite:///{directory / 'outbox.db'}"},
        "ops": {"token": "${BRIDGE_OPS_TOKEN}"},
        "mappings": str(shipped.mappings_dir()),
        "sources": {demo.provider: demo.source} if demo is not None else stripe,
        "destinations": {
            "convultra": {
                "type": "convultra",
                "url": f"{sinks['convultra']}/v1/track",
                "api_key": "${CONVULTRA_SERVER_KEY}",
                "events": [
                    "purchase",
                    "refund",
                    "subscription_started",
                    "subscription_renewed",
                    "subscription_canceled",
                ],
            },
            "elevar": {
                "type": "elevar",
                "url": f"{sinks['elevar']}{ELEVAR_PATH}",
                "website_id": "${ELEVAR_WEBSITE_ID}",
                "server_key": "${ELEVAR_SERVER_KEY}",
                "default_source_url": f"https://{SITE}/checkout/thank_you",
            },
            "servoki": {
                "type": "servoki",
                "url": f"{sinks['servoki']}{SERVOKI_PATH}",
                "api_key": "${SERVOKI_API_KEY}",
                "site": SITE,
                "events": ["purchase", "refund", "subscription_started", "subscription_canceled"],
            },
            "zenovay": {
                "type": "zenovay",
                "url": f"{sinks['zenovay']}/e/${{ZENOVAY_TRACKING_CODE}}",
                "default_url": f"https://{SITE}/checkout/success",
                "events": ["purchase"],
            },
            "activation": {
                "type": "data_activation",
                "url": f"{sinks['activation']}{ACTIVATION_PATH}",
                "api_key": "${DATA_ACTIVATION_API_KEY}",
            },
        },
    }
    config["destinations"].update(extra or {})  # type: ignore[attr-defined]
    path = directory / "bridge.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def summarize(request: dict[str, Any]) -> list[str]:
    """One line per event a sink accepted."""
    body: Any = request.get("json")
    events: list[Any] = body["events"] if isinstance(body, dict) and isinstance(body.get("events"), list) else [body]
    lines = []
    for event in events:
        if not isinstance(event, dict):
            continue
        name = event.get("event_type") or event.get("event") or event.get("event_name") or event.get("name")
        props: dict[str, Any] = event["properties"] if isinstance(event.get("properties"), dict) else {}
        ident = (
            event.get("event_id")
            or props.get("event_id")
            or props.get("order_id")
            or _dig(event, "ecommerce", "purchase", "actionField", "id")
        )
        value = props.get("value", event.get("value"))
        currency = props.get("currency", event.get("currency"))
        money = f" {value} {currency}" if value is not None else ""
        lines.append(f"{request['method']} {request['path']} → {request['status']}: {name} {ident or ''}{money}")
    return lines


async def _demo(verbose: bool, everything: bool = False, source: str = "stripe") -> int:
    demo = None if source == "stripe" else demo_source(source)
    env = {
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(24),
        "BRIDGE_OPS_TOKEN": secrets.token_urlsafe(24),
        "CONVULTRA_SERVER_KEY": "cv_" + secrets.token_hex(16),
        "ELEVAR_WEBSITE_ID": secrets.token_hex(8),
        "ELEVAR_SERVER_KEY": secrets.token_hex(16),
        "SERVOKI_API_KEY": "sk_" + secrets.token_hex(16),
        "ZENOVAY_TRACKING_CODE": secrets.token_hex(6),
        "DATA_ACTIVATION_API_KEY": secrets.token_hex(16),
        **(demo.env if demo is not None else {}),
    }
    fakes: dict[str, StrictFake] = {
        "convultra": ConvultraFake(env["CONVULTRA_SERVER_KEY"]),
        "elevar": ElevarFake(env["ELEVAR_WEBSITE_ID"], env["ELEVAR_SERVER_KEY"]),
        "servoki": ServokiFake(env["SERVOKI_API_KEY"], [SITE]),
        "zenovay": ZenovayFake(env["ZENOVAY_TRACKING_CODE"]),
        "activation": DataActivationFake(env["DATA_ACTIVATION_API_KEY"]),
    }
    if everything:  # the analytics and ad platforms too
        env.update(demo_platforms.environment())
        fakes.update(demo_platforms.fakes(env))
    samples = shipped.stripe_samples_dir()
    with tempfile.TemporaryDirectory(prefix="bridge-demo-") as tmp:
        async with AsyncExitStack() as stack:
            sinks = {name: await stack.enter_async_context(serve(fake.app)) for name, fake in fakes.items()}
            platforms = demo_platforms.destinations(sinks) if everything else {}
            for name in platforms:
                del sinks[name]  # the seed config below takes the seed sinks only
            settings = load_settings(demo_config(Path(tmp), sinks, platforms, demo), env)
            providers = demo.providers(settings) if demo is not None else None
            base = await stack.enter_async_context(serve(create_app(settings, providers=providers)))
            print(f"bridge listening on {base} (outbox {settings.outbox_url}); sinks on {', '.join(sinks.values())}\n")
            client = await stack.enter_async_context(httpx.AsyncClient(base_url=base, timeout=10))
            if demo is not None:
                print(f"1. {source} posts its sample webhooks (signed as it signs them):")
                await post_samples(client, demo, time.time())
            for case, meaning in SAMPLES if demo is None else []:
                if case == SAMPLES[0][0]:
                    print("1. Stripe posts its webhooks (signed with the source's secret):")
                body = (samples / f"{case}.json").read_bytes()
                if everything:  # happening now: Meta and GA4 refuse events older than 7 days / 72 h
                    body = orjson.dumps({**orjson.loads(body), "created": int(time.time()) - 60})
                signature = stripe_signature(body, env["STRIPE_WEBHOOK_SECRET"], int(time.time()))
                response = await client.post(
                    "/webhooks/stripe",
                    content=body,
                    headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
                )
                event_type = orjson.loads(body)["type"]
                print(f"   {event_type:<40} {response.status_code} {response.json()['status']:<9} ({meaning})")
            if demo is None:
                forged = await client.post(
                    "/webhooks/stripe",
                    content=body,
                    headers={"Stripe-Signature": stripe_signature(body, "whsec_forged", int(time.time()))},
                )
                print(f"   {'(forged signature)':<40} {forged.status_code} refused, nothing stored\n")

            ops = {"Authorization": f"Bearer {env['BRIDGE_OPS_TOKEN']}"}
            status: dict[str, Any] = {}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = (await client.get("/ops/outbox", headers=ops)).json()
                busy = sum(d["pending"] + d["in_flight"] for d in status["destinations"].values())
                if busy == 0:
                    break
                await asyncio.sleep(0.1)

            print("2. What arrived at each destination:")
            for name, fake in fakes.items():
                print(f"   {name} ({len(fake.received)} accepted, {len(fake.rejected)} refused)")
                for request in fake.received:
                    for line in (demo_platforms.summarize if name in platforms else summarize)(request):
                        print(f"     {line}")
                for request in fake.rejected:
                    print(f"     REFUSED {request['path']} {request['status']}: {request['why']}")
            print("\n3. Outbox status (GET /ops/outbox):")
            print(f"   {'destination':<12} {'pending':>8} {'in_flight':>9} {'delivered':>9} {'dead':>5}")
            for name, counts in sorted(status["destinations"].items()):
                print(
                    f"   {name:<12} {counts['pending']:>8} {counts['in_flight']:>9} {counts['delivered']:>9}"
                    f" {counts['dead']:>5}"
                )
            webhooks = ", ".join(f"{k} {v}" for k, v in status.get("webhooks", {}).items() if v)
            print(f"   webhooks: {webhooks}")
            unrenderable = await report_unrenderable(client, ops) if demo is not None else 0
    unsettled = sum(d["pending"] + d["in_flight"] + d["dead"] for d in status.get("destinations", {}).values())
    unsettled -= unrenderable
    refused = sum(len(fake.rejected) for fake in fakes.values())
    if unsettled or refused:
        print(f"\ndemo FAILED: {unsettled} deliveries not delivered, {refused} requests refused by a sink")
        return 1
    takes = " and can take it" if unrenderable else ""
    print(f"\ndemo ok: every event delivered once to each destination that routes it{takes}")
    return 0


def run_demo(*, verbose: bool = False, everything: bool = False, source: str = "stripe") -> int:
    if verbose:
        logs.configure("INFO")
    else:
        logging.disable(logging.WARNING)
    return asyncio.run(_demo(verbose, everything, source))
