"""Compiled mappings and their evaluation: one InboundEvent in, canonical events out (pure, no I/O).

Everything that can be decided once is decided at load time (compile.py): each rule is one generated function
(generate.py: its paths read once, its fields coerced and placed), rules are grouped by provider event type.
Per webhook, evaluation runs each rule's function and checks the required fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.errors import MappingEvalError
from bridge.events import FieldValueError, coerce
from bridge.mapping.fast import Getter
from bridge.mapping.generate import CoerceFailed, FieldFailed, RuleFunction, WhenFailed
from bridge.providers.base import InboundEvent

Coercer = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class FieldPlan:
    """How one canonical field of a rule is produced."""

    path: str
    expression: str  # the source text, for error messages
    get: Getter
    coerce: Coercer | None  # None: a free-form field (properties.*), kept as the expression gives it
    copy: bool  # an object value other fields are set inside: copy it so the webhook document is never mutated
    node: dict[str, Any] | None = None  # the parsed expression (None: a constant, `get` gives it)
    kind: str | None = None  # the canonical field's kind (None: free-form)


@dataclass(frozen=True, slots=True)
class Rule:
    """One entry of `events.<type>`: emits one canonical event when `when` holds."""

    event_type: str
    index: int  # 1-based position among the rules of its event type
    line: int
    name: str
    when: Getter | None
    when_text: str | None
    fields: tuple[FieldPlan, ...]
    #: the whole rule as one generated function (generate.py): None when `when` is false, else the field values
    run: RuleFunction
    #: the entity whose events a `by_key` destination delivers in order (None: the canonical entity id)
    ordering_key: FieldPlan | None = None
    #: the provider's sequence number of the event, ordering events that occurred in the same second
    sequence: FieldPlan | None = None


def coercer(kind: str | None) -> Coercer | None:
    """The conversion applied to a field of `kind` (precomputed per field)."""
    if kind is None:
        return None
    if kind == "string":
        return lambda value: value if type(value) is str else coerce("string", value)
    return lambda value: coerce(kind, value)


class CompiledMapping:
    """One mapping file, compiled: `evaluate` turns an InboundEvent into canonical events."""

    __slots__ = ("_rules", "content_hash", "name", "path", "provider", "uses_headers", "uses_received_at")

    def __init__(
        self,
        *,
        name: str,
        path: Path,
        content_hash: str,
        provider: str | None,
        rules: Mapping[str, tuple[Rule, ...]],
        uses_headers: bool,
        uses_received_at: bool = False,
    ) -> None:
        self.name = name
        self.path = path
        self.content_hash = content_hash
        self.provider = provider
        self._rules = dict(rules)
        self.uses_headers = uses_headers
        self.uses_received_at = uses_received_at

    def __repr__(self) -> str:
        return f"CompiledMapping({self.name!r}, {len(self._rules)} event types)"

    @property
    def event_types(self) -> tuple[str, ...]:
        """The provider event types this file maps, in file order."""
        return tuple(self._rules)

    def rules(self, event_type: str) -> tuple[Rule, ...] | None:
        return self._rules.get(event_type)

    def evaluate(
        self,
        event: InboundEvent,
        *,
        headers: Mapping[str, str],
        source: str,
        provider: str,
        received_at: float | None = None,
    ) -> list[dict[str, Any]] | None:
        """The canonical events for `event`, or None when its type is not in this file.

        `received_at` (Unix seconds) is when the bridge received the webhook: the stored webhook's time, so a replay
        sees the same value; expressions read it as `_received_at`.

        Raises MappingEvalError naming the file, event type, rule and field when an expression fails, a value
        does not fit its field, or `id` / `occurred_at` come out empty.
        """
        rules = self._rules.get(event.event_type)
        if rules is None:
            return None
        document = event.document
        if (self.uses_headers or self.uses_received_at) and isinstance(document, dict):
            document = dict(document)
            if self.uses_headers:
                document["_headers"] = {key.lower(): value for key, value in headers.items()}
            if self.uses_received_at:
                if received_at is None:
                    raise MappingEvalError(f"{self.path}: the file reads _received_at, but no receive time was given")
                document["_received_at"] = received_at
        produced: list[dict[str, Any]] = []
        for rule in rules:
            try:
                values = rule.run(document)
            except WhenFailed as failed:  # any failure inside jmespath or a function: this webhook fails to map
                detail = f"{_describe(failed.cause)} (in {rule.when_text!r})"
                raise self._error(rule, "when", detail) from failed.cause
            except FieldFailed as failed:
                plan = rule.fields[failed.index]
                detail = f"{_describe(failed.cause)} (in {plan.expression!r})"
                raise self._error(rule, plan.path, detail) from failed.cause
            except CoerceFailed as failed:
                plan = rule.fields[failed.index]
                raise self._error(rule, plan.path, f"{failed.cause} (from {plan.expression!r})") from None
            if values is not None:
                produced.append(self._emit(rule, values, document, event, source, provider))
        return produced

    def _emit(
        self, rule: Rule, values: dict[str, Any], document: Any, event: InboundEvent, source: str, provider: str
    ) -> dict[str, Any]:
        for required in ("id", "occurred_at"):
            if required not in values:
                text = next((plan.expression for plan in rule.fields if plan.path == required), None)
                why = f"{text!r} gave null" if text else "no expression sets it"
                raise self._error(rule, required, f"required, but {why}")
        out = {
            "name": rule.name,
            "id": values.pop("id"),
            "occurred_at": values.pop("occurred_at"),
            "source": {
                "name": source,
                "provider": provider,
                "webhook_id": event.event_id,
                "webhook_type": event.event_type,
            },
            **values,
        }
        for extra in (rule.ordering_key, rule.sequence):
            if extra is not None:
                value = self._value(rule, extra, document)
                if value is not None:  # null: the default applies (the canonical entity id; no sequence)
                    out[extra.path] = value
        return out

    def _value(self, rule: Rule, plan: FieldPlan, document: Any) -> Any:
        try:
            value = plan.get(document)
        except Exception as exc:
            raise self._error(rule, plan.path, f"{_describe(exc)} (in {plan.expression!r})") from exc
        if value is not None and plan.coerce is not None:
            try:
                value = plan.coerce(value)
            except FieldValueError as exc:
                raise self._error(rule, plan.path, f"{exc} (from {plan.expression!r})") from None
        return value

    def _error(self, rule: Rule, field: str, detail: str) -> MappingEvalError:
        return MappingEvalError(
            f"{self.path}:{rule.line}: {rule.event_type} rule {rule.index} ({rule.name}): {field}: {detail}"
        )


def _describe(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


class MappingSet:
    """Every mapping file of a directory, compiled, by name (the file stem)."""

    __slots__ = ("_mappings", "hashes", "version")

    def __init__(self, mappings: Mapping[str, CompiledMapping], version: str) -> None:
        self._mappings = dict(sorted(mappings.items()))
        self.hashes: dict[str, str] = {name: m.content_hash for name, m in self._mappings.items()}
        self.version = version

    def __repr__(self) -> str:
        return f"MappingSet({list(self._mappings)}, version={self.version[:12]})"

    def __len__(self) -> int:
        return len(self._mappings)

    def __contains__(self, name: object) -> bool:
        return name in self._mappings

    def get(self, name: str) -> CompiledMapping | None:
        return self._mappings.get(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._mappings)
