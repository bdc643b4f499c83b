"""A private PostgreSQL cluster for the trials that stop, freeze or restart the database: initdb in a fresh
directory, its own port on 127.0.0.1, run as the `postgres` OS user (initdb refuses root). The machine's shared
server is never touched. `destroy()` (also registered with the trial cleanup) stops it and removes the files.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from bench.faults.harness import CLEANUP, TrialError
from bridge.sinks.server import free_port


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise TrialError("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin)")
    return Path(found[-1]).parent


class PrivateCluster:
    def __init__(self) -> None:
        self.bin = _bindir()
        self.port = free_port()
        # not under the trial's work directory: that one is private to root, and the server runs as postgres
        self.root = Path(tempfile.mkdtemp(prefix="bridge-fault-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as_root = os.geteuid() == 0
        CLEANUP.hook(self.destroy)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        command = list(args)
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        if check and done.returncode != 0:
            raise TrialError(f"{' '.join(args)}: {done.stdout.decode(errors='replace')[-500:]}")
        return done

    def init(self) -> None:
        if self._as_root:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "bridge")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/bridge"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def pids(self) -> list[int]:
        """The postmaster and every backend and helper it started."""
        try:
            postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return []
        children = subprocess.run(["pgrep", "-P", str(postmaster)], stdout=subprocess.PIPE, check=False)
        return [postmaster, *(int(p) for p in children.stdout.split())]

    def freeze(self) -> None:
        """SIGSTOP the whole cluster: connections stay open and nothing answers (a stalled disk or VM)."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def destroy(self) -> None:
        self.thaw()
        if self.data.exists():
            self.stop("immediate")
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
