"""One request for a batch of a lane's deliveries: render it, send it, classify the answer, and turn that into one
AttemptResult per delivery (with the backoff policy deciding retry or dead).

Whatever happens, every delivery handed to `Sender.send` leaves it either with a result or back at the front of
the lane's queue:
  - a batch that does not fit one request (BatchTooLarge) sends the events that fit; the rest go back;
  - a RenderError is permanent (`dead`, with its text) for the event that causes it: in a batch, each event is
    rendered alone to find it, and the others still go;
  - an unexpected exception while rendering or sending is a retry with the exception as the reason (a bug, or a
    fault that may pass), logged with its traceback;
  - timeouts and connection errors are retries;
  - a 410 Gone (whatever the destination's `classify` made of it) disables the destination: every delivery the
    request carried goes back to pending (a batch as a whole) with the attempt recorded, and the outbox holds the
    destination's deliveries until ops enable it (AttemptResult.disables; bridge/outbox/disabling.py).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from bridge.clock import Clock
from bridge.destinations.base import (
    GONE,
    USER_AGENT,
    BatchTooLarge,
    HttpRequest,
    Outcome,
    Verdict,
    response_excerpt,
)
from bridge.errors import RenderError
from bridge.lanes import Lane
from bridge.outbox.base import AttemptResult, Delivery
from bridge.retry import RetryPolicy, parse_retry_after
from bridge.urls import shown

log = logging.getLogger("bridge.dispatcher")

_VERDICTS: dict[Verdict, Literal["delivered", "retry", "dead"]] = {
    Verdict.DELIVERED: "delivered",
    Verdict.RETRY: "retry",
    Verdict.DEAD: "dead",
}

#: how much of a response body we read (classification and the attempt log)
MAX_RESPONSE_BYTES = 64 * 1024


@dataclass
class Prepared:
    """A batch after rendering: the request (None: nothing to send), the deliveries it carries, and deliveries
    already settled without a request (their outcome)."""

    request: HttpRequest | None = None
    carried: list[Delivery] = field(default_factory=list)
    settled: list[tuple[Delivery, Outcome]] = field(default_factory=list)


class Sender:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        clock: Clock,
        retry: RetryPolicy,
        rng: random.Random,
        *,
        on_throttled: Callable[[Lane], None] | None = None,
    ) -> None:
        self.session = session
        self.clock = clock
        self.retry = retry
        self.rng = rng
        self.on_throttled = on_throttled
        #: called with (destination, seconds) after each destination request
        self.on_request: Callable[[str, float], None] | None = None
        #: one (immutable) ClientTimeout per timeout in use, not one per request
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def send(self, lane: Lane, batch: Sequence[Delivery], ticket: int | None = None) -> list[AttemptResult]:
        """Render, send and classify one request for `batch`. `ticket`: the rate limiter's count of the request,
        marked answered when the answer (or the failure) comes back."""
        destination = lane.destination
        started = self.clock.now()
        prepared = prepare(lane, batch)
        results = [self.result(lane, d, outcome, started) for d, outcome in prepared.settled]
        for (delivery, outcome), result in zip(prepared.settled, results, strict=True):
            _log_failed(lane, [delivery], [result], outcome.reason, None)
        if prepared.request is None:
            return results
        t0 = time.perf_counter()
        outcome, status, excerpt = await self.http(lane, prepared.request)
        gone: str | None = None
        if status == GONE:  # the destination is gone, for every event of the request: hold them all
            gone = gone_reason(prepared.request.url)
            outcome = Outcome(Verdict.DISABLE, f"{outcome.reason}; the destination is disabled until enabled again")
        latency = (time.perf_counter() - t0) * 1000
        now = self.clock.now()
        if ticket is not None:
            lane.limiter.answered(ticket, now)
        stats = lane.stats
        stats.requests += 1
        stats.latency_ms_total += latency
        if self.on_request is not None:
            self.on_request(destination.name, latency / 1000)
        if outcome.verdict is Verdict.DELIVERED:
            lane.limiter.succeeded()
            stats.last_success_at = now
        elif status == 429:
            lane.limiter.throttled(now, outcome.retry_after)
            if self.on_throttled is not None:
                self.on_throttled(lane)
        if prepared.request.cleaned:
            log.warning(
                "control characters removed from headers",
                extra={
                    "destination": destination.name,
                    "delivery_ids": [d.id for d in prepared.carried],
                    "header_names": list(prepared.request.cleaned),
                },
            )
        # a partial success names the events (by their index in the request) that failed
        sent = [
            self.result(
                lane, d, outcome.for_event(index), started, status=status, latency=latency, excerpt=excerpt, gone=gone
            )
            for index, d in enumerate(prepared.carried)
        ]
        if any(r.verdict != "delivered" for r in sent):  # also a partial success's failed events
            _log_failed(lane, prepared.carried, sent, outcome.reason, status)
        return results + sent

    def result(
        self,
        lane: Lane,
        delivery: Delivery,
        outcome: Outcome,
        started: float,
        *,
        status: int | None = None,
        latency: float | None = None,
        excerpt: str | None = None,
        gone: str | None = None,
    ) -> AttemptResult:
        """The attempt to record for `delivery`; a retry past the schedule is dead. Counts it in the lane's stats.
        A DISABLE outcome (with `gone`, why) is a retry due at once that never goes dead: the outbox holds it."""
        now = self.clock.now()
        stats = lane.stats
        next_at: float | None = None
        error = None if outcome.verdict is Verdict.DELIVERED else outcome.reason
        if outcome.verdict is Verdict.DISABLE:
            stats.last_failure_at = stats.last_attempt_at = now
            return AttemptResult(
                delivery_id=delivery.id,
                owner=delivery.lease_owner,
                started_at=started,
                verdict="retry",
                next_attempt_at=now,
                status_code=status,
                latency_ms=latency,
                error=error,
                response_excerpt=excerpt,
                disables=gone or outcome.reason,
            )
        verdict: Literal["delivered", "retry", "dead"] = _VERDICTS[outcome.verdict]
        if outcome.verdict is Verdict.RETRY:
            next_at = self.retry.next_attempt_at(delivery.attempts + 1, now, outcome.retry_after, self.rng)
            if next_at is None:
                verdict = "dead"
                error = f"gave up after {delivery.attempts + 1} attempts; last: {outcome.reason}"
        if verdict == "delivered":
            stats.delivered += 1
        else:
            stats.last_failure_at = now
            if verdict == "dead":
                stats.dead += 1
            else:
                stats.retried += 1
        stats.last_attempt_at = now
        return AttemptResult(
            delivery_id=delivery.id,
            owner=delivery.lease_owner,
            started_at=started,
            verdict=verdict,
            next_attempt_at=next_at,
            status_code=status,
            latency_ms=latency,
            error=error,
            response_excerpt=excerpt,
        )

    async def http(self, lane: Lane, request: HttpRequest) -> tuple[Outcome, int | None, str | None]:
        """Send `request`; the outcome, status and response excerpt. Never raises (but for cancellation)."""
        destination = lane.destination
        seconds = destination.settings.timeout_seconds
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        try:
            async with self.session.request(
                request.method,
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                body = await read_response(response.content, MAX_RESPONSE_BYTES)
                headers = {k.lower(): v for k, v in response.headers.items()}
                outcome = destination.classify(response.status, headers, body)
                if outcome.retry_after is None and "retry-after" in headers:
                    retry_after = parse_retry_after(headers["retry-after"], self.clock.now())
                    outcome = dataclasses.replace(outcome, retry_after=retry_after)
                return outcome, response.status, response_excerpt(body)
        except TimeoutError:
            return Outcome(Verdict.RETRY, f"timed out after {destination.settings.timeout_seconds:g}s"), None, None
        except aiohttp.ClientError as exc:
            return Outcome(Verdict.RETRY, f"connection error: {type(exc).__name__}: {exc}"), None, None
        except Exception as exc:  # the HTTP client or the destination's classify failed: not the event's fault
            log.exception("request failed unexpectedly", extra={"destination": destination.name})
            lane.stats.internal_errors += 1
            return Outcome(Verdict.RETRY, f"request failed: {type(exc).__name__}: {exc}"), None, None


async def read_response(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The response body up to `limit` bytes, read to its end: a single `read(limit)` returns after the first
    chunk, so an answer reset or stalled mid-body would be judged on its first bytes. A reset raises
    ClientPayloadError and a stall runs into the request's total timeout: both are retried, not delivered."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def prepare(lane: Lane, batch: Sequence[Delivery]) -> Prepared:
    """Render as much of `batch` as goes in one request; see the module docstring for what happens to the rest."""
    destination = lane.destination
    prepared = Prepared()
    carried: list[Delivery] = []
    events: list[dict[str, Any]] = []
    for delivery in batch:
        try:
            event = orjson.loads(delivery.payload)
        except orjson.JSONDecodeError as exc:
            prepared.settled.append((delivery, Outcome(Verdict.DEAD, f"the stored event is not JSON: {exc}")))
            continue
        if not isinstance(event, dict):
            prepared.settled.append((delivery, Outcome(Verdict.DEAD, "the stored event is not a JSON object")))
            continue
        carried.append(delivery)
        events.append(event)
    while carried:
        try:
            prepared.request = destination.build(events)
        except BatchTooLarge as too_large:
            if len(carried) == 1:
                prepared.settled.append((carried[0], Outcome(Verdict.DEAD, f"cannot render: {too_large}")))
                return prepared
            # send what fits now; the rest goes back to the front of the lane for the next request
            fits = min(max(too_large.fits, 1), len(carried) - 1)
            _put_back(lane, carried[fits:])
            carried, events = carried[:fits], events[:fits]
        except RenderError as exc:
            if len(carried) == 1:
                prepared.settled.append((carried[0], Outcome(Verdict.DEAD, f"cannot render: {exc}")))
                return prepared
            carried, events = _isolate(lane, carried, events, prepared)
        except Exception as exc:  # a bug in the destination module: retry later (a fix may be deployed by then)
            log.exception(
                "rendering failed unexpectedly",
                extra={"destination": destination.name, "delivery_ids": [d.id for d in carried]},
            )
            lane.stats.internal_errors += 1
            outcome = Outcome(Verdict.RETRY, f"internal error while rendering: {type(exc).__name__}: {exc}")
            prepared.settled += [(d, outcome) for d in carried]
            return prepared
        else:
            prepared.carried = carried
            return prepared
    return prepared


def _isolate(
    lane: Lane, carried: list[Delivery], events: list[dict[str, Any]], prepared: Prepared
) -> tuple[list[Delivery], list[dict[str, Any]]]:
    """A batch failed to render: render each event alone; those that fail are settled with their own reason, the
    others are returned to go together. If none fails alone, the first goes alone and the rest go back."""
    good: list[tuple[Delivery, dict[str, Any]]] = []
    for delivery, event in zip(carried, events, strict=True):
        try:
            lane.destination.build([event])
        except RenderError as exc:
            prepared.settled.append((delivery, Outcome(Verdict.DEAD, f"cannot render: {exc}")))
        except Exception as exc:
            log.exception(
                "rendering failed unexpectedly", extra={"destination": lane.name, "delivery_ids": [delivery.id]}
            )
            lane.stats.internal_errors += 1
            reason = f"internal error while rendering: {type(exc).__name__}: {exc}"
            prepared.settled.append((delivery, Outcome(Verdict.RETRY, reason)))
        else:
            good.append((delivery, event))
    if len(good) == len(carried):
        _put_back(lane, carried[1:])
        return carried[:1], events[:1]
    return [d for d, _ in good], [e for _, e in good]


def _log_failed(
    lane: Lane, deliveries: Sequence[Delivery], results: Sequence[AttemptResult], reason: str, status: int | None
) -> None:
    log.warning(
        "delivery attempt failed",
        extra={
            "destination": lane.name,
            "delivery_ids": [d.id for d in deliveries],
            "webhook_ids": sorted({d.webhook_id for d in deliveries}),
            "verdicts": sorted({r.verdict for r in results}),
            "status_code": status,
            "reason": reason,
        },
    )


def gone_reason(url: str) -> str:
    """Why a destination was disabled: "410 Gone from <scheme://host/path>" (no query, no credentials)."""
    parts = urlsplit(url)
    return f"{GONE} Gone from {shown(urlunsplit((parts.scheme, parts.netloc, parts.path, '', '')))}"


def _put_back(lane: Lane, deliveries: Sequence[Delivery]) -> None:
    lane.queue.extendleft(reversed(deliveries))
    lane.ready.set()


def new_session(user_agent: str = USER_AGENT, *, limit: int = 256) -> aiohttp.ClientSession:
    """The one outbound HTTP session: our own User-Agent (destinations may override per request), pooled
    connections, no cookie jar (each request stands alone)."""
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": user_agent},
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=True,
    )
