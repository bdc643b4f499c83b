"""The shipped Stripe mapping compiles cleanly, and docs/mappings.md documents the model and every function."""

from __future__ import annotations

import json
import re

import jmespath

from bridge.events import FIELDS, ITEM_FIELDS
from bridge.mapping import compile_file
from bridge.mapping.functions import CUSTOM_NAMES, OPTIONS
from tests.mapping.conftest import MAPPINGS, ROOT

DOCS = (ROOT / "docs" / "mappings.md").read_text(encoding="utf-8")


def test_stripe_mapping_compiles_without_problems() -> None:
    mapping, errors = compile_file(MAPPINGS / "stripe.yaml")
    assert errors == []
    assert mapping is not None and mapping.provider == "stripe" and not mapping.uses_headers


def _table(heading: str) -> dict[str, str]:
    section = DOCS.split(heading, 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    return dict(re.findall(r"^\| `([a-z0-9_.]+)` \| (\w+) \|", section, flags=re.MULTILINE))


def test_docs_field_table_matches_the_model() -> None:
    assert _table("### Fields") == FIELDS
    assert _table("### Item fields") == ITEM_FIELDS


def test_docs_describe_every_custom_function() -> None:
    for name in CUSTOM_NAMES:
        assert f"`{name}(" in DOCS, f"{name}() is not documented in docs/mappings.md"


def test_docs_function_examples_are_true() -> None:
    section = DOCS.split("## Functions", 1)[1].split("\n## ", 1)[0]
    examples = re.findall(r"^(\S.*?)\s{2,}(\{.*\})\s+->\s+(.+?)(?:\s{2,}\(.*\))?$", section, flags=re.MULTILINE)
    assert len(examples) >= 18
    for expression, document, result in examples:
        assert jmespath.search(expression, json.loads(document), OPTIONS) == json.loads(result), expression
