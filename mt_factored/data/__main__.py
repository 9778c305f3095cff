"""Command line of mt_factored.data (key=value arguments).

usage:
  python -m mt_factored.data prepare source=hub task_set=mt30 out=data/mt30
  python -m mt_factored.data prepare source=/path/to/chunks task_set=mt30 out=data/mt30
  python -m mt_factored.data info data/mt30     (tasks, episodes, transitions, rewards)
  python -m mt_factored.data verify data/mt30   (recompute every shard checksum)
prepare keys: source, out, task_set, shard_episodes, block_episodes, verify, revision,
  cache_dir, progress
"""

from __future__ import annotations

import logging
import sys

from omegaconf import OmegaConf

from mt_factored import data

USAGE = __doc__

COMMANDS = {
    "prepare": {
        "source": "hub",
        "out": "data/mt30",
        "task_set": "mt30",
        "shard_episodes": 50_000,
        "block_episodes": 512,
        "verify": True,
        "revision": None,
        "cache_dir": None,
        "progress": True,
    },
    "info": {"path": None},
    "verify": {"path": None},
}


class UsageError(ValueError):
    """Bad command-line arguments."""


def parse(argv: list[str]) -> tuple[str, dict]:
    """(command, arguments) from `argv`; a bare PATH stands for path=PATH."""
    if not argv or argv[0] not in COMMANDS:
        raise UsageError(f"expected a command in {list(COMMANDS)}, got {argv[:1]}")
    command, rest = argv[0], argv[1:]
    defaults = COMMANDS[command]
    dotlist = [a if "=" in a or "path" not in defaults else f"path={a}" for a in rest]
    try:
        given = OmegaConf.to_container(OmegaConf.from_dotlist(dotlist))
    except Exception as err:  # omegaconf grammar errors
        raise UsageError(f"cannot parse {rest}: {err}") from err
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise UsageError(f"unknown keys for {command}: {unknown}; known keys: {list(defaults)}")
    args = {**defaults, **given}
    missing = [k for k, v in args.items() if v is None and k == "path"]
    if missing:
        raise UsageError(f"{command} needs a PATH")
    return command, args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        command, args = parse(argv)
    except UsageError as err:
        print(f"error: {err}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        if command == "prepare":
            data.prepare(**args)
        elif command == "info":
            print(data.format_summary(data.dataset_summary(args["path"])))
        else:
            ds = data.ShardedDataset(args["path"], verify=True)
            print(
                f"{args['path']}: {ds.num_shards} shards, {ds.num_episodes} episodes, checksums ok"
            )
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
