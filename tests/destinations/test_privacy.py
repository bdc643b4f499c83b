"""bridge.privacy: each platform's published normalisation examples, already-hashed pass-through, the rule sets
and consent evaluation."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from bridge import privacy
from tests.destinations import events


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- Meta: the examples of the customer information parameters page, with Meta's published digests --------


@pytest.mark.parametrize(
    ("normalise", "raw", "country", "normalised", "digest"),
    [
        (
            privacy.email,
            "John_Smith@gmail.com",
            None,
            "john_smith@gmail.com",
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f",
        ),
        (
            privacy.phone_digits,
            "(650)555-1212",
            "US",
            "16505551212",
            "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176",
        ),
        (
            privacy.name_meta,
            "Mary",
            None,
            "mary",
            "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec",
        ),
        (
            privacy.name_meta,
            "정",
            None,
            "정",
            "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14",
        ),
        (
            privacy.name_meta,
            "Valéry",
            None,
            "valéry",
            "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c",
        ),
    ],
)
def test_meta_published_examples(
    normalise: privacy.Normaliser, raw: str, country: str | None, normalised: str, digest: str
) -> None:
    assert normalise(raw, country) == normalised
    assert privacy.sha256_hex(normalised) == digest


def test_meta_names_and_places() -> None:
    assert privacy.name_meta("  O'Brien-Smith ", None) == "obriensmith"
    assert privacy.name_meta("Vale\u0301ry", None) == "valéry"  # a decomposed accent hashes like the composed one
    assert privacy.city_meta("Menlo Park", "US") == "menlopark"
    assert privacy.city_meta("St. Louis", "US") == "stlouis"
    assert privacy.state_meta("California", "US") == "ca"
    assert privacy.state_meta("CA", "US") == "ca"
    assert privacy.state_meta("Île-de-France", "FR") == "îledefrance"
    assert privacy.zip_meta("94025-1234", "US") == "94025"
    assert privacy.zip_meta("SW1A 1AA", "GB") == "sw1a1"
    assert privacy.zip_meta("75008", "FR") == "75008"
    assert privacy.country_lower("US", None) == "us"
    assert privacy.country_lower("USA", None) is None


def test_meta_phone_needs_a_country_code() -> None:
    assert privacy.phone_digits("+44 20 7946 0018", None) == "442079460018"
    assert privacy.phone_digits("0044 20 7946 0018", None) == "442079460018"
    assert privacy.phone_digits("020 7946 0018", "GB") == "442079460018"  # national 0 dropped, 44 added
    assert privacy.phone_digits("(650)555-1212", None) is None  # no country to read it in: left out, not guessed
    assert privacy.phone_digits("not a phone", "US") is None


# -- Google: the user-provided data rules ---------------------------------------------------------------------


def test_google_email_drops_gmail_dots_only() -> None:
    assert privacy.email_google(" John.Smith@Gmail.com ", None) == "johnsmith@gmail.com"
    assert privacy.email_google("j.o.h.n@googlemail.com", None) == "john@googlemail.com"
    assert privacy.email_google("John.Smith@example.com", None) == "john.smith@example.com"
    assert privacy.email_google("no-at-sign", None) is None


def test_google_phone_is_e164_with_plus() -> None:
    assert privacy.phone_e164("(650) 555-1212", "US") == "+16505551212"
    assert privacy.phone_e164("+1 650 555 1212", None) == "+16505551212"
    assert privacy.phone_e164("650 555 1212", None) is None


def test_google_names_street_and_places() -> None:
    assert privacy.name_google(" Mary-Ann2 ", None) == "maryann"
    assert privacy.name_google("Anne Marie", None) == "anne marie"
    assert privacy.street_google("1600 Amphitheatre Pkwy.", None) == "1600 amphitheatre pkwy"
    assert privacy.place_google("Mountain View 3", None) == "mountain view"
    assert privacy.country_upper("us", None) == "US"


# -- hashing ----------------------------------------------------------------------------------------------


def test_already_hashed_values_pass_through_every_rule_set() -> None:
    digest = sha("bill.call@example.com")
    event: dict[str, Any] = {"customer": {"email": digest.upper(), "phone": sha("+18435550142")}}
    for rules, key in ((privacy.META, "em"), (privacy.GA4, "sha256_email_address"), (privacy.TIKTOK, "email")):
        assert privacy.apply(rules, event)[key] == digest  # lower-cased, not hashed twice
    assert privacy.apply(privacy.META, event)["ph"] == sha("+18435550142")


def test_rule_sets_differ_where_the_platforms_differ() -> None:
    event = events.purchase()  # phone "+1 (843) 555-0142", email "  Bill.Call@Example.com "
    meta = privacy.apply(privacy.META, event)
    ga4 = privacy.apply(privacy.GA4, event)
    tiktok = privacy.apply(privacy.TIKTOK, event)
    assert meta["ph"] == sha("18435550142")
    assert ga4["sha256_phone_number"] == sha("+18435550142") == tiktok["phone"]
    assert meta["em"] == sha("bill.call@example.com") == ga4["sha256_email_address"]
    assert meta["external_id"] == sha("cus_Q1w2E3r4")
    assert meta["st"] == sha("sc") and meta["zp"] == sha("29401") and meta["country"] == sha("us")
    assert meta["ct"] == sha("charleston")
    # never hashed for Meta
    assert meta["client_ip_address"] == "203.0.113.7"
    assert meta["client_user_agent"] == events.CHROME_UA
    # Google sends the place fields normalised but in clear
    assert (ga4["address.city"], ga4["address.region"], ga4["address.country"]) == ("charleston", "sc", "US")


def test_gmail_dots_change_the_google_hash_not_metas() -> None:
    event = {"customer": {"email": "Bill.Call@gmail.com"}}
    assert privacy.apply(privacy.GA4, event)["sha256_email_address"] == sha("billcall@gmail.com")
    assert privacy.apply(privacy.META, event)["em"] == sha("bill.call@gmail.com")


def test_browser_ids_are_checked_and_never_hashed() -> None:
    event = {"context": {"fbp": "fb.1.1596403881668.1116446470", "fbc": "fb.1.1554763741205.AbCdEfGh", "ip": "::1"}}
    meta = privacy.apply(privacy.META, event)
    assert meta == {
        "fbp": "fb.1.1596403881668.1116446470",
        "fbc": "fb.1.1554763741205.AbCdEfGh",
        "client_ip_address": "::1",
    }
    assert privacy.apply(privacy.META, {"context": {"fbc": "garbage", "ip": "not-an-ip"}}) == {}


def test_people_false_keeps_only_what_does_not_identify_the_person() -> None:
    assert privacy.apply(privacy.META, events.purchase(), people=False) == {"client_user_agent": events.CHROME_UA}


# -- consent ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("consent", "signal", "state"),
    [
        ({}, "ad_user_data", "unknown"),
        ({"marketing": False}, "ad_user_data", "unknown"),  # a newsletter opt-in says nothing about ads
        ({"marketing": False, "ad_user_data": True}, "ad_user_data", "granted"),
        ({"ad_user_data": False}, "ad_user_data", "denied"),
        ({"marketing": True}, "analytics", "unknown"),
        ({"analytics": False}, "analytics", "denied"),
    ],
)
def test_consent_state(consent: dict[str, bool], signal: str, state: str) -> None:
    assert privacy.consent_state({"consent": consent}, signal) == state


@pytest.mark.parametrize(
    ("policy", "consent", "share"),
    [
        ("respect", None, privacy.Share.ALL),
        ("respect", True, privacy.Share.ALL),
        ("respect", False, privacy.Share.ANONYMOUS),
        ("require", None, privacy.Share.NONE),
        ("require", False, privacy.Share.NONE),
        ("require", True, privacy.Share.ALL),
        ("ignore", False, privacy.Share.ALL),
    ],
)
def test_policies(policy: str, consent: bool | None, share: privacy.Share) -> None:
    event: dict[str, Any] = {"consent": {} if consent is None else {"analytics": consent}}
    assert privacy.sharing(event, policy, privacy.ANALYTICS_SIGNAL) is share


def test_anonymised_drops_every_person_field() -> None:
    anonymous = privacy.anonymised(events.purchase())
    assert "customer" not in anonymous
    assert set(anonymous["context"]) == {"page_url", "referrer", "landing_site", "utm_source", "utm_campaign"}
    assert anonymous["order"] == events.purchase()["order"]
