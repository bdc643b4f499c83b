"""`bridge demo --source <provider>`: the sample webhooks of the app-store and billing providers, signed the way
each provider signs them, for the demo in `bridge/demo.py`.

A `DemoSource` is what the demo needs for one provider: its `sources:` entry (secrets as ${ENV} references and
freshly generated values for them), the sample bodies shipped with the package (the golden-case bodies of
`fixtures/<provider>/`), how to sign a body as the provider's sender would, how a forger would (wrong key), and
for the two providers without a shared secret the provider object to use: Apple's notifications are signed
again under a certificate chain generated for this run (with Apple's structure and extension OIDs), whose root
the demo's source trusts; Google's push tokens are signed with an RSA key generated for this run, served as
"Google's" key set through the provider's injected fetch. Neither can be configured in bridge.yaml.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from bridge import shipped
from bridge.config import Settings
from bridge.mapping.golden import case_body, case_names
from bridge.providers.apple_app_store import INTERMEDIATE_OID, LEAF_OID, AppleAppStoreProvider
from bridge.providers.base import Provider
from bridge.providers.google_play import GOOGLE_CERTS_URL, GooglePlayProvider
from bridge.providers.mercadopago import data_id, manifest

Signer = Callable[[bytes, float], tuple[bytes, dict[str, str]]]
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class DemoSource:
    provider: str
    source: dict[str, Any]
    env: dict[str, str]
    sign: Signer
    forge: Signer
    samples: list[tuple[str, bytes]]
    note: str = ""
    build: Callable[[Settings], Provider] | None = field(default=None)

    def providers(self, settings: Settings) -> dict[str, Provider] | None:
        return {self.provider: self.build(settings)} if self.build is not None else None


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hmac(key: str, body: bytes, algorithm: str = "sha256") -> bytes:
    return hmac.new(key.encode(), body, getattr(hashlib, algorithm)).digest()


def _samples(provider: str) -> list[tuple[str, bytes]]:
    directory = shipped.samples_dir() / provider
    return [(case, case_body(directory, case)) for case in case_names(directory)]


def _headers_of(provider: str, case: str) -> dict[str, str]:
    path = shipped.samples_dir() / provider / f"{case}.headers.json"
    return json.loads(path.read_text()) if path.is_file() else {}


# -- Apple: a certificate chain made for this run ----------------------------------------------------------------


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _certificate(subject: str, issuer: str, key: Any, signer: Any, ca: bool, oid: Any) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2100, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if oid is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, b"\x05\x00"), critical=False)
    return builder.sign(signer, hashes.SHA256())


class DemoAppleChain:
    """Root -> intermediate -> leaf with Apple's OIDs, generated for one demo run; `sign_body` re-signs a
    notification body (and its nested JWSs) with the leaf key."""

    def __init__(self, label: str) -> None:
        root_key = ec.generate_private_key(ec.SECP384R1())
        mid_key = ec.generate_private_key(ec.SECP256R1())
        self.key = ec.generate_private_key(ec.SECP256R1())
        root = _certificate(f"{label} Root", f"{label} Root", root_key.public_key(), root_key, True, None)
        mid = _certificate(f"{label} CA", f"{label} Root", mid_key.public_key(), root_key, True, INTERMEDIATE_OID)
        leaf = _certificate(f"{label} Leaf", f"{label} CA", self.key.public_key(), mid_key, False, LEAF_OID)
        self.root_der = root.public_bytes(serialization.Encoding.DER)
        self.x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in (leaf, mid, root)]

    def jws(self, payload: dict[str, Any]) -> str:
        signing_input = f"{_segment(json.dumps({'alg': 'ES256', 'x5c': self.x5c}).encode())}."
        signing_input += _segment(json.dumps(payload).encode())
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{_segment(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def sign_body(self, body: bytes, now: float) -> tuple[bytes, dict[str, str]]:
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
        n = _segment(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big"))
        e = _segment(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big"))
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
        signing_input = f"{_segment(json.dumps(head).encode())}.{_segment(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_segment(signature)}"


# -- the sources ------------------------------------------------------------------------------------------------------


def _braintree(body: bytes, private_key: str, public_key: str) -> bytes:
    fields = dict(parse_qsl(body.decode("ascii"), keep_blank_values=True))
    digest = hmac.new(hashlib.sha1(private_key.encode()).digest(), fields["bt_payload"].encode(), hashlib.sha1)
    signature = f"{public_key}|{digest.hexdigest()}"
    return urlencode({"bt_signature": signature, "bt_payload": fields["bt_payload"]}).encode()


def _mercadopago(secret: str, request_ids: dict[bytes, str]) -> Signer:
    def sign(body: bytes, now: float) -> tuple[bytes, dict[str, str]]:
        request_id = request_ids.get(body) or str(uuid.uuid4())
        ts = str(int(now))
        v1 = hmac.new(secret.encode(), manifest(data_id(body), request_id, ts), hashlib.sha256).hexdigest()
        return body, {**JSON, "x-signature": f"ts={ts},v1={v1}", "x-request-id": request_id}

    return sign


def _unique_event_id(case: str, body: bytes) -> bytes:
    document = json.loads(body)
    document["event"]["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"revenuecat-demo/{case}"))
    return json.dumps(document).encode()


RECHARGE_SAMPLE = b'{"subscription":{"id":1,"status":"ACTIVE"}}'


def demo_source(provider: str) -> DemoSource:
    """The demo setup of `provider` (KeyError for one without a demo)."""
    secret = secrets.token_hex(24)
    variable = f"{provider.upper()}_DEMO_SECRET"
    env = {variable: secret}
    with_secret = {"provider": provider, "secrets": ["${" + variable + "}"]}
    samples = _samples(provider) if provider != "recharge" else [("subscription/created", RECHARGE_SAMPLE)]
    forged_secret = "forged-" + secret

    def hmac_header(
        name: str, algorithm: str, encoding: str, content: dict[str, str] = JSON
    ) -> Callable[[str], Signer]:
        def signer(key: str) -> Signer:
            def sign(body: bytes, now: float) -> tuple[bytes, dict[str, str]]:
                digest = _hmac(key, body, algorithm)
                value = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
                return body, {**content, name: value}

            return sign

        return signer

    if provider == "paystack":
        make = hmac_header("x-paystack-signature", "sha512", "hex")
        return DemoSource(provider, with_secret, env, make(secret), make(forged_secret), samples)
    if provider == "fastspring":
        make = hmac_header("X-FS-Signature", "sha256", "base64")
        return DemoSource(provider, with_secret, env, make(secret), make(forged_secret), samples)
    if provider == "maxio":
        make = hmac_header("X-Chargify-Webhook-Signature-Hmac-Sha-256", "sha256", "hex", FORM)
        return DemoSource(provider, {**with_secret, "currency": "USD"}, env, make(secret), make(forged_secret), samples)
    if provider == "recharge":

        def recharge(key: str) -> Signer:
            def sign(body: bytes, now: float) -> tuple[bytes, dict[str, str]]:
                digest = hashlib.sha256(key.encode() + body).hexdigest()
                return body, {**JSON, "X-Recharge-Hmac-Sha256": digest, "X-Recharge-Topic": "subscription/created"}

            return sign

        note = "Recharge publishes no sample payload: this is the signature vector's minimal body (no time: not mapped)"
        return DemoSource(provider, with_secret, env, recharge(secret), recharge(forged_secret), samples, note)
    if provider == "mercadopago":
        request_ids = {body: _headers_of(provider, case).get("x-request-id", "") for case, body in samples}
        sign = _mercadopago(secret, request_ids)
        return DemoSource(provider, with_secret, env, sign, _mercadopago(forged_secret, {}), samples)
    if provider == "revenuecat":
        value = f"Bearer {secret}"
        env = {variable: value}
        samples = [(case, _unique_event_id(case, body)) for case, body in samples]
        note = "RevenueCat's samples share a placeholder event id: each is given its own so none is a duplicate"
        return DemoSource(
            provider,
            with_secret,
            env,
            lambda body, now: (body, {**JSON, "Authorization": value}),
            lambda body, now: (body, {**JSON, "Authorization": "Bearer forged"}),
            samples,
            note,
        )
    if provider == "braintree":
        public = "demo_public_key"
        source = {**with_secret, "public_key": public, "currency": "USD"}
        return DemoSource(
            provider,
            source,
            env,
            lambda body, now: (_braintree(body, secret, public), FORM),
            lambda body, now: (_braintree(body, forged_secret, public), FORM),
            samples,
        )
    if provider == "apple_app_store":
        chain, forger = DemoAppleChain("Bridge Demo"), DemoAppleChain("Forger")
        source = {"provider": provider, "bundle_id": "com.example", "environment": "Sandbox"}

        def apple(settings: Settings) -> Provider:
            return AppleAppStoreProvider(settings.sources[provider], trusted_roots=[chain.root_der])

        note = "Apple's samples signed again under a chain made for this run, whose root the demo source trusts"
        return DemoSource(provider, source, {}, chain.sign_body, forger.sign_body, samples, note, apple)
    if provider == "google_play":
        key, forger_key = DemoGoogleKey(), DemoGoogleKey()
        audience, email = "https://bridge.demo/webhooks/google_play", "rtdn-push@bridge-demo.iam.gserviceaccount.com"
        source = {"provider": provider, "audience": audience, "service_account_email": email}

        def google(settings: Settings) -> Provider:
            return GooglePlayProvider(settings.sources[provider], fetch_keys=key.fetch)

        def push(signer: DemoGoogleKey) -> Signer:
            return lambda body, now: (body, {**JSON, "Authorization": f"Bearer {signer.token(now, audience, email)}"})

        note = "push tokens signed with a key made for this run, served as Google's key set"
        return DemoSource(provider, source, {}, push(key), push(forger_key), samples, note, google)
    raise KeyError(provider)


DEMO_PROVIDERS = (
    "apple_app_store",
    "braintree",
    "fastspring",
    "google_play",
    "maxio",
    "mercadopago",
    "paystack",
    "recharge",
    "revenuecat",
)


async def post_samples(client: httpx.AsyncClient, demo: DemoSource, now: float) -> None:
    """Post every sample signed, then one forged request; print one line each."""
    path = f"/webhooks/{demo.provider}"
    if demo.note:
        print(f"   ({demo.note})")
    for case, raw in demo.samples:
        body, headers = demo.sign(raw, now)
        response = await client.post(path, content=body, headers=headers)
        status = response.json().get("status", response.json().get("error", "")) if response.content else ""
        print(f"   {case[:50]:<50} {response.status_code} {status}")
    body, headers = demo.forge(demo.samples[0][1], now)
    forged = await client.post(path, content=body, headers=headers)
    print(f"   {'(forged signature)':<50} {forged.status_code} refused, nothing stored\n")


async def report_unrenderable(client: httpx.AsyncClient, ops: dict[str, str]) -> int:
    """Print the dead deliveries a destination could not render (the provider does not send a field the
    destination requires, e.g. a price Google Play never sends); return how many. Other dead deliveries are
    not counted: they fail the demo."""
    response = await client.get("/ops/deliveries", params={"status": "dead", "limit": 500}, headers=ops)
    rows = [row for row in response.json()["deliveries"] if str(row.get("last_error", "")).startswith("cannot render")]
    if rows:
        print(
            "\n4. Events a destination cannot take from this provider (its payloads lack what the destination needs):"
        )
    for row in rows:
        print(f"   {row['destination']:<12} {row['event_name']} {row['event_id']}: {row['last_error']}")
    return len(rows)
