"""The dispatcher's per-destination lane health, as the ops routes and metrics read it.

`Dispatcher.lane_health(now)` reports, per destination, `paused_until` (a rate limit or Retry-After pause),
`stalled` (due work but no attempt for longer than the lease), `restarts` and `last_attempt_at`. A process
that runs without a dispatcher (ingest only) has no lanes.
"""

from __future__ import annotations

from typing import Any

from bridge.state import BridgeState


def lane_health(state: BridgeState) -> dict[str, Any]:
    """{destination: LaneHealth}; empty without a dispatcher (or one that does not report health)."""
    report = getattr(state.dispatcher, "lane_health", None)
    if report is None:
        return {}
    health: dict[str, Any] = report(state.clock.now())
    return health


def stalled(state: BridgeState) -> list[str]:
    """Destinations whose lane is stalled."""
    return sorted(name for name, lane in lane_health(state).items() if getattr(lane, "stalled", False))
