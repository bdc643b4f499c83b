"""In-process counters, rendered as Prometheus text at GET /metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self) -> None:
        self.webhooks: Counter[tuple[str, str]] = Counter()
        self.rejections: Counter[tuple[str, str]] = Counter()

    def webhook(self, source: str, status: str) -> None:
        self.webhooks[(source, status)] += 1

    def rejected(self, source: str, reason: str) -> None:
        self.rejections[(source, reason)] += 1

    def render(self, outbox_stats: Mapping[str, Any] | None, lanes: Mapping[str, Any]) -> str:
        out = [
            "# HELP bridge_webhooks_total Webhooks stored (or found duplicate), by source and status.",
            "# TYPE bridge_webhooks_total counter",
        ]
        out += [
            f"bridge_webhooks_total{_labels(source=s, status=t)} {n}" for (s, t), n in sorted(self.webhooks.items())
        ]
        out += [
            "# HELP bridge_webhooks_rejected_total Webhooks refused, by source and reason.",
            "# TYPE bridge_webhooks_rejected_total counter",
        ]
        out += [
            f"bridge_webhooks_rejected_total{_labels(source=s, reason=r)} {n}"
            for (s, r), n in sorted(self.rejections.items())
        ]
        if outbox_stats is not None:
            out += [
                "# HELP bridge_deliveries Deliveries in the outbox, by destination and status.",
                "# TYPE bridge_deliveries gauge",
            ]
            oldest = []
            for dest, counts in sorted(outbox_stats.get("destinations", {}).items()):
                for status in ("pending", "in_flight", "delivered", "dead"):
                    out.append(f"bridge_deliveries{_labels(destination=dest, status=status)} {counts.get(status, 0)}")
                age = counts.get("oldest_pending_age_seconds")
                oldest.append(f"bridge_oldest_pending_age_seconds{_labels(destination=dest)} {age or 0}")
            out += [
                "# HELP bridge_oldest_pending_age_seconds Age of the oldest pending delivery.",
                "# TYPE bridge_oldest_pending_age_seconds gauge",
                *oldest,
            ]
        out += [
            "# HELP bridge_delivery_attempts_total Delivery attempts by this process, by destination and verdict.",
            "# TYPE bridge_delivery_attempts_total counter",
        ]
        for dest, stats in sorted(lanes.items()):
            for verdict in ("delivered", "retried", "dead"):
                value = getattr(stats, verdict)
                out.append(f"bridge_delivery_attempts_total{_labels(destination=dest, verdict=verdict)} {value}")
        out += [
            "# HELP bridge_delivery_lost_leases_total Completions refused because another claim owned the delivery.",
            "# TYPE bridge_delivery_lost_leases_total counter",
        ]
        out += [
            f"bridge_delivery_lost_leases_total{_labels(destination=dest)} {stats.lost_leases}"
            for dest, stats in sorted(lanes.items())
        ]
        out += [
            "# HELP bridge_delivery_request_seconds_sum Time spent in destination requests.",
            "# TYPE bridge_delivery_request_seconds_sum counter",
        ]
        for dest, stats in sorted(lanes.items()):
            out.append(
                f"bridge_delivery_request_seconds_sum{_labels(destination=dest)} {stats.latency_ms_total / 1000:.6f}"
            )
            out.append(f"bridge_delivery_request_seconds_count{_labels(destination=dest)} {stats.requests}")
        return "\n".join(out) + "\n"
