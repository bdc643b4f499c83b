"""Demo sources of the app stores: Apple App Store, Google Play and RevenueCat.

Apple and Google sign without a shared secret. Apple's notifications are signed again under a certificate
chain generated for this run (with Apple's structure and extension OIDs), whose root the demo's source
trusts; Google's push tokens are signed with an RSA key generated for this run, served as "Google's" key set
through the provider's injected fetch. Both are handed to the provider's constructor (`DemoSource.build`):
neither can be configured in bridge.yaml.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from bridge.config import Settings
from bridge.demo_sources.base import JSON, DemoSource, Secret, Signer, samples_of, segment
from bridge.demo_sources.certs import certificate
from bridge.providers.apple_app_store import INTERMEDIATE_OID, LEAF_OID, AppleAppStoreProvider
from bridge.providers.base import Provider
from bridge.providers.google_play import GOOGLE_CERTS_URL, GooglePlayProvider

# -- Apple: a certificate chain made for this run ----------------------------------------------------------------


class DemoAppleChain:
    """Root -> intermediate -> leaf with Apple's OIDs, generated for one demo run; `sign_body` re-signs a
    notification body (and its nested JWSs) with the leaf key."""

    def __init__(self, label: str) -> None:
        root_key = ec.generate_private_key(ec.SECP384R1())
        mid_key = ec.generate_private_key(ec.SECP256R1())
        self.key = ec.generate_private_key(ec.SECP256R1())
        root = certificate(f"{label} Root", f"{label} Root", root_key.public_key(), root_key, True, None)
        mid = certificate(f"{label} CA", f"{label} Root", mid_key.public_key(), root_key, True, INTERMEDIATE_OID)
        leaf = certificate(f"{label} Leaf", f"{label} CA", self.key.public_key(), mid_key, False, LEAF_OID)
        self.root_der = root.public_bytes(serialization.Encoding.DER)
        self.x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in (leaf, mid, root)]

    def jws(self, payload: dict[str, Any]) -> str:
        signing_input = f"{segment(json.dumps({'alg': 'ES256', 'x5c': self.x5c}).encode())}."
        signing_input += segment(json.dumps(payload).encode())
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{segment(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def sign_body(self, case: str, body: bytes, now: float) -> tuple[bytes, dict[str, str]]:
        notification = _claims(json.loads(body)["signedPayload"])
        data = notification.get("data")
        if isinstance(data, dict):
            for key in ("signedTransactionInfo", "signedRenewalInfo"):
                if isinstance(data.get(key), str):
                    data[key] = self.jws(_claims(data[key]))
        return json.dumps({"signedPayload": self.jws(notification)}).encode(), JSON


def _claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return claims


# -- Google: a push-token key made for this run -------------------------------------------------------------------


class DemoGoogleKey:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(8)

    def jwks(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        n = segment(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"))
        e = segment(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"))
        key = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid, "n": n, "e": e}
        return json.dumps({"keys": [key]}).encode()

    async def fetch(self, url: str) -> bytes:
        if url != GOOGLE_CERTS_URL:
            raise ValueError(f"unexpected key set URL {url}")
        return self.jwks()

    def token(self, now: float, audience: str, email: str) -> str:
        head = {"alg": "RS256", "kid": self.kid, "typ": "JWT"}
        claims = {
            "aud": audience,
            "email": email,
            "email_verified": True,
            "iat": int(now),
            "exp": int(now) + 3600,
            "iss": "https://accounts.google.com",
            "sub": "demo",
        }
        signing_input = f"{segment(json.dumps(head).encode())}.{segment(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{segment(signature)}"


# -- the sources ------------------------------------------------------------------------------------------------------


def apple_app_store() -> DemoSource:
    provider = "apple_app_store"
    chain, forger = DemoAppleChain("Bridge Demo"), DemoAppleChain("Forger")
    source = {"provider": provider, "bundle_id": "com.example", "environment": "Sandbox"}

    def build(settings: Settings) -> Provider:
        return AppleAppStoreProvider(settings.sources[provider], trusted_roots=[chain.root_der])

    note = "Apple's samples signed again under a chain made for this run, whose root the demo source trusts"
    return DemoSource(provider, source, {}, chain.sign_body, forger.sign_body, samples_of(provider), note, build)


def google_play() -> DemoSource:
    provider = "google_play"
    key, forger_key = DemoGoogleKey(), DemoGoogleKey()
    audience, email = "https://bridge.demo/webhooks/google_play", "rtdn-push@bridge-demo.iam.gserviceaccount.com"
    source = {"provider": provider, "audience": audience, "service_account_email": email}

    def build(settings: Settings) -> Provider:
        return GooglePlayProvider(settings.sources[provider], fetch_keys=key.fetch)

    def push(signer: DemoGoogleKey) -> Signer:
        return lambda case, body, now: (body, {**JSON, "Authorization": f"Bearer {signer.token(now, audience, email)}"})

    note = "push tokens signed with a key made for this run, served as Google's key set"
    return DemoSource(provider, source, {}, push(key), push(forger_key), samples_of(provider), note, build)


def _own_event_id(case: str, body: bytes) -> bytes:
    document = json.loads(body)
    document["event"]["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"revenuecat-demo/{case}"))
    return json.dumps(document).encode()


def revenuecat() -> DemoSource:
    secret = Secret.new("revenuecat")
    value = f"Bearer {secret.value}"
    samples = [(case, _own_event_id(case, body)) for case, body in samples_of("revenuecat")]
    note = "RevenueCat's samples share a placeholder event id: each is given its own so none is a duplicate"
    return DemoSource(
        "revenuecat",
        secret.source(),
        {secret.variable: value},
        lambda case, body, now: (body, {**JSON, "Authorization": value}),
        lambda case, body, now: (body, {**JSON, "Authorization": "Bearer forged"}),
        samples,
        note,
    )


SOURCES: dict[str, Callable[[], DemoSource]] = {
    "apple_app_store": apple_app_store,
    "google_play": google_play,
    "revenuecat": revenuecat,
}
