"""Online single-task TD-MPC2 training (TD-MPC2 paper, Appendix A).

`OnlineTrainer`: seed steps of uniform random actions, then MPPI acting (exploration mode)
with one update per environment step (after pre-training on the seed data), a replay buffer
of whole episodes, periodic evaluation (MPPI eval mode), public-format chunks of every
episode, CSV logs, public checkpoints, and a training state written atomically at episode
boundaries so that re-running the same command continues exactly where it stopped. The
update rule is `learner.TDMPC2Learner`; chunks and CSVs are `records`; with
`distill.enabled` a student is distilled as the expert trains (`distill.OnlineDistiller`).
Every number comes from the config (:class:`mt_factored.online.config.ExpertTrainConfig`).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from omegaconf import DictConfig

from mt_factored import tasks
from mt_factored.artifacts.atomic import save_torch, write_text
from mt_factored.artifacts.configs import as_object, plain
from mt_factored.artifacts.safe_pickle import load_torch
from mt_factored.constants import ACTION, OBS, REWARD
from mt_factored.errors import InputError, MismatchError
from mt_factored.expert.model import TDMPC2Expert
from mt_factored.online.config import ExpertTrainConfig, build_expert_config, resolve_device
from mt_factored.online.distill import build_online_distiller
from mt_factored.online.learner import TDMPC2Learner
from mt_factored.online.records import (
    EVAL_CSV,
    EVAL_FIELDS,
    TRAIN_CSV,
    TRAIN_FIELDS,
    ChunkRecorder,
    CsvLog,
)
from mt_factored.online.replay import EpisodeReplay
from mt_factored.online.rng import capture_rng, restore_rng
from mt_factored.planning import ExpertPlanningModel, MPPIPlanner
from mt_factored.planning.episodes import EpisodeConfig, run_episodes

log = logging.getLogger(__name__)

STATE_FORMAT_VERSION = 1
STATE_NAME = "state.pt"
"""Training-state file in the run folder (optimisers, replay, RNGs, counters)."""
EXPERT_NAME = "expert.pt"
"""Public-layout checkpoint of the latest weights in the run folder."""


class OnlineTrainer:
    """Trains one single-task TD-MPC2 expert online; see the module docstring.

    Args:
        cfg: the `expert_train` config (:class:`ExpertTrainConfig`, or the composed recipe).
    """

    def __init__(self, cfg: ExpertTrainConfig | DictConfig) -> None:
        cfg = as_object(cfg)
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir)
        self.device = resolve_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(int(cfg.threads))
        self.spec = tasks.get_task(cfg.task)
        self.episode_length = int(cfg.max_episode_steps or self.spec.episode_length)
        self.seed_steps = int(
            cfg.seed_steps if cfg.seed_steps is not None else max(1000, 5 * self.episode_length)
        )
        if self.seed_steps < self.episode_length:
            raise InputError(
                f"seed_steps ({self.seed_steps}) must cover at least one episode "
                f"({self.episode_length} steps): updates start from complete episodes"
            )

        torch.manual_seed(int(cfg.seed))
        self.expert_config = build_expert_config(cfg.task, cfg.model_size, cfg.model)
        self.expert = TDMPC2Expert(self.expert_config).to(self.device).eval()
        self.learner = TDMPC2Learner(self.expert, cfg.learner)
        # None unless distill.enabled; every use below is guarded, so without it nothing changes.
        self.distiller = build_online_distiller(cfg, self.expert, self.seed_steps, self.device)
        self.replay = EpisodeReplay(
            self.expert_config.obs_dim,
            self.expert_config.action_dim,
            capacity=int(cfg.replay.capacity),
            horizon=int(cfg.replay.horizon),
            batch_size=int(cfg.replay.batch_size),
            seed=int(cfg.seed),
        )
        self.env = tasks.make_env(cfg.task, seed=int(cfg.seed))
        self.action_rng = np.random.Generator(np.random.PCG64(int(cfg.seed) + 1))
        self.plan_gen = torch.Generator(device=self.device)
        self.plan_gen.manual_seed(int(cfg.seed) + 2)
        self.mppi = cfg.planning
        self.planner = MPPIPlanner(
            ExpertPlanningModel(self.expert, generator=self.plan_gen),
            self.mppi,
            generator=self.plan_gen,
        )
        data_set = tasks.get_task_set(cfg.record.task_set)
        self.recorder = ChunkRecorder(
            self.run_dir / "data",
            task_id=data_set.index(cfg.task),
            obs_dim=data_set.max_obs_dim,
            action_dim=data_set.max_action_dim,
            episodes_per_chunk=int(cfg.record.episodes_per_chunk),
        )
        train_fields, eval_fields = TRAIN_FIELDS, EVAL_FIELDS
        if self.distiller is not None:  # student columns after the expert's
            train_fields += self.distiller.train_fields
            eval_fields += self.distiller.EVAL_FIELDS
        self.train_csv = CsvLog(self.run_dir / TRAIN_CSV, train_fields)
        self.eval_csv = CsvLog(self.run_dir / EVAL_CSV, eval_fields)
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
        identity = {
            "task": self.cfg.task,
            "expert_config": self.expert_config.to_dict(),
            "episode_length": self.episode_length,
            "seed": int(self.cfg.seed),
        }
        if self.distiller is not None:
            identity["distill"] = self.distiller.identity()
        return identity

    def state_dict(self) -> dict[str, Any]:
        rng = capture_rng(self.action_rng, self.plan_gen, self.env.task.random)
        state = {
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
        if self.distiller is not None:
            state["distill"] = self.distiller.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT_VERSION:
            raise MismatchError(
                f"training state format {state.get('format')} != {STATE_FORMAT_VERSION}"
            )
        if state["identity"] != self._identity():
            raise MismatchError(
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
        if self.distiller is not None:
            self.distiller.load_state_dict(state["distill"])
        restore_rng(state["rng"], self.action_rng, self.plan_gen, self.env.task.random)
        self.train_csv.truncate(self.episode)
        self.eval_csv.truncate(self.episode)

    def save(self) -> None:
        """Writes the training state and the public checkpoint (both atomically), and the
        student's folder (<run_dir>/student) when distilling."""
        save_torch(self.state_dict(), self.run_dir / STATE_NAME)
        self.expert.save_checkpoint(self.run_dir / EXPERT_NAME)
        if self.distiller is not None:
            self.distiller.save(self.run_dir / self.distiller.FOLDER, self.step)

    def maybe_resume(self) -> bool:
        path = self.run_dir / STATE_NAME
        if self.cfg.resume and path.is_file():
            state = load_torch(path, map_location=self.device)  # runs no code from the file
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
                    self._episode_metrics.append(
                        self.learner.update(self.replay.sample(self.device))
                    )
                    if self.distiller is not None:  # the student tracks the updated expert
                        self.distiller.after_expert_update(self.replay, self.step)
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
        seed = int(self.cfg.eval.seed)
        planner = MPPIPlanner(
            ExpertPlanningModel(self.expert, generator=seed), self.mppi, generator=seed
        )
        self.expert.eval()
        episodes = EpisodeConfig(
            episodes=int(self.cfg.eval.episodes), seed=seed, max_steps=self.episode_length
        )
        obs_dim = self.expert_config.obs_dim
        return run_episodes(planner, self.cfg.task, 0, obs_dim, episodes, self.device).returns

    # ---------------------------------------------------------------- loop
    def _eval_due(self, final: bool) -> bool:
        every = int(self.cfg.eval.every_steps or 0)
        if self.step <= self.seed_steps and not final:
            return False
        if final and self.cfg.eval.at_end:
            return self.last_eval_step != self.step
        if every <= 0:
            return False
        last = 0 if self.last_eval_step is None else self.last_eval_step // every
        return self.step // every > last

    def _after_episode(
        self, episode: Mapping[str, np.ndarray], started: float, final: bool
    ) -> None:
        ret = float(episode[REWARD].sum())
        self.last_return = ret
        self.recorder.add(episode[OBS], episode[ACTION], episode[REWARD])
        metrics = {}
        if self._episode_metrics:
            keys = self._episode_metrics[0]
            metrics = {k: float(np.mean([m[k] for m in self._episode_metrics])) for k in keys}
        if self.distiller is not None:
            metrics.update(self.distiller.pop_metrics())
        self.wall_s += time.perf_counter() - started
        self.train_csv.write(
            {
                "step": self.step,
                "episode": self.episode,
                "return": ret,
                "wall_s": self.wall_s,
                "updates": self.learner.updates,
                **metrics,
            }
        )
        if self._eval_due(final):
            t = time.perf_counter()
            returns = self.evaluate()
            student = {}
            if self.distiller is not None:  # the student plans alone, same episodes
                ev = self.cfg.eval
                student = self.distiller.evaluate(
                    self.mppi, int(ev.episodes), int(ev.seed), self.episode_length
                )
            self.wall_s += time.perf_counter() - t
            self.last_eval, self.last_eval_step = float(np.mean(returns)), self.step
            self.eval_csv.write(
                {
                    "step": self.step,
                    "episode": self.episode,
                    "return": self.last_eval,
                    "return_std": float(np.std(returns)),
                    "episodes": len(returns),
                    "wall_s": self.wall_s,
                    **student,
                }
            )
            log.info(
                "eval at step %d: %.1f ± %.1f over %d episodes",
                self.step,
                self.last_eval,
                float(np.std(returns)),
                len(returns),
            )
        if final:
            self.recorder.flush()
        every = int(self.cfg.checkpoint.every_episodes)
        if final or self.episode % every == 0:
            self.save()

    def train(self) -> dict[str, Any]:
        """Runs (or continues) training until `steps` or a stop condition; returns a summary."""
        from tqdm.auto import tqdm

        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_text(self.run_dir / "config.yaml", yaml.safe_dump(plain(self.cfg), sort_keys=False))
        if not self.maybe_resume():  # a fresh run: drop logs of an earlier one in run_dir
            self.train_csv.truncate(0)
            self.eval_csv.truncate(0)
        steps = int(self.cfg.steps)
        total_params = self.expert.num_learnable_parameters()
        log.info("%s: %d learnable parameters, %s", self.cfg.task, total_params, self.device)
        stop_episodes = self.cfg.stop.episodes
        stop_seconds = (
            None if self.cfg.stop.wall_minutes is None else 60 * float(self.cfg.stop.wall_minutes)
        )
        start, ran = time.perf_counter(), 0
        bar = tqdm(
            total=steps,
            initial=min(self.step, steps),
            unit="step",
            dynamic_ncols=True,
            disable=not self.cfg.progress_bar,
            mininterval=1.0 if sys.stderr.isatty() else 30.0,
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
                postfix = {"ret": f"{self.last_return:.1f}", "eval": f"{self.last_eval:.1f}"}
                if self.distiller is not None:
                    postfix.update(self.distiller.postfix())
                bar.set_postfix(postfix)
                log.info(
                    "step %d episode %d return %.1f", self.step, self.episode, self.last_return
                )
        finally:
            bar.close()
        finished = self.step >= steps
        if finished and self.cfg.export:
            self.expert.save_checkpoint(self.cfg.export)
            log.info("exported %s", self.cfg.export)
        if finished and self.distiller is not None and self.cfg.distill.export:
            self.distiller.save(Path(self.cfg.distill.export), self.step)
        return {
            "step": self.step,
            "episode": self.episode,
            "finished": finished,
            "last_return": self.last_return,
            "last_eval": self.last_eval,
            "wall_s": self.wall_s,
            "parameters": total_params,
            "run_dir": str(self.run_dir),
            **(self.distiller.summary() if self.distiller is not None else {}),
        }
