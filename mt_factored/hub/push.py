"""``python -m mt_factored.hub push``: convert a checkpoint, write the model folder fresh, list
the files of the commit and (unless a dry run) upload them as ONE commit."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from mt_factored import __version__
from mt_factored.artifacts.folder import MODEL_TYPE_KEY, ArtifactFormatError, read_config
from mt_factored.constants import CONFIG_NAME
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


class UsageError(ValueError):
    """Bad command-line arguments."""


class PushError(RuntimeError):
    """The upload failed; nothing was published."""


def _is_model_folder(folder: Path) -> bool:
    try:
        return MODEL_TYPE_KEY in read_config(folder / CONFIG_NAME)
    except (OSError, ArtifactFormatError):
        return False


def write_fresh(source: Any, out: Path, card: dict[str, Any]) -> Path:
    """Write the folder beside ``out``, then swap it in: no stale file from an earlier run
    is uploaded, and an existing ``out`` that is not a model folder is never touched."""
    if out.exists() and any(out.iterdir()) and not _is_model_folder(out):
        raise UsageError(
            f"out={out} exists and is not a model folder; choose an empty or new folder"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}")
    tmp.mkdir()  # not mkdtemp: the folder gets the umask's permissions, not 0700
    try:
        write_folder(source, tmp, **card)
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


def push(args: dict[str, Any], dry_run: bool) -> int:
    """Convert, write, list and (unless ``dry_run``) upload; prints what it does."""
    repo_id, revision = args["repo_id"], args["revision"]
    if not dry_run:
        refuse_offline()  # before minutes of conversion, not after
    source = load_for_push(args["checkpoint"], args["task_set"], args["model_size"])
    results, meta = read_results(args["results"]) if args["results"] else (None, None)
    card = {
        "repo_id": repo_id,
        "results": results,
        "results_meta": meta,
        "datasets": args["datasets"],
    }
    out = args["out"] or (DEFAULT_DRY_RUN_ROOT / repo_id.replace("/", "--") if dry_run else None)
    with tempfile.TemporaryDirectory(prefix="mt_factored-push-") as tmp:
        folder = write_fresh(source, Path(out) if out else Path(tmp) / "model", card)
        operations = commit_operations(folder)
        print(f"{source.kind} from {args['checkpoint']} -> {folder}")
        print(describe_operations(operations))
        target = f"{repo_url(repo_id, revision)} (revision {revision or 'main'})"
        if dry_run:
            print(f"dry run: one commit of {len(operations)} files to {target}; nothing uploaded")
            return 0
        message = args["message"] or f"Upload {source.kind} with mt_factored {__version__}"
        try:
            commit = push_operations(  # the very operations listed above
                operations,
                repo_id,
                private=args["private"],
                revision=revision,
                commit_message=message,
            )
        except (OSError, ValueError) as err:
            raise PushError(
                f"upload to {target} failed: {err}\nNothing was published: the files go in one "
                "commit, so the repo's files are as they were (a new repo may exist, empty)."
            ) from err
    print(f"published {len(operations)} files: {commit.commit_url}")
    print(f"model page: {repo_url(repo_id, revision)}")
    return 0
