"""Planning fidelity of a student: does its MPPI pick what the expert's would, in the expert's eyes?

    python -m mt_factored.fidelity student=runs/quickstart/checkpoints/last.ckpt \\
        "expert={cartpole-balance: checkpoints/quickstart/cartpole-balance.pt}" \\
        data=data/quickstart tasks=[cartpole-balance]

Prints per task and source of states (the data, the student's own episodes): the normalised
regret of the student's plans under the expert's H-step return (0: as good as the expert's
plans, 1: no better than random sequences), the same for the first action through the
expert's Q, and the rank agreement of the two models' returns of planner-like candidates,
jointly and one agent at a time. Settings: ``--help``; the method:
:mod:`mt_factored.planning.fidelity`.
"""

from __future__ import annotations

import sys

import torch
from omegaconf import DictConfig

from mt_factored import cli
from mt_factored.analysis.fidelity import run_fidelity
from mt_factored.artifacts.configs import as_object


def run(cfg: DictConfig) -> dict:
    cfg = as_object(cfg)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    return run_fidelity(cfg)


def main() -> int:
    return cli.main("mt_factored.fidelity", "fidelity", run, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
