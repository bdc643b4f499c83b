"""Provider modules, one per provider type; see `base.py` for the contract."""

from __future__ import annotations

import importlib
import pkgutil

from bridge.providers.base import Provider

_NOT_PROVIDERS = {"base", "coverage", "forms", "jose", "keys", "params"}  # helpers, not provider types


def provider_types() -> list[str]:
    """Every provider type shipped in this package."""
    return sorted(
        m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_PROVIDERS and not m.name.startswith("_")
    )


def provider_class(type_name: str) -> type[Provider]:
    """The Provider subclass for `type_name`; KeyError if there is none."""
    if type_name not in provider_types():
        raise KeyError(type_name)
    module = importlib.import_module(f"bridge.providers.{type_name}")
    cls: type[Provider] = module.PROVIDER
    return cls
