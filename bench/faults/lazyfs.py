"""A FUSE file system that loses every write not made durable by fsync when the power is cut (the LazyFS idea).

    python -m bench.faults.lazyfs BACKING MOUNTPOINT CONTROL_SOCKET

Everything under MOUNTPOINT is BACKING, with one difference: file data written (or a size set by truncate) goes
to a per-file buffer in this process's memory, not to BACKING, until that file is fsync'd (fsync or fdatasync).
Reads see the buffer over the backing file, as they would see the page cache. Namespace changes (create, unlink,
rename, mkdir) go straight to BACKING, like a journaling file system's metadata.

A "cut" (the line `cut` on CONTROL_SOCKET) is the power going off: every later operation fails with EIO, every
buffer is thrown away, and the process answers `cut <bytes dropped> <files>`. The caller then kills whatever was
writing and unmounts; what is in BACKING is exactly what had been fsync'd. `stats` answers
`stats <fsyncs> <bytes buffered>`. SQLite's `-shm` file works (the kernel maps FUSE files through its page
cache; sizes reported here follow the buffered writes, so the mapping never reaches past the end of the file).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import sys
import threading
from pathlib import Path
from typing import Any

from fuse import FUSE, FuseOSError, Operations  # type: ignore[import-untyped]

PAGE = 4096


class Buffered:
    """The unsynced state of one file: dirty pages (page index → PAGE bytes) and its size as written."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pages: dict[int, bytearray] = {}

    def dirty_bytes(self) -> int:
        return len(self.pages) * PAGE


class LazyFS(Operations):  # type: ignore[misc]
    use_ns = True
    # No POSIX lock handler: the kernel then keeps fcntl/flock locks locally, which is what SQLite needs.
    lock = None

    def __init__(self, backing: Path) -> None:
        self.backing = backing
        self.files: dict[str, Buffered] = {}
        self.mutex = threading.RLock()
        self.cut = False
        self.fsyncs = 0

    # -- helpers -------------------------------------------------------------------------------------------

    def _real(self, path: str) -> str:
        return str(self.backing / path.lstrip("/"))

    def _check(self) -> None:
        if self.cut:
            raise FuseOSError(errno.EIO)

    def _buffer(self, path: str) -> Buffered:
        buffered = self.files.get(path)
        if buffered is None:
            buffered = Buffered(os.stat(self._real(path)).st_size)
            self.files[path] = buffered
        return buffered

    def _page(self, path: str, buffered: Buffered, index: int) -> bytearray:
        page = buffered.pages.get(index)
        if page is None:
            page = bytearray(PAGE)
            with open(self._real(path), "rb") as backing:
                backing.seek(index * PAGE)
                data = backing.read(PAGE)
            # bytes past the buffered size read as zeros (a truncate that has not been synced yet)
            visible = max(0, min(len(data), buffered.size - index * PAGE))
            page[:visible] = data[:visible]
            buffered.pages[index] = page
        return page

    def _flush(self, path: str) -> None:
        buffered = self.files.pop(path, None)
        fd = os.open(self._real(path), os.O_WRONLY)
        try:
            if buffered is not None:
                for index, page in sorted(buffered.pages.items()):
                    start = index * PAGE
                    if start >= buffered.size:
                        continue
                    os.pwrite(fd, bytes(page[: buffered.size - start]), start)
                os.ftruncate(fd, buffered.size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def power_cut(self) -> tuple[int, int]:
        with self.mutex:
            self.cut = True
            dropped = sum(b.dirty_bytes() for b in self.files.values())
            files = len(self.files)
            self.files.clear()
            return dropped, files

    # -- attributes and namespace ------------------------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        with self.mutex:
            self._check()
            try:
                st = os.lstat(self._real(path))
            except OSError as exc:
                raise FuseOSError(exc.errno) from None
            attrs = {
                key: getattr(st, key)
                for key in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime", "st_mtime", "st_ctime")
            }
            for key in ("st_atime", "st_mtime", "st_ctime"):
                attrs[key] = getattr(st, key + "_ns")
            buffered = self.files.get(path)
            if buffered is not None and stat.S_ISREG(st.st_mode):
                attrs["st_size"] = buffered.size
            return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        self._check()
        return [".", "..", *os.listdir(self._real(path))]

    def access(self, path: str, amode: int) -> int:
        self._check()
        if not os.access(self._real(path), amode):
            raise FuseOSError(errno.EACCES)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        self._check()
        os.chmod(self._real(path), mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        self._check()
        os.chown(self._real(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        self._check()
        os.utime(self._real(path), ns=times) if times else os.utime(self._real(path))
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        self._check()
        os.mkdir(self._real(path), mode)
        return 0

    def rmdir(self, path: str) -> int:
        self._check()
        os.rmdir(self._real(path))
        return 0

    def unlink(self, path: str) -> int:
        with self.mutex:
            self._check()
            os.unlink(self._real(path))
            self.files.pop(path, None)
            return 0

    def rename(self, old: str, new: str) -> int:
        with self.mutex:
            self._check()
            os.rename(self._real(old), self._real(new))
            buffered = self.files.pop(old, None)
            self.files.pop(new, None)
            if buffered is not None:
                self.files[new] = buffered
            return 0

    def statfs(self, path: str) -> dict[str, int]:
        self._check()
        sv = os.statvfs(self._real(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag", "f_frsize")
        return {key: getattr(sv, key) for key in keys} | {"f_namemax": sv.f_namemax}

    # -- file data ---------------------------------------------------------------------------------------

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        with self.mutex:
            self._check()
            fd = os.open(self._real(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            os.close(fd)
            self.files.pop(path, None)
            return 0

    def open(self, path: str, flags: int) -> int:
        with self.mutex:
            self._check()
            if not os.path.exists(self._real(path)):
                raise FuseOSError(errno.ENOENT)
            if flags & os.O_TRUNC:
                self._buffer(path).size = 0
            return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self.mutex:
            self._check()
            buffered = self.files.get(path)
            if buffered is None:
                with open(self._real(path), "rb") as backing:
                    backing.seek(offset)
                    return backing.read(size)
            end = min(offset + size, buffered.size)
            out = bytearray()
            position = offset
            while position < end:
                index, within = divmod(position, PAGE)
                take = min(PAGE - within, end - position)
                page = buffered.pages.get(index)
                if page is None:
                    page = self._page(path, buffered, index)
                out += page[within : within + take]
                position += take
            return bytes(out)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self.mutex:
            self._check()
            buffered = self._buffer(path)
            position = 0
            while position < len(data):
                index, within = divmod(offset + position, PAGE)
                take = min(PAGE - within, len(data) - position)
                page = self._page(path, buffered, index)
                page[within : within + take] = data[position : position + take]
                position += take
            buffered.size = max(buffered.size, offset + len(data))
            return len(data)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        with self.mutex:
            self._check()
            buffered = self._buffer(path)
            if length < buffered.size:
                last = length // PAGE
                for index in [i for i in buffered.pages if i > last]:
                    del buffered.pages[index]
                if length % PAGE:
                    page = self._page(path, buffered, last)
                    page[length % PAGE :] = bytes(PAGE - length % PAGE)
                else:
                    buffered.pages.pop(last, None)
            else:
                # growing: the new bytes read as zeros; pages past the old end start blank
                old_last = buffered.size // PAGE
                if buffered.size % PAGE:
                    page = self._page(path, buffered, old_last)
                    page[buffered.size % PAGE :] = bytes(PAGE - buffered.size % PAGE)
            buffered.size = length
            return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self.mutex:
            self._check()
            self._flush(path)
            self.fsyncs += 1
            return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        self._check()
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0  # close() does not make data durable

    def release(self, path: str, fh: int) -> int:
        return 0


def _control(fs: LazyFS, path: str) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    while True:
        conn, _ = server.accept()
        with conn:
            command = conn.recv(64).decode().strip()
            if command == "cut":
                dropped, files = fs.power_cut()
                conn.sendall(f"cut {dropped} {files}\n".encode())
            elif command == "stats":
                with fs.mutex:
                    buffered = sum(b.dirty_bytes() for b in fs.files.values())
                conn.sendall(f"stats {fs.fsyncs} {buffered}\n".encode())
            else:
                conn.sendall(b"error unknown command\n")


def main(argv: list[str]) -> None:
    backing, mountpoint, control = argv
    fs = LazyFS(Path(backing).resolve())
    threading.Thread(target=_control, args=(fs, control), daemon=True).start()
    FUSE(fs, mountpoint, foreground=True, nothreads=False, big_writes=True, max_write=131072, fsname="lazyfs")


if __name__ == "__main__":
    main(sys.argv[1:])
