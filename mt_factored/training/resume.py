"""Who owns a run folder, and whether a checkpoint in it may be continued by this command.

- :func:`run_folder`: for the life of a run, the folder's lock
  (:class:`mt_factored.artifacts.lock.FolderLock`: a second run on it is refused with the
  holder's PID; a killed run's lock is taken over), leftovers of killed writes removed, and
  ``run.json`` (the composed config, the expert files' SHA-256, the machine and commit).
- :func:`resolve_resume`: the checkpoint ``resume=`` names (``auto``: ``last.ckpt``, or the
  newest intact step checkpoint when it is unreadable), checked against this command: a
  different config (apart from :data:`MAY_CHANGE_ON_RESUME`), different hyperparameters or a
  different expert file are refused with a diff unless ``resume=force``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mt_factored.artifacts.atomic import clean_temp_files, write_json
from mt_factored.artifacts.checksums import sha256_file
from mt_factored.artifacts.configs import plain
from mt_factored.artifacts.lock import FolderLock
from mt_factored.artifacts.provenance import git_commit
from mt_factored.errors import MismatchError, MissingError
from mt_factored.expert.resolve import expert_files
from mt_factored.training.checkpoints import (
    RUN_RECORD_KEY,
    find_resume_checkpoint,
    read_training_checkpoint,
)

log = logging.getLogger(__name__)

RUN_RECORD_NAME = "run.json"
CHECKPOINT_DIR = "checkpoints"
MAY_CHANGE_ON_RESUME = (
    "resume",
    "run_dir",
    "trust_pickle",
    "trainer.max_steps",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "eval",
    "logger",
    "publish",
    "profile",
)
"""Config keys (and key prefixes) a resumed run may change: how long it runs, how it reports
and publishes; nothing that changes what the weights learn."""
FORCE = "force"


def is_main_process() -> bool:
    """True in the process that owns the run folder (global rank 0; DDP's other ranks start
    with RANK / LOCAL_RANK / NODE_RANK set)."""
    if "RANK" in os.environ:
        return os.environ["RANK"] == "0"
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


@contextlib.contextmanager
def run_folder(run_dir: Path, record: Mapping[str, Any]) -> Iterator[FolderLock | None]:
    """Own ``run_dir`` while the block runs (global rank 0 only): lock it, clean what killed
    writes left, write ``run.json``."""
    if not is_main_process():
        yield None
        return
    with FolderLock(run_dir, what="run_dir") as lock:
        for folder in (run_dir, run_dir / CHECKPOINT_DIR):
            for leftover in clean_temp_files(folder):
                log.info("removed %s (left by a write that was killed)", leftover)
        write_json(
            run_dir / RUN_RECORD_NAME,
            {
                **record,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "commit": git_commit(),
            },
        )
        yield lock


def run_record(cfg: Any) -> dict[str, Any]:
    """What every checkpoint of the run records: the composed config (plain JSON) and the
    SHA-256 of each expert file (checked on resume)."""
    return {
        "config": plain(cfg),
        "expert_sha256": {k: sha256_file(p) for k, p in expert_files(cfg.expert).items()},
    }


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}{key}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): value}


def _may_change(key: str) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in MAY_CHANGE_ON_RESUME)


def differences(saved: Any, now: Any, ignore: bool = True) -> list[str]:
    """``key: saved -> now`` for every flattened key of both whose value differs.

    Keys only one side has are left out: they come from another version of the schema (a key
    added since the checkpoint was written takes its default, which keeps the old behaviour).
    """
    a, b = _flatten(plain(saved)), _flatten(plain(now))
    out = []
    for key in sorted(set(a) & set(b)):
        if (ignore and _may_change(key)) or a[key] == b[key]:
            continue
        out.append(f"{key}: {a[key]!r} -> {b[key]!r}")
    return out


def check_resume(
    path: Path, ckpt: Mapping[str, Any], record: Mapping[str, Any], hparams: Mapping[str, Any]
) -> list[str]:
    """The differences between checkpoint ``path`` and this command (empty: same run)."""
    saved = ckpt.get(RUN_RECORD_KEY) or {}
    diff = []
    if "config" in saved:
        diff += differences(saved["config"], record["config"])
    else:  # a checkpoint of an older version: its module's hyperparameters at least
        diff += differences(ckpt.get("hyper_parameters", {}), hparams, ignore=False)
    for label, digest in saved.get("expert_sha256", {}).items():
        now = record["expert_sha256"].get(label)
        if now != digest:
            diff.append(
                f"expert file of {label!r}: SHA-256 {digest[:12]}... -> "
                f"{now[:12] + '...' if now else 'none'} (a different or modified file)"
            )
    return list(dict.fromkeys(diff))


def resolve_resume(
    resume: str | None, run_dir: Path, record: Mapping[str, Any], hparams: Mapping[str, Any]
) -> str | None:
    """The checkpoint to resume from (None: start fresh), after the checks of the module
    docstring.

    Raises:
        MismatchError: the checkpoint was trained with another config or expert (unless
            ``resume=force``).
        CheckpointReadError: checkpoints exist but none is intact.
        MissingError: ``resume=<path>`` names no file.
    """
    if resume in (None, "never", False):
        return None
    if resume in ("auto", FORCE):
        found = find_resume_checkpoint(run_dir / CHECKPOINT_DIR)
        if found is None:
            return None
        path, ckpt = found
    else:
        path = Path(resume)
        if not path.is_file():
            raise MissingError(
                f"resume={resume}: no such checkpoint", "use resume=auto, never or force"
            )
        ckpt = read_training_checkpoint(path)
    diff = check_resume(path, ckpt, record, dict(hparams))
    if diff and resume == FORCE:
        log.warning("resume=force: continuing %s despite %s", path, "; ".join(diff))
    elif diff:
        raise MismatchError(
            f"{path} was trained with other settings than this command "
            f"({len(diff)} difference(s), checkpoint -> now: {'; '.join(diff[:8])}"
            f"{' ...' if len(diff) > 8 else ''})",
            "re-run with the checkpoint's values, use a new run_dir=, or pass resume=force to "
            "continue it with the new values (resume=never starts it again from scratch)",
        )
    return str(path)
