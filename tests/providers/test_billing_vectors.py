"""The signature vectors of the app-store and billing providers (tests/providers/vectors/, copies of
shared/fixtures/signature-vectors/), and Apple's own chain and notification test data.

OFFICIAL = from the provider's own SDK tests; DERIVED = computed from the documented scheme (labelled in each
test id). Braintree's one official vector is its webhook verification challenge; Apple's are the signed test
notifications and the chain constants of app-store-server-library-python's tests.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography import x509

from bridge.errors import SignatureError
from bridge.providers.apple_app_store import AppleAppStoreProvider, apple_root_g3, verify_chain
from bridge.providers.base import SourceSettings
from bridge.providers.braintree import challenge_response
from tests.providers.apple_signing import APPLE
from tests.providers.cases import FIXTURES, build, vector

# -- Braintree -----------------------------------------------------------------------------------------------


def test_official_braintree_challenge_vector() -> None:
    v = vector("braintree.json")["vectors"][0]
    assert challenge_response(v["public_key"], v["private_key"], v["challenge"]) == v["expected_response"]
    with pytest.raises(SignatureError):
        challenge_response(v["public_key"], v["private_key"], "not-hex-" + v["challenge"])


_BRAINTREE = [v for v in vector("braintree.json")["vectors"] if "bt_payload" in v]


@pytest.mark.parametrize("v", _BRAINTREE, ids=lambda v: f"derived-{v.get('kind', 'parse')}")
async def test_derived_braintree_vectors(v: dict[str, Any]) -> None:
    provider = build("braintree", (v["private_key"],), {"public_key": v["public_key"]})
    body = urlencode({"bt_signature": v["bt_signature"], "bt_payload": v["bt_payload"]}).encode()
    await provider.verify(body, {}, 0.0)
    [event] = provider.parse(body, {})
    assert event.event_type == (v.get("kind") or "subscription_went_past_due")
    # the pair of another public key does not count, even with the right private key
    other = build("braintree", (v["private_key"],), {"public_key": "someone_else"})
    with pytest.raises(SignatureError, match="no signature for the configured public key"):
        await other.verify(body, {}, 0.0)


def test_derived_braintree_fixture_bodies_are_the_vectors() -> None:
    """fixtures/braintree/<kind>.form are the vectors' signed pairs, form-encoded as Braintree posts them."""
    kinds = [v for v in _BRAINTREE if "kind" in v]
    assert len(kinds) == 8
    for v in kinds:
        body = (FIXTURES / f"braintree/{v['kind']}.form").read_bytes()
        assert body == urlencode({"bt_signature": v["bt_signature"], "bt_payload": v["bt_payload"]}).encode()
        assert f"<kind>{v['kind']}</kind>".encode() in base64.decodebytes(v["bt_payload"].encode())


async def test_braintree_payload_signed_with_a_trailing_newline_verifies() -> None:
    """Braintree's SDKs accept a bt_payload whose signature covers payload + "\\n" (some senders add it)."""
    v = _BRAINTREE[0]
    key = hashlib.sha1(v["private_key"].encode()).digest()
    import hmac

    digest = hmac.new(key, v["bt_payload"].encode() + b"\n", hashlib.sha1).hexdigest()
    body = urlencode({"bt_signature": f"{v['public_key']}|{digest}", "bt_payload": v["bt_payload"]}).encode()
    await build("braintree", (v["private_key"],), {"public_key": v["public_key"]}).verify(body, {}, 0.0)


# -- digest schemes: Paystack, FastSpring, Recharge, Maxio -----------------------------------------------------


def _body(v: dict[str, Any]) -> bytes:
    if "payload" in v:
        return str(v["payload"]).encode()
    return (FIXTURES / v["payload_file"].removeprefix("fixtures/")).read_bytes()


@pytest.mark.parametrize("index", [0, 1], ids=["derived-fixture-bytes", "derived-compact"])
async def test_derived_paystack_vectors(index: int) -> None:
    v = vector("paystack.json")["vectors"][index]
    provider = build("paystack", (v["secret"],), {})
    await provider.verify(_body(v), {"x-paystack-signature": v["expected_signature"]}, 0.0)


@pytest.mark.parametrize("index", [0, 1], ids=["derived-fixture-bytes", "derived-compact"])
async def test_derived_fastspring_vectors(index: int) -> None:
    v = vector("fastspring.json")["vectors"][index]
    provider = build("fastspring", (v["secret"],), {})
    await provider.verify(_body(v), {"x-fs-signature": v["expected_signature"]}, 0.0)
    assert [e.event_type for e in provider.parse(_body(v), {})][0] in ("return.created", "order.completed")


async def test_derived_recharge_vector_is_a_plain_sha256_not_an_hmac() -> None:
    v = vector("recharge.json")["vectors"][0]
    headers = {"x-recharge-hmac-sha256": v["expected_signature"], "x-recharge-topic": "subscription/created"}
    await build("recharge", (v["client_secret"],), {}).verify(v["payload"].encode(), headers, 0.0)
    import hmac

    as_hmac = hmac.new(v["client_secret"].encode(), v["payload"].encode(), hashlib.sha256).hexdigest()
    with pytest.raises(SignatureError):
        await build("recharge", (v["client_secret"],), {}).verify(
            v["payload"].encode(), {**headers, "x-recharge-hmac-sha256": as_hmac}, 0.0
        )


async def test_derived_maxio_vector_and_the_official_bodies() -> None:
    data = vector("chargify-maxio.json")["vectors"]
    v = data[0]
    provider = build("maxio", (v["secret"],), {})
    header = "x-chargify-webhook-signature-hmac-sha-256"
    await provider.verify(v["payload"].encode(), {header: v["expected_hmac_sha256_hex"]}, 0.0)
    [event] = provider.parse(v["payload"].encode(), {})
    assert (event.event_id, event.event_type) == ("123", "signup_success")
    assert event.document["payload"] == {"subscription": {"id": "1"}}
    # Maxio's documented bodies carry real signatures under an unpublished key: they must not verify with ours
    for item in data[1]["items"]:
        body = (
            FIXTURES / item["payload_file"].removeprefix("fixtures/").replace(".form-body.txt", ".form")
        ).read_bytes()
        with pytest.raises(SignatureError):
            await provider.verify(body, {header: item["signature_hmac_sha_256"]}, 0.0)
        # the legacy MD5 header is not accepted at all
        with pytest.raises(SignatureError):
            await provider.verify(body, {"x-chargify-webhook-signature": item["signature_md5_legacy"]}, 0.0)


# -- Mercado Pago ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1], ids=["derived-full-manifest", "derived-without-request-id"])
async def test_derived_mercadopago_vectors(index: int) -> None:
    v = vector("mercadopago.json")["vectors"][index]
    body = json.dumps({"type": "payment", "action": "payment.created", "data": {"id": v["data_id_query"]}}).encode()
    headers = {"x-signature": v["x_signature"]}
    if "x_request_id" in v:
        headers["x-request-id"] = v["x_request_id"]
    provider = build("mercadopago", (v["secret"],), {})
    await provider.verify(body, headers, float(v["ts"]))
    # the manifest binds data.id: the same signature for another payment is refused
    other = json.dumps({"type": "payment", "data": {"id": v["data_id_query"] + "1"}}).encode()
    with pytest.raises(SignatureError):
        await provider.verify(other, headers, float(v["ts"]))


async def test_mercadopago_alphanumeric_ids_are_signed_lower_case_and_ms_timestamps_read_as_ms() -> None:
    import hmac

    from bridge.providers.mercadopago import manifest

    secret = "mp_test_webhook_secret"
    ts_ms = "1704908010123"
    signature = hmac.new(secret.encode(), manifest("ord01abc", "req-1", ts_ms), hashlib.sha256).hexdigest()
    body = json.dumps({"type": "order", "data": {"id": "ORD01ABC"}}).encode()
    headers = {"x-signature": f"ts={ts_ms},v1={signature}", "x-request-id": "req-1"}
    await build("mercadopago", (secret,), {}, tolerance=300).verify(body, headers, 1704908010.0)
    with pytest.raises(SignatureError, match="timestamp"):
        await build("mercadopago", (secret,), {}, tolerance=300).verify(body, headers, 1704908010.0 + 400)


# -- RevenueCat -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1], ids=["derived-equal", "derived-mismatch"])
async def test_derived_revenuecat_authorization_vectors(index: int) -> None:
    v = vector("revenuecat.json")["vectors"][index]
    provider = build("revenuecat", (v["configured_authorization"],), {})
    headers = {"authorization": v["request_header"].partition(": ")[2]}
    body = (FIXTURES / "revenuecat/INITIAL_PURCHASE.json").read_bytes()
    if v["expect"] == "valid":
        await provider.verify(body, headers, 0.0)
    else:
        with pytest.raises(SignatureError):
            await provider.verify(body, headers, 0.0)


# -- Apple ----------------------------------------------------------------------------------------------------------

TEST_ROOT = (APPLE / "testCA.der").read_bytes()
SIGNED_AT = 1_700_000_000.0  # inside the validity of Apple's test chain (2023-01-05 .. 2033-01-01)


def apple(environment: str = "Sandbox", **options: Any) -> AppleAppStoreProvider:
    settings = SourceSettings(
        "apple", "apple_app_store", options={"bundle_id": "com.example", "environment": environment, **options}
    )
    return AppleAppStoreProvider(settings, trusted_roots=[TEST_ROOT])


def _notification(name: str) -> bytes:
    return json.dumps({"signedPayload": (APPLE / name).read_text()}).encode()


async def test_official_apple_test_notification_verifies_against_the_test_root() -> None:
    body = _notification("TEST.signedPayload.jws")
    provider = apple()
    await provider.verify(body, {}, SIGNED_AT)
    [event] = provider.parse(body, {})
    assert (event.event_id, event.event_type) == ("9ad56bd2-0bc6-42e0-af24-fd996d87a1e6", "TEST")


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"environment": "Production", "app_apple_id": 1234}, "environment"),
        ({"environment": "Production", "app_apple_id": 1235}, "appAppleId"),
        ({"bundle_id": "com.examplex"}, "bundleId"),
    ],
    ids=["official-production-verifier", "official-app-apple-id-1235", "official-other-bundle"],
)
async def test_official_apple_test_notification_for_another_app_or_environment(
    options: dict[str, Any], reason: str
) -> None:
    environment = options.pop("environment", "Sandbox")
    with pytest.raises(SignatureError, match=reason):
        await apple(environment, **options).verify(_notification("TEST.signedPayload.jws"), {}, SIGNED_AT)


@pytest.mark.parametrize(
    ("name", "reason"),
    [("TEST.wrongBundleId.invalid.jws", "bundleId"), ("TEST.missingX5CHeaderClaim.invalid.jws", "x5c")],
    ids=["official-wrong-bundle-id", "official-missing-x5c"],
)
async def test_official_apple_invalid_notifications(name: str, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        await apple().verify(_notification(name), {}, SIGNED_AT)


@pytest.mark.parametrize("name", ["JWSTransaction.signedTransactionInfo.jws", "JWSRenewalInfo.signedRenewalInfo.jws"])
def test_official_apple_nested_jws_vectors(name: str) -> None:
    payload = apple().verified((APPLE / name).read_text(), SIGNED_AT, name)
    assert payload["environment"] == "Sandbox" and payload["signedDate"] == 1672956154000


@pytest.mark.parametrize("token", ["a.b.c.d", "a.b.c", "", "x" * 70_000])
def test_official_apple_malformed_tokens(token: str) -> None:
    with pytest.raises(SignatureError):
        apple().verified(token, SIGNED_AT, "signedPayload")


async def test_apple_test_notification_is_refused_by_the_shipped_apple_root() -> None:
    assert hashlib.sha256(apple_root_g3()).hexdigest().upper().startswith("63343ABFB89A6A03EBB57E9B3F5FA7BE")
    settings = SourceSettings(
        "apple", "apple_app_store", options={"bundle_id": "com.example", "environment": "Sandbox"}
    )
    with pytest.raises(SignatureError, match="trusted root"):
        await AppleAppStoreProvider(settings).verify(_notification("TEST.signedPayload.jws"), {}, SIGNED_AT)


CHAINS = vector("apple-x509-chains.json")
CERTS = CHAINS["certificates"]


def _chain(*names: str) -> list[str]:
    return [CERTS[f"{name}_BASE64_ENCODED"] for name in names]


def _root(name: str) -> x509.Certificate:
    return x509.load_der_x509_certificate(base64.b64decode(CERTS[f"{name}_BASE64_ENCODED"]))


def test_official_apple_valid_chain_gives_the_leaf_key() -> None:
    from cryptography.hazmat.primitives import serialization

    chain = verify_chain(_chain("LEAF_CERT", "INTERMEDIATE_CA", "ROOT_CA"), [_root("ROOT_CA")])
    pem = chain.key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert pem.decode() == CHAINS["leaf_public_key_pem"]
    assert chain.valid_from <= CHAINS["effective_date"] <= chain.valid_until
    assert not chain.valid_from <= CHAINS["expired_effective_date"] <= chain.valid_until  # test_valid_expired_chain


@pytest.mark.parametrize(
    ("names", "root"),
    [
        (("LEAF_CERT_FOR_INTERMEDIATE_CA_INVALID_OID", "INTERMEDIATE_CA_INVALID_OID", "ROOT_CA"), "ROOT_CA"),
        (("LEAF_CERT_INVALID_OID", "INTERMEDIATE_CA", "ROOT_CA"), "ROOT_CA"),
        (("INTERMEDIATE_CA", "ROOT_CA"), "ROOT_CA"),
        (("LEAF_CERT", "INTERMEDIATE_CA", "ROOT_CA"), "REAL_APPLE_ROOT"),
    ],
    ids=["official-intermediate-oid", "official-leaf-oid", "official-chain-length", "official-other-root"],
)
def test_official_apple_invalid_chains(names: tuple[str, ...], root: str) -> None:
    with pytest.raises(SignatureError):
        verify_chain(_chain(*names), [_root(root)])


def test_official_apple_invalid_certificate_data() -> None:
    for bad in ("abc", base64.b64encode(b"abc").decode()):
        with pytest.raises(SignatureError):
            verify_chain(
                [bad, CERTS["INTERMEDIATE_CA_BASE64_ENCODED"], CERTS["ROOT_CA_BASE64_ENCODED"]], [_root("ROOT_CA")]
            )


def test_official_real_apple_chain_verifies_to_the_shipped_root_g3() -> None:
    """Apple's production chain from the library tests (WWDR G6 -> App Store receipt signing) anchors on the
    Apple Root CA - G3 shipped in the package (OCSP, which the library test also does, is not checked here)."""
    shipped = x509.load_der_x509_certificate(apple_root_g3())
    chain = verify_chain(
        _chain("REAL_APPLE_SIGNING_CERTIFICATE", "REAL_APPLE_INTERMEDIATE", "REAL_APPLE_ROOT"), [shipped]
    )
    assert chain.valid_from <= CHAINS["effective_date"] <= chain.valid_until
    with pytest.raises(SignatureError):
        verify_chain(
            _chain("REAL_APPLE_SIGNING_CERTIFICATE", "REAL_APPLE_INTERMEDIATE", "REAL_APPLE_ROOT"), [_root("ROOT_CA")]
        )
