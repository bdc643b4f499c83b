"""The golden runner itself: pass, fail with a diff, update, skip, select, headers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bridge.mapping import MappingSet, load_mappings
from bridge.mapping.golden import run_golden_cases
from tests.mapping.conftest import MAPPINGS, STRIPE_FIXTURES

HEADER_MAPPING = """\
provider: stripe
defaults:
  occurred_at: "to_rfc3339(created)"
events:
  checkout.session.completed:
    name: purchase
    fields:
      id: "data.object.payment_intent"
      properties.signature_seen: '_headers."stripe-signature" != `null`'
"""


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, Path]:
    """A fixtures dir with two real Stripe cases and a mappings dir with the shipped stripe.yaml."""
    fixtures, mappings = tmp_path / "fixtures", tmp_path / "mappings"
    (fixtures / "stripe").mkdir(parents=True)
    mappings.mkdir()
    for case in ("checkout.session.completed", "plan.created"):
        shutil.copy(STRIPE_FIXTURES / f"{case}.json", fixtures / "stripe")
    shutil.copy(MAPPINGS / "stripe.yaml", mappings)
    return fixtures, mappings


def test_update_writes_expected_files_then_they_pass(workspace: tuple[Path, Path]) -> None:
    fixtures, mappings_dir = workspace
    mappings = load_mappings(mappings_dir)
    missing = run_golden_cases(fixtures, mappings)
    assert [f.case for f in missing.failed] == ["stripe/checkout.session.completed", "stripe/plan.created"]
    assert "run with update=True" in missing.failed[0].reason
    updated = run_golden_cases(fixtures, mappings, update=True)
    assert updated.updated == ["stripe/checkout.session.completed", "stripe/plan.created"] and updated.ok
    assert (fixtures / "stripe" / "plan.created.expected.json").read_text() == "null\n"
    again = run_golden_cases(fixtures, mappings)
    assert again.passed == updated.updated and again.ok and not again.updated
    unchanged = run_golden_cases(fixtures, mappings, update=True)
    assert unchanged.updated == [] and len(unchanged.passed) == 2


def test_a_difference_fails_with_a_readable_diff(workspace: tuple[Path, Path]) -> None:
    fixtures, mappings_dir = workspace
    mappings = load_mappings(mappings_dir)
    run_golden_cases(fixtures, mappings, update=True)
    expected_path = fixtures / "stripe" / "checkout.session.completed.expected.json"
    expected = json.loads(expected_path.read_text())
    expected[0]["order"]["total"] = "10.98"
    expected_path.write_text(json.dumps(expected, indent=2))
    report = run_golden_cases(fixtures, mappings)
    assert not report.ok and report.passed == ["stripe/plan.created"]
    (failure,) = report.failed
    assert failure.case == "stripe/checkout.session.completed"
    assert '-      "total": "10.98"' in failure.diff
    assert '+      "total": "10.99"' in failure.diff
    assert "FAILED stripe/checkout.session.completed" in report.summary()


def test_only_selects_cases(workspace: tuple[Path, Path]) -> None:
    fixtures, mappings_dir = workspace
    mappings = load_mappings(mappings_dir)
    report = run_golden_cases(fixtures, mappings, update=True, only="stripe/plan.*")
    assert report.updated == ["stripe/plan.created"]
    assert run_golden_cases(fixtures, mappings, update=True, only="stripe").updated == [
        "stripe/checkout.session.completed"
    ]
    assert run_golden_cases(fixtures, mappings, only="nothing/*").passed == []


def test_directories_without_mapping_or_provider_are_skipped(workspace: tuple[Path, Path]) -> None:
    fixtures, mappings_dir = workspace
    (fixtures / "acme").mkdir()
    (fixtures / "acme" / "order.json").write_text("{}")
    (fixtures / "nomodule").mkdir()
    (fixtures / "nomodule" / "x.json").write_text("{}")
    (mappings_dir / "nomodule.yaml").write_text("events:\n  x: {name: refund, fields: {id: a, occurred_at: b}}\n")
    report = run_golden_cases(fixtures, load_mappings(mappings_dir), update=True)
    assert report.skipped == [
        ("acme/", "no mapping file acme.yaml"),
        ("nomodule/", "no provider module bridge/providers/nomodule.py"),
    ]
    assert "skipped acme/: no mapping file acme.yaml" in report.summary()


def test_headers_file_is_passed_to_the_mapping(tmp_path: Path) -> None:
    fixtures, mappings_dir = tmp_path / "fixtures", tmp_path / "mappings"
    (fixtures / "stripe").mkdir(parents=True)
    mappings_dir.mkdir()
    (mappings_dir / "stripe.yaml").write_text(HEADER_MAPPING)
    shutil.copy(STRIPE_FIXTURES / "checkout.session.completed.json", fixtures / "stripe" / "signed.json")
    (fixtures / "stripe" / "signed.headers.json").write_text('{"Stripe-Signature": "t=1,v1=00"}')
    shutil.copy(STRIPE_FIXTURES / "checkout.session.completed.json", fixtures / "stripe" / "unsigned.json")
    mappings: MappingSet = load_mappings(mappings_dir)
    run_golden_cases(fixtures, mappings, update=True)
    signed = json.loads((fixtures / "stripe" / "signed.expected.json").read_text())
    unsigned = json.loads((fixtures / "stripe" / "unsigned.expected.json").read_text())
    assert signed[0]["properties"] == {"signature_seen": True}
    assert unsigned[0]["properties"] == {"signature_seen": False}


def test_a_body_the_provider_rejects_fails_the_case(workspace: tuple[Path, Path]) -> None:
    fixtures, mappings_dir = workspace
    (fixtures / "stripe" / "broken.json").write_text("[1, 2]")
    report = run_golden_cases(fixtures, load_mappings(mappings_dir), update=True)
    assert [(f.case, f.reason) for f in report.failed] == [
        ("stripe/broken", "PayloadError: a Stripe event must be a JSON object")
    ]
