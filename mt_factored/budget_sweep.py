"""The ``python -m mt_factored.budget_sweep`` command: return and latency over planning budgets.

The work and its description (shown by ``--help``): :mod:`mt_factored.analysis.budget.sweep`.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from mt_factored import cli
from mt_factored.analysis.budget import sweep
from mt_factored.analysis.budget.results import SweepFile
from mt_factored.analysis.budget.sweep import run_sweep
from mt_factored.artifacts.configs import as_object


def run(cfg: DictConfig) -> SweepFile:
    """Run the missing cells of the sweep, then write the selection, tables and plots."""
    return run_sweep(as_object(cfg))


def main() -> int:
    return cli.main("mt_factored.budget_sweep", "budget_sweep", run, doc=sweep.__doc__)


if __name__ == "__main__":
    sys.exit(main())
