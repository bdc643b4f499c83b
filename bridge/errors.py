"""The one exception tree of the bridge.

BridgeError
 ├── ConfigError            bad bridge.yaml (carries file:line:column and a hint)
 │    └── ConfigErrors      several of them, from one read of the file
 ├── MappingError           bad mapping file at load time (file:line:column and a hint)
 ├── MappingEvalError       a mapping failed on one webhook at run time (the webhook is kept as mapping_failed)
 ├── SignatureError         a webhook's signature, credentials or timestamp did not verify (401)
 ├── PayloadError           a verified body could not be parsed or lacks the provider's id/type (400)
 ├── RenderError            a canonical event cannot be turned into a request for a destination (permanent)
 └── OutboxError            storage failed
      ├── OutboxUnavailable the store cannot take writes now (503, the provider retries)
      └── OutboxLocked      another process holds the SQLite outbox

Third-party exceptions (sqlite3, aiohttp, yaml, jmespath) are translated into these at the boundary.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Something went wrong in the bridge."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class LocatedError(BridgeError):
    """An error in a file the user edits, with where it is and how to fix it."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.hint = hint
        super().__init__(self.describe())

    def describe(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            where += ": "
        text = f"{where}{self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class ConfigError(LocatedError):
    """The configuration file is invalid."""


class ConfigErrors(ConfigError):
    """Every problem found in one configuration file; located at the first, described one per line."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = list(errors) or [ConfigError("the configuration file is invalid")]
        first = self.errors[0]
        super().__init__(first.message, file=first.file, line=first.line, column=first.column, hint=first.hint)

    def describe(self) -> str:
        return "\n".join(error.describe() for error in getattr(self, "errors", [])) or super().describe()


class MappingError(LocatedError):
    """A mapping file is invalid."""


class MappingEvalError(BridgeError):
    """A mapping failed while evaluating one webhook."""


class SignatureError(BridgeError):
    """The webhook's signature did not verify."""


class PayloadError(BridgeError):
    """The webhook body is malformed."""


class RenderError(BridgeError):
    """The event cannot be rendered for this destination."""


class OutboxError(BridgeError):
    """The outbox failed."""


class OutboxUnavailable(OutboxError):
    """The outbox cannot take writes right now."""


class OutboxLocked(OutboxError):
    """Another process holds the outbox database."""
