"""The authoring commands, run through `bridge.cli.main` as a user would run them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from bridge.cli import main
from tests.harness import FIXTURES, MAPPINGS

API_KEY = "cv_preview_secret_key_0001"


def config(tmp_path: Path, mappings: Path = MAPPINGS) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "outbox": {"url": f"sqlite:///{tmp_path / 'o.db'}"},
                "mappings": str(mappings),
                "sources": {"stripe": {"provider": "stripe", "secrets": ["whsec_x"]}},
                "destinations": {
                    "convultra": {"type": "convultra", "url": "https://c.example/v1/track", "api_key": API_KEY},
                    "capture": {"type": "http", "url": "https://h.example/in", "events": ["refund"]},
                },
            }
        )
    )
    return path


def test_preview_prints_events_and_exact_requests_with_secrets_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "preview",
            "--config",
            str(config(tmp_path)),
            "--source",
            "stripe",
            str(FIXTURES / "stripe" / "charge.refunded.json"),
            "--format",
            "json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    [entry] = report["events"]
    assert entry["status"] == "accepted"
    [refund] = entry["canonical"]
    assert refund["name"] == "refund" and refund["order"]["total"] == "1.00"
    requests = {r["destination"]: r for r in entry["requests"]}
    assert set(requests) == {"convultra", "capture"}
    assert requests["convultra"]["url"] == "https://c.example/v1/track"
    assert requests["convultra"]["headers"]["Authorization"] == "Bearer ****0001"
    assert API_KEY not in json.dumps(report)
    assert json.loads(requests["capture"]["body"])["id"] == refund["id"]
    assert not (tmp_path / "o.db").exists()  # no storage touched


def test_preview_text_of_an_ignored_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "preview",
                "--config",
                str(config(tmp_path)),
                "--source",
                "stripe",
                str(FIXTURES / "stripe" / "plan.created.json"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "status: ignored — event type 'plan.created' is not mapped" in out


def test_mappings_test_passes_and_reports_a_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mappings", "test", "--mappings", str(MAPPINGS), "--fixtures", str(FIXTURES)]) == 0
    assert " 0 failed" in capsys.readouterr().out
    fixtures = tmp_path / "fixtures"
    shutil.copytree(FIXTURES / "stripe", fixtures / "stripe")
    expected = fixtures / "stripe" / "invoice.paid.expected.json"
    expected.write_text(expected.read_text().replace('"10.00"', '"99.00"', 1))
    assert main(["mappings", "test", "--mappings", str(MAPPINGS), "--fixtures", str(fixtures)]) == 1
    out = capsys.readouterr().out
    assert "FAIL stripe/invoice.paid" in out and '"total": "99.00"' in out and '+      "total": "10.00"' in out
    assert main(["mappings", "test", "--mappings", str(MAPPINGS), "--fixtures", str(fixtures), "--update"]) == 0
    assert main(["mappings", "test", "--mappings", str(MAPPINGS), "--fixtures", str(fixtures)]) == 0


@pytest.mark.parametrize(
    ("line", "replacement", "words"),
    [
        (
            '        order.currency: "data.object.currency"',
            '        order.currency: "upper(data.object.currency"',
            "syntax",
        ),
        (
            '        order.currency: "data.object.currency"',
            '        order.currency: "uper(data.object.currency)"',
            "upper",
        ),
        (
            '        order.currency: "data.object.currency"',
            '        order.curency: "data.object.currency"',
            "order.currency",
        ),
        ('        order.currency: "data.object.currency"', "        customer.total_spent: \"'abc'\"", "money"),
    ],
)
def test_check_and_serve_stop_on_mapping_errors_with_a_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, replacement: str, words: str
) -> None:
    mappings = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, mappings)
    stripe = mappings / "stripe.yaml"
    lines = stripe.read_text().split("\n")
    index = lines.index(line)
    lines[index] = replacement
    stripe.write_text("\n".join(lines))
    cfg = config(tmp_path, mappings)
    assert main(["check", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert f"{stripe}:{index + 1}:" in err and words in err, err
    assert main(["serve", "--config", str(cfg)]) == 2  # start-up refuses too, before listening
    assert f"{stripe}:{index + 1}:" in capsys.readouterr().err


def test_check_reports_config_errors_with_a_location(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path)
    cfg.write_text(cfg.read_text().replace("provider: stripe", "provider: stripee"))
    assert main(["check", "--config", str(cfg)]) == 2
    assert f"{cfg}:" in capsys.readouterr().err
