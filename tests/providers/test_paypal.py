"""PayPal specifics: the certificate URL allowlist, the certificate checks, caching and the default fetcher."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bridge.errors import SignatureError
from bridge.providers.base import SourceSettings
from bridge.providers.paypal import CertFetcher, PayPalProvider, check_cert_url, fetch_cert_https
from bridge.sinks.server import serve
from tests.providers.cases import NOW, fixture
from tests.providers.signing import (
    PAYPAL_TEST_CERT_URL,
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


async def test_transmission_time_window_only_when_configured() -> None:
    old = NOW - 3 * 86400
    await make().verify(BODY, signed(now=old), NOW)
    with pytest.raises(SignatureError, match="too old"):
        await make(tolerance=300).verify(BODY, signed(now=old), NOW)


async def test_mock_events_use_the_literal_webhook_id() -> None:
    settings = SourceSettings("pp", "paypal", (), None, options={"webhook_id": "WEBHOOK_ID"})
    provider = PayPalProvider(settings, fetch_cert=paypal_test_fetcher)
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
