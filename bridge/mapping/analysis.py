"""Load-time checks on one parsed JMESPath expression.

jmespath parses an expression without checking the functions it calls, and its AST carries no positions. These
checks walk the AST (unknown functions, arity, literal arguments, field-kind conflicts, conditions that can never
hold) and find the offending token with jmespath's own lexer, so an error can point at a column.
Every check returns `Problem`s with a 0-based offset into the expression text; compile.py turns offsets into
file:line:column.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jmespath.lexer import Lexer

from bridge.events import ITEM_FIELDS, FieldValueError, coerce
from bridge.mapping.fast import is_false
from bridge.mapping.functions import CUSTOM_NAMES, LITERAL_CHECKS, SPECS, USAGE

Node = dict[str, Any]
Token = dict[str, Any]

BUILTINS_URL = "https://jmespath.org/specification.html#built-in-functions"


@dataclass(frozen=True, slots=True)
class Problem:
    message: str
    offset: int = 0
    hint: str | None = None


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children, left to right."""
    yield node
    for child in node.get("children", ()):
        if isinstance(child, dict):
            yield from walk(child)


def tokenize(expression: str) -> list[Token]:
    return list(Lexer().tokenize(expression))


def closest(word: str, choices: Any) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def uses_headers(ast: Node) -> bool:
    return any(node["type"] == "field" and node["value"] == "_headers" for node in walk(ast))


def uses_received_at(ast: Node) -> bool:
    return any(node["type"] == "field" and node["value"] == "_received_at" for node in walk(ast))


def _function_offset(tokens: list[Token], name: str, occurrence: int) -> int:
    seen = 0
    for token, following in zip(tokens, tokens[1:], strict=False):
        if token["type"] == "unquoted_identifier" and token["value"] == name and following["type"] == "lparen":
            if seen == occurrence:
                return int(token["start"])
            seen += 1
    return 0


def _literal_offset(tokens: list[Token], value: Any) -> int:
    for token in tokens:
        if token["type"] == "literal" and type(token["value"]) is type(value) and token["value"] == value:
            return int(token["start"])
    return 0


def check_functions(ast: Node, tokens: list[Token]) -> list[Problem]:
    """Unknown functions, wrong argument counts and bad literal arguments."""
    problems: list[Problem] = []
    occurrences: dict[str, int] = {}
    for node in walk(ast):
        if node["type"] != "function_expression":
            continue
        name = node["value"]
        count = occurrences.get(name, 0)
        occurrences[name] = count + 1
        offset = _function_offset(tokens, name, count)
        spec = SPECS.get(name)
        if spec is None:
            guess = closest(name, SPECS)
            hint = f"did you mean {guess}()?" if guess else f"bridge functions: {', '.join(sorted(CUSTOM_NAMES))}"
            problems.append(Problem(f"unknown function {name}()", offset, hint))
            continue
        args = node["children"]
        if len(args) < spec.min_args or (spec.max_args is not None and len(args) > spec.max_args):
            if spec.max_args is None:
                wanted = f"at least {spec.min_args}"
            elif spec.min_args == spec.max_args:
                wanted = str(spec.min_args)
            else:
                wanted = f"{spec.min_args} to {spec.max_args}"
            plural = "" if wanted == "1" else "s"
            hint = f"call it as {USAGE[name]}" if name in USAGE else f"see {BUILTINS_URL}"
            problems.append(Problem(f"{name}() takes {wanted} argument{plural}, got {len(args)}", offset, hint))
            continue
        for index, check in LITERAL_CHECKS.get(name, ()):
            if index < len(args) and args[index]["type"] == "literal":
                error = check(args[index]["value"])
                if error:
                    at = _literal_offset(tokens, args[index]["value"])
                    problems.append(Problem(f"{name}(): {error}", at, f"call it as {USAGE.get(name, name)}"))
    return problems


# -- field kinds ------------------------------------------------------------------------------------------

_DESCRIBE = {
    "text": "text",
    "decimal": "a decimal amount",
    "time": "a timestamp",
    "number": "a number",
    "boolean": "true/false",
    "array": "a list",
    "object": "an object",
}
_INCOMPATIBLE: dict[str, frozenset[str]] = {
    "money": frozenset({"text", "time", "boolean", "array", "object"}),
    "int": frozenset({"text", "time", "decimal", "boolean", "array", "object"}),
    "time": frozenset({"decimal", "boolean", "array", "object"}),
    "bool": frozenset({"number", "decimal", "time", "array", "object"}),
    "currency": frozenset({"number", "decimal", "time", "boolean", "array", "object"}),
    "string": frozenset({"array", "object"}),
    "strings": frozenset({"number", "decimal", "time", "boolean", "object"}),
    "items": frozenset({"text", "number", "decimal", "time", "boolean", "object"}),
    "object": frozenset({"text", "number", "decimal", "time", "boolean", "array"}),
}
KIND_HINTS = {
    "money": "use minor_to_major(amount, currency) for amounts in minor units, decimal(x) for major units",
    "int": "select a whole number",
    "time": "select epoch seconds or an ISO 8601 text, or use to_rfc3339(x) / from_ms(x)",
    "bool": "select true/false (or a comparison such as x == 'granted')",
    "currency": "select the 3-letter currency code, e.g. data.object.currency",
    "string": "select a single value",
    "strings": "select a list of texts or a comma-separated text",
    "items": "select a list of objects, e.g. lines[].{name: title, quantity: quantity, price: price}",
    "object": "select an object, e.g. data.object.metadata",
}
_ARRAY_NODES = frozenset(
    {"projection", "flatten", "filter_projection", "value_projection", "multi_select_list", "slice"}
)


def result_type(node: Node) -> str | None:
    """The category of value an expression is known to produce, or None when it depends on the data."""
    kind = node["type"]
    if kind == "function_expression":
        spec = SPECS.get(node["value"])
        return spec.returns if spec else None
    if kind in ("comparator", "not_expression"):
        return "boolean"
    if kind in _ARRAY_NODES:
        return "array"
    if kind == "multi_select_dict":
        return "object"
    if kind in ("pipe", "subexpression"):
        return result_type(node["children"][-1])
    if kind in ("and_expression", "or_expression"):
        left, right = (result_type(child) for child in node["children"])
        return left if left == right else None
    return None


def _alternatives(node: Node) -> Iterator[Node]:
    """The values an `a || b || c` chain can produce (just the node itself otherwise)."""
    if node["type"] == "or_expression":
        for child in node["children"]:
            yield from _alternatives(child)
    else:
        yield node


def check_kind(kind: str, ast: Node, tokens: list[Token]) -> list[Problem]:
    """Whether the expression can produce a value of the field's kind (None: free-form field, anything goes)."""
    problems: list[Problem] = []
    for node in _alternatives(ast):
        if node["type"] == "literal":
            value = node["value"]
            if value is None:
                continue
            try:
                coerce(kind, value)
            except FieldValueError as exc:
                problems.append(Problem(str(exc), _literal_offset(tokens, value), KIND_HINTS[kind]))
    produced = result_type(ast)
    if produced is not None and produced in _INCOMPATIBLE.get(kind, frozenset()):
        offset = 0
        last = ast
        while last["type"] in ("pipe", "subexpression"):
            last = last["children"][-1]
        if last["type"] == "function_expression":
            offset = _function_offset(tokens, last["value"], 0)
            what = f"{last['value']}() gives"
        else:
            what = "this expression gives"
        problems.append(Problem(f"expected {kind}, but {what} {_DESCRIBE[produced]}", offset, KIND_HINTS[kind]))
    if kind == "items":
        problems.extend(_check_item_keys(ast, tokens))
    return problems


def _check_item_keys(ast: Node, tokens: list[Token]) -> list[Problem]:
    node = ast
    while node["type"] == "pipe":
        node = node["children"][-1]
    if node["type"] in ("projection", "filter_projection"):
        node = node["children"][1]
    if node["type"] != "multi_select_dict":
        return []
    problems = []
    for pair in node["children"]:
        key = pair["value"]
        if key in ITEM_FIELDS:
            continue
        offset = 0
        for token, following in zip(tokens, tokens[1:], strict=False):
            if token["value"] == key and following["type"] == "colon":
                offset = int(token["start"])
                break
        guess = closest(key, ITEM_FIELDS)
        hint = f"did you mean {guess!r}?" if guess else f"item fields: {', '.join(ITEM_FIELDS)}"
        problems.append(Problem(f"unknown item field {key!r}", offset, hint))
    return problems


# -- conditions -------------------------------------------------------------------------------------------


def _conjuncts(node: Node) -> Iterator[Node]:
    if node["type"] == "and_expression":
        for child in node["children"]:
            yield from _conjuncts(child)
    else:
        yield node


def never_matches(ast: Node, tokens: list[Token]) -> Problem | None:
    """A `when` that can never hold: a false/null literal, or `a == 'x' && a == 'y'`."""
    hint = "fix the condition, or remove the rule if it is not needed"
    for part in _conjuncts(ast):
        if part["type"] == "literal" and is_false(part["value"]):
            what = "the whole condition" if part is ast else "a part of this condition"
            return Problem(
                f"rule can never match: {what} is always {json.dumps(part['value'])}",
                _literal_offset(tokens, part["value"]),
                hint,
            )
    equalities = [node for node in walk(ast) if node["type"] == "comparator" and node["value"] == "eq"]
    eq_tokens = [token for token in tokens if token["type"] == "eq"]
    seen: dict[str, Any] = {}
    for part in _conjuncts(ast):
        if part["type"] != "comparator" or part["value"] != "eq":
            continue
        left, right = part["children"]
        if right["type"] != "literal":
            left, right = right, left
        if right["type"] != "literal" or left["type"] == "literal":
            continue
        path = json.dumps(left, sort_keys=True)
        value = right["value"]
        if path in seen and seen[path] != value:
            index = next(i for i, node in enumerate(equalities) if node is part)
            offset = int(eq_tokens[index]["start"]) if index < len(eq_tokens) else 0
            return Problem(
                f"rule can never match: the same value is compared with {json.dumps(seen[path])} "
                f"and {json.dumps(value)} joined by &&",
                offset,
                "use || to accept either value",
            )
        seen.setdefault(path, value)
    return None
