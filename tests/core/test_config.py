from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import load_settings
from bridge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

GOOD = f"""\
outbox: {{url: "sqlite:///data/outbox.db"}}
ops: {{token: "${{OPS_TOKEN}}"}}
mappings: {ROOT / "mappings"}
sources:
  stripe: {{provider: stripe, secrets: ["${{STRIPE_SECRET}}", "${{OLD_SECRET:-whsec_old}}"]}}
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


def error_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> ConfigError:
    env = {"OPS_TOKEN": "x" * 20, "STRIPE_SECRET": "whsec_new"} if environ is None else environ
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), env)
    return info.value


def test_good_config_interpolates_environment_and_resolves_paths(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, GOOD), {"OPS_TOKEN": "t" * 20, "STRIPE_SECRET": "whsec_new"})
    assert settings.ops_token == "t" * 20
    assert settings.sources["stripe"].secrets == ("whsec_new", "whsec_old")
    assert settings.sources["stripe"].mapping == "stripe"
    assert settings.outbox_url == f"sqlite:///{tmp_path.resolve() / 'data' / 'outbox.db'}"
    assert settings.destinations["capture"].events == ("purchase", "refund")


def test_missing_environment_variable_names_the_line(tmp_path: Path) -> None:
    error = error_of(tmp_path, GOOD, {"OPS_TOKEN": "x" * 20})
    assert (error.file, error.line) == (str(tmp_path / "bridge.yaml"), 5)
    assert "STRIPE_SECRET is not set" in str(error)


@pytest.mark.parametrize(
    ("replace", "by", "line", "words"),
    [
        ("provider: stripe", "provider: strpe", 5, "did you mean 'stripe'"),
        ("type: http", "type: htp", 8, "unknown destination type 'htp'"),
        ("events: [purchase, refund]", "events: [purchase, Refund!]", 10, "not a canonical event name"),
        ('url: "http://127.0.0.1:9/hook"', 'url: "ftp://x/hook"', 9, "must be http(s)"),
        ("  capture:\n", "  capture:\n    concurency: 3\n", 8, "did you mean 'concurrency'"),
        ('ops: {token: "${OPS_TOKEN}"}', 'ops: {token: "short"}', 2, "shorter than 16"),
        ('secrets: ["${STRIPE_SECRET}", "${OLD_SECRET:-whsec_old}"]', "secrets: []", 5, "has no secrets"),
        ('outbox: {url: "sqlite:///data/outbox.db"}', 'outbox: {url: "mysql://x"}', 1, "unsupported outbox url"),
    ],
)
def test_errors_point_at_file_and_line(tmp_path: Path, replace: str, by: str, line: int, words: str) -> None:
    assert replace in GOOD
    error = error_of(tmp_path, GOOD.replace(replace, by))
    assert error.line == line, str(error)
    assert words in str(error)
    assert str(error).startswith(f"{tmp_path / 'bridge.yaml'}:{line}:")


def test_yaml_syntax_error_has_a_location(tmp_path: Path) -> None:
    error = error_of(tmp_path, "outbox: {url: [\n")
    assert error.line is not None and "YAML syntax error" in str(error)


def test_dispatcher_retry_schedule_is_validated(tmp_path: Path) -> None:
    error = error_of(tmp_path, GOOD + "dispatcher:\n  retry:\n    schedule: [10, -1]\n")
    assert error.line == 13 and "seconds ≥ 0" in str(error)
