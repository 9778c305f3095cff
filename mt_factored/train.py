"""Distill an expert into the factored student.

    python -m mt_factored.train recipe=dmcontrol30 [expert=... data=... trainer.devices=2 ...]

Compose the recipe -> build expert, data, student -> fit with Lightning -> print the
evaluation table. Re-running the same command resumes from ``<run_dir>/checkpoints/last.ckpt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig

from mt_factored import cli
from mt_factored.artifacts.configs import as_object
from mt_factored.training import build
from mt_factored.training.config import TrainConfig


def run(cfg: DictConfig | TrainConfig) -> dict:
    """Train as ``cfg`` says; returns the last evaluation results (student, expert)."""
    cfg = as_object(cfg)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.run_dir)
    task_set, tasks = build.build_task_set(cfg)
    expert = build.build_expert(cfg)
    datamodule = build.build_datamodule(cfg, task_set, tasks)
    module = build.build_module(cfg, task_set, expert)
    evaluator = build.build_eval_callback(cfg, task_set, tasks)
    fidelity = build.build_fidelity_callback(cfg, task_set, tasks)
    extra = [fidelity] if fidelity is not None else []
    return build.fit_and_report(cfg, run_dir, module, datamodule, evaluator, extra)


def main() -> int:
    return cli.main("mt_factored.train", "train", run, doc=__doc__)


if __name__ == "__main__":
    sys.exit(main())
