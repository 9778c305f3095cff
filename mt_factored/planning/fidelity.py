"""Planning fidelity: does the student's MPPI pick what the expert's would, judged by the expert?

A fast stand-in for dm_control returns (seconds instead of a 20-minute run). At a fixed
set of states per task both models plan with MPPI at the same budget from a cold start,
and the expert's own H-step return estimate (discounted model rewards plus the value at
its policy action in the final latent: TD-MPC2's planning objective, made deterministic
with the policy mean and the mean over all Q members) scores both plans:

- ``regret``: ``E[J_e(expert plan) - J_e(student plan)] / E[J_best - mean J_e(random)]``,
  what the student's plan loses in the expert's eyes, in units of how much the best
  sequence seen at a state beats a uniform random one. 0 when the student plans exactly
  like the expert, about 1 when its plans are no better than random ones.
- ``q_regret``: the same for the first action alone, through the expert's Q.
- ``rank_joint``: Spearman correlation between the two models' returns of planner-like
  candidates (around the expert's plan, with the stds MPPI moves through), per state.
- ``rank_agent``: the same when one agent's actions vary and the others stay at the
  expert's plan: the question decentralized MPPI asks each agent.
- ``policy_mse``: the mean squared distance between the two policy priors' deterministic
  actions (over the task's real action entries): how well the prior was imitated, at the
  states that matter (the student's own states show the compounding error of imitation).
- ``prior_q_regret``: what the student's prior action loses against the expert's prior
  action through the expert's Q, in ``q_regret``'s unit: the prior is what an MPPI anchored
  to it (``prior_weight``) and its policy trajectories lean on.

:func:`task_fidelity` scores one task at given states; :class:`FidelityProbe` holds the
states (from the training data and from the student's own closed-loop episodes) and the
expert's plans at the data states, so re-scoring a new checkpoint costs only its own
planning. ``python -m mt_factored.fidelity`` runs it on any checkpoint, and
:class:`~mt_factored.training.callbacks.FidelityCallback` logs it during training.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from mt_factored.errors import InputError
from mt_factored.planning.episodes import last_plan, visited_states
from mt_factored.planning.expert_adapter import ExpertPlanningModel
from mt_factored.planning.mppi import MPPIPlanner
from mt_factored.planning.policy_actor import PolicyActor
from mt_factored.planning.student_adapter import StudentPlanningModel

SOURCES = ("data", "own")
"""Where fidelity states come from: the training data, the student's own episodes."""
METRICS = ("regret", "q_regret", "rank_joint", "rank_agent", "policy_mse", "prior_q_regret")
"""The per-task numbers of :class:`TaskFidelity`, in table order."""


@dataclass(kw_only=True)
class FidelityConfig:
    """How many states, candidates and random sequences the metric uses."""

    data_states: int = 64
    """States per task drawn (seeded) from the training data; 0 to skip."""
    own_states: int = 64
    """States per task taken from the student's own closed-loop episodes; 0 to skip."""
    own_envs: int = 2
    """Episodes run in lock-step per task to collect the student's own states."""
    own_steps: int = 200
    """Control steps of those episodes (the states are spread evenly over them)."""
    random_sequences: int = 64
    """Uniform random action sequences per state (the regret's unit)."""
    candidates_per_std: int = 32
    """Candidates per noise level for the rank agreement."""
    candidate_stds: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
    """Noise levels around the expert's plan (MPPI moves from 2 down to 0.05)."""
    seed: int = 0
    """Seed of the states, the planners, the candidates and the student's episodes."""

    def __post_init__(self) -> None:
        self.candidate_stds = tuple(float(s) for s in self.candidate_stds)
        for name in ("data_states", "own_states", "own_envs", "own_steps", "random_sequences"):
            if getattr(self, name) < 0:
                raise InputError(f"FidelityConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.random_sequences < 2 or self.candidates_per_std < 2 or not self.candidate_stds:
            raise InputError(
                "FidelityConfig: need >= 2 random sequences, >= 2 candidates per std and one std"
            )


@dataclass
class TaskFidelity:
    """The metric for one task and one source of states."""

    task: str
    source: str
    states: int
    regret: float
    q_regret: float
    rank_joint: float
    rank_agent: float
    policy_mse: float
    prior_q_regret: float

    def as_dict(self) -> dict[str, float | int | str]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------- scorers
class SequenceScorer(Protocol):
    """A world model's deterministic return estimate of whole action sequences, per agent."""

    def agent_masks(self, task: torch.Tensor) -> torch.Tensor:
        """``[E, N, A]`` float: the environment action entries each agent controls."""

    def returns(self, obs: torch.Tensor, task: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Per-agent H-step returns ``[E, N, C]`` of env action sequences ``[E, C, H, A]``."""


class ExpertScorer:
    """TD-MPC2's return of a sequence on the expert (one agent holding every action entry)."""

    def __init__(self, expert) -> None:
        self.expert = expert

    def agent_masks(self, task: torch.Tensor) -> torch.Tensor:
        return self.expert.action_mask(task).unsqueeze(1)

    @torch.no_grad()
    def returns(self, obs: torch.Tensor, task: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        ex = self.expert
        e, c, h, a = actions.shape
        z = ex.encode(obs, task).repeat_interleave(c, dim=0)
        t = task.repeat_interleave(c, dim=0)
        seq = actions.reshape(e * c, h, a)
        discount = ex.discounts.to(z)[t]
        weight, total = torch.ones_like(discount), torch.zeros_like(discount)
        for step in range(h):
            total += weight * ex.reward(z, seq[:, step], t).squeeze(-1)
            z = ex.next(z, seq[:, step], t)
            weight = weight * discount
        total += weight * ex.q_all(z, ex.pi_mean(z, t), t).mean(dim=0).squeeze(-1)
        return total.view(e, 1, c)

    @torch.no_grad()
    def first_action_q(self, obs: torch.Tensor, task: torch.Tensor, first: torch.Tensor):
        """``Q_e(z_0, a_0)`` (mean over members) of first actions ``[E, C, A]``: ``[E, C]``."""
        e, c, a = first.shape
        z = self.expert.encode(obs, task).repeat_interleave(c, dim=0)
        t = task.repeat_interleave(c, dim=0)
        return self.expert.q_all(z, first.reshape(e * c, a), t).mean(dim=0).view(e, c)


class StudentScorer:
    """The factored student's per-agent returns of env action sequences."""

    def __init__(self, student) -> None:
        self.student = student

    def agent_masks(self, task: torch.Tensor) -> torch.Tensor:
        return self.student.agent_env_masks(task)

    @torch.no_grad()
    def returns(self, obs: torch.Tensor, task: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        st = self.student
        c, h = actions.shape[1], actions.shape[2]
        cond = st.condition(task)
        agent_actions = st.split_actions(actions.permute(1, 2, 0, 3), task)  # [C, H, E, N, G]
        s = st.encode(obs, task).expand(c, -1, -1, -1)  # [C, E, N, m]
        discount = cond.discount.unsqueeze(-1)  # [E, 1]
        weight = torch.ones_like(discount)
        total = torch.zeros(s.shape[:-1], dtype=s.dtype, device=s.device)
        for step in range(h):
            s, reward = st.step(s, agent_actions[:, step], cond)
            total += weight * reward
            weight = weight * discount
        total += weight * st.q(s, st.pi(s, cond).mean, cond).mean(dim=0)
        return total.permute(1, 2, 0)  # [E, N, C]


# ----------------------------------------------------------------------- metric
def spearman(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Rank correlation along the last dim (ties broken by position)."""
    rx = x.argsort(dim=-1).argsort(dim=-1).to(torch.float64)
    ry = y.argsort(dim=-1).argsort(dim=-1).to(torch.float64)
    rx, ry = rx - rx.mean(-1, keepdim=True), ry - ry.mean(-1, keepdim=True)
    return (rx * ry).sum(-1) / (rx.norm(dim=-1) * ry.norm(dim=-1)).clamp_min(1e-12)


def planned_sequences(planner: MPPIPlanner, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
    """The planner's final sampling mean at each state, cold-started: ``[E, H, A]`` env actions."""
    planner.reset()
    planner.plan(obs, task, t0=True)
    return last_plan(planner, task)


@torch.no_grad()
def task_fidelity(
    task_name: str,
    task_id: int,
    obs: torch.Tensor,
    student_planner: MPPIPlanner,
    student_scorer: SequenceScorer,
    expert_planner: MPPIPlanner,
    expert_scorer: ExpertScorer,
    config: FidelityConfig | None = None,
    source: str = "data",
    expert_plan: torch.Tensor | None = None,
) -> TaskFidelity:
    """The metric at states ``obs [E, obs_dim]`` of one task.

    Args:
        student_planner, expert_planner: MPPI over each model at the same budget.
        student_scorer, expert_scorer: each model's returns of whole sequences.
        expert_plan: the expert planner's sequences at ``obs`` when already known (cached).
    """
    config = FidelityConfig() if config is None else config
    e = obs.shape[0]
    task = torch.full((e,), task_id, dtype=torch.long, device=obs.device)
    gen = torch.Generator(device=obs.device).manual_seed(config.seed)
    mask = expert_scorer.agent_masks(task)[:, 0]  # [E, A] the task's real entries
    s_plan = planned_sequences(student_planner, obs, task)
    e_plan = planned_sequences(expert_planner, obs, task) if expert_plan is None else expert_plan
    h, a = e_plan.shape[1:]

    shape = (e, config.random_sequences, h, a)
    rand = (torch.rand(shape, generator=gen, device=obs.device) * 2 - 1) * mask[:, None, None]
    seqs = torch.cat([e_plan[:, None], s_plan[:, None], rand], dim=1)
    j = expert_scorer.returns(obs, task, seqs)[:, 0]  # [E, 2 + R]
    unit = (j.amax(1) - j[:, 2:].mean(1)).mean().clamp_min(1e-8)
    regret = (j[:, 0] - j[:, 1]).mean() / unit
    s_prior = PolicyActor(student_planner.model).plan(obs, task)  # [E, A], padding 0
    e_prior = PolicyActor(expert_planner.model).plan(obs, task)
    firsts = torch.cat([seqs[:, :, 0], e_prior[:, None], s_prior[:, None]], dim=1)
    q_all = expert_scorer.first_action_q(obs, task, firsts)
    q, q_prior = q_all[:, :-2], q_all[:, -2:]
    q_unit = (q.amax(1) - q[:, 2:].mean(1)).mean().clamp_min(1e-8)
    q_regret = (q[:, 0] - q[:, 1]).mean() / q_unit
    prior_q_regret = (q_prior[:, 0] - q_prior[:, 1]).mean() / q_unit
    policy_mse = ((s_prior - e_prior).square() * mask).sum() / mask.sum().clamp_min(1)

    stds = torch.tensor(config.candidate_stds, device=obs.device)
    std = stds.repeat_interleave(config.candidates_per_std).view(1, -1, 1, 1)
    noise = torch.randn((e, std.shape[1], h, a), generator=gen, device=obs.device)
    cand = (e_plan[:, None] + std * noise).clamp(-1, 1) * mask[:, None, None]
    rank_joint = spearman(
        expert_scorer.returns(obs, task, cand)[:, 0], student_scorer.returns(obs, task, cand).sum(1)
    ).mean()

    agent_masks = student_scorer.agent_masks(task)  # [E, N, A]
    per_agent = []
    for k in range(agent_masks.shape[1]):
        only = agent_masks[:, k][:, None, None]  # [E, 1, 1, A]
        if not bool(only.any()):
            continue
        moved = e_plan[:, None] * (1 - only) + cand * only
        per_agent.append(
            spearman(
                expert_scorer.returns(obs, task, moved)[:, 0],
                student_scorer.returns(obs, task, moved)[:, k],
            ).mean()
        )
    return TaskFidelity(
        task=task_name,
        source=source,
        states=e,
        regret=float(regret),
        q_regret=float(q_regret),
        rank_joint=float(rank_joint),
        rank_agent=float(torch.stack(per_agent).mean()),
        policy_mse=float(policy_mse),
        prior_q_regret=float(prior_q_regret),
    )


# ----------------------------------------------------------------------- states
def data_states(store, task_id: int, count: int, seed: int) -> torch.Tensor:
    """``count`` observations of task ``task_id`` drawn (seeded) from an episode store."""
    episodes = np.flatnonzero(store.episode_tasks == task_id)
    if episodes.size == 0:
        raise InputError(
            f"the data has no episode of task id {task_id}",
            "pass data= with episodes of every task to score, or leave the task out",
        )
    rng = np.random.default_rng([seed, task_id])
    chosen = rng.choice(episodes, count)
    starts = rng.integers(0, store.frames - 1, count)
    return torch.from_numpy(store.gather(chosen, starts, 1)["obs"][:, 0].copy())


@torch.no_grad()
def own_states(
    planner: MPPIPlanner, task_name: str, task_id: int, obs_dim: int, config: FidelityConfig
) -> torch.Tensor:
    """``config.own_states`` observations the planner's own episodes reach, spread evenly
    over ``config.own_envs`` episodes of ``config.own_steps`` steps (env seeds from the seed)."""
    seeds = [config.seed + 7919 * (i + 1) for i in range(config.own_envs)]
    every, _ = visited_states(planner, task_name, task_id, obs_dim, seeds, config.own_steps)
    pick = torch.linspace(0, every.shape[0] - 1, config.own_states).round().long()
    return every[pick]


def summary(results: Mapping[str, Mapping[str, TaskFidelity]]) -> dict[str, float]:
    """Means over tasks: ``{"<source>/<metric>": value}`` plus ``"regret"`` over everything."""
    out: dict[str, float] = {}
    for source in SOURCES:
        rows = [r[source] for r in results.values() if source in r]
        for metric in METRICS:
            if rows:
                out[f"{source}/{metric}"] = statistics.fmean(getattr(r, metric) for r in rows)
    regrets = [r.regret for by_source in results.values() for r in by_source.values()]
    if regrets:
        out["regret"] = statistics.fmean(regrets)
    return out


# ----------------------------------------------------------------------- probe
class FidelityProbe:
    """The metric's fixed states for a set of tasks, and the expert's plans at them.

    The data states are drawn once (seeded) when the probe is built, and the expert's plans
    at them are computed once and kept, so scoring another checkpoint of the student (each
    validation round of a training run) costs only the student's planning and the scoring.
    The student's own states are collected anew for each student (they are its own).

    Args:
        expert: the teacher (eval mode, on ``device``).
        tasks: task name -> the ids the expert and the student know it by (the same here:
            both models share the training task set).
        obs_dim: the padded observation size of both models.
        planning: MPPI settings of both planners (the same budget for both).
        store: the training data (:class:`~mt_factored.data.store.EpisodeStore`) for the data
            states; None: only own states.
        config: sizes and seed of the metric.
        compile: plan both models through ``torch.compile`` (see ``mt_factored.nn.compiling``).
    """

    def __init__(
        self,
        expert,
        tasks: Mapping[str, int],
        obs_dim: int,
        planning,
        store=None,
        config: FidelityConfig | None = None,
        device: torch.device | str = "cpu",
        compile: bool = False,
    ) -> None:
        config = FidelityConfig() if config is None else config
        self.compile = compile
        self.expert, self.tasks, self.obs_dim = expert, dict(tasks), obs_dim
        self.planning, self.config, self.device = planning, config, torch.device(device)
        self.expert_scorer = ExpertScorer(expert)
        self._expert_planner = lambda: MPPIPlanner(
            ExpertPlanningModel(expert, generator=config.seed, compile=compile),
            planning,
            generator=config.seed,
        )
        self.data: dict[str, torch.Tensor] = {}
        if store is not None and config.data_states > 0:
            for name, task_id in self.tasks.items():
                obs = data_states(store, task_id, config.data_states, config.seed)
                self.data[name] = obs.to(self.device)
        self._expert_plans: dict[str, torch.Tensor] = {}

    def expert_plan(self, task: str) -> torch.Tensor:
        """The expert's plans at the data states of ``task`` (computed once)."""
        if task not in self._expert_plans:
            ids = torch.full((self.data[task].shape[0],), self.tasks[task], dtype=torch.long)
            plan = planned_sequences(self._expert_planner(), self.data[task], ids.to(self.device))
            self._expert_plans[task] = plan
        return self._expert_plans[task]

    @torch.no_grad()
    def measure(self, student) -> dict[str, dict[str, TaskFidelity]]:
        """``{task: {source: TaskFidelity}}`` of ``student`` (a FactoredStudent, eval mode)."""
        cfg = self.config
        scorer = StudentScorer(student)

        def student_planner() -> MPPIPlanner:
            model = StudentPlanningModel(student, generator=cfg.seed, compile=self.compile)
            return MPPIPlanner(model, self.planning, generator=cfg.seed)

        results: dict[str, dict[str, TaskFidelity]] = {}
        for name, task_id in self.tasks.items():
            by_source = results.setdefault(name, {})
            if name in self.data:
                by_source["data"] = task_fidelity(
                    name,
                    task_id,
                    self.data[name],
                    student_planner(),
                    scorer,
                    self._expert_planner(),
                    self.expert_scorer,
                    cfg,
                    source="data",
                    expert_plan=self.expert_plan(name),
                )
            if cfg.own_states > 0:
                own = own_states(student_planner(), name, task_id, self.obs_dim, cfg)
                by_source["own"] = task_fidelity(
                    name,
                    task_id,
                    own.to(self.device),
                    student_planner(),
                    scorer,
                    self._expert_planner(),
                    self.expert_scorer,
                    cfg,
                    source="own",
                )
        return results


def format_table(results: Mapping[str, Mapping[str, TaskFidelity]]) -> str:
    """A Markdown table: one row per task and source."""
    lines = [
        "| task | states from | n | regret | first-action regret | rank (joint) | rank (per agent) "
        "| policy MSE | prior's first-action regret |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, by_source in results.items():
        for source, r in by_source.items():
            lines.append(
                f"| {task} | {source} | {r.states} | {r.regret:.3f} | {r.q_regret:.3f} | "
                f"{r.rank_joint:.2f} | {r.rank_agent:.2f} | {r.policy_mse:.3f} | "
                f"{r.prior_q_regret:.3f} |"
            )
    s = summary(results)
    lines.append(f"| **mean** | | | {s.get('regret', float('nan')):.3f} | | | | | |")
    return "\n".join(lines)
