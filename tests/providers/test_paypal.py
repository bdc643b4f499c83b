"""PayPal specifics: the certificate URL allowlist, the certificate checks, caching and the default fetcher."""

from __future__ import annotations

import asyncio
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bridge.clock import ManualClock
from bridge.config import load_settings
from bridge.errors import ConfigError, SignatureError
from bridge.providers.base import OptionError, SourceSettings
from bridge.providers.paypal import CertFetcher, PayPalProvider, check_cert_url, fetch_cert_https
from bridge.sinks.server import serve
from tests.harness import running_bridge, write_config
from tests.providers.cases import NOW, fixture
from tests.providers.signing import (
    PAYPAL_TEST_CERT_URL,
    crc32_forgery,
    lower,
    paypal_test_cert_pem,
    paypal_test_fetcher,
    sign,
)

BODY = fixture("paypal/PAYMENT.SALE.COMPLETED.json")
WEBHOOK_ID = "4JH86294D6297924G"


def make(fetch_cert: CertFetcher = paypal_test_fetcher, tolerance: float | None = None) -> PayPalProvider:
    settings = SourceSettings("pp", "paypal", (), tolerance, options={"webhook_id": WEBHOOK_ID})
    return PayPalProvider(settings, fetch_cert=fetch_cert)


def signed(now: float = NOW, overrides: dict[str, str] | None = None) -> dict[str, str]:
    headers = lower(sign("paypal", BODY, secret="", now=now, options={"webhook_id": WEBHOOK_ID}))
    return {**headers, **(overrides or {})}


@pytest.mark.parametrize(
    "url",
    [
        "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77",
        "https://api-m.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77",
        "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77",
        "https://api-m.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77",
        "https://API.PAYPAL.COM/v1/notifications/certs/CERT-1",
    ],
)
def test_paypal_cert_hosts_are_accepted(url: str) -> None:
    check_cert_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com.evil.example/v1/notifications/certs/CERT-1",
        "https://evil.example/v1/notifications/certs/CERT-1",
        "https://www.paypal.com/v1/notifications/certs/CERT-1",
        "https://paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
        "https://user@api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com/v1/notifications/certs/CERT-1?x=1",
        "https://api.paypal.com/v1/notifications/certs/CERT-1#frag",
        "https://api.paypal.com/v1/oauth2/token",
        "https://api.paypal.com/v1/notifications/certs/../../oauth2/token",
        "https://127.0.0.1/v1/notifications/certs/CERT-1",
        "file:///etc/passwd",
        "https://[::1/v1/notifications/certs/CERT-1",
        "",
    ],
)
async def test_other_cert_urls_are_refused_before_any_fetch(url: str) -> None:
    fetched: list[str] = []

    async def fetcher(target: str) -> bytes:
        fetched.append(target)
        return paypal_test_cert_pem()

    with pytest.raises(SignatureError):
        await make(fetcher).verify(BODY, signed(overrides={"paypal-cert-url": url}), NOW)
    assert fetched == []


async def test_certificate_is_fetched_once_and_cached() -> None:
    fetched: list[str] = []

    async def fetcher(url: str) -> bytes:
        fetched.append(url)
        return paypal_test_cert_pem()

    provider = make(fetcher)
    for _ in range(3):
        await provider.verify(BODY, signed(), NOW)
    assert fetched == [PAYPAL_TEST_CERT_URL]


async def test_certificate_must_be_paypals_signing_certificate() -> None:
    async def impostor(url: str) -> bytes:
        return paypal_test_cert_pem("api.paypal.com.evil.example")

    with pytest.raises(SignatureError, match="message verification"):
        await make(impostor).verify(BODY, signed(), NOW)

    async def not_pem(url: str) -> bytes:
        return b"<html>hello</html>"

    with pytest.raises(SignatureError, match="PEM"):
        await make(not_pem).verify(BODY, signed(), NOW)


async def test_certificate_validity_uses_the_injected_clock() -> None:
    after_expiry = datetime(2100, 1, 2, tzinfo=UTC).timestamp()
    with pytest.raises(SignatureError, match="not valid"):
        await make().verify(BODY, signed(now=after_expiry), after_expiry)


async def test_fetch_failures_are_signature_errors() -> None:
    async def broken(url: str) -> bytes:
        raise OSError("network down")

    with pytest.raises(SignatureError, match="could not fetch"):
        await make(broken).verify(BODY, signed(), NOW)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("paypal-auth-algo", "SHA1withRSA"),
        ("paypal-transmission-time", "yesterday"),
        ("paypal-transmission-id", "another-id"),
        ("paypal-transmission-time", "2023-11-14T22:13:21Z"),
    ],
)
async def test_signed_headers_cannot_be_changed(header: str, value: str) -> None:
    with pytest.raises(SignatureError):
        await make().verify(BODY, signed(overrides={header: value}), NOW)


async def test_transmission_time_window_is_on_by_default() -> None:
    old = NOW - 3 * 86400
    with pytest.raises(SignatureError, match="too old"):
        await make().verify(BODY, signed(now=old), NOW)
    with pytest.raises(SignatureError, match="future"):
        await make().verify(BODY, signed(now=NOW + 301), NOW)
    await make().verify(BODY, signed(now=NOW - 299), NOW)
    await make(tolerance=0).verify(BODY, signed(now=old), NOW)  # tolerance_seconds: 0 switches it off


def test_simulator_webhook_id_needs_allow_simulator(caplog: pytest.LogCaptureFixture) -> None:
    settings = SourceSettings("pp-sim", "paypal", (), None, options={"webhook_id": "WEBHOOK_ID"})
    with pytest.raises(OptionError, match="allow_simulator") as raised:
        PayPalProvider(settings, fetch_cert=paypal_test_fetcher)
    assert raised.value.key == "webhook_id"
    with caplog.at_level("WARNING", logger="bridge.providers.paypal"):
        allowed = SourceSettings(
            "pp-sim", "paypal", (), None, options={"webhook_id": "WEBHOOK_ID", "allow_simulator": True}
        )
        PayPalProvider(allowed, fetch_cert=paypal_test_fetcher)
    assert any("simulator" in r.getMessage() and getattr(r, "source", "") == "pp-sim" for r in caplog.records)
    with pytest.raises(OptionError) as raised:
        PayPalProvider(SourceSettings("p", "paypal", (), None, options={"webhook_id": "W", "allow_simulator": "yes"}))
    assert raised.value.key == "allow_simulator"


async def test_mock_events_use_the_literal_webhook_id() -> None:
    options = {"webhook_id": "WEBHOOK_ID", "allow_simulator": True}
    provider = PayPalProvider(SourceSettings("pp", "paypal", (), None, options=options), fetch_cert=paypal_test_fetcher)
    headers = lower(sign("paypal", BODY, secret="", now=NOW, options={"webhook_id": "WEBHOOK_ID"}))
    await provider.verify(BODY, headers, NOW)


# -- the default fetcher, against a local server (it is only ever called with allowlisted URLs) ------


def _cert_app() -> Starlette:
    async def cert(request: Request) -> Response:
        return Response(paypal_test_cert_pem(), media_type="application/x-pem-file")

    async def redirect(request: Request) -> Response:
        return RedirectResponse("/cert", status_code=302)

    async def huge(request: Request) -> Response:
        return Response(b"x" * (65 * 1024))

    async def missing(request: Request) -> Response:
        return Response(b"no", status_code=404)

    return Starlette(
        routes=[
            Route("/cert", cert),
            Route("/redirect", redirect),
            Route("/huge", huge),
            Route("/missing", missing),
        ]
    )


async def test_default_fetcher_reads_bounded_and_refuses_redirects() -> None:
    async with serve(_cert_app()) as base:
        assert await fetch_cert_https(f"{base}/cert") == paypal_test_cert_pem()
        with pytest.raises(SignatureError, match="HTTP 302"):
            await fetch_cert_https(f"{base}/redirect")
        with pytest.raises(SignatureError, match="64 KiB"):
            await fetch_cert_https(f"{base}/huge")
        with pytest.raises(SignatureError, match="HTTP 404"):
            await fetch_cert_https(f"{base}/missing")
    with pytest.raises(SignatureError, match="could not fetch"):
        await fetch_cert_https(f"{base}/cert")  # the server is gone


def test_default_fetcher_is_used_without_injection() -> None:
    settings = SourceSettings("pp", "paypal", (), None, options={"webhook_id": WEBHOOK_ID})
    assert PayPalProvider(settings)._fetch_cert is fetch_cert_https


def test_default_fetcher_can_be_replaced_for_app_level_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bridge.providers.paypal.fetch_cert_https", paypal_test_fetcher)
    settings = SourceSettings("pp", "paypal", (), None, options={"webhook_id": WEBHOOK_ID})
    assert PayPalProvider(settings)._fetch_cert is paypal_test_fetcher


# -- through POST /webhooks/{source}: replay, forgery and fetch limits ----------------------------------

DESTINATIONS = {"capture": {"type": "http", "url": "http://127.0.0.1:9/unused", "events": ["*"]}}


class RecordingFetcher:
    """A `fetch_cert` that serves the test certificate for PAYPAL_TEST_CERT_URL, fails for any other URL, and
    records every call; `gate` (when set) holds every fetch until it is set."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.calls: list[str] = []
        self.gate = gate

    async def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        if self.gate is not None:
            await self.gate.wait()
        if url != PAYPAL_TEST_CERT_URL:
            raise OSError("404 from the certificate host")
        return paypal_test_cert_pem()


def _paypal_bridge(tmp_path: Path, fetcher: CertFetcher, clock: ManualClock) -> Any:
    settings = SourceSettings("pp", "paypal", (), None, options={"webhook_id": WEBHOOK_ID})
    return running_bridge(
        tmp_path,
        destinations=DESTINATIONS,
        dispatch=False,
        clock=clock,
        extra={"sources": {"pp": {"provider": "paypal", "webhook_id": WEBHOOK_ID}}},
        providers={"pp": PayPalProvider(settings, fetch_cert=fetcher)},
    )


def _forged_from(genuine: bytes) -> bytes:
    """Another PAYMENT.SALE.COMPLETED (new event id, new payment, 99999.00) with the genuine body's CRC32."""
    template = (
        genuine.replace(b"WH-0G2756385H040842W-5Y612302CV158622M", b"WH-0G2756385H040842W-FORGED00000000")
        .replace(b"PAY-86C81811X5228590KKVNARQQ", b"PAY-FORGED0000000000000000")
        .replace(b'"total":"20.00"', b'"total":"99999.00"')
        .replace(b'USD","resource', b'USD @@@@@@@@","resource')
    )
    return crc32_forgery(template, zlib.crc32(genuine) & 0xFFFFFFFF)


async def _stored(bridge: Any) -> list[dict[str, Any]]:
    response = await bridge.ops("GET", "/ops/webhooks", params={"limit": 100})
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["webhooks"]
    return rows


async def test_forged_body_under_a_captured_transmission_is_refused(tmp_path: Path) -> None:
    """One captured delivery, a second body with the same CRC32 under the same transmission (same signature):
    refused with 401 while the bridge remembers the transmission, and never stored after a restart either."""
    clock = ManualClock(NOW)
    headers = signed()
    forged = _forged_from(BODY)
    assert zlib.crc32(forged) == zlib.crc32(BODY) and b"99999.00" in forged
    async with _paypal_bridge(tmp_path, RecordingFetcher(), clock) as bridge:
        genuine = await bridge.client.post("/webhooks/pp", content=BODY, headers=headers)
        assert genuine.status_code == 200, genuine.text
        clock.advance(30)
        again = await bridge.client.post("/webhooks/pp", content=BODY, headers=headers)
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        attack = await bridge.client.post("/webhooks/pp", content=forged, headers=headers)
        assert attack.status_code == 401, attack.text
        assert len(await _stored(bridge)) == 1
        assert {d["event_id"] for d in await bridge.deliveries()} == {"PAY-86C81811X5228590KKVNARQQ"}
    clock.advance(30)  # a restart inside the window: the in-memory record of the transmission is gone
    async with _paypal_bridge(tmp_path, RecordingFetcher(), clock) as bridge:
        attack = await bridge.client.post("/webhooks/pp", content=forged, headers=headers)
        assert attack.status_code in (200, 401), attack.text
        if attack.status_code == 200:
            assert attack.json()["status"] == "duplicate"
        rows = await _stored(bridge)
        assert len(rows) == 1
        assert {d["event_id"] for d in await bridge.deliveries()} == {"PAY-86C81811X5228590KKVNARQQ"}


async def test_a_captured_delivery_is_refused_after_the_default_window(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    fetcher = RecordingFetcher()
    async with _paypal_bridge(tmp_path, fetcher, clock) as bridge:
        stale = await bridge.client.post("/webhooks/pp", content=BODY, headers=signed(now=NOW - 3 * 86400))
        assert stale.status_code == 401
        assert fetcher.calls == []  # the window is checked before the certificate is fetched
        assert await _stored(bridge) == []


@pytest.mark.parametrize(
    "url",
    [
        "https://api.paypal.com/v1/notifications/certs/%2e%2e/%2e%2e/oauth2/token",
        "https://api.paypal.com/v1/notifications/certs/%2E%2E%2f%2E%2E%2foauth2%2ftoken",
        "https://api.paypal.com/v1/notifications/certs/CERT%252e%252e",
        "https://api.paypal.com/v1/notifications/certs/CERT-1/../../oauth2/token",
        "https://api.paypal.com/v1/notifications/certs/",
        "https://api.paypal.com/v1/notifications/certsX/CERT-1",
        "https://api-x.paypal.com/v1/notifications/certs/CERT-1",
    ],
)
async def test_encoded_cert_url_tricks_are_refused_without_a_fetch(tmp_path: Path, url: str) -> None:
    fetcher = RecordingFetcher()
    async with _paypal_bridge(tmp_path, fetcher, ManualClock(NOW)) as bridge:
        headers = signed(overrides={"paypal-cert-url": url})
        response = await bridge.client.post("/webhooks/pp", content=BODY, headers=headers)
        assert response.status_code == 401
        assert fetcher.calls == []
        assert await _stored(bridge) == []


async def test_certificate_fetch_failures_are_cached(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    fetcher = RecordingFetcher()
    unknown = PAYPAL_TEST_CERT_URL.replace("CERT-bridge-local-test", "CERT-unknown")
    async with _paypal_bridge(tmp_path, fetcher, clock) as bridge:
        for _ in range(3):
            response = await bridge.client.post(
                "/webhooks/pp", content=BODY, headers=signed(now=clock.now(), overrides={"paypal-cert-url": unknown})
            )
            assert response.status_code == 401
        assert fetcher.calls == [unknown]
        clock.advance(61)
        response = await bridge.client.post(
            "/webhooks/pp", content=BODY, headers=signed(now=clock.now(), overrides={"paypal-cert-url": unknown})
        )
        assert response.status_code == 401
        assert fetcher.calls == [unknown, unknown]
        assert await _stored(bridge) == []


async def test_at_most_a_few_certificate_fetches_run_at_once(tmp_path: Path) -> None:
    gate = asyncio.Event()
    fetcher = RecordingFetcher(gate)
    urls = [PAYPAL_TEST_CERT_URL.replace("CERT-bridge-local-test", f"CERT-{n}") for n in range(12)]
    async with _paypal_bridge(tmp_path, fetcher, ManualClock(NOW)) as bridge:

        async def post(url: str) -> int:
            headers = signed(overrides={"paypal-cert-url": url})
            return (await bridge.client.post("/webhooks/pp", content=BODY, headers=headers)).status_code

        tasks = [asyncio.ensure_future(post(url)) for url in urls]
        for _ in range(10_000):  # yield until every request is either refused or waiting on a fetch
            if sum(task.done() for task in tasks) + len(fetcher.calls) == len(urls):
                break
            await asyncio.sleep(0)
        in_flight = len(fetcher.calls)
        assert 1 <= in_flight <= 4
        assert all(task.result() == 401 for task in tasks if task.done())
        gate.set()
        assert await asyncio.gather(*tasks) == [401] * len(urls)
        assert len(fetcher.calls) == in_flight
        assert await _stored(bridge) == []


def test_simulator_webhook_id_is_refused_by_config(tmp_path: Path) -> None:
    sources = {"pp": {"provider": "paypal", "webhook_id": "WEBHOOK_ID"}}
    path = write_config(tmp_path, destinations={}, extra={"sources": sources})
    with pytest.raises(ConfigError, match="allow_simulator") as raised:
        load_settings(path, {})
    assert raised.value.line is not None
    sources["pp"]["allow_simulator"] = True  # type: ignore[assignment]
    load_settings(write_config(tmp_path, destinations={}, extra={"sources": sources}), {})
