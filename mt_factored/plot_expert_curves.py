"""Plot return vs agent steps of online expert runs (docs/expert_curves.png).

    python -m mt_factored.plot_expert_curves                                  # shipped quickstart logs
    python -m mt_factored.plot_expert_curves "runs=[runs/expert/cartpole-balance-cpu-s1]" out=/tmp/curves.png

Each run folder holds ``train.csv``, ``eval.csv`` and ``config.yaml``; one panel per task:
training-episode returns, evaluation returns (mean ± std) and, dashed, uniform random actions.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from mt_factored import cli
from mt_factored.analysis.expert_curves import run_curves
from mt_factored.artifacts.configs import as_object


def run(cfg: DictConfig) -> Path:
    path = run_curves(as_object(cfg))
    print(path)
    return path


def main() -> int:
    return cli.main("mt_factored.plot_expert_curves", "plot_expert_curves", run, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
