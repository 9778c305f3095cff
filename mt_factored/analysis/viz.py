"""Interpretability plots of a factored student (Fac-TDMPC Sec. 5.6): ``python -m mt_factored.viz``.

    python -m mt_factored.viz student=runs/quickstart/checkpoints/last.ckpt \\
        "tasks=[cartpole-balance,reacher-easy,cup-catch,walker-stand]" out=docs \\
        "expert={walker-stand: checkpoints/quickstart/walker-stand.pt}"

The student plans ``episodes`` episodes of every task (its own MPPI, as in evaluation);
every observation it planned for and every plan it made are recorded. Then, in ``out``:

- ``tsne_joints.png`` / ``tsne_embodiments.png``: a t-SNE of the per-joint latents
  ``student.encode(obs)`` of the visited states (padded agents left out; every ``stride``-th
  state, at most ``max_points`` latents), coloured by joint index and by embodiment (the
  task name's domain: walker, cartpole, ...). Needs scikit-learn (the ``viz`` extra).
- ``returns_<task>.png``: over the first episode of ``returns_task``, each joint's H-step
  return of the plan the student acted on (its per-agent rewards along its own latent
  rollout plus the value at the end) and their sum, the global return of the additive
  decomposition. With ``expert=`` given, the expert's H-step return of the same plan is
  drawn on a second axis (its scale differs: the student learned the expert's rankings of
  actions, not its values).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from mt_factored.analysis.config import VizConfig
from mt_factored.analysis.evaluation import models_of
from mt_factored.analysis.figures import save_figure
from mt_factored.analysis.models import EXPERT, STUDENT
from mt_factored.analysis.perturbations import actuator_names
from mt_factored.errors import InputError
from mt_factored.planning.base import MPPIConfig
from mt_factored.planning.episodes import EpisodeConfig, run_episodes
from mt_factored.planning.expert_adapter import ExpertPlanningModel
from mt_factored.planning.mppi import MPPIPlanner
from mt_factored.planning.student_adapter import StudentPlanningModel
from mt_factored.student.model import FactoredStudent
from mt_factored.tasks import get_task_set

log = logging.getLogger(__name__)

TSNE_FIGSIZE = (6.4, 5.2)
"""Size of each t-SNE plot in inches (pixels: times ``dpi``)."""
RETURNS_FIGSIZE = (8.0, 4.8)
"""Size of the returns plot in inches."""


class RecordingPlanner(MPPIPlanner):
    """An :class:`MPPIPlanner` that keeps every observation it planned for and its plan."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.observations: list[torch.Tensor] = []
        self.plans: list[torch.Tensor] = []

    def plan(self, obs: torch.Tensor, task: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        action = super().plan(obs, task, *args, **kwargs)
        self.observations.append(obs.clone())
        self.plans.append(self.last_stats.mean.clone())  # [E, agents, H, G]
        return action


@dataclass
class Rollout:
    """What the student saw and planned in ``E`` episodes of one task, ``T`` steps each."""

    task: str
    task_id: int
    obs: torch.Tensor
    """``[T, E, obs_dim]`` observations (padded to the student's size)."""
    plans: torch.Tensor
    """``[T, E, N, H, G]`` final MPPI mean of each step, all N agents (padded agents 0)."""
    returns: list[float]
    """Episode returns."""


def record_rollout(
    student: FactoredStudent,
    planning: MPPIConfig,
    task: str,
    task_id: int,
    cfg: VizConfig,
    on_step,
) -> Rollout:
    """Run ``cfg.episodes`` episodes of ``task`` with the student's planner and record them."""
    planner = RecordingPlanner(StudentPlanningModel(student), planning, generator=cfg.seed)
    stats = run_episodes(
        planner,
        task,
        task_id,
        student.config.obs_dim,
        EpisodeConfig.of(cfg),
        cfg.device,
        on_step=on_step,
    )
    plans = torch.stack(planner.plans)  # the planner drops agents no env of the batch has
    plans = F.pad(plans, (0, 0, 0, 0, 0, student.num_agents - plans.shape[2]))
    return Rollout(task, task_id, torch.stack(planner.observations), plans, stats.returns)


@torch.no_grad()
def plan_returns(
    student: FactoredStudent, obs: torch.Tensor, task_id: int, plans: torch.Tensor
) -> torch.Tensor:
    """Each agent's H-step return of its plan, as the decentralized planner scores it.

    ``G_k = sum_h gamma^h r_k(s_k^h, a_k^h) + gamma^H mean_q q_k(s_k^H, pi_k(s_k^H))`` on the
    agent's own latent rollout, with the policy prior's mean action at the end (the
    planner draws one; the mean keeps the plot free of that noise).

    Args:
        obs: ``[B, obs_dim]`` observations.
        plans: ``[B, N, H, G]`` agent action sequences.

    Returns:
        ``[B, N]``; exactly 0 for the task's padded agents.
    """
    task = torch.full(obs.shape[:1], task_id, dtype=torch.long, device=obs.device)
    cond = student.condition(task)
    s = student.encode(obs, task)
    total = torch.zeros(s.shape[:-1], dtype=s.dtype, device=s.device)
    weight = torch.ones_like(cond.discount).unsqueeze(-1)  # [B, 1]
    for h in range(plans.shape[2]):
        s, reward = student.step(s, plans[:, :, h], cond)
        total += weight * reward
        weight = weight * cond.discount.unsqueeze(-1)
    value = student.q(s, student.pi(s, cond).mean, cond).mean(dim=0)
    return total + weight * value


@torch.no_grad()
def expert_plan_returns(
    expert, obs: torch.Tensor, task_id: int, actions: torch.Tensor, seed: int
) -> torch.Tensor:
    """The expert's H-step return ``[B]`` of env action sequences ``actions [B, H, A]``."""
    if obs.shape[-1] != expert.obs_dim or actions.shape[-1] != expert.action_dim:
        raise InputError(
            f"the expert takes obs {expert.obs_dim} / actions {expert.action_dim}, the student "
            f"{obs.shape[-1]} / {actions.shape[-1]}: pass an expert of the student's task set"
        )
    model = ExpertPlanningModel(expert, generator=seed)
    task = torch.full(obs.shape[:1], task_id, dtype=torch.long, device=obs.device)
    state = model.initial_state(obs, task)
    return model.returns(state, actions[:, None, None], task)[:, 0, 0]


def joint_latents(
    student: FactoredStudent, rollouts: list[Rollout], stride: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Latents of the real agents of every ``stride``-th recorded state.

    Returns:
        ``(latents [P, m], agent index [P], task name [P])``.
    """
    latents, agents, tasks = [], [], []
    for r in rollouts:
        obs = r.obs[::stride].flatten(0, 1)  # [B, obs_dim]
        task = torch.full(obs.shape[:1], r.task_id, dtype=torch.long, device=obs.device)
        with torch.no_grad():
            s = student.encode(obs, task)  # [B, N, m]
        real = student.agent_mask(task) > 0  # [B, N]
        index = torch.arange(student.num_agents, device=obs.device).expand_as(real)
        latents.append(s[real].float().cpu().numpy())
        agents.append(index[real].cpu().numpy())
        tasks += [r.task] * int(real.sum())
    return np.concatenate(latents), np.concatenate(agents), tasks


def tsne_2d(points: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    """``[P, d] -> [P, 2]`` with scikit-learn's Barnes-Hut t-SNE (PCA initialisation)."""
    try:
        from sklearn.manifold import TSNE
    except ImportError as err:
        raise ImportError(
            "the t-SNE plots need scikit-learn: pip install -e '.[viz]' (or pip install scikit-learn)"
        ) from err
    if len(points) < 5:
        raise InputError(f"t-SNE needs at least 5 latents, got {len(points)}; run more steps")
    perplexity = min(perplexity, (len(points) - 1) / 3)  # sklearn needs perplexity < points
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)


def plot_scatter(xy: np.ndarray, labels: list[str], title: str, path: Path, dpi: float) -> Path:
    """One colour per distinct label (in sorted order)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=TSNE_FIGSIZE)
    ax = fig.subplots()
    labels_arr = np.asarray(labels)
    for i, label in enumerate(sorted(set(labels))):
        pick = labels_arr == label
        ax.scatter(*xy[pick].T, s=4, alpha=0.6, color=f"C{i % 10}", label=label, linewidths=0)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=3, fontsize=8, loc="best")
    fig.tight_layout()
    return save_figure(fig, path, dpi=dpi)


def plot_returns(
    student: FactoredStudent, rollout: Rollout, path: Path, cfg: VizConfig, expert=None
) -> Path:
    """Per-joint and global H-step returns over the first recorded episode of ``rollout``."""
    from matplotlib.figure import Figure

    obs, plans = rollout.obs[:, 0], rollout.plans[:, 0]  # [T, ...]
    per_agent = plan_returns(student, obs, rollout.task_id, plans).cpu().numpy()  # [T, N]
    groups = student.config.partitions[rollout.task_id]
    names = actuator_names(rollout.task)
    steps = np.arange(len(per_agent))
    fig = Figure(figsize=RETURNS_FIGSIZE, layout="constrained")
    ax = fig.subplots()
    for k, group in enumerate(groups):
        joints = "+".join(f"{j} {names[j]}".strip() for j in group)
        ax.plot(steps, per_agent[:, k], lw=1.0, color=f"C{k % 10}", label=f"joint {joints}")
    ax.plot(steps, per_agent.sum(axis=1), lw=2.0, color="black", label="global (sum)")
    ax.set_xlabel("env step")
    ax.set_ylabel("student H-step return")
    horizon = plans.shape[2]
    ax.set_title(
        f"{rollout.task}: H={horizon} returns of the executed plan "
        f"(episode return {rollout.returns[0]:.0f})"
    )
    handles, labels = ax.get_legend_handles_labels()
    if expert is not None:
        actions = student.merge_actions(plans.transpose(1, 2), torch.tensor(rollout.task_id))
        value = expert_plan_returns(expert, obs, rollout.task_id, actions, cfg.seed)
        twin = ax.twinx()
        (line,) = twin.plot(steps, value.cpu().numpy(), "--", lw=1.2, color="0.45")
        twin.set_ylabel("expert H-step return of the same plan")
        handles, labels = [*handles, line], [*labels, "expert (right axis)"]
    fig.legend(handles, labels, fontsize=8, ncol=4, loc="outside lower center")
    return save_figure(fig, path, dpi=cfg.dpi)


def run_viz(cfg: VizConfig) -> dict[str, Path]:
    """Record the student's episodes and write the plots; returns ``{plot: path}``."""
    if cfg.student is None:
        raise InputError("viz needs a student: pass student=<.ckpt or folder>")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    task_set = get_task_set(cfg.task_set)
    task_ids = {task: task_set.index(task) for task in cfg.tasks}
    models = models_of(cfg)  # the student, and the expert when one is given
    student = models[STUDENT].net
    expert = models[EXPERT].net if EXPERT in models else None
    planning = cfg.planning
    returns_task = cfg.returns_task or max(
        task_ids, key=lambda t: len(student.config.partitions[task_ids[t]])
    )
    if returns_task not in task_ids:
        raise InputError(f"returns_task={returns_task} is not one of tasks={list(task_ids)}")

    rollouts = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeRemainingColumn()) as progress:
        for task, task_id in task_ids.items():
            bar = progress.add_task(f"student {task}", total=cfg.max_steps or 500)
            on_step = lambda n, bar=bar: progress.update(bar, completed=n)  # noqa: E731
            rollouts.append(record_rollout(student, planning, task, task_id, cfg, on_step))

    out = Path(cfg.out)
    paths: dict[str, Path] = {}
    latents, agents, tasks = joint_latents(student, rollouts, cfg.stride)
    if len(latents) > cfg.max_points:  # t-SNE time grows with the points: a random subset
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(latents), cfg.max_points, False))
        latents, agents, tasks = latents[keep], agents[keep], [tasks[i] for i in keep]
    log.info("t-SNE of %d latents of dim %d", *latents.shape)
    xy = tsne_2d(latents, cfg.perplexity, cfg.seed)
    one_joint = all(len(g) == 1 for p in student.config.partitions for g in p)
    unit = "joint" if one_joint else "agent"
    paths["tsne_joints"] = plot_scatter(
        xy,
        [f"{unit} {k}" for k in agents],
        f"t-SNE of per-{unit} latents, by {unit} index",
        out / "tsne_joints.png",
        cfg.dpi,
    )
    paths["tsne_embodiments"] = plot_scatter(
        xy,
        [t.split("-")[0] for t in tasks],
        f"t-SNE of per-{unit} latents, by embodiment",
        out / "tsne_embodiments.png",
        cfg.dpi,
    )

    rollout = rollouts[list(task_ids).index(returns_task)]
    paths["returns"] = plot_returns(
        student, rollout, out / f"returns_{returns_task}.png", cfg, expert
    )
    for name, path in paths.items():
        print(f"{name}: {path}")
    return paths
