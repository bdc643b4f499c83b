"""Normalisers of personal data fields (email, phone, names, address parts, click and browser ids) and SHA-256
with already-hashed detection. A value that cannot be normalised is None (left out, never sent unusable); nothing
here logs or puts a raw value in an exception message."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import unicodedata
from collections.abc import Callable, Mapping

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
