"""Online single-task TD-MPC2 training (TD-MPC2 paper, Appendix A).

Two pieces:

- `TDMPC2Learner`: one gradient update from a batch of H-step windows. World-model
  loss = consistency (rho-discounted MSE between `next(z)` and the no-grad encoding of
  the next observation) * consistency_coef + two-hot reward CE * reward_coef + two-hot
  Q CE * value_coef, the TD target being `r + gamma * avg(2 random target Qs at
  pi(z'))`; every term averaged over the horizon (and the Q ensemble). Then the policy
  loss `-(Q / scale + entropy_coef * scaled_entropy)` on the detached latents, with
  the online Q's weights detached and `scale` a running 5th-95th percentile range of
  Q; then the EMA of the Q ensemble into its target.
- `OnlineTrainer`: seed steps of uniform random actions, then MPPI acting (exploration
  mode) with one update per environment step (after pre-training on the seed data),
  a replay buffer of whole episodes, periodic evaluation (MPPI eval mode), dataset
  chunks of every episode in the public format, CSV logs, public checkpoints, and a
  training-state file written atomically at episode boundaries so that re-running the
  same command continues exactly where it stopped.

Every number comes from the recipe (`recipes/expert_train.yaml`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mt_factored.constants import ACTION, OBS, RECIPES_DIR, REWARD, TASK
from mt_factored.expert.config import ExpertConfig
from mt_factored.expert.model import TDMPC2Expert
from mt_factored.expert.replay import EpisodeReplay

log = logging.getLogger(__name__)

STATE_FORMAT_VERSION = 1
STATE_NAME = "state.pt"
"""Training-state file in the run folder (optimisers, replay, RNGs, counters)."""
EXPERT_NAME = "expert.pt"
"""Public-layout checkpoint of the latest weights in the run folder."""
TRAIN_CSV, EVAL_CSV = "train.csv", "eval.csv"
TRAIN_FIELDS = (
    "step", "episode", "return", "wall_s", "updates", "consistency_loss", "reward_loss",
    "value_loss", "pi_loss", "pi_scale", "entropy", "grad_norm",
)
EVAL_FIELDS = ("step", "episode", "return", "return_std", "episodes", "wall_s")


# =============================================================================== config
def size_config(model_size: str | int) -> DictConfig:
    """`recipes/expert_size/<model_size>.yaml` (5, "5", "5M" and "cpu" all work)."""
    name = str(model_size).strip()
    folder = RECIPES_DIR / "expert_size"
    path = folder / f"{name}.yaml"
    if not path.is_file() and name.upper().endswith("M"):
        path = folder / f"{name[:-1]}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ValueError(f"unknown model_size={model_size!r}; sizes in {folder}: {', '.join(known)}")
    return OmegaConf.load(path)


def build_expert_config(task: str, model_size: str | int, overrides: Mapping | None = None) -> ExpertConfig:
    """Single-task `ExpertConfig` of `task`: a published size (`base`) plus the size
    file's and the recipe's `model.*` overrides."""
    size = OmegaConf.to_container(size_config(model_size), resolve=True)
    size.update(dict(overrides or {}))
    base = size.pop("base")
    return dataclasses.replace(ExpertConfig.single_task(task, base), **size)


def resolve_device(device: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; anything else as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# =============================================================================== learner
class RunningScale(nn.Module):
    """Running scale of Q for the policy loss: EMA (rate `tau`) of the 5th-95th
    percentile range of a batch of values, at least 1 (TD-MPC2's RunningScale)."""

    def __init__(self, tau: float, percentiles: tuple[float, float] = (5.0, 95.0)) -> None:
        super().__init__()
        self.tau = tau
        self.register_buffer("value", torch.ones(1))
        self.register_buffer("percentiles", torch.tensor(percentiles) / 100.0)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        low, high = torch.quantile(x.detach().float().flatten(), self.percentiles.to(x.device))
        self.value.lerp_((high - low).clamp(min=1.0).reshape(1), self.tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.value


class TDMPC2Learner:
    """TD-MPC2's update rule for one expert.

    Args:
        expert: the model (its `_target_Qs_params` is the EMA target).
        cfg: the recipe's `learner` block (lr, enc_lr_scale, pi_eps, grad_clip_norm, rho,
            consistency_coef, reward_coef, value_coef, entropy_coef, target_tau, scale_tau).
        task: task id for a multi-task expert, None for a single-task one.
    """

    def __init__(self, expert: TDMPC2Expert, cfg: Mapping, task: int | None = None) -> None:
        self.expert, self.cfg, self.task = expert, cfg, task
        groups = expert.parameter_groups()
        lr = float(cfg["lr"])
        self.optim = torch.optim.Adam(
            [
                {"params": groups["encoder"], "lr": lr * float(cfg["enc_lr_scale"])},
                {"params": groups["dynamics"]},
                {"params": groups["reward"]},
                {"params": groups["q"]},
                {"params": groups["task_emb"]},
            ],
            lr=lr,
        )
        self.pi_optim = torch.optim.Adam(groups["pi"], lr=lr, eps=float(cfg["pi_eps"]))
        device = next(expert.parameters()).device
        self.scale = RunningScale(float(cfg["scale_tau"])).to(device)
        self.updates = 0

    def _task(self, like: torch.Tensor) -> torch.Tensor | None:
        if self.task is None:
            return None
        return torch.full(like.shape[:-1], self.task, dtype=torch.long, device=like.device)

    def discount(self) -> float:
        return float(self.expert.discounts[self.task or 0])

    def update(self, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """One model + policy update from time-major windows (`obs [H+1, B, O]`,
        `action [H, B, A]`, `reward [H, B]`); returns the losses as floats."""
        cfg, m = self.cfg, self.expert
        obs, action = batch[OBS], batch[ACTION]
        reward = batch[REWARD].unsqueeze(-1)
        horizon = action.shape[0]
        rho = float(cfg["rho"])
        weights = rho ** torch.arange(horizon, device=obs.device, dtype=obs.dtype)
        task = self._task(obs[0])
        task_h = None if task is None else task.expand(horizon, -1)
        if m.config.multitask:
            m.renorm_task_emb_()

        with torch.no_grad():
            next_z = m.encode(obs[1:], task_h)
            next_pi = m.pi(next_z, task_h).action
            td_target = reward + self.discount() * m.q_avg(next_z, next_pi, task_h, target=True)

        m.train()
        z = m.encode(obs[0], task)
        zs = [z]
        consistency = obs.new_zeros(())
        for t in range(horizon):
            z = m.next(z, action[t], task)
            consistency = consistency + F.mse_loss(z, next_z[t]) * weights[t]
            zs.append(z)
        latents = torch.stack(zs)  # [H+1, B, L]
        rollout = latents[:-1]
        reward_ce = m.regression.cross_entropy(m.reward_logits(rollout, action, task_h), reward)
        q_ce = m.regression.cross_entropy(m.q_logits(rollout, action, task_h), td_target)
        consistency_loss = consistency / horizon
        reward_loss = (reward_ce.mean(dim=(1, 2)) * weights).sum() / horizon
        value_loss = (q_ce.mean(dim=(2, 3)) * weights).sum() / (horizon * q_ce.shape[0])
        total = (
            float(cfg["consistency_coef"]) * consistency_loss
            + float(cfg["reward_coef"]) * reward_loss
            + float(cfg["value_coef"]) * value_loss
        )
        total.backward()
        grad_norm = nn.utils.clip_grad_norm_(m.parameters(), float(cfg["grad_clip_norm"]))
        self.optim.step()
        self.optim.zero_grad(set_to_none=True)

        pi_info = self._update_pi(latents.detach(), task)
        m.soft_update_target(float(cfg["target_tau"]))
        m.eval()
        self.updates += 1
        return {
            "consistency_loss": float(consistency_loss),
            "reward_loss": float(reward_loss),
            "value_loss": float(value_loss),
            "grad_norm": float(grad_norm),
            **pi_info,
        }

    def _update_pi(self, latents: torch.Tensor, task: torch.Tensor | None) -> dict[str, float]:
        cfg, m = self.cfg, self.expert
        steps = latents.shape[0]
        task_h = None if task is None else task.expand(steps, -1)
        policy = m.pi(latents, task_h)
        q = m.q_avg(latents, policy.action, task_h, detach=True)  # [H+1, B, 1]
        self.scale.update(q[0])
        q = self.scale(q)
        weights = float(cfg["rho"]) ** torch.arange(steps, device=q.device, dtype=q.dtype)
        objective = float(cfg["entropy_coef"]) * policy.scaled_entropy + q
        pi_loss = (-objective.mean(dim=(1, 2)) * weights).mean()
        pi_loss.backward()
        nn.utils.clip_grad_norm_(m.parameter_groups()["pi"], float(cfg["grad_clip_norm"]))
        self.pi_optim.step()
        self.pi_optim.zero_grad(set_to_none=True)
        # Q-side grads of the detached ensemble are None; drop any left on the encoder/task emb.
        m.zero_grad(set_to_none=True)
        return {
            "pi_loss": float(pi_loss),
            "pi_scale": float(self.scale.value),
            "entropy": float(policy.entropy.mean()),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "optim": self.optim.state_dict(),
            "pi_optim": self.pi_optim.state_dict(),
            "scale": self.scale.state_dict(),
            "updates": self.updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optim.load_state_dict(state["optim"])
        self.pi_optim.load_state_dict(state["pi_optim"])
        self.scale.load_state_dict(state["scale"])
        self.updates = int(state["updates"])


# =============================================================================== helpers
def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _Csv:
    """Append-only CSV that can be cut back to the rows of a resumed state."""

    def __init__(self, path: Path, fields: tuple[str, ...]) -> None:
        self.path, self.fields = path, fields

    def truncate(self, max_episode: int) -> None:
        """Keeps the rows with episode <= max_episode (rows written after the last state)."""
        if not self.path.is_file():
            return
        with open(self.path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["episode"]) <= max_episode]
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, self.fields)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: Mapping[str, Any]) -> None:
        new = not self.path.is_file()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _fmt(row.get(k, "")) for k in self.fields})


def _fmt(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


class ChunkRecorder:
    """Collects finished episodes and writes them as public-format chunks.

    Observations are zero-padded to the task set's observation size, actions to its
    action size; `action[0]` and `reward[0]` are NaN; `task` is the task's id in the
    task set (int32, as in the public mt30 chunks).
    """

    def __init__(
        self, folder: Path, task_id: int, obs_dim: int, action_dim: int, episodes_per_chunk: int
    ) -> None:
        self.folder, self.task_id = folder, task_id
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.episodes_per_chunk = episodes_per_chunk
        self.pending: list[dict[str, np.ndarray]] = []
        self.chunks_written = 0

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray) -> Path | None:
        """Adds an episode (`obs [T+1, o]`, `action [T, a]`, `reward [T]`); returns the
        chunk written when this episode completes one."""
        frames = len(obs)
        padded_obs = np.zeros((frames, self.obs_dim), np.float32)
        padded_obs[:, : obs.shape[1]] = obs
        padded_action = np.zeros((frames, self.action_dim), np.float32)
        padded_action[0] = np.nan
        padded_action[1:, : action.shape[1]] = action
        padded_reward = np.concatenate([[np.nan], reward]).astype(np.float32)
        self.pending.append({OBS: padded_obs, ACTION: padded_action, REWARD: padded_reward})
        if len(self.pending) >= self.episodes_per_chunk:
            return self.flush()
        return None

    def flush(self) -> Path | None:
        """Writes the pending episodes (if any) as the next chunk."""
        if not self.pending:
            return None
        from mt_factored.data.chunks import write_chunk

        data = {k: torch.from_numpy(np.stack([e[k] for e in self.pending])) for k in (OBS, ACTION, REWARD)}
        data[TASK] = torch.full(data[REWARD].shape, self.task_id, dtype=torch.int32)
        path = write_chunk(self.folder / f"chunk_{self.chunks_written}.pt", data)
        self.chunks_written += 1
        self.pending = []
        return path

    def state_dict(self) -> dict[str, Any]:
        return {"pending": list(self.pending), "chunks_written": self.chunks_written}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.pending = list(state["pending"])
        self.chunks_written = int(state["chunks_written"])


# =============================================================================== trainer
class OnlineTrainer:
    """Trains one single-task TD-MPC2 expert online; see the module docstring.

    Args:
        cfg: the composed `expert_train` recipe (task, model_size, model, steps,
            seed_steps, replay, learner, planning, eval, record, checkpoint, stop,
            run_dir, export, device, threads, seed).
    """

    def __init__(self, cfg: DictConfig) -> None:
        from mt_factored.planning import ExpertPlanningModel, MPPIConfig, MPPIPlanner
        from mt_factored.tasks import get_task, get_task_set, make_env

        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir)
        self.device = resolve_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        self.spec = get_task(cfg.task)
        self.episode_length = int(cfg.max_episode_steps or self.spec.episode_length)
        self.seed_steps = int(
            cfg.seed_steps
            if cfg.seed_steps is not None
            else max(1000, 5 * self.episode_length)
        )
        if self.seed_steps < self.episode_length:
            raise ValueError(
                f"seed_steps ({self.seed_steps}) must cover at least one episode "
                f"({self.episode_length} steps): updates start from complete episodes"
            )

        torch.manual_seed(int(cfg.seed))
        self.expert_config = build_expert_config(cfg.task, cfg.model_size, cfg.model)
        self.expert = TDMPC2Expert(self.expert_config).to(self.device).eval()
        self.learner = TDMPC2Learner(self.expert, cfg.learner)
        self.replay = EpisodeReplay(
            self.expert_config.obs_dim,
            self.expert_config.action_dim,
            capacity=int(cfg.replay.capacity),
            horizon=int(cfg.replay.horizon),
            batch_size=int(cfg.replay.batch_size),
            seed=int(cfg.seed),
        )
        self.env = make_env(cfg.task, seed=int(cfg.seed))
        self.action_rng = np.random.Generator(np.random.PCG64(int(cfg.seed) + 1))
        self.plan_gen = torch.Generator(device=self.device)
        self.plan_gen.manual_seed(int(cfg.seed) + 2)
        self.mppi = MPPIConfig(**OmegaConf.to_container(cfg.planning, resolve=True))
        self.planner = MPPIPlanner(
            ExpertPlanningModel(self.expert, generator=self.plan_gen), self.mppi, generator=self.plan_gen
        )
        data_set = get_task_set(cfg.record.task_set)
        self.recorder = ChunkRecorder(
            self.run_dir / "data",
            task_id=data_set.index(cfg.task),
            obs_dim=data_set.max_obs_dim,
            action_dim=data_set.max_action_dim,
            episodes_per_chunk=int(cfg.record.episodes_per_chunk),
        )
        self.train_csv = _Csv(self.run_dir / TRAIN_CSV, TRAIN_FIELDS)
        self.eval_csv = _Csv(self.run_dir / EVAL_CSV, EVAL_FIELDS)
        self.step = 0
        self.episode = 0
        self.last_eval_step: int | None = None
        self.wall_s = 0.0  # training wall time over all invocations
        self.last_return = math.nan
        self.last_eval = math.nan
        self._episode_metrics: list[dict[str, float]] = []

    # ---------------------------------------------------------------- state
    def _identity(self) -> dict[str, Any]:
        """What a resumed run must share with the saved one."""
        return {
            "task": self.cfg.task,
            "expert_config": self.expert_config.to_dict(),
            "episode_length": self.episode_length,
            "seed": int(self.cfg.seed),
        }

    def state_dict(self) -> dict[str, Any]:
        rng = {
            "torch": torch.get_rng_state(),
            "numpy_actions": self.action_rng.bit_generator.state,
            "planner": self.plan_gen.get_state(),
            "env": self.env.task.random.get_state(),
        }
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "format": STATE_FORMAT_VERSION,
            "identity": self._identity(),
            "step": self.step,
            "episode": self.episode,
            "last_eval_step": self.last_eval_step,
            "wall_s": self.wall_s,
            "last_return": self.last_return,
            "last_eval": self.last_eval,
            "model": self.expert.state_dict(),
            "learner": self.learner.state_dict(),
            "replay": self.replay.state_dict(),
            "recorder": self.recorder.state_dict(),
            "rng": rng,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT_VERSION:
            raise ValueError(f"training state format {state.get('format')} != {STATE_FORMAT_VERSION}")
        if state["identity"] != self._identity():
            raise ValueError(
                f"{self.run_dir / STATE_NAME} belongs to another run: saved "
                f"{json.dumps(state['identity'])}, this command {json.dumps(self._identity())}. "
                "Use another run_dir (or delete that folder to start over)."
            )
        self.step, self.episode = int(state["step"]), int(state["episode"])
        self.last_eval_step = state["last_eval_step"]
        self.wall_s = float(state["wall_s"])
        self.last_return, self.last_eval = state["last_return"], state["last_eval"]
        self.expert.load_state_dict(state["model"])
        self.learner.load_state_dict(state["learner"])
        self.replay.load_state_dict(state["replay"])
        self.recorder.load_state_dict(state["recorder"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.action_rng.bit_generator.state = rng["numpy_actions"]
        self.plan_gen.set_state(rng["planner"])
        self.env.task.random.set_state(rng["env"])
        self.train_csv.truncate(self.episode)
        self.eval_csv.truncate(self.episode)

    def save(self) -> None:
        """Writes the training state and the public checkpoint (both atomically)."""
        _atomic_torch_save(self.state_dict(), self.run_dir / STATE_NAME)
        self.expert.save_checkpoint(self.run_dir / EXPERT_NAME)

    def maybe_resume(self) -> bool:
        path = self.run_dir / STATE_NAME
        if self.cfg.resume and path.is_file():
            state = torch.load(path, map_location=self.device, weights_only=False)
            self.load_state_dict(state)
            log.info("resumed %s at step %d, episode %d", path, self.step, self.episode)
            return True
        return False

    # ---------------------------------------------------------------- acting
    @torch.inference_mode()
    def act(self, obs: np.ndarray, t0: bool, eval_mode: bool = False) -> np.ndarray:
        """MPPI action for one observation (exploration noise unless eval_mode)."""
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=self.device)[None]
        task = torch.zeros(1, dtype=torch.long, device=self.device)
        action = self.planner.plan(obs_t, task, t0=t0, eval_mode=eval_mode)
        return action[0, : self.spec.action_dim].float().cpu().numpy()

    def run_episode(self) -> dict[str, Any]:
        """One training episode: act, learn every step after the seed steps, store it."""
        obs = self.env.reset()
        observations, actions, rewards = [obs], [], []
        self._episode_metrics = []
        for t in range(self.episode_length):
            if self.step > self.seed_steps:
                action = self.act(obs, t0=t == 0, eval_mode=False)
            else:
                action = self.action_rng.uniform(-1.0, 1.0, self.spec.action_dim).astype(np.float32)
            obs, reward, done, _ = self.env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            if self.step >= self.seed_steps:
                updates = self.seed_steps if self.step == self.seed_steps else 1
                if updates > 1:
                    log.info("pre-training on the seed data (%d updates)", updates)
                for _ in range(updates * int(self.cfg.updates_per_step)):
                    self._episode_metrics.append(self.learner.update(self.replay.sample(self.device)))
            self.step += 1
            if done:
                break
        episode = {
            OBS: np.stack(observations).astype(np.float32),
            ACTION: np.stack(actions).astype(np.float32),
            REWARD: np.asarray(rewards, np.float32),
        }
        self.replay.add(episode[OBS], episode[ACTION], episode[REWARD])
        self.episode += 1
        return episode

    def evaluate(self) -> list[float]:
        """`eval.episodes` episodes in MPPI eval mode (own seeds and planner RNG)."""
        from mt_factored.planning import ExpertPlanningModel, MPPIPlanner
        from mt_factored.planning.episodes import run_episodes

        seed = int(self.cfg.eval.seed)
        planner = MPPIPlanner(ExpertPlanningModel(self.expert, generator=seed), self.mppi, generator=seed)
        self.expert.eval()
        stats = run_episodes(
            planner,
            self.cfg.task,
            0,
            self.expert_config.obs_dim,
            episodes=int(self.cfg.eval.episodes),
            seed=seed,
            device=self.device,
            eval_mode=True,
            max_steps=self.episode_length,
        )
        return stats.returns

    # ---------------------------------------------------------------- loop
    def _eval_due(self, final: bool) -> bool:
        every = int(self.cfg.eval.every_steps or 0)
        if self.step <= self.seed_steps and not final:
            return False
        if final and self.cfg.eval.at_end:
            return self.last_eval_step != self.step
        if every <= 0:
            return False
        last = -1 if self.last_eval_step is None else self.last_eval_step // every
        return self.step // every > last

    def _after_episode(self, episode: Mapping[str, np.ndarray], started: float, final: bool) -> None:
        ret = float(episode[REWARD].sum())
        self.last_return = ret
        self.recorder.add(episode[OBS], episode[ACTION], episode[REWARD])
        metrics = {}
        if self._episode_metrics:
            keys = self._episode_metrics[0]
            metrics = {k: float(np.mean([m[k] for m in self._episode_metrics])) for k in keys}
        self.wall_s += time.perf_counter() - started
        self.train_csv.write(
            {"step": self.step, "episode": self.episode, "return": ret, "wall_s": self.wall_s,
             "updates": self.learner.updates, **metrics}
        )
        if self._eval_due(final):
            t = time.perf_counter()
            returns = self.evaluate()
            self.wall_s += time.perf_counter() - t
            self.last_eval, self.last_eval_step = float(np.mean(returns)), self.step
            self.eval_csv.write(
                {"step": self.step, "episode": self.episode, "return": self.last_eval,
                 "return_std": float(np.std(returns)), "episodes": len(returns), "wall_s": self.wall_s}
            )
            log.info("eval at step %d: %.1f ± %.1f over %d episodes", self.step,
                     self.last_eval, float(np.std(returns)), len(returns))
        if final:
            self.recorder.flush()
        every = int(self.cfg.checkpoint.every_episodes)
        if final or self.episode % every == 0:
            self.save()

    def train(self) -> dict[str, Any]:
        """Runs (or continues) training until `steps` or a stop condition; returns a summary."""
        from tqdm.auto import tqdm

        self.run_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.cfg, self.run_dir / "config.yaml", resolve=True)
        self.maybe_resume()
        steps = int(self.cfg.steps)
        total_params = self.expert.num_learnable_parameters()
        log.info("%s: %d learnable parameters, %s", self.cfg.task, total_params, self.device)
        stop_episodes = self.cfg.stop.episodes
        stop_seconds = None if self.cfg.stop.wall_minutes is None else 60 * float(self.cfg.stop.wall_minutes)
        start, ran = time.perf_counter(), 0
        bar = tqdm(
            total=steps, initial=min(self.step, steps), unit="step", dynamic_ncols=True,
            disable=not self.cfg.progress_bar, mininterval=1.0 if sys.stderr.isatty() else 30.0,
            desc=self.cfg.task,
        )
        try:
            while self.step < steps:
                if stop_episodes is not None and ran >= int(stop_episodes):
                    break
                if stop_seconds is not None and time.perf_counter() - start >= stop_seconds:
                    break
                began, step0 = time.perf_counter(), self.step
                episode = self.run_episode()
                ran += 1
                self._after_episode(episode, began, final=self.step >= steps)
                bar.update(self.step - step0)
                bar.set_postfix(ret=f"{self.last_return:.1f}", eval=f"{self.last_eval:.1f}")
                log.info("step %d episode %d return %.1f", self.step, self.episode, self.last_return)
        finally:
            bar.close()
        finished = self.step >= steps
        if finished and self.cfg.export:
            self.expert.save_checkpoint(self.cfg.export)
            log.info("exported %s", self.cfg.export)
        return {
            "step": self.step,
            "episode": self.episode,
            "finished": finished,
            "last_return": self.last_return,
            "last_eval": self.last_eval,
            "wall_s": self.wall_s,
            "parameters": total_params,
            "run_dir": str(self.run_dir),
        }
