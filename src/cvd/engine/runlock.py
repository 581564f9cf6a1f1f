"""One process per run folder: an OS lock (``flock``) on ``<run>/run.lock``.

Two ``cvd fit`` on the same folder would interleave their log rows and overwrite each other's
checkpoints, so the second one is refused with the holder's pid, host and start time. The lock
belongs to the kernel, not to the file: when the holder dies (even by kill -9) it is gone, and
the file left behind blocks nothing (``--resume`` just takes it again). The file's text only
says who holds it, for the message.

POSIX only (Linux, macOS: ``fcntl.flock``). On a network file system ``flock`` is as good as
that file system's locking (NFSv4 and Lustre honour it; some older mounts do not).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO

from cvd.errors import RunLockedError

LOCK_NAME = "run.lock"


class RunLock:
    """An exclusive, non-blocking lock on a run folder, held until :meth:`release` or exit."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`RunLockedError` naming the process that holds it."""
        if self._handle is not None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while held
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = describe_holder(handle.read())
            handle.close()
            raise RunLockedError(
                f"run folder {self.run_dir} is in use by another cvd process ({holder}; lock file "
                f"{self.path}): wait for it to finish or stop it, or choose another name=/output_dir="
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "command": sys.argv,
                }
            )
            + "\n"
        )
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Let another process have the folder (the file stays; it is not the lock)."""
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def describe_holder(text: str) -> str:
    """``pid 123 on host gpu4, started 2026-...`` from a lock file's text (or what is known)."""
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on host {info['host']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown: the lock file has no readable holder yet"
