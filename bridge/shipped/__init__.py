"""Files the package ships: the default mappings and the demo's sample webhooks (Stripe's, and every provider's).

In the repository they live where they are documented (`mappings/`, `fixtures/stripe/`); the wheel carries
them as `bridge/shipped/mappings/` and `bridge/shipped/stripe/` (setup.py maps the directories, see
docs/adr/0004-package-data.md). An installed package finds them through the import system
(importlib); a source checkout (editable install, tests) has no such packages and reads the directories
themselves, which are the same files.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bridge.errors import BridgeError

_CHECKOUT = Path(__file__).resolve().parent.parent.parent


def _directory(package: str, checkout_relative: str) -> Path:
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    checkout = _CHECKOUT / checkout_relative
    if checkout.is_dir():
        return checkout
    raise BridgeError(f"the package's {checkout_relative} files are missing: reinstall bridge")


def mappings_dir() -> Path:
    """The directory of the default mapping files."""
    return _directory("bridge.shipped.mappings", "mappings")


def stripe_samples_dir() -> Path:
    """The directory of the demo's Stripe sample webhook bodies."""
    return _directory("bridge.shipped.stripe", "fixtures/stripe")


def samples_dir() -> Path:
    """The directory of the demo's sample webhooks of every provider (`<provider>/<case>.json|.form`)."""
    return _directory("bridge.shipped.samples", "fixtures")
