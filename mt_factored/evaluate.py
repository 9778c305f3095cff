"""Evaluate experts and students in dm_control.

    python -m mt_factored.evaluate "expert={cartpole-balance: checkpoints/quickstart/cartpole-balance.pt}" \
        tasks=[cartpole-balance] episodes=10 video=true

Prints a table per model (mean ± std return, planning ms per step for one env) and,
when both an expert and a student are given, the comparison with the speedup.

Robustness (Fac-TDMPC Sec. 5.5): ``perturb=dummy:*`` (or ``scale:<joint>:<factor>``, a
list of specs; see :mod:`mt_factored.analysis.perturbations`) runs every model unperturbed and
with each perturbation, prints a table, and writes ``robustness.json`` and
``robustness.png`` to ``out_dir`` (the plot also to ``perturb_plot``):

    python -m mt_factored.evaluate "expert={walker-stand: checkpoints/quickstart/walker-stand.pt}" \
        student=runs/quickstart/checkpoints/last.ckpt tasks=[walker-stand] episodes=3 \
        "perturb=[dummy:*,scale:*:0.5]" perturb_plot=docs/robustness_walker-stand.png
"""

from __future__ import annotations

import sys

import torch
from omegaconf import DictConfig

from mt_factored import cli
from mt_factored.analysis.config import EvaluateConfig
from mt_factored.analysis.evaluation import run_evaluation
from mt_factored.analysis.robustness import run_robustness
from mt_factored.artifacts.configs import as_object
from mt_factored.errors import InputError
from mt_factored.tasks import get_task_set


def run(cfg: DictConfig | EvaluateConfig) -> dict:
    """Evaluate; returns ``{model: {task: EpisodeStats}}``, or with ``perturb`` set
    ``{task: {condition: {model: EpisodeStats}}}`` (:func:`run_robustness`)."""
    cfg = as_object(cfg)
    if cfg.expert is None and cfg.student is None:
        raise InputError("nothing to evaluate: pass expert=... and/or student=...")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    task_set = get_task_set(cfg.task_set)
    for task in cfg.tasks:
        task_set.index(task)  # raises with close matches for typos
    if cfg.perturb is not None:
        return run_robustness(cfg)
    return run_evaluation(cfg)


def main() -> int:
    return cli.main("mt_factored.evaluate", "evaluate", run, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
