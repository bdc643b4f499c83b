"""`bridge demo --all`: the analytics and ad platforms beside the seed destinations — their strict sinks
(bridge.sinks), their destination entries, and one line per event a sink accepted. Kept apart from demo.py so
the seed demo reads as before."""

from __future__ import annotations

import secrets
from typing import Any

from bridge.sinks.amplitude import AmplitudeFake
from bridge.sinks.base import StrictFake
from bridge.sinks.ga4 import Ga4Fake
from bridge.sinks.meta_capi import MetaCapiFake
from bridge.sinks.mixpanel import MixpanelFake
from bridge.sinks.posthog import PostHogFake
from bridge.sinks.segment import SegmentFake
from bridge.sinks.tiktok import TikTokFake

MEASUREMENT_ID = "G-DEMO1234"
PIXEL_ID = "1234567890"
PIXEL_CODE = "CDEMO1234567890ABCDE"


def environment() -> dict[str, str]:
    """Fresh secrets for the platforms, as environment variables."""
    return {
        "GA4_API_SECRET": secrets.token_urlsafe(16),
        "META_CAPI_TOKEN": "EAA" + secrets.token_hex(24),
        "SEGMENT_WRITE_KEY": secrets.token_hex(16),
        "POSTHOG_API_KEY": "phc_" + secrets.token_hex(16),
        "MIXPANEL_TOKEN": secrets.token_hex(16),
        "MIXPANEL_API_SECRET": secrets.token_hex(16),
        "AMPLITUDE_API_KEY": secrets.token_hex(16),
        "TIKTOK_ACCESS_TOKEN": secrets.token_hex(20),
    }


def fakes(env: dict[str, str]) -> dict[str, StrictFake]:
    return {
        "ga4": Ga4Fake(MEASUREMENT_ID, env["GA4_API_SECRET"]),
        "meta": MetaCapiFake(PIXEL_ID, env["META_CAPI_TOKEN"]),
        "segment": SegmentFake(env["SEGMENT_WRITE_KEY"]),
        "posthog": PostHogFake(env["POSTHOG_API_KEY"]),
        "mixpanel": MixpanelFake(env["MIXPANEL_TOKEN"], env["MIXPANEL_API_SECRET"]),
        "amplitude": AmplitudeFake(env["AMPLITUDE_API_KEY"]),
        "tiktok": TikTokFake(PIXEL_CODE, env["TIKTOK_ACCESS_TOKEN"]),
    }


def destinations(sinks: dict[str, str]) -> dict[str, Any]:
    """The destinations: entries, every secret a ${VAR} reference as in production."""
    return {
        "ga4": {
            "type": "ga4",
            "url": sinks["ga4"],
            "measurement_id": MEASUREMENT_ID,
            "api_secret": "${GA4_API_SECRET}",
        },
        "meta": {"type": "meta_capi", "url": sinks["meta"], "pixel_id": PIXEL_ID, "access_token": "${META_CAPI_TOKEN}"},
        "segment": {"type": "segment", "url": sinks["segment"], "write_key": "${SEGMENT_WRITE_KEY}"},
        "posthog": {"type": "posthog", "url": sinks["posthog"], "api_key": "${POSTHOG_API_KEY}"},
        "mixpanel": {
            "type": "mixpanel",
            "url": sinks["mixpanel"],
            "project_token": "${MIXPANEL_TOKEN}",
            "api_secret": "${MIXPANEL_API_SECRET}",
        },
        "amplitude": {"type": "amplitude", "url": sinks["amplitude"], "api_key": "${AMPLITUDE_API_KEY}"},
        "tiktok": {
            "type": "tiktok",
            "url": sinks["tiktok"],
            "pixel_code": PIXEL_CODE,
            "access_token": "${TIKTOK_ACCESS_TOKEN}",
        },
    }


def _events(document: Any) -> list[Any]:
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        for key in ("data", "batch", "events"):
            if isinstance(document.get(key), list):
                return list(document[key])
    return []


def summarize(request: dict[str, Any]) -> list[str]:
    """One line per event in a request a platform sink accepted: name, dedup id, value."""
    lines = []
    for event in _events(request.get("json")):
        if not isinstance(event, dict):
            continue
        props = event.get("params") or event.get("properties") or event.get("custom_data") or {}
        name = event.get("event_name") or event.get("event") or event.get("event_type") or event.get("name")
        ident = (
            event.get("event_id")
            or event.get("messageId")
            or event.get("uuid")
            or event.get("insert_id")
            or props.get("$insert_id")
            or props.get("transaction_id")
        )
        value = props.get("value", props.get("revenue", event.get("revenue")))
        currency = props.get("currency", event.get("currency"))
        money = f" {value} {currency}" if value is not None else ""
        lines.append(f"{request['method']} {request['path']} → {request['status']}: {name} {ident or ''}{money}")
    return lines
