"""Every class of load-time error, with the exact file:line:column and an actionable hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.errors import MappingError
from bridge.mapping import check_mappings, load_mappings
from tests.mapping.conftest import WriteMapping

HEADER = """\
provider: stripe
defaults:
  occurred_at: "to_rfc3339(created)"
events:
"""


def only_error(path: Path) -> MappingError:
    errors = check_mappings(path.parent)
    assert len(errors) == 1, "\n".join(map(str, errors))
    return errors[0]


def where(error: MappingError) -> tuple[str | None, int | None, int | None]:
    return error.file, error.line, error.column


def test_jmespath_syntax_error_points_inside_the_quoted_expression(write_mapping: WriteMapping) -> None:
    path = write_mapping(
        HEADER
        + """\
  charge.refunded:
    - name: refund
      fields:
        id: "data.object..id"
"""
    )
    error = only_error(path)
    # line 8 is `        id: "data.object..id"`: the value's quote is column 13, the second dot (offset 12) column 26
    assert where(error) == (str(path), 8, 26)
    assert "JMESPath syntax error" in error.message
    assert error.hint and "syntax" in error.hint
    assert str(error).startswith(f"{path}:8:26: JMESPath syntax error")


def test_syntax_error_in_a_plain_scalar_has_no_quote_offset(write_mapping: WriteMapping) -> None:
    path = write_mapping(HEADER + "  x:\n    - name: refund\n      fields:\n        id: data.object.[id\n")
    error = only_error(path)
    assert where(error)[1:] == (8, 28)  # plain scalar starts at column 13; the expression ends at offset 15
    assert "ends too early" in error.message


def test_unclosed_quote_is_a_lexer_error(write_mapping: WriteMapping) -> None:
    path = write_mapping(HEADER + "  x:\n    - name: refund\n      fields:\n        id: 'data.\"object'\n")
    error = only_error(path)
    assert where(error)[1:] == (8, 19)  # the `"` at offset 5 of a single-quoted scalar starting at column 13
    assert "Unclosed" in error.message


def test_unknown_function_suggests_the_closest(write_mapping: WriteMapping) -> None:
    path = write_mapping(
        HEADER
        + """\
  x:
    - name: purchase
      fields:
        id: "data.object.id"
        order.total: "minor_to_majr(data.object.amount, data.object.currency)"
"""
    )
    error = only_error(path)
    assert where(error)[1:] == (9, 23)
    assert error.message == "unknown function minor_to_majr()"
    assert error.hint == "did you mean minor_to_major()?"


def test_unknown_function_nested_in_a_literal_block(write_mapping: WriteMapping) -> None:
    path = write_mapping(
        HEADER
        + """\
  x:
    - name: purchase
      when: |
        data.object.paid
          && sttarts_with(data.object.id, 'pi_')
      fields:
        id: "data.object.id"
"""
    )
    error = only_error(path)
    assert where(error)[1:] == (9, 14)
    assert error.hint == "did you mean starts_with()?"


def test_error_on_the_second_line_of_a_folded_scalar(write_mapping: WriteMapping) -> None:
    path = write_mapping(
        HEADER
        + """\
  x:
    - name: purchase
      fields:
        id: "data.object.id"
        order.total: >-
          minor_to_major(data.object.amount,
          lowr(data.object.currency))
"""
    )
    error = only_error(path)
    assert where(error)[1:] == (11, 11)
    assert error.message == "unknown function lowr()"


@pytest.mark.parametrize(
    ("expression", "column", "message"),
    [
        ("minor_to_major(data.object.amount)", 14, "minor_to_major() takes 2 to 3 arguments, got 1"),
        ("upper(a, b)", 14, "upper() takes 1 argument, got 2"),
        ("default(a)", 14, "default() takes 2 arguments, got 1"),
        ("join(',')", 14, "join() takes 2 arguments, got 1"),  # built-ins are checked too
        ("x || to_rfc3339()", 19, "to_rfc3339() takes 1 argument, got 0"),
    ],
)
def test_wrong_arity(write_mapping: WriteMapping, expression: str, column: int, message: str) -> None:
    path = write_mapping(HEADER + f'  x:\n    - name: refund\n      fields:\n        id: "{expression}"\n')
    error = only_error(path)
    assert where(error)[1:] == (8, column)
    assert error.message == message
    assert error.hint


def test_bad_literal_arguments(write_mapping: WriteMapping) -> None:
    path = write_mapping(
        HEADER
        + """\
  x:
    - name: purchase
      fields:
        id: "data.object.id"
        order.total: "minor_to_major(data.object.amount, 'dollars')"
        order.tax: "minor_to_major(data.object.tax, data.object.currency, 'strip')"
"""
    )
    first, second = check_mappings(path.parent)
    assert where(first)[1:] == (9, 58)
    assert "'dollars' is not a 3-letter ISO 4217 currency code" in first.message
    assert where(second)[1:] == (10, 75)
    assert "unknown convention 'strip'" in second.message


def test_unknown_canonical_field_suggests_the_closest(write_mapping: WriteMapping) -> None:
    path = write_mapping(
        HEADER + '  x:\n    - name: purchase\n      fields:\n        id: "a"\n        order.totl: "b"\n'
    )
    error = only_error(path)
    assert where(error)[1:] == (9, 9)  # the key
    assert error.message == "unknown canonical field 'order.totl'"
    assert error.hint and error.hint.startswith("did you mean 'order.total'?")


def test_engine_fields_cannot_be_set(write_mapping: WriteMapping) -> None:
    path = write_mapping(
        HEADER + '  x:\n    - name: purchase\n      fields:\n        id: "a"\n        source.name: "b"\n'
    )
    error = only_error(path)
    assert where(error)[1:] == (9, 9)
    assert "set by the engine" in error.message


def test_unknown_event_name(write_mapping: WriteMapping) -> None:
    path = write_mapping(HEADER + '  x:\n    - name: Purchase\n      fields:\n        id: "a"\n')
    error = only_error(path)
    assert where(error)[1:] == (6, 13)
    assert error.message == "unknown event name 'Purchase'"
    assert error.hint == "did you mean 'purchase'?"


@pytest.mark.parametrize(
    ("field", "value", "column", "message"),
    [
        ("order.total", "\"'abc'\"", 23, "expected money (a decimal number), got text 'abc'"),
        ("order.total", "\"data.total || 'n/a'\"", 37, "expected money (a decimal number), got text 'n/a'"),
        ("order.total", '"upper(data.total)"', 23, "order.total: expected money, but upper() gives text"),
        ("order.total", "\"concat(data.a, '.', data.b)\"", 23, "order.total: expected money, but concat() gives text"),
        ("order.currency", "42", 25, "expected a 3-letter ISO 4217 currency code, got 42"),
        (
            "order.currency",
            '"length(data.items)"',
            26,
            "order.currency: expected currency, but length() gives a number",
        ),
        ("order.currency", '"minor_to_major(data.a, data.c)"', 26, "expected currency, but minor_to_major() gives"),
        ("customer.order_count", "true", 31, "expected a whole number, got a boolean"),
        ("consent.marketing", '"to_rfc3339(data.t)"', 29, "expected bool, but to_rfc3339() gives a timestamp"),
        ("subscription.started_at", '"data.a == data.b"', 35, "expected time, but this expression gives true/false"),
        ("order.items", '"data.items[].{name: title, qty: quantity}"', 50, "unknown item field 'qty'"),
        ("customer.email", '"data.lines[].email"', 26, "expected string, but this expression gives a list"),
    ],
)
def test_wrong_type(write_mapping: WriteMapping, field: str, value: str, column: int, message: str) -> None:
    path = write_mapping(
        HEADER + f'  x:\n    - name: purchase\n      fields:\n        id: "a"\n        {field}: {value}\n'
    )
    error = only_error(path)
    assert where(error)[1:] == (9, column)
    assert message in str(error)
    assert error.hint


def test_text_into_a_currency_field_is_fine(write_mapping: WriteMapping) -> None:
    path = write_mapping(
        HEADER + '  x:\n    - name: purchase\n      fields:\n        id: "a"\n        order.currency: "upper(c)"\n'
    )
    assert check_mappings(path.parent) == []


@pytest.mark.parametrize(
    ("when", "column", "message"),
    [
        ('"`false`"', 14, "the whole condition is always false"),
        ('"`null`"', 14, "the whole condition is always null"),
        ("\"data.paid && ''\"", 27, 'a part of this condition is always ""'),
        ("\"a.b == 'x' && c && a.b == 'y'\"", 37, 'compared with "x" and "y"'),
        ("\"'x' == a.b && a.b == 'y'\"", 32, 'compared with "x" and "y"'),
        ("false", 13, "`when` is false"),
        ("null", 13, "`when` is null"),
    ],
)
def test_rule_that_can_never_match(write_mapping: WriteMapping, when: str, column: int, message: str) -> None:
    path = write_mapping(HEADER + f'  x:\n    - name: purchase\n      when: {when}\n      fields:\n        id: "a"\n')
    error = only_error(path)
    assert where(error)[1:] == (7, column)
    assert "rule can never match" in error.message and message in error.message


def test_conditions_that_can_match_are_accepted(write_mapping: WriteMapping) -> None:
    path = write_mapping(
        HEADER
        + """\
  x:
    - name: purchase
      when: "a == 'x' || a == 'y'"
      fields: {id: "a"}
    - name: refund
      when: "a == 'x' && b == 'y' && a == 'x'"
      fields: {id: "a"}
"""
    )
    assert check_mappings(path.parent) == []


def test_missing_name_and_id(write_mapping: WriteMapping) -> None:
    path = write_mapping(
        HEADER
        + """\
  x:
    - fields:
        id: "a"
    - name: refund
      fields:
        order.id: "a"
"""
    )
    no_name, no_id = check_mappings(path.parent)
    assert where(no_name)[1:] == (6, 7)
    assert no_name.message == "x: rule 1 has no name"
    assert no_name.hint and "purchase" in no_name.hint
    assert where(no_id)[1:] == (8, 7)
    assert no_id.message == "x rule 2 (refund) sets no id"


def test_missing_occurred_at_without_defaults(write_mapping: WriteMapping) -> None:
    path = write_mapping('events:\n  x:\n    name: refund\n    fields: {id: "a"}\n')
    error = only_error(path)
    assert where(error)[1:] == (3, 5)
    assert error.message == "x rule 1 (refund) sets no occurred_at"
    assert error.hint and "defaults" in error.hint


def test_unknown_keys_suggest_the_closest(write_mapping: WriteMapping) -> None:
    path = write_mapping(
        """\
provider: stripe
defualts: {}
events:
  x:
    - name: refund
      feilds: {id: a}
"""
    )
    errors = [e for e in check_mappings(path.parent) if e.message.startswith("unknown key")]
    assert [(e.line, e.column, e.message, e.hint) for e in errors] == [
        (2, 1, "unknown key 'defualts' at the top of the file", "did you mean 'defaults'?"),
        (6, 7, "unknown key 'feilds' in a rule", "did you mean 'fields'?"),
    ]


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("- a\n- b\n", 1, 1, "a mapping file must be a YAML mapping"),
        ("", 1, 1, "a mapping file must be a YAML mapping"),
        ("provider: stripe\nevents: [a, b]\n", 2, 9, "`events` must be a mapping"),
        ("provider: stripe\nevents: {}\n", 2, 9, "`events` must be a mapping"),
        ("provider: stripe\n", 1, 1, "the file has no `events`"),
        ("provider: 3\nevents:\n  x: 5\n", 1, 11, "`provider` must be text"),
        ("events:\n  x: 5\n", 2, 6, "x: expected a rule or a list of rules"),
        ("events:\n  x: [5]\n", 2, 7, "x: a rule must be a mapping"),
        ("events:\n  x:\n    name: refund\n    fields: [id]\n", 4, 13, "`fields` must be a mapping"),
        (
            "events:\n  x:\n    name: refund\n    when: 3\n    fields: {id: a, occurred_at: b}\n",
            4,
            11,
            "`when` must be",
        ),
        ("events:\n  x:\n    name: refund\n    fields: {id: [a], occurred_at: b}\n", 4, 18, "id: expected a JMESPath"),
        ("events:\n  x:\n    name: refund\n    fields: {id: '', occurred_at: b}\n", 4, 19, "the expression is empty"),
        ("events:\n  x: {name: refund\n", 3, 1, "YAML syntax error"),
        ("events:\n  x: 1\n  x: 2\n", 3, 3, "duplicate key 'x'"),
    ],
)
def test_structure_errors(write_mapping: WriteMapping, text: str, line: int, column: int, message: str) -> None:
    path = write_mapping(text)
    errors = check_mappings(path.parent)
    assert errors, "expected an error"
    assert where(errors[0]) == (str(path), line, column)
    assert message in errors[0].message


def test_check_returns_every_error_and_load_raises_the_first(write_mapping: WriteMapping) -> None:
    write_mapping('events:\n  x:\n    name: Refund\n    fields: {id: "upper(", occurred_at: "b"}\n', name="a")
    second = write_mapping('events:\n  y:\n    name: refund\n    fields: {id: "a", occurred_at: "nope(b)"}\n', name="b")
    errors = check_mappings(second.parent)
    assert [(Path(e.file or "").name, e.line) for e in errors] == [("a.yaml", 3), ("a.yaml", 4), ("b.yaml", 4)]
    with pytest.raises(MappingError) as raised:
        load_mappings(second.parent)
    assert str(raised.value) == str(errors[0])


def test_yml_files_and_missing_directory(tmp_path: Path) -> None:
    (tmp_path / "stripe.yml").write_text("events: {}\n")
    (tmp_path / "README.md").write_text("not a mapping\n")
    (error,) = check_mappings(tmp_path)
    assert error.file == str(tmp_path / "stripe.yml")
    assert error.hint == "rename it to stripe.yaml"
    (missing,) = check_mappings(tmp_path / "nope")
    assert missing.message == "mappings directory not found"
