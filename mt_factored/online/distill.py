"""Online distillation (Fac-TDMPC Appendix C.1): a factored student tracks the expert as it trains.

`OnlineDistiller` lives inside the online expert trainer (`trainer.OnlineTrainer`). After
every expert update it takes `updates_per_step` student updates, each on windows drawn
from the expert's own replay buffer with the *current* expert as the frozen teacher
(the offline losses, `mt_factored.distill.distill_losses`), with its own Adam optimiser
and gradient clipping. At the expert's evaluation points the student plans on its own
(decentralized MPPI, one agent per joint) and its return is logged beside the expert's.

The student never changes what the expert sees: it draws its windows with its own sampler
stream and batch size, and every random number it uses (initialisation, action noise, the
policy prior's samples) comes from torch's global RNG re-seeded per update inside a fork
that restores the expert's RNG state afterwards. So the expert of a run with a student is
the expert of the same run without one, bit for bit; and because the per-update seed
depends only on the update count, the state to resume exactly is the student's weights,
its optimiser, its update count and its window sampler.

The student works in the task's native sizes (`student_task_set: native`), or in the padded
layout of a task set with the task's id in it (`student_task_set: mt30`: windows zero-padded
at the end to 24/6 as `mt_factored.tasks.MultiTaskEnv` pads, the teacher seen through
`PerTaskExperts`), so it can join a multi-task student's checkpoints.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mt_factored.artifacts.configs import plain
from mt_factored.constants import ACTION, OBS, TASK
from mt_factored.distill import DistillConfig, distill_losses, log_keys
from mt_factored.errors import InputError
from mt_factored.expert.interface import Expert
from mt_factored.expert.model import TDMPC2Expert
from mt_factored.expert.per_task import PerTaskExperts
from mt_factored.online.config import ExpertTrainConfig, OnlineDistillConfig
from mt_factored.online.replay import EpisodeReplay
from mt_factored.online.rng import private_rng
from mt_factored.planning import MPPIPlanner
from mt_factored.planning.base import MPPIConfig
from mt_factored.planning.episodes import EpisodeConfig, run_episodes
from mt_factored.planning.student_adapter import StudentPlanningModel
from mt_factored.student import FactoredStudent, StudentConfig
from mt_factored.student.config import StudentSpec
from mt_factored.tasks import get_task, get_task_set

log = logging.getLogger(__name__)

STUDENT_DIR = "student"
"""Folder of the student (`FactoredStudent.save_pretrained`) in the run folder."""
NATIVE = "native"
"""`student_task_set` value: the task alone, in its native observation/action sizes."""


def column(key: str) -> str:
    """The train.csv column of a key of `distill_losses`: ``loss`` -> ``distill_loss``,
    ``loss/reward_kl`` -> ``distill_reward_kl``, ``metric/value_top1`` -> ``distill_value_top1``."""
    return f"distill_{key.rsplit('/', 1)[-1]}"


def train_fields(loss: DistillConfig, has_policy_prior: bool = True) -> tuple[str, ...]:
    """Columns added to train.csv: the update count, then the means over the episode's student
    updates of the total, of every selected loss term (its name), of the top-1 agreements
    and of the gradient norm."""
    keys = log_keys(loss, has_policy_prior)
    return ("distill_updates", *(column(k) for k in keys), "distill_grad_norm")


EVAL_FIELDS = ("student_return", "student_return_std")
"""Columns added to eval.csv, beside the expert's return at the same step."""

# Seeds of the student's streams: offsets from the run's seed past the trainer's
# (replay seed, actions seed+1, MPPI seed+2), and a large odd multiplier so that the
# per-update seeds of nearby runs never coincide.
_WINDOWS_OFFSET, _TORCH_OFFSET = 3, 4
_UPDATE_MIX = 1_000_003


def build_student_config(
    task: str, student_task_set: str, sizes: StudentSpec | Mapping[str, Any]
) -> tuple[StudentConfig, int]:
    """The student's config and the task's id in it.

    Args:
        task: the expert's task name.
        student_task_set: "native" (one task, native sizes, id 0) or the name of a task
            set holding `task` (its padding and ids, e.g. "mt30").
        sizes: the student's sizes (a :class:`StudentSpec` or its fields).
    """
    sizes = dataclasses.asdict(sizes) if dataclasses.is_dataclass(sizes) else dict(sizes)
    if student_task_set == NATIVE:
        spec = get_task(task)
        sizes.update(obs_dim=spec.obs_dim, action_dim=spec.action_dim)
        return StudentConfig.for_task_set([task], **sizes), 0
    task_set = get_task_set(student_task_set)
    if task not in task_set:
        raise InputError(
            f"distill.student_task_set={student_task_set!r} has no task {task!r}; use "
            f"student_task_set={NATIVE} or a task set that holds it"
        )
    return StudentConfig.for_task_set(task_set, **sizes), task_set.index(task)


def student_batch(
    windows: Mapping[str, torch.Tensor], task_id: int, obs_dim: int, action_dim: int
) -> dict[str, torch.Tensor]:
    """Time-major replay windows -> a distillation batch in the student's layout.

    Args:
        windows: `obs [H+1, B, o]`, `action [H, B, a]` (native sizes).
        task_id, obs_dim, action_dim: the task's id and the student's sizes; observations
            and actions are zero-padded at the end to them.

    Returns:
        `obs [B, H+1, obs_dim]`, `action [B, H, action_dim]`, `task [B]` (long).
    """
    obs = windows[OBS].transpose(0, 1)
    action = windows[ACTION].transpose(0, 1)
    if obs.shape[-1] > obs_dim or action.shape[-1] > action_dim:
        raise InputError(
            f"windows of obs/action sizes {obs.shape[-1]}/{action.shape[-1]} do not fit the "
            f"student's {obs_dim}/{action_dim}"
        )
    task = torch.full(obs.shape[:1], task_id, dtype=torch.long, device=obs.device)
    return {
        OBS: F.pad(obs, (0, obs_dim - obs.shape[-1])),
        ACTION: F.pad(action, (0, action_dim - action.shape[-1])),
        TASK: task,
    }


def build_online_distiller(
    cfg: ExpertTrainConfig, expert: TDMPC2Expert, seed_steps: int, device: torch.device
) -> OnlineDistiller | None:
    """The distiller of an `expert_train` config, or None when `distill.enabled` is off."""
    if not cfg.distill.enabled:
        return None
    return OnlineDistiller(
        expert, cfg.task, cfg.distill, seed=int(cfg.seed), seed_steps=seed_steps, device=device
    )


class OnlineDistiller:
    """A factored student distilled from a TD-MPC2 expert while the expert trains.

    Args:
        expert: the live single-task expert (the trainer's module; read, never changed).
        task: its task name.
        cfg: the recipe's `distill` block (:class:`OnlineDistillConfig`).
        seed: the run's seed (the student's streams are derived from it).
        seed_steps: the trainer's seed steps (the default `start_step`).
        device: where the student lives (the expert's device).
    """

    EVAL_FIELDS = EVAL_FIELDS
    FOLDER = STUDENT_DIR

    def __init__(
        self,
        expert: TDMPC2Expert,
        task: str,
        cfg: OnlineDistillConfig,
        seed: int,
        seed_steps: int,
        device: torch.device,
    ) -> None:
        self.task, self.device, self.expert = task, device, expert
        self.cfg = plain(cfg)  # the settings, for the student's model card
        self.task_set = str(cfg.student_task_set)
        self.config, self.task_id = build_student_config(task, self.task_set, cfg.student)
        self.distill_config = cfg.loss
        start = cfg.start_step
        self.start_step = seed_steps if start is None else int(start)
        self.updates_per_step = int(cfg.updates_per_step)
        self.batch_size = int(cfg.batch_size)
        self.grad_clip_norm = float(cfg.grad_clip_norm)
        self.eval_enabled = bool(cfg.eval)
        if self.updates_per_step < 1 or self.batch_size < 1:
            raise InputError(
                f"distill.updates_per_step ({self.updates_per_step}) and distill.batch_size "
                f"({self.batch_size}) must be >= 1"
            )
        self.seed = int(seed)
        with private_rng(self.seed + _TORCH_OFFSET):
            self.student = FactoredStudent(self.config).to(device)
        # The teacher is the live module: every update distills from the current expert.
        # (`.to` moves only the wrapper's masks: the expert is on `device` already.)
        self.teacher: Expert = (
            expert
            if self.task_set == NATIVE
            else PerTaskExperts({task: expert}, self.task_set).to(device)
        )
        lr = float(cfg.lr)
        self.optim = torch.optim.Adam(self.student.param_groups(lr, float(cfg.enc_lr_scale)), lr=lr)
        self.train_fields = train_fields(self.distill_config, self.student.pi_head is not None)
        self.windows_rng = np.random.Generator(np.random.PCG64(self.seed + _WINDOWS_OFFSET))
        self.updates = 0
        self.last_eval = float("nan")
        self.last_loss = float("nan")
        self._pending: list[dict[str, float]] = []

    # ---------------------------------------------------------------- facts
    def identity(self) -> dict[str, Any]:
        """What a resumed run must share with the saved one (the student's architecture)."""
        return {"task_set": self.task_set, "student_config": self.config.to_dict()}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.student.parameters())

    # ---------------------------------------------------------------- training
    def after_expert_update(self, replay: EpisodeReplay, step: int) -> None:
        """The trainer's hook after each expert update at agent step `step`: from
        `start_step` on, `updates_per_step` student updates on fresh windows."""
        if step < self.start_step:
            return
        for _ in range(self.updates_per_step):
            windows = replay.sample(self.device, batch_size=self.batch_size, rng=self.windows_rng)
            batch = student_batch(
                windows, self.task_id, self.config.obs_dim, self.config.action_dim
            )
            self._pending.append(self.update(batch))

    def update(self, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """One student step on a distillation batch (`obs [B, H+1, o]`, `action [B, H, a]`,
        `task [B]`) against the current expert; returns the loss terms as floats."""
        self.expert.eval()  # the teacher's Q ensemble has dropout: never in the targets
        self.student.train()
        with private_rng(self.seed + _TORCH_OFFSET + _UPDATE_MIX * (self.updates + 1)):
            terms = distill_losses(self.student, self.teacher, dict(batch), self.distill_config)
            self.optim.zero_grad(set_to_none=True)
            terms["loss"].backward()
            grad_norm = nn.utils.clip_grad_norm_(self.student.parameters(), self.grad_clip_norm)
            self.optim.step()
        self.updates += 1
        out = {"distill_grad_norm": float(grad_norm)}
        for key, value in terms.items():
            out[column(key)] = float(value.detach())
        self.last_loss = out["distill_loss"]
        return out

    def pop_metrics(self) -> dict[str, float]:
        """Means of the updates since the last call (empty before the first update), and
        the update count; clears them."""
        if not self._pending:
            return {}
        keys = self._pending[0]
        means = {k: float(np.mean([m[k] for m in self._pending])) for k in keys}
        self._pending = []
        return {"distill_updates": self.updates, **means}

    # ---------------------------------------------------------------- evaluation
    def evaluate(
        self,
        mppi: MPPIConfig,
        episodes: int,
        seed: int,
        max_steps: int,
    ) -> dict[str, float]:
        """Returns of decentralized MPPI planning with the student (eval mode).

        Returns:
            `{"student_return": mean, "student_return_std": std}` (empty when
            `eval` is off).
        """
        if not self.eval_enabled:
            return {}
        self.student.eval()
        planner = MPPIPlanner(StudentPlanningModel(self.student, generator=seed), mppi, seed)
        with private_rng(seed):
            stats = run_episodes(
                planner,
                self.task,
                self.task_id,
                self.config.obs_dim,
                EpisodeConfig(episodes=episodes, seed=seed, eval_mode=True, max_steps=max_steps),
                self.device,
            )
        self.last_eval = stats.mean
        log.info("student eval: %.1f ± %.1f", stats.mean, stats.std)
        return {"student_return": stats.mean, "student_return_std": stats.std}

    def postfix(self) -> dict[str, str]:
        """The progress bar's student entries."""
        return {"student_loss": f"{self.last_loss:.3g}", "student_eval": f"{self.last_eval:.1f}"}

    def summary(self) -> dict[str, Any]:
        """The trainer summary's student entries."""
        return {
            "student_eval": self.last_eval,
            "student_updates": self.updates,
            "student_parameters": self.num_parameters(),
        }

    # ---------------------------------------------------------------- files and state
    def save(self, folder: Path, step: int) -> None:
        """`FactoredStudent.save_pretrained(folder)` (atomic files) at agent step `step`;
        the model card lists the settings."""
        training = {
            "method": "online distillation (Fac-TDMPC Appendix C.1)",
            "task": self.task,
            "seed": self.seed,
            "agent_steps": step,
            "student_updates": self.updates,
            "distill": self.cfg,
        }
        self.student.save_pretrained(folder, model_card_kwargs={"training": training})

    def state_dict(self) -> dict[str, Any]:
        return {
            "student": self.student.state_dict(),
            "optim": self.optim.state_dict(),
            "updates": self.updates,
            "windows_rng": self.windows_rng.bit_generator.state,
            "last_eval": self.last_eval,
            "last_loss": self.last_loss,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.student.load_state_dict(state["student"])
        self.optim.load_state_dict(state["optim"])
        self.updates = int(state["updates"])
        self.windows_rng.bit_generator.state = state["windows_rng"]
        self.last_eval = float(state["last_eval"])
        self.last_loss = float(state["last_loss"])
        self._pending = []
