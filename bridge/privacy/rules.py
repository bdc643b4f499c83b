"""Each platform's rule set as data: which canonical path feeds which destination field, how it is normalised,
whether it is hashed and whether it identifies the person; and `apply`, which turns an event into those fields."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.privacy.normalise import (
    Normaliser,
    city_meta,
    click_id,
    country_lower,
    country_upper,
    email,
    email_google,
    fbc,
    fbp,
    ip_address,
    is_sha256,
    name_google,
    name_meta,
    phone_digits,
    phone_e164,
    place_google,
    postal_google,
    sha256_hex,
    state_meta,
    street_google,
    trimmed,
    user_agent,
    zip_meta,
)

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
