"""`bridge preview`: what one webhook body would become, without network or storage.

Runs the provider's `parse` (no signature check: the file is trusted input from the author), the source's
mapping, the routing, and each routed destination's `render`; secrets in the rendered requests are masked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from bridge.destinations.base import Destination
from bridge.errors import BridgeError, RenderError
from bridge.ingest import map_event
from bridge.mapping import MappingSet
from bridge.providers.base import Provider
from bridge.urls import SECRET_NAME, mask, mask_url

_BODY_SECRET = re.compile(r'("(?:api_key|writeKey|token|access_token|api_secret)"\s*:\s*")([^"]*)(")')


def _body(raw: bytes) -> str:
    """The body as it would go on the wire (re-encoding JSON could change how numbers are written), with the
    keys some APIs take in the body (PostHog, Amplitude, Mixpanel) masked."""
    return _BODY_SECRET.sub(lambda m: m.group(1) + mask(m.group(2)) + m.group(3), raw.decode("utf-8", "replace"))


def preview(
    *,
    source: str,
    provider: Provider,
    mappings: MappingSet,
    destinations: Mapping[str, Destination],
    body: bytes,
    headers: Mapping[str, str],
    received_at: float,
) -> dict[str, Any]:
    """A JSON-ready description: per provider event, the mapping status, canonical events and the requests.
    `received_at` stands for the time the webhook would be received (what a mapping reads as `_received_at`)."""
    headers = {k.lower(): v for k, v in headers.items()}
    mapping = mappings.get(provider.mapping_name)
    result: dict[str, Any] = {"source": source, "provider": provider.type, "events": []}
    for inbound in provider.parse(body, headers):
        mapped = map_event(mapping, inbound, headers, source, provider.type, received_at=received_at)
        entry: dict[str, Any] = {
            "provider_event_id": inbound.event_id,
            "event_type": inbound.event_type,
            "status": mapped.status,
            "error": mapped.error,
            "canonical": mapped.events,
            "requests": [],
        }
        for event in mapped.events:
            for name, destination in destinations.items():
                if not destination.routes(event["name"]):
                    continue
                request: dict[str, Any] = {"destination": name, "event": event["name"], "id": event["id"]}
                if not destination.accepts(event):
                    request["error"] = "not sent: the destination refuses this event (consent, or no data it needs)"
                    entry["requests"].append(request)
                    continue
                try:
                    rendered = destination.build([event])
                except (RenderError, BridgeError) as exc:
                    request["error"] = f"cannot render: {exc}"
                else:
                    request.update(
                        method=rendered.method,
                        url=mask_url(rendered.url),
                        headers={k: mask(v) if SECRET_NAME.search(k) else v for k, v in rendered.headers.items()},
                        body=_body(rendered.body),
                    )
                entry["requests"].append(request)
        result["events"].append(entry)
    return result


def format_text(report: Mapping[str, Any]) -> str:
    lines = []
    for entry in report["events"]:
        lines.append(f"# {report['source']} ({report['provider']}) {entry['event_type']} {entry['provider_event_id']}")
        lines.append(f"status: {entry['status']}" + (f" — {entry['error']}" if entry["error"] else ""))
        for event in entry["canonical"]:
            lines.append(f"\n## canonical {event['name']} {event['id']}")
            lines.append(orjson.dumps(event, option=orjson.OPT_INDENT_2).decode())
        for request in entry["requests"]:
            lines.append(f"\n## → {request['destination']} ({request['event']} {request['id']})")
            if "error" in request:
                lines.append(request["error"])
                continue
            lines.append(f"{request['method']} {request['url']}")
            lines += [f"{k}: {v}" for k, v in request["headers"].items()]
            lines.append("")
            lines.append(request["body"])
        if not entry["requests"] and entry["canonical"]:
            lines.append("\n(no destination routes these events)")
    return "\n".join(lines) + "\n"
