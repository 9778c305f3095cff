"""`StudentConfig`: architecture and task facts of the factored student.

Agents: each task's action entries are split into groups ("agents"); by default
every real joint is its own agent. The student plans every agent independently
(Fac-TDMPC Sec. 4.3), so the number of agents ``N`` and the widest group ``G`` are
facts derived from the partitions, never stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mt_factored.artifacts.configs import DictRoundTrip
from mt_factored.constants import MT_ACTION_DIM, MT_OBS_DIM
from mt_factored.errors import InputError
from mt_factored.nn.checks import check_world_model_config
from mt_factored.tasks import TaskSet, get_task, get_task_set

Partition = tuple[tuple[int, ...], ...]
"""One task's agents: a tuple of groups, each a tuple of action indices."""


def one_joint_per_agent(action_dims: Sequence[int]) -> tuple[Partition, ...]:
    """The default partitions: ``((0,), (1,), ..., (d - 1,))`` for each task's action dim ``d``."""
    return tuple(tuple((j,) for j in range(d)) for d in action_dims)


def _as_partition(groups: Iterable[Iterable[int]]) -> Partition:
    return tuple(tuple(int(j) for j in group) for group in groups)


@dataclass(kw_only=True)
class StudentSizes:
    """The architecture sizes of a student, the part a recipe chooses (keyword-only)."""

    task_dim: int = 32
    """Width of the task embedding (rows rescaled to norm <= 1 at lookup, as TD-MPC2)."""
    agent_dim: int = 16
    """Width of the agent-index (joint) embedding shared by all tasks."""
    enc_dim: int = 256
    """Width of the central encoder and of the per-agent latent head."""
    num_enc_layers: int = 2
    """Layers of the central trunk ``obs + task -> enc_dim`` (>= 1); the agent-conditioned
    head adds one hidden layer and the latent layer on top."""
    latent_dim: int = 32
    """Latent size per agent, ``m`` (a multiple of ``simnorm_dim``)."""
    mlp_dim: int = 64
    """Hidden width of the per-agent step (dynamics + reward), value and policy networks.
    Planning cost grows with it (benchmarks/student_planning_latency.py: at 6 joints and
    the paper's MPPI, 64 x 2 layers is 1.6 GFLOP per step vs 37.6 for the 5M expert)."""
    num_mlp_layers: int = 2
    """Hidden layers of each per-agent network (TD-MPC2's depth; it uses width 512). Two
    layers of 64 plan as fast as one of 128 (measured), and let the conditioning bias
    interact with the inputs through a second nonlinearity."""
    num_q: int = 2
    """Members of the per-agent value ensemble (one batched module)."""
    simnorm_dim: int = 8
    """Group size of the simplicial normalisation of latents."""
    log_std_min: float = -10.0
    """Lower bound of the policy prior's log standard deviation."""
    log_std_max: float = 2.0
    """Upper bound of the policy prior's log standard deviation."""
    use_policy_prior: bool = True
    """Build the per-agent policy prior (MPPI's policy trajectories need it)."""


@dataclass(kw_only=True)
class StudentSpec(StudentSizes):
    """A recipe's ``student`` node: the sizes, and the agents of the tasks that do not get one
    joint per agent. :meth:`build` turns it into the :class:`StudentConfig` of a task set."""

    partitions: dict[str, list[list[int]]] = field(default_factory=dict)
    """Agents per task as groups of action indices, ``{task-name: [[0, 1], [2, 3], ...]}``;
    tasks not listed get one joint per agent. ``python -m mt_factored.partition`` proposes
    them from data, e.g. ``student.partitions={walker-stand: [[0, 3], [1], [2], [4], [5]]}``."""

    def build(self, task_set: Any) -> StudentConfig:
        """The student config for ``task_set`` (see :meth:`StudentConfig.for_task_set`)."""
        sizes = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return StudentConfig.for_task_set(task_set, **sizes)


@dataclass(kw_only=True)
class StudentConfig(StudentSizes, DictRoundTrip):
    """Sizes and task facts of a :class:`~mt_factored.student.FactoredStudent` (keyword-only).

    ``dataclasses.asdict(config)`` is JSON-serialisable; ``StudentConfig.from_dict``
    (or ``StudentConfig(**d)``: lists are turned back into tuples) reads it back.
    Build one from a task set with :meth:`for_task_set` (a recipe: :meth:`StudentSpec.build`).
    """

    task_names: tuple[str, ...]
    """Task name per task id (the id is the position)."""
    action_dims: tuple[int, ...]
    """Real action entries per task; entries beyond are padding (always 0)."""
    discounts: tuple[float, ...]
    """Discount per task (planning returns and nothing else)."""
    partitions: tuple[Partition, ...] = ()
    """Per task, its agents as groups of action indices, e.g. walker with 3 agents x 2 joints:
    ``((0, 1), (2, 3), (4, 5))``. Every real index in exactly one group. Empty: one joint
    per agent for every task (filled in at construction)."""
    obs_dim: int = MT_OBS_DIM
    """Observation size of the encoder (mt30 observations are zero-padded to 24)."""
    action_dim: int = MT_ACTION_DIM
    """Size of the environment action vector (mt30 actions are zero-padded to 6)."""
    agent_slots: int = 0
    """Rows of the agent embedding; 0 = ``num_agents``. :meth:`FactoredStudent.extend_agents`
    raises it when an embodiment with more agents is added."""

    def __post_init__(self) -> None:
        for name in ("task_names", "action_dims", "discounts"):  # JSON gives lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.partitions:
            object.__setattr__(self, "partitions", one_joint_per_agent(self.action_dims))
        else:
            object.__setattr__(self, "partitions", tuple(_as_partition(p) for p in self.partitions))
        self._validate()

    def _validate(self) -> None:
        num_tasks = len(self.task_names)
        if num_tasks < 1:
            raise InputError("StudentConfig needs at least one task")
        if len(set(self.task_names)) != num_tasks:
            raise InputError(f"task_names must be unique: {self.task_names}")
        for name in ("action_dims", "discounts", "partitions"):
            if len(getattr(self, name)) != num_tasks:
                raise InputError(
                    f"StudentConfig.{name} has {len(getattr(self, name))} entries for "
                    f"{num_tasks} tasks"
                )
        positive = (
            "obs_dim",
            "action_dim",
            "task_dim",
            "agent_dim",
            "enc_dim",
            "num_enc_layers",
            "latent_dim",
            "mlp_dim",
            "num_mlp_layers",
            "num_q",
            "simnorm_dim",
        )
        check_world_model_config(self, "StudentConfig", positive)
        for name, dim, groups in zip(
            self.task_names, self.action_dims, self.partitions, strict=True
        ):
            flat = [j for group in groups for j in group]
            if not groups or any(not group for group in groups) or sorted(flat) != list(range(dim)):
                raise InputError(
                    f"partition of task {name!r} must split its action indices 0..{dim - 1} into "
                    f"non-empty groups, each index exactly once; got {groups}"
                )
        if self.agent_slots and self.agent_slots < self.num_agents:
            raise InputError(
                f"agent_slots ({self.agent_slots}) must be 0 or >= num_agents ({self.num_agents})"
            )

    # ------------------------------------------------------------------ derived
    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    @property
    def num_agents(self) -> int:
        """N: the most agents of any task (tasks with fewer have masked agents)."""
        return max(len(groups) for groups in self.partitions)

    @property
    def agent_action_dim(self) -> int:
        """G: the widest group of any task (narrower groups have masked entries)."""
        return max(len(group) for groups in self.partitions for group in groups)

    @property
    def num_agent_embeddings(self) -> int:
        """Rows of the agent embedding: ``agent_slots`` or ``num_agents``."""
        return self.agent_slots or self.num_agents

    # ------------------------------------------------------------ construction
    @classmethod
    def for_task_set(
        cls,
        task_set: Any,
        partitions: Sequence[Any] | Mapping[str, Any] | None = None,
        **sizes: Any,
    ) -> StudentConfig:
        """A config for the tasks of ``task_set`` (a ``TaskSet``, a task-set name such as
        "mt30", or a sequence of task names looked up in the known task sets).

        Args:
            partitions: one partition per task (in task-id order), or ``{task name:
                groups}`` for the tasks that do not get one joint per agent.
            sizes: any other field (``latent_dim=32``, ``mlp_dim=128``, ...).
        """
        if isinstance(task_set, str):
            task_set = get_task_set(task_set)
        if isinstance(task_set, TaskSet):
            specs = tuple(task_set)
            sizes.setdefault("obs_dim", task_set.max_obs_dim)
            sizes.setdefault("action_dim", task_set.max_action_dim)
        else:  # task names: padded like the multi-task data unless sizes say otherwise
            specs = tuple(get_task(name) for name in task_set)
        action_dims = tuple(spec.action_dim for spec in specs)
        names = tuple(spec.name for spec in specs)
        if isinstance(partitions, Mapping):
            unknown = sorted(set(partitions) - set(names))
            if unknown:
                raise InputError(f"partitions name tasks not in the task set: {unknown}")
            default = one_joint_per_agent(action_dims)
            partitions = tuple(
                _as_partition(partitions[n]) if n in partitions else default[i]
                for i, n in enumerate(names)
            )
        return cls(
            task_names=names,
            action_dims=action_dims,
            discounts=tuple(spec.discount for spec in specs),
            partitions=tuple(partitions or ()),
            **sizes,
        )
