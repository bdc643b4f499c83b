"""Ingest throughput: signed Stripe webhooks against `bridge serve` and, in the same run, against a bare
Starlette endpoint that only reads the body (same server settings: uvicorn, uvloop + httptools, no access log).

    .venv/bin/python bench/ingest.py [--seconds 10] [--concurrency 32 128]

Needs `wrk` (Debian: apt-get install wrk). Every request is a distinct, validly signed Stripe event (so the
bridge really verifies, maps and durably stores each one: SQLite WAL, synchronous=FULL, group commit); the
bodies are generated up front and cycled by a wrk Lua script. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import orjson
import yaml

from bench._common import ROOT, free_port, parse_wrk, python, spawn, stop, wait_http
from bridge.demo import stripe_signature

SECRET = "whsec_bench_secret"
BARE_APP = """
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def webhook(request):
    await request.body()
    return Response(b'{"status":"accepted"}', media_type="application/json")

app = Starlette(routes=[Route("/webhooks/stripe", webhook, methods=["POST"])])
"""


def bodies(count: int, run: str) -> list[tuple[bytes, str]]:
    template = orjson.loads((ROOT / "fixtures" / "stripe" / "checkout.session.completed.json").read_bytes())
    now = int(time.time())
    out = []
    for index in range(count):
        template["id"] = f"evt_bench_{run}_{index}"
        template["data"]["object"]["payment_intent"] = f"pi_bench_{run}_{index}"
        body = orjson.dumps(template)
        out.append((body, stripe_signature(body, SECRET, now)))
    return out


def lua_script(requests: list[tuple[bytes, str]], path: Path) -> None:
    # bodies are plain data at load time; requests are formatted in init(), once wrk knows the Host header
    lines = ["local bodies = {}", "local sigs = {}", "local reqs = {}"]
    for index, (body, signature) in enumerate(requests):
        text = body.decode()
        assert "]==]" not in text
        if index % 10_000 == 0:  # a Lua function holds at most 65536 constants: one function per 10k requests
            lines.append("(function()" if index == 0 else "end)(); (function()")
        lines.append(f"bodies[#bodies+1] = [==[{text}]==]; sigs[#sigs+1] = '{signature}'")
    lines.append("end)()")
    lines += [
        "init = function(args)",
        "  for n = 1, #bodies do",
        "    reqs[n] = wrk.format('POST', '/webhooks/stripe',",
        "      {['Content-Type']='application/json', ['Stripe-Signature']=sigs[n]}, bodies[n])",
        "  end",
        "end",
        "local i = 0",
        "request = function()",
        "  i = i + 1",
        "  if i > #reqs then i = 1 end",
        "  return reqs[i]",
        "end",
    ]
    path.write_text("\n".join(lines))


def wrk(url: str, connections: int, seconds: int, script: Path) -> dict[str, float]:
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "5s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parse_wrk(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--pool", type=int, default=0, help="distinct signed requests per run (default: 15k/s)")
    args = parser.parse_args()
    pool = args.pool or 15_000 * args.seconds

    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "bare.py").write_text(BARE_APP)
        results: dict[tuple[str, int], dict[str, float]] = {}
        for target in ("bare", "bridge"):
            for connections in args.concurrency:
                run = f"{target}{connections}"
                script = tmp / f"{run}.lua"
                lua_script(bodies(pool, run), script)
                port = free_port()
                if target == "bare":
                    command = [python(), "-m", "uvicorn", "bare:app", "--app-dir", str(tmp), "--port", str(port)]
                    command += ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]
                else:
                    config = tmp / f"{run}.yaml"
                    config.write_text(
                        yaml.safe_dump(
                            {
                                "outbox": {"url": f"sqlite:///{tmp / (run + '.db')}"},
                                "mappings": str(ROOT / "mappings"),
                                "sources": {"stripe": {"provider": "stripe", "secrets": [SECRET]}},
                            }
                        )
                    )
                    command = [python(), "-m", "bridge", "serve", "--config", str(config), "--port", str(port)]
                    command += ["--log-level", "WARNING"]
                proc = spawn(command, tmp / f"{run}.log")
                try:
                    wait_http(f"http://127.0.0.1:{port}/healthz")
                    results[(target, connections)] = wrk(
                        f"http://127.0.0.1:{port}/webhooks/stripe", connections, args.seconds, script
                    )
                finally:
                    stop(proc)

    print(f"ingest, {args.seconds}s per run, wrk -t1, one server process, 127.0.0.1")
    print(f"{'target':<8} {'conns':>5} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'ratio':>6}")
    for (target, connections), r in results.items():
        ratio = r["rps"] / results[("bare", connections)]["rps"]
        print(
            f"{target:<8} {connections:>5} {r['rps']:>10.0f} {r.get('p50', 0):>8.2f} {r.get('p99', 0):>8.2f} "
            f"{r['non2xx']:>8.0f} {ratio:>6.2f}"
        )


if __name__ == "__main__":
    main()
