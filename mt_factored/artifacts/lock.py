"""One process at a time in a folder: a lock file held for the life of a run.

:class:`FolderLock` keeps an exclusive ``flock`` on ``<folder>/run.lock`` and writes the
holder's PID, host and start time into it. A second process asking for the folder is
refused with the holder's PID and what to do. The kernel drops the ``flock`` when its
holder dies (kill -9 included), so a lock file left by a killed run is free: the next run
takes it over and says whose it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from mt_factored.errors import MismatchError, WriteError

log = logging.getLogger(__name__)

LOCK_NAME = "run.lock"
"""The lock file inside a locked folder."""


class FolderBusyError(MismatchError):
    """Another live process holds the folder's lock."""


def _read(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 4096):
        raw += chunk
    try:
        data = json.loads(raw.decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _holder_text(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process (the lock file names none)"
    since = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "?"
    return f"PID {holder.get('pid', '?')} on {holder.get('host', '?')} (since {when})"


class FolderLock:
    """An exclusive lock on ``folder`` (created if missing) for as long as it is held.

    Args:
        folder: the folder to own (a run folder).
        what: how errors name the folder's argument (e.g. ``"run_dir"``).

    Use as a context manager, or :meth:`acquire` / :meth:`release`.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "folder") -> None:
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self.previous: dict[str, Any] = {}
        """The record of a stale lock taken over (empty when the file was new or ours)."""

    def acquire(self) -> FolderLock:
        """Take the lock, or raise :class:`FolderBusyError` naming its holder.

        Raises:
            FolderBusyError: a live process holds it.
            WriteError: the folder cannot be created or written (read-only, full disk).
        """
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            while True:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = _read(fd)
                    os.close(fd)
                    raise FolderBusyError(
                        f"{self.what}={self.folder} is in use by {_holder_text(holder)}",
                        f"wait for that run to finish, stop it (kill {holder.get('pid', '<pid>')})"
                        f" or use another {self.what}=; its lock is {self.path}",
                    ) from None
                try:  # the holder before us may have removed the file on release: retry
                    same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
            self.previous = _read(fd)
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.time(),
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500],
            }
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(record) + "\n").encode())
            os.fsync(fd)
        except OSError as err:  # FolderBusyError is no OSError: it passes through
            raise WriteError(
                f"{self.what}={self.folder} cannot be written ({err.strerror or err})",
                f"make it writable, free space, or use another {self.what}=",
            ) from err
        self._fd = fd
        if self.previous and self.previous.get("pid") != os.getpid():
            log.warning(
                "%s: took over the stale lock of %s (that process is gone)",
                self.folder,
                _holder_text(self.previous),
            )
        return self

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
