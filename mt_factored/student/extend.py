"""Extend a trained student to embodiments it never saw, keeping everything it learned.

:func:`extend_student` returns a new :class:`FactoredStudent` whose config has extra tasks
appended (so the ids of the old tasks do not change), one new task-embedding row per
new task, more agent-embedding rows when a new embodiment has more agents, and an
encoder whose first layer reads a wider observation. Every new weight is placed so
that old tasks compute exactly what they computed before:

- the trunk's first layer gets ZERO columns for the new observation entries, and old
  tasks' observations are zero-padded there (as the multi-task data pads them), so the
  new columns add exact zeros;
- new embedding rows are only ever looked up by new tasks / new agents;
- a wider environment action vector only changes the (weightless) split/merge tables,
  and the per-agent networks never see it.

Exactness is bitwise for batches like training's and planning's (tests/test_finetune.py:
torch.equal on 64 windows and on 3 x 16 samples). For a batch of a few rows only, BLAS
picks kernels whose summation order depends on the matrix shapes (the wider encoder
input, the doubled agent rows), so those results agree to rounding (~1e-7 relative).

:func:`freeze_shared` then stops gradients to what the pretrained student shares across
embodiments (the per-agent dynamics, reward, value and policy networks and the existing
embedding rows), so that finetuning trains only the encoder and the new rows.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mt_factored.errors import InputError
from mt_factored.student.config import StudentConfig, one_joint_per_agent
from mt_factored.student.model import TASK_EMB_INIT_RANGE, FactoredStudent
from mt_factored.tasks import TaskSpec, UnknownTaskError, get_task

log = logging.getLogger(__name__)

ENCODER_INPUT_KEY = "trunk.0.weight"
"""State-dict key of the encoder's first layer, ``[out, obs_dim + task_dim]``."""
TASK_EMB_KEY = "task_emb.weight"
AGENT_EMB_KEY = "agent_emb.weight"
SHARED_MODULES = ("step_net", "step_norm", "q_head", "pi_head")
"""Per-agent modules shared by every task and embodiment (frozen by :func:`freeze_shared`)."""
INIT_CHOICES = ("nearest", "random")


def _spec(task: str | TaskSpec) -> TaskSpec:
    return task if isinstance(task, TaskSpec) else get_task(task)


def _known_spec(name: str) -> TaskSpec | None:
    try:
        return get_task(name)
    except UnknownTaskError:
        return None


def nearest_task(config: StudentConfig, spec: TaskSpec) -> int:
    """The id of the student's task closest to ``spec``, by this rule, in order:

    1. same dm_control domain (the same body, e.g. ``quadruped-run`` for ``quadruped-walk``);
    2. smallest difference in action size (number of joints);
    3. smallest difference in observation size (tasks unknown to the task sets count as
       the student's padded ``obs_dim``);
    4. lowest task id.
    """

    def key(item: tuple[int, str]) -> tuple[int, int, int, int]:
        tid, name = item
        known = _known_spec(name)
        same_domain = known is not None and known.domain == spec.domain
        obs_dim = known.obs_dim if known is not None else config.obs_dim
        return (
            0 if same_domain else 1,
            abs(config.action_dims[tid] - spec.action_dim),
            abs(obs_dim - spec.obs_dim),
            tid,
        )

    return min(enumerate(config.task_names), key=key)[0]


def extended_config(
    config: StudentConfig,
    new_tasks: Sequence[TaskSpec],
    obs_dim: int | None = None,
    partitions: Mapping[str, Any] | None = None,
) -> StudentConfig:
    """``config`` with ``new_tasks`` appended, and sizes grown to fit them.

    Args:
        config: the pretrained student's config.
        new_tasks: tasks to add (none of them already in ``config``).
        obs_dim: encoder input size; None: the larger of the old one and the new tasks'.
        partitions: ``{new task: groups}`` for new tasks that do not get one joint per agent.

    Raises:
        ValueError: a task already present, an ``obs_dim`` that would shrink the encoder or
            not fit a new task, partitions for unknown tasks, or new agent groups wider
            than the student's (that would change the per-agent networks' input size).
    """
    if not new_tasks:
        raise InputError("extended_config needs at least one new task")
    names = [spec.name for spec in new_tasks]
    present = sorted(set(names) & set(config.task_names))
    if present or len(set(names)) != len(names):
        raise InputError(
            f"cannot add tasks the student already has or twice: {present or names}; "
            "list each new task once"
        )
    partitions = dict(partitions or {})
    unknown = sorted(set(partitions) - set(names))
    if unknown:
        raise InputError(f"partitions name tasks that are not being added: {unknown}")
    needed = max([config.obs_dim, *(spec.obs_dim for spec in new_tasks)])
    obs_dim = needed if obs_dim is None else int(obs_dim)
    if obs_dim < needed:
        raise InputError(
            f"obs_dim={obs_dim} is too small: the student reads {config.obs_dim} and the new "
            f"tasks need up to {needed} observation entries"
        )
    dims = tuple(spec.action_dim for spec in new_tasks)
    new_parts = tuple(
        partitions.get(spec.name, default)
        for spec, default in zip(new_tasks, one_joint_per_agent(dims), strict=True)
    )
    grown = dataclasses.replace(
        config,
        task_names=config.task_names + tuple(names),
        action_dims=config.action_dims + dims,
        discounts=config.discounts + tuple(spec.discount for spec in new_tasks),
        partitions=config.partitions + new_parts,
        obs_dim=obs_dim,
        action_dim=max(config.action_dim, *dims),
        agent_slots=0,
    )
    if grown.agent_action_dim != config.agent_action_dim:
        raise InputError(
            f"new agent groups are {grown.agent_action_dim} joints wide but the student's "
            f"per-agent networks take {config.agent_action_dim}; split the new tasks into "
            "groups of at most that many joints (partitions=...)"
        )
    slots = max(config.num_agent_embeddings, grown.num_agents)
    return dataclasses.replace(grown, agent_slots=slots)


def _task_rows(
    student: FactoredStudent,
    new_tasks: Sequence[TaskSpec],
    init_from: str,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``[len(new_tasks), task_dim]`` initial task-embedding rows (see :func:`extend_student`)."""
    old = student.task_emb.weight.detach()
    config = student.config
    if init_from == "random":
        rows = torch.empty(len(new_tasks), old.shape[1], dtype=old.dtype)
        rows.uniform_(-TASK_EMB_INIT_RANGE, TASK_EMB_INIT_RANGE, generator=generator)
        return rows.to(old.device)
    if init_from == "nearest":
        ids = [nearest_task(config, spec) for spec in new_tasks]
    elif init_from in config.task_names:
        ids = [config.task_names.index(init_from)] * len(new_tasks)
    else:
        raise UnknownTaskError(
            init_from, [*INIT_CHOICES, *config.task_names], "init_from (a choice or a task)"
        )
    for spec, tid in zip(new_tasks, ids, strict=True):
        log.info("task embedding of %s starts from %s", spec.name, config.task_names[tid])
    return old[ids].clone()


@torch.no_grad()
def extend_student(
    student: FactoredStudent,
    new_tasks: Sequence[str | TaskSpec],
    init_from: str = "nearest",
    obs_dim: int | None = None,
    partitions: Mapping[str, Any] | None = None,
    generator: torch.Generator | None = None,
) -> FactoredStudent:
    """A new student with ``new_tasks`` appended; the old tasks' outputs are unchanged.

    Args:
        student: the pretrained student (left untouched).
        new_tasks: task names (looked up in the known task sets) or :class:`TaskSpec` s.
        init_from: initial task-embedding row of each new task: "nearest" (the row of
            :func:`nearest_task`), "random" (uniform in +-0.02, as a fresh student), or the
            name of one of the student's tasks.
        obs_dim: encoder input size (None: just wide enough for the new tasks).
        partitions: ``{new task: groups}``; default one joint per agent.
        generator: random source of new rows (random task rows, new agent rows).

    Returns:
        The extended student, on the old one's device and dtype, in its train/eval mode.
        New agent-embedding rows are drawn like a fresh student's (``N(0, 1/agent_dim)``) so
        new joints are told apart from the start; the old rows are kept.
    """
    specs = [_spec(task) for task in new_tasks]
    config = extended_config(student.config, specs, obs_dim, partitions)
    state = {k: v.detach().clone() for k, v in student.state_dict().items()}
    old_agents = state[AGENT_EMB_KEY]
    new_agents = torch.empty(
        config.num_agent_embeddings - old_agents.shape[0],
        old_agents.shape[1],
        dtype=old_agents.dtype,
    ).normal_(0.0, config.agent_dim**-0.5, generator=generator)
    state[AGENT_EMB_KEY] = torch.cat([old_agents, new_agents.to(old_agents.device)])
    state[TASK_EMB_KEY] = torch.cat(
        [state[TASK_EMB_KEY], _task_rows(student, specs, init_from, generator)]
    )
    # The encoder reads cat([obs, task_emb]): zero columns go between the old observation
    # entries and the task-embedding columns, where the new observation entries sit.
    first = state[ENCODER_INPUT_KEY]
    old_obs = student.config.obs_dim
    zeros = first.new_zeros(first.shape[0], config.obs_dim - old_obs)
    state[ENCODER_INPUT_KEY] = torch.cat([first[:, :old_obs], zeros, first[:, old_obs:]], dim=1)

    reference = next(student.parameters())
    grown = FactoredStudent(config).to(device=reference.device, dtype=reference.dtype)
    grown.load_state_dict(state, strict=True)  # every other weight keeps its shape
    return grown.train(student.training)


def freeze_shared(student: FactoredStudent, pretrained: StudentConfig) -> list[str]:
    """Train only the encoder and the rows that ``student`` has beyond ``pretrained``.

    The per-agent networks (:data:`SHARED_MODULES`) stop requiring gradients; the task and
    agent embeddings keep requiring them but a gradient hook zeroes the rows of the
    pretrained tasks and agents (an optimizer step then leaves them exactly unchanged as
    long as it applies no weight decay to them; Adam's ``weight_decay`` would).

    Args:
        student: an extended student (:func:`extend_student`).
        pretrained: the config it was extended from.

    Returns:
        Names of the parameters that no longer train (whole tensors).
    """
    frozen = []
    for name in SHARED_MODULES:
        module = getattr(student, name)
        if module is None:  # no policy prior
            continue
        for pname, param in module.named_parameters():
            param.requires_grad_(False)
            frozen.append(f"{name}.{pname}")
    for emb, rows in (
        (student.task_emb, pretrained.num_tasks),
        (student.agent_emb, pretrained.num_agent_embeddings),
    ):
        emb.weight.register_hook(_zero_rows_hook(rows))
    return frozen


def _zero_rows_hook(rows: int):
    def hook(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[:rows] = 0
        return grad

    return hook


def trainable_parameters(module: nn.Module) -> int:
    """Number of parameter entries that require gradients."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
