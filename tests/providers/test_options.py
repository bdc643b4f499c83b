"""Provider options are validated when the source is built (OptionError names the key)."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.providers.base import OptionError
from tests.providers.cases import build

ADYEN_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.mark.parametrize(
    ("provider_type", "secrets", "options", "key"),
    [
        ("square", ("k",), {}, "notification_url"),
        ("square", ("k",), {"notification_url": "/webhooks/square"}, "notification_url"),
        ("square", ("k",), {"notification_url": "ftp://x/y"}, "notification_url"),
        ("paypal", ("",), {}, "webhook_id"),
        ("chargebee", (), {"password": "p"}, "username"),
        ("chargebee", (), {"username": "a:b", "password": "p"}, "username"),
        ("chargebee", (), {"username": "u"}, "password"),
        ("chargebee", (), {"username": "u", "password": ["", "x"]}, "password"),
        ("adyen", ("not-hex",), {}, "secrets"),
        ("adyen", (ADYEN_KEY,), {"username": "u"}, "password"),
        (
            "standard_webhooks",
            ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",),
            {"secret_encoding": "hex"},
            "secret_encoding",
        ),
        ("standard_webhooks", ("whsec_",), {}, "secrets"),
        ("woocommerce", ("s",), {"accept_ping": "yes"}, "accept_ping"),
        ("checkout_com", ("s",), {"authorization": 42}, "authorization"),
        ("generic_hmac", ("s",), {}, "header"),
        ("generic_hmac", ("s",), {"header": "X-Sig", "algorithm": "md5"}, "algorithm"),
        ("generic_hmac", ("s",), {"header": "X-Sig", "encoding": "base32"}, "encoding"),
        ("generic_hmac", ("s",), {"header": "X-Sig", "signed_content": "{timestamp}"}, "signed_content"),
        ("generic_hmac", ("s",), {"header": "X-Sig", "signed_content": "{timestamp}.{body}"}, "signed_content"),
        ("generic_hmac", ("s",), {"header": "X-Sig", "signed_content": "{id}.{body}"}, "signed_content"),
        ("generic_hmac", ("s",), {"header": "X-Sig", "signed_content": "{nonce}.{body}"}, "signed_content"),
        ("generic_hmac", ("s",), {"header": "X-Sig", "signed_content": "{body!r}"}, "signed_content"),
        ("generic_hmac", ("s",), {"header": "X-Sig", "signed_content": "{body"}, "signed_content"),
        ("generic_hmac", ("s",), {"header": "X-Sig", "id_path": "data.[id"}, "id_path"),
        ("generic_hmac", ("s",), {"header": "X-Sig", "type_path": ""}, "type_path"),
        ("generic_hmac", ("s",), {"header": "X-Sig", "prefix": 1}, "prefix"),
        ("generic_hmac", ("s",), {"header": "X-Sig", "timestamp_unit": "us"}, "timestamp_unit"),
    ],
)
def test_bad_options_raise_option_error(
    provider_type: str, secrets: tuple[str, ...], options: dict[str, Any], key: str
) -> None:
    with pytest.raises(OptionError) as raised:
        build(provider_type, secrets, options)
    assert raised.value.key == key


def test_tolerance_defaults() -> None:
    assert build("paddle", ("s",), {}).tolerance == 300.0
    assert build("paddle", ("s",), {}, tolerance=5).tolerance == 5
    assert build("recurly", ("s",), {}).tolerance == 300.0
    assert build("standard_webhooks", (SW_SECRET,), {}).tolerance == 300.0
    assert build("paypal", ("WH",), {}).tolerance == 300.0  # safe by default: the window is on
    assert build("generic_hmac", ("s",), {"header": "X-Sig"}).tolerance is None
    assert build("generic_hmac", ("s",), {"header": "X-Sig", "timestamp_header": "X-Ts"}).tolerance == 300.0
    assert build("generic_hmac", ("s",), {"header": "X-Sig", "timestamp_header": "X-Ts"}, tolerance=60).tolerance == 60
    for name in ("shopify", "lemonsqueezy", "razorpay", "gocardless", "woocommerce", "checkout_com", "mollie"):
        assert build(name, ("s",), {}).tolerance is None, name


def test_options_are_documented() -> None:
    from bridge.providers import provider_class

    assert set(provider_class("generic_hmac").options) >= {"header", "algorithm", "signed_content", "id_path"}
    assert set(provider_class("square").options) == {"notification_url"}
    assert set(provider_class("paypal").options) == {"webhook_id", "allow_simulator"}
    assert set(provider_class("chargebee").options) == {"username", "password"}
    assert not provider_class("chargebee").requires_secrets
    assert not provider_class("paypal").requires_secrets
