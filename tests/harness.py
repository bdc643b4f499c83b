"""Start the real bridge app for a test: a config file in tmp_path, a real SQLite outbox file, the shipped
mappings, the lifespan running (dispatcher included), and an httpx client speaking ASGI to it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml
from starlette.applications import Starlette

from bridge.app import create_app
from bridge.clock import Clock
from bridge.config import Settings, load_settings
from bridge.demo import stripe_signature
from bridge.providers.base import Provider
from bridge.state import BridgeState

ROOT = Path(__file__).resolve().parent.parent
MAPPINGS = ROOT / "mappings"
FIXTURES = ROOT / "fixtures"
STRIPE_SECRET = "whsec_test_bridge_secret_0123456789"
OPS_TOKEN = "ops-token-for-tests-0123456789"


def stripe_headers(body: bytes, secret: str = STRIPE_SECRET, timestamp: float | None = None) -> dict[str, str]:
    """Sign a body the way Stripe does: t=<unix>,v1=hex(HMAC-SHA256(secret, f"{t}.{body}"))."""
    t = int(timestamp if timestamp is not None else time.time())
    return {"Stripe-Signature": stripe_signature(body, secret, t), "Content-Type": "application/json"}


def stripe_case(name: str) -> bytes:
    """A Stripe golden-case body (fixtures/stripe/<name>.json) as raw bytes."""
    return (FIXTURES / "stripe" / f"{name}.json").read_bytes()


def write_config(tmp_path: Path, *, destinations: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> Path:
    config: dict[str, Any] = {
        "outbox": {"url": f"sqlite:///{tmp_path / 'outbox.db'}"},
        "ops": {"token": OPS_TOKEN},
        "mappings": str(MAPPINGS),
        "sources": {"stripe": {"provider": "stripe", "secrets": [STRIPE_SECRET]}},
        "destinations": dict(destinations),
        "dispatcher": {"lease_seconds": 30, "retry": {"jitter": 0}},
    }
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class Bridge:
    app: Starlette
    client: httpx.AsyncClient
    settings: Settings

    @property
    def state(self) -> BridgeState:
        state: BridgeState = self.app.state.bridge
        return state

    async def post_stripe(self, body: bytes, **kwargs: Any) -> httpx.Response:
        return await self.client.post("/webhooks/stripe", content=body, headers=stripe_headers(body, **kwargs))

    async def ops(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {OPS_TOKEN}"}
        return await self.client.request(method, path, headers=headers, **kwargs)

    async def deliveries(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.ops("GET", "/ops/deliveries", params={"limit": 500, **params})
        assert response.status_code == 200, response.text
        rows: list[dict[str, Any]] = response.json()["deliveries"]
        return rows


@asynccontextmanager
async def running_bridge(
    tmp_path: Path,
    *,
    destinations: Mapping[str, Any],
    clock: Clock | None = None,
    extra: Mapping[str, Any] | None = None,
    providers: Mapping[str, Provider] | None = None,
    dispatch: bool = True,
    role: str = "all",
) -> AsyncIterator[Bridge]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_config(tmp_path, destinations=destinations, extra=extra)
    settings = load_settings(path, {})
    app = create_app(settings, clock=clock, providers=providers, dispatch=dispatch, role=role)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge.test") as client:
            yield Bridge(app, client, settings)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)
