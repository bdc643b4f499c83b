"""docs/grafana-dashboard.json queries what the app really exposes: every metric name a query uses is a series
name of a running app's GET /metrics (histogram `_bucket`s and counter `_total`s included, nothing stripped),
every label a query matches or groups by is a label of those series, every documented metric has a panel,
and the file is a well-formed dashboard (unique ids, panels inside the 24-column grid without overlapping,
every `$variable` defined)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.metrics import Metrics
from bridge.sinks.server import serve
from tests.harness import Bridge, running_bridge, stripe_case, stripe_headers
from tests.ops.support import SwitchSink, until

ROOT = Path(__file__).resolve().parent.parent.parent
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
METRIC = re.compile(r"\b(bridge_\w+)\b(\{[^}]*\})?")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)")
#: labels Prometheus adds to every scraped series
TARGET_LABELS = {"instance", "job"}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__all"}


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL text in the dashboard: panel targets and query variables."""
    found = [t["expr"] for p in panels(dashboard["panels"]) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found.append(variable["definition"])
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def sample_names(text: str) -> dict[str, set[str]]:
    """{sample name: its label names} for every family in a /metrics text, also those without samples yet (a
    labelled gauge no label has been set on shows only as HELP/TYPE): a histogram X as X_bucket (with `le`),
    X_sum and X_count, a counter as X_total, a gauge as X."""
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",), "gauge": ("",)}
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in suffixes[family.type]:
            out.setdefault(family.name + suffix, set())
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def reference_labels() -> dict[str, set[str]]:
    """Labels of every sample, from a Metrics render fed every input (as the alerts check does): for the families
    the running app declares but has not set yet."""

    class Tally:
        delivered = retried = dead = lost_leases = 1

    class Health:
        paused_until = 2.0
        stalled = True

    metrics = Metrics()
    metrics.webhook("s", "accepted")
    metrics.rejected("s", "signature")
    metrics.webhook_handled("s", 0.01)
    metrics.request("d", 0.01)
    stats = {"destinations": {"d": {"pending": 1, "oldest_pending_age_seconds": 3.0}}}
    return sample_names(metrics.render(stats, {"d": Tally()}, {"d": Health()}, 1.0).decode())


async def exposed(tmp_path: Path) -> dict[str, set[str]]:
    """{sample name: label names} of a running app's GET /metrics after it accepted, refused and delivered."""
    sink = SwitchSink(200)
    async with serve(sink.app) as url:
        destinations = {"collector": {"type": "http", "url": f"{url}/collect", "events": ["*"]}}
        async with running_bridge(tmp_path, destinations=destinations) as bridge:
            body = stripe_case("checkout.session.completed")
            assert (await bridge.post_stripe(body)).status_code == 200
            forged = stripe_headers(body, secret="whsec_forged")
            assert (await bridge.client.post("/webhooks/stripe", content=body, headers=forged)).status_code == 401
            await until(lambda: delivered(bridge), what="the delivery")
            response = await bridge.ops("GET", "/metrics")
            assert response.status_code == 200
    found = sample_names(response.text)
    reference = reference_labels()
    return {name: labels or reference.get(name, set()) for name, labels in found.items()}


async def delivered(bridge: Bridge) -> bool:
    return bool(await bridge.deliveries(status="delivered"))


async def test_every_query_uses_metrics_and_labels_the_app_exposes(tmp_path: Path, dashboard: dict[str, Any]) -> None:
    samples = await exposed(tmp_path)
    texts = queries(dashboard)
    assert len(texts) >= 15
    used: set[str] = set()
    for text in texts:
        names = [match.group(1) for match in METRIC.finditer(text)]
        assert names, f"no bridge metric in {text!r}"
        available = set(TARGET_LABELS)
        for match in METRIC.finditer(text):
            name, selector = match.group(1), match.group(2) or ""
            assert name in samples, f"{name} (in {text!r}) is not in the app's /metrics output"
            available |= samples[name]
            for label in MATCHER.findall(selector):
                assert label in samples[name] | TARGET_LABELS, f"{name} has no label {label!r} ({text!r})"
        for grouping in GROUPING.findall(text):
            for label in (part.strip() for part in grouping.split(",") if part.strip()):
                assert label in available, f"grouping by {label!r}, which {names} do not have ({text!r})"
        assert text.count("(") == text.count(")") and text.count("{") == text.count("}"), text
        used.update(names)
    # every metric docs/operations.md documents is on the dashboard
    operations = (ROOT / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"^\| `(bridge_\w+)` \|", operations, re.M))
    families = {re.sub(r"_(bucket|sum|count|total)$", "", name) for name in used}
    assert {re.sub(r"_total$", "", name) for name in documented} <= families


def test_the_dashboard_is_well_formed(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "instance", "destination", "source"} <= variables
    everything = list(panels(dashboard["panels"]))
    ids = [p["id"] for p in everything]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in everything:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
    for text in [*queries(dashboard), *(p["datasource"]["uid"] for p in everything if "datasource" in p)]:
        for plain, braced in VARIABLE.findall(text):
            assert (plain or braced) in variables | GRAFANA_BUILTINS, f"undefined variable in {text!r}"
    titles = " | ".join(p["title"].lower() for p in everything)
    for wanted in ("webhooks by source and outcome", "rejections by reason", "webhook handling time p50 / p99",
                   "deliveries by destination and status", "oldest pending", "attempts by verdict",
                   "request time p99", "paused / stalled", "lost leases"):  # fmt: skip
        assert wanted in titles, wanted
