"""Personal data: normalisers, SHA-256 with already-hashed detection, consent evaluation, and each ad
platform's rule set as data.

Normalisation rules conflict between platforms (Meta wants a phone as `16505551212`, Google and TikTok as
`+16505551212`; Google drops the dots of a Gmail address, Meta does not), so nothing is normalised or hashed
once globally: a destination picks its rule set here and applies it to the raw canonical event when it renders.

A value that already is a SHA-256 hex digest (64 hex characters) is passed through (lower-cased), never hashed a
second time. A value that cannot be normalised (an email without `@`, a phone without a country that cannot be
told from the address) is left out rather than sent in a form that can never match.

Nothing here logs or puts a raw value in an exception message.

Destinations import this package; it never imports them. Modules: `normalise` (normalisers, hashing, reference
data), `rules` (each platform's rule set as data, `apply`), `consent` (policies and what may be shared).
"""

from bridge.privacy.consent import (
    AD_SIGNAL,
    ANALYTICS_SIGNAL,
    PERSON_PATHS,
    POLICIES,
    ConsentState,
    Share,
    anonymised,
    consent_state,
    sharing,
)
from bridge.privacy.normalise import (
    US_STATES,
    Normaliser,
    city_meta,
    click_id,
    country_lower,
    country_upper,
    email,
    email_google,
    fbc,
    fbp,
    ga_client_id,
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
from bridge.privacy.rules import GA4, META, TIKTOK, Rule, apply, customer_country

__all__ = [
    "AD_SIGNAL",
    "ANALYTICS_SIGNAL",
    "anonymised",
    "apply",
    "city_meta",
    "click_id",
    "consent_state",
    "ConsentState",
    "country_lower",
    "country_upper",
    "customer_country",
    "email",
    "email_google",
    "fbc",
    "fbp",
    "GA4",
    "ga_client_id",
    "ip_address",
    "is_sha256",
    "META",
    "name_google",
    "name_meta",
    "Normaliser",
    "PERSON_PATHS",
    "phone_digits",
    "phone_e164",
    "place_google",
    "POLICIES",
    "postal_google",
    "Rule",
    "sha256_hex",
    "Share",
    "sharing",
    "state_meta",
    "street_google",
    "TIKTOK",
    "trimmed",
    "US_STATES",
    "user_agent",
    "zip_meta",
]
