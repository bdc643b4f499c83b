"""Sign App Store Server Notifications in tests, with Apple's PUBLISHED TEST PKI or a foreign one.

`TEST` is the chain of Apple's app-store-server-library tests (vectors/apple/: testLeaf.key, testLeaf.pem,
testIntermediate.pem, testCA.der; the official signed test notifications chain to testCA.der). `OTHER` is a
chain generated here with the same structure and Apple's extension OIDs, under another root: what a forger
without Apple's keys could build. `chain(name)` picks one ("test" / "other"); `root_der(name)` is the root a
provider is told to trust.

    body = notification_body(decoded_notification, "test", now)   # nested signed* re-signed too

Run `python -m tests.providers.apple_signing` to rewrite the derived golden bodies in
fixtures/apple_app_store/ (see fixtures/PROVIDERS-SOURCES.md); each signing is fresh (ECDSA is randomised), the
decoded content is the same.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from bridge.providers.apple_app_store import INTERMEDIATE_OID, LEAF_OID

APPLE = Path(__file__).resolve().parent / "vectors" / "apple"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "apple_app_store"
BUNDLE_ID = "com.example"


@dataclass(frozen=True)
class Chain:
    key: ec.EllipticCurvePrivateKey
    x5c: list[str]
    root: bytes  # DER


def _b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def _pem(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((APPLE / name).read_bytes())


@cache
def _test_chain() -> Chain:
    key = serialization.load_pem_private_key((APPLE / "testLeaf.key").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    root = (APPLE / "testCA.der").read_bytes()
    root_b64 = base64.b64encode(root).decode()
    return Chain(key, [_b64(_pem("testLeaf.pem")), _b64(_pem("testIntermediate.pem")), root_b64], root)


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _cert(
    subject: str,
    issuer: str,
    key: ec.EllipticCurvePublicKey,
    signer: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    oid: x509.ObjectIdentifier | None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if oid is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(oid, b"\x05\x00"), critical=False)
    return builder.sign(signer, hashes.SHA256())


@cache
def _other_chain() -> Chain:
    root_key = ec.generate_private_key(ec.SECP384R1())
    mid_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert("Forged Root", "Forged Root", root_key.public_key(), root_key, ca=True, oid=None)
    mid = _cert("Forged Intermediate", "Forged Root", mid_key.public_key(), root_key, ca=True, oid=INTERMEDIATE_OID)
    leaf = _cert("Forged Leaf", "Forged Intermediate", leaf_key.public_key(), mid_key, ca=False, oid=LEAF_OID)
    return Chain(leaf_key, [_b64(leaf), _b64(mid), _b64(root)], root.public_bytes(serialization.Encoding.DER))


def chain(name: str) -> Chain:
    if name == "test":
        return _test_chain()
    if name == "other":
        return _other_chain()
    raise ValueError(f"unknown Apple test chain {name!r} (test, other)")


def root_der(name: str) -> bytes:
    return chain(name).root


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jws(payload: dict[str, Any], signer: Chain, *, header: dict[str, Any] | None = None) -> str:
    """A compact ES256 JWS of `payload` with `x5c` = the signer's chain."""
    head = header if header is not None else {"alg": "ES256", "x5c": signer.x5c}
    signing_input = f"{_segment(json.dumps(head).encode())}.{_segment(json.dumps(payload).encode())}"
    der = signer.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{_segment(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def decode(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return decoded


def decoded_notification(body: bytes) -> dict[str, Any]:
    """The decoded notification of a body, nested JWSs decoded in place (so it can be signed again)."""
    notification = decode(json.loads(body)["signedPayload"])
    data = notification.get("data")
    if isinstance(data, dict):
        for key in ("signedTransactionInfo", "signedRenewalInfo"):
            if isinstance(data.get(key), str) and data[key].count(".") == 2:
                data[key] = decode(data[key])
    return notification


def notification_body(notification: dict[str, Any], signer: str = "test", now: float | None = None) -> bytes:
    """`{"signedPayload": …}` for a decoded notification whose data.signedTransactionInfo / signedRenewalInfo
    may be decoded objects: those are signed first. `now` (seconds) sets every signedDate when given."""
    chosen = chain(signer)
    notification = copy.deepcopy(notification)
    if now is not None:
        notification["signedDate"] = int(now * 1000)
    data = notification.get("data")
    if isinstance(data, dict):
        for key in ("signedTransactionInfo", "signedRenewalInfo"):
            inner = data.get(key)
            if isinstance(inner, dict):
                if now is not None:
                    inner["signedDate"] = int(now * 1000)
                data[key] = sign_jws(inner, chosen)
    return json.dumps({"signedPayload": sign_jws(notification, chosen)}).encode()


def resign(body: bytes, signer: str, now: float | None) -> bytes:
    """The same notification signed by `signer` (and dated `now`)."""
    return notification_body(decoded_notification(body), signer, now)


# -- the derived golden cases ------------------------------------------------------------------------


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((APPLE / name).read_text())
    return loaded


def derived_cases() -> dict[str, dict[str, Any]]:
    """Decoded notifications for the golden cases: Apple's library test models (vectors/apple/*.decoded.json)
    with environment LocalTesting -> Sandbox and, per case, the notification type, subtype, UUID and the few
    transaction / renewal fields that type implies. Everything else is Apple's model as published."""
    base = _load("SUBSCRIBED.INITIAL_BUY.decoded.json")
    transaction = _load("JWSTransaction.decoded.json")
    renewal = _load("JWSRenewalInfo.decoded.json")
    refund = _load("JWSTransaction.revoked-refund.decoded.json")
    for part in (base["data"], transaction, renewal, refund):
        part["environment"] = "Sandbox"
    purchase = {k: v for k, v in transaction.items() if k not in ("revocationReason", "revocationDate")}

    def case(
        kind: str, subtype: str | None, uuid: str, txn: dict[str, Any], ren: dict[str, Any] | None
    ) -> dict[str, Any]:
        notification = copy.deepcopy(base)
        notification["notificationType"] = kind
        if subtype is None:
            notification.pop("subtype", None)
        else:
            notification["subtype"] = subtype
        notification["notificationUUID"] = uuid
        notification["data"]["signedTransactionInfo"] = copy.deepcopy(txn)
        if ren is None:
            notification["data"].pop("signedRenewalInfo", None)
        else:
            notification["data"]["signedRenewalInfo"] = copy.deepcopy(ren)
        return notification

    renewed = {**purchase, "transactionId": "23457", "transactionReason": "RENEWAL", "offerType": None}
    renewed = {k: v for k, v in renewed.items() if v is not None and not k.startswith("offer")}
    auto_renew_off = {**renewal, "autoRenewStatus": 0, "isInBillingRetryPeriod": False}
    expired = {**renewal, "autoRenewStatus": 0, "expirationIntent": 1, "isInBillingRetryPeriod": False}
    one_time = {
        k: v
        for k, v in purchase.items()
        if k not in ("expiresDate", "subscriptionGroupIdentifier", "webOrderLineItemId", "offerPeriod")
        and not k.startswith("offer")
    }
    one_time = {**one_time, "type": "Non-Consumable", "productId": "com.example.lifetime", "transactionId": "23470"}
    one_time["originalTransactionId"] = "23470"
    return {
        "SUBSCRIBED.INITIAL_BUY": case("SUBSCRIBED", "INITIAL_BUY", base["notificationUUID"], purchase, renewal),
        "DID_RENEW": case("DID_RENEW", None, "2a7d1c3e-6f2b-4f0e-9a41-5c1d8e7b0a11", renewed, renewal),
        "DID_CHANGE_RENEWAL_STATUS.AUTO_RENEW_DISABLED": case(
            "DID_CHANGE_RENEWAL_STATUS",
            "AUTO_RENEW_DISABLED",
            "5b0e6a2c-1d4f-4c8e-8f3a-7e2d9c6b1a22",
            purchase,
            auto_renew_off,
        ),
        "EXPIRED.VOLUNTARY": case("EXPIRED", "VOLUNTARY", "7c1f8b3d-2e5a-4d9f-9b4c-8f3e0d7c2b33", renewed, expired),
        "DID_FAIL_TO_RENEW": case("DID_FAIL_TO_RENEW", None, "9d2a0c4e-3f6b-4e1a-8c5d-9a4f1e8d3c44", renewed, renewal),
        "REFUND": case("REFUND", None, "1e3b2d5f-4a7c-4f2b-9d6e-0b5a2f9e4d55", refund, None),
        "ONE_TIME_CHARGE": case("ONE_TIME_CHARGE", None, "3f4c3e6a-5b8d-4a3c-8e7f-1c6b3a0f5e66", one_time, None),
    }


def write_fixtures() -> None:
    for name, notification in derived_cases().items():
        (FIXTURES / f"{name}.json").write_bytes(notification_body(notification, "test"))
    official = (APPLE / "TEST.signedPayload.jws").read_text()
    (FIXTURES / "TEST.json").write_text(json.dumps({"signedPayload": official}))


if __name__ == "__main__":
    write_fixtures()
