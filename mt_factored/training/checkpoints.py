"""Lightning checkpoints that survive a crash: atomic, finite, read safely, picked with care.

- :class:`AtomicCheckpointIO` (the trainer's ``CheckpointIO`` plugin) writes every checkpoint
  through :func:`mt_factored.artifacts.atomic.atomic_write` (a temp file in the checkpoint's
  own folder, fsync, rename, fsync of the folder): a kill or a full disk leaves the previous
  file whole. A state dict holding NaN/Inf is refused before anything is written. Reading is
  ``torch.load(weights_only=True)``: a checkpoint cannot run code.
- :func:`find_resume_checkpoint` picks what ``resume=auto`` continues from: ``last.ckpt``, or
  when that is unreadable (truncated, empty, corrupt, non-finite) the newest intact
  ``step*.ckpt``, with a warning naming both.
- :class:`RunRecord` stores the run's composed config and its expert files' SHA-256 in every
  checkpoint (``checkpoint["mt_factored_run"]``), for the checks of a resume
  (:mod:`mt_factored.training.resume`).
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mt_factored.artifacts.atomic import atomic_write
from mt_factored.artifacts.finite import non_finite, require_finite
from mt_factored.constants import LAST_CKPT_NAME
from mt_factored.errors import MismatchError, WriteError

log = logging.getLogger(__name__)

RUN_RECORD_KEY = "mt_factored_run"
"""Key of the run's record (config, expert hashes) in a Lightning checkpoint."""
_STEP_FILE = re.compile(r"^step(\d+)\.ckpt$")


class CheckpointReadError(MismatchError):
    """A checkpoint file that cannot be used (truncated, corrupt, not a Lightning checkpoint)."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with crash-safe, finite-only writes and weights-only reads."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(
                "AtomicCheckpointIO.save_checkpoint takes no storage_options, got "
                f"{storage_options!r}"
            )
        require_finite(checkpoint.get("state_dict", {}), f"checkpoint {path}")
        # Serialised in memory first: a full disk then fails in a plain write (ENOSPC, named)
        # rather than inside torch's zip writer.
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        try:
            atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))
        except OSError as err:
            raise WriteError(
                f"could not write checkpoint {path} ({err.strerror or err}); the checkpoints "
                "written before are intact",
                "free space or make the run folder writable, then re-run the same command "
                "(it resumes from the last intact checkpoint)",
            ) from err

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return read_training_checkpoint(path, map_location)


def read_training_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """A Lightning checkpoint of this project, read weights-only and checked.

    Raises:
        CheckpointReadError: unreadable, not a Lightning checkpoint, or non-finite weights
            (the message names the file).
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        size = path.stat().st_size if path.exists() else 0
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointReadError(
            f"checkpoint {path} ({size} bytes) cannot be read: truncated or corrupt "
            f"({type(err).__name__}: {first[:200]})",
            "delete it to resume from an earlier checkpoint, or start a new run_dir",
        ) from err
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt or "global_step" not in ckpt:
        raise CheckpointReadError(
            f"{path} is not a Lightning checkpoint of mt_factored.train (no state_dict / "
            "global_step)",
            "pass the run's checkpoints/last.ckpt or a step*.ckpt beside it",
        )
    bad = non_finite(ckpt["state_dict"])
    if bad:
        raise CheckpointReadError(
            f"checkpoint {path} holds non-finite weights ({', '.join(bad[:4])})",
            "resume from an earlier checkpoint of the run, or start a new run_dir",
        )
    return dict(ckpt)


def step_checkpoints(folder: Path) -> list[Path]:
    """The ``step<N>.ckpt`` files of ``folder``, newest (highest N) first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_FILE.match(p.name))]
    return [p for _, p in sorted(found, key=lambda item: item[0], reverse=True)]


def find_resume_checkpoint(folder: Path) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint a run in ``folder`` continues from, and its contents.

    ``last.ckpt`` unless a step checkpoint is newer (a kill between the two writes) or it is
    unreadable; then the newest intact ``step*.ckpt``, with a warning naming both. None when
    the folder holds no checkpoint.

    Raises:
        CheckpointReadError: checkpoints exist but none is intact (naming them).
    """
    last = folder / LAST_CKPT_NAME
    steps = step_checkpoints(folder)
    candidates = ([last] if last.is_file() else []) + steps
    if not candidates:
        return None
    broken: list[tuple[Path, CheckpointReadError]] = []
    chosen: tuple[Path, dict[str, Any]] | None = None
    for path in candidates:
        match = _STEP_FILE.match(path.name) if path != last else None
        if chosen is not None and match and int(match.group(1)) <= chosen[1]["global_step"]:
            break  # step files come newest first: none left is newer than last.ckpt
        try:
            ckpt = read_training_checkpoint(path)
        except CheckpointReadError as err:
            broken.append((path, err))
            continue
        if chosen is None or ckpt["global_step"] > chosen[1]["global_step"]:
            chosen = (path, ckpt)
        if path != last:
            break  # the newest intact step checkpoint
    if chosen is None:
        raise CheckpointReadError(
            "no intact checkpoint to resume from: " + "; ".join(err.what for _, err in broken),
            "start a new run_dir (or resume=never to train from scratch in this one)",
        )
    for _, err in broken:
        log.warning("%s; resuming from %s instead", err.what, chosen[0])
    return chosen


class RunRecord(L.Callback):
    """Adds the run's record to every checkpoint: ``{"config": ..., "expert_sha256": ...}``.

    Args:
        record: plain JSON values (the composed config as a dict, the expert files' hashes).
    """

    def __init__(self, record: Mapping[str, Any]) -> None:
        super().__init__()
        self.record = dict(record)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[RUN_RECORD_KEY] = self.record
