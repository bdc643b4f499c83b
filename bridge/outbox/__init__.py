"""Outbox storage: pick the implementation from the configured URL.

    sqlite:///relative/path.db        a path relative to the working directory (everything after "sqlite:///")
    sqlite:////var/lib/bridge/o.db    an absolute path (four slashes: "sqlite:///" + "/var/lib/...")
    sqlite:///o.db?group_window_ms=1&max_batch=512
                                      optional group-commit tuning (see SqliteOutbox)
    sqlite:///o.db?wal_limit_mb=64    the bound on the WAL file (see sqlite_checkpoint.py; default 64)
    postgresql://user:pass@host:5432/db   (or postgres://...) passed to asyncpg as is;
                                      min_size / max_size query parameters size the connection pool

This follows SQLAlchemy's convention. Percent-escapes in the path are decoded. `sqlite:///:memory:` is refused:
an in-memory database is neither durable nor shareable with the read connection.

Timeouts (config `outbox: {acquire_timeout_seconds, statement_timeout_seconds}`) bound every wait for storage:
SQLite waits at most `acquire_timeout` for the database's write lock; PostgreSQL at most `acquire_timeout` for a
pooled connection and `statement_timeout` per statement. Past them the write fails with OutboxUnavailable.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from bridge.errors import OutboxError
from bridge.outbox.base import Outbox
from bridge.urls import shown

__all__ = ["open_outbox"]


def open_outbox(url: str, *, acquire_timeout: float = 5.0, statement_timeout: float = 5.0) -> Outbox:
    """Build (not open) the outbox for `url`; the caller then runs `await outbox.open()` and, at the end,
    `await outbox.close()`. Raises OutboxError for an unsupported or malformed URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        return _sqlite(url, parts.netloc, parts.path, parts.query, busy_timeout=acquire_timeout)
    if scheme in ("postgresql", "postgres"):
        return _postgres(url, parts.query, acquire_timeout=acquire_timeout, statement_timeout=statement_timeout)
    raise OutboxError(
        f"unsupported outbox URL {shown(url)!r}: use sqlite:///path/to/outbox.db or postgresql://user@host/db"
    )


def _sqlite(url: str, netloc: str, path: str, query: str, *, busy_timeout: float) -> Outbox:
    from bridge.outbox.sqlite import SqliteOutbox
    from bridge.outbox.sqlite_checkpoint import WAL_LIMIT_BYTES

    if netloc or not path.startswith("/") or len(path) < 2:
        raise OutboxError(
            f"bad SQLite outbox URL {url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    file = unquote(path[1:])
    if file == ":memory:":
        raise OutboxError("the outbox cannot live in an in-memory SQLite database; give a file path")
    options = dict(parse_qsl(query, keep_blank_values=True))
    try:
        window = float(options.pop("group_window_ms", "0"))
        max_batch = int(options.pop("max_batch", "256"))
        wal_limit_mb = float(options.pop("wal_limit_mb", str(WAL_LIMIT_BYTES / 2**20)))
    except ValueError as exc:
        raise OutboxError(f"bad SQLite outbox URL option in {url!r}: {exc}") from exc
    if options:
        raise OutboxError(f"unknown SQLite outbox URL option(s) {sorted(options)} in {url!r}")
    if not 1 <= wal_limit_mb <= 65536:
        raise OutboxError(f"bad SQLite outbox URL option in {url!r}: wal_limit_mb must be between 1 and 65536")
    return SqliteOutbox(
        file,
        group_window_ms=window,
        max_batch=max_batch,
        busy_timeout=busy_timeout,
        wal_limit_bytes=round(wal_limit_mb * 2**20),
    )


def _postgres(url: str, query: str, *, acquire_timeout: float, statement_timeout: float) -> Outbox:
    from bridge.outbox.postgres import PostgresOutbox

    options = parse_qsl(query, keep_blank_values=True)
    sizes = {key: value for key, value in options if key in ("min_size", "max_size")}
    rest = [(key, value) for key, value in options if key not in ("min_size", "max_size")]
    try:
        min_size = int(sizes.get("min_size", "1"))
        max_size = int(sizes.get("max_size", "10"))
    except ValueError as exc:
        raise OutboxError(f"bad PostgreSQL outbox URL option in {shown(url)!r}: {exc}") from exc
    dsn = urlunsplit(urlsplit(url)._replace(query=urlencode(rest)))
    return PostgresOutbox(
        dsn,
        min_size=min_size,
        max_size=max_size,
        acquire_timeout=acquire_timeout,
        statement_timeout=statement_timeout,
    )
