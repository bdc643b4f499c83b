"""Reading a whole bridge.yaml: the root sections, the mappings directory, the outbox URL, and the report of
every problem found."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.config.entries import EventNames, Lease, read_destinations, read_sources
from bridge.config.reader import VAR, Reader
from bridge.config.settings import (
    DEFAULT_MAX_BODY_BYTES,
    MIN_DEDUP_DAYS,
    ConfigReport,
    DispatcherSettings,
    OutboxTimeouts,
    RetentionSettings,
    Settings,
)
from bridge.errors import ConfigError, ConfigErrors
from bridge.events import CANONICAL_NAMES
from bridge.limits import MAX_DEPTH_CEILING, Limits
from bridge.mapping import produced_names
from bridge.retry import DEFAULT_SCHEDULE, RetryPolicy
from bridge.yamlsrc import YamlList, YamlMap, load


def load_settings(path: str | Path, environ: Mapping[str, str]) -> Settings:
    """Read and validate a config file. Raises ConfigError (ConfigErrors when there are several) naming every
    problem with its location."""
    report = check_settings(path, environ)
    if report.settings is None:
        raise ConfigErrors(report.errors)
    return report.settings


def check_settings(path: str | Path, environ: Mapping[str, str]) -> ConfigReport:
    """Read and validate a config file, collecting every problem instead of stopping at the first."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "the file is not UTF-8 text"
        return ConfigReport(None, [ConfigError(f"cannot read config: {why}", file=str(file))], None)
    return _parse(text, str(file), environ, file.resolve().parent)


def unset_variables(path: str | Path, environ: Mapping[str, str]) -> list[ConfigError]:
    """Every `${VAR}` (without a default) in the config file whose variable is unset, each located; so a
    fresh config's missing secrets are listed at once (loading stops at the first)."""
    file = Path(path)
    try:
        root = load(file.read_text(encoding="utf-8"), str(file), ConfigError)
    except (OSError, ConfigError):
        return []  # load_settings reports these
    found: list[ConfigError] = []

    def walk(node: Any, mark: tuple[int, int]) -> None:
        if isinstance(node, YamlMap):
            for key in node:
                walk(node[key], node.value_mark(key))
        elif isinstance(node, YamlList):
            for index, item in enumerate(node):
                walk(item, node.item_mark(index))
        elif isinstance(node, str):
            for match in VAR.finditer(node):
                name, default = match.group(1), match.group(2)
                if name and default is None and name not in environ:
                    hint = f"export {name}=… (or put it in your secret store's environment)"
                    found.append(
                        ConfigError(
                            f"environment variable {name} is not set",
                            file=str(file),
                            line=mark[0],
                            column=mark[1],
                            hint=hint,
                        )
                    )

    walk(root, (1, 1))
    return found


def parse_settings(text: str, file: str, environ: Mapping[str, str], *, base_dir: Path) -> Settings:
    report = _parse(text, file, environ, base_dir)
    if report.settings is None:
        raise ConfigErrors(report.errors)
    return report.settings


def _parse(text: str, file: str, environ: Mapping[str, str], base_dir: Path) -> ConfigReport:
    r = Reader(file, environ)
    read = _Read()
    try:
        settings = _read_root(r, read, text, base_dir)
    except ConfigError as exc:  # a problem reading cannot go on from (YAML syntax, ...): report it with the rest
        r.errors.append(exc)
        settings = None
    errors = sorted(r.errors, key=lambda e: (e.line or 0, e.column or 0))
    return ConfigReport(None if errors else settings, errors, read.mappings_dir)


@dataclass
class _Read:
    """What the readers found that is needed even when the file has errors."""

    mappings_dir: Path | None = None


def _read_root(r: Reader, read: _Read, text: str, base_dir: Path) -> Settings:
    file = r.file
    root = load(text, file, ConfigError)
    if not isinstance(root, YamlMap):
        raise ConfigError("the config must be a YAML mapping", file=file, line=1, column=1)
    root = r.interpolate(root, root.start)
    r.check_keys(
        root,
        {
            "outbox",
            "ops",
            "mappings",
            "sources",
            "destinations",
            "dispatcher",
            "server",
            "max_body_bytes",
            "limits",
            "log",
            "retention",
        },
        "the config",
    )

    outbox = r.mapping(root, "outbox", required=True)
    r.check_keys(outbox, {"url", *_OUTBOX_TIMEOUT_KEYS}, "outbox")
    url = r.string(outbox, "url", required=True) or ""
    outbox_url = _resolve_outbox_url(r, outbox, url, base_dir) if url else ""
    outbox_timeouts = _read_outbox_timeouts(r, outbox)
    retention = _read_retention(r, r.mapping(root, "retention"))

    ops = r.mapping(root, "ops")
    r.check_keys(ops, {"token", "public_metrics"}, "ops")
    ops_token = r.string(ops, "token")
    if ops_token is not None and len(ops_token) < 16:
        r.error(ops.value_mark("token"), "the ops token is shorter than 16 characters", "use a random token")
    public_metrics = r.boolean(ops, "public_metrics", False)

    mappings_text = r.string(root, "mappings", default="./mappings") or "./mappings"
    mappings_dir = (base_dir / mappings_text).resolve()
    if mappings_dir.is_dir():
        read.mappings_dir = mappings_dir
    else:
        mark = root.value_mark("mappings") if "mappings" in root else root.start
        r.error(mark, f"mappings directory {str(mappings_dir)!r} does not exist")

    max_body = r.integer(root, "max_body_bytes", DEFAULT_MAX_BODY_BYTES, minimum=1024)

    server = r.mapping(root, "server")
    r.check_keys(server, {"host", "port", "body_timeout_seconds", "limit_concurrency", "keep_alive_seconds"}, "server")
    host = r.string(server, "host", default="127.0.0.1") or "127.0.0.1"
    port = r.integer(server, "port", 8080, minimum=0, maximum=65535)
    body_timeout = r.number(server, "body_timeout_seconds", 10.0, minimum=0.1, maximum=3600)
    # uvicorn counts the connection asking, so 1 would refuse every request
    limit_concurrency = r.integer(server, "limit_concurrency", 1000, minimum=2)
    keep_alive = r.integer(server, "keep_alive_seconds", 5, minimum=1, maximum=3600)

    limits = _read_limits(r, r.mapping(root, "limits"))
    dispatcher_node = r.mapping(root, "dispatcher")
    dispatcher = _read_dispatcher(r, dispatcher_node)
    log_format, log_level = _read_log(r, r.mapping(root, "log"))
    sources = read_sources(r, r.mapping(root, "sources"), mappings_dir, max_body)
    names = EventNames(CANONICAL_NAMES, produced_names(mappings_dir)) if read.mappings_dir else None
    lease = Lease(dispatcher.lease_seconds, dispatcher_node.value_mark("lease_seconds"))
    destinations = read_destinations(r, r.mapping(root, "destinations"), names, lease)
    return Settings(
        outbox_url=outbox_url,
        mappings_dir=mappings_dir,
        ops_token=ops_token,
        sources=sources,
        destinations=destinations,
        dispatcher=dispatcher,
        max_body_bytes=max_body,
        host=host,
        port=port,
        body_timeout_seconds=body_timeout,
        limit_concurrency=limit_concurrency,
        keep_alive_seconds=keep_alive,
        public_metrics=public_metrics,
        limits=limits,
        log_format=log_format,
        log_level=log_level,
        path=file,
        outbox_timeouts=outbox_timeouts,
        retention=retention,
    )


def _read_limits(r: Reader, node: YamlMap) -> Limits:
    r.check_keys(node, {"max_depth", "max_events_per_webhook", "max_event_bytes"}, "limits")
    default = Limits()
    return Limits(
        max_depth=r.integer(node, "max_depth", default.max_depth, minimum=1, maximum=MAX_DEPTH_CEILING),
        max_events_per_webhook=r.integer(node, "max_events_per_webhook", default.max_events_per_webhook, minimum=1),
        max_event_bytes=r.integer(node, "max_event_bytes", default.max_event_bytes, minimum=1024),
    )


def _read_log(r: Reader, node: YamlMap) -> tuple[str, str | None]:
    """`log: {format: json | text, level: INFO}`."""
    r.check_keys(node, {"format", "level"}, "log")
    fmt = r.string(node, "format", default="json") or "json"
    if fmt not in ("json", "text"):
        r.error(node.value_mark("format"), f"log format must be json or text, got {fmt!r}")
        fmt = "json"
    level = r.string(node, "level")
    if level is not None and level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        r.error(node.value_mark("level"), f"unknown log level {level!r}", "DEBUG, INFO, WARNING or ERROR")
        level = None
    return fmt, level


def _resolve_outbox_url(r: Reader, outbox: YamlMap, url: str, base_dir: Path) -> str:
    if url.startswith("sqlite:///"):
        raw = url[len("sqlite:///") :]
        if not raw:
            r.error(outbox.value_mark("url"), "sqlite URL has no path", "sqlite:///var/lib/bridge/outbox.db")
            return url
        target = Path(raw) if raw.startswith("/") else base_dir / raw
        return f"sqlite:///{target.resolve()}"
    if url.startswith(("postgresql://", "postgres://")):
        return url
    r.error(
        outbox.value_mark("url"),
        f"unsupported outbox url {url!r}",
        "use sqlite:///path/to/outbox.db or postgresql://user@host/db",
    )
    return url


def _read_dispatcher(r: Reader, node: YamlMap) -> DispatcherSettings:
    r.check_keys(
        node,
        {"lease_seconds", "claim_batch", "retry", "shutdown_grace_seconds", "lane_lease_seconds", "poll_seconds"},
        "dispatcher",
    )
    retry = r.mapping(node, "retry")
    r.check_keys(retry, {"schedule", "jitter", "max_retry_after"}, "dispatcher.retry")
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    if "schedule" in retry:
        raw = retry["schedule"]
        if not isinstance(raw, YamlList) or not raw:
            r.error(retry.value_mark("schedule"), "schedule must be a non-empty list of seconds")
        else:
            bad = False
            for index, item in enumerate(raw):
                if isinstance(item, bool) or not isinstance(item, int | float) or not 0 <= item <= 1e9:
                    r.error(raw.item_mark(index), f"schedule entries are seconds ≥ 0, got {item!r}")
                    bad = True
            if not bad:
                schedule = tuple(float(x) for x in raw)
    jitter = r.number(retry, "jitter", 0.2)
    if jitter >= 1:
        r.error(retry.value_mark("jitter"), "jitter is a fraction below 1 (0.2 = ±20 %)")
        jitter = 0.2
    policy = RetryPolicy(schedule=schedule, jitter=jitter, max_retry_after=r.number(retry, "max_retry_after", 21600.0))
    return DispatcherSettings(
        lease_seconds=r.number(node, "lease_seconds", 60.0, minimum=1.0),
        claim_batch=r.integer(node, "claim_batch", 100, minimum=1),
        retry=policy,
        shutdown_grace_seconds=r.number(node, "shutdown_grace_seconds", 10.0),
        lane_lease_seconds=r.number(node, "lane_lease_seconds", 30.0, minimum=1.0, maximum=3600),
        poll_seconds=r.number(node, "poll_seconds", 5.0, minimum=0.05, maximum=3600),
    )


_OUTBOX_TIMEOUT_KEYS = ("acquire_timeout_seconds", "statement_timeout_seconds")


def _read_outbox_timeouts(r: Reader, outbox: YamlMap) -> OutboxTimeouts:
    """`outbox: {acquire_timeout_seconds, statement_timeout_seconds}` (both > 0: a wait without a bound is a hang)."""
    default = OutboxTimeouts()
    return OutboxTimeouts(
        acquire_seconds=r.number(
            outbox, "acquire_timeout_seconds", default.acquire_seconds, minimum=0.01, maximum=3600
        ),
        statement_seconds=r.number(
            outbox, "statement_timeout_seconds", default.statement_seconds, minimum=0.01, maximum=3600
        ),
    )


def _read_retention(r: Reader, node: YamlMap) -> RetentionSettings:
    """`retention: {delivered_days, dedup_days}`; dedup keys must outlive the providers' retries."""
    r.check_keys(node, {"delivered_days", "dedup_days"}, "retention")
    default = RetentionSettings()
    delivered = r.number(node, "delivered_days", default.delivered_days, maximum=36500)
    dedup = r.number(node, "dedup_days", default.dedup_days, maximum=36500)
    if 0 < dedup < MIN_DEDUP_DAYS:
        r.error(
            node.value_mark("dedup_days"),
            f"dedup_days {dedup:g} is shorter than the providers' retries: a retry after the keys are gone would be "
            "stored and delivered again",
            f"use at least {MIN_DEDUP_DAYS:g} (Adyen retries for 30 days), or 0 to keep the keys for good",
        )
        dedup = default.dedup_days
    return RetentionSettings(delivered_days=delivered, dedup_days=dedup)
