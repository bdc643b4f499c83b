"""A config typo must not drop data silently, and `bridge check` names every problem in one run: config errors
(each with file:line:column and a hint), then mapping errors. `bridge serve` refuses on any of them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config import load_settings
from bridge.errors import ConfigError
from tests.harness import MAPPINGS

GOOD = f"""\
outbox: {{url: "sqlite:///outbox.db"}}
mappings: {MAPPINGS}
sources:
  stripe: {{provider: stripe, secrets: [whsec_x]}}
destinations:
  capture:
    type: http
    url: "http://127.0.0.1:9/hook"
    events: [purchase, refund]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.yaml"
    path.write_text(text)
    return path


def errors_of(tmp_path: Path, text: str) -> list[ConfigError]:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), {})
    errors: list[ConfigError] = getattr(info.value, "errors", [info.value])  # ConfigErrors holds several
    return errors


def located(error: ConfigError) -> tuple[int | None, int | None]:
    return error.line, error.column


# -- event names --------------------------------------------------------------------------------------------


def test_a_misspelt_event_name_in_a_routing_list_is_an_error_with_a_hint(tmp_path: Path) -> None:
    [error] = errors_of(tmp_path, GOOD.replace("events: [purchase, refund]", "events: [purchase, refnd]"))
    assert located(error) == (9, 24)
    assert "unknown event name 'refnd'" in str(error) and "did you mean 'refund'?" in str(error)


def test_a_misspelt_name_in_a_destinations_name_table_is_an_error(tmp_path: Path) -> None:
    text = GOOD + "    event_names: {purchse: Purchase, refund: Refund}\n"
    [error] = errors_of(tmp_path, text)
    assert located(error) == (10, 19)
    assert "'purchse'" in str(error) and "did you mean 'purchase'?" in str(error)


def test_custom_names_are_valid_where_a_mapping_produces_them(tmp_path: Path) -> None:
    # mappings/recurly.yaml emits account_created; nothing emits account_deleted
    settings = load_settings(write(tmp_path, GOOD.replace("refund]", "account_created]")), {})
    assert settings.destinations["capture"].events == ("purchase", "account_created")
    [error] = errors_of(tmp_path, GOOD.replace("refund]", "account_deleted]"))
    assert "no mapping produces it" in str(error) and "did you mean 'account_created'?" in str(error)


def test_a_custom_name_is_valid_once_a_mapping_emits_it(tmp_path: Path) -> None:
    mappings = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, mappings)
    text = GOOD.replace(str(MAPPINGS), str(mappings)).replace("refund]", "chargeback]")
    assert "chargeback" in str(errors_of(tmp_path, text)[0])
    stripe = mappings / "stripe.yaml"
    stripe.write_text(stripe.read_text().replace("name: refund", "name: chargeback", 1))
    assert load_settings(write(tmp_path, text), {}).destinations["capture"].events == ("purchase", "chargeback")


# -- timeouts against the lease -------------------------------------------------------------------------------


def test_a_destination_timeout_not_below_the_lease_is_refused(tmp_path: Path) -> None:
    [error] = errors_of(tmp_path, GOOD + "    timeout_seconds: 90\n")
    assert located(error) == (10, 22)
    assert "timeout_seconds 90 is not below dispatcher.lease_seconds 60" in str(error)
    load_settings(write(tmp_path, GOOD + "    timeout_seconds: 59\n"), {})


def test_a_lease_not_above_a_default_timeout_points_at_the_lease(tmp_path: Path) -> None:
    [error] = errors_of(tmp_path, GOOD + "dispatcher: {lease_seconds: 5}\n")
    assert located(error) == (10, 29)
    assert "lease_seconds 5 is not above destination 'capture'" in str(error)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1e400"])
def test_numbers_must_be_finite(tmp_path: Path, value: str) -> None:
    [error] = errors_of(tmp_path, GOOD + f"dispatcher: {{lease_seconds: {value}}}\n")
    assert "'lease_seconds' must be a number" in str(error)


# -- every error at once --------------------------------------------------------------------------------------

BROKEN = f"""\
outbox: {{url: "sqlite:///outbox.db"}}
mappings: {MAPPINGS}
colour: blue
sources:
  stripe: {{provider: strpe, secrets: [whsec_x]}}
  shop: {{provider: shopify, secrets: ["${{SHOP_SECRET}}"]}}
destinations:
  capture:
    type: http
    url: "http://127.0.0.1:9/hook"
    events: [purchase, refnd]
    timeout_seconds: 90
server: {{port: 70000, limit_concurrency: 1}}
"""
EXPECTED = [
    ((3, 1), "unknown key 'colour' in the config"),
    ((5, 22), "unknown provider 'strpe'"),
    ((6, 39), "environment variable SHOP_SECRET is not set"),
    ((11, 24), "unknown event name 'refnd'"),
    ((12, 22), "timeout_seconds 90 is not below dispatcher.lease_seconds 60"),
    ((13, 16), "'port' must be a whole number from 0 to 65535"),
    ((13, 42), "'limit_concurrency' must be a whole number from 2"),
]


def test_load_reports_every_error_in_file_order(tmp_path: Path) -> None:
    errors = errors_of(tmp_path, BROKEN)
    assert [(located(e), e.file) for e in errors] == [(where, str(tmp_path / "bridge.yaml")) for where, _ in EXPECTED]
    for error, (_, words) in zip(errors, EXPECTED, strict=True):
        assert words in error.message, error


def test_bridge_check_prints_every_config_error_then_every_mapping_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mappings = tmp_path / "mappings"
    shutil.copytree(MAPPINGS, mappings)
    stripe = mappings / "stripe.yaml"
    stripe.write_text(stripe.read_text().replace("order.currency:", "order.curency:", 1))
    config = write(tmp_path, BROKEN.replace(str(MAPPINGS), str(mappings)))
    assert main(["check", "--config", str(config)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == f"{len(EXPECTED) + 1} error(s)"
    for line, ((row, column), words) in zip(lines, EXPECTED, strict=False):
        assert line.startswith(f"{config}:{row}:{column}: ") and words in line, line
    assert "(hint: did you mean 'stripe'?)" in lines[1] and "(hint: did you mean 'refund'?)" in lines[3]
    assert lines[len(EXPECTED)].startswith(f"{stripe}:") and "order.currency" in lines[len(EXPECTED)]


def test_bridge_serve_refuses_and_names_every_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(tmp_path, BROKEN)
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == len(EXPECTED)
    for line, ((row, column), words) in zip(err, EXPECTED, strict=True):
        assert line.startswith(f"error: {config}:{row}:{column}: ") and words in line, line


def test_bridge_check_passes_a_good_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(write(tmp_path, GOOD))]) == 0
    assert "ok:" in capsys.readouterr().out
