"""Mappings read only what the provider's signature covers; `bridge check` names every other field it reads."""

from __future__ import annotations

import shutil
from pathlib import Path

import jmespath
import pytest
import yaml

from bridge.cli import main
from bridge.mapping import load_mappings
from bridge.providers.coverage import covered, reads, unsigned_reads
from tests.harness import MAPPINGS, write_config
from tests.providers.cases import build

ADYEN_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"


@pytest.mark.parametrize(
    ("expression", "paths"),
    [
        ("eventDate", {"eventDate"}),
        ("minor_to_major(amount.value, amount.currency)", {"amount.value", "amount.currency"}),
        ("coalesce(merchantReference, pspReference)", {"merchantReference", "pspReference"}),
        ("success == 'true' && amount.value > `0`", {"success", "amount.value"}),
        ("additionalData.\"hmacSignature\"", {"additionalData.hmacSignature"}),
        ("items[0].price", {"items[].price"}),
        ("items[*].price", {"items[].price"}),
        ("items[?qty > `1`].price", {"items[].price", "items[].qty"}),
        ("amount | value", {"amount.value"}),
        ("amount.*.x", {"amount.*.x"}),
        ("sort_by(items, &price)[0].id", {"items", "?.price", "?.id"}),
        ("@", {""}),
        ("`1`", set()),
        ("{a: pspReference, b: eventCode}", {"pspReference", "eventCode"}),
    ],
)
def test_reads_lists_every_document_path(expression: str, paths: set[str]) -> None:
    assert reads(jmespath.compile(expression).parsed) == paths


def test_adyen_signs_eight_fields_and_only_those_are_covered() -> None:
    adyen = build("adyen", (ADYEN_KEY,), {})
    for path in ("pspReference", "amount.value", "amount.currency", "eventCode", "success", "merchantReference"):
        assert covered(path, adyen), path
    for path in ("eventDate", "paymentMethod", "reason", "amount", "additionalData.x", "", "?.x", "_headers.x"):
        assert not covered(path, adyen), path
    stripe = build("stripe", ("whsec_x",), {})
    assert covered("data.object.amount", stripe) and not covered("_headers.stripe-signature", stripe)
    sw = build("standard_webhooks", ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",), {})
    assert covered("_headers.webhook-id", sw) and not covered("_headers.x-other", sw)


def test_shipped_mappings_read_only_signed_fields_except_adyens_event_date() -> None:
    mappings = load_mappings(MAPPINGS)
    adyen = mappings.get("adyen")
    assert adyen is not None
    assert [r.path for r in unsigned_reads(adyen, build("adyen", (ADYEN_KEY,), {}))] == ["eventDate"]
    sw = mappings.get("standard_webhooks")
    assert sw is not None
    assert unsigned_reads(sw, build("standard_webhooks", ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",), {})) == []


def _config(tmp_path: Path, mappings: Path) -> Path:
    sources = {"adyen": {"provider": "adyen", "secrets": [ADYEN_KEY]}}
    path = write_config(tmp_path, destinations={}, extra={"sources": sources, "mappings": str(mappings)})
    return path


def test_check_warns_about_fields_outside_the_signature(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mappings = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, mappings)
    assert main(["check", "--config", str(_config(tmp_path, mappings))]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "reads eventDate" in warnings[0] and "signed: pspReference" in warnings[0], err

    # a mapping that reads paymentMethod and a header: both are named, with the file
    document = yaml.safe_load((mappings / "adyen.yaml").read_text())
    document["defaults"]["properties.payment_method"] = "paymentMethod"
    document["defaults"]["properties.agent"] = '_headers."user-agent"'
    (mappings / "adyen.yaml").write_text(yaml.safe_dump(document))
    assert main(["check", "--config", str(_config(tmp_path, mappings))]) == 0
    err = capsys.readouterr().err
    named = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(named) == 3, err
    assert any("reads paymentMethod" in line for line in named)
    assert any("reads _headers.user-agent" in line and "signed headers: none" in line for line in named)
    assert all(f"{mappings / 'adyen.yaml'}:" in line for line in named)
