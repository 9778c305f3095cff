"""``python -m mt_factored.hub push``: convert a checkpoint, write the model folder fresh, list
the files of the commit and (unless a dry run) upload them as ONE commit."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from mt_factored import __version__
from mt_factored.artifacts.folder import MODEL_TYPE_KEY, ArtifactFormatError, read_config
from mt_factored.constants import CONFIG_NAME
from mt_factored.errors import InputError, MtFactoredError
from mt_factored.hub.convert import load_for_push, write_folder
from mt_factored.hub.results import read_results
from mt_factored.hub.upload import (
    commit_operations,
    describe_operations,
    push_operations,
    refuse_offline,
    repo_url,
)

DEFAULT_DRY_RUN_ROOT = Path("runs/hub")


@dataclass
class PushConfig:
    """``python -m mt_factored.hub push``: a checkpoint -> a Hub model folder -> ONE commit.

    The upload is one commit of every file of the folder: it lands whole or not at all.
    Authentication: HF_TOKEN or `hf auth login`.
    """

    checkpoint: str = MISSING
    """A Lightning .ckpt of a distillation run (runs/<name>/checkpoints/last.ckpt), a saved
    student or expert folder, a TD-MPC2 .pt or hub:ORG/NAME/file.pt (task_set and model_size
    say how to read a .pt)."""
    repo_id: str = MISSING
    """The model repo, ORG/NAME."""
    private: bool | None = None
    """Visibility of a repo created now (null: the account's default)."""
    revision: str | None = None
    """Branch to commit to (created if missing; null: main)."""
    results: str | None = None
    """The JSON of ``python -m mt_factored.evaluate ... out=results.json``: fills the model
    card's results table."""
    out: str | None = None
    """Where the folder is written and kept (null: a temporary folder; with --dry-run
    runs/hub/ORG--NAME)."""
    message: str | None = None
    """The commit message (null: "Upload <kind> with mt_factored <version>")."""
    datasets: list[str] | None = None
    """Hub datasets for the card's metadata (null: [nicklashansen/tdmpc2])."""
    task_set: str = "mt30"
    """Task set of a TD-MPC2 .pt."""
    model_size: int | str = "auto"
    """Size of a TD-MPC2 .pt (auto: read off the file)."""
    dry_run: bool = False
    """Write the folder and list the files of the commit; upload nothing (``--dry-run``)."""

    def __post_init__(self) -> None:
        repo = str(self.repo_id).split("/")
        if self.repo_id != MISSING and (len(repo) != 2 or not all(repo)):
            raise InputError(f"repo_id must be ORG/NAME, got {self.repo_id!r}")


class PushError(MtFactoredError, RuntimeError):
    """The upload failed; nothing was published."""


def push_in_one_commit(operations: list, repo_id: str, target: str, **options: Any):
    """``push_operations`` (one commit), a failure as one :class:`PushError` naming ``target``."""
    try:
        return push_operations(operations, repo_id, **options)
    except (OSError, ValueError) as err:
        raise PushError(
            f"upload to {target} failed: {err}. Nothing was published: the files go in one "
            "commit, so the repo's files are as they were (a new repo may exist, empty)."
        ) from err


def _is_model_folder(folder: Path) -> bool:
    try:
        return MODEL_TYPE_KEY in read_config(folder / CONFIG_NAME)
    except (OSError, ArtifactFormatError):
        return False


def write_fresh(
    source: Any, out: Path, card: dict[str, Any], extra: dict[str, str] | None = None
) -> Path:
    """Write the folder beside ``out``, then swap it in: no stale file from an earlier run
    is uploaded, and an existing ``out`` that is not a model folder is never touched.
    ``extra``: more files of the folder, name -> text."""
    if out.exists() and any(out.iterdir()) and not _is_model_folder(out):
        raise InputError(
            f"out={out} exists and is not a model folder", "choose an empty or new folder"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}")
    tmp.mkdir()  # not mkdtemp: the folder gets the umask's permissions, not 0700
    try:
        write_folder(source, tmp, **card)
        for name, text in (extra or {}).items():
            (tmp / name).write_text(text)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def push(cfg: PushConfig) -> int:
    """Convert, write, list and (unless ``cfg.dry_run``) upload; prints what it does."""
    repo_id, revision, dry_run = cfg.repo_id, cfg.revision, cfg.dry_run
    if not dry_run:
        refuse_offline()  # before minutes of conversion, not after
    source = load_for_push(cfg.checkpoint, cfg.task_set, cfg.model_size)
    results, meta = read_results(cfg.results) if cfg.results else (None, None)
    card = {
        "repo_id": repo_id,
        "results": results,
        "results_meta": meta,
        "datasets": list(cfg.datasets) if cfg.datasets is not None else None,
    }
    out = cfg.out or (DEFAULT_DRY_RUN_ROOT / repo_id.replace("/", "--") if dry_run else None)
    with tempfile.TemporaryDirectory(prefix="mt_factored-push-") as tmp:
        folder = write_fresh(source, Path(out) if out else Path(tmp) / "model", card)
        operations = commit_operations(folder)
        print(f"{source.kind} from {cfg.checkpoint} -> {folder}")
        print(describe_operations(operations))
        target = f"{repo_url(repo_id, revision)} (revision {revision or 'main'})"
        if dry_run:
            print(f"dry run: one commit of {len(operations)} files to {target}; nothing uploaded")
            return 0
        message = cfg.message or f"Upload {source.kind} with mt_factored {__version__}"
        commit = push_in_one_commit(  # the very operations listed above
            operations,
            repo_id,
            target,
            private=cfg.private,
            revision=revision,
            commit_message=message,
        )
    print(f"published {len(operations)} files: {commit.commit_url}")
    print(f"model page: {repo_url(repo_id, revision)}")
    return 0
