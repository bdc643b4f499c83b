"""The `sources:` and `destinations:` sections: one entry walker, the type lookup with a did-you-mean hint, each
type's own option checks reported at the offending line, and the event names a routing list may use."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.config.reader import SLUG, Reader, did_you_mean
from bridge.destinations import destination_class, destination_types
from bridge.destinations.base import DestinationSettings, RateLimit
from bridge.events import is_valid_name
from bridge.providers import provider_class, provider_types
from bridge.providers.base import SourceSettings
from bridge.urls import shown
from bridge.yamlsrc import YamlList, YamlMap


def _entries(r: Reader, node: YamlMap, kind: str) -> Iterator[tuple[str, YamlMap]]:
    """(name, entry) of a sources:/destinations: section, each name a URL-safe slug and each entry a mapping;
    entries that are neither are reported and skipped."""
    for name, entry in node.items():
        if not SLUG.match(name):
            r.error(node.key_mark(name), f"{kind} name {name!r} must be letters, digits, '-' or '_'")
        elif not isinstance(entry, YamlMap):
            r.error(node.value_mark(name), f"{kind} {name!r} must be a mapping")
        else:
            yield name, entry


def _choose(r: Reader, entry: YamlMap, key: str, known: list[str], what: str) -> str | None:
    """A required `key` whose value must be one of `known` (with a did-you-mean hint); None when it is not."""
    value = r.string(entry, key, required=True)
    if value is None:
        return None
    if value not in known:
        r.error(entry.value_mark(key), f"unknown {what} {value!r}", did_you_mean(value, known))
        return None
    return value


def _check_builds(r: Reader, entry: YamlMap, label: str, build: Callable[[Any], object], settings: Any) -> None:
    """Construct the provider/destination once so its own option checks fail here, at the offending line
    (their OptionError carries the option's key)."""
    try:
        build(settings)
    except ValueError as exc:
        key = getattr(exc, "key", None)
        mark = entry.value_mark(key) if isinstance(key, str) and key in entry else entry.start
        r.error(mark, f"{label}: {exc}")


_SOURCE_KEYS = {"provider", "secrets", "tolerance_seconds", "mapping", "max_body_bytes"}


def read_sources(r: Reader, node: YamlMap, mappings_dir: Path, max_body: int) -> dict[str, SourceSettings]:
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
class Lease:
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


def read_destinations(
    r: Reader, node: YamlMap, names: EventNames | None, lease: Lease
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


def _check_event_name(r: Reader, names: EventNames | None, event: str, mark: tuple[int, int], where: str) -> None:
    if names is not None:
        problem = names.problem(event)
    elif not is_valid_name(event):  # without the mappings only the spelling can be checked
        problem = f"{event!r} is not a canonical event name", "lower_snake names like purchase"
    else:
        problem = None
    if problem:
        r.error(mark, f"{where}: {problem[0]}", problem[1])


def _read_rate_limits(r: Reader, entry: YamlMap) -> tuple[RateLimit, ...] | None:
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
