"""Apple App Store Server Notifications V2: the body is `{"signedPayload": "<JWS>"}`, signed by Apple.

The JWS is ES256 with the signing chain in its `x5c` header: [leaf, intermediate, root] (base64 DER). It is
accepted only when (the checks of Apple's own `app-store-server-library`, done here with `cryptography`):

- the header says `alg: ES256` and carries exactly three certificates;
- the intermediate is signed by one of the TRUSTED roots (by default Apple Root CA - G3, shipped in the package
  as `bridge/providers/certs/AppleRootCA-G3.cer`; the `x5c[2]` sent in the token is never trusted) and the
  leaf by the intermediate; the intermediate is a CA, the leaf is not; the leaf carries Apple's
  receipt-signing extension OID 1.2.840.113635.100.6.11.1 and the intermediate 1.2.840.113635.100.6.2.1;
  every certificate of the chain is valid at the injected clock's time;
- the signature verifies with the leaf's P-256 key;
- the notification's app is the configured one: `bundleId` (option `bundle_id`), `environment` (option
  `environment`, Production or Sandbox; Apple's LocalTesting/Xcode data is never accepted) and, in
  Production, `appAppleId` (option `app_apple_id`); read from `data`, `summary`, `externalPurchaseToken` or
  `appData` as the library does;
- the nested `data.signedTransactionInfo` and `data.signedRenewalInfo` JWSs pass the same chain and signature
  checks, the transaction has the configured `bundleId` and both the configured `environment`.

Revocation (OCSP) is not checked: Apple's library does it with blocking HTTP calls; the chain is anchored on the
configured roots and the certificates' validity. `signedDate` is signed; Apple retries a notification for
about three days with the same payload, so no window is enforced by default (`tolerance_seconds` enforces one
on `signedDate`). Verified chains are cached (by the two certificates sent, at most 16), their validity still
checked against the clock on every use.

Dedup key: `notificationUUID`; type: `notificationType` (the `subtype` stays in the document). The document
is the decoded payload with `data.signedTransactionInfo` / `data.signedRenewalInfo` replaced by their
decoded objects `data.transactionInfo` / `data.renewalInfo`. Prices are in milli-units of `currency`.

Tests and the demo inject Apple's published TEST root (`trusted_roots=`); nothing in the configuration can.
"""

from __future__ import annotations

import base64
import binascii
import importlib.resources
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from bridge.errors import PayloadError, SignatureError
from bridge.providers import jose
from bridge.providers.base import InboundEvent, OptionError, Provider, SourceSettings, check_timestamp

LEAF_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.11.1")
INTERMEDIATE_OID = x509.ObjectIdentifier("1.2.840.113635.100.6.2.1")
ENVIRONMENTS = ("Production", "Sandbox")
ROOT_FILE = "certs/AppleRootCA-G3.cer"
_CACHE_SIZE = 16
_NESTED = (("signedTransactionInfo", "transactionInfo"), ("signedRenewalInfo", "renewalInfo"))


def apple_root_g3() -> bytes:
    """Apple Root CA - G3 (DER), shipped as package data."""
    return importlib.resources.files("bridge.providers").joinpath(ROOT_FILE).read_bytes()


@dataclass(frozen=True, slots=True)
class _Chain:
    key: ec.EllipticCurvePublicKey
    valid_from: float
    valid_until: float


def _certificate(encoded: Any, what: str) -> x509.Certificate:
    if not isinstance(encoded, str) or len(encoded) > 16 * 1024:
        raise SignatureError(f"x5c {what} is not a base64 certificate")
    try:
        return x509.load_der_x509_certificate(base64.b64decode(encoded, validate=True))
    except (binascii.Error, ValueError):
        raise SignatureError(f"x5c {what} is not a base64 DER certificate") from None


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _has(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bool:
    try:
        cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return False
    return True


def _window(*certs: x509.Certificate) -> tuple[float, float]:
    return (
        max(c.not_valid_before_utc.timestamp() for c in certs),
        min(c.not_valid_after_utc.timestamp() for c in certs),
    )


def verify_chain(x5c: Any, roots: Sequence[x509.Certificate]) -> _Chain:
    """The leaf key of an Apple signing chain [leaf, intermediate, root] anchored on one of `roots`, with the
    period in which the whole chain is valid. SignatureError otherwise. Validity is NOT checked here."""
    if not isinstance(x5c, list) or len(x5c) != 3:
        raise SignatureError("x5c must hold exactly three certificates")
    leaf = _certificate(x5c[0], "leaf")
    intermediate = _certificate(x5c[1], "intermediate")
    root = next((r for r in roots if _issued_by(intermediate, r)), None)
    if root is None:
        raise SignatureError("the x5c intermediate is not issued by a trusted root")
    if not _issued_by(leaf, intermediate):
        raise SignatureError("the x5c leaf is not issued by the intermediate")
    if not _is_ca(intermediate) or _is_ca(leaf):
        raise SignatureError("the x5c intermediate is not a CA, or the leaf is one")
    if not _has(leaf, LEAF_OID) or not _has(intermediate, INTERMEDIATE_OID):
        raise SignatureError("the x5c chain lacks Apple's App Store signing extensions")
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SignatureError("the x5c leaf does not hold an EC key")
    valid_from, valid_until = _window(leaf, intermediate, root)
    return _Chain(key, valid_from, valid_until)


def app_identity(payload: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """(bundleId, appAppleId, environment) of a decoded notification, from whichever part carries them."""
    for part in ("data", "summary", "appData"):
        value = payload.get(part)
        if isinstance(value, dict):
            return value.get("bundleId"), value.get("appAppleId"), value.get("environment")
    token = payload.get("externalPurchaseToken")
    if isinstance(token, dict):
        purchase = token.get("externalPurchaseId")
        sandbox = isinstance(purchase, str) and purchase.startswith("SANDBOX")
        return token.get("bundleId"), token.get("appAppleId"), "Sandbox" if sandbox else "Production"
    return None, None, None


def signed_payload(body: bytes) -> str:
    """The `signedPayload` string of a notification body; SignatureError when there is none."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise SignatureError("the body is not JSON") from None
    token = document.get("signedPayload") if isinstance(document, dict) else None
    if not isinstance(token, str):
        raise SignatureError("the body has no signedPayload string")
    return token


def _app_apple_id(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    raise OptionError("app_apple_id", "app_apple_id is the app's Apple ID, a positive number")


class AppleAppStoreProvider(Provider):
    type = "apple_app_store"
    requires_secrets = False
    options = {
        "bundle_id": "the app's bundle identifier, e.g. com.example.app (required)",
        "environment": "Production (default) or Sandbox: one source per environment URL",
        "app_apple_id": "the app's Apple ID, a number from App Store Connect (required in Production)",
    }

    def __init__(self, settings: SourceSettings, *, trusted_roots: Sequence[bytes] | None = None) -> None:
        super().__init__(settings)
        options = settings.options
        bundle_id = options.get("bundle_id")
        if not isinstance(bundle_id, str) or not bundle_id.strip():
            raise OptionError("bundle_id", "bundle_id is required: the app's bundle identifier")
        environment = options.get("environment", "Production")
        if environment not in ENVIRONMENTS:
            raise OptionError("environment", f"environment must be Production or Sandbox, got {environment!r}")
        app_apple_id = _app_apple_id(options.get("app_apple_id"))
        if environment == "Production" and app_apple_id is None:
            raise OptionError("app_apple_id", "app_apple_id is required in Production (App Store Connect → App)")
        self.bundle_id = bundle_id.strip()
        self.environment = environment
        self.app_apple_id = app_apple_id
        roots = [apple_root_g3()] if trusted_roots is None else list(trusted_roots)
        try:
            self.roots = [x509.load_der_x509_certificate(der) for der in roots]
        except ValueError:
            raise OptionError("trusted_roots", "a trusted root is not a DER certificate") from None
        self._chains: OrderedDict[tuple[str, str], _Chain] = OrderedDict()

    def _chain(self, x5c: Any) -> _Chain:
        if isinstance(x5c, list) and len(x5c) == 3 and isinstance(x5c[0], str) and isinstance(x5c[1], str):
            cache_key = (x5c[0], x5c[1])
            chain = self._chains.get(cache_key)
            if chain is None:
                chain = verify_chain(x5c, self.roots)
                self._chains[cache_key] = chain
                while len(self._chains) > _CACHE_SIZE:
                    self._chains.popitem(last=False)
            return chain
        return verify_chain(x5c, self.roots)

    def verified(self, token: Any, now: float, what: str) -> dict[str, Any]:
        """The payload of an Apple-signed JWS after the chain, validity and signature checks."""
        jws = jose.split(token, what=what)
        if jws.header.get("alg") != "ES256":
            raise SignatureError(f"{what} is not signed with ES256")
        chain = self._chain(jws.header.get("x5c"))
        if not chain.valid_from <= now <= chain.valid_until:
            raise SignatureError(f"{what}: the signing certificate chain is not valid at this time")
        jose.verify_es256(chain.key, jws)
        return jose.payload_object(jws, what)

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        payload = self.verified(signed_payload(body), now, "signedPayload")
        bundle_id, app_apple_id, environment = app_identity(payload)
        if bundle_id != self.bundle_id:
            raise SignatureError("the notification is for another bundleId")
        if self.environment == "Production" and app_apple_id != self.app_apple_id:
            raise SignatureError("the notification is for another appAppleId")
        if environment != self.environment:
            raise SignatureError(f"the notification is not from the {self.environment} environment")
        data = payload.get("data")
        if isinstance(data, dict):
            for key, _ in _NESTED:
                if key in data:
                    inner = self.verified(data[key], now, key)
                    if key == "signedTransactionInfo" and inner.get("bundleId") != self.bundle_id:
                        raise SignatureError("signedTransactionInfo is for another bundleId")
                    if inner.get("environment") != self.environment:
                        raise SignatureError(f"{key} is not from the {self.environment} environment")
        if self.tolerance:
            signed_date = payload.get("signedDate")
            if not isinstance(signed_date, int) or isinstance(signed_date, bool) or not 0 < signed_date < 10**14:
                raise SignatureError("the notification has no valid signedDate")
            check_timestamp(signed_date / 1000, now, self.tolerance)

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        try:
            token = signed_payload(body)
        except SignatureError as exc:
            raise PayloadError(str(exc)) from None
        document = jose.claims(token, "signedPayload")
        data = document.get("data")
        if isinstance(data, dict):
            for signed, decoded in _NESTED:
                if isinstance(data.get(signed), str):
                    data[decoded] = jose.claims(data.pop(signed), signed)
        event_id = document.get("notificationUUID")
        event_type = document.get("notificationType")
        if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str) or not event_type:
            raise PayloadError("the notification has no notificationUUID or notificationType")
        return [InboundEvent(event_id, event_type, document)]


PROVIDER = AppleAppStoreProvider
