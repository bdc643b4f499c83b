"""The same hostile signature-header shapes against every provider, through POST /webhooks/{source} of the real app:
each one is answered 401 (never 2xx, never 5xx) and nothing is stored.

Generic shapes apply to every provider's signature header (sent twice, non-ASCII, upper case, empty, two
signatures in one value). Scheme shapes are per signature format; where a shape carries a timestamp, the request
is *validly signed* over exactly the bytes sent, so only the strict parse (or the range check) can refuse it:
a bigger window, a lenient parser or an OverflowError would show up as a 2xx or a 5xx here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.clock import ManualClock
from bridge.errors import SignatureError
from tests.harness import running_bridge
from tests.providers.cases import CASES, NOW, Case
from tests.providers.signing import paypal_signature
from tests.providers.test_http import _providers, _source

Headers = list[tuple[str, str | bytes]]
OLD = int(NOW) - 3 * 86400  # a three-day-old captured request
HUGE = "99999999999999999999"
NOT_A_YEAR = "253402300800"  # one second past 9999-12-31: year out of range for datetime


def _hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _b64(key: bytes, message: bytes, algorithm: str = "sha256") -> str:
    return base64.b64encode(hmac.new(key, message, getattr(hashlib, algorithm)).digest()).decode()


def _replace(headers: dict[str, str], name: str, *values: str | bytes) -> Headers:
    """The request's headers with `name` sent once per value (several values: the header is repeated)."""
    pairs: Headers = [(k, v) for k, v in headers.items() if k != name]
    return pairs + [(name, value) for value in values]


# -- shapes every provider gets: applied to the header that carries its signature ------------------------


#: generic shapes that are a legitimate request for one signature format (with why)
LEGITIMATE = {
    # Recurly's header is a list `ts,sig[,sig…]`: `ts,sig,ts,sig` is the timestamp and three candidate
    # signatures, read the same way by Recurly's own client
    ("recurly", "two signatures in one value"),
    # Standard Webhooks' header is a space-separated list: `v1,sig v1,sig` is two v1 signatures (rotation)
    ("standard_webhooks", "space-joined copies"),
    ("standard_webhooks-polar", "space-joined copies"),
}


def generic_shapes(case: Case, headers: dict[str, str]) -> dict[str, Headers]:
    name = case.header
    if name not in headers:  # Adyen's standard notifications carry their signatures inside the body
        return {}
    valid = headers[name]
    shapes: dict[str, Headers] = {
        "header sent twice, valid first": _replace(headers, name, valid, "garbage"),
        "header sent twice, valid last": _replace(headers, name, "garbage", valid),
        "header sent twice, both valid": _replace(headers, name, valid, valid),
        "non-ASCII appended": _replace(headers, name, valid.encode() + "é".encode()),
        "latin-1 byte inside": _replace(headers, name, valid[:4].encode() + b"\xb2" + valid[5:].encode()),
        "empty value": _replace(headers, name, ""),
        "two signatures in one value": _replace(headers, name, f"{valid},{valid}"),
        "space-joined copies": _replace(headers, name, f"{valid} {valid}"),
    }
    if case.id != "generic_hmac":  # generic_hmac compares hex case-insensitively by design (no library to match)
        shapes["upper case"] = _replace(headers, name, valid.upper())
    return {shape: pairs for shape, pairs in shapes.items() if (case.id, shape) not in LEGITIMATE}


# -- scheme shapes: validly signed where a timestamp is involved ------------------------------------------


def stripe_shapes(case: Case, body: bytes, headers: dict[str, str]) -> dict[str, Headers]:
    key = case.secret.encode()

    def sig(t: str) -> str:
        return _hex(key, f"{t}.".encode() + body)

    now = str(int(NOW))
    return {
        name: _replace(headers, "stripe-signature", value)
        for name, value in {
            "old request with a fresh t in front": f"v1={sig(str(OLD))}, t={now},t={OLD}",
            "old request with a fresh t behind": f"t={OLD},v1={sig(str(OLD))},t={now}",
            "t twice, same value": f"t={now},t={now},v1={sig(now)}",
            "padded key": f"t={now}, v1={sig(now)}",
            "padded equals": f"t ={now},v1={sig(now)}",
            "upper-case T": f"T={now},v1={sig(now)}",
            "upper-case V1": f"t={now},V1={sig(now)}",
            "empty t": f"t=,v1={sig(now)}",
            "empty v1": f"t={now},v1=",
            "empty element": f"t={now},,v1={sig(now)}",
            "trailing separator": f"t={now},v1={sig(now)},",
            "equals inside a value": f"t={now},v1={sig(now)}=x",
            "huge t, signed": f"t={HUGE},v1={sig(HUGE)}",
            "signed +t": f"t=+{now},v1={sig('+' + now)}",
            "zero-padded t, signed": f"t=0{now},v1={sig('0' + now)}",
            "exponent t, signed": f"t=1.7e9,v1={sig('1.7e9')}",
            "unknown scheme only": f"t={now},v0={sig(now)}",
            "no t": f"v1={sig(now)}",
        }.items()
    }


def paddle_shapes(case: Case, body: bytes, headers: dict[str, str]) -> dict[str, Headers]:
    key = case.secret.encode()

    def sig(ts: str) -> str:
        return _hex(key, f"{ts}:".encode() + body)

    now = str(int(NOW))
    return {
        name: _replace(headers, "paddle-signature", value)
        for name, value in {
            "old request with a fresh ts in front": f"ts={now};ts={OLD};h1={sig(str(OLD))}",
            "old request with a fresh ts behind": f"ts={OLD};h1={sig(str(OLD))};ts={now}",
            "padded key": f"ts={now}; h1={sig(now)}",
            "upper-case TS": f"TS={now};h1={sig(now)}",
            "upper-case H1": f"ts={now};H1={sig(now)}",
            "empty ts": f"ts=;h1={sig(now)}",
            "empty element": f"ts={now};;h1={sig(now)}",
            "huge ts, signed": f"ts={HUGE};h1={sig(HUGE)}",
            "zero-padded ts, signed": f"ts=0{now};h1={sig('0' + now)}",
            "unknown key beside": f"ts={now};h1={sig(now)};h2={sig(now)}",
            "unknown scheme only": f"ts={now};h2={sig(now)}",
        }.items()
    }


def recurly_shapes(case: Case, body: bytes, headers: dict[str, str]) -> dict[str, Headers]:
    key = case.secret.encode()

    def sig(ms: str) -> str:
        return _hex(key, f"{ms}.".encode() + body)

    ms = str(int(NOW) * 1000)
    return {
        name: _replace(headers, "recurly-signature", value)
        for name, value in {
            "padded signature": f"{ms}, {sig(ms)}",
            "empty element": f"{ms},,{sig(ms)}",
            "huge timestamp, signed": f"{HUGE},{sig(HUGE)}",
            "zero-padded timestamp, signed": f"0{ms},{sig('0' + ms)}",
            "timestamp only": f"{ms},",
            "signed +timestamp": f"+{ms},{sig('+' + ms)}",
        }.items()
    }


def _sw_key(case: Case) -> bytes:
    if case.options.get("secret_encoding") == "raw":
        return case.secret.encode()
    return base64.b64decode(case.secret.removeprefix("whsec_") + "==")


def standard_webhooks_shapes(case: Case, body: bytes, headers: dict[str, str]) -> dict[str, Headers]:
    key = _sw_key(case)
    msg_id = headers["webhook-id"]

    def signed(ts: str, ident: str = msg_id, extra: str = "") -> Headers:
        signature = f"v1,{_b64(key, f'{ident}.{ts}.'.encode() + body)}"
        base = {**headers, "webhook-id": ident, "webhook-timestamp": ts}
        return _replace(base, "webhook-signature", signature + extra)

    now = str(int(NOW))
    good = headers["webhook-signature"]
    return {
        "huge timestamp, signed": signed(HUGE),
        "timestamp past year 9999, signed": signed(NOT_A_YEAR),
        "negative timestamp, signed": signed("-1"),
        "fractional timestamp, signed": signed(f"{now}.5"),
        "exponent timestamp, signed": signed("1.7e9"),
        "zero-padded timestamp, signed": signed("0" + now),
        "id with a dot, signed": signed(now, ident=msg_id + ".1"),
        "timestamp sent twice": _replace({**headers}, "webhook-timestamp", now, str(OLD)),
        "double space between signatures": _replace(headers, "webhook-signature", f"{good}  {good}"),
        "trailing comma": _replace(headers, "webhook-signature", good + ","),
        "upper-case V1": _replace(headers, "webhook-signature", "V" + good[1:]),
        "unknown version only": _replace(headers, "webhook-signature", "v2" + good[2:]),
        "v1 not base64": _replace(headers, "webhook-signature", f"{good} v1,!!!"),
        "svix headers with another id": [*headers.items(), ("svix-id", "msg_other"), ("svix-signature", good)],
    }


def generic_timestamped_shapes(case: Case, body: bytes, headers: dict[str, str]) -> dict[str, Headers]:
    key = case.secret.encode()
    ident = headers["x-acme-delivery"]

    def signed(ts: str) -> Headers:
        value = "sha512=" + _b64(key, f"{ts}.{ident}.".encode() + body, "sha512")
        return _replace({**headers, "x-acme-timestamp": ts}, "x-acme-signature", value)

    return {"huge timestamp, signed": signed(HUGE), "signed non-number": signed("soon")}


def paypal_shapes(case: Case, body: bytes, headers: dict[str, str]) -> dict[str, Headers]:
    def signed(time: str, ident: str = headers["paypal-transmission-id"]) -> Headers:
        base = {**headers, "paypal-transmission-id": ident, "paypal-transmission-time": time}
        return _replace(base, "paypal-transmission-sig", paypal_signature(ident, time, case.secret, body))

    now = datetime.fromtimestamp(NOW, UTC)
    return {
        "year 99999, signed": signed("99999-12-31T23:59:59Z"),
        "no time zone, signed": signed(now.strftime("%Y-%m-%dT%H:%M:%S")),
        "date only, signed": signed(now.strftime("%Y-%m-%d")),
        "three days old, signed": signed(datetime.fromtimestamp(OLD, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
        "pipe in the transmission id, signed": signed(now.strftime("%Y-%m-%dT%H:%M:%SZ"), ident="a|b"),
        "transmission id sent twice": _replace(headers, "paypal-transmission-id", "a", "b"),
        "transmission time sent twice": _replace(
            headers, "paypal-transmission-time", headers["paypal-transmission-time"], "2000-01-01T00:00:00Z"
        ),
    }


def shopify_shapes(case: Case, body: bytes, headers: dict[str, str]) -> dict[str, Headers]:
    return {
        "both header families, other signature": [*headers.items(), ("shopify-hmac-sha256", "AAAA")],
        "both header families, other topic": [
            *headers.items(),
            ("shopify-hmac-sha256", headers["x-shopify-hmac-sha256"]),
            ("shopify-topic", "refunds/create"),
        ],
    }


def adyen_shapes(case: Case, body: bytes, headers: dict[str, str]) -> dict[str, Headers]:
    """The items are signed inside the body; an HmacSignature header switches to whole-body verification."""
    return {
        "HmacSignature header beside signed items": [*headers.items(), ("hmacsignature", "AAAA")],
        "HmacSignature header sent twice": [*headers.items(), ("hmacsignature", "AAAA"), ("hmacsignature", "")],
    }


def mercadopago_shapes(case: Case, body: bytes, headers: dict[str, str]) -> dict[str, Headers]:
    from bridge.providers.mercadopago import data_id, manifest

    key = case.secret.encode()
    request_id = headers["x-request-id"]

    def sig(ts: str) -> str:
        return _hex(key, manifest(data_id(body), request_id, ts))

    now = str(int(NOW))
    return {
        name: _replace(headers, "x-signature", value)
        for name, value in {
            "old request with a fresh ts in front": f"ts={now},ts={OLD},v1={sig(str(OLD))}",
            "old request with a fresh ts behind": f"ts={OLD},v1={sig(str(OLD))},ts={now}",
            "padded key": f"ts={now}, v1={sig(now)}",
            "upper-case TS": f"TS={now},v1={sig(now)}",
            "v1 twice": f"ts={now},v1={sig(now)},v1={sig(now)}",
            "empty element": f"ts={now},,v1={sig(now)}",
            "huge ts, signed": f"ts={HUGE},v1={sig(HUGE)}",
            "zero-padded ts, signed": f"ts=0{now},v1={sig('0' + now)}",
            "signed +ts": f"ts=+{now},v1={sig('+' + now)}",
            "three days old, signed": f"ts={OLD},v1={sig(str(OLD))}",
            "upper-case hex": f"ts={now},v1={sig(now).upper()}",
        }.items()
    } | {"request id sent twice": _replace(headers, "x-request-id", request_id, request_id)}


def google_play_shapes(case: Case, body: bytes, headers: dict[str, str]) -> dict[str, Headers]:
    from tests.providers.signing_billing import google_token

    def token(now: float, **claims: object) -> Headers:
        value = google_token(
            case.secret,
            now,
            audience=str(case.options["audience"]),
            email=str(case.options["service_account_email"]),
            claims=claims,
        )
        return _replace(headers, "authorization", f"Bearer {value}")

    good = headers["authorization"]
    return {
        "three days old, signed": token(OLD),
        "issued in the future, signed": token(NOW + 7200),
        "huge exp, signed": token(NOW, exp=int(HUGE)),
        "exp as text, signed": token(NOW, exp=str(int(NOW) + 3600)),
        "lower-case scheme": _replace(headers, "authorization", "bearer" + good[len("Bearer") :]),
        "two spaces": _replace(headers, "authorization", good.replace(" ", "  ", 1)),
        "token twice in one value": _replace(headers, "authorization", f"{good} {good.split(' ')[1]}"),
    }


SCHEMES: dict[str, Callable[[Case, bytes, dict[str, str]], dict[str, Headers]]] = {
    "stripe": stripe_shapes,
    "paddle": paddle_shapes,
    "recurly": recurly_shapes,
    "standard_webhooks": standard_webhooks_shapes,
    "standard_webhooks-polar": standard_webhooks_shapes,
    "generic_hmac-timestamped": generic_timestamped_shapes,
    "paypal": paypal_shapes,
    "shopify": shopify_shapes,
    "adyen": adyen_shapes,
    "mercadopago": mercadopago_shapes,
    "google_play": google_play_shapes,
}


def shapes(case: Case) -> dict[str, tuple[bytes, Headers]]:
    body, headers = case.request(now=NOW)
    found = {name: (body, pairs) for name, pairs in generic_shapes(case, headers).items()}
    if case.id in SCHEMES:
        found |= {name: (body, pairs) for name, pairs in SCHEMES[case.id](case, body, headers).items()}
    return found


def test_every_provider_and_scheme_is_covered() -> None:
    from bridge.providers import provider_types

    assert {case.type for case in CASES} == set(provider_types())
    assert set(SCHEMES) <= {case.id for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_hostile_signature_headers_are_refused_and_nothing_is_stored(tmp_path: Path, case: Case) -> None:
    extra = {"sources": {"src": _source(case)}}
    clock = ManualClock(NOW)
    async with running_bridge(
        tmp_path, destinations={}, dispatch=False, clock=clock, extra=extra, providers=_providers(case)
    ) as bridge:
        answers = {}
        for name, (body, headers) in shapes(case).items():
            response = await bridge.client.post("/webhooks/src", content=body, headers=headers)
            answers[name] = response.status_code
        assert {name: status for name, status in answers.items() if status != 401} == {}
        stored = (await bridge.ops("GET", "/ops/webhooks", params={"limit": 100})).json()["webhooks"]
        assert stored == []
        # the same source takes the genuine request: the refusals above were the shapes, not the setup
        body, headers = case.request(now=NOW)
        genuine = await bridge.client.post("/webhooks/src", content=body, headers=headers)
        assert genuine.status_code == 200, genuine.text


async def test_what_the_stripe_parser_accepts_the_stripe_sdk_reads_the_same_way() -> None:
    """Differential check of the one parse against stripe-python: every header accepted here is accepted by the
    SDK with the same timestamp; the replay shape is read as the OLD time by the SDK and refused here."""
    import stripe

    from bridge.providers.stripe import parse_signature_header

    case = next(c for c in CASES if c.id == "stripe")
    body = case.body
    now = str(int(NOW))
    good = _hex(case.secret.encode(), f"{now}.".encode() + body)
    accepted = [
        f"t={now},v1={good}",
        f"t={now},v1=bad_signature,v1={good}",
        f"v1={good},t={now}",
        f"t={now},v1={good},v0={'0' * 64}",
        f"t={now},v1={good},v9=future-scheme",
    ]
    provider = case.build()
    for header in accepted:
        await provider.verify(body, {"stripe-signature": header}, NOW)
        stripe.WebhookSignature.verify_header(body, header, case.secret, tolerance=None)
        sdk_t, sdk_signatures = stripe.WebhookSignature._get_timestamp_and_signatures(header, "v1")
        _, our_t, our_signatures = parse_signature_header(header)
        assert (sdk_t, sdk_signatures) == (our_t, our_signatures)
    old = _hex(case.secret.encode(), f"{OLD}.".encode() + body)
    replay = f"v1={old}, t={now},t={OLD}"
    assert stripe.WebhookSignature._get_timestamp_and_signatures(replay, "v1")[0] == OLD
    stripe.WebhookSignature.verify_header(body, replay, case.secret, tolerance=None)  # the signature is genuine
    with pytest.raises(SignatureError):
        await provider.verify(body, {"stripe-signature": replay}, NOW)
