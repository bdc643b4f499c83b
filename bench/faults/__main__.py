"""python -m bench.faults <trial> [--full] [--seed N] [--keep DIR]

Runs one fault trial against a real `bridge serve` on 127.0.0.1 and prints one line of figures. Without
--full it runs the short version (the one CI runs); --full runs the version whose figures docs/reliability.md
reports. Exit status 0 when every promise held, 1 when one did not.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
import tempfile
from pathlib import Path

from bench.faults.harness import CLEANUP

TRIALS = {
    "kill": "bench.faults.kill",
    "power": "bench.faults.power",
    "diskfull": "bench.faults.diskfull",
    "destinations": "bench.faults.destinations",
    "outage": "bench.faults.outage",
    "stalls": "bench.faults.stalls",
    "storm": "bench.faults.storm",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[1])
    parser.add_argument("trial", choices=[*TRIALS, "all"])
    parser.add_argument("--full", action="store_true", help="the full version (minutes), not the CI one")
    parser.add_argument("--seed", type=int, help="random seed (kill and cut moments)")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (logs, databases)")
    args = parser.parse_args(argv)
    # the in-process sinks' servers log every connection a killed bridge dropped; the figures are the output
    logging.disable(logging.CRITICAL)
    names = list(TRIALS) if args.trial == "all" else [args.trial]
    failed = 0
    for name in names:
        module = importlib.import_module(TRIALS[name])
        with tempfile.TemporaryDirectory(prefix=f"bridge-fault-{name}-") as tmp:
            workdir = args.keep / name if args.keep else Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            try:
                result = asyncio.run(module.run(args.full, workdir, seed=args.seed))
            finally:
                CLEANUP.release()
        print(result.line(), flush=True)
        failed += not result.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
