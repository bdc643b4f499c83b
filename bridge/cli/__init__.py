"""The `bridge` command: serve, check, demo, and the ops API from the shell.

Every subcommand reads the config once (`--config`, else $BRIDGE_CONFIG, else ./bridge.yaml). Config and
mapping errors print `file:line:column: message (hint: …)` and exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from bridge import __version__
from bridge.cli import ops, validate
from bridge.cli.args import config_path, print_json, settings_of
from bridge.config import Settings
from bridge.demo_sources import DEMO_PROVIDERS
from bridge.errors import BridgeError, ConfigError, MappingError


def cmd_serve(args: argparse.Namespace) -> int:
    from bridge import logs
    from bridge.app import create_app
    from bridge.mapping import load_mappings

    settings = settings_of(args)
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

    from bridge.collector import tune_for_serving
    from bridge.server import HttpProtocol

    tune_for_serving()  # everything loaded so far lives for the whole process
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

    report = check_settings(config_path(args), os.environ)
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

    settings = settings_of(args)
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
        print_json(report)
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
    options = {"dry_run": args.dry_run, "force": args.force}

    def send(client: Any) -> Any:
        if args.ids and len(args.ids) == 1:
            return client.post(f"/ops/webhooks/{args.ids[0]}/replay", json=options)
        body: dict[str, object] = dict(options)
        if args.ids:
            body["ids"] = args.ids
        for key in ("source", "type", "status", "since", "until"):
            if getattr(args, key) is not None:
                body[key] = getattr(args, key)
        body["limit"] = args.limit
        return client.post("/ops/webhooks/replay", json=body)

    return ops.call(args, send)


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
        choices=["stripe", *DEMO_PROVIDERS],
        help="whose sample webhooks to post (default: stripe)",
    )
    demo.set_defaults(func=cmd_demo)

    validate.add_parser(sub, with_config)
    ops.add_parser(sub, with_config)
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
