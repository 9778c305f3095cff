"""Train a single-task TD-MPC2 expert online.

    python -m mt_factored.train_expert task=cartpole-balance model_size=cpu
    python -m mt_factored.train_expert task=walker-stand model_size=5 steps=500000 device=cuda

Writes `<run_dir>/` (default `runs/expert/<task>-<size>-s<seed>`): `expert.pt` (public
TD-MPC2 layout, loads with `TDMPC2Expert.from_checkpoint` /
`load_single_task_expert`), `state.pt` (everything needed to resume), `train.csv` and
`eval.csv` (step, episode, return, ...), `data/chunk_<k>.pt` (every training episode,
public chunk format), `config.yaml`. Re-running the same command resumes exactly.
Every setting and its meaning: `python -m mt_factored.train_expert --help`
(mt_factored.online.config.ExpertTrainConfig).
"""

from __future__ import annotations

import json
import logging
import sys

from omegaconf import DictConfig

from mt_factored import cli
from mt_factored.online.trainer import OnlineTrainer

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Builds the trainer for a composed `expert_train` config and trains."""
    return OnlineTrainer(cfg).train()


def report(cfg: DictConfig) -> dict:
    """Train, then log and print the summary (one JSON line)."""
    summary = run(cfg)
    log.info("summary: %s", json.dumps(summary))
    print(json.dumps(summary))
    return summary


def main() -> int:
    return cli.main("mt_factored.train_expert", "expert_train", report, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
