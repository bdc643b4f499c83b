"""`BridgeState`: everything the HTTP routes need, built by `create_app` and filled in by its lifespan.

Its own module so the import graph runs one way: app → ops / webhooks → state, never back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.clock import Clock
from bridge.config import Settings
from bridge.destinations.base import Destination
from bridge.dispatcher import Dispatcher
from bridge.mapping import MappingSet
from bridge.metrics import Metrics
from bridge.outbox.base import Outbox
from bridge.providers.base import Provider
from bridge.reload import MappingReloader

#: what a `bridge serve` process does: everything, take webhooks only, or deliver only
ROLES = ("all", "ingest", "dispatch")


@dataclass
class BridgeState:
    """Everything the routes need; built by create_app, filled in by the lifespan."""

    settings: Settings
    clock: Clock
    providers: dict[str, Provider]
    destinations: dict[str, Destination]
    mappings: MappingSet | None = None
    outbox: Outbox | None = None
    dispatcher: Dispatcher | None = None
    reloader: MappingReloader | None = None
    metrics: Metrics = field(default_factory=Metrics)
    #: one of ROLES
    role: str = "all"

    @property
    def takes_webhooks(self) -> bool:
        return self.role != "dispatch"
