"""bridge.yaml: load, interpolate `${VAR}` / `${VAR:-default}` from the environment, validate, and fail with
`file:line:column: what is wrong (hint: how to fix it)` for every problem of the file at once.

A section reader reports a problem with `r.error(mark, message, hint)` and carries on with a default, so one run
finds them all; `raise r.fail(...)` stops at a problem nothing after it can be checked without.

The environment is read here and nowhere else: `load_settings(path, environ)` takes it as an argument.
Relative paths (the mappings directory, a relative `sqlite:///` outbox path) are resolved against the directory
of the config file.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.destinations import destination_class, destination_types
from bridge.destinations.base import DestinationSettings, RateLimit
from bridge.errors import ConfigError, ConfigErrors
from bridge.events import CANONICAL_NAMES, is_valid_name
from bridge.limits import MAX_DEPTH_CEILING, Limits
from bridge.mapping import produced_names
from bridge.providers import provider_class, provider_types
from bridge.providers.base import SourceSettings
from bridge.retry import DEFAULT_SCHEDULE, RetryPolicy
from bridge.urls import shown
from bridge.yamlsrc import YamlList, YamlMap, load

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


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


def _kind(value: Any) -> str:
    """What a wrong value is, without repeating it (it may be a secret)."""
    return "empty text" if value == "" else f"a {type(value).__name__}"


class _Reader:
    """Validation helpers that know the file name and collect problems: each helper reports what is wrong and
    returns its default, so reading goes on and one run finds every problem."""

    def __init__(self, file: str, environ: Mapping[str, str]) -> None:
        self.file = file
        self.environ = environ
        self.errors: list[ConfigError] = []
        #: where a value still holds an unset ${VAR}: what it would be is unknown, so no other error is told there
        self.unresolved: set[tuple[int, int]] = set()

    def fail(self, mark: tuple[int, int], message: str, hint: str | None = None) -> ConfigError:
        """The error for a problem at `mark` (raise it to stop reading; `error` records it and reading goes on)."""
        return ConfigError(message, file=self.file, line=mark[0], column=mark[1], hint=hint)

    def error(self, mark: tuple[int, int], message: str, hint: str | None = None) -> None:
        if mark not in self.unresolved:
            self.errors.append(self.fail(mark, message, hint))

    def interpolate(self, node: Any, mark: tuple[int, int]) -> Any:
        if isinstance(node, YamlMap):
            for key in list(node):
                node[key] = self.interpolate(node[key], node.value_mark(key))
            return node
        if isinstance(node, YamlList):
            for index, item in enumerate(node):
                node[index] = self.interpolate(item, node.item_mark(index))
            return node
        if isinstance(node, str) and "$" in node:

            def replace(match: re.Match[str]) -> str:
                if match.group(0) == "$$":
                    return "$"
                name, default = match.group(1), match.group(2)
                value = self.environ.get(name)
                if value is None or (value == "" and default is not None):
                    if default is not None:
                        return default
                    hint = f"export {name}=… or write ${{{name}:-default}}"
                    self.errors.append(self.fail(mark, f"environment variable {name} is not set", hint))
                    self.unresolved.add(mark)
                    return match.group(0)
                return value

            return _VAR.sub(replace, node)
        return node

    def check_keys(self, node: YamlMap, allowed: set[str] | Mapping[str, Any], where: str) -> None:
        for key in node:
            if key not in allowed:
                self.error(node.key_mark(key), f"unknown key {key!r} in {where}", did_you_mean(key, allowed))

    def mapping(self, node: YamlMap, key: str, *, required: bool = False) -> YamlMap:
        value = node.get(key)
        if value is None or not isinstance(value, YamlMap):
            if value is None and required:
                self.error(node.start, f"missing {key!r}", f"add a {key}: section")
            elif value is not None:
                self.error(node.value_mark(key), f"{key!r} must be a mapping (key: value lines)")
            empty = YamlMap()
            empty.start, empty.key_marks, empty.value_marks = node.start, {}, {}
            return empty
        return value

    def string(self, node: YamlMap, key: str, *, required: bool = False, default: str | None = None) -> str | None:
        value = node.get(key)
        if value is None or value == "":
            if required:
                self.error(node.value_mark(key) if key in node else node.start, f"missing or empty {key!r}")
            return default
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.error(node.value_mark(key), f"{key!r} must be text")
            return default
        return str(value)

    def number(self, node: YamlMap, key: str, default: float, *, minimum: float = 0.0, maximum: float = 1e9) -> float:
        value = node.get(key, default)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not minimum <= value <= maximum
        ):
            self.error(node.value_mark(key), f"{key!r} must be a number from {minimum:g} to {maximum:g}, got {value!r}")
            return default
        return float(value)

    def integer(self, node: YamlMap, key: str, default: int, *, minimum: int = 0, maximum: int = 2**31 - 1) -> int:
        value = node.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            self.error(
                node.value_mark(key), f"{key!r} must be a whole number from {minimum} to {maximum}, got {value!r}"
            )
            return default
        return value

    def boolean(self, node: YamlMap, key: str, default: bool) -> bool:
        value = node.get(key, default)
        if not isinstance(value, bool):
            self.error(node.value_mark(key), f"{key!r} must be true or false, got {value!r}")
            return default
        return value

    def strings(self, node: YamlMap, key: str) -> tuple[str, ...]:
        value = node.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            value_list: list[Any] = [value]
        elif isinstance(value, YamlList):
            value_list = list(value)
        else:
            self.error(node.value_mark(key), f"{key!r} must be a list of text")
            return ()
        out = []
        for index, item in enumerate(value_list):
            if not isinstance(item, str) or not item:
                mark = value.item_mark(index) if isinstance(value, YamlList) else node.value_mark(key)
                self.error(mark, f"{key!r} entries must be non-empty text, got {_kind(item)}")
                continue
            out.append(item)
        return tuple(out)


def did_you_mean(value: str, known: Iterable[str]) -> str:
    """A hint naming the closest of `known`, or listing them."""
    names = sorted(known)
    close = difflib.get_close_matches(value, names, n=1)
    return f"did you mean {close[0]!r}?" if close else f"known: {', '.join(names)}"


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
            for match in _VAR.finditer(node):
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
    r = _Reader(file, environ)
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


def _read_root(r: _Reader, read: _Read, text: str, base_dir: Path) -> Settings:
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
    sources = _read_sources(r, r.mapping(root, "sources"), mappings_dir, max_body)
    names = EventNames(CANONICAL_NAMES, produced_names(mappings_dir)) if read.mappings_dir else None
    lease = _Lease(dispatcher.lease_seconds, dispatcher_node.value_mark("lease_seconds"))
    destinations = _read_destinations(r, r.mapping(root, "destinations"), names, lease)
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


def _read_limits(r: _Reader, node: YamlMap) -> Limits:
    r.check_keys(node, {"max_depth", "max_events_per_webhook", "max_event_bytes"}, "limits")
    default = Limits()
    return Limits(
        max_depth=r.integer(node, "max_depth", default.max_depth, minimum=1, maximum=MAX_DEPTH_CEILING),
        max_events_per_webhook=r.integer(node, "max_events_per_webhook", default.max_events_per_webhook, minimum=1),
        max_event_bytes=r.integer(node, "max_event_bytes", default.max_event_bytes, minimum=1024),
    )


def _read_log(r: _Reader, node: YamlMap) -> tuple[str, str | None]:
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


def _resolve_outbox_url(r: _Reader, outbox: YamlMap, url: str, base_dir: Path) -> str:
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


def _entries(r: _Reader, node: YamlMap, kind: str) -> Iterator[tuple[str, YamlMap]]:
    """(name, entry) of a sources:/destinations: section, each name a URL-safe slug and each entry a mapping;
    entries that are neither are reported and skipped."""
    for name, entry in node.items():
        if not _SLUG.match(name):
            r.error(node.key_mark(name), f"{kind} name {name!r} must be letters, digits, '-' or '_'")
        elif not isinstance(entry, YamlMap):
            r.error(node.value_mark(name), f"{kind} {name!r} must be a mapping")
        else:
            yield name, entry


def _choose(r: _Reader, entry: YamlMap, key: str, known: list[str], what: str) -> str | None:
    """A required `key` whose value must be one of `known` (with a did-you-mean hint); None when it is not."""
    value = r.string(entry, key, required=True)
    if value is None:
        return None
    if value not in known:
        r.error(entry.value_mark(key), f"unknown {what} {value!r}", did_you_mean(value, known))
        return None
    return value


def _check_builds(r: _Reader, entry: YamlMap, label: str, build: Callable[[Any], object], settings: Any) -> None:
    """Construct the provider/destination once so its own option checks fail here, at the offending line
    (their OptionError carries the option's key)."""
    try:
        build(settings)
    except ValueError as exc:
        key = getattr(exc, "key", None)
        mark = entry.value_mark(key) if isinstance(key, str) and key in entry else entry.start
        r.error(mark, f"{label}: {exc}")


_SOURCE_KEYS = {"provider", "secrets", "tolerance_seconds", "mapping", "max_body_bytes"}


def _read_sources(r: _Reader, node: YamlMap, mappings_dir: Path, max_body: int) -> dict[str, SourceSettings]:
    out: dict[str, SourceSettings] = {}
    types = provider_types()
    for name, entry in _entries(r, node, "source"):
        before = len(r.errors)
        provider = _choose(r, entry, "provider", types, "provider")
        if provider is None:
            continue
        cls = provider_class(provider)
        r.check_keys(entry, _SOURCE_KEYS | set(cls.options), f"source {name!r} ({provider})")
        secrets = r.strings(entry, "secrets")
        if cls.requires_secrets and not secrets:
            r.error(
                entry.key_mark("secrets") if "secrets" in entry else entry.start,
                f"source {name!r} has no secrets",
                'secrets: ["${MY_WEBHOOK_SECRET}"] (several during a rotation)',
            )
        tolerance = r.number(entry, "tolerance_seconds", -1.0, minimum=-1.0) if "tolerance_seconds" in entry else None
        mapping = r.string(entry, "mapping", default=provider) or provider
        if mappings_dir.is_dir() and not (mappings_dir / f"{mapping}.yaml").is_file():
            mark = entry.value_mark("mapping") if "mapping" in entry else entry.key_mark("provider")
            r.error(mark, f"no mapping file {mapping}.yaml in {mappings_dir}", "set mapping: to an existing file")
        options = {k: v for k, v in entry.items() if k not in _SOURCE_KEYS}
        settings = SourceSettings(
            name=name,
            provider=provider,
            secrets=secrets,
            tolerance_seconds=tolerance,
            mapping=mapping,
            max_body_bytes=r.integer(entry, "max_body_bytes", max_body, minimum=1024),
            options=options,
        )
        if len(r.errors) == before:  # its own checks would only repeat what is already reported
            _check_builds(r, entry, f"source {name!r}", cls, settings)
        out[name] = settings
    return out


@dataclass(frozen=True)
class EventNames:
    """The canonical event names a destination may route or rename: the model's names plus every name the
    mapping files produce (custom lower_snake names exist only where a mapping emits them)."""

    canonical: tuple[str, ...]
    produced: frozenset[str]

    def known(self) -> set[str]:
        return set(self.canonical) | self.produced

    def problem(self, name: str) -> tuple[str, str] | None:
        """(message, hint) when `name` is no event the bridge can emit, else None."""
        if not is_valid_name(name):
            return f"{name!r} is not a canonical event name", "lower_snake names like purchase"
        if name in self.canonical or name in self.produced:
            return None
        close = difflib.get_close_matches(name, sorted(self.known()), n=1)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"canonical names: {', '.join(self.canonical)}; a custom name must be a rule's name: in a mapping"
        )
        return f"unknown event name {name!r}: not canonical and no mapping produces it", hint


@dataclass(frozen=True)
class _Lease:
    seconds: float
    mark: tuple[int, int]


_DESTINATION_KEYS = {
    "type",
    "url",
    "events",
    "event_names",
    "concurrency",
    "rate_limits",
    "timeout_seconds",
    "headers",
    "ordering",
}
ORDERINGS = ("none", "by_key")


def _read_destinations(
    r: _Reader, node: YamlMap, names: EventNames | None, lease: _Lease
) -> dict[str, DestinationSettings]:
    """`names`: the event names routing may use (None: unknown, since the mappings directory is missing)."""
    out: dict[str, DestinationSettings] = {}
    types = destination_types()
    for name, entry in _entries(r, node, "destination"):
        before = len(r.errors)
        type_name = _choose(r, entry, "type", types, "destination type")
        if type_name is None:
            continue
        kind = destination_class(type_name)
        r.check_keys(entry, _DESTINATION_KEYS | set(kind.options), f"destination {name!r} ({type_name})")
        url = r.string(entry, "url", required=kind.requires_url) or ""
        if url and not url.startswith(("http://", "https://")):
            r.error(entry.value_mark("url"), f"destination url must be http(s), got {shown(url)!r}")
        events = r.strings(entry, "events") or ("*",)
        listed = entry.get("events")
        for index, event in enumerate(events):
            if event != "*":
                mark = listed.item_mark(index) if isinstance(listed, YamlList) else entry.value_mark("events")
                _check_event_name(r, names, event, mark, f"destination {name!r} events")
        event_names = r.mapping(entry, "event_names")
        for key in event_names:
            _check_event_name(r, names, key, event_names.key_mark(key), f"destination {name!r} event_names")
        headers = r.mapping(entry, "headers")
        for label, table in (("event_names", event_names), ("headers", headers)):
            for key, value in table.items():
                if not isinstance(value, str):
                    r.error(table.value_mark(key), f"{label}.{key} must be text")
        rate_limits = _read_rate_limits(r, entry)
        timeout = r.number(entry, "timeout_seconds", 10.0, minimum=0.1)
        if timeout >= lease.seconds:
            if "timeout_seconds" in entry:
                r.error(
                    entry.value_mark("timeout_seconds"),
                    f"destination {name!r}: timeout_seconds {timeout:g} is not below dispatcher.lease_seconds "
                    f"{lease.seconds:g}",
                    "a claim must outlive its request: lower timeout_seconds or raise dispatcher.lease_seconds",
                )
            else:
                r.error(
                    lease.mark,
                    f"dispatcher.lease_seconds {lease.seconds:g} is not above destination {name!r}'s default "
                    f"timeout_seconds {timeout:g}",
                    "a claim must outlive its request: raise lease_seconds or set the destination's timeout_seconds",
                )
        ordering = r.string(entry, "ordering", default="none") or "none"
        if ordering not in ORDERINGS:
            r.error(entry.value_mark("ordering"), f"ordering must be none or by_key, got {ordering!r}", "by_key")
            ordering = "none"
        options = {k: v for k, v in entry.items() if k not in _DESTINATION_KEYS}
        settings = DestinationSettings(
            name=name,
            type=type_name,
            url=url,
            events=events,
            event_names={k: v for k, v in event_names.items() if isinstance(v, str)},
            concurrency=r.integer(entry, "concurrency", 8, minimum=1),
            rate_limits=rate_limits,
            timeout_seconds=timeout,
            headers={k: v for k, v in headers.items() if isinstance(v, str)},
            options=options,
            ordering=ordering,
        )
        if len(r.errors) == before:
            _check_builds(r, entry, f"destination {name!r}", kind, settings)
        out[name] = settings
    return out


def _check_event_name(r: _Reader, names: EventNames | None, event: str, mark: tuple[int, int], where: str) -> None:
    if names is not None:
        problem = names.problem(event)
    elif not is_valid_name(event):  # without the mappings only the spelling can be checked
        problem = f"{event!r} is not a canonical event name", "lower_snake names like purchase"
    else:
        problem = None
    if problem:
        r.error(mark, f"{where}: {problem[0]}", problem[1])


def _read_rate_limits(r: _Reader, entry: YamlMap) -> tuple[RateLimit, ...] | None:
    if "rate_limits" not in entry:
        return None
    value = entry["rate_limits"]
    if not isinstance(value, YamlList):
        r.error(entry.value_mark("rate_limits"), "rate_limits must be a list of {requests, per_seconds}")
        return None
    limits = []
    for index, item in enumerate(value):
        if not isinstance(item, YamlMap):
            r.error(value.item_mark(index), "each rate limit is {requests: N, per_seconds: S}")
            continue
        r.check_keys(item, {"requests", "per_seconds"}, "a rate limit")
        limits.append(
            RateLimit(r.integer(item, "requests", 1, minimum=1), r.number(item, "per_seconds", 1.0, minimum=0.001))
        )
    return tuple(limits)


def _read_dispatcher(r: _Reader, node: YamlMap) -> DispatcherSettings:
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


def _read_outbox_timeouts(r: _Reader, outbox: YamlMap) -> OutboxTimeouts:
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


def _read_retention(r: _Reader, node: YamlMap) -> RetentionSettings:
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
