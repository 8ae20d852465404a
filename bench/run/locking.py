"""An exclusive lock on a results directory for the duration of a run.

Two runs writing the same directory would interleave cells and overwrite each other's table, so a
run holds ``fcntl.flock`` on ``<dir>/.lock`` and a second one fails at once with a one-line
:class:`~bench.errors.UsageError` naming the directory and the process holding it. The kernel
releases the lock when the holder's file descriptor closes, so a crashed or killed run never
leaves a stale lock behind; the file itself stays (deleting it would let two runs lock two
different files of the same name).

    with lock_directory(out):
        ...  # run
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from bench.errors import UsageError

LOCK_NAME = ".lock"


class DirectoryLock:
    """Context manager holding an exclusive, non-blocking ``flock`` on ``<directory>/.lock``."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> DirectoryLock:
        try:
            import fcntl
        except ImportError:  # Windows: no flock; runs are not protected from each other there
            return self
        if self._fd is not None:
            raise UsageError(f"{self.directory}: this run already holds the lock")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UsageError(f"{self.path} cannot be created ({exc.strerror or exc}); choose another --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise UsageError(f"{self.path} cannot be locked ({exc.strerror or exc})") from None
            who = f"process {holder}" if holder else "another process"
            raise UsageError(f"{self.directory} is in use by another run ({who}); wait for it to finish "
                             f"or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no stale PID for the next reader
        except OSError:
            pass
        os.close(fd)  # closing the descriptor releases the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def lock_directory(directory: str | Path) -> DirectoryLock:
    """``with lock_directory(out): ...`` holds the results directory for the run."""
    return DirectoryLock(directory)
