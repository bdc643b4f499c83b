"""bridge.yaml: load, interpolate `${VAR}` / `${VAR:-default}` from the environment, validate, and fail with
`file:line:column: what is wrong (hint: how to fix it)`.

The environment is read here and nowhere else: `load_settings(path, environ)` takes it as an argument.
Relative paths (the mappings directory, a relative `sqlite:///` outbox path) are resolved against the directory
of the config file.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.destinations import destination_class, destination_types
from bridge.destinations.base import DestinationSettings, RateLimit
from bridge.errors import ConfigError
from bridge.events import is_valid_name
from bridge.providers import provider_class, provider_types
from bridge.providers.base import SourceSettings
from bridge.retry import DEFAULT_SCHEDULE, RetryPolicy
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
    #: log line format: json (one object per line) or text (key=value)
    log_format: str = "json"
    #: log level name (INFO, WARNING, ...); the CLI's --log-level or BRIDGE_LOG_LEVEL overrides it
    log_level: str | None = None
    #: where the config came from (for messages)
    path: str = "<settings>"


class _Reader:
    """Validation helpers that know the file name."""

    def __init__(self, file: str, environ: Mapping[str, str]) -> None:
        self.file = file
        self.environ = environ

    def fail(self, mark: tuple[int, int], message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, file=self.file, line=mark[0], column=mark[1], hint=hint)

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
                    raise self.fail(
                        mark,
                        f"environment variable {name} is not set",
                        f"export {name}=… or write ${{{name}:-default}}",
                    )
                return value

            return _VAR.sub(replace, node)
        return node

    def check_keys(self, node: YamlMap, allowed: set[str] | Mapping[str, Any], where: str) -> None:
        for key in node:
            if key not in allowed:
                close = difflib.get_close_matches(key, list(allowed), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(sorted(allowed))}"
                raise self.fail(node.key_mark(key), f"unknown key {key!r} in {where}", hint)

    def mapping(self, node: YamlMap, key: str, *, required: bool = False) -> YamlMap:
        value = node.get(key)
        if value is None:
            if required:
                raise self.fail(node.start, f"missing {key!r}", f"add a {key}: section")
            empty = YamlMap()
            empty.start, empty.key_marks, empty.value_marks = node.start, {}, {}
            return empty
        if not isinstance(value, YamlMap):
            raise self.fail(node.value_mark(key), f"{key!r} must be a mapping (key: value lines)")
        return value

    def string(self, node: YamlMap, key: str, *, required: bool = False, default: str | None = None) -> str | None:
        value = node.get(key)
        if value is None or value == "":
            if required:
                raise self.fail(node.value_mark(key) if key in node else node.start, f"missing or empty {key!r}")
            return default
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise self.fail(node.value_mark(key), f"{key!r} must be text")
        return str(value)

    def number(self, node: YamlMap, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = node.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise self.fail(node.value_mark(key), f"{key!r} must be a number ≥ {minimum:g}, got {value!r}")
        return float(value)

    def integer(self, node: YamlMap, key: str, default: int, *, minimum: int = 0) -> int:
        value = node.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(node.value_mark(key), f"{key!r} must be a whole number ≥ {minimum}, got {value!r}")
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
            raise self.fail(node.value_mark(key), f"{key!r} must be a list of text")
        out = []
        for index, item in enumerate(value_list):
            if not isinstance(item, str) or not item:
                mark = value.item_mark(index) if isinstance(value, YamlList) else node.value_mark(key)
                raise self.fail(mark, f"{key!r} entries must be non-empty text, got {item!r}")
            out.append(item)
        return tuple(out)


def load_settings(path: str | Path, environ: Mapping[str, str]) -> Settings:
    """Read and validate a config file. Raises ConfigError with the location of the first problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror}", file=str(file)) from None
    return parse_settings(text, str(file), environ, base_dir=file.resolve().parent)


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
                    found.append(ConfigError(f"environment variable {name} is not set", file=str(file),
                                             line=mark[0], column=mark[1], hint=hint))

    walk(root, (1, 1))
    return found


def parse_settings(text: str, file: str, environ: Mapping[str, str], *, base_dir: Path) -> Settings:
    r = _Reader(file, environ)
    root = load(text, file, ConfigError)
    if not isinstance(root, YamlMap):
        raise ConfigError("the config must be a YAML mapping", file=file, line=1, column=1)
    root = r.interpolate(root, root.start)
    r.check_keys(
        root,
        {"outbox", "ops", "mappings", "sources", "destinations", "dispatcher", "server", "max_body_bytes", "log"},
        "the config",
    )

    outbox = r.mapping(root, "outbox", required=True)
    r.check_keys(outbox, {"url"}, "outbox")
    url = r.string(outbox, "url", required=True) or ""
    outbox_url = _resolve_outbox_url(r, outbox, url, base_dir)

    ops = r.mapping(root, "ops")
    r.check_keys(ops, {"token"}, "ops")
    ops_token = r.string(ops, "token")
    if ops_token is not None and len(ops_token) < 16:
        raise r.fail(ops.value_mark("token"), "the ops token is shorter than 16 characters", "use a random token")

    mappings_text = r.string(root, "mappings", default="./mappings") or "./mappings"
    mappings_dir = (base_dir / mappings_text).resolve()
    if not mappings_dir.is_dir():
        mark = root.value_mark("mappings") if "mappings" in root else root.start
        raise r.fail(mark, f"mappings directory {str(mappings_dir)!r} does not exist")

    max_body = r.integer(root, "max_body_bytes", DEFAULT_MAX_BODY_BYTES, minimum=1024)

    server = r.mapping(root, "server")
    r.check_keys(server, {"host", "port"}, "server")
    host = r.string(server, "host", default="127.0.0.1") or "127.0.0.1"
    port = r.integer(server, "port", 8080, minimum=0)

    log_format, log_level = _read_log(r, r.mapping(root, "log"))
    sources = _read_sources(r, r.mapping(root, "sources"), mappings_dir, max_body)
    destinations = _read_destinations(r, r.mapping(root, "destinations"))
    dispatcher = _read_dispatcher(r, r.mapping(root, "dispatcher"))
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
        log_format=log_format,
        log_level=log_level,
        path=file,
    )


def _read_log(r: _Reader, node: YamlMap) -> tuple[str, str | None]:
    """`log: {format: json | text, level: INFO}`."""
    r.check_keys(node, {"format", "level"}, "log")
    fmt = r.string(node, "format", default="json") or "json"
    if fmt not in ("json", "text"):
        raise r.fail(node.value_mark("format"), f"log format must be json or text, got {fmt!r}")
    level = r.string(node, "level")
    if level is not None and level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise r.fail(node.value_mark("level"), f"unknown log level {level!r}", "DEBUG, INFO, WARNING or ERROR")
    return fmt, level


def _resolve_outbox_url(r: _Reader, outbox: YamlMap, url: str, base_dir: Path) -> str:
    if url.startswith("sqlite:///"):
        raw = url[len("sqlite:///") :]
        if not raw:
            raise r.fail(outbox.value_mark("url"), "sqlite URL has no path", "sqlite:///var/lib/bridge/outbox.db")
        target = Path(raw) if raw.startswith("/") else base_dir / raw
        return f"sqlite:///{target.resolve()}"
    if url.startswith(("postgresql://", "postgres://")):
        return url
    raise r.fail(
        outbox.value_mark("url"),
        f"unsupported outbox url {url!r}",
        "use sqlite:///path/to/outbox.db or postgresql://user@host/db",
    )


def _entries(r: _Reader, node: YamlMap, kind: str) -> Iterator[tuple[str, YamlMap]]:
    """(name, entry) of a sources:/destinations: section, each name a URL-safe slug and each entry a mapping."""
    for name, entry in node.items():
        if not _SLUG.match(name):
            raise r.fail(node.key_mark(name), f"{kind} name {name!r} must be letters, digits, '-' or '_'")
        if not isinstance(entry, YamlMap):
            raise r.fail(node.value_mark(name), f"{kind} {name!r} must be a mapping")
        yield name, entry


def _choose(r: _Reader, entry: YamlMap, key: str, known: list[str], what: str) -> str:
    """A required `key` whose value must be one of `known` (with a did-you-mean hint)."""
    value = r.string(entry, key, required=True) or ""
    if value not in known:
        close = difflib.get_close_matches(value, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
        raise r.fail(entry.value_mark(key), f"unknown {what} {value!r}", hint)
    return value


def _check_builds(r: _Reader, entry: YamlMap, label: str, build: Callable[[Any], object], settings: Any) -> None:
    """Construct the provider/destination once so its own option checks fail here, at the offending line
    (their OptionError carries the option's key)."""
    try:
        build(settings)
    except ValueError as exc:
        key = getattr(exc, "key", None)
        mark = entry.value_mark(key) if isinstance(key, str) and key in entry else entry.start
        raise r.fail(mark, f"{label}: {exc}") from None


_SOURCE_KEYS = {"provider", "secrets", "tolerance_seconds", "mapping", "max_body_bytes"}


def _read_sources(r: _Reader, node: YamlMap, mappings_dir: Path, max_body: int) -> dict[str, SourceSettings]:
    out: dict[str, SourceSettings] = {}
    types = provider_types()
    for name, entry in _entries(r, node, "source"):
        provider = _choose(r, entry, "provider", types, "provider")
        cls = provider_class(provider)
        r.check_keys(entry, _SOURCE_KEYS | set(cls.options), f"source {name!r} ({provider})")
        secrets = r.strings(entry, "secrets")
        if cls.requires_secrets and not secrets:
            raise r.fail(
                entry.key_mark("secrets") if "secrets" in entry else entry.start,
                f"source {name!r} has no secrets",
                'secrets: ["${MY_WEBHOOK_SECRET}"] (several during a rotation)',
            )
        tolerance = r.number(entry, "tolerance_seconds", -1.0, minimum=-1.0) if "tolerance_seconds" in entry else None
        mapping = r.string(entry, "mapping", default=provider) or provider
        if not (mappings_dir / f"{mapping}.yaml").is_file():
            mark = entry.value_mark("mapping") if "mapping" in entry else entry.key_mark("provider")
            raise r.fail(mark, f"no mapping file {mapping}.yaml in {mappings_dir}", "set mapping: to an existing file")
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
        _check_builds(r, entry, f"source {name!r}", cls, settings)
        out[name] = settings
    return out


_DESTINATION_KEYS = {"type", "url", "events", "event_names", "concurrency", "rate_limits", "timeout_seconds", "headers"}


def _read_destinations(r: _Reader, node: YamlMap) -> dict[str, DestinationSettings]:
    out: dict[str, DestinationSettings] = {}
    types = destination_types()
    for name, entry in _entries(r, node, "destination"):
        type_name = _choose(r, entry, "type", types, "destination type")
        kind = destination_class(type_name)
        r.check_keys(entry, _DESTINATION_KEYS | set(kind.options), f"destination {name!r} ({type_name})")
        url = r.string(entry, "url", required=kind.requires_url) or ""
        if url and not url.startswith(("http://", "https://")):
            raise r.fail(entry.value_mark("url"), f"destination url must be http(s), got {url!r}")
        events = r.strings(entry, "events") or ("*",)
        for index, event in enumerate(events):
            if event != "*" and not is_valid_name(event):
                value = entry.get("events")
                mark = value.item_mark(index) if isinstance(value, YamlList) else entry.value_mark("events")
                raise r.fail(mark, f"{event!r} is not a canonical event name", "lower_snake names like purchase")
        event_names = r.mapping(entry, "event_names")
        headers = r.mapping(entry, "headers")
        for label, table in (("event_names", event_names), ("headers", headers)):
            for key, value in table.items():
                if not isinstance(value, str):
                    raise r.fail(table.value_mark(key), f"{label}.{key} must be text")
        rate_limits = _read_rate_limits(r, entry)
        options = {k: v for k, v in entry.items() if k not in _DESTINATION_KEYS}
        settings = DestinationSettings(
            name=name,
            type=type_name,
            url=url,
            events=events,
            event_names=dict(event_names),
            concurrency=r.integer(entry, "concurrency", 8, minimum=1),
            rate_limits=rate_limits,
            timeout_seconds=r.number(entry, "timeout_seconds", 10.0, minimum=0.1),
            headers=dict(headers),
            options=options,
        )
        _check_builds(r, entry, f"destination {name!r}", kind, settings)
        out[name] = settings
    return out


def _read_rate_limits(r: _Reader, entry: YamlMap) -> tuple[RateLimit, ...] | None:
    if "rate_limits" not in entry:
        return None
    value = entry["rate_limits"]
    if not isinstance(value, YamlList):
        raise r.fail(entry.value_mark("rate_limits"), "rate_limits must be a list of {requests, per_seconds}")
    limits = []
    for index, item in enumerate(value):
        if not isinstance(item, YamlMap):
            raise r.fail(value.item_mark(index), "each rate limit is {requests: N, per_seconds: S}")
        r.check_keys(item, {"requests", "per_seconds"}, "a rate limit")
        limits.append(
            RateLimit(r.integer(item, "requests", 0, minimum=1), r.number(item, "per_seconds", 0.0, minimum=0.001))
        )
    return tuple(limits)


def _read_dispatcher(r: _Reader, node: YamlMap) -> DispatcherSettings:
    r.check_keys(node, {"lease_seconds", "claim_batch", "retry", "shutdown_grace_seconds"}, "dispatcher")
    retry = r.mapping(node, "retry")
    r.check_keys(retry, {"schedule", "jitter", "max_retry_after"}, "dispatcher.retry")
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    if "schedule" in retry:
        raw = retry["schedule"]
        if not isinstance(raw, YamlList) or not raw:
            raise r.fail(retry.value_mark("schedule"), "schedule must be a non-empty list of seconds")
        for index, item in enumerate(raw):
            if isinstance(item, bool) or not isinstance(item, int | float) or item < 0:
                raise r.fail(raw.item_mark(index), f"schedule entries are seconds ≥ 0, got {item!r}")
        schedule = tuple(float(x) for x in raw)
    jitter = r.number(retry, "jitter", 0.2)
    if jitter >= 1:
        raise r.fail(retry.value_mark("jitter"), "jitter is a fraction below 1 (0.2 = ±20 %)")
    policy = RetryPolicy(schedule=schedule, jitter=jitter, max_retry_after=r.number(retry, "max_retry_after", 21600.0))
    return DispatcherSettings(
        lease_seconds=r.number(node, "lease_seconds", 60.0, minimum=1.0),
        claim_batch=r.integer(node, "claim_batch", 100, minimum=1),
        retry=policy,
        shutdown_grace_seconds=r.number(node, "shutdown_grace_seconds", 10.0),
    )
