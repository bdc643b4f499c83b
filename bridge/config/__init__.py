"""bridge.yaml: load, interpolate `${VAR}` / `${VAR:-default}` from the environment, validate, and fail with
`file:line:column: what is wrong (hint: how to fix it)` for every problem of the file at once.

The environment is read here and nowhere else: `load_settings(path, environ)` takes it as an argument.
Relative paths (the mappings directory, a relative `sqlite:///` outbox path) are resolved against the directory
of the config file.

Modules: `settings` (the values), `reader` (interpolation, getters, located errors), `entries` (sources and
destinations), `load` (the file as a whole).
"""

from bridge.config.load import check_settings, load_settings, parse_settings, unset_variables
from bridge.config.reader import did_you_mean
from bridge.config.settings import (
    DEFAULT_MAX_BODY_BYTES,
    ConfigReport,
    DispatcherSettings,
    OutboxTimeouts,
    RetentionSettings,
    Settings,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "ConfigReport",
    "DispatcherSettings",
    "OutboxTimeouts",
    "RetentionSettings",
    "Settings",
    "check_settings",
    "did_you_mean",
    "load_settings",
    "parse_settings",
    "unset_variables",
]
