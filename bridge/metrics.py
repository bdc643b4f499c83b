"""Every Prometheus metric the bridge exposes at GET /metrics, with its help text, on prometheus-client.

Each app owns one `Metrics` and so one `CollectorRegistry` (tests and the demo start several apps in a
process; the library's global registry would mix them). Counters and histograms are updated where things
happen (ingest, the dispatcher's request hook); gauges that describe stored state (deliveries by status, the
oldest pending age, lane health) are set from the outbox's stats and the dispatcher's report at scrape time.
Nothing writes here from inside the outbox. docs/operations.md documents every metric and the alert rules.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.lanes import LaneHealth
from bridge.outbox.base import DELIVERY_STATUSES

#: the exposition format generate_latest writes
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: webhook handling is mostly well under 10 ms; a stalled store shows in the upper buckets
WEBHOOK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: destination requests: tens of ms when healthy, up to the destination's timeout when not
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: refusal reasons ingest reports (the label values of bridge_webhooks_rejected_total)
REJECTION_REASONS = ("signature", "malformed", "too_large", "unavailable")
#: the outcome words of bridge_webhooks_total's status label
WEBHOOK_OUTCOMES = ("accepted", "duplicate", "ignored", "mapping_failed")


class _LaneCounters(Collector):
    """Attempts and lost leases, read from the dispatcher's per-lane tallies at scrape time (the dispatcher
    counts them anyway for the ops page; reading them avoids a second count on the delivery path)."""

    def __init__(self) -> None:
        self.lanes: Mapping[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        attempts = CounterMetricFamily(
            "bridge_delivery_attempts",
            "Deliveries settled by this process's attempts, by destination and verdict (delivered, retried, dead).",
            labels=["destination", "verdict"],
        )
        lost = CounterMetricFamily(
            "bridge_delivery_lost_leases",
            "Attempt results refused because another claim owned the delivery by then (lease expired mid-send).",
            labels=["destination"],
        )
        for name, stats in sorted(self.lanes.items()):
            for verdict in ("delivered", "retried", "dead"):
                attempts.add_metric([name, verdict], float(getattr(stats, verdict)))
            lost.add_metric([name], float(stats.lost_leases))
        yield attempts
        yield lost

    def describe(self) -> Iterator[Metric]:
        return iter(())


class Metrics:
    """The bridge's metrics; one per app."""

    def __init__(self) -> None:
        # no *_created series: they double the output and no rule here uses them
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.webhook_seconds = Histogram(
            "bridge_webhook_handling_seconds",
            "Time from the first byte of a webhook request to its answer, by source (refusals included).",
            ["source"],
            buckets=WEBHOOK_BUCKETS,
            registry=r,
        )
        self.webhooks = Counter(
            "bridge_webhooks",
            "Webhooks stored or found duplicate, by source and status (accepted, duplicate, ignored, mapping_failed).",
            ["source", "status"],
            registry=r,
        )
        self.rejections = Counter(
            "bridge_webhooks_rejected",
            "Webhooks refused, by source and reason (signature, malformed, too_large, unavailable).",
            ["source", "reason"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "bridge_delivery_request_seconds",
            "Time spent in destination requests (one request may carry a batch), by destination.",
            ["destination"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.deliveries = Gauge(
            "bridge_deliveries",
            "Deliveries in the outbox, by destination and status (pending, in_flight, delivered, dead).",
            ["destination", "status"],
            registry=r,
        )
        self.oldest_pending = Gauge(
            "bridge_oldest_pending_age_seconds",
            "Age of the oldest pending delivery, by destination (0 when none is pending).",
            ["destination"],
            registry=r,
        )
        self.destination_disabled = Gauge(
            "bridge_destination_disabled",
            "1 while a destination is disabled (it answered 410 Gone, or ops disabled it): its deliveries are held "
            "until it is enabled, by destination.",
            ["destination"],
            registry=r,
        )
        self.outbox_up = Gauge(
            "bridge_outbox_up", "1 when the outbox answered this scrape's query, else 0.", registry=r
        )
        self.lane_paused = Gauge(
            "bridge_lane_paused",
            "1 while a destination is paused by a rate limit or a Retry-After, by destination.",
            ["destination"],
            registry=r,
        )
        self.lane_paused_seconds = Gauge(
            "bridge_lane_paused_remaining_seconds",
            "Seconds until a paused destination sends again (0 when not paused), by destination.",
            ["destination"],
            registry=r,
        )
        self.lane_stalled = Gauge(
            "bridge_lane_stalled",
            "1 when a destination has due work but made no attempt for longer than the lease, by destination.",
            ["destination"],
            registry=r,
        )
        self._lanes = _LaneCounters()
        r.register(self._lanes)
        # the labelled series each call site updates, looked up once: `labels()` builds a key and takes the
        # family's lock on every call (label values are configured names and fixed words, so these stay small)
        self._webhook_series: dict[tuple[str, str], Any] = {}
        self._rejection_series: dict[tuple[str, str], Any] = {}
        self._handled_series: dict[str, Any] = {}
        self._request_series: dict[str, Any] = {}

    # -- events, counted where they happen --------------------------------------------------------------

    def webhook(self, source: str, status: str) -> None:
        series = self._webhook_series.get((source, status))
        if series is None:
            series = self._webhook_series[(source, status)] = self.webhooks.labels(source, status)
        series.inc()

    def rejected(self, source: str, reason: str) -> None:
        series = self._rejection_series.get((source, reason))
        if series is None:
            series = self._rejection_series[(source, reason)] = self.rejections.labels(source, reason)
        series.inc()

    def webhook_handled(self, source: str, seconds: float) -> None:
        series = self._handled_series.get(source)
        if series is None:
            series = self._handled_series[source] = self.webhook_seconds.labels(source)
        series.observe(seconds)

    def request(self, destination: str, seconds: float) -> None:
        """The dispatcher's hook: one destination request took `seconds`."""
        series = self._request_series.get(destination)
        if series is None:
            series = self._request_series[destination] = self.request_seconds.labels(destination)
        series.observe(seconds)

    # -- what this process counted, for the status page ----------------------------------------------

    def webhook_counts(self) -> dict[str, dict[str, int]]:
        """{source: {status or "refused:<reason>": count}} since this process started."""
        out: dict[str, dict[str, int]] = {}
        for metric in self.registry.collect():
            if metric.name not in ("bridge_webhooks", "bridge_webhooks_rejected"):
                continue
            for sample in metric.samples:
                if not sample.name.endswith("_total"):
                    continue
                source = sample.labels["source"]
                key = sample.labels["status"] if "status" in sample.labels else f"refused:{sample.labels['reason']}"
                out.setdefault(source, {})[key] = int(sample.value)
        return dict(sorted(out.items()))

    # -- scrape --------------------------------------------------------------------------------------

    def render(
        self,
        outbox_stats: Mapping[str, Any] | None,
        lanes: Mapping[str, Any],
        health: Mapping[str, LaneHealth] | None = None,
        now: float | None = None,
    ) -> bytes:
        """Prometheus text after setting the state gauges from `outbox_stats` (None: the outbox did not
        answer; its gauges keep their last values and bridge_outbox_up is 0), the dispatcher's lane tallies
        and its lane health ({destination: LaneHealth})."""
        self.outbox_up.set(0 if outbox_stats is None else 1)
        if outbox_stats is not None:
            for destination, counts in outbox_stats.get("destinations", {}).items():
                for status in DELIVERY_STATUSES:
                    self.deliveries.labels(destination, status).set(counts.get(status, 0))
                self.oldest_pending.labels(destination).set(counts.get("oldest_pending_age_seconds") or 0)
                self.destination_disabled.labels(destination).set(1 if counts.get("disabled") else 0)
        for destination, lane in (health or {}).items():
            paused_until = lane.paused_until
            remaining = max(0.0, paused_until - now) if paused_until is not None and now is not None else 0.0
            self.lane_paused.labels(destination).set(1 if remaining > 0 else 0)
            self.lane_paused_seconds.labels(destination).set(remaining)
            self.lane_stalled.labels(destination).set(1 if lane.stalled else 0)
        self._lanes.lanes = lanes
        return generate_latest(self.registry)
