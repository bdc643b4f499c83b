"""Clocks. Everything that depends on time takes a clock, so tests move time instead of sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    #: clock seconds per real second (1 for the wall clock); waits are divided by it
    scale: float

    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    """The wall clock."""

    scale = 1.0

    def now(self) -> float:
        return time.time()


class ScaledClock:
    """A clock running `scale` times faster than real time, from `start` (default: now). Lets a test or
    simulation live through minutes of rate limits in seconds, with every party reading the same clock."""

    def __init__(self, scale: float, start: float | None = None) -> None:
        self.scale = scale
        self._origin = time.time() if start is None else start
        self._t0 = time.monotonic()

    def now(self) -> float:
        return self._origin + (time.monotonic() - self._t0) * self.scale


class ManualClock:
    """A clock that only moves when told to (for tests and simulations)."""

    scale = 1.0

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def set(self, value: float) -> None:
        self._now = value
