"""The ``python -m mt_factored.finetune`` command: finetune a pretrained student to new tasks.

The work and its description (shown by ``--help``): :mod:`mt_factored.training.finetune`.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from mt_factored import cli
from mt_factored.training import finetune
from mt_factored.training.finetune import run_finetune


def run(cfg: DictConfig) -> dict:
    """Finetune as ``cfg`` says; returns the last evaluation results (student, expert)."""
    return run_finetune(cfg)


def main() -> int:
    return cli.main("mt_factored.finetune", "finetune", run, doc=finetune.__doc__)


if __name__ == "__main__":
    sys.exit(main())
