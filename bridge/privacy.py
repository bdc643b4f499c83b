"""Personal data: normalisers, SHA-256 with already-hashed detection, consent evaluation, and each ad
platform's rule set as data.

Normalisation rules conflict between platforms (Meta wants a phone as `16505551212`, Google and TikTok as
`+16505551212`; Google drops the dots of a Gmail address, Meta does not), so nothing is normalised or hashed
once globally: a destination picks its rule set here and applies it to the raw canonical event when it renders.

A value that already is a SHA-256 hex digest (64 hex characters) is passed through (lower-cased), never hashed a
second time. A value that cannot be normalised (an email without `@`, a phone without a country that cannot be
told from the address) is left out rather than sent in a form that can never match.

Nothing here logs or puts a raw value in an exception message.

Destinations import this module; it never imports them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

import phonenumbers

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


# -- hashing -----------------------------------------------------------------------------------------------


def is_sha256(value: str) -> bool:
    """Whether `value` (trimmed) already is a SHA-256 hex digest."""
    return bool(_SHA256.fullmatch(value.strip()))


def sha256_hex(value: str) -> str:
    """SHA-256 of the UTF-8 bytes, lower-case hex."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


# -- normalisers ---------------------------------------------------------------------------------------------
# Each takes the raw text and the customer's country (ISO alpha-2, or None) and returns the normalised text, or
# None when the value cannot be used.

Normaliser = Callable[[str, str | None], str | None]


def _letters(value: str, *, keep_digits: bool = False, keep_spaces: bool = False) -> str:
    """Only letters (any script; accents kept), optionally digits and spaces."""
    out = []
    for char in unicodedata.normalize("NFC", value):
        category = unicodedata.category(char)
        if category[0] in ("L", "M") or (keep_digits and category == "Nd") or (keep_spaces and char.isspace()):
            out.append(char)
    return "".join(out)


def email(value: str, country: str | None = None) -> str | None:
    """Trimmed, lower case (Meta, TikTok): `John_Smith@gmail.com` → `john_smith@gmail.com`."""
    text = value.strip().lower()
    return text if _EMAIL.fullmatch(text) else None


def email_google(value: str, country: str | None = None) -> str | None:
    """Google's rules: no spaces, lower case, and no dots in the local part of gmail.com / googlemail.com."""
    text = re.sub(r"\s", "", value).lower()
    if not _EMAIL.fullmatch(text):
        return None
    local, _, domain = text.rpartition("@")
    if domain in ("gmail.com", "googlemail.com"):
        local = local.replace(".", "")
    return f"{local}@{domain}" if local else None


def phone_e164(value: str, country: str | None = None) -> str | None:
    """E.164 with `+` (Google, TikTok). A number written without its country code is read in the customer's
    country; without one it is left out (a guess would hash to a different person or to no one)."""
    text = value.strip()
    if not text or len(text) > 40:
        return None
    if text.startswith("00"):
        text = "+" + text[2:]
    region = country.upper() if country and len(country) == 2 and country.isalpha() else None
    if not text.startswith("+") and region is None:
        return None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def phone_digits(value: str, country: str | None = None) -> str | None:
    """Meta: the country code and number as digits, no `+`, no leading zeros: `(650)555-1212` in the US →
    `16505551212`."""
    e164 = phone_e164(value, country)
    return e164[1:] if e164 else None


def name_meta(value: str, country: str | None = None) -> str | None:
    """Meta fn/ln: lower case, no punctuation or spaces, any script kept (`Valéry` → `valéry`)."""
    return _letters(value.strip().lower()) or None


def name_google(value: str, country: str | None = None) -> str | None:
    """Google first/last name: digits and symbols removed, lower case, trimmed."""
    return " ".join(_letters(value.lower(), keep_spaces=True).split()) or None


def street_google(value: str, country: str | None = None) -> str | None:
    """Google street: symbols removed (digits kept), lower case, trimmed."""
    return " ".join(_letters(value.lower(), keep_digits=True, keep_spaces=True).split()) or None


def city_meta(value: str, country: str | None = None) -> str | None:
    """Meta ct: lower case, no punctuation, digits or spaces (`Menlo Park` → `menlopark`)."""
    return _letters(value.strip().lower()) or None


def place_google(value: str, country: str | None = None) -> str | None:
    """Google city and region (sent unhashed): digits and symbols removed, lower case, trimmed."""
    return " ".join(_letters(value.lower(), keep_spaces=True).split()) or None


def state_meta(value: str, country: str | None = None) -> str | None:
    """Meta st: the 2-letter ANSI code in lower case for US states (full names are looked up); elsewhere the
    name in lower case without punctuation or spaces."""
    letters = _letters(value.strip().lower(), keep_spaces=True)
    compact = "".join(letters.split())
    if len(compact) == 2 and compact.isascii():
        return compact
    if country in (None, "US", "us"):
        code = US_STATES.get(" ".join(letters.split()))
        if code:
            return code
    return compact or None


def zip_meta(value: str, country: str | None = None) -> str | None:
    """Meta zp: lower case without spaces or dashes; US: the first 5 digits; UK: area, district and sector
    (`SW1A 1AA` → `sw1a1`)."""
    text = value.strip().lower()
    upper_country = (country or "").upper()
    if upper_country == "US":
        digits = re.sub(r"\D", "", text.split("-")[0])
        return digits[:5] if len(digits) >= 5 else None
    if upper_country == "GB":
        parts = text.split()
        compact = "".join(parts)
        if len(compact) >= 5:
            return compact[:-2]  # the inward code's unit (last two letters) goes; its sector digit stays
    compact = re.sub(r"[\s\-]", "", text)
    return compact or None


def postal_google(value: str, country: str | None = None) -> str | None:
    """Google postal_code (unhashed): trimmed, otherwise as written (Google publishes no further rule)."""
    return value.strip() or None


def country_lower(value: str, country: str | None = None) -> str | None:
    """ISO 3166-1 alpha-2 in lower case (Meta)."""
    text = value.strip().lower()
    return text if len(text) == 2 and text.isascii() and text.isalpha() else None


def country_upper(value: str, country: str | None = None) -> str | None:
    """ISO 3166-1 alpha-2 in upper case (Google)."""
    text = country_lower(value)
    return text.upper() if text else None


def trimmed(value: str, country: str | None = None) -> str | None:
    """Trimmed, case kept (ids are case-sensitive)."""
    return value.strip() or None


def ip_address(value: str, country: str | None = None) -> str | None:
    """A valid IPv4/IPv6 address in its standard form; anything else is left out."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def user_agent(value: str, country: str | None = None) -> str | None:
    text = value.strip()
    return text if 0 < len(text) <= 1024 and text.isprintable() else None


_FBP = re.compile(r"fb\.\d\.\d{10,13}\.\d+")
_FBC = re.compile(r"fb\.\d\.\d{13}\.[^\s]+")


def fbp(value: str, country: str | None = None) -> str | None:
    """Meta's `_fbp` cookie value, unaltered (`fb.1.1596403881668.1116446470`); malformed values left out."""
    text = value.strip()
    return text if _FBP.fullmatch(text) else None


def fbc(value: str, country: str | None = None) -> str | None:
    """Meta's `_fbc` cookie value, unaltered (the fbclid in it is case-sensitive)."""
    text = value.strip()
    return text if _FBC.fullmatch(text) and len(text) <= 500 else None


def click_id(value: str, country: str | None = None) -> str | None:
    """A click id (gclid, ttclid, fbclid): printable, no spaces, at most 500 characters, case kept."""
    text = value.strip()
    return text if 0 < len(text) <= 500 and text.isprintable() and " " not in text else None


def ga_client_id(value: str, country: str | None = None) -> str | None:
    """GA4's client id `1234567890.1234567890`, also from a whole `_ga` cookie (`GA1.1.1234567890.1234567890`)."""
    text = value.strip()
    match = re.fullmatch(r"(?:GA\d\.\d+\.)?(\d+\.\d+)", text)
    if match:
        return match.group(1)
    return text if 0 < len(text) <= 100 and text.isprintable() and " " not in text else None


# -- rule sets -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """One destination field: where its raw value comes from (the first non-empty canonical path), how it is
    normalised, whether it is hashed, and whether it identifies the person (left out when consent is denied)."""

    target: str
    sources: tuple[str, ...]
    normalise: Normaliser
    hashed: bool
    person: bool = True


def _rule(
    target: str, source: str | tuple[str, ...], normalise: Normaliser, *, hashed: bool, person: bool = True
) -> Rule:
    return Rule(target, (source,) if isinstance(source, str) else source, normalise, hashed, person)


_EXTERNAL_ID = ("customer.external_id", "customer.id")
_REGION = ("customer.address.region_code", "customer.address.region")

#: Meta Conversions API `user_data` (customer information parameters). Hashed: em ph fn ln ct st zp country
#: external_id; never hashed: client_ip_address client_user_agent fbc fbp.
META: tuple[Rule, ...] = (
    _rule("em", "customer.email", email, hashed=True),
    _rule("ph", "customer.phone", phone_digits, hashed=True),
    _rule("fn", "customer.first_name", name_meta, hashed=True),
    _rule("ln", "customer.last_name", name_meta, hashed=True),
    _rule("ct", "customer.address.city", city_meta, hashed=True),
    _rule("st", _REGION, state_meta, hashed=True),
    _rule("zp", "customer.address.postal_code", zip_meta, hashed=True),
    _rule("country", "customer.address.country_code", country_lower, hashed=True),
    _rule("external_id", _EXTERNAL_ID, trimmed, hashed=True),
    _rule("client_ip_address", "context.ip", ip_address, hashed=False),
    _rule("client_user_agent", "context.user_agent", user_agent, hashed=False, person=False),
    _rule("fbp", "context.fbp", fbp, hashed=False),
    _rule("fbc", "context.fbc", fbc, hashed=False),
)

#: GA4 Measurement Protocol `user_data` (user-provided data): hashed email, phone, names and street; city,
#: region, postal code and country normalised but sent in clear.
GA4: tuple[Rule, ...] = (
    _rule("sha256_email_address", "customer.email", email_google, hashed=True),
    _rule("sha256_phone_number", "customer.phone", phone_e164, hashed=True),
    _rule("address.sha256_first_name", "customer.first_name", name_google, hashed=True),
    _rule("address.sha256_last_name", "customer.last_name", name_google, hashed=True),
    _rule("address.sha256_street", "customer.address.line1", street_google, hashed=True),
    _rule("address.city", "customer.address.city", place_google, hashed=False),
    _rule("address.region", _REGION, place_google, hashed=False),
    _rule("address.postal_code", "customer.address.postal_code", postal_google, hashed=False),
    _rule("address.country", "customer.address.country_code", country_upper, hashed=False),
)

#: TikTok Events API 2.0 `user`: hashed email, phone (E.164 with `+`) and external id; ip, user agent and
#: click/cookie ids in clear.
TIKTOK: tuple[Rule, ...] = (
    _rule("email", "customer.email", email, hashed=True),
    _rule("phone", "customer.phone", phone_e164, hashed=True),
    _rule("external_id", _EXTERNAL_ID, trimmed, hashed=True),
    _rule("ttclid", "context.ttclid", click_id, hashed=False),
    _rule("ttp", "context.ttp", click_id, hashed=False),
    _rule("ip", "context.ip", ip_address, hashed=False),
    _rule("user_agent", "context.user_agent", user_agent, hashed=False, person=False),
)


def _raw(event: Mapping[str, Any], path: str) -> str | None:
    node: Any = event
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    if isinstance(node, bool) or node is None:
        return None
    if isinstance(node, int):
        node = str(node)
    return node if isinstance(node, str) and node.strip() else None


def customer_country(event: Mapping[str, Any]) -> str | None:
    country = _raw(event, "customer.address.country_code")
    return country.strip().upper() if country and len(country.strip()) == 2 else None


def apply(rules: Sequence[Rule], event: Mapping[str, Any], *, people: bool = True) -> dict[str, str]:
    """`{target: value}` for every rule with a usable value: hashed rules give SHA-256 hex (an input that
    already is one passes through), the others the normalised text. `people=False` leaves out every rule
    that identifies the person (consent denied)."""
    country = customer_country(event)
    out: dict[str, str] = {}
    for rule in rules:
        if rule.person and not people:
            continue
        raw = next((value for value in (_raw(event, path) for path in rule.sources) if value), None)
        if raw is None:
            continue
        if rule.hashed and is_sha256(raw):
            out[rule.target] = raw.strip().lower()
            continue
        normalised = rule.normalise(raw, country)
        if normalised is None:
            continue
        out[rule.target] = sha256_hex(normalised) if rule.hashed else normalised
    return out


# -- consent -------------------------------------------------------------------------------------------------

ConsentState = Literal["granted", "denied", "unknown"]
#: per-destination `consent:` option values
POLICIES = ("respect", "require", "ignore")
#: the consent signal each kind of destination follows
AD_SIGNAL = "ad_user_data"
ANALYTICS_SIGNAL = "analytics"
#: canonical fields that identify a person: left out of an event whose consent was denied
PERSON_PATHS = (
    "customer",
    "context.ip",
    "context.user_agent",
    "context.visitor_id",
    "context.session_id",
    "context.client_id",
    "context.gclid",
    "context.fbclid",
    "context.msclkid",
    "context.ttclid",
    "context.fbp",
    "context.fbc",
    "context.ttp",
)


class Share(Enum):
    """What a destination may send of an event's personal data."""

    ALL = "all"  #: everything its rules take
    ANONYMOUS = "anonymous"  #: the event without anything that identifies the person
    NONE = "none"  #: not the event at all


def consent_state(event: Mapping[str, Any], signal: str) -> ConsentState:
    """`granted`, `denied` or `unknown` for one consent signal. `marketing` never stands in for the ad signals:
    providers report it as the buyer's opt-in to marketing messages (Shopify's buyer_accepts_marketing,
    Stripe Checkout's promotions), which says nothing about ad measurement either way."""
    consent = event.get("consent")
    if not isinstance(consent, Mapping):
        return "unknown"
    value = consent.get(signal)
    if value is True:
        return "granted"
    if value is False:
        return "denied"
    return "unknown"


def sharing(event: Mapping[str, Any], policy: str, signal: str) -> Share:
    """The policy applied to the event's consent for `signal`:
    respect (default): denied → ANONYMOUS, granted or unknown → ALL;
    require: granted → ALL, denied or unknown → NONE (the event is not sent);
    ignore: ALL."""
    if policy == "ignore":
        return Share.ALL
    state = consent_state(event, signal)
    if policy == "require":
        return Share.ALL if state == "granted" else Share.NONE
    return Share.ANONYMOUS if state == "denied" else Share.ALL


def anonymised(event: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the event without the fields that identify the person (PERSON_PATHS)."""
    out: dict[str, Any] = {key: value for key, value in event.items() if key != "customer"}
    context = event.get("context")
    if isinstance(context, Mapping):
        personal = {path.split(".", 1)[1] for path in PERSON_PATHS if path.startswith("context.")}
        out["context"] = {key: value for key, value in context.items() if key not in personal}
    return out


# -- reference data ------------------------------------------------------------------------------------------

#: US state, district and territory names → USPS/ANSI 2-letter codes (lower case, as Meta wants them)
US_STATES: Mapping[str, str] = {
    "alabama": "al",
    "alaska": "ak",
    "arizona": "az",
    "arkansas": "ar",
    "california": "ca",
    "colorado": "co",
    "connecticut": "ct",
    "delaware": "de",
    "district of columbia": "dc",
    "florida": "fl",
    "georgia": "ga",
    "hawaii": "hi",
    "idaho": "id",
    "illinois": "il",
    "indiana": "in",
    "iowa": "ia",
    "kansas": "ks",
    "kentucky": "ky",
    "louisiana": "la",
    "maine": "me",
    "maryland": "md",
    "massachusetts": "ma",
    "michigan": "mi",
    "minnesota": "mn",
    "mississippi": "ms",
    "missouri": "mo",
    "montana": "mt",
    "nebraska": "ne",
    "nevada": "nv",
    "new hampshire": "nh",
    "new jersey": "nj",
    "new mexico": "nm",
    "new york": "ny",
    "north carolina": "nc",
    "north dakota": "nd",
    "ohio": "oh",
    "oklahoma": "ok",
    "oregon": "or",
    "pennsylvania": "pa",
    "rhode island": "ri",
    "south carolina": "sc",
    "south dakota": "sd",
    "tennessee": "tn",
    "texas": "tx",
    "utah": "ut",
    "vermont": "vt",
    "virginia": "va",
    "washington": "wa",
    "west virginia": "wv",
    "wisconsin": "wi",
    "wyoming": "wy",
    "american samoa": "as",
    "guam": "gu",
    "northern mariana islands": "mp",
    "puerto rico": "pr",
    "us virgin islands": "vi",
    "united states virgin islands": "vi",
}
