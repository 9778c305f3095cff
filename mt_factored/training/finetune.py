"""Finetune a pretrained student to tasks (and embodiments) it never saw.

    python -m mt_factored.finetune recipe=finetune-quadruped pretrained=<folder | Hub id | .ckpt>
    python -m mt_factored.finetune recipe=finetune-quadruped from_scratch=true run_dir=...

Load the student -> extend it to the recipe's tasks (:func:`mt_factored.student.extend.
extend_student`: new task rows, more joint rows, a wider encoder input, old outputs
unchanged) -> optionally freeze the shared per-joint networks -> distill the new tasks'
expert on its data with the same module, data stream, trainer and evaluation as
``mt_factored.train`` -> print the evaluation table. ``from_scratch=true`` trains the same
extended architecture from fresh weights on the same data and steps (the baseline).

Task ids: the recipe's ``task_set`` is the set the data and expert were recorded in
(e.g. ``dmc_extra``: ``python -m mt_factored.train_expert ... record.task_set=dmc_extra``);
the student numbers its tasks its own way (pretrained tasks first, then the new ones).
Batches are translated from the first to the second before they reach the module
(:class:`BatchAdapter`); the expert and the evaluation use the student's ids.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from mt_factored.artifacts import ArtifactNotFoundError
from mt_factored.artifacts.configs import as_object
from mt_factored.constants import ACTION, OBS, TASK
from mt_factored.errors import InputError
from mt_factored.expert.resolve import load_expert
from mt_factored.student import FactoredStudent, StudentConfig, load_student
from mt_factored.student.extend import extend_student, freeze_shared, trainable_parameters
from mt_factored.tasks import TaskSet, get_task
from mt_factored.training import build
from mt_factored.training.config import FinetuneConfig
from mt_factored.training.module import DistillModule

log = logging.getLogger(__name__)

# FinetuneModule's batch hook is meant to take precedence over the data module's (a no-op).
warnings.filterwarnings("ignore", message=".*overridden `on_before_batch_transfer`.*")


# ----------------------------------------------------------------------------- pieces
def load_pretrained(source: str | Path) -> FactoredStudent:
    """The student to start from (:func:`mt_factored.student.load_student`: a folder, a Hub id
    or a Lightning ``.ckpt``); errors name the ``pretrained=`` argument."""
    try:
        return load_student(source)
    except ArtifactNotFoundError as err:
        raise ArtifactNotFoundError(f"pretrained={source}: {err}") from err


def student_task_set(config: StudentConfig) -> TaskSet:
    """The student's tasks as a :class:`TaskSet` (ids = the student's task ids)."""
    return TaskSet("student", tuple(get_task(name) for name in config.task_names))


def prepare_student(
    cfg: FinetuneConfig, new_tasks: list[str]
) -> tuple[FactoredStudent, StudentConfig]:
    """The student to train and the config of what was pretrained (for freezing).

    Pretrained (or, with ``pretrained=null``, a fresh student over ``base_task_set`` with the
    ``student`` sizes) -> extended to the tasks it lacks -> fresh weights if from scratch.
    """
    if cfg.pretrained:
        base = load_pretrained(cfg.pretrained)
    else:
        base = FactoredStudent(cfg.student.build(cfg.base_task_set))
    missing = [t for t in new_tasks if t not in base.config.task_names]
    student = base
    if missing:
        gen = torch.Generator().manual_seed(int(cfg.seed))
        student = extend_student(base, missing, init_from=cfg.init_from, generator=gen)
    if cfg.from_scratch or not cfg.pretrained:
        student = FactoredStudent(student.config)  # the same architecture, fresh weights
    return student, base.config


class BatchAdapter:
    """Translates data batches into the student's task ids and sizes (on the host).

    Args:
        data_set: the task set the data was recorded in (its task ids).
        config: the student's config: task ids by name, ``obs_dim``, ``action_dim``.
    """

    def __init__(self, data_set: TaskSet, config: StudentConfig) -> None:
        ids = {name: i for i, name in enumerate(config.task_names)}
        self.task_map = torch.tensor([ids.get(name, -1) for name in data_set.names])
        self.data_names = data_set.names
        self.obs_dim, self.action_dim = config.obs_dim, config.action_dim

    @staticmethod
    def _width(x: torch.Tensor, width: int) -> torch.Tensor:
        # Entries beyond a task's own size are zero padding, so cutting them loses nothing.
        return F.pad(x, (0, width - x.shape[-1])) if x.shape[-1] < width else x[..., :width]

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        task = self.task_map[batch[TASK].long()]
        if (task < 0).any():
            bad = sorted({self.data_names[i] for i in batch[TASK][task < 0].tolist()})
            raise InputError(f"the data holds tasks the student does not have: {bad}")
        return {
            **batch,
            TASK: task,
            OBS: self._width(batch[OBS], self.obs_dim),
            ACTION: self._width(batch[ACTION], self.action_dim),
        }


class FinetuneModule(DistillModule):
    """:class:`DistillModule` whose batches pass through a :class:`BatchAdapter` first.

    Same constructor, hyperparameters and checkpoint as :class:`DistillModule`, so a
    finetuned ``last.ckpt`` loads with ``DistillModule.load_from_checkpoint`` (and
    ``mt_factored.evaluate student=...``).
    """

    adapter: BatchAdapter | None = None

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch if self.adapter is None else self.adapter(batch)


def expert_spec(expert: Any, tasks: list[str]) -> Mapping[str, str]:
    """``{task: checkpoint}``; a single path is accepted for a single task."""
    if isinstance(expert, str):
        if len(tasks) != 1:
            raise InputError(
                f"expert={expert!r} is one checkpoint for {len(tasks)} tasks; give "
                "expert={task: checkpoint, ...} (one single-task expert per task)"
            )
        return {tasks[0]: expert}
    return expert


# ----------------------------------------------------------------------------- run
def run_finetune(cfg: DictConfig | FinetuneConfig) -> dict:
    """Finetune as ``cfg`` says; returns the last evaluation results (student, expert)."""
    cfg = as_object(cfg)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    L.seed_everything(cfg.seed, workers=True)
    run_dir = Path(cfg.run_dir)
    data_set, tasks = build.build_task_set(cfg)  # ids of the data; unknown names fail here
    student, pretrained = prepare_student(cfg, tasks)
    task_set = student_task_set(student.config)
    if student.config.obs_dim != task_set.max_obs_dim:
        raise InputError(
            f"the student reads {student.config.obs_dim} observation entries but its widest "
            f"task has {task_set.max_obs_dim}; evaluation pads observations to the latter"
        )
    expert = load_expert(
        expert_spec(cfg.expert, tasks), task_set=task_set, trust_pickle=cfg.trust_pickle
    )
    datamodule = build.build_datamodule(cfg, data_set, tasks)
    module = FinetuneModule(
        student=student.config.to_dict(),
        distill=cfg.distill.to_dict(),
        optim=dataclasses.asdict(cfg.optim),
        seed=cfg.seed,
        expert=expert,
    )
    module.student.load_state_dict(student.state_dict())
    module.adapter = BatchAdapter(data_set, student.config)
    if cfg.freeze_shared:
        if cfg.from_scratch or not cfg.pretrained:
            log.warning("freeze_shared ignored: a student trained from scratch has nothing to keep")
        elif float(cfg.optim.weight_decay):
            raise InputError(
                "freeze_shared with optim.weight_decay > 0 would still decay the frozen "
                "embedding rows; set optim.weight_decay=0"
            )
        else:
            freeze_shared(module.student, pretrained)
    log.info(
        "student: %d tasks (%s new), %d agents, obs %d; %d of %d parameters train",
        student.config.num_tasks,
        ", ".join(t for t in tasks if t not in pretrained.task_names) or "none",
        student.num_agents,
        student.config.obs_dim,
        trainable_parameters(module.student),
        sum(p.numel() for p in module.student.parameters()),
    )
    evaluator = build.build_eval_callback(cfg, task_set, tasks)
    return build.fit_and_report(cfg, run_dir, module, datamodule, evaluator)
