"""Logs never carry a secret, a token, a signature or a customer's personal data.

A full run is collected: `bridge serve` as a subprocess (JSON log lines on stderr, debug level) taking signed
webhooks with personal data, forged and tampered ones, a wrong Basic password, a mapping failure, a
destination refusing a delivery, and ops calls with the right and a wrong token; then `bridge demo --verbose`;
then `bridge check` on configs that are wrong right where a secret sits. No configured secret, ops token,
signature header value or personal value from the fixtures may appear in any of that output.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from bridge.sinks.convultra import ConvultraFake
from bridge.sinks.data_activation import PATH as ACTIVATION_PATH
from bridge.sinks.data_activation import DataActivationFake
from bridge.sinks.elevar import PATH as ELEVAR_PATH
from bridge.sinks.elevar import ElevarFake
from bridge.sinks.server import free_port, serve
from tests.core.test_crash import wait_ready
from tests.harness import FIXTURES, MAPPINGS, stripe_headers
from tests.providers.signing import sign

pytestmark = pytest.mark.slow

STRIPE_SECRET = "whsec_loghygiene_stripe_7f3a9c1e5b"
SHOPIFY_SECRET = "shpss_loghygiene_shopify_2d8e4f6a"
CHARGEBEE_PASSWORD = "cb-loghygiene-password-9b1c"
OPS_TOKEN = "ops-loghygiene-token-5e7d3a1f"
CONVULTRA_KEY = "cv_loghygiene_key_8a2b4c6d"
ELEVAR_KEY = "elevar-loghygiene-key-3f5e7a9b"
ACTIVATION_KEY = "da-loghygiene-key-1c3e5a7b"
HTTP_TOKEN = "http-loghygiene-bearer-4d6f8b0c"
WRONG_TOKEN = "wrong-loghygiene-token-6b8d0f2a"
WRONG_PASSWORD = "cb-wrong-loghygiene-0e2c4a6b"
SECRETS = [
    STRIPE_SECRET,
    SHOPIFY_SECRET,
    CHARGEBEE_PASSWORD,
    OPS_TOKEN,
    CONVULTRA_KEY,
    ELEVAR_KEY,
    ACTIVATION_KEY,
    HTTP_TOKEN,
    WRONG_TOKEN,
    WRONG_PASSWORD,
]
#: personal data in the fixture bodies posted below (Shopify order, Stripe checkout)
PII = ["bob.norman@hostmail.com", "555-625-1199", "Bob Norman", "Chestnut Street 92", "example@example.com"]
#: what a Stripe secret, signature or key looks like when we cannot know it (the demo makes its own)
PATTERNS = [r"whsec_[0-9a-f]{16,}", r"v1=[0-9a-f]{64}", r"cv_[0-9a-f]{32}", r"sk_[0-9a-f]{32}", r"Bearer [\w-]{16,}"]


def leaks(text: str, values: list[str]) -> list[str]:
    """Each line of `text` that contains one of `values` or matches PATTERNS, with what it contains."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        hits = [v for v in values if v in line] + [p for p in PATTERNS if re.search(p, line)]
        if hits:
            found.append(f"line {number}: {hits} in {line[:300]}")
    return found


def config(tmp_path: Path, sinks: dict[str, str]) -> dict[str, Any]:
    return {
        "outbox": {"url": f"sqlite:///{tmp_path / 'outbox.db'}"},
        "ops": {"token": OPS_TOKEN},
        "mappings": str(MAPPINGS),
        "sources": {
            "stripe": {"provider": "stripe", "secrets": [STRIPE_SECRET]},
            "shopify": {"provider": "shopify", "secrets": [SHOPIFY_SECRET]},
            "chargebee": {"provider": "chargebee", "username": "chargebee", "password": CHARGEBEE_PASSWORD},
        },
        "destinations": {
            "convultra": {"type": "convultra", "url": f"{sinks['convultra']}/v1/track", "api_key": CONVULTRA_KEY},
            "elevar": {
                "type": "elevar",
                "url": f"{sinks['elevar']}{ELEVAR_PATH}",
                "website_id": "site-loghygiene",
                "server_key": ELEVAR_KEY,
                "default_source_url": "https://shop.example/thank_you",
            },
            "activation": {
                "type": "data_activation",
                "url": f"{sinks['activation']}{ACTIVATION_PATH}",
                "api_key": ACTIVATION_KEY,
            },
            "http": {
                "type": "http",
                "url": f"{sinks['convultra']}/anything",  # a path the fake refuses: a failed delivery
                "headers": {"Authorization": f"Bearer {HTTP_TOKEN}"},
            },
        },
        "dispatcher": {"retry": {"schedule": [3600]}},
    }


async def webhooks(client: httpx.AsyncClient) -> list[str]:
    """Post the webhooks; returns every signature header value sent (none may be logged)."""
    sent: list[str] = []
    checkout = (FIXTURES / "stripe/checkout.session.completed.json").read_bytes()
    headers = stripe_headers(checkout, STRIPE_SECRET)
    sent.append(headers["Stripe-Signature"])
    assert (await client.post("/webhooks/stripe", content=checkout, headers=headers)).status_code == 200

    order = (FIXTURES / "shopify/orders-create.json").read_bytes()
    shopify = sign("shopify", order, secret=SHOPIFY_SECRET, now=float(int(__import__("time").time())))
    sent.append(shopify["X-Shopify-Hmac-Sha256"])
    assert (await client.post("/webhooks/shopify", content=order, headers=shopify)).status_code == 200

    forged = stripe_headers(checkout, "whsec_not_the_secret_0000")  # a forged signature
    sent.append(forged["Stripe-Signature"])
    assert (await client.post("/webhooks/stripe", content=checkout, headers=forged)).status_code == 401

    tampered = order.replace(b"bob.norman@hostmail.com", b"eve@attacker.example")  # valid signature, other body
    assert (await client.post("/webhooks/shopify", content=tampered, headers=shopify)).status_code == 401

    basic = "Basic " + base64.b64encode(f"chargebee:{WRONG_PASSWORD}".encode()).decode()
    sent.append(basic)
    body = b'{"id":"ev_loghygiene","event_type":"subscription_created","content":{}}'
    assert (await client.post("/webhooks/chargebee", content=body, headers={"Authorization": basic})).status_code == 401

    broken = orjson.loads(checkout)  # personal data where the mapping expects an amount: mapping_failed
    broken["id"] = "evt_loghygiene_broken"
    broken["data"]["object"]["payment_intent"] = "pi_loghygiene_broken"
    broken["data"]["object"]["amount_total"] = "example@example.com"
    body = orjson.dumps(broken)
    headers = stripe_headers(body, STRIPE_SECRET)
    sent.append(headers["Stripe-Signature"])
    response = await client.post("/webhooks/stripe", content=body, headers=headers)
    assert response.json()["status"] == "mapping_failed"

    garbage = b'{"id": "evt_loghygiene_garbage", "email": "example@example.com", '  # signed, not JSON
    headers = stripe_headers(garbage, STRIPE_SECRET)
    assert (await client.post("/webhooks/stripe", content=garbage, headers=headers)).status_code == 400
    return sent


async def ops_calls(client: httpx.AsyncClient) -> None:
    auth = {"Authorization": f"Bearer {OPS_TOKEN}"}
    assert (await client.get("/ops/outbox", headers={"Authorization": f"Bearer {WRONG_TOKEN}"})).status_code == 401
    assert (await client.get("/ops/webhooks/1", headers=auth)).status_code == 200  # its body holds personal data
    for _ in range(200):  # until every delivery has been tried once
        rows = (await client.get("/ops/deliveries", headers=auth, params={"limit": 500})).json()["deliveries"]
        if rows and all(row["attempts"] >= 1 for row in rows):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"deliveries were not attempted: {rows}")
    assert {row["status"] for row in rows} >= {"delivered", "dead"}


async def test_a_full_serve_run_logs_no_secret_token_signature_or_personal_data(tmp_path: Path) -> None:
    fakes = {
        "convultra": ConvultraFake(CONVULTRA_KEY),
        "elevar": ElevarFake("site-loghygiene", ELEVAR_KEY),
        "activation": DataActivationFake(ACTIVATION_KEY),
    }
    log = tmp_path / "serve.log"
    async with (
        serve(fakes["convultra"].app) as cv,
        serve(fakes["elevar"].app) as el,
        serve(fakes["activation"].app) as da,
    ):
        path = tmp_path / "bridge.yaml"
        path.write_text(yaml.safe_dump(config(tmp_path, {"convultra": cv, "elevar": el, "activation": da})))
        port = free_port()
        command = [sys.executable, "-m", "bridge", "serve", "--config", str(path), "--port", str(port)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "BRIDGE_LOG_LEVEL": "DEBUG"}
        proc = subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)
        try:
            await wait_ready(f"http://127.0.0.1:{port}", proc)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                signatures = await webhooks(client)
                await ops_calls(client)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    text = log.read_text()
    assert '"msg":"signature rejected"' in text and '"msg":"webhook"' in text  # the run really was logged
    assert leaks(text, SECRETS + PII + signatures) == []


def test_the_demo_prints_and_logs_no_secret_or_personal_data(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "demo", "--verbose"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert '"msg":"webhook"' in result.stderr  # --verbose: the bridge's log lines are there
    assert leaks(result.stdout + result.stderr, PII) == []


#: configs wrong right where a secret sits (a value in a key that is not a secret key, e.g. a key pasted into
#: `concurrency`, is echoed on purpose: the bridge cannot know it is one)
BAD_CONFIGS = {
    "short ops token": {"ops": {"token": "tok-9b1c-short"}},
    "a secret nested in the secrets list": {
        "sources": {"stripe": {"provider": "stripe", "secrets": [[STRIPE_SECRET]]}}
    },
    "a secret under a misspelt key": {
        "destinations": {
            "convultra": {"type": "convultra", "url": "https://api.example/v1/track", "api_kee": CONVULTRA_KEY}
        }
    },
    "credentials in a mistyped URL": {
        "destinations": {"http": {"type": "http", "url": f"htps://user:{HTTP_TOKEN}@sink.example/hook"}}
    },
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bridge_check_names_the_problem_without_echoing_secrets(tmp_path: Path, case: str) -> None:
    document: dict[str, Any] = {
        "outbox": {"url": f"sqlite:///{tmp_path / 'outbox.db'}"},
        "ops": {"token": OPS_TOKEN},
        "mappings": str(MAPPINGS),
        "sources": {"stripe": {"provider": "stripe", "secrets": [STRIPE_SECRET]}},
        "destinations": {},
    }
    document.update(BAD_CONFIGS[case])
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0, result.stdout
    assert f"{path}:" in result.stderr  # it did say where
    assert leaks(result.stdout + result.stderr, [*SECRETS, "tok-9b1c-short"]) == []
