"""Each rule of a mapping file as one generated Python function: `when`, every field, coercion and placement.

fast.py turns each expression into a closure; a rule then costs one closure call per field and one dictionary
walk per path, and the Stripe checkout rule walks `data.object` some thirty times. Here, at load time, a rule
becomes the source of one function (compiled once with `compile`), in which

- every plain path read from the document root (`data.object.customer_details.email`) is a local computed once,
  its prefixes shared by all the fields that use them (a path lookup cannot fail, so computing it up front
  changes nothing);
- comparisons, `&&`/`||`/`!`, literals and calls of the bridge's functions are inline Python with jmespath's own
  truthiness, equality and ordering (fast.py's helpers);
- anything else (projections, filters, slices, pipes, expression references, paths below an index) is the
  fast.py closure of that node, called on the document, so its semantics are exactly fast.py's;
- each field's value is coerced (a `string` field only when it is not text already), copied where other fields
  go inside it, and set into nested dicts as `events.set_path` would.

A failing expression raises `FieldFailed` (the field's index and the cause), a value that does not fit its field
`CoerceFailed`, a failing `when` `WhenFailed`; evaluate.py turns them into the usual MappingEvalError.
tests/mapping/test_generate.py checks every shipped rule against jmespath's interpreter on every fixture.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from jmespath import visitor

from bridge.events import FieldValueError
from bridge.mapping import fast
from bridge.mapping.functions import FUNCTIONS, direct_call

Node = dict[str, Any]
RuleFunction = Callable[[Any], "dict[str, Any] | None"]


class Plan(Protocol):
    """What of evaluate.FieldPlan a rule function is built from."""

    @property
    def path(self) -> str: ...
    @property
    def node(self) -> Node | None: ...
    @property
    def get(self) -> fast.Getter: ...
    @property
    def coerce(self) -> Callable[[Any], Any] | None: ...
    @property
    def copy(self) -> bool: ...
    @property
    def kind(self) -> str | None: ...


class FieldFailed(Exception):
    """The expression of field `index` raised `cause`."""

    def __init__(self, index: int, cause: Exception) -> None:
        super().__init__(index, cause)
        self.index = index
        self.cause = cause


class CoerceFailed(Exception):
    """The value of field `index` does not fit its canonical field."""

    def __init__(self, index: int, cause: FieldValueError) -> None:
        super().__init__(index, cause)
        self.index = index
        self.cause = cause


class WhenFailed(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(cause)
        self.cause = cause


def _ordered(compare: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    if not (fast._is_comparable(left) and fast._is_comparable(right)):
        return None
    return compare(left, right)


def _not(value: Any) -> bool:
    if fast._is_actual_number(value) and value == 0:
        return False
    return not value


_BASE: dict[str, Any] = {
    "isinstance": isinstance,
    "dict": dict,
    "str": str,
    "type": type,
    "Exception": Exception,
    "_is_false": fast.is_false,
    "_equals": fast._equals,
    "_ordered": _ordered,
    "_not": _not,
    "_call": FUNCTIONS.call_function,
    "FieldFailed": FieldFailed,
    "CoerceFailed": CoerceFailed,
    "WhenFailed": WhenFailed,
    "FieldValueError": FieldValueError,
}


class _Generator:
    def __init__(self) -> None:
        self.namespace: dict[str, Any] = dict(_BASE)
        self.chains: dict[tuple[str, ...], str] = {}
        self.temps = 0

    def bind(self, value: Any, prefix: str) -> str:
        name = f"{prefix}{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"

    def chain(self, keys: tuple[str, ...]) -> str:
        """The local holding the root path `keys` (its prefixes get locals too)."""
        for end in range(1, len(keys) + 1):
            if keys[:end] not in self.chains:
                self.chains[keys[:end]] = f"_p{len(self.chains)}"
        return self.chains[keys]

    def prelude(self) -> list[str]:
        lines = []
        for keys, name in self.chains.items():  # insertion order: every prefix before its extensions
            parent = "doc" if len(keys) == 1 else self.chains[keys[:-1]]
            key = repr(keys[-1])
            lines.append(f"    {name} = {parent}.get({key}) if isinstance({parent}, dict) else None")
        return lines

    def expr(self, node: Node) -> str:
        """A Python expression equal to `TreeInterpreter.visit(node, doc)`."""
        kind = node["type"]
        keys = fast.field_chain(node)
        if keys is not None:
            return self.chain(keys)
        if kind == "literal":
            return self.bind(node["value"], "_c")
        if kind in ("current", "identity"):
            return "doc"
        if kind == "comparator":
            left, right = (self.expr(child) for child in node["children"])
            op = node["value"]
            if op == "eq":
                return f"_equals({left}, {right})"
            if op == "ne":
                return f"(not _equals({left}, {right}))"
            compare = self.bind(visitor.TreeInterpreter.COMPARATOR_FUNC[op], "_cmp")
            return f"_ordered({compare}, {left}, {right})"
        if kind in ("and_expression", "or_expression"):
            left, right = (self.expr(child) for child in node["children"])
            t = self.temp()
            if kind == "and_expression":  # the left value when it is false, else the right one
                return f"({t} if _is_false({t} := {left}) else {right})"
            return f"({right} if _is_false({t} := {left}) else {t})"
        if kind == "not_expression":
            return f"_not({self.expr(node['children'][0])})"
        if kind == "function_expression" and not any(c["type"] == "expref" for c in node["children"]):
            args = ", ".join(self.expr(child) for child in node["children"])
            direct = direct_call(node["value"])
            if direct is not None:
                return f"{self.bind(direct, '_f')}({args})"
            return f"_call({node['value']!r}, [{args}])"
        return f"{self.bind(fast.build(node), '_g')}(doc)"

    def place(self, path: str, value: str) -> list[str]:
        """Statements setting `value` at dotted `path` in `values`, as events.set_path does."""
        keys = path.split(".")
        if len(keys) == 1:
            return [f"values[{keys[0]!r}] = {value}"]
        lines = ["_n = values"]
        for key in keys[:-1]:
            lines += [
                f"_m = _n.get({key!r})",
                "if not isinstance(_m, dict):",
                f"    _m = _n[{key!r}] = {{}}",
                "_n = _m",
            ]
        return [*lines, f"_n[{keys[-1]!r}] = {value}"]


def rule_function(when: Node | None, when_get: fast.Getter | None, plans: Sequence[Plan]) -> RuleFunction:
    """The function of one rule: the document in; None when `when` does not hold, else the field values (nested)."""
    g = _Generator()
    body: list[str] = []
    if when_get is not None:
        condition = g.expr(when) if when is not None else f"{g.bind(when_get, '_g')}(doc)"
        body += [
            "try:",
            f"    _w = {condition}",
            "except Exception as exc:",
            "    raise WhenFailed(exc) from exc",
            "if _is_false(_w):",
            "    return None",
        ]
    body.append("values = {}")
    for index, plan in enumerate(plans):
        value = g.expr(plan.node) if plan.node is not None else f"{g.bind(plan.get, '_g')}(doc)"
        body += ["try:", f"    v = {value}", "except Exception as exc:"]
        body.append(f"    raise FieldFailed({index}, exc) from exc")
        body.append("if v is not None:")
        inner: list[str] = []
        if plan.coerce is not None:
            coerce = g.bind(plan.coerce, "_k")
            convert = ["try:", f"    v = {coerce}(v)", "except FieldValueError as exc:"]
            convert.append(f"    raise CoerceFailed({index}, exc) from None")
            if plan.kind == "string":
                inner += ["if type(v) is not str:", *[f"    {line}" for line in convert]]
            else:
                inner += convert
        if plan.copy:
            inner += ["if isinstance(v, dict):", "    v = dict(v)"]
        inner += g.place(plan.path, "v")
        body += [f"    {line}" for line in inner]
    body.append("return values")
    source = "\n".join(["def rule(doc):", *g.prelude(), *[f"    {line}" for line in body]])
    code = compile(source, "<mapping rule>", "exec")
    exec(code, g.namespace)  # generated here: mapping text appears only as repr() string literals (keys, names)
    function: RuleFunction = g.namespace["rule"]
    function.__doc__ = source  # shown by a debugger, and by tests when a rule differs
    return function
