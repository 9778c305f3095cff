"""The ``python -m mt_factored.finetune`` command: finetune a pretrained student to new tasks.

The work and its description (shown by ``--help``): :mod:`mt_factored.training.finetune`.
With ``publish.dir=`` the finetuned student is written as a Hub model folder, as by ``train``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from mt_factored import cli
from mt_factored.artifacts.configs import as_object
from mt_factored.train import publish
from mt_factored.training import finetune
from mt_factored.training.finetune import run_finetune


def run(cfg: DictConfig) -> dict:
    """Finetune as ``cfg`` says; returns the last evaluation results (student, expert)."""
    start = time.perf_counter()
    cfg = as_object(cfg)
    results = run_finetune(cfg)
    if cfg.publish.dir and rank_zero_only.rank == 0:
        publish(cfg, Path(cfg.run_dir), results, time.perf_counter() - start)
    return results


def main() -> int:
    return cli.main("mt_factored.finetune", "finetune", run, doc=finetune.__doc__)


if __name__ == "__main__":
    sys.exit(main())
