"""Command line of mt_factored.hub (key=value arguments).

usage:
  python -m mt_factored.hub push checkpoint=PATH repo_id=ORG/NAME [private=true]
      [revision=BRANCH] [results=results.json] [out=FOLDER] [message=TEXT] [--dry-run]

  checkpoint  a Lightning .ckpt of a distillation run (runs/<name>/checkpoints/last.ckpt),
              a saved student or expert folder, a TD-MPC2 .pt or hub:ORG/NAME/file.pt
              (task_set=mt30 and model_size=auto say how to read a .pt)
  results     the JSON of `python -m mt_factored.evaluate ... out=results.json`: fills the
              model card's results table
  private     visibility of a repo created now (default: the account's default)
  revision    branch to commit to (created if missing; default main)
  out         where the folder is written and kept (default: a temporary folder; with
              --dry-run runs/hub/ORG--NAME)
  datasets    Hub datasets for the card's metadata (default [nicklashansen/tdmpc2])
  --dry-run   write the folder and list the files of the commit; upload nothing

The upload is ONE commit of every file of the folder: it lands whole or not at all.
Authentication: HF_TOKEN or `hf auth login`.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

USAGE = __doc__
DRY_RUN = "--dry-run"
DEFAULT_DRY_RUN_ROOT = Path("runs/hub")

PUSH_DEFAULTS: dict[str, Any] = {
    "checkpoint": None,
    "repo_id": None,
    "private": None,
    "revision": None,
    "results": None,
    "out": None,
    "message": None,
    "datasets": None,
    "task_set": "mt30",
    "model_size": "auto",
}


class UsageError(ValueError):
    """Bad command-line arguments."""


class PushError(RuntimeError):
    """The upload failed; nothing was published."""


def parse(argv: list[str]) -> tuple[dict[str, Any], bool]:
    """(arguments, dry_run) of ``push key=value ... [--dry-run]``."""
    if not argv or argv[0] != "push":
        raise UsageError(f"expected the command 'push', got {argv[:1]}")
    rest = [a for a in argv[1:] if a != DRY_RUN]
    bad = [a for a in rest if "=" not in a or a.startswith("-")]
    if bad:
        raise UsageError(f"arguments are key=value (plus {DRY_RUN}); cannot read {bad}")
    try:
        given = OmegaConf.to_container(OmegaConf.from_dotlist(rest))
    except Exception as err:  # omegaconf grammar errors have no common base class
        raise UsageError(f"cannot parse {rest}: {err}") from err
    unknown = sorted(set(given) - set(PUSH_DEFAULTS))
    if unknown:
        raise UsageError(f"unknown keys {unknown}; known keys: {list(PUSH_DEFAULTS)}")
    args = {**PUSH_DEFAULTS, **given}
    for key in ("checkpoint", "repo_id"):
        if args[key] is None:
            raise UsageError(f"push needs {key}=...")
    repo = str(args["repo_id"]).split("/")
    if len(repo) != 2 or not all(repo):
        raise UsageError(f"repo_id must be ORG/NAME, got {args['repo_id']!r}")
    if args["private"] is not None and not isinstance(args["private"], bool):
        raise UsageError(f"private must be true or false, got {args['private']!r}")
    if args["datasets"] is not None:
        if isinstance(args["datasets"], str):
            args["datasets"] = [args["datasets"]]
        if not isinstance(args["datasets"], list) or not all(args["datasets"]):
            raise UsageError(
                f"datasets must be a list of Hub dataset ids, got {args['datasets']!r}"
            )
        args["datasets"] = [str(d) for d in args["datasets"]]
    for key in ("checkpoint", "repo_id", "revision", "results", "out", "message"):
        if args[key] is not None:
            args[key] = str(args[key])
    return args, DRY_RUN in argv[1:]


def _is_model_folder(folder: Path) -> bool:
    from mt_factored.constants import CONFIG_NAME
    from mt_factored.hub.files import MODEL_TYPE_KEY, ArtifactFormatError, read_config

    try:
        return MODEL_TYPE_KEY in read_config(folder / CONFIG_NAME)
    except (OSError, ArtifactFormatError):
        return False


def write_fresh(source: Any, out: Path, card: dict[str, Any]) -> Path:
    """Write the folder beside ``out``, then swap it in: no stale file from an earlier run
    is uploaded, and an existing ``out`` that is not a model folder is never touched."""
    from mt_factored.hub.convert import write_folder

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
    from mt_factored import __version__
    from mt_factored.hub.card import read_results
    from mt_factored.hub.convert import load_for_push
    from mt_factored.hub.upload import (
        commit_operations,
        describe_operations,
        push_operations,
        refuse_offline,
        repo_url,
    )

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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args, dry_run = parse(argv)
    except UsageError as err:
        print(f"error: {err}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        return push(args, dry_run)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
