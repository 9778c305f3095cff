"""Train a single-task TD-MPC2 expert online.

    python -m mt_factored.train_expert task=cartpole-balance model_size=cpu
    python -m mt_factored.train_expert task=walker-stand model_size=5 steps=500000 device=cuda

Writes `<run_dir>/` (default `runs/expert/<task>-<size>-s<seed>`): `expert.pt` (public
TD-MPC2 layout, loads with `TDMPC2Expert.from_checkpoint` /
`load_single_task_expert`), `state.pt` (everything needed to resume), `train.csv` and
`eval.csv` (step, episode, return, ...), `data/chunk_<k>.pt` (every training episode,
public chunk format), `config.yaml`. Re-running the same command resumes exactly.
See recipes/expert_train.yaml for every setting.
"""

from __future__ import annotations

import json
import logging

import hydra
from omegaconf import DictConfig

from mt_factored.constants import RECIPES_DIR
from mt_factored.online.trainer import OnlineTrainer

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    """Builds the trainer for a composed `expert_train` config and trains."""
    return OnlineTrainer(cfg).train()


@hydra.main(version_base="1.3", config_path=str(RECIPES_DIR), config_name="expert_train")
def main(cfg: DictConfig) -> None:
    summary = run(cfg)
    log.info("summary: %s", json.dumps(summary))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
