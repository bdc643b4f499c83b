"""`bridge init`: write a commented starter bridge.yaml for the sources and destinations named.

Everything comes from the provider and destination registries: each type's declared `options` (with their
one-line descriptions), whether it needs secrets or a URL. A new provider or destination type appears here
without an edit. Every secret, and every other value only the user knows, is a `${ENV}` placeholder; the
optional options are written as comments. `bridge check` then names each variable still to set.
"""

from __future__ import annotations

import difflib
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from bridge import shipped
from bridge.destinations import destination_class, destination_types
from bridge.destinations.base import DestinationSettings
from bridge.destinations.base import OptionError as DestinationOptionError
from bridge.errors import ConfigError
from bridge.logs import SENSITIVE_FIELD
from bridge.providers import provider_class, provider_types

_REQUIRED = re.compile(r"\brequired\b", re.I)


@dataclass(frozen=True)
class Starter:
    text: str
    #: environment variables the file refers to, in order
    variables: list[str]
    #: mapping files the sources use
    mappings: list[str]


def _env_name(*parts: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", "_".join(parts).upper()).strip("_")


def _is_secret(key: str, description: str) -> bool:
    return "${ENV}" in description or bool(SENSITIVE_FIELD.search(key))


def _is_required(description: str) -> bool:
    return bool(_REQUIRED.search(description)) and "optional" not in description.lower()


def _choose(kind: str, value: str, known: list[str]) -> str:
    if value in known:
        return value
    close = difflib.get_close_matches(value, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
    raise ConfigError(f"unknown {kind} {value!r}", hint=hint)


def _quoted(text: str) -> str:
    return orjson.dumps(text).decode()


def _option_lines(owner: str, options: dict[str, str], variables: list[str]) -> list[str]:
    lines = []
    for key, description in options.items():
        comment = f"    # {key}: {description}"
        if _is_required(description):
            variable = _env_name(owner, key)
            variables.append(variable)
            lines += [comment, f"    {key}: {_quoted('${' + variable + '}')}"]
        else:
            lines.append(f"    # {key}: ...    ({description})" if not _is_secret(key, description) else
                         f"    # {key}: {_quoted('${' + _env_name(owner, key) + '}')}    ({description})")
    return lines


def _needs_url(kind: str) -> bool:
    """Whether a type that declares `url` optional still refuses to start without one (when its other way
    to a URL is an option the starter leaves commented out)."""
    cls = destination_class(kind)
    try:
        cls(DestinationSettings(name=kind, type=kind))
    except DestinationOptionError as exc:
        return exc.key == "url"
    except ValueError:
        return False
    return False


def starter(sources: Sequence[str], destinations: Sequence[str]) -> Starter:
    """The text of a starter bridge.yaml for provider types `sources` and destination types `destinations`."""
    providers, kinds = provider_types(), destination_types()
    variables = ["BRIDGE_OPS_TOKEN"]
    lines = [
        "# bridge.yaml: written by `bridge init`. Secrets are ${ENV} references: set each variable listed by",
        "# `bridge check` in the environment (or your secret store), never in this file.",
        "# Reference: docs/operations.md (this file), docs/providers.md, docs/destinations.md.",
        "",
        'outbox: {url: "sqlite:///outbox.db"}   # relative to this file; four slashes for an absolute path;',
        "                                       # postgresql://user@host/db for several replicas",
        'ops: {token: "${BRIDGE_OPS_TOKEN}"}     # >= 16 random characters: the /ops API and the status page',
        "mappings: ./mappings                   # one <provider>.yaml per source (bridge init copies the shipped ones)",
        "server: {host: 127.0.0.1, port: 8080}",
        "log: {format: json}                    # or text",
        "",
        "sources:                               # providers POST to https://<your host>/webhooks/<source name>",
    ]
    mapping_names: list[str] = []
    for value in sources:
        provider = _choose("provider", value, providers)
        provider_cls = provider_class(provider)
        lines.append(f"  {provider}:")
        lines.append(f"    provider: {provider}")
        if provider_cls.requires_secrets:
            variable = _env_name(provider, "webhook_secret")
            variables.append(variable)
            lines.append(f"    secrets: [{_quoted('${' + variable + '}')}]   # two while rotating: new first")
        lines += _option_lines(provider, dict(provider_cls.options), variables)
        if provider_cls.default_tolerance is not None:
            window = provider_cls.default_tolerance
            lines.append(f"    # tolerance_seconds: {window:g}    (signature timestamp window)")
        mapping_names.append(provider)
    if not sources:
        lines.append("  {}")
    lines += ["", "destinations:"]
    for value in destinations:
        kind = _choose("destination type", value, kinds)
        destination_cls = destination_class(kind)
        lines.append(f"  {kind}:")
        lines.append(f"    type: {kind}")
        if destination_cls.requires_url or _needs_url(kind):
            variable = _env_name(kind, "url")
            variables.append(variable)
            lines.append(f"    url: {_quoted('${' + variable + '}')}   # the endpoint, see docs/destinations.md")
        else:
            lines.append("    # url: ...    (optional for this type: its documented endpoint is the default)")
        lines.append('    events: ["*"]                          # or a list: [purchase, refund, ...]')
        lines += _option_lines(kind, dict(destination_cls.options), variables)
    if not destinations:
        lines.append("  {}")
    return Starter("\n".join(lines) + "\n", variables, mapping_names)


def write_starter(path: Path, sources: Sequence[str], destinations: Sequence[str], *, force: bool) -> Starter:
    """Write the starter config to `path` and copy the sources' shipped mappings beside it (never over an
    existing file). Raises ConfigError if `path` exists and not `force`."""
    made = starter(sources, destinations)
    if path.exists() and not force:
        raise ConfigError(f"{path} exists", hint="pass --force to overwrite it, or --output another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(made.text, encoding="utf-8")
    target = path.parent / "mappings"
    target.mkdir(exist_ok=True)
    for name in made.mappings:
        source = shipped.mappings_dir() / f"{name}.yaml"
        if source.is_file() and not (target / source.name).exists():
            shutil.copyfile(source, target / source.name)
    return made
