"""Run a planner in dm_control: batched episodes, returns, latency, optional video.

All episodes of one task run in lock-step, so every control step is ONE planner
call for all of them (the planner is batched over environments). Latency is
reported two ways: per batched call, and per single-environment call measured
apart (the number a robot would see).

How episodes are run is one :class:`EpisodeConfig` (episodes, env seeds, eval mode, episode
length, latency repeats), shared by every command that plans in dm_control: evaluate,
robustness, the budget sweep, viz (their top level) and training's evaluation (its ``eval``).

Why this lives in ``planning`` rather than ``analysis``: the training callback (one layer
above planning, one below analysis) plans episodes too, and both must run them the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mt_factored import tasks
from mt_factored.artifacts.atomic import atomic_write
from mt_factored.errors import InputError
from mt_factored.planning.mppi import MPPIPlanner

log = logging.getLogger(__name__)

ActionHook = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""Maps a batch of native actions ``[envs, action_dim]`` to what is applied (perturbations)."""


@dataclass(kw_only=True)
class EpisodeConfig:
    """How a model is run in dm_control (every field is a key of the commands' config)."""

    episodes: int = 10
    """Episodes per task, run in lock-step (env seeds ``seed .. seed + episodes - 1``)."""
    seed: int = 0
    """First env seed; also the seed of every planner and of its policy samples."""
    eval_mode: bool = True
    """true: act with the planner's mean; false: sample like during data collection."""
    max_steps: int | None = None
    """Cut episodes short (null: the task's 500 steps)."""
    latency_repeats: int = 10
    """Single-environment planning calls timed per task for the latency columns (0: skip)."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise InputError(f"episodes must be >= 1, got {self.episodes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"max_steps must be >= 1 or null, got {self.max_steps}")
        if self.latency_repeats < 0:
            raise InputError(f"latency_repeats must be >= 0, got {self.latency_repeats}")

    @classmethod
    def of(cls, config: Any) -> EpisodeConfig:
        """The episode settings of a command's config (a subclass instance or any object
        with these fields)."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})


@dataclass
class EpisodeStats:
    """Outcome of :func:`run_episodes` for one task."""

    task: str
    returns: list[float]
    plan_ms_per_call: float
    """Mean wall time of one batched planner call (all envs of the task)."""
    envs_per_call: int
    plan_ms_single_env: float | None = None
    """Mean wall time of one planner call for a single environment."""
    video: Path | None = None
    extra: dict = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(statistics.fmean(self.returns))

    @property
    def std(self) -> float:
        return float(statistics.pstdev(self.returns)) if len(self.returns) > 1 else 0.0


def pad_obs(obs: np.ndarray, obs_dim: int) -> np.ndarray:
    """Zero-pad ``[envs, native_dim]`` observations at the end to ``obs_dim``."""
    if obs.shape[-1] > obs_dim:
        raise ValueError(
            f"observation has {obs.shape[-1]} dims but the model takes {obs_dim}; "
            "this task does not fit the model's task set"
        )
    out = np.zeros((*obs.shape[:-1], obs_dim), dtype=np.float32)
    out[..., : obs.shape[-1]] = obs
    return out


@torch.inference_mode()
def run_episodes(
    planner: MPPIPlanner,
    task: str,
    task_id: int,
    obs_dim: int,
    config: EpisodeConfig | None = None,
    device: torch.device | str = "cpu",
    *,
    video_path: str | Path | None = None,
    video_size: tuple[int, int] = (240, 320),
    action_hook: ActionHook | None = None,
    on_step: Callable[[int], None] | None = None,
) -> EpisodeStats:
    """Plan and act in ``config.episodes`` copies of ``task`` (seeds ``seed + i``) until they end.

    Args:
        planner: a planner over a model whose observation size is ``obs_dim``.
        task, task_id: the task's name and its id in the model's task set.
        obs_dim: the model's observation size (native observations are zero-padded).
        config: episodes, seed, eval mode and episode length (its ``latency_repeats`` is
            for :func:`evaluate_tasks`).
        device: where the model lives.
        video_path: if given, the first episode is rendered to this mp4.
        action_hook: applied to the native actions before stepping (robustness tests).
        on_step: called with the number of finished control steps (progress bars).
    """
    config = config or EpisodeConfig()
    episodes, seed, eval_mode = config.episodes, config.seed, config.eval_mode
    envs = [tasks.make_env(task, seed=seed + i) for i in range(episodes)]  # dm_control loads here
    action_dim = envs[0].action_dim
    horizon = envs[0].max_episode_steps if config.max_steps is None else config.max_steps
    task_ids = torch.full((episodes,), task_id, dtype=torch.long, device=device)
    rng = np.random.default_rng(seed)
    planner.reset()

    obs = np.stack([env.reset() for env in envs])
    returns = np.zeros(episodes)
    frames: list[np.ndarray] = []
    call_ms: list[float] = []
    for step in range(horizon):
        if video_path is not None:
            frames.append(envs[0].render(*video_size))
        obs_t = torch.as_tensor(pad_obs(obs, obs_dim), device=device)
        start = time.perf_counter()
        action = planner.plan(obs_t, task_ids, t0=step == 0, eval_mode=eval_mode)
        call_ms.append((time.perf_counter() - start) * 1e3)
        native = action[:, :action_dim].float().cpu().numpy().astype(np.float64)
        if action_hook is not None:
            native = action_hook(native, rng)
        done = False
        next_obs = []
        for i, env in enumerate(envs):
            o, r, done, _ = env.step(native[i])
            returns[i] += r
            next_obs.append(o)
        obs = np.stack(next_obs)
        if on_step is not None:
            on_step(step + 1)
        if done:
            break

    video = None
    if video_path is not None:
        video = write_video(video_path, frames)
    # The first call pays for lazy initialisation; leave it out of the mean.
    timed = call_ms[1:] if len(call_ms) > 1 else call_ms
    return EpisodeStats(
        task=task,
        returns=[float(r) for r in returns],
        plan_ms_per_call=float(statistics.fmean(timed)),
        envs_per_call=episodes,
        video=video,
    )


def last_plan(planner: MPPIPlanner, task: torch.Tensor) -> torch.Tensor:
    """The planner's final sampling mean of its last call as environment actions ``[E, H, A]``."""
    mean = planner.last_stats.mean  # [E, agents, H, G]
    steps = [planner.model.to_env_action(mean[:, :, h], task) for h in range(mean.shape[2])]
    return torch.stack(steps, dim=1)


@torch.no_grad()
def visited_states(
    planner: MPPIPlanner,
    task: str,
    task_id: int,
    obs_dim: int,
    env_seeds: list[int],
    steps: int,
    device: torch.device | str = "cpu",
    labeller: MPPIPlanner | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Plan and act for ``steps`` control steps in one env per seed, in lock-step.

    Args:
        labeller: another planner (e.g. the expert's) that plans at every visited state too,
            warm-started along the same trajectory; its sequences are returned instead of the
            acting planner's, which still chooses the actions (DAgger's labels).

    Returns:
        (padded observations ``[steps * envs, obs_dim]``, the sequence planned at each
        ``[steps * envs, H, A]``), step by step, envs in seed order within a step.
    """
    envs = [tasks.make_env(task, seed=seed) for seed in env_seeds]
    ids = torch.full((len(envs),), task_id, dtype=torch.long, device=device)
    obs = np.stack([env.reset() for env in envs])
    obs_rows, plan_rows = [], []
    planner.reset()
    if labeller is not None:
        labeller.reset()
    for step in range(steps):
        padded = torch.as_tensor(pad_obs(obs, obs_dim), device=device)
        action = planner.plan(padded, ids, t0=step == 0)
        obs_rows.append(padded)
        if labeller is None:
            plan_rows.append(last_plan(planner, ids))
        else:
            labeller.plan(padded, ids, t0=step == 0)
            plan_rows.append(last_plan(labeller, ids))
        native = action.cpu().numpy().astype(np.float64)
        obs = np.stack([env.step(native[i, : env.action_dim])[0] for i, env in enumerate(envs)])
    return torch.cat(obs_rows), torch.cat(plan_rows)


@torch.inference_mode()
def single_env_latency_ms(
    planner: MPPIPlanner,
    task: str,
    task_id: int,
    obs_dim: int,
    repeats: int = 20,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> float:
    """Mean ms of one planner call for one environment (after one warm-up call)."""
    env = tasks.make_env(task, seed=seed)
    obs = torch.as_tensor(pad_obs(env.reset()[None], obs_dim), device=device)
    task_ids = torch.full((1,), task_id, dtype=torch.long, device=device)
    planner.reset()
    planner.plan(obs, task_ids, t0=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        planner.plan(obs, task_ids, t0=False)
        times.append((time.perf_counter() - start) * 1e3)
    return float(statistics.fmean(times))


def evaluate_tasks(
    planner: MPPIPlanner,
    task_ids: dict[str, int],
    obs_dim: int,
    config: EpisodeConfig | None = None,
    device: torch.device | str = "cpu",
    *,
    video_dir: str | Path | None = None,
    video_prefix: str = "",
    on_task: Callable[[str], Callable[[int], None] | None] | None = None,
) -> dict[str, EpisodeStats]:
    """:func:`run_episodes` for every task, plus single-env latency when
    ``config.latency_repeats > 0``.

    Args:
        task_ids: task name -> id in the model's task set, in evaluation order.
        video_dir: write ``<video_prefix><task>.mp4`` of each task's first episode there.
        on_task: called with the task name before it runs; may return an ``on_step`` callback.
    """
    config = config or EpisodeConfig()
    results = {}
    for task, task_id in task_ids.items():
        # Each task from the same seed: its result does not depend on the tasks before it
        # (evaluating [a, b] and [b] gives the same b, which the expert-result cache relies on).
        planner.reseed(config.seed)
        video = Path(video_dir) / f"{video_prefix}{task}.mp4" if video_dir is not None else None
        on_step = on_task(task) if on_task is not None else None
        stats = run_episodes(
            planner, task, task_id, obs_dim, config, device, video_path=video, on_step=on_step
        )
        if config.latency_repeats > 0:
            stats.plan_ms_single_env = single_env_latency_ms(
                planner,
                task,
                task_id,
                obs_dim,
                repeats=config.latency_repeats,
                seed=config.seed,
                device=device,
            )
        stats.extra["budget"] = planner.budget
        log.info(
            "%s: return %.1f ± %.1f over %d episodes, %.1f ms per planning call",
            task,
            stats.mean,
            stats.std,
            len(stats.returns),
            stats.plan_ms_per_call,
        )
        results[task] = stats
    return results


def write_video(path: str | Path, frames: list[np.ndarray], fps: int = 30) -> Path | None:
    """Write frames to mp4 (needs the ``video`` extra: imageio-ffmpeg). Returns the path."""
    path = Path(path)
    try:
        import imageio.v2 as imageio

        return atomic_write(
            path, lambda tmp: imageio.mimsave(tmp, frames, fps=fps), keep_suffix=True
        )
    except (ImportError, ValueError, RuntimeError) as err:
        log.warning(
            "could not write %s (%s); install the video extra: pip install -e '.[video]'",
            path,
            err,
        )
        return None
