"""Hot reload of mapping files: on SIGHUP or when a file under mappings/ changes, validate the whole directory
and swap the new set in atomically. An invalid edit is rejected and logged; the running mappings stay."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bridge.errors import MappingError
from bridge.mapping import MappingSet, check_mappings, load_mappings

log = logging.getLogger("bridge.reload")


def directory_fingerprint(directory: Path) -> str:
    """A hash over the names and contents of every mapping file (cheap for a handful of small files)."""
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.yaml")):
        digest.update(path.name.encode() + b"\0")
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass
class ReloadStatus:
    at: float | None = None
    ok: bool = True
    errors: list[str] = field(default_factory=list)


class MappingReloader:
    """Keeps `current` up to date with the directory; `required` names mappings that must exist (the sources')."""

    def __init__(self, directory: Path, current: MappingSet, required: set[str], on_swap: Callable[[MappingSet], None]):
        self.directory = directory
        self.current = current
        self.required = required
        self.on_swap = on_swap
        self.last = ReloadStatus()
        self._fingerprint = directory_fingerprint(directory)

    def reload(self) -> ReloadStatus:
        """Validate and swap now. Returns what happened (also kept in `last`)."""
        self._fingerprint = directory_fingerprint(self.directory)
        errors = [str(e) for e in check_mappings(self.directory)]
        if not errors:
            try:
                candidate = load_mappings(self.directory)
            except MappingError as exc:
                errors = [str(exc)]
            else:
                missing = sorted(self.required - set(candidate.names))
                errors = [f"{self.directory}/{name}.yaml: a configured source uses this mapping" for name in missing]
        self.last = ReloadStatus(at=time.time(), ok=not errors, errors=errors)
        if errors:
            log.error("mapping reload rejected; the running mappings stay", extra={"errors": errors})
            return self.last
        if candidate.version != self.current.version:
            self.current = candidate
            self.on_swap(candidate)
            log.info("mappings reloaded", extra={"version": candidate.version, "files": candidate.hashes})
        return self.last

    def changed(self) -> bool:
        return directory_fingerprint(self.directory) != self._fingerprint

    async def watch(self, interval: float = 1.0) -> None:
        """Poll the directory; reload when its contents change."""
        while True:
            await asyncio.sleep(interval)
            if self.changed():
                self.reload()
