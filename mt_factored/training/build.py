"""Build the pieces of a distillation run from a composed Hydra config.

Every number comes from the recipe; this module only wires objects together and
turns missing inputs into errors that say what to run.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from mt_factored.constants import LAST_CKPT_NAME
from mt_factored.data import WindowDataModule
from mt_factored.expert.interface import Expert
from mt_factored.expert.resolve import load_expert
from mt_factored.planning.base import MPPIConfig
from mt_factored.planning.report import comparison_table
from mt_factored.student import StudentConfig
from mt_factored.tasks import TaskSet, get_task_set
from mt_factored.training.callbacks import PlanningEvalCallback
from mt_factored.training.module import DistillModule

log = logging.getLogger(__name__)


class DatasetNotFoundError(FileNotFoundError):
    """The recipe's ``data`` does not exist."""


def to_container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def build_task_set(cfg: DictConfig) -> tuple[TaskSet, list[str]]:
    """The model's task set and the names of the tasks trained on."""
    task_set = get_task_set(cfg.task_set)
    tasks = list(cfg.tasks) if cfg.tasks else list(task_set.names)
    for name in tasks:
        task_set.index(name)  # raises with close matches for typos
    return task_set, tasks


def build_expert(cfg: DictConfig) -> Expert:
    return load_expert(
        to_container(cfg.expert), task_set=cfg.task_set, model_size=cfg.expert_model_size
    )


def resolve_data_source(data: Any, task_set: str) -> Any:
    """Check the recipe's ``data`` exists and return it in the data module's form."""
    sources = [data] if isinstance(data, str) else list(data)
    missing = [s for s in sources if not Path(s).exists()]
    if missing:
        raise DatasetNotFoundError(
            f"dataset {', '.join(map(str, missing))} not found. Prepare the public data with "
            f"`python -m mt_factored.data prepare source=hub task_set={task_set} out={sources[0]}` "
            "(downloads nicklashansen/tdmpc2 (dataset repo) mt30/chunk_*.pt into the HF cache), or "
            "point data= at a dir of official chunk_*.pt files."
        )
    return data if isinstance(data, str) else sources


def build_datamodule(cfg: DictConfig, task_set: TaskSet, tasks: list[str]) -> WindowDataModule:
    loader = cfg.loader
    task_ids = None if len(tasks) == len(task_set) else [task_set.index(t) for t in tasks]
    weights = to_container(loader.task_weights)
    if weights is not None:
        weights = {task_set.index(name): float(w) for name, w in weights.items()}
    return WindowDataModule(
        resolve_data_source(to_container(cfg.data), cfg.task_set),
        batch_size=loader.batch_size,
        horizon=loader.horizon,
        seed=cfg.seed,
        num_workers=loader.num_workers,
        task_weights=weights,
        task_ids=task_ids,
    )


def build_student_config(cfg: DictConfig, task_set: TaskSet) -> StudentConfig:
    return StudentConfig.for_task_set(task_set, **to_container(cfg.student))


def build_module(cfg: DictConfig, task_set: TaskSet, expert: Expert | None) -> DistillModule:
    return DistillModule(
        student=dataclasses.asdict(build_student_config(cfg, task_set)),
        distill=to_container(cfg.distill),
        optim=to_container(cfg.optim),
        seed=cfg.seed,
        expert=expert,
    )


def build_loggers(cfg: DictConfig, run_dir: Path) -> list:
    from lightning.pytorch import loggers

    out = []
    if cfg.logger.csv:
        # A new version_N folder per (re)start: Lightning's CSV writer deletes an existing
        # metrics.csv when it opens its folder, which would lose the rows before a resume.
        out.append(loggers.CSVLogger(run_dir / "logs", name="csv"))
    if cfg.logger.tensorboard:
        out.append(loggers.TensorBoardLogger(run_dir / "logs", name="tensorboard", version=""))
    if cfg.logger.wandb:
        wandb_cfg = to_container(cfg.logger.wandb)
        out.append(
            loggers.WandbLogger(
                name=cfg.name, save_dir=str(run_dir / "logs"), config=to_container(cfg), **wandb_cfg
            )
        )
    return out


def student_planning_config(cfg: DictConfig) -> MPPIConfig | None:
    """The student's MPPI settings: ``planning`` with ``eval.student_planning`` on top (None
    when that is empty: the student plans like the expert)."""
    overrides = to_container(cfg.eval.get("student_planning")) or {}
    if not overrides:
        return None
    return MPPIConfig(**{**to_container(cfg.planning), **overrides})


def build_eval_callback(
    cfg: DictConfig, task_set: TaskSet, tasks: list[str]
) -> PlanningEvalCallback:
    eval_tasks = list(cfg.eval.tasks) if cfg.eval.tasks else tasks
    return PlanningEvalCallback(
        tasks=eval_tasks,
        task_ids=[task_set.index(t) for t in eval_tasks],
        obs_dim=task_set.max_obs_dim,
        planning=MPPIConfig(**to_container(cfg.planning)),
        student_planning=student_planning_config(cfg),
        every_n_steps=cfg.eval.every_n_steps,
        at_end=cfg.eval.at_end,
        episodes=cfg.eval.episodes,
        max_steps=cfg.eval.max_steps,
        compare_expert=cfg.eval.compare_expert,
        seed=cfg.eval.seed,
        latency_repeats=cfg.eval.latency_repeats,
    )


def build_trainer(cfg: DictConfig, run_dir: Path, callbacks: list) -> L.Trainer:
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="step{step:08d}",
        auto_insert_metric_name=False,
        every_n_train_steps=cfg.checkpoint.every_n_steps,
        save_top_k=-1 if cfg.checkpoint.get("keep_all", False) else 1,
        save_last=True,
    )
    return L.Trainer(
        default_root_dir=run_dir,
        logger=build_loggers(cfg, run_dir) or False,
        callbacks=[checkpoint, *callbacks],
        **to_container(cfg.trainer),
    )


def resolve_resume(cfg: DictConfig, run_dir: Path) -> str | None:
    """Checkpoint to resume from: ``resume=auto`` picks ``<run_dir>/checkpoints/last.ckpt``."""
    resume = cfg.resume
    if resume in (None, "never", False):
        return None
    if resume == "auto":
        last = run_dir / "checkpoints" / LAST_CKPT_NAME
        return str(last) if last.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"resume={resume}: no such checkpoint (use resume=auto or never)")
    return str(path)


def fit_and_report(
    cfg: DictConfig,
    run_dir: Path,
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    evaluator: PlanningEvalCallback,
) -> dict:
    """Fit (resuming as ``cfg.resume`` says), evaluate at the end, print the comparison table.

    Returns:
        ``{"student": ..., "expert": ...}``: the last evaluation results.
    """
    trainer = build_trainer(cfg, run_dir, callbacks=[evaluator])
    ckpt_path = resolve_resume(cfg, run_dir)
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
