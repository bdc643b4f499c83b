"""What every destination module implements: canonical events in, plain request data out.

A destination module `bridge/destinations/<type>.py` defines one `Destination` subclass and exposes it as the
module attribute `DESTINATION`; `bridge.destinations.destination_class("<type>")` finds it by module name.

A destination never sends, sleeps, retries or stores. The dispatcher:
  1. routes an event to it at ingest when `destination.routes(event_name)` is true;
  2. later calls `build(events)` with 1..max_batch canonical events (dicts, see bridge.events): the module's
     `render` plus the checks every request gets (`checked_request`: header names and values, URL), and sends
     the returned HttpRequest over its shared aiohttp session;
  3. calls `classify(status, headers, body)` on the answer to decide delivered / retry / dead / disable; an
     Outcome may name per-event exceptions (`per_event`) when the API reports a partial success for a batch.
     A 410 Gone disables the destination whatever `classify` says (bridge/sending.py): its deliveries are held,
     pending, until ops enable it again.
`accepts(event)` may refuse single events at routing time (e.g. consent required and not given): no delivery
is created for them. `clock` is the app's clock (set by create_app), for destinations whose rendering depends
on the time (age limits, send timestamps).
RenderError from `render` is permanent: the delivery goes to `dead` with that message; BatchTooLarge (a
RenderError) instead makes the dispatcher send the events that fit and keep the rest for the next request.
"""

from __future__ import annotations

import dataclasses
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Literal

from bridge import __version__
from bridge.clock import Clock, SystemClock
from bridge.errors import RenderError

USER_AGENT = f"bridge/{__version__} (+self-hosted webhook bridge)"

#: headers whose values are free text copied from the shopper's browser by way of the payload (Shopify
#: `client_details.user_agent`, WooCommerce `customer_user_agent`, a `browser_ip`): control characters are removed
#: from them (the request still goes). A control character in any other header — config values, credentials,
#: ids such as Idempotency-Key, a templated header — makes the delivery dead with the header named.
DESCRIPTIVE_HEADERS = frozenset({"user-agent", "x-forwarded-for", "x-real-ip", "forwarded", "referer"})
#: what HTTP forbids in a field value (RFC 9110 5.5: CTLs except horizontal tab; aiohttp refuses to send them)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: a header name is an RFC 9110 token
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: header names already found to be tokens (they come from code and config, so there are few); bounded, as a
#: templated header name could in principle vary
_TOKENS_SEEN: set[str] = {"GET", "POST", "PUT", "PATCH", "DELETE"}
_TOKENS_SEEN_MAX = 1024


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A request ready to send. Header names are as they go on the wire."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    #: names of headers whose control characters `checked_request` removed (for the log)
    cleaned: tuple[str, ...] = ()


#: the status that disables a destination (RFC 9110 15.5.11: gone, and likely for good)
GONE = 410


class Verdict(Enum):
    DELIVERED = "delivered"  #: done
    RETRY = "retry"  #: try again later (backoff; Retry-After honoured)
    DEAD = "dead"  #: permanent failure: stop, keep for ops to inspect and retry by hand
    #: the destination is gone (410): disable it; this delivery and every other one of it wait, pending, until
    #: ops enable it again (nothing goes dead meanwhile)
    DISABLE = "disable"

    value: Literal["delivered", "retry", "dead", "disable"]


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    reason: str
    #: seconds the destination asked us to wait (from Retry-After), if any
    retry_after: float | None = None
    #: index in the rendered batch → that event's own outcome, where the API reported a partial success
    per_event: Mapping[int, Outcome] | None = None

    def for_event(self, index: int) -> Outcome:
        """The outcome of the batch's `index`-th event."""
        if self.per_event and index in self.per_event:
            return self.per_event[index]
        return self


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `requests` requests in any `per_seconds` window."""

    requests: int
    per_seconds: float


@dataclass(frozen=True)
class DestinationSettings:
    """One `destinations:` entry of bridge.yaml."""

    name: str
    type: str
    url: str = ""
    #: canonical event names routed here; ("*",) for every name the destination can send
    events: tuple[str, ...] = ("*",)
    #: per-canonical-name overrides of the destination's event-name table
    event_names: Mapping[str, str] = field(default_factory=dict)
    concurrency: int = 8
    #: None: the destination's documented default
    rate_limits: tuple[RateLimit, ...] | None = None
    timeout_seconds: float = 10.0
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # may carry credentials
    #: "by_key": events sharing an ordering key are delivered one at a time, in the order they occurred
    #: (bridge/ordering.py); "none": in any order
    ordering: str = "none"
    #: type-specific keys, see Destination.options (API keys among them: never in repr or logs)
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)


class BatchTooLarge(RenderError):
    """A batch does not fit one request; its first `fits` events do. The dispatcher sends those and keeps the
    rest for the next request. Only for batches of several events: a single event that does not fit is a plain
    (permanent) RenderError."""

    def __init__(self, message: str, fits: int) -> None:
        self.fits = fits
        super().__init__(message)


class OptionError(ValueError):
    """A destination-specific option is missing or wrong; `key` names it."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


class Destination(ABC):
    """Rendering and response classification for one destination type."""

    #: the `type:` value in bridge.yaml
    type: ClassVar[str]
    #: type-specific option keys accepted in config, each with a one-line description
    options: ClassVar[Mapping[str, str]] = {}
    #: canonical event name -> the destination's event name. A canonical name missing here is not sent
    #: unless the destination sends unknown names (`sends_custom_names`) or config adds it in `event_names`.
    event_names: ClassVar[Mapping[str, str]] = {}
    #: whether canonical names not in the table are sent under their own name
    sends_custom_names: ClassVar[bool] = False
    #: documented rate limits, all enforced together
    default_rate_limits: ClassVar[tuple[RateLimit, ...]] = ()
    #: events per request (>1: the dispatcher groups due deliveries into one render call)
    max_batch: ClassVar[int] = 1
    #: request body size limit for a batch, if the API documents one
    max_body_bytes: ClassVar[int | None] = None
    #: whether `url` must be set in config
    requires_url: ClassVar[bool] = True

    def __init__(self, settings: DestinationSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self.names: dict[str, str] = {**self.event_names, **settings.event_names}
        self.rate_limits = settings.rate_limits if settings.rate_limits is not None else self.default_rate_limits
        self.clock: Clock = SystemClock()

    def destination_event_name(self, canonical_name: str) -> str | None:
        """The name this destination uses for a canonical event, or None if it does not take it."""
        name = self.names.get(canonical_name)
        if name is None and self.sends_custom_names:
            return canonical_name
        return name

    def routes(self, canonical_name: str) -> bool:
        """Whether an event of this name is delivered here (config filter and the destination's name table)."""
        wanted = self.settings.events
        if "*" not in wanted and canonical_name not in wanted:
            return False
        return self.destination_event_name(canonical_name) is not None

    def accepts(self, event: Mapping[str, Any]) -> bool:
        """Whether this event (already routed by name) is delivered here at all. Default: yes."""
        return True

    @abstractmethod
    def render(self, events: Sequence[Mapping[str, Any]]) -> HttpRequest:
        """Turn 1..max_batch canonical events into one request. Raise RenderError if they cannot be sent."""

    def build(self, events: Sequence[Mapping[str, Any]]) -> HttpRequest:
        """The request the dispatcher sends: `render`, then the checks every destination's requests get."""
        return checked_request(self.render(events))

    def classify(self, status: int, headers: Mapping[str, str], body: bytes) -> Outcome:
        """Default response table: 2xx delivered; 408, 425, 429, 5xx retry; 3xx retry (never followed);
        410 disable; other 4xx dead."""
        return classify_status(status)


def checked_request(request: HttpRequest) -> HttpRequest:
    """`request` made fit for the wire, or RenderError naming what is not. Control characters are removed from
    DESCRIPTIVE_HEADERS (a value left empty drops the header); anywhere else in a header value, the method or the
    URL they are a RenderError: the delivery goes dead with the reason instead of failing in the HTTP client on
    every attempt. Messages name the header and the character's position, never the value (it may be a secret)."""
    if request.method not in _TOKENS_SEEN and not _TOKEN.fullmatch(request.method):
        raise RenderError(f"the HTTP method {request.method!r} is not a valid method")
    if (found := _CONTROL.search(request.url)) is not None:
        raise RenderError(f"the URL has a control character ({_describe(found)}); it cannot be sent")
    headers: dict[str, str] = {}
    cleaned: list[str] = []
    for name, value in request.headers.items():
        if name not in _TOKENS_SEEN:
            if not isinstance(name, str) or not _TOKEN.fullmatch(name):
                raise RenderError(f"header name {name!r} is not a valid HTTP header name")
            if len(_TOKENS_SEEN) < _TOKENS_SEEN_MAX:
                _TOKENS_SEEN.add(name)
        if not isinstance(value, str):
            raise RenderError(f"header {name}: the value is a {type(value).__name__}, not text")
        found = _CONTROL.search(value)
        if found is not None:
            if name.lower() not in DESCRIPTIVE_HEADERS:
                raise RenderError(
                    f"header {name}: the value has a control character ({_describe(found)}), which HTTP does not "
                    "allow; it comes from the event or the destination's config and is not sent altered"
                )
            value = _CONTROL.sub("", value).strip()
            cleaned.append(name)
            if not value:
                continue
        headers[name] = value
    if not cleaned and len(headers) == len(request.headers):
        return request
    return dataclasses.replace(request, headers=headers, cleaned=(*request.cleaned, *cleaned))


def _describe(found: re.Match[str]) -> str:
    return f"0x{ord(found.group()):02x} at position {found.start()}"


def classify_status(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome(Verdict.DELIVERED, f"HTTP {status}")
    if status in (408, 425, 429) or status >= 500:
        return Outcome(Verdict.RETRY, f"HTTP {status}")
    if 300 <= status < 400:
        return Outcome(Verdict.RETRY, f"HTTP {status}: redirects are not followed; check the destination URL")
    if status == GONE:
        return Outcome(Verdict.DISABLE, f"HTTP {status}")
    return Outcome(Verdict.DEAD, f"HTTP {status}")


def response_excerpt(body: bytes, limit: int = 512) -> str:
    """A short printable excerpt of a response body, for the attempt log."""
    text = body[:limit].decode("utf-8", "replace")
    return text + ("…" if len(body) > limit else "")
