"""Which document fields a mapping reads that the provider's signature does not cover.

Most providers sign the whole body (`Provider.signed_fields is None`): every body field a mapping reads is
covered. Some sign only some fields: Adyen's standard notifications sign eight fields of each item, so a
mapping reading `eventDate` reads a value that anyone holding one captured notification could change.
Request headers are covered only when the provider lists them in `signed_headers` (Standard Webhooks'
`webhook-id`, PayPal's transmission id and time); a mapping reading `_headers.<name>` of any other header reads
a value a replay can change.

`unsigned_reads` walks every expression of a compiled mapping (fields, defaults and `when`) and lists the
paths outside the signed set; `unsigned_field_warnings` phrases them for `bridge check`. The walk is
conservative: a path it cannot resolve (inside a function's `&expression`, after a computed value) counts as
unsigned.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jmespath
from jmespath.exceptions import JMESPathError

from bridge.providers import provider_class
from bridge.providers.base import Provider, SourceSettings

if TYPE_CHECKING:
    from bridge.mapping.evaluate import CompiledMapping, MappingSet

Node = dict[str, Any]
_UNKNOWN = "?"  # the base of a path whose context is not known
_CONSTANTS = {"True", "False", "None"}


@dataclass(frozen=True, slots=True)
class UnsignedRead:
    path: str  # dotted document path (`eventDate`, `_headers.x-event-name`, `items[].price`)
    where: str  # "<event type> rule <n> (<name>), <field or when>" with the file line
    line: int


def _join(base: str, name: str) -> str:
    return f"{base}.{name}" if base else name


def _value_path(node: Node, base: str) -> str | None:
    """The document path `node` evaluates to, when it is a plain path (a.b[0].c); None otherwise."""
    kind = node["type"]
    children = node.get("children", [])
    if kind == "field":
        return _join(base, str(node["value"]))
    if kind in ("current", "identity"):
        return base
    if kind in ("subexpression", "pipe"):
        left = _value_path(children[0], base)
        return None if left is None else _value_path(children[1], left)
    if kind == "index_expression" and children[1]["type"] in ("index", "slice"):
        left = _value_path(children[0], base)
        return None if left is None else left + "[]"
    if kind == "flatten":
        left = _value_path(children[0], base)
        return None if left is None else left + "[]"
    return None


def reads(node: Node, base: str = "") -> set[str]:
    """Every document path `node` reads, relative to the document root (`base` ""). Unresolvable contexts give
    paths starting with `?`."""
    path = _value_path(node, base)
    if path is not None:
        return {path}
    kind = node["type"]
    children = node.get("children", [])
    if kind in ("subexpression", "pipe"):
        left = _value_path(children[0], base)
        if left is not None:
            return reads(children[1], left)
        return reads(children[0], base) | reads(children[1], _UNKNOWN)
    if kind in ("projection", "filter_projection", "value_projection"):
        left = _value_path(children[0], base)
        found = set() if left is not None else reads(children[0], base)
        element = _UNKNOWN if left is None else left + (".*" if kind == "value_projection" else "[]")
        for child in children[1:]:
            found |= reads(child, element)
        return found
    if kind == "function_expression":
        found = set()
        for child in children:
            if child["type"] == "expref":
                found |= reads(child["children"][0], _UNKNOWN)
            else:
                found |= reads(child, base)
        return found
    found = set()
    for child in children:
        if isinstance(child, dict):
            found |= reads(child, base)
    return found


def covered(path: str, provider: Provider) -> bool:
    """Whether the provider's signature covers the document path `path`."""
    if path.startswith(_UNKNOWN) or not path:
        return False
    if path == "_received_at":  # set by the bridge from its own clock, not by the request
        return True
    if path == "_headers" or path.startswith(("_headers.", "_headers[")):
        name = path.removeprefix("_headers.").split(".", 1)[0].split("[", 1)[0]
        return path != "_headers" and name in provider.signed_headers
    signed = provider.signed_fields
    if signed is None:
        return True
    return any(path == s or path.startswith((s + ".", s + "[")) for s in signed)


def _expressions(mapping: CompiledMapping) -> Iterator[tuple[str, str, int]]:
    """(expression, where, line) for every expression of every rule."""
    for event_type in mapping.event_types:
        for rule in mapping.rules(event_type) or ():
            label = f"{event_type} rule {rule.index} ({rule.name})"
            if rule.when_text is not None:
                yield rule.when_text, f"{label}, when", rule.line
            for plan in rule.fields:
                yield plan.expression, f"{label}, {plan.path}", rule.line


def _is_constant(expression: str) -> bool:
    if expression in _CONSTANTS:
        return True
    try:
        float(expression)
    except ValueError:
        return False
    return True


def unsigned_reads(mapping: CompiledMapping, provider: Provider) -> list[UnsignedRead]:
    """The paths `mapping` reads that `provider`'s signature does not cover, first occurrence of each."""
    found: dict[str, UnsignedRead] = {}
    for expression, where, line in _expressions(mapping):
        if _is_constant(expression):
            continue
        try:
            ast = jmespath.compile(expression).parsed
        except JMESPathError:  # the mapping loaded, so this does not happen; never hide it as covered
            found.setdefault(expression, UnsignedRead(expression, where, line))
            continue
        for path in sorted(reads(ast)):
            if not covered(path, provider):
                found.setdefault(path, UnsignedRead(path, where, line))
    return list(found.values())


def unsigned_field_warnings(sources: Mapping[str, SourceSettings], mappings: MappingSet) -> list[str]:
    """One line per (source, unsigned path) its mapping reads, for `bridge check`."""
    warnings = []
    for name, settings in sources.items():
        mapping = mappings.get(settings.mapping or settings.provider)
        if mapping is None:
            continue
        provider = provider_class(settings.provider)(settings)
        for read in unsigned_reads(mapping, provider):
            signed = provider.signed_fields
            what = (
                f"signed: {', '.join(signed)}"
                if signed is not None and not read.path.startswith("_headers")
                else f"signed headers: {', '.join(provider.signed_headers) or 'none'}"
            )
            warnings.append(
                f"{mapping.path}:{read.line}: source {name!r} ({settings.provider}) reads {read.path} "
                f"({read.where}), which the {settings.provider} signature does not cover ({what}); "
                "a replayed or altered webhook can change it"
            )
    return warnings
