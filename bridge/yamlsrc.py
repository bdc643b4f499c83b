"""YAML loading that remembers where every key and value came from.

`load(text, file)` returns plain dicts, lists and scalars, except that mappings are `YamlMap` and sequences
are `YamlList`: they behave as dict and list but also know the 1-based line and column of each key and value,
so config and mapping validation can say `file:line:column: what is wrong`.
"""

from __future__ import annotations

from typing import Any

import yaml

from bridge.errors import LocatedError

Mark = tuple[int, int]


class YamlMap(dict[str, Any]):
    """A YAML mapping with source positions."""

    start: Mark = (1, 1)
    key_marks: dict[str, Mark]
    value_marks: dict[str, Mark]

    def key_mark(self, key: str) -> Mark:
        return self.key_marks.get(key, self.start)

    def value_mark(self, key: str) -> Mark:
        return self.value_marks.get(key, self.key_mark(key))


class YamlList(list[Any]):
    """A YAML sequence with source positions."""

    start: Mark = (1, 1)
    item_marks: list[Mark]

    def item_mark(self, index: int) -> Mark:
        return self.item_marks[index] if index < len(self.item_marks) else self.start


def _mark(node: yaml.Node) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, file: str, error: type[LocatedError]) -> None:
        self.file = file
        self.error = error
        self.constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            explicit = len([pair for pair in node.value if pair[0].tag != "tag:yaml.org,2002:merge"])
            self.constructor.flatten_mapping(node)
            merged = len(node.value) - explicit  # flatten puts `<<:` pairs first; explicit keys override them
            result = YamlMap()
            result.start = _mark(node)
            result.key_marks = {}
            result.value_marks = {}
            from_merge: set[str] = set()
            for index, (key_node, value_node) in enumerate(node.value):
                key = self.build(key_node)
                if not isinstance(key, str | int | float | bool) or isinstance(key, YamlMap | YamlList):
                    line, col = _mark(key_node)
                    raise self.error("a key must be a plain value", file=self.file, line=line, column=col)
                key = str(key)
                if index < merged:
                    from_merge.add(key)  # PyYAML orders merge sources so that the last one written wins
                elif key in from_merge:
                    from_merge.discard(key)
                elif key in result:
                    line, col = _mark(key_node)
                    raise self.error(
                        f"duplicate key {key!r}", file=self.file, line=line, column=col, hint="each key may appear once"
                    )
                result[key] = self.build(value_node)
                result.key_marks[key] = _mark(key_node)
                result.value_marks[key] = _mark(value_node)
            return result
        if isinstance(node, yaml.SequenceNode):
            items = YamlList(self.build(item) for item in node.value)
            items.start = _mark(node)
            items.item_marks = [_mark(item) for item in node.value]
            return items
        return self.constructor.construct_object(node, deep=True)


def load(text: str, file: str, error: type[LocatedError]) -> Any:
    """Parse one YAML document, raising `error` with the position on any syntax problem."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise error(f"YAML syntax error: {exc.problem}", file=file, line=line, column=col) from None
    except yaml.YAMLError as exc:
        raise error(f"YAML error: {exc}", file=file) from None
    if node is None:
        return None
    try:
        return _Builder(file, error).build(node)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise error(f"YAML error: {exc.problem}", file=file, line=line, column=col) from None
