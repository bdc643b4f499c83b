"""Senders of the app-store and billing providers, for tests (`signing.signed_request` dispatches here).

`signed(provider_type, body, secret=…, now=…, options=…, event_type=…, event_id=…)` gives (body, headers) as
the provider's sender would POST them, or None for a provider type that is not one of these.

- Braintree: the form's `bt_payload` is kept and `bt_signature` recomputed with `secret` (the private key) for
  the `public_key` option.
- Apple: the notification in the body is signed again with the test PKI named by `secret` ("test": Apple's
  published test chain, "other": a foreign chain), dates unchanged (see `apple_signing.py`).
- Google Play: `Authorization: Bearer <token>` with a token signed by the RSA key named by `secret`;
  `google_fetcher(secrets)` is the provider's injected key-set fetch serving exactly those keys. Options
  `token_claims` (a dict) override claims, `token_lifetime` the lifetime (default 3600 s).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, urlencode

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bridge.providers.google_play import GOOGLE_CERTS_URL
from bridge.providers.mercadopago import data_id, manifest
from tests.providers import apple_signing

FORM = "application/x-www-form-urlencoded"


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _uint(value: int) -> str:
    return _segment(value.to_bytes((value.bit_length() + 7) // 8, "big"))


# -- Google --------------------------------------------------------------------------------------------


@cache
def google_key(name: str) -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key per name, generated once per test session (never one of Google's)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def google_kid(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def google_jwks(names: Sequence[str]) -> bytes:
    keys = []
    for name in names:
        numbers = google_key(name).public_key().public_numbers()
        keys.append(
            {
                "kty": "RSA",
                "alg": "RS256",
                "use": "sig",
                "kid": google_kid(name),
                "n": _uint(numbers.n),
                "e": _uint(numbers.e),
            }
        )
    return json.dumps({"keys": keys}).encode()


def google_fetcher(names: Sequence[str], calls: list[str] | None = None) -> Callable[[str], Awaitable[bytes]]:
    """The provider's `fetch_keys`: serves the key set of `names` for Google's URL only (and records calls)."""

    async def fetch(url: str) -> bytes:
        if calls is not None:
            calls.append(url)
        if url != GOOGLE_CERTS_URL:
            raise AssertionError(f"unexpected key set fetch: {url}")
        return google_jwks(names)

    return fetch


def google_token(
    name: str,
    now: float,
    *,
    audience: str,
    email: str,
    claims: Mapping[str, Any] | None = None,
    lifetime: int = 3600,
    header: Mapping[str, Any] | None = None,
) -> str:
    """A Pub/Sub push OIDC token as Google would mint it, signed with the key `name`."""
    head = {"alg": "RS256", "kid": google_kid(name), "typ": "JWT", **(header or {})}
    payload = {
        "aud": audience,
        "azp": "113774264463038321964",
        "email": email,
        "email_verified": True,
        "exp": int(now) + lifetime,
        "iat": int(now),
        "iss": "https://accounts.google.com",
        "sub": "113774264463038321964",
        **(claims or {}),
    }
    signing_input = f"{_segment(json.dumps(head).encode())}.{_segment(json.dumps(payload).encode())}"
    signature = google_key(name).sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_segment(signature)}"


# -- the senders ---------------------------------------------------------------------------------------


def _hmac(key: bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(key, message, getattr(hashlib, algorithm)).digest()


def braintree_body(body: bytes, private_key: str, public_key: str) -> bytes:
    """The Braintree form `body` with bt_signature recomputed for `public_key` / `private_key`."""
    fields = dict(parse_qsl(body.decode("ascii"), keep_blank_values=True))
    payload = fields["bt_payload"].encode()
    digest = hmac.new(hashlib.sha1(private_key.encode()).digest(), payload, hashlib.sha1).hexdigest()
    return urlencode({"bt_signature": f"{public_key}|{digest}", "bt_payload": fields["bt_payload"]}).encode()


def signed(
    provider_type: str,
    body: bytes,
    *,
    secret: str,
    now: float,
    options: Mapping[str, Any],
    event_type: str | None,
    event_id: str | None,
) -> tuple[bytes, dict[str, str]] | None:
    key = secret.encode()
    json_type = {"Content-Type": "application/json"}
    if provider_type == "paystack":
        return body, {**json_type, "x-paystack-signature": _hmac(key, body, "sha512").hex()}
    if provider_type == "fastspring":
        return body, {**json_type, "X-FS-Signature": base64.b64encode(_hmac(key, body)).decode()}
    if provider_type == "maxio":
        return body, {"Content-Type": FORM, "X-Chargify-Webhook-Signature-Hmac-Sha-256": _hmac(key, body).hex()}
    if provider_type == "recharge":
        return body, {
            **json_type,
            "X-Recharge-Hmac-Sha256": hashlib.sha256(key + body).hexdigest(),
            "X-Recharge-Topic": event_type or "subscription/created",
        }
    if provider_type == "mercadopago":
        request_id = event_id or str(uuid.UUID(hashlib.sha256(body + str(now).encode()).hexdigest()[:32]))
        ts = str(int(now))
        v1 = hmac.new(key, manifest(data_id(body), request_id, ts), hashlib.sha256).hexdigest()
        return body, {**json_type, "x-signature": f"ts={ts},v1={v1}", "x-request-id": request_id}
    if provider_type == "revenuecat":
        return body, {**json_type, "Authorization": secret}
    if provider_type == "braintree":
        return braintree_body(body, secret, str(options["public_key"])), {"Content-Type": FORM}
    if provider_type == "apple_app_store":
        return apple_signing.resign(body, secret, None), json_type
    if provider_type == "google_play":
        token = google_token(
            secret,
            now,
            audience=str(options["audience"]),
            email=str(options["service_account_email"]),
            claims=options.get("token_claims"),
            lifetime=int(options.get("token_lifetime", 3600)),
        )
        return body, {**json_type, "Authorization": f"Bearer {token}"}
    return None
