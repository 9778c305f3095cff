"""Distill an expert into the factored student.

    python -m mt_factored.train recipe=dmcontrol30 [expert=... data=... trainer.devices=2 ...]

Compose the recipe -> build expert, data, student -> fit with Lightning -> print the
evaluation table. Re-running the same command resumes from ``<run_dir>/checkpoints/last.ckpt``.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig

from mt_factored.constants import RECIPES_DIR
from mt_factored.training import build


def run(cfg: DictConfig) -> dict:
    """Train as ``cfg`` says; returns the last evaluation results (student, expert)."""
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.run_dir)
    task_set, tasks = build.build_task_set(cfg)
    expert = build.build_expert(cfg)
    datamodule = build.build_datamodule(cfg, task_set, tasks)
    module = build.build_module(cfg, task_set, expert)
    evaluator = build.build_eval_callback(cfg, task_set, tasks)
    return build.fit_and_report(cfg, run_dir, module, datamodule, evaluator)


@hydra.main(version_base="1.3", config_path=str(RECIPES_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
