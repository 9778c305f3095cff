"""Planning-budget sweep (Fac-TDMPC Fig. 7): return and latency over MPPI samples x iterations.

    python -m mt_factored.budget_sweep students=runs/quickstart/checkpoints/last.ckpt \
        "expert={cartpole-balance: checkpoints/quickstart/cartpole-balance.pt}" \
        tasks=[cartpole-balance] episodes=5

Every (model, budget, task) cell runs ``episodes`` episodes with its own freshly
seeded planner and times single-env planning calls. The results JSON is rewritten
after each cell; re-running with the same ``out=`` skips the finished cells. At the
end it prints a table per model and the smallest budget that keeps
``keep_fraction`` of each model's return at the reference budget (512 x 6), and
draws the plots (see :mod:`mt_factored.analysis.budget.plots`).
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from mt_factored import cli
from mt_factored.analysis.budget.results import SweepFile
from mt_factored.analysis.budget.sweep import run_sweep
from mt_factored.artifacts.configs import as_object


def run(cfg: DictConfig) -> SweepFile:
    """Run the missing cells of the sweep, then write the selection, tables and plots."""
    return run_sweep(as_object(cfg))


def main() -> int:
    return cli.main("mt_factored.budget_sweep", "budget_sweep", run, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
