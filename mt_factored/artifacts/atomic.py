"""The one way this project writes a file: so that it appears whole or not at all.

:func:`atomic_write` hands ``write`` a temporary path in the target's own folder (a rename is
atomic only within one file system), fsyncs the file, renames it onto the target and fsyncs
the folder (so the rename itself survives a crash). Readers see the old file or the new one,
never a part. Everything else here is built on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from mt_factored.errors import MtFactoredError, WriteError


def temp_path(path: Path, keep_suffix: bool = False) -> Path:
    """A fresh hidden name beside ``path`` (``.name.<id>.tmp``, or ``.stem.<id>.tmp.ext``
    with ``keep_suffix`` for writers that pick the format from the extension).

    A unique name rather than ``mkstemp``: the file gets the umask's permissions, not 0600.
    """
    tag = uuid.uuid4().hex[:12]
    if keep_suffix:
        return path.with_name(f".{path.stem}.{tag}.tmp{path.suffix}")
    return path.with_name(f".{path.name}.{tag}.tmp")


_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp(\.[^.]+)?$|^\.staging-[0-9a-f]{12}$")


def clean_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove what killed writes left in ``folder``: :func:`temp_path` files and
    :func:`staged_files` folders. Call it only while no other process writes there (e.g.
    under the run folder's lock).

    Returns:
        The paths removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        if _TEMP_NAME.match(entry.name):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (renames, new files) to disk; a no-op where folders cannot be
    opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Move a fully written temp file onto ``path``: fsync, rename, fsync the folder."""
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)
    return Path(path)


def _default_file_mode() -> int:
    """``0o666`` less the process's umask: the mode ``open(path, "w")`` gives a new file."""
    try:  # Linux: read it without changing it (setting it is process-wide, racy with threads)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(
    path: str | os.PathLike, write: Callable[[Path], Any], *, keep_suffix: bool = False
) -> Path:
    """Write ``path`` through ``write(tmp)`` on a temp file beside it, then :func:`publish`.

    The folder is created when missing; the temp file is removed when ``write`` fails. A
    failing write (full disk, read-only folder) raises
    :class:`~mt_factored.errors.WriteError` naming ``path`` (one error line in the commands).

    Returns:
        ``path``.
    """
    path = Path(path)
    tmp = temp_path(path, keep_suffix)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        # Some writers create their file 0600 whatever the umask (safetensors' save_file):
        # give it what open() would, so a published model folder is readable like the rest.
        if tmp.is_file():
            os.chmod(tmp, _default_file_mode())
        return publish(tmp, path)
    except OSError as err:
        if isinstance(err, MtFactoredError):
            raise
        raise WriteError(
            f"could not write {path} ({err.strerror or err}); the file there before, if any, "
            "is intact",
            "free space or make the folder writable, then re-run the same command",
        ) from err
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text``."""
    return atomic_write(path, lambda p: p.write_text(text))


def write_json(path: str | os.PathLike, data: Any, indent: int = 2) -> Path:
    """Atomically write ``data`` as indented JSON (with a final newline)."""
    return write_text(path, json.dumps(data, indent=indent) + "\n")


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """Atomically ``torch.save(obj)``."""
    return atomic_write(path, lambda p: torch.save(obj, p))


@contextlib.contextmanager
def staged_files(folder: str | os.PathLike, last: str | None = None) -> Iterator[Path]:
    """A staging folder inside ``folder``; on success every file in it is published into
    ``folder`` (``last`` after all the others).

    Each file appears in ``folder`` by one rename, so a reader never sees a half-written
    file. A folder whose ``config.json`` records the checksum of its weights passes
    ``last="config.json"``: a crash between renames then leaves a mismatch the reader reports.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".staging-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        yield staging
        for name in sorted((p.name for p in staging.iterdir()), key=lambda n: n == last):
            publish(staging / name, folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
