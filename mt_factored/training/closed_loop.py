"""Closed-loop distillation (DAgger for world models): states the student's own planner reaches.

Every ``closed_loop.every_n_steps`` optimizer steps the student plans in dm_control on the
training tasks; the observations it visits and the action sequences it planned there go into
a bounded buffer, and from then on a share of every batch is drawn from it. Such a row is a
window whose first observation is the visited state and whose "data" actions are the
student's planned sequence: the expert labels it exactly as it labels data windows (both
models roll out under candidate actions around it), so the student learns how the expert
ranks actions where the student's own plans lead, which the dataset may not contain.

With ``plans: expert`` the row's actions are instead the sequence the *expert's* MPPI plans at
that state (the expert planning along the student's trajectory, warm-started step to step:
DAgger's label, Ross et al. 2011), and the student's policy prior learns the expert planner's
first action there. The policy prior is what an anchored student MPPI (``prior_weight``) and its
policy trajectories lean on, and an expert's own policy prior can act far worse than its planner
(walker-stand: 389 against 979 on env seeds 30000-30009).

Exact resume: the buffer's tensors and counters are buffers of the LightningModule, so they
are in its checkpoint (under DDP every rank's buffer is gathered into the checkpoint and each
rank takes its own back); collection is a function of (seed, round, rank, student weights),
and the rows drawn for a batch of (seed, global step, rank). Each rank runs its own envs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from mt_factored.constants import ACTION, EXPERT_PLANNED, OBS, TASK
from mt_factored.errors import InputError
from mt_factored.planning.base import MPPIConfig, with_overrides
from mt_factored.planning.episodes import visited_states
from mt_factored.planning.expert_adapter import ExpertPlanningModel
from mt_factored.planning.mppi import MPPIPlanner
from mt_factored.planning.student_adapter import StudentPlanningModel

PLAN_SOURCES = ("student", "expert")
"""Whose planned sequences the closed-loop rows carry (``ClosedLoopConfig.plans``)."""
_SMALL_BUDGET = {"num_samples": 128, "iterations": 2, "num_elites": 16, "num_pi_trajs": 16}

# Large odd multipliers keep nearby (round, rank, step) triples on separate seeds.
_ROUND_MIX, _RANK_MIX, _STEP_MIX = 1_000_003, 7_919, 104_729


@dataclass(kw_only=True)
class ClosedLoopConfig:
    """When and how much the student's own episodes feed distillation (off by default)."""

    every_n_steps: int = 0
    """Collect a round of the student's own states every n optimizer steps (0: off)."""
    start_step: int = 0
    """No round before this step (let the student learn something first)."""
    share: float = 0.25
    """Fraction of each batch's windows drawn from the buffer once it holds states."""
    envs: int = 2
    """Environments per task and round, run in lock-step."""
    steps: int = 250
    """Control steps per environment and round."""
    capacity: int = 20_000
    """Most states kept (the oldest are overwritten)."""
    planning: dict = None  # type: ignore[assignment]
    """MPPI settings of the collection on top of the evaluation's (null: ``{num_samples: 128,
    iterations: 2, num_elites: 16, num_pi_trajs: 16}``, the quickstart student's budget)."""
    plans: str = "student"
    """Whose MPPI sequence at each visited state a row carries as its actions: ``student`` (what
    the student planned there) or ``expert`` (what the expert's MPPI plans there, along the same
    trajectory; the policy prior then learns the expert planner's first action at that state)."""
    expert_planning: dict = None  # type: ignore[assignment]
    """With ``plans: expert``, the expert's MPPI settings on top of ``planning`` (null: the same
    128 x 2 budget; the walker-stand expert scores 959 at it against 979 at 512 x 6)."""

    def __post_init__(self) -> None:
        self.planning = dict(_SMALL_BUDGET if self.planning is None else self.planning)
        self.expert_planning = dict(
            _SMALL_BUDGET if self.expert_planning is None else self.expert_planning
        )
        if self.plans not in PLAN_SOURCES:
            raise InputError(
                f"closed_loop.plans must be one of {', '.join(PLAN_SOURCES)}, got {self.plans!r}"
            )
        if self.every_n_steps < 0 or self.start_step < 0:
            raise InputError("closed_loop.every_n_steps and closed_loop.start_step must be >= 0")
        if not 0 <= self.share < 1:
            raise InputError(f"closed_loop.share must be in [0, 1), got {self.share}")
        for name in ("envs", "steps", "capacity"):
            if getattr(self, name) < 1:
                raise InputError(f"closed_loop.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def enabled(self) -> bool:
        return self.every_n_steps > 0 and self.share > 0

    def due(self, step: int) -> bool:
        """Whether a collection round runs before the optimizer step ``step``."""
        return (
            self.enabled and step > 0 and step >= self.start_step and step % self.every_n_steps == 0
        )

    def mppi(self, base: MPPIConfig) -> MPPIConfig:
        return with_overrides(base, self.planning)

    def expert_mppi(self, base: MPPIConfig) -> MPPIConfig:
        """The expert's labelling planner: ``base`` (the expert's planning) with
        ``expert_planning`` on top."""
        return with_overrides(base, self.expert_planning)

    @property
    def expert_planned(self) -> bool:
        return self.plans == "expert"


class ClosedLoopBuffer(torch.nn.Module):
    """A ring buffer of (observation, planned sequence, task id). Its tensors are module
    buffers: they travel with ``state_dict`` (the checkpoint) and with the device."""

    def __init__(self, capacity: int, obs_dim: int, horizon: int, action_dim: int) -> None:
        super().__init__()
        self.register_buffer("obs", torch.zeros(capacity, obs_dim))
        self.register_buffer("plan", torch.zeros(capacity, horizon, action_dim))
        self.register_buffer("task", torch.zeros(capacity, dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.register_buffer("head", torch.zeros((), dtype=torch.long))
        self.register_buffer("rounds", torch.zeros((), dtype=torch.long))

    @property
    def capacity(self) -> int:
        return self.obs.shape[0]

    def __len__(self) -> int:
        return int(self.count)

    @torch.no_grad()
    def add(self, obs: torch.Tensor, plan: torch.Tensor, task: torch.Tensor) -> None:
        """Append rows (the oldest are overwritten when full)."""
        n = min(obs.shape[0], self.capacity)
        obs, plan, task = obs[-n:], plan[-n:], task[-n:]
        idx = (int(self.head) + torch.arange(n, device=self.obs.device)) % self.capacity
        self.obs[idx] = obs.to(self.obs)
        self.plan[idx] = plan.to(self.plan)
        self.task[idx] = task.to(self.task)
        self.head.fill_((int(self.head) + n) % self.capacity)
        self.count.fill_(min(self.capacity, int(self.count) + n))

    def sample(self, num: int, generator: torch.Generator):
        """``num`` rows drawn uniformly with replacement: (obs, plan, task)."""
        if len(self) == 0:
            raise RuntimeError("the closed-loop buffer is empty")
        idx = torch.randint(0, len(self), (num,), generator=generator, device=generator.device)
        idx = idx.to(self.obs.device)
        return self.obs[idx], self.plan[idx], self.task[idx]


@torch.no_grad()
def collect_round(
    student,
    tasks: dict[str, int],
    obs_dim: int,
    planning: MPPIConfig,
    config: ClosedLoopConfig,
    seed: int,
    round_index: int,
    rank: int = 0,
    device: torch.device | str = "cpu",
    expert=None,
    expert_planning: MPPIConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the student's MPPI for ``config.steps`` steps in ``config.envs`` fresh envs per task.

    Args:
        expert, expert_planning: with ``config.plans == "expert"``, the teacher whose MPPI
            (at ``expert_planning``) labels every visited state.

    Returns:
        (obs ``[R, obs_dim]``, planned sequences ``[R, H, A]``, task ids ``[R]``) of every
        visited state, in a fixed order.
    """
    if config.expert_planned and (expert is None or expert_planning is None):
        raise ValueError("closed_loop.plans=expert needs the expert and its planning settings")
    base = seed + _ROUND_MIX * (round_index + 1) + _RANK_MIX * rank
    obs_rows, plan_rows, task_rows = [], [], []
    for offset, (name, task_id) in enumerate(tasks.items()):
        run_seed = base + 101 * offset
        planner = MPPIPlanner(
            StudentPlanningModel(student, generator=run_seed), planning, generator=run_seed
        )
        labeller = None
        if config.expert_planned:
            model = ExpertPlanningModel(expert, generator=run_seed + 1)
            labeller = MPPIPlanner(model, expert_planning, generator=run_seed + 1)
        seeds = [run_seed + i for i in range(config.envs)]
        obs, plan = visited_states(
            planner, name, task_id, obs_dim, seeds, config.steps, device, labeller=labeller
        )
        obs_rows.append(obs)
        plan_rows.append(plan)
        task_rows.append(torch.full((obs.shape[0],), task_id, dtype=torch.long, device=device))
    return torch.cat(obs_rows), torch.cat(plan_rows), torch.cat(task_rows)


def batch_generator(seed: int, step: int, rank: int, device) -> torch.Generator:
    """The generator of the buffer rows drawn for the batch of ``step`` on ``rank``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(seed + _STEP_MIX * (step + 1) + _RANK_MIX * rank + 17)
    return gen


def mix_into_batch(
    batch: dict[str, torch.Tensor],
    rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    expert_planned: bool = False,
) -> dict[str, torch.Tensor]:
    """The batch with its first windows replaced by buffer rows: the visited state as every
    observation of the window, the planned sequence as its actions, the row's task; with
    ``expert_planned``, ``EXPERT_PLANNED`` marks those rows (their actions are the expert
    planner's)."""
    obs, plan, task = rows
    n = obs.shape[0]
    out = dict(batch)
    out[OBS] = batch[OBS].clone()
    out[OBS][:n] = obs.to(batch[OBS]).unsqueeze(1)
    out[ACTION] = batch[ACTION].clone()
    out[ACTION][:n] = plan.to(batch[ACTION])
    out[TASK] = batch[TASK].clone()
    out[TASK][:n] = task.to(batch[TASK])
    if expert_planned:
        marked = torch.zeros(batch[TASK].shape[0], dtype=torch.bool, device=batch[TASK].device)
        marked[:n] = True
        out[EXPERT_PLANNED] = marked
    return out


class Timer:
    """Seconds spent collecting (reported beside steps/s)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds += time.perf_counter() - self._start
