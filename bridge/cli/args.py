"""What every `bridge` subcommand shares: the config it reads and how it prints JSON."""

from __future__ import annotations

import argparse
import os
from typing import Any

from bridge.config import Settings, load_settings


def config_path(args: argparse.Namespace) -> str:
    return str(args.config or os.environ.get("BRIDGE_CONFIG") or "bridge.yaml")


def settings_of(args: argparse.Namespace) -> Settings:
    return load_settings(config_path(args), os.environ)


def print_json(data: Any) -> None:
    import orjson

    print(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())
