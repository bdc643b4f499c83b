"""The config reader: `${VAR}` interpolation from the given environment, typed option getters, and located
errors (`file:line:column: message (hint: …)`) collected so one run reports every problem of the file.

A section reader reports a problem with `r.error(mark, message, hint)` and carries on with a default, so one run
finds them all; `raise r.fail(...)` stops at a problem nothing after it can be checked without.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from bridge.errors import ConfigError
from bridge.yamlsrc import YamlList, YamlMap

VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def _kind(value: Any) -> str:
    """What a wrong value is, without repeating it (it may be a secret)."""
    return "empty text" if value == "" else f"a {type(value).__name__}"


class Reader:
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

            return VAR.sub(replace, node)
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
