"""Distill an expert into the factored student.

    python -m mt_factored.train recipe=dmcontrol30 [expert=... data=... trainer.devices=2 ...]

Compose the recipe -> build expert, data, student -> fit with Lightning -> print the
evaluation table. Re-running the same command resumes from ``<run_dir>/checkpoints/last.ckpt``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig

from mt_factored.constants import RECIPES_DIR
from mt_factored.lit import build
from mt_factored.report import comparison_table

log = logging.getLogger(__name__)

# The window stream resumes exactly from the restored global step (see
# mt_factored.data.WindowDataModule), so Lightning's generic warning that a mid-epoch
# resume with a non-stateful dataloader may be unreliable does not apply here.
warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")


def run(cfg: DictConfig) -> dict:
    """Train as ``cfg`` says; returns the last evaluation results (student, expert)."""
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.run_dir)
    task_set, tasks = build.build_task_set(cfg)
    expert = build.build_expert(cfg)
    datamodule = build.build_datamodule(cfg, task_set, tasks)
    module = build.build_module(cfg, task_set, expert)
    evaluator = build.build_eval_callback(cfg, task_set, tasks)
    trainer = build.build_trainer(cfg, run_dir, callbacks=[evaluator])
    ckpt_path = build.resolve_resume(cfg, run_dir)
    if ckpt_path:
        log.info("resuming from %s", ckpt_path)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    if cfg.eval.at_end and not evaluator.last_results:
        # Re-running a finished run restores it at max_steps; Lightning then skips the loop
        # and its on_train_end, so the final evaluation (and table) would be missing.
        evaluator.evaluate_now(trainer, module)
    if trainer.is_global_zero and evaluator.last_results:
        print(comparison_table(evaluator.last_results, evaluator.expert_results))
    return {"student": evaluator.last_results, "expert": evaluator.expert_results}


@hydra.main(version_base="1.3", config_path=str(RECIPES_DIR), config_name="train")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
