"""Interpretability plots of a factored student (Fac-TDMPC Sec. 5.6).

    python -m mt_factored.viz student=runs/quickstart/checkpoints/last.ckpt \\
        "tasks=[cartpole-balance,reacher-easy,cup-catch,walker-stand]" out=docs \\
        "expert={walker-stand: checkpoints/quickstart/walker-stand.pt}"

Writes ``tsne_joints.png``, ``tsne_embodiments.png`` and ``returns_<task>.png`` to ``out``
(what each shows: :mod:`mt_factored.analysis.viz`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from mt_factored import cli
from mt_factored.analysis.viz import run_viz
from mt_factored.artifacts.configs import as_object


def run(cfg: DictConfig) -> dict[str, Path]:
    """Record the student's episodes and write the plots; returns ``{plot: path}``."""
    return run_viz(as_object(cfg))


def main() -> int:
    return cli.main("mt_factored.viz", "viz", run, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
