"""The dispatcher's per-destination lane health, as the ops routes, the status page and the metrics read it.

`Dispatcher.lane_health(now)` reports, per destination, `paused_until` (a rate limit or Retry-After pause),
`stalled` (due work but no attempt for longer than the lease), `restarts` and `last_attempt_at`. A process
that runs without a dispatcher (ingest only) has no lanes.
"""

from __future__ import annotations

from bridge.lanes import LaneHealth
from bridge.state import BridgeState


def lane_health(state: BridgeState) -> dict[str, LaneHealth]:
    """{destination: LaneHealth}; empty without a dispatcher."""
    if state.dispatcher is None:
        return {}
    return state.dispatcher.lane_health(state.clock.now())


def stalled(state: BridgeState) -> list[str]:
    """Destinations whose lane is stalled."""
    return sorted(name for name, lane in lane_health(state).items() if lane.stalled)
