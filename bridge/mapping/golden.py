"""Golden cases: real webhook bodies beside the canonical events their mapping must produce.

Layout, per provider directory (directory name = provider type = mapping name):

    fixtures/<provider>/<case>.json            the raw webhook body (or <case>.form for form-encoded senders)
    fixtures/<provider>/<case>.headers.json    optional: the request headers (an object)
    fixtures/<provider>/<case>.expected.json   the canonical events (a list), or null when no event type is mapped

A case is parsed by the provider module (no signature check) and every inbound event is evaluated; the expected
file holds all their events in order, or null when the mapping maps none of their types. A case is received at
`GOLDEN_RECEIVED_AT` (2000-01-01T00:00:00Z, what `_received_at` reads), so its output never depends on the clock.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.errors import BridgeError
from bridge.mapping.evaluate import CompiledMapping, MappingSet
from bridge.providers import provider_class, provider_types
from bridge.providers.base import InboundEvent, SourceSettings

_SIDE_FILES = (".expected.json", ".headers.json")
#: what a case's body file may end with: JSON bodies, and application/x-www-form-urlencoded ones (Braintree, Maxio)
BODY_SUFFIXES = (".json", ".form")
Parse = Callable[[bytes, Mapping[str, str]], list[InboundEvent]]
#: the receive time of every golden case (Unix seconds of 2000-01-01T00:00:00Z): fixed, and plainly not a
#: provider's time, so an expected file shows at a glance which fields come from `_received_at`
GOLDEN_RECEIVED_AT = 946684800.0


@dataclass(frozen=True, slots=True)
class GoldenFailure:
    case: str  # "<provider>/<case>"
    reason: str
    diff: str = ""


@dataclass(slots=True)
class GoldenReport:
    passed: list[str] = field(default_factory=list)
    failed: list[GoldenFailure] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (directory or case, why)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lines = [
            f"golden cases: {len(self.passed)} passed, {len(self.failed)} failed, "
            f"{len(self.updated)} updated, {len(self.skipped)} skipped"
        ]
        lines += [f"  skipped {what}: {why}" for what, why in self.skipped]
        for failure in self.failed:
            lines.append(f"  FAILED {failure.case}: {failure.reason}")
            if failure.diff:
                lines += ["    " + line for line in failure.diff.splitlines()]
        return "\n".join(lines)


def case_names(directory: Path) -> list[str]:
    """The golden cases of one provider directory (body files, without side files)."""
    return sorted(
        path.name[: -len(path.suffix)]
        for suffix in BODY_SUFFIXES
        for path in directory.glob(f"*{suffix}")
        if path.is_file() and not path.name.endswith(_SIDE_FILES) and not path.name.startswith("_")
    )


def case_body(directory: Path, case: str) -> bytes:
    """The raw body of a case: `<case>.json`, else `<case>.form`."""
    for suffix in BODY_SUFFIXES:
        path = directory / f"{case}{suffix}"
        if path.is_file():
            return path.read_bytes()
    raise FileNotFoundError(directory / f"{case}.json")


def _provider_options(directory: Path) -> dict[str, Any]:
    """Options a provider needs to be built (`_options.json` in its fixture directory, e.g. Square's
    notification_url); none by default."""
    path = directory / "_options.json"
    if not path.exists():
        return {}
    options = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(options, dict):
        raise ValueError(f"{path}: expected a JSON object of provider options")
    return options


def run_golden_cases(
    fixtures_dir: Path, mappings: MappingSet, *, update: bool = False, only: str | None = None
) -> GoldenReport:
    """Evaluate every case under `fixtures_dir` and compare with (or, with update=True, rewrite) its expected file.

    `only` selects cases: a provider name, or a glob over "<provider>/<case>" (e.g. "stripe/invoice.*").
    """
    report = GoldenReport()
    known_providers = set(provider_types())
    for directory in sorted(p for p in fixtures_dir.iterdir() if p.is_dir()):
        provider = directory.name
        cases = [c for c in case_names(directory) if _selected(only, provider, c)]
        if not cases:
            continue
        mapping = mappings.get(provider)
        if mapping is None:
            report.skipped.append((f"{provider}/", f"no mapping file {provider}.yaml"))
            continue
        if provider not in known_providers:
            report.skipped.append((f"{provider}/", f"no provider module bridge/providers/{provider}.py"))
            continue
        try:
            settings = SourceSettings(name=provider, provider=provider, options=_provider_options(directory))
            parser = provider_class(provider)(settings)
        except ValueError as exc:  # OptionError included: the provider cannot be built without options
            report.skipped.append((f"{provider}/", f"cannot build the provider: {exc} (add {provider}/_options.json)"))
            continue
        for case in cases:
            _run_case(directory, case, provider, parser.parse, mapping, update, report)
    return report


def _selected(only: str | None, provider: str, case: str) -> bool:
    return only is None or only == provider or fnmatch.fnmatchcase(f"{provider}/{case}", only)


def _run_case(
    directory: Path,
    case: str,
    provider: str,
    parse: Parse,
    mapping: CompiledMapping,
    update: bool,
    report: GoldenReport,
) -> None:
    label = f"{provider}/{case}"
    expected_path = directory / f"{case}.expected.json"
    try:
        headers = _headers(directory / f"{case}.headers.json")
        body = case_body(directory, case)
        actual = evaluate_case(body, headers, provider, parse, mapping)
    except (BridgeError, OSError, ValueError) as exc:
        report.failed.append(GoldenFailure(label, f"{type(exc).__name__}: {exc}"))
        return
    if update:
        text = render(actual)
        if not expected_path.exists() or expected_path.read_text(encoding="utf-8") != text:
            expected_path.write_text(text, encoding="utf-8")
            report.updated.append(label)
        else:
            report.passed.append(label)
        return
    if not expected_path.exists():
        report.failed.append(GoldenFailure(label, f"no {expected_path.name}; run with update=True to create it"))
        return
    try:
        expected = json.loads(expected_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        report.failed.append(GoldenFailure(label, f"{expected_path.name} is not valid JSON: {exc}"))
        return
    if expected == actual:
        report.passed.append(label)
        return
    diff = difflib.unified_diff(
        _pretty(expected).splitlines(),
        _pretty(actual).splitlines(),
        fromfile=f"{label}.expected.json",
        tofile=f"{label} (mapping {mapping.path})",
        lineterm="",
    )
    report.failed.append(GoldenFailure(label, "output differs from the expected file", "\n".join(diff)))


def evaluate_case(
    body: bytes,
    headers: dict[str, str],
    provider: str,
    parse: Parse,
    mapping: CompiledMapping,
    received_at: float = GOLDEN_RECEIVED_AT,
) -> list[dict[str, Any]] | None:
    """The canonical events of one webhook body, JSON-normalised (None when no inbound event type is mapped)."""
    produced: list[dict[str, Any]] = []
    mapped = False
    for inbound in parse(body, headers):
        events = mapping.evaluate(inbound, headers=headers, source=provider, provider=provider, received_at=received_at)
        if events is not None:
            mapped = True
            produced.extend(events)
    normalised: list[dict[str, Any]] | None = json.loads(json.dumps(produced)) if mapped else None
    return normalised


def _headers(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path.name} must be a JSON object of header name -> value")
    return {str(name).lower(): str(value) for name, value in raw.items()}


def render(events: list[dict[str, Any]] | None) -> str:
    """The text of an expected file."""
    return json.dumps(events, indent=2, ensure_ascii=False) + "\n"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
