"""Google Play Real-time developer notifications (RTDN), delivered by a Cloud Pub/Sub PUSH subscription.

RTDN has no payload signature. The push subscription (with authentication enabled) sends
`Authorization: Bearer <OIDC JWT>` signed by Google; the bridge accepts the request only when the token
(the checks of Google's own `verify_oauth2_token` and Pub/Sub's push guide):

- is one well-formed compact JWS, `alg: RS256`, signed by the Google key its `kid` names; Google's key set comes
  from https://www.googleapis.com/oauth2/v3/certs through the bridge's remote-key fetcher (`keys.RemoteKeys`:
  that one URL allowed, cached 15 minutes, a failed fetch not retried for a minute, single flight, injectable
  fetch). A `kid` missing from the cached set (a key Google has just rotated in) makes the set be fetched
  again, at most once per `key_refresh_seconds` (default 60 s) however many requests name unknown keys, so a
  stranger's made-up `kid`s cost at most one fetch per interval; a `kid` still missing after that is refused
  (401, Pub/Sub retries). The claims below are checked before any key is looked up, so only a token for this
  audience and service account, unexpired, can lead to a fetch at all;
- has `iss` accounts.google.com (with or without `https://`), `aud` equal to the option `audience` (what the push
  subscription's authentication sets; by default the push endpoint URL), `exp` not passed and `iat` not in the
  future (within `tolerance_seconds` of clock skew, default 60 s);
- has `email` equal to the option `service_account_email` (the push subscription's service account) with
  `email_verified: true`. Without that check any Google-signed token for the same audience would do: anyone
  can create a push subscription to a public URL.

The token authenticates the SENDER, not the body: a captured token could be replayed with another body until it
expires (one hour). After it, the body is the push envelope `{"message": {"data": <base64>, "messageId",
"publishTime", "attributes"}, "subscription"}` (both camelCase and snake_case ids are read); `data` decodes to
the DeveloperNotification JSON. With the option `package_name`, a notification for another app is refused.

Dedup key: the Pub/Sub `messageId` (the same on every redelivery). Type: `SUBSCRIPTION_<name>` /
`ONE_TIME_PRODUCT_<name>` from the notification's numeric `notificationType` (names as in Google's reference;
unknown numbers `SUBSCRIPTION_NOTIFICATION_<n>`), `VOIDED_PURCHASE`, `TEST_NOTIFICATION`. Document: the
DeveloperNotification plus `pubsub: {message_id, publish_time, subscription, attributes}`. Notifications carry
ids only (purchase token, product id, order id): no price.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric import rsa

from bridge.errors import PayloadError, SignatureError
from bridge.providers import jose
from bridge.providers.base import InboundEvent, OptionError, Provider, SourceSettings
from bridge.providers.keys import Fetch, RemoteKeys, UrlRule, fetch_https

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v3/certs"
ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
MAX_TOKEN_LENGTH = 4096
MAX_LIFETIME_SECONDS = 24 * 3600
KEY_SET_TTL_SECONDS = 15 * 60
KEY_REFRESH_SECONDS = 60.0
KEY_REFRESH_RANGE = (10.0, 900.0)
MAX_KEYS = 32

SUBSCRIPTION_TYPES = {
    1: "RECOVERED",
    2: "RENEWED",
    3: "CANCELED",
    4: "PURCHASED",
    5: "ON_HOLD",
    6: "IN_GRACE_PERIOD",
    7: "RESTARTED",
    8: "PRICE_CHANGE_CONFIRMED",
    9: "DEFERRED",
    10: "PAUSED",
    11: "PAUSE_SCHEDULE_CHANGED",
    12: "REVOKED",
    13: "EXPIRED",
    17: "ITEMS_CHANGED",
    18: "CANCELLATION_SCHEDULED",
    19: "PRICE_CHANGE_UPDATED",
    20: "PENDING_PURCHASE_CANCELED",
    22: "PRICE_STEP_UP_CONSENT_UPDATED",
}
ONE_TIME_TYPES = {1: "PURCHASED", 2: "CANCELED"}


def _uint(value: Any, what: str) -> int:
    if not isinstance(value, str) or not 0 < len(value) <= 1024:
        raise ValueError(f"{what} is not base64url text")
    return int.from_bytes(jose.b64url(value, what), "big")


def load_google_keys(document: bytes) -> dict[str, rsa.RSAPublicKey]:
    """kid -> RSA public key of the RS256 signing keys in a JWKS document (other keys are skipped). ValueError
    (or SignatureError) when the document is not a key set or holds no usable key."""
    try:
        parsed = orjson.loads(document)
    except orjson.JSONDecodeError:
        raise ValueError("the key set is not JSON") from None
    entries = parsed.get("keys") if isinstance(parsed, dict) else None
    if not isinstance(entries, list):
        raise ValueError("the key set has no keys list")
    found: dict[str, rsa.RSAPublicKey] = {}
    for entry in entries[:MAX_KEYS]:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
            continue
        if entry.get("alg", "RS256") != "RS256" or not isinstance(entry.get("kid"), str):
            continue
        key = rsa.RSAPublicNumbers(_uint(entry.get("e"), "e"), _uint(entry.get("n"), "n")).public_key()
        if key.key_size >= 2048:
            found[entry["kid"]] = key
    if not found:
        raise ValueError("the key set holds no RS256 signing key")
    return found


def bearer_token(headers: Mapping[str, str]) -> str:
    """The token of `Authorization: Bearer <token>`; SignatureError when missing, repeated or of another scheme."""
    value = headers.get("authorization")
    if not value:
        raise SignatureError("missing Authorization header")
    scheme, space, token = value.partition(" ")
    if scheme != "Bearer" or not space or not token or len(token) > MAX_TOKEN_LENGTH or " " in token:
        raise SignatureError("Authorization is not one Bearer token")
    return token


def _seconds(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 10**11:
        raise SignatureError(f"the token's {name} is not a Unix time in seconds")
    return value


def notification_type(notification: Mapping[str, Any]) -> str:
    """The bridge's event type of a DeveloperNotification (see the module docstring)."""
    for key, prefix, names in (
        ("subscriptionNotification", "SUBSCRIPTION", SUBSCRIPTION_TYPES),
        ("oneTimeProductNotification", "ONE_TIME_PRODUCT", ONE_TIME_TYPES),
    ):
        part = notification.get(key)
        if isinstance(part, dict):
            number = part.get("notificationType")
            if isinstance(number, bool) or not isinstance(number, int):
                raise PayloadError(f"{key}.notificationType is not a number")
            return f"{prefix}_{names.get(number, f'NOTIFICATION_{number}')}"
    if isinstance(notification.get("voidedPurchaseNotification"), dict):
        return "VOIDED_PURCHASE"
    if isinstance(notification.get("testNotification"), dict):
        return "TEST_NOTIFICATION"
    raise PayloadError("the developer notification has no known notification object")


def decode_push(body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(DeveloperNotification, pubsub metadata) of a wrapped Pub/Sub push body; PayloadError otherwise."""
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise PayloadError("the push body is not JSON") from None
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("data"), str):
        raise PayloadError("the push body has no message.data (is the subscription's payload unwrapping on?)")
    try:
        data = base64.b64decode(message["data"], validate=True)
        notification = orjson.loads(data)
    except (binascii.Error, ValueError):
        raise PayloadError("message.data is not base64 of JSON") from None
    if not isinstance(notification, dict):
        raise PayloadError("message.data is not a JSON object")
    message_id = message.get("messageId", message.get("message_id"))
    if not isinstance(message_id, str) or not message_id:
        raise PayloadError("the push message has no messageId")
    pubsub = {
        "message_id": message_id,
        "publish_time": message.get("publishTime", message.get("publish_time")),
        "subscription": envelope.get("subscription"),
        "attributes": message.get("attributes"),
    }
    return notification, pubsub


class GooglePlayProvider(Provider):
    type = "google_play"
    requires_secrets = False
    default_tolerance = 60.0
    options = {
        "audience": "the audience set on the push subscription's authentication, usually this URL (required)",
        "service_account_email": "the service account the push subscription authenticates as (required)",
        "package_name": "the app's package name; notifications for other apps are refused (optional)",
        "key_refresh_seconds": "at most one refetch of Google's keys per this many seconds for an unknown kid "
        "(default 60, 10 to 900)",
    }

    def __init__(self, settings: SourceSettings, *, fetch_keys: Fetch | None = None) -> None:
        super().__init__(settings)
        options = settings.options
        audience = options.get("audience")
        if not isinstance(audience, str) or not audience.strip():
            raise OptionError("audience", "audience is required: the push subscription's OIDC audience")
        email = options.get("service_account_email")
        if not isinstance(email, str) or "@" not in email:
            raise OptionError("service_account_email", "service_account_email is required: the push service account")
        package = options.get("package_name")
        if package is not None and (not isinstance(package, str) or not package.strip()):
            raise OptionError("package_name", "package_name must be the app's package name")
        self.audience = audience.strip()
        self.service_account_email = email.strip()
        self.package_name = package.strip() if isinstance(package, str) else None
        refresh = options.get("key_refresh_seconds", KEY_REFRESH_SECONDS)
        low, high = KEY_REFRESH_RANGE
        if isinstance(refresh, bool) or not isinstance(refresh, int | float) or not low <= refresh <= high:
            raise OptionError(
                "key_refresh_seconds", f"key_refresh_seconds must be a number of seconds from {low:g} to {high:g}"
            )
        self.keys = RemoteKeys(
            rule=UrlRule("Google's OIDC key set", re.compile(re.escape(GOOGLE_CERTS_URL))),
            load=load_google_keys,
            fetch=fetch_keys or fetch_https,
            ttl=KEY_SET_TTL_SECONDS,
            max_concurrent=1,
            max_entries=1,
            refresh_interval=float(refresh),
        )

    async def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        jws = jose.split(bearer_token(headers), max_length=MAX_TOKEN_LENGTH, what="the push token")
        kid = jws.header.get("kid")
        if jws.header.get("alg") != "RS256" or not isinstance(kid, str) or not 0 < len(kid) <= 200:
            raise SignatureError("the push token is not RS256 with a key id")
        # The claims are read before the signature is checked: here they can only refuse the token (cheaply, and
        # before any key is fetched); nothing in them is trusted unless the signature below verifies.
        claims = jose.payload_object(jws, "the push token")
        self._check_claims(claims, now)
        keys = await self.keys.get_containing(GOOGLE_CERTS_URL, now, lambda found: kid in found)
        key = keys.get(kid)
        if key is None:
            raise SignatureError("the push token's kid is not in Google's current key set")
        jose.verify_rs256(key, jws)
        if self.package_name is not None:
            try:
                notification, _ = decode_push(body)
            except PayloadError as exc:
                raise SignatureError(f"cannot check the package name: {exc}") from None
            if notification.get("packageName") != self.package_name:
                raise SignatureError("the notification is for another package")

    def _check_claims(self, claims: Mapping[str, Any], now: float) -> None:
        if claims.get("iss") not in ISSUERS:
            raise SignatureError("the push token is not issued by Google accounts")
        if claims.get("aud") != self.audience:
            raise SignatureError("the push token is for another audience")
        if claims.get("email") != self.service_account_email or claims.get("email_verified") is not True:
            raise SignatureError("the push token is not for the configured service account")
        issued, expires = _seconds(claims, "iat"), _seconds(claims, "exp")
        skew = self.tolerance or 0.0
        if expires - issued > MAX_LIFETIME_SECONDS:
            raise SignatureError("the push token lives longer than a day")
        if expires < now - skew:
            raise SignatureError(f"the push token expired {now - expires:.0f}s ago (timestamp)")
        if issued > now + skew:
            raise SignatureError(f"the push token is issued {issued - now:.0f}s in the future (timestamp)")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> list[InboundEvent]:
        notification, pubsub = decode_push(body)
        event_type = notification_type(notification)
        document = {**notification, "pubsub": pubsub}
        return [InboundEvent(str(pubsub["message_id"]), event_type, document)]


PROVIDER = GooglePlayProvider
