"""Consent: the per-destination policy (`consent: respect | require | ignore`), an event's consent state for the
signal a destination follows, and what it may then share of the event's personal data."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, Literal

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
