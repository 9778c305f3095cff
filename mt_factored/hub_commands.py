"""``python -m mt_factored.hub push``: publish a student or an expert on the Hugging Face Hub.

    python -m mt_factored.hub push checkpoint=runs/dmcontrol30/checkpoints/last.ckpt \\
        repo_id=ORG/NAME results=results.json --dry-run          # -> runs/hub/ORG--NAME/
    python -m mt_factored.hub push checkpoint=... repo_id=ORG/NAME [private=true] [revision=v1]

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

COMMANDS = {
    "push": cli.Subcommand(
        "hub_push",
        lambda cfg: push(as_object(cfg)),
        PushConfig.__doc__,
        flags={"--dry-run": "dry_run=true"},
    )
}


def main(argv: list[str] | None = None) -> int:
    return cli.main_with_subcommands("mt_factored.hub", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
