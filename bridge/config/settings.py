"""The settings a bridge.yaml becomes: plain frozen values, validated by the readers beside this module."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bridge.destinations.base import DestinationSettings
from bridge.errors import ConfigError
from bridge.limits import Limits
from bridge.providers.base import SourceSettings
from bridge.retry import RetryPolicy

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class DispatcherSettings:
    #: how long a claim is held; must exceed the HTTP timeout plus the time to record the result
    lease_seconds: float = 60.0
    #: deliveries claimed per destination per round
    claim_batch: int = 100
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: how long shutdown waits for in-flight sends before releasing their leases
    shutdown_grace_seconds: float = 10.0
    #: how long a dispatcher holds a destination's lane (its sending and rate limits) without renewing it; another
    #: replica takes a dead one's lanes after this (stretched to 3 request timeouts of the slowest destination)
    lane_lease_seconds: float = 30.0
    #: longest the dispatcher waits before asking the outbox for work it was not woken for
    poll_seconds: float = 5.0


@dataclass(frozen=True)
class OutboxTimeouts:
    """`outbox:` bounds on waiting for storage, so a stuck store is a 503 (the provider retries), never a hang."""

    #: PostgreSQL: wait for a pooled connection (and to connect one); SQLite: wait for the database's write lock
    acquire_seconds: float = 5.0
    #: PostgreSQL: the longest one statement may run, lock waits included
    statement_seconds: float = 5.0


@dataclass(frozen=True)
class RetentionSettings:
    """`retention:` what the periodic purge keeps (bridge/maintenance.py)."""

    #: delivered deliveries with their attempts, and webhooks with nothing left to deliver, older than this are
    #: deleted; 0 keeps everything
    delivered_days: float = 30.0
    #: dedup keys (event ids, body hashes, delivered facts) outlive their rows this long; 0 keeps them for good
    dedup_days: float = 90.0


#: providers retry for up to 30 days (Adyen); dedup keys must outlive that
MIN_DEDUP_DAYS = 30.0


@dataclass(frozen=True)
class Settings:
    outbox_url: str
    mappings_dir: Path
    ops_token: str | None = None
    sources: Mapping[str, SourceSettings] = field(default_factory=dict)
    destinations: Mapping[str, DestinationSettings] = field(default_factory=dict)
    dispatcher: DispatcherSettings = field(default_factory=DispatcherSettings)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    host: str = "127.0.0.1"
    port: int = 8080
    #: a webhook body not received in full within this many seconds is answered 408
    body_timeout_seconds: float = 10.0
    #: uvicorn: connections (and requests) at once before it answers 503
    limit_concurrency: int = 1000
    #: uvicorn: an idle keep-alive connection is closed after this many seconds
    keep_alive_seconds: int = 5
    #: GET /metrics without the ops token
    public_metrics: bool = False
    limits: Limits = field(default_factory=Limits)
    #: log line format: json (one object per line) or text (key=value)
    log_format: str = "json"
    #: log level name (INFO, WARNING, ...); the CLI's --log-level or BRIDGE_LOG_LEVEL overrides it
    log_level: str | None = None
    #: where the config came from (for messages)
    path: str = "<settings>"
    outbox_timeouts: OutboxTimeouts = field(default_factory=OutboxTimeouts)
    retention: RetentionSettings = field(default_factory=RetentionSettings)


@dataclass(frozen=True)
class ConfigReport:
    """The outcome of reading a config file: settings when it is valid, else every problem found."""

    settings: Settings | None
    errors: list[ConfigError]
    #: the mappings directory the file names (None when it could not be read), so mappings can be checked too
    mappings_dir: Path | None
