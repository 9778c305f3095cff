"""The experts and students an analysis command names, loaded once, with the facts each run needs.

``load_models`` serves evaluation, robustness, the budget sweep and the plots. The expert is
loaded first, then the students: planning models that draw their own seed from torch's global
RNG (``generator=None``) therefore see the same stream whatever the command.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from mt_factored.analysis.config import ModelsConfig
from mt_factored.errors import InputError
from mt_factored.expert.resolve import load_expert
from mt_factored.planning.base import PlanningModel
from mt_factored.planning.expert_adapter import ExpertPlanningModel
from mt_factored.planning.mppi import GeneratorLike
from mt_factored.planning.student_adapter import StudentPlanningModel
from mt_factored.student import FactoredStudent, load_student
from mt_factored.tasks import get_task_set

EXPERT = "expert"
"""Label (and kind) of the expert."""
STUDENT = "student"
"""Kind of a student, and the label of a single unlabelled one."""

PLANNING_MODELS = {EXPERT: ExpertPlanningModel, STUDENT: StudentPlanningModel}
"""How each kind of world model is seen by the planner."""


@dataclass
class LoadedModel:
    """A model under test and the facts a run needs about it."""

    label: str
    """``"expert"``, ``"student"``, or the label a student was given."""
    kind: str
    """``"expert"`` or ``"student"``."""
    net: torch.nn.Module
    """The world model (on the run's device, eval mode)."""
    obs_dim: int
    """Observation size the model reads (native observations are zero-padded to it)."""
    task_ids: dict[str, int]
    """The run's tasks -> the model's ids for them (a student's own, the task set's for the expert)."""
    source: Any
    """What the command named: a path, a Hub id or spec, a {task: checkpoint} mapping."""
    info: dict[str, Any] = field(default_factory=dict)
    compile: bool = False
    """Plan through ``torch.compile`` (see ``ModelsConfig.compile``)."""

    @property
    def policy_prior(self) -> bool:
        """Whether MPPI may use policy trajectories (a student may lack its prior)."""
        return self.kind == EXPERT or bool(self.net.config.use_policy_prior)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.net.parameters())

    def planning_model(self, generator: GeneratorLike = None) -> PlanningModel:
        """A fresh planning view; its policy samples are seeded with ``generator``."""
        return PLANNING_MODELS[self.kind](self.net, generator=generator, compile=self.compile)


def load_models(
    cfg: ModelsConfig,
    students: str | Mapping[str, str] | None = None,
    *,
    tasks: list[str] | None = None,
) -> dict[str, LoadedModel]:
    """The expert ``cfg`` names (a path, ``hub:`` spec or {task: checkpoint}) and the
    ``students`` (a path, folder or Hub id, or {label: path}), keyed by label, the expert
    first, on ``cfg.device``; every one must cover ``tasks`` (default ``cfg.tasks``).

    Raises:
        ValueError: nothing to load, a label clash, or a model that lacks one of ``tasks``.
    """
    expert, device = cfg.expert, cfg.device
    tasks = list(cfg.tasks if tasks is None else tasks)
    if isinstance(students, str):
        students = {STUDENT: students}
    if students is not None and not isinstance(students, Mapping):
        raise InputError(
            f"students must be a path or {{label: path, ...}}, got {students!r}; "
            "label several students, e.g. students='{small: a.ckpt, large: b.ckpt}'"
        )
    if not students and expert is None:
        raise InputError("nothing to run: pass expert=... and/or a student")
    if expert is not None and EXPERT in (students or {}):
        raise InputError(f"{EXPERT!r} is the expert's label; give the student another one")
    models: dict[str, LoadedModel] = {}
    if expert is not None:
        net = load_expert(
            expert,
            task_set=cfg.task_set,
            model_size=cfg.expert_model_size,
            trust_pickle=cfg.trust_pickle,
        )
        net = net.to(device).eval()
        covered = getattr(net, "tasks", tasks)
        missing = [t for t in tasks if t not in covered]
        if missing:
            raise InputError(f"the expert covers {list(covered)}, not {missing}")
        ids = get_task_set(cfg.task_set)
        models[EXPERT] = LoadedModel(
            EXPERT,
            EXPERT,
            net,
            net.obs_dim,
            {t: ids.index(t) for t in tasks},
            expert,
            compile=cfg.compile,
        )
    for label, path in (students or {}).items():
        student: FactoredStudent = load_student(str(path), map_location=device).eval()
        names = student.config.task_names
        unknown = [t for t in tasks if t not in names]
        if unknown:
            raise InputError(f"student {label!r} ({path}) was not trained on {unknown}")
        models[str(label)] = LoadedModel(
            str(label),
            STUDENT,
            student,
            student.config.obs_dim,
            {t: names.index(t) for t in tasks},
            str(path),
            compile=cfg.compile,
        )
    return models
