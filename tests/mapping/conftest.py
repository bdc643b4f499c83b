from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from bridge.mapping import MappingSet, compile_file
from bridge.providers.base import InboundEvent

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "mappings"
FIXTURES = ROOT / "fixtures"
STRIPE_FIXTURES = FIXTURES / "stripe"

WriteMapping = Callable[..., Path]


@pytest.fixture
def write_mapping(tmp_path: Path) -> WriteMapping:
    """Write `text` (dedented) as <tmp>/mappings/<name>.yaml and return the file's path."""

    def write(text: str, name: str = "test") -> Path:
        directory = tmp_path / "mappings"
        directory.mkdir(exist_ok=True)
        path = directory / f"{name}.yaml"
        path.write_text(dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


def stripe_mappings() -> MappingSet:
    """Just mappings/stripe.yaml (other engineers' files in mappings/ are checked in test_shipped.py)."""
    mapping, errors = compile_file(MAPPINGS / "stripe.yaml")
    assert not errors, "\n".join(str(e) for e in errors)
    assert mapping is not None
    return MappingSet({"stripe": mapping}, "test")


def inbound(document: dict[str, Any], event_type: str | None = None, event_id: str = "evt_test") -> InboundEvent:
    return InboundEvent(event_id=event_id, event_type=event_type or document.get("type", "test"), document=document)
