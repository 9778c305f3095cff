"""Build the pieces of a distillation run from its typed config (:class:`TrainConfig`).

Every number comes from the recipe; this module only wires objects together and
turns missing inputs into errors that say what to run. The order of the builders is the
order of the run (it fixes what torch's seeded RNG draws first): task set, expert, data,
module, evaluation callback, trainer.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch import loggers
from lightning.pytorch.callbacks import ModelCheckpoint

from mt_factored.artifacts.configs import overrides, plain
from mt_factored.data import WindowDataModule
from mt_factored.data.parquet_store import HUB_PREFIX as HUB_DATASET_PREFIX
from mt_factored.data.store import EpisodeStore
from mt_factored.data.stream import open_store
from mt_factored.errors import InputError, MissingError
from mt_factored.expert.interface import Expert
from mt_factored.expert.resolve import load_expert, resolve_checkpoint_path
from mt_factored.planning.base import MPPIConfig, with_overrides
from mt_factored.planning.expert_cache import ExpertResultCache
from mt_factored.planning.fidelity import format_table as fidelity_table
from mt_factored.planning.report import comparison_table
from mt_factored.student import StudentConfig
from mt_factored.tasks import TaskSet, get_task_set
from mt_factored.training.callbacks import FidelityCallback, PlanningEvalCallback
from mt_factored.training.checkpoints import AtomicCheckpointIO, RunRecord
from mt_factored.training.config import TrainConfig
from mt_factored.training.module import DistillModule
from mt_factored.training.profile import StepProfile
from mt_factored.training.resume import CHECKPOINT_DIR, resolve_resume, run_folder, run_record

log = logging.getLogger(__name__)


class DatasetNotFoundError(MissingError):
    """The recipe's ``data`` does not exist."""


def build_task_set(cfg: TrainConfig) -> tuple[TaskSet, list[str]]:
    """The model's task set and the names of the tasks trained on."""
    task_set = get_task_set(cfg.task_set)
    tasks = list(cfg.tasks) if cfg.tasks else list(task_set.names)
    for name in tasks:
        task_set.index(name)  # raises with close matches for typos
    return task_set, tasks


def build_expert(cfg: TrainConfig) -> Expert:
    return load_expert(
        cfg.expert,
        task_set=cfg.task_set,
        model_size=cfg.expert_model_size,
        trust_pickle=cfg.trust_pickle,
    )


def resolve_data_source(data: Any, task_set: str) -> Any:
    """Check the recipe's ``data`` exists and return it in the data module's form
    (``hf:ORG/NAME[@revision]``, a Hub dataset repo, is resolved by the data module)."""
    if isinstance(data, str) and data.startswith(HUB_DATASET_PREFIX):
        return data
    sources = [data] if isinstance(data, str) else list(data)
    missing = [s for s in sources if not Path(s).exists()]
    if missing:
        raise DatasetNotFoundError(
            f"dataset {', '.join(map(str, missing))} not found",
            f"prepare the public data with `python -m mt_factored.data prepare source=hub "
            f"task_set={task_set} out={sources[0]}` (downloads nicklashansen/tdmpc2 (dataset "
            "repo) mt30/chunk_*.pt into the HF cache), or point data= at a dir of official "
            "chunk_*.pt files, a Parquet dataset folder or hf:ORG/NAME",
        )
    return data if isinstance(data, str) else sources


def require_tasks_in_data(store: EpisodeStore, task_set: TaskSet, tasks: list[str], data) -> None:
    """Refuse, by name, training tasks the data holds no episode of."""
    present = set(np.unique(store.episode_tasks).tolist())
    missing = [t for t in tasks if task_set.index(t) not in present]
    if missing:
        held = [task_set.names[i] if i < len(task_set) else f"id {i}" for i in sorted(present)]
        raise InputError(
            f"the data {data} holds no episode of {', '.join(missing)} (it holds: "
            f"{', '.join(held)})",
            "drop them from tasks= (e.g. tasks=[" + ",".join(held[:3]) + "]) or point data= at "
            "data recorded for them",
        )


def require_expert_covers(expert: Expert, tasks: list[str]) -> None:
    """Refuse, by name, training tasks a per-task expert has no checkpoint for."""
    covered = getattr(expert, "tasks", None)
    missing = [t for t in tasks if covered is not None and t not in covered]
    if missing:
        raise InputError(
            f"the expert has no checkpoint for {', '.join(missing)} (it covers: "
            f"{', '.join(covered)})",
            "add them to expert={task: checkpoint, ...} or drop them from tasks=",
        )


def build_datamodule(cfg: TrainConfig, task_set: TaskSet, tasks: list[str]) -> WindowDataModule:
    loader = cfg.loader
    task_ids = None if len(tasks) == len(task_set) else [task_set.index(t) for t in tasks]
    weights = None
    if loader.task_weights:
        weights = {task_set.index(name): float(w) for name, w in loader.task_weights.items()}
    store = open_store(resolve_data_source(cfg.data, cfg.task_set))
    require_tasks_in_data(store, task_set, tasks if task_ids else [], cfg.data)
    if weights:
        require_tasks_in_data(store, task_set, list(loader.task_weights), cfg.data)
    return WindowDataModule(
        store,
        batch_size=loader.batch_size,
        horizon=loader.horizon,
        seed=cfg.seed,
        num_workers=loader.num_workers,
        task_weights=weights,
        task_ids=task_ids,
    )


def build_student_config(cfg: TrainConfig, task_set: TaskSet) -> StudentConfig:
    return cfg.student.build(task_set)


def build_module(cfg: TrainConfig, task_set: TaskSet, expert: Expert | None) -> DistillModule:
    if expert is not None:
        require_expert_covers(expert, list(cfg.tasks) if cfg.tasks else list(task_set.names))
    kwargs = {}
    if cfg.closed_loop.enabled:
        tasks = list(cfg.tasks) if cfg.tasks else list(task_set.names)
        kwargs = dict(
            closed_loop=plain(cfg.closed_loop),
            closed_loop_tasks={t: task_set.index(t) for t in tasks},
            # The student collects as it is evaluated (eval.student_planning on top of
            # planning, then closed_loop.planning): the states it visits are the ones judged.
            planning=dataclasses.asdict(student_planning_config(cfg) or cfg.planning),
            expert_planning=dataclasses.asdict(cfg.planning),
            horizon=cfg.loader.horizon,
        )
    return DistillModule(
        student=build_student_config(cfg, task_set).to_dict(),
        distill=cfg.distill.to_dict(),
        optim=dataclasses.asdict(cfg.optim),
        seed=cfg.seed,
        expert=expert,
        compile=cfg.compile,
        **kwargs,
    )


def build_loggers(cfg: TrainConfig, run_dir: Path) -> list:
    out = []
    if cfg.logger.csv:
        # A new version_N folder per (re)start: Lightning's CSV writer deletes an existing
        # metrics.csv when it opens its folder, which would lose the rows before a resume.
        out.append(loggers.CSVLogger(run_dir / "logs", name="csv"))
    if cfg.logger.tensorboard:
        out.append(loggers.TensorBoardLogger(run_dir / "logs", name="tensorboard", version=""))
    if cfg.logger.wandb is not None:
        out.append(
            loggers.WandbLogger(
                name=cfg.name,
                save_dir=str(run_dir / "logs"),
                config=plain(cfg),
                **dataclasses.asdict(cfg.logger.wandb),
            )
        )
    return out


def student_planning_config(cfg: TrainConfig) -> MPPIConfig | None:
    """The student's MPPI settings: ``planning`` with ``eval.student_planning`` on top (None
    when that sets nothing: the student plans like the expert)."""
    if not overrides(cfg.eval.student_planning):
        return None
    return with_overrides(cfg.planning, cfg.eval.student_planning)


def build_eval_callback(
    cfg: TrainConfig, task_set: TaskSet, tasks: list[str]
) -> PlanningEvalCallback:
    eval_tasks = list(cfg.eval.tasks) if cfg.eval.tasks else tasks
    cache, checkpoints = None, {}
    if cfg.eval.expert_cache and cfg.eval.compare_expert:
        cache = ExpertResultCache(cfg.eval.expert_cache, refresh=cfg.eval.refresh_expert_cache)
        checkpoints = expert_checkpoints(cfg.expert, eval_tasks)
    return PlanningEvalCallback(
        tasks=eval_tasks,
        task_ids=[task_set.index(t) for t in eval_tasks],
        obs_dim=task_set.max_obs_dim,
        planning=cfg.planning,
        evaluation=cfg.eval,
        student_planning=student_planning_config(cfg),
        expert_checkpoints=checkpoints,
        expert_cache=cache,
    )


def expert_checkpoints(expert: Any, tasks: list[str]) -> dict[str, str]:
    """The local checkpoint file behind each task's expert (what the result cache hashes)."""
    if isinstance(expert, Mapping):
        return {t: str(resolve_checkpoint_path(str(expert[t]))) for t in tasks if t in expert}
    path = str(resolve_checkpoint_path(str(expert)))
    return {t: path for t in tasks}


def build_fidelity_callback(
    cfg: TrainConfig, task_set: TaskSet, tasks: list[str]
) -> FidelityCallback | None:
    """The fidelity metric during training (None when ``eval.fidelity_every_n_steps`` is 0);
    both models plan at the student's budget."""
    if cfg.eval.fidelity_every_n_steps <= 0:
        return None
    eval_tasks = list(cfg.eval.tasks) if cfg.eval.tasks else tasks
    return FidelityCallback(
        tasks=eval_tasks,
        task_ids=[task_set.index(t) for t in eval_tasks],
        obs_dim=task_set.max_obs_dim,
        planning=student_planning_config(cfg) or cfg.planning,
        config=cfg.eval.fidelity,
        every_n_steps=cfg.eval.fidelity_every_n_steps,
        compile=cfg.eval.compile,
    )


def build_trainer(cfg: TrainConfig, run_dir: Path, callbacks: list) -> L.Trainer:
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / CHECKPOINT_DIR,
        filename="step{step:08d}",
        auto_insert_metric_name=False,
        every_n_train_steps=cfg.checkpoint.every_n_steps,
        monitor="step",  # keeps the newest cfg.checkpoint.keep step checkpoints
        mode="max",
        save_top_k=cfg.checkpoint.keep,
        save_last=True,
        enable_version_counter=False,  # one run per folder (its lock): never last-v1.ckpt
    )
    return L.Trainer(
        default_root_dir=run_dir,
        logger=build_loggers(cfg, run_dir) or False,
        callbacks=[checkpoint, *callbacks],
        plugins=[AtomicCheckpointIO()],
        **dataclasses.asdict(cfg.trainer),
    )


def fit_and_report(
    cfg: TrainConfig,
    run_dir: Path,
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    evaluator: PlanningEvalCallback,
    extra_callbacks: Sequence[L.Callback] = (),
) -> dict:
    """Fit (resuming as ``cfg.resume`` says), evaluate at the end, print the comparison table.

    The run owns ``run_dir`` meanwhile (:func:`mt_factored.training.resume.run_folder`: a
    second run on it is refused) and a resume is checked against this command
    (:func:`mt_factored.training.resume.resolve_resume`).

    Returns:
        ``{"student": ..., "expert": ...}``: the last evaluation results.
    """
    record = run_record(cfg)
    with run_folder(run_dir, record):
        ckpt_path = resolve_resume(cfg.resume, run_dir, record, module.hparams)
        # The profile comes first: its step ends before evaluations and checkpoint writes.
        profile = [StepProfile(cfg.profile, module.student.config.num_tasks)] if cfg.profile else []
        callbacks = [*profile, evaluator, *extra_callbacks, RunRecord(record)]
        trainer = build_trainer(cfg, run_dir, callbacks=callbacks)
        if ckpt_path:
            log.info("resuming from %s", ckpt_path)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        if cfg.eval.at_end and not evaluator.last_results:
            # Re-running a finished run restores it at max_steps; Lightning then skips the loop
            # and its on_train_end, so the final evaluation (and table) would be missing.
            evaluator.evaluate_now(trainer, module)
    if trainer.is_global_zero and evaluator.last_results:
        print(comparison_table(evaluator.last_results, evaluator.expert_results))
        for callback in extra_callbacks:
            if isinstance(callback, FidelityCallback) and callback.last_results:
                print(fidelity_table(callback.last_results))
    return {"student": evaluator.last_results, "expert": evaluator.expert_results}
