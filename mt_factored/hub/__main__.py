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
import sys
from typing import Any

from omegaconf import OmegaConf

from mt_factored.hub.push import UsageError, push

USAGE = __doc__
DRY_RUN = "--dry-run"

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
