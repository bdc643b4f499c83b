"""Helpers for the analytics and ad platform destinations' tests: a destination built with a clock, and a
clock set shortly after a canonical event happened (their age limits read it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bridge.clock import ManualClock
from bridge.destinations import destination_class
from bridge.destinations.base import Destination
from tests.destinations.helpers import settings


def moment(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def clock_after(event: dict[str, Any], seconds: float = 60.0) -> ManualClock:
    """A clock `seconds` after the event's occurred_at."""
    return ManualClock(moment(event["occurred_at"]) + seconds)


def build(type_name: str, clock: ManualClock, url: str = "", **kwargs: Any) -> Any:
    options = kwargs.pop("options", {})
    destination: Destination = destination_class(type_name)(settings(type_name, url, options=options, **kwargs))
    destination.clock = clock
    return destination
