"""``python -m mt_factored.hub push`` / ``push-dataset``: publish a student, an expert or a dataset
on the Hugging Face Hub.

    python -m mt_factored.hub push checkpoint=runs/dmcontrol30/checkpoints/last.ckpt \\
        repo_id=ORG/NAME results=results.json --dry-run          # -> runs/hub/ORG--NAME/
    python -m mt_factored.hub push checkpoint=... repo_id=ORG/NAME [private=true] [revision=v1]
    python -m mt_factored.hub push-dataset folder=runs/mt30-parquet repo_id=ORG/NAME --dry-run

Arguments are Hydra's ``key=value`` (``--dry-run`` stands for ``dry_run=true``);
``python -m mt_factored.hub push --help`` lists every key, its default and what it means.
The upload is ONE commit of every file of the folder: it lands whole or not at all.
Authentication: HF_TOKEN or `hf auth login`.
"""

from __future__ import annotations

import sys

from mt_factored import cli
from mt_factored.artifacts.configs import as_object
from mt_factored.hub.push import PushConfig, push
from mt_factored.hub.push_dataset import PushDatasetConfig, push_dataset

COMMANDS = {
    "push": cli.Subcommand(
        "hub_push",
        lambda cfg: push(as_object(cfg)),
        PushConfig.__doc__,
        flags={"--dry-run": "dry_run=true"},
    ),
    "push-dataset": cli.Subcommand(
        "hub_push_dataset",
        lambda cfg: push_dataset(as_object(cfg)),
        PushDatasetConfig.__doc__,
        positional="folder",
        flags={"--dry-run": "dry_run=true"},
    ),
}


def main(argv: list[str] | None = None) -> int:
    return cli.main_with_subcommands("mt_factored.hub", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
