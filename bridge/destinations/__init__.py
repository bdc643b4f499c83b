"""Destination modules, one per destination type; see `base.py` for the contract."""

from __future__ import annotations

import importlib
import pkgutil

from bridge.destinations.base import Destination

_NOT_DESTINATIONS = {"base"}


def destination_types() -> list[str]:
    """Every destination type shipped in this package."""
    return sorted(
        m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_DESTINATIONS and not m.name.startswith("_")
    )


def destination_class(type_name: str) -> type[Destination]:
    """The Destination subclass for `type_name`; KeyError if there is none."""
    if type_name not in destination_types():
        raise KeyError(type_name)
    module = importlib.import_module(f"bridge.destinations.{type_name}")
    cls: type[Destination] = module.DESTINATION
    return cls
