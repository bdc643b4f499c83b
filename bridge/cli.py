"""The `bridge` command: serve, check, demo, and the ops API from the shell.

Every subcommand reads the config once (`--config`, else $BRIDGE_CONFIG, else ./bridge.yaml). Config and
mapping errors print `file:line:column: message (hint: …)` and exit 2.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Sequence
from typing import Any

from bridge import __version__, cli_destinations
from bridge.config import Settings, load_settings
from bridge.errors import BridgeError, ConfigError, MappingError


def _config_path(args: argparse.Namespace) -> str:
    return str(args.config or os.environ.get("BRIDGE_CONFIG") or "bridge.yaml")


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(_config_path(args), os.environ)


def cmd_serve(args: argparse.Namespace) -> int:
    from bridge import logs
    from bridge.app import create_app
    from bridge.mapping import load_mappings

    settings = _settings(args)
    level = args.log_level or settings.log_level or "INFO"
    logs.configure(level, "text" if settings.log_format == "text" else "json", logs.secret_values(settings))
    mappings = load_mappings(settings.mappings_dir)
    app = create_app(settings, mappings=mappings, role=args.role)
    serve_app(
        app,
        settings,
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        proxy_headers=args.proxy_headers,
    )
    return 0


def serve_app(app: Any, settings: Settings, *, host: str, port: int, proxy_headers: bool = False) -> None:
    """Run `app` under uvicorn the way `bridge serve` does, until SIGINT/SIGTERM."""
    import uvicorn

    from bridge.server import HttpProtocol

    # Everything loaded so far lives for the whole process: keep it out of the collector's scans, and collect
    # young objects less often (measured: the cyclic GC took ~6 % of the event loop under ingest load).
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=HttpProtocol,  # httptools, one write per response (bridge/server.py)
        access_log=False,  # measured: uvicorn's access log halves throughput; ingest logs through our logger
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.dispatcher.shutdown_grace_seconds) + 5,
        server_header=False,
        proxy_headers=proxy_headers,
        limit_concurrency=settings.limit_concurrency,  # past it: 503, the provider retries
        timeout_keep_alive=settings.keep_alive_seconds,
    )


def cmd_check(args: argparse.Namespace) -> int:
    """Every config problem, then every mapping problem, in one run. Exit 2 when the config has errors, 1 when
    only mappings do."""
    from bridge.config import check_settings
    from bridge.mapping import check_mappings

    report = check_settings(_config_path(args), os.environ)
    mapping_errors = check_mappings(report.mappings_dir) if report.mappings_dir else []
    for error in [*report.errors, *mapping_errors]:
        print(error, file=sys.stderr)
    count = len(report.errors) + len(mapping_errors)
    if count:
        print(f"{count} error(s)", file=sys.stderr)
        return 2 if report.errors else 1
    settings = report.settings
    assert settings is not None
    from bridge.mapping import load_mappings
    from bridge.providers.coverage import unsigned_field_warnings

    for warning in unsigned_field_warnings(settings.sources, load_mappings(settings.mappings_dir)):
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"ok: {settings.path}: {len(settings.sources)} source(s), {len(settings.destinations)} destination(s); "
        f"mappings in {settings.mappings_dir}"
    )
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from pathlib import Path

    import orjson

    from bridge.app import build_destinations, build_providers
    from bridge.clock import SystemClock
    from bridge.mapping import load_mappings
    from bridge.preview import format_text, preview

    settings = _settings(args)
    providers = build_providers(settings)
    if args.source not in providers:
        print(f"error: no source {args.source!r} in {settings.path} (have: {', '.join(providers)})", file=sys.stderr)
        return 2
    body = Path(args.file).read_bytes()
    headers: dict[str, str] = {}
    headers_file = Path(args.headers) if args.headers else Path(args.file[: -len(".json")] + ".headers.json")
    if args.headers or (args.file.endswith(".json") and headers_file.exists()):
        headers = orjson.loads(headers_file.read_bytes())
    report = preview(
        source=args.source,
        provider=providers[args.source],
        mappings=load_mappings(settings.mappings_dir),
        destinations=build_destinations(settings),
        body=body,
        headers=headers,
        received_at=SystemClock().now(),
    )
    if args.format == "json":
        _print_json(report)
    else:
        print(format_text(report), end="")
    return 1 if any(e["status"] == "mapping_failed" for e in report["events"]) else 0


def cmd_mappings_test(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bridge.mapping import load_mappings
    from bridge.mapping.golden import run_golden_cases

    report = run_golden_cases(
        Path(args.fixtures), load_mappings(Path(args.mappings)), update=args.update, only=args.only
    )
    for failure in report.failed:
        print(f"FAIL {failure.case}: {failure.reason}")
        if failure.diff:
            print(failure.diff)
    for case, why in report.skipped:
        print(f"skip {case}: {why}")
    print(report.summary())
    return 0 if report.ok else 1


def cmd_replay(args: argparse.Namespace) -> int:
    import httpx

    client, url = _ops_client(args)
    options = {"dry_run": args.dry_run, "force": args.force}
    try:
        with client:
            if args.ids and len(args.ids) == 1:
                response = client.post(f"/ops/webhooks/{args.ids[0]}/replay", json=options)
            else:
                body: dict[str, object] = dict(options)
                if args.ids:
                    body["ids"] = args.ids
                for key in ("source", "type", "status", "since", "until"):
                    if getattr(args, key) is not None:
                        body[key] = getattr(args, key)
                body["limit"] = args.limit
                response = client.post("/ops/webhooks/replay", json=body)
    except httpx.HTTPError as exc:
        print(f"cannot reach the bridge at {url}: {exc}", file=sys.stderr)
        return 1
    if response.status_code >= 400:
        print(f"HTTP {response.status_code}: {response.text}", file=sys.stderr)
        return 1
    _print_json(response.json())
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bridge.init import write_starter

    path = Path(args.output)
    made = write_starter(path, args.source or [], args.destination or [], force=args.force)
    print(f"wrote {path} and {path.parent / 'mappings'}/ ({', '.join(made.mappings) or 'no sources'})")
    print("set these environment variables, then run `bridge check --config " + str(path) + "`:")
    for variable in made.variables:
        print(f"  {variable}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bridge.demo import run_demo

    code: int = run_demo(verbose=args.verbose, everything=args.all, source=args.source)
    return code


#: where a real account check exists: GA4's validation server, Meta's and TikTok's test events
_VALIDATING = {"ga4": "debug", "meta_capi": "test_event_code", "tiktok": "test_event_code"}
_TEST_EVENTS_PAGE = {
    "meta_capi": "Meta: Events Manager → Test events",
    "tiktok": "TikTok: Events Manager → <pixel> → Test events",
}


def cmd_validate_destination(args: argparse.Namespace) -> int:
    """Send one preview purchase (happening now, a test customer) to a GA4, Meta or TikTok destination in
    validation mode — GA4 to /debug/mp/collect (validated, not recorded), Meta and TikTok with a test_event_code
    (shown under Test events; Meta still counts them) — and print the request and what the platform answered."""
    import dataclasses
    import time

    import httpx

    from bridge.destinations import destination_class
    from bridge.destinations.base import Verdict
    from bridge.events import format_time
    from bridge.urls import mask_url

    settings = _settings(args)
    if args.name not in settings.destinations:
        print(f"error: no destination {args.name!r} in {settings.path}", file=sys.stderr)
        return 2
    entry = settings.destinations[args.name]
    mode = _VALIDATING.get(entry.type)
    if mode is None:
        print(f"error: {entry.type} has no validation endpoint (only {', '.join(_VALIDATING)})", file=sys.stderr)
        return 2
    extra: dict[str, Any] = {"debug": True} if mode == "debug" else {}
    if mode == "test_event_code":
        code = args.test_event_code or entry.options.get("test_event_code")
        if not code:
            print(f"error: needs --test-event-code ({_TEST_EVENTS_PAGE[entry.type]})", file=sys.stderr)
            return 2
        extra = {"test_event_code": code}
    checked = dataclasses.replace(entry, options={**entry.options, **extra}, events=("*",))
    destination = destination_class(entry.type)(checked)
    now = time.time()
    event = {
        "name": "purchase",
        "id": f"bridge-validate-{int(now)}",
        "occurred_at": format_time(int(now)),
        "customer": {"id": "bridge-validate", "email": "validate@example.com", "address": {"country_code": "US"}},
        "order": {"id": f"bridge-validate-{int(now)}", "total": "1.00", "currency": "USD"},
        "context": {"ip": "192.0.2.1"},
    }
    request = destination.render([event])
    print(f"{request.method} {mask_url(request.url)}")
    print(request.body.decode())
    try:
        with httpx.Client(timeout=entry.timeout_seconds) as client:
            answer = client.request(request.method, request.url, headers=request.headers, content=request.body)
    except httpx.HTTPError as exc:
        print(f"cannot reach {mask_url(request.url)}: {exc}", file=sys.stderr)
        return 1
    outcome = destination.classify(answer.status_code, dict(answer.headers), answer.content)
    print(f"\n→ HTTP {answer.status_code}: {answer.text[:4000]}")
    print(f"{'ok' if outcome.verdict is Verdict.DELIVERED else 'NOT OK'}: {outcome.reason}")
    return 0 if outcome.verdict is Verdict.DELIVERED else 1


def _ops_client(args: argparse.Namespace) -> tuple[Any, str]:
    import httpx

    settings = _settings(args)
    token = args.token or os.environ.get("BRIDGE_OPS_TOKEN") or settings.ops_token
    if not token:
        raise ConfigError("no ops token: set ops.token in the config, BRIDGE_OPS_TOKEN or --token")
    url = args.url or f"http://{settings.host}:{settings.port}"
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0), url


def _print_json(data: Any) -> None:
    import orjson

    print(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode())


def cmd_outbox(args: argparse.Namespace) -> int:
    import httpx

    if isinstance(args.id, str) and args.action not in cli_destinations.ACTIONS:
        print(f"error: outbox {args.action} takes a delivery id, not {args.id!r}", file=sys.stderr)
        return 2
    client, url = _ops_client(args)
    try:
        with client:
            if args.action in cli_destinations.ACTIONS:
                response = cli_destinations.request(client, args)
                if response is None:
                    return 2
            elif args.action == "status":
                response = client.get("/ops/outbox")
            elif args.action == "list":
                params = {k: v for k, v in (("status", args.status), ("destination", args.destination)) if v}
                params["limit"] = str(args.limit)
                if args.cursor:
                    params["cursor"] = str(args.cursor)
                response = client.get("/ops/deliveries", params=params)
            elif args.action == "show":
                response = client.get(f"/ops/deliveries/{args.id}")
            elif args.action == "skip":
                if not args.id:
                    print("error: outbox skip needs a delivery id", file=sys.stderr)
                    return 2
                response = client.post(f"/ops/deliveries/{args.id}/skip")
            elif args.action == "retry":
                if args.id:
                    response = client.post(f"/ops/deliveries/{args.id}/retry")
                else:
                    body = {"status": args.status or "dead"}
                    if args.destination:
                        body["destination"] = args.destination
                    response = client.post("/ops/deliveries/retry", json=body)
            else:  # purge: the service's retention rule, or rows older than --older-than-days
                purge: dict[str, object] = {}
                if args.older_than_days is not None:
                    purge["older_than_days"] = args.older_than_days
                response = client.post("/ops/outbox/purge", json=purge)
    except httpx.HTTPError as exc:
        print(f"cannot reach the bridge at {url}: {exc}", file=sys.stderr)
        return 1
    if response.status_code >= 400:
        print(f"HTTP {response.status_code}: {response.text}", file=sys.stderr)
        return 1
    _print_json(response.json())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bridge", description="Verified payment webhooks in, canonical events out.")
    parser.add_argument("--version", action="version", version=f"bridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", help="config file (default: $BRIDGE_CONFIG or ./bridge.yaml)")
        return p

    serve = with_config(sub.add_parser("serve", help="run ingest and the dispatcher (or one of them: --role)"))
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--log-level", default=os.environ.get("BRIDGE_LOG_LEVEL"), help="default: log.level or INFO")
    serve.add_argument(
        "--proxy-headers", action="store_true", help="trust X-Forwarded-For/Proto (only behind your own proxy)"
    )
    serve.add_argument(
        "--role",
        choices=["all", "ingest", "dispatch"],
        default="all",
        help="all (default): take webhooks and deliver; ingest: take webhooks only; dispatch: deliver only "
        "(its webhook route answers 503). Several replicas need a PostgreSQL outbox",
    )
    serve.set_defaults(func=cmd_serve)

    check = with_config(sub.add_parser("check", help="validate the config and every mapping file"))
    check.set_defaults(func=cmd_check)

    preview_cmd = with_config(sub.add_parser("preview", help="show the events and requests one webhook body makes"))
    preview_cmd.add_argument("--source", required=True, help="source name from the config")
    preview_cmd.add_argument("file", help="the webhook body (JSON file)")
    preview_cmd.add_argument("--headers", help="request headers as a JSON object (default: <file>.headers.json)")
    preview_cmd.add_argument("--format", choices=["text", "json"], default="text")
    preview_cmd.set_defaults(func=cmd_preview)

    mappings_cmd = sub.add_parser("mappings", help="mapping file tools")
    mappings_sub = mappings_cmd.add_subparsers(dest="mappings_command", required=True)
    golden = mappings_sub.add_parser("test", help="run fixtures/<provider>/<case>.json against <case>.expected.json")
    golden.add_argument("--update", action="store_true", help="rewrite the expected files (review the diff!)")
    golden.add_argument("--mappings", default="mappings")
    golden.add_argument("--fixtures", default="fixtures")
    golden.add_argument("--only", help="a provider name or a glob over <provider>/<case>")
    golden.set_defaults(func=cmd_mappings_test)

    replay = with_config(sub.add_parser("replay", help="re-map stored webhooks with the current mappings"))
    replay.add_argument("ids", nargs="*", type=int, help="webhook ids (or select with the filters)")
    replay.add_argument("--source")
    replay.add_argument("--type", help="provider event type")
    replay.add_argument("--status", choices=["accepted", "ignored", "mapping_failed"])
    replay.add_argument("--since", type=float, help="received at or after (Unix seconds)")
    replay.add_argument("--until", type=float, help="received before (Unix seconds)")
    replay.add_argument("--limit", type=int, default=1000)
    replay.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    replay.add_argument("--force", action="store_true", help="also resend deliveries already delivered or dead")
    replay.add_argument("--url", help="bridge base URL (default: from the config's server section)")
    replay.add_argument("--token", help="ops token (default: $BRIDGE_OPS_TOKEN or the config)")
    replay.set_defaults(func=cmd_replay)

    init = sub.add_parser("init", help="write a commented starter bridge.yaml (and the sources' mappings)")
    init.add_argument("--source", action="append", metavar="PROVIDER", help="a provider type (repeat)")
    init.add_argument("--destination", action="append", metavar="TYPE", help="a destination type (repeat)")
    init.add_argument("--output", default="bridge.yaml", help="where to write it (default ./bridge.yaml)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=cmd_init)

    demo = sub.add_parser("demo", help="run the whole flow locally against built-in sinks and exit")
    demo.add_argument("--verbose", action="store_true", help="print the bridge's log lines too")
    demo.add_argument("--all", action="store_true", help="also the analytics and ad platforms' sinks")
    demo.add_argument(
        "--source",
        default="stripe",
        choices=["stripe", "apple_app_store", "braintree", "fastspring", "google_play", "maxio", "mercadopago",
                 "paystack", "recharge", "revenuecat"],
        help="whose sample webhooks to post (default: stripe)",
    )
    demo.set_defaults(func=cmd_demo)

    validate = with_config(
        sub.add_parser("validate-destination", help="send one test purchase to GA4's validation server, Meta or TikTok")
    )
    validate.add_argument("name", help="a ga4, meta_capi or tiktok destination from the config")
    validate.add_argument("--test-event-code", help="Meta, TikTok: the code from Events Manager → Test events")
    validate.set_defaults(func=cmd_validate_destination)

    outbox = with_config(sub.add_parser("outbox", help="deliveries and destinations, through the ops API"))
    outbox.add_argument("--url", help="bridge base URL (default: from the config's server section)")
    outbox.add_argument("--token", help="ops token (default: $BRIDGE_OPS_TOKEN or the config)")
    actions = ["status", "list", "show", "retry", "skip", "purge", *cli_destinations.ACTIONS]
    outbox.add_argument("action", choices=actions)
    outbox.add_argument(
        "id", nargs="?", type=cli_destinations.id_or_name, help="delivery id (show, retry, skip); or destination name"
    )
    outbox.add_argument("--reason", help="disable: why (shown on the status page and in /ops/outbox)")
    outbox.add_argument("--status", choices=["pending", "in_flight", "delivered", "dead"])
    outbox.add_argument("--destination")
    outbox.add_argument("--limit", type=int, default=50)
    outbox.add_argument("--cursor", type=int)
    outbox.add_argument(
        "--older-than-days",
        type=float,
        help="purge: delete finished rows older than this (default: the config's retention.delivered_days); "
        "dedup keys always follow retention.dedup_days",
    )
    outbox.set_defaults(func=cmd_outbox)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (ConfigError, MappingError) as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2
    except BridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code
