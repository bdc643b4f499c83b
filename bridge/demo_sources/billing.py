"""Demo sources of the subscription-billing providers: Braintree, FastSpring, GoCardless, Lemon Squeezy,
Maxio, Paddle, Recharge, Recurly and Standard Webhooks senders. Each signs as in its provider module's
docstring (and /work/shared/design/PROVIDERS.md); the secrets are generated for the run."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode

from bridge.demo_sources.base import (
    FORM,
    JSON,
    DemoSource,
    Secret,
    Signer,
    digest,
    headers_of,
    hmac_source,
    own_ids,
    samples_of,
)


def _braintree(body: bytes, private_key: str, public_key: str) -> bytes:
    fields = dict(parse_qsl(body.decode("ascii"), keep_blank_values=True))
    signature = hmac.new(hashlib.sha1(private_key.encode()).digest(), fields["bt_payload"].encode(), hashlib.sha1)
    return urlencode(
        {"bt_signature": f"{public_key}|{signature.hexdigest()}", "bt_payload": fields["bt_payload"]}
    ).encode()


def braintree() -> DemoSource:
    secret, public = Secret.new("braintree"), "demo_public_key"
    return DemoSource(
        "braintree",
        secret.source(public_key=public, currency="USD"),
        secret.env,
        lambda case, body, now: (_braintree(body, secret.value, public), FORM),
        lambda case, body, now: (_braintree(body, secret.forged, public), FORM),
        samples_of("braintree"),
    )


def fastspring() -> DemoSource:
    return hmac_source("fastspring", "X-FS-Signature", "base64")


def maxio() -> DemoSource:
    header = "X-Chargify-Webhook-Signature-Hmac-Sha-256"
    return hmac_source("maxio", header, "hex", content=FORM, options={"currency": "USD"})


RECHARGE_SAMPLE = b'{"subscription":{"id":1,"status":"ACTIVE"}}'


def recharge() -> DemoSource:
    secret = Secret.new("recharge")

    def signer(key: str) -> Signer:  # SHA-256 of secret + body, not an HMAC
        def sign(case: str, body: bytes, now: float) -> tuple[bytes, dict[str, str]]:
            signature = hashlib.sha256(key.encode() + body).hexdigest()
            return body, {**JSON, "X-Recharge-Hmac-Sha256": signature, "X-Recharge-Topic": "subscription/created"}

        return sign

    note = "Recharge publishes no sample payload: this is the signature vector's minimal body (no time: not mapped)"
    samples = [("subscription/created", RECHARGE_SAMPLE)]
    return DemoSource(
        "recharge", secret.source(), secret.env, signer(secret.value), signer(secret.forged), samples, note
    )


def gocardless() -> DemoSource:
    return hmac_source("gocardless", "Webhook-Signature", "hex")


def lemonsqueezy() -> DemoSource:
    def event_name(case: str, body: bytes) -> dict[str, str]:  # sent beside the body, unsigned (the body's is read)
        return {"X-Event-Name": str(json.loads(body).get("meta", {}).get("event_name", ""))}

    return hmac_source("lemonsqueezy", "X-Signature", "hex", extra=event_name)


def paddle() -> DemoSource:
    secret = Secret.new("paddle", "pdl_ntfset_" + secrets.token_hex(16))

    def signer(key: str) -> Signer:
        def sign(case: str, body: bytes, now: float) -> tuple[bytes, dict[str, str]]:
            ts = str(int(now))
            return body, {**JSON, "Paddle-Signature": f"ts={ts};h1={digest(key, f'{ts}:'.encode() + body).hex()}"}

        return sign

    return DemoSource(
        "paddle", secret.source(), secret.env, signer(secret.value), signer(secret.forged), samples_of("paddle")
    )


def recurly() -> DemoSource:
    secret = Secret.new("recurly")

    def signer(key: str) -> Signer:
        def sign(case: str, body: bytes, now: float) -> tuple[bytes, dict[str, str]]:
            ms = str(int(now * 1000))
            return body, {**JSON, "recurly-signature": f"{ms},{digest(key, f'{ms}.'.encode() + body).hex()}"}

        return sign

    return DemoSource(
        "recurly", secret.source(), secret.env, signer(secret.value), signer(secret.forged), samples_of("recurly")
    )


def standard_webhooks() -> DemoSource:
    provider = "standard_webhooks"
    secret = Secret.new(
        provider,
        "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
    )
    samples = samples_of(provider)
    fallback = {case: "msg_" + hashlib.sha256(case.encode()).hexdigest()[:24] for case, _ in samples}  # no "."
    ids, changed = own_ids([headers_of(provider, case).get("webhook-id", fallback[case]) for case, _ in samples])
    message_ids = {case: msg_id for (case, _), msg_id in zip(samples, ids, strict=True)}

    def signer(key: str) -> Signer:
        raw = base64.b64decode(key.removeprefix("whsec_"))

        def sign(case: str, body: bytes, now: float) -> tuple[bytes, dict[str, str]]:
            msg_id, ts = message_ids[case], str(int(now))
            signature = base64.b64encode(digest(raw, f"{msg_id}.{ts}.".encode() + body)).decode()
            return body, {**JSON, "webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": f"v1,{signature}"}

        return sign

    note = "signed now (the samples' webhook-timestamp is years old)"
    if changed:
        note += "; two samples share a webhook-id: the later one gets its own so it is not a duplicate"
    return DemoSource(provider, secret.source(), secret.env, signer(secret.value), signer(secret.forged), samples, note)


SOURCES: dict[str, Callable[[], DemoSource]] = {
    "braintree": braintree,
    "fastspring": fastspring,
    "gocardless": gocardless,
    "lemonsqueezy": lemonsqueezy,
    "maxio": maxio,
    "paddle": paddle,
    "recharge": recharge,
    "recurly": recurly,
    "standard_webhooks": standard_webhooks,
}
