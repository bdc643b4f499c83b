"""Behaviour of the app-store and billing providers beyond the shared signing table: Apple's chain and app
checks, Google's push-token checks and key fetching, Stripe Connect's account scoping, and hostile signed
bodies, mostly through POST /webhooks/{source} of the real app with the injected clock."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from bridge.clock import ManualClock
from bridge.errors import PayloadError, SignatureError
from bridge.mapping.functions import scale
from bridge.providers.base import OptionError, SourceSettings
from bridge.providers.google_play import GOOGLE_CERTS_URL, GooglePlayProvider
from tests.harness import running_bridge, stripe_headers
from tests.providers import apple_signing
from tests.providers.billing_cases import APPLE_OPTIONS, GOOGLE_OPTIONS
from tests.providers.cases import NOW, build, fixture
from tests.providers.signing import sign, signed_request
from tests.providers.signing_billing import braintree_body, google_fetcher, google_token

# -- Apple ---------------------------------------------------------------------------------------------------


def _apple_case(name: str = "SUBSCRIBED.INITIAL_BUY") -> dict[str, Any]:
    return copy.deepcopy(apple_signing.derived_cases()[name])


async def test_apple_nested_transaction_of_another_app_or_environment_is_refused() -> None:
    provider = build("apple_app_store", ("test",), APPLE_OPTIONS)
    for part, change in (
        ("signedTransactionInfo", {"bundleId": "com.other"}),
        ("signedTransactionInfo", {"environment": "Production"}),
        ("signedRenewalInfo", {"environment": "Production"}),
    ):
        notification = _apple_case()
        notification["data"][part].update(change)
        with pytest.raises(SignatureError, match=part):
            await provider.verify(apple_signing.notification_body(notification), {}, NOW)


async def test_apple_nested_jws_signed_by_a_foreign_chain_is_refused() -> None:
    notification = _apple_case()
    foreign = apple_signing.sign_jws(notification["data"]["signedTransactionInfo"], apple_signing.chain("other"))
    outer = {**notification, "data": {**notification["data"], "signedTransactionInfo": foreign}}
    outer["data"]["signedRenewalInfo"] = apple_signing.sign_jws(
        outer["data"]["signedRenewalInfo"], apple_signing.chain("test")
    )
    body = json.dumps({"signedPayload": apple_signing.sign_jws(outer, apple_signing.chain("test"))}).encode()
    with pytest.raises(SignatureError, match="trusted root"):
        await build("apple_app_store", ("test",), APPLE_OPTIONS).verify(body, {}, NOW)


async def test_apple_x5c_root_sent_in_the_token_is_never_trusted() -> None:
    """A forged chain that names the trusted test root as x5c[2] still fails: the intermediate must be signed by
    a configured root, whatever the token says its root is."""
    forged = apple_signing.chain("other")
    test_root = apple_signing.chain("test").x5c[2]
    lying = apple_signing.Chain(forged.key, [forged.x5c[0], forged.x5c[1], test_root], forged.root)
    token = apple_signing.sign_jws(
        apple_signing.decode(json.loads(fixture("apple_app_store/TEST.json"))["signedPayload"]), lying
    )
    with pytest.raises(SignatureError, match="trusted root"):
        await build("apple_app_store", ("test",), APPLE_OPTIONS).verify(
            json.dumps({"signedPayload": token}).encode(), {}, NOW
        )


@pytest.mark.parametrize(
    "header", [{"alg": "none"}, {"alg": "HS256"}, {"alg": "ES256"}], ids=["none", "hs256", "no-x5c"]
)
async def test_apple_other_algorithms_and_missing_chains_are_refused(header: dict[str, Any]) -> None:
    token = apple_signing.sign_jws({"notificationType": "TEST"}, apple_signing.chain("test"), header=header)
    with pytest.raises(SignatureError):
        await build("apple_app_store", ("test",), APPLE_OPTIONS).verify(
            json.dumps({"signedPayload": token}).encode(), {}, NOW
        )


async def test_apple_chain_validity_is_checked_on_every_use_of_the_cache() -> None:
    provider = build("apple_app_store", ("test",), APPLE_OPTIONS)
    body = fixture("apple_app_store/DID_RENEW.json")
    await provider.verify(body, {}, NOW)
    assert len(provider._chains) == 1  # the verified chain is cached
    with pytest.raises(SignatureError, match="not valid at this time"):
        await provider.verify(body, {}, 2_000_000_000.0)  # 2033-05: the test chain has expired


async def test_apple_signed_date_window_only_when_configured() -> None:
    stale = apple_signing.notification_body(_apple_case(), "test", NOW - 4 * 86400)
    await build("apple_app_store", ("test",), APPLE_OPTIONS).verify(stale, {}, NOW)  # Apple retries for days
    with pytest.raises(SignatureError, match="timestamp"):
        await build("apple_app_store", ("test",), APPLE_OPTIONS, tolerance=86400).verify(stale, {}, NOW)
    fresh = apple_signing.notification_body(_apple_case(), "test", NOW - 60)
    await build("apple_app_store", ("test",), APPLE_OPTIONS, tolerance=86400).verify(fresh, {}, NOW)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({}, "bundle_id"),
        ({"bundle_id": "com.example", "environment": "LocalTesting"}, "environment"),
        ({"bundle_id": "com.example"}, "app_apple_id"),
        ({"bundle_id": "com.example", "app_apple_id": "12a"}, "app_apple_id"),
    ],
)
def test_apple_options(options: dict[str, Any], key: str) -> None:
    with pytest.raises(OptionError) as raised:
        build("apple_app_store", ("test",), options)
    assert raised.value.key == key


async def test_apple_production_source_checks_the_app_apple_id() -> None:
    production = {"bundle_id": "com.example", "environment": "Production", "app_apple_id": "41234"}
    notification = _apple_case("DID_RENEW")
    notification["data"]["environment"] = "Production"
    for part in ("signedTransactionInfo", "signedRenewalInfo"):
        notification["data"][part]["environment"] = "Production"
    await build("apple_app_store", ("test",), production).verify(apple_signing.notification_body(notification), {}, NOW)
    notification["data"]["appAppleId"] = 41235
    with pytest.raises(SignatureError, match="appAppleId"):
        await build("apple_app_store", ("test",), production).verify(
            apple_signing.notification_body(notification), {}, NOW
        )


# -- Google Play ---------------------------------------------------------------------------------------------

PUSH = fixture("google_play/SUBSCRIPTION_PURCHASED.json")


def google(calls: list[str] | None = None, keys: tuple[str, ...] = ("k1",), **options: Any) -> GooglePlayProvider:
    settings = SourceSettings("g", "google_play", (), None, options={**GOOGLE_OPTIONS, **options})
    return GooglePlayProvider(settings, fetch_keys=google_fetcher(keys, calls))


def bearer(name: str = "k1", now: float = NOW, **claims: Any) -> dict[str, str]:
    token = google_token(
        name, now, audience=GOOGLE_OPTIONS["audience"], email=GOOGLE_OPTIONS["service_account_email"], claims=claims
    )
    return {"authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": "https://attacker.example/push"}, "audience"),
        ({"iss": "https://evil.example.com"}, "issued by Google"),
        ({"email": "someone@other-project.iam.gserviceaccount.com"}, "service account"),
        ({"email_verified": False}, "service account"),
        ({"exp": int(NOW) - 3600}, "expired"),
        ({"iat": int(NOW) + 3600, "exp": int(NOW) + 7200}, "future"),
        ({"exp": int(NOW) + 2 * 86400}, "longer than a day"),
        ({"exp": "soon"}, "Unix time"),
        ({"iat": 10**12}, "Unix time"),
    ],
    ids=[
        "audience",
        "issuer",
        "email",
        "email-unverified",
        "expired",
        "not-yet-valid",
        "too-long",
        "exp-text",
        "iat-ms",
    ],
)
async def test_google_token_claims_are_checked(claims: dict[str, Any], reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        await google().verify(PUSH, bearer(**claims), NOW)


async def test_google_token_within_the_clock_skew_passes_and_outside_fails() -> None:
    await google().verify(PUSH, bearer(now=NOW - 3600 - 30), NOW)  # expired 30 s ago: inside the 60 s skew
    with pytest.raises(SignatureError, match="expired"):
        await google().verify(PUSH, bearer(now=NOW - 3600 - 90), NOW)


async def test_google_keys_are_fetched_once_and_a_stranger_kid_causes_no_fetch() -> None:
    calls: list[str] = []
    provider = google(calls)
    for _ in range(3):
        await provider.verify(PUSH, bearer(), NOW)
    assert calls == [GOOGLE_CERTS_URL]
    with pytest.raises(SignatureError, match="kid"):
        await provider.verify(PUSH, bearer("unknown-key"), NOW)
    made_up = google_token(
        "k1",
        NOW,
        audience=GOOGLE_OPTIONS["audience"],
        email=GOOGLE_OPTIONS["service_account_email"],
        header={"kid": "made-up"},
    )
    with pytest.raises(SignatureError, match="kid"):
        await provider.verify(PUSH, {"authorization": f"Bearer {made_up}"}, NOW)
    assert calls == [GOOGLE_CERTS_URL]
    await provider.verify(PUSH, bearer(now=NOW + 16 * 60), NOW + 16 * 60)  # the cache expired: one more fetch
    assert calls == [GOOGLE_CERTS_URL, GOOGLE_CERTS_URL]


async def test_google_failed_key_fetch_is_not_retried_for_a_minute() -> None:
    calls: list[str] = []

    async def failing(url: str) -> bytes:
        calls.append(url)
        raise OSError("network down")

    settings = SourceSettings("g", "google_play", (), None, options=GOOGLE_OPTIONS)
    provider = GooglePlayProvider(settings, fetch_keys=failing)
    for now in (NOW, NOW + 30):
        with pytest.raises(SignatureError):
            await provider.verify(PUSH, bearer(now=now), now)
    assert len(calls) == 1
    with pytest.raises(SignatureError):
        await provider.verify(PUSH, bearer(now=NOW + 61), NOW + 61)
    assert len(calls) == 2


@pytest.mark.parametrize("header", [{"alg": "RS512"}, {"alg": "none"}, {"kid": ""}], ids=["rs512", "none", "no-kid"])
async def test_google_other_algorithms_are_refused(header: dict[str, Any]) -> None:
    token = google_token(
        "k1", NOW, audience=GOOGLE_OPTIONS["audience"], email=GOOGLE_OPTIONS["service_account_email"], header=header
    )
    with pytest.raises(SignatureError):
        await google().verify(PUSH, {"authorization": f"Bearer {token}"}, NOW)


async def test_google_package_name_option() -> None:
    await google(package_name="com.some.thing").verify(PUSH, bearer(), NOW)
    with pytest.raises(SignatureError, match="another package"):
        await google(package_name="com.other.app").verify(PUSH, bearer(), NOW)


def test_google_push_parsing() -> None:
    provider = google()
    [event] = provider.parse(PUSH, {})
    assert (event.event_id, event.event_type) == ("136969346945", "SUBSCRIPTION_PURCHASED")
    assert event.document["pubsub"]["subscription"] == "projects/myproject/subscriptions/mysubscription"
    envelope = json.loads(PUSH)
    envelope["message"]["message_id"] = envelope["message"].pop("messageId")
    assert provider.parse(json.dumps(envelope).encode(), {})[0].event_id == "136969346945"
    notification = json.loads(fixture("google_play/SUBSCRIPTION_RENEWED.json"))
    import base64

    data = json.loads(base64.b64decode(notification["message"]["data"]))
    data["subscriptionNotification"]["notificationType"] = 99
    notification["message"]["data"] = base64.b64encode(json.dumps(data).encode()).decode()
    assert provider.parse(json.dumps(notification).encode(), {})[0].event_type == "SUBSCRIPTION_NOTIFICATION_99"
    for bad in (b'{"message": {}}', b'{"message": {"data": "!!!", "messageId": "1"}}', b"[]", b"not json"):
        with pytest.raises(PayloadError):
            provider.parse(bad, {})
    unwrapped = base64.b64decode(envelope["message"]["data"])  # a subscription with payload unwrapping on
    with pytest.raises(PayloadError, match="unwrapping"):
        provider.parse(unwrapped, {})


def test_google_options() -> None:
    for options, key in (
        ({"audience": ""}, "audience"),
        ({"service_account_email": "nobody"}, "service_account_email"),
    ):
        with pytest.raises(OptionError) as raised:
            google(**options)
        assert raised.value.key == key


# -- through the app: duplicated and hostile requests, Connect -----------------------------------------------


async def test_duplicated_signature_headers_are_refused_over_http(tmp_path: Path) -> None:
    """A repeated signature header reaches the provider joined with ", " and matches nothing."""
    body = fixture("paystack/charge.success.json")
    headers = sign("paystack", body, secret="sk", now=NOW)
    value = headers["x-paystack-signature"]
    extra = {"sources": {"ps": {"provider": "paystack", "secrets": ["sk"]}}}
    async with running_bridge(tmp_path, destinations={}, dispatch=False, extra=extra, clock=ManualClock(NOW)) as b:
        pairs = [("content-type", "application/json"), ("x-paystack-signature", value), ("x-paystack-signature", value)]
        assert (await b.client.post("/webhooks/ps", content=body, headers=pairs)).status_code == 401
        assert (await b.ops("GET", "/ops/webhooks")).json()["webhooks"] == []
        assert (await b.client.post("/webhooks/ps", content=body, headers=headers)).status_code == 200


async def test_braintree_form_with_a_repeated_field_is_refused(tmp_path: Path) -> None:
    body = braintree_body(fixture("braintree/subscription_went_active.form"), "pk_private", "pub")
    extra = {"sources": {"bt": {"provider": "braintree", "secrets": ["pk_private"], "public_key": "pub"}}}
    async with running_bridge(tmp_path, destinations={}, dispatch=False, extra=extra, clock=ManualClock(NOW)) as b:
        form = {"content-type": "application/x-www-form-urlencoded"}
        signature = body.decode().split("&")[0]
        for hostile in (body + b"&" + signature.encode(), body + b"&bt_payload=AAAA", b"bt_payload=A&" + body):
            assert (await b.client.post("/webhooks/bt", content=hostile, headers=form)).status_code == 401
        assert (await b.ops("GET", "/ops/webhooks")).json()["webhooks"] == []
        assert (await b.client.post("/webhooks/bt", content=body, headers=form)).status_code == 200


@pytest.mark.parametrize(
    "xml",
    [
        b'<?xml version="1.0"?><!DOCTYPE n [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b"<notification>&b;</notification>",
        b"<notification><kind>x</kind>" + b"<a>" * 40 + b"</a>" * 40 + b"</notification>",
        b"<not-a-notification/>",
        b"<notification><kind>x</kind>",
    ],
    ids=["entities", "too-deep", "other-root", "truncated"],
)
async def test_braintree_hostile_but_signed_xml_is_a_400_not_a_500(tmp_path: Path, xml: bytes) -> None:
    import base64

    payload = base64.encodebytes(xml).decode()
    body = braintree_body(urlencode({"bt_signature": "x", "bt_payload": payload}).encode(), "priv", "pub")
    extra = {"sources": {"bt": {"provider": "braintree", "secrets": ["priv"], "public_key": "pub"}}}
    async with running_bridge(tmp_path, destinations={}, dispatch=False, extra=extra, clock=ManualClock(NOW)) as b:
        response = await b.client.post(
            "/webhooks/bt", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
        )
        assert response.status_code == 400, response.text


async def test_maxio_form_refusals() -> None:
    provider = build("maxio", ("k",), {})
    with pytest.raises(PayloadError, match="exactly once"):
        provider.parse(b"id=1&id=2&event=x", {})
    with pytest.raises(PayloadError, match="both a value and an object"):
        provider.parse(b"id=1&event=x&payload=1&payload[a]=2", {})
    with pytest.raises(PayloadError):
        provider.parse(b"id=1&event=x&" + b"a" + b"[b]" * 20 + b"=1", {})
    [event] = provider.parse(b"id=1&event=x&payload[list][id]=1&payload[list][id]=2", {})
    assert event.document["payload"] == {"list": {"id": ["1", "2"]}}


async def test_fastspring_batch_and_recharge_topic(tmp_path: Path) -> None:
    batch = fixture("fastspring/order.completed+subscription.activated.json")
    extra = {
        "sources": {
            "fs": {"provider": "fastspring", "secrets": ["s"]},
            "rc": {"provider": "recharge", "secrets": ["s"]},
        }
    }
    async with running_bridge(tmp_path, destinations={}, dispatch=False, extra=extra, clock=ManualClock(NOW)) as b:
        response = await b.client.post(
            "/webhooks/fs", content=batch, headers=sign("fastspring", batch, secret="s", now=NOW)
        )
        assert response.status_code == 200 and len(response.json()["webhook_ids"]) == 2
        body = b'{"subscription": {"id": 1, "status": "ACTIVE"}}'
        headers = {k: v for k, v in sign("recharge", body, secret="s", now=NOW).items() if k != "X-Recharge-Topic"}
        assert (await b.client.post("/webhooks/rc", content=body, headers=headers)).status_code == 400


async def test_stripe_connect_keeps_accounts_apart_and_labels_them(tmp_path: Path) -> None:
    """One event shape on two connected accounts: two webhooks, two deliveries with account-scoped ids; the same
    event again is a duplicate; an unlisted account is acknowledged and not stored when other_accounts: ignore."""
    event = json.loads(fixture("stripe/payment_intent.succeeded.json"))
    labels = {"acct_1EU": "shop-eu", "acct_1US": "shop-us"}
    source = {
        "provider": "stripe",
        "secrets": ["whsec_test_secret"],
        "connected_accounts": labels,
        "other_accounts": "ignore",
    }
    destinations = {"capture": {"type": "http", "url": "http://127.0.0.1:9/unused", "events": ["*"]}}
    extra = {"sources": {"connect": source}}
    clock = ManualClock(NOW)
    async with running_bridge(tmp_path, destinations=destinations, dispatch=False, extra=extra, clock=clock) as b:
        statuses = []
        for account in ("acct_1EU", "acct_1US", "acct_1EU", "acct_unlisted"):
            body = json.dumps({**event, "account": account}).encode()
            response = await b.client.post(
                "/webhooks/connect", content=body, headers=stripe_headers(body, "whsec_test_secret", NOW)
            )
            assert response.status_code == 200, response.text
            statuses.append((response.json()["status"], len(response.json()["webhook_ids"])))
        assert statuses == [("accepted", 1), ("accepted", 1), ("duplicate", 1), ("accepted", 0)]
        deliveries = await b.deliveries()
        pi = event["data"]["object"]["id"]
        assert sorted(d["event_id"] for d in deliveries) == [f"{pi}@acct_1EU", f"{pi}@acct_1US"]
        rows = (await b.ops("GET", "/ops/webhooks", params={"limit": 10})).json()["webhooks"]
        assert len(rows) == 2
        stored = [(await b.ops("GET", f"/ops/webhooks/{row['id']}")).json()["events"][0] for row in rows]
        assert sorted(e["properties"]["account_label"] for e in stored) == ["shop-eu", "shop-us"]


def test_stripe_connect_options() -> None:
    for options, key in (
        ({"connected_accounts": {"not-an-account": "x"}}, "connected_accounts"),
        ({"connected_accounts": {"acct_1": ""}}, "connected_accounts"),
        ({"other_accounts": "drop"}, "other_accounts"),
        ({"other_accounts": "ignore"}, "other_accounts"),
    ):
        with pytest.raises(OptionError) as raised:
            build("stripe", ("whsec_x",), options)
        assert raised.value.key == key
    platform = build("stripe", ("whsec_x",), {})
    [event] = platform.parse(fixture("stripe/payment_intent.succeeded.json"), {})
    assert event.event_id == "evt_golden_payment_intent_succeeded" and "_account_label" not in event.document


# -- mapping helpers and coverage ------------------------------------------------------------------------------


def test_scale() -> None:
    assert scale(10990, -3) == "10.99"
    assert scale(549500000, -8) == "5.495"
    assert scale(10000, -3) == "10"
    assert scale("12.5", 2) == "1250"
    assert scale(-9990, -3) == "-9.99"
    assert scale(None, -3) is None
    assert scale(12345678901234567890123456789, -3) == "12345678901234567890123456.789"  # no 28-digit rounding
    from bridge.mapping.functions import FunctionArgumentError

    for power in (0.5, 31, True):
        with pytest.raises(FunctionArgumentError):
            scale(1, power)


def test_mercadopago_mapping_reads_only_what_the_signature_covers() -> None:
    from bridge.mapping import load_mappings
    from bridge.providers.coverage import unsigned_reads
    from tests.harness import MAPPINGS

    mapping = load_mappings(MAPPINGS).get("mercadopago")
    assert mapping is not None
    assert unsigned_reads(mapping, build("mercadopago", ("s",), {})) == []


async def test_signed_request_helper_covers_every_new_provider() -> None:
    for provider in ("paystack", "fastspring", "maxio", "recharge", "mercadopago", "revenuecat"):
        body, headers = signed_request(provider, b'{"data": {"id": "1"}}', secret="s", now=NOW)
        assert headers and body
