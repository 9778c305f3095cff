"""The schema of ``python -m mt_factored.train_expert`` (online TD-MPC2, paper Appendix A), and
recipe -> objects for the trainer: model sizes and the device.

Every key, its default and what it means; ``mt_factored/recipes/expert_train.yaml`` sets only the Hydra
settings. Re-running the same command resumes from ``<run_dir>/state.pt``; raising ``steps``
continues a finished run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from mt_factored.artifacts.configs import overrides, partial_config
from mt_factored.constants import RECIPES_DIR
from mt_factored.distill import DistillConfig
from mt_factored.errors import InputError
from mt_factored.expert.config import ExpertConfig
from mt_factored.planning.base import MPPIConfig
from mt_factored.student.config import StudentSpec

SIZES_DIR = RECIPES_DIR / "expert_size"


def size_config(model_size: str | int) -> DictConfig:
    """`mt_factored/recipes/expert_size/<model_size>.yaml` (5, "5", "5M" and "cpu" all work)."""
    name = str(model_size).strip()
    folder = SIZES_DIR
    path = folder / f"{name}.yaml"
    if not path.is_file() and name.upper().endswith("M"):
        path = folder / f"{name[:-1]}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise InputError(
            f"unknown model_size={model_size!r}; sizes in {folder}: {', '.join(known)}"
        )
    return OmegaConf.load(path)


def build_expert_config(
    task: str, model_size: str | int, changes: Mapping | Any = None
) -> ExpertConfig:
    """Single-task `ExpertConfig` of `task` (native observation/action sizes, no task
    embedding, like the public single-task checkpoints).

    Args:
        task: a task name (e.g. "cartpole-balance").
        model_size: a file of `mt_factored/recipes/expert_size/`: its `base` is a published size
            (`ExpertConfig.single_task(task, base)`), its other fields override it.
        changes: further field overrides (the recipe's `model.*`, a :data:`ExpertSizeOverrides`
            or a mapping; None values ignored).
    """
    size = OmegaConf.to_container(size_config(model_size), resolve=True)
    size.update(overrides(changes))
    base = size.pop("base")
    return dataclasses.replace(ExpertConfig.single_task(task, base), **size)


def resolve_device(device: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; anything else as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# ------------------------------------------------------------------------------ schema
ExpertSizeOverrides = partial_config(
    ExpertConfig,
    "ExpertSizeOverrides",
    """Per-field overrides of the size (null: the size file's / ExpertConfig's value).""",
    only=(
        "enc_dim",
        "mlp_dim",
        "latent_dim",
        "num_enc_layers",
        "num_q",
        "num_bins",
        "simnorm_dim",
        "dropout",
    ),
)


@dataclass
class ReplayConfig:
    """The replay buffer of whole episodes."""

    capacity: int = 1_000_000
    """Most transitions kept (oldest whole episodes dropped beyond it)."""
    horizon: int = 3
    """H: steps of each sampled sub-trajectory (window obs[t..t+H])."""
    batch_size: int = 256
    """Windows per gradient update."""


@dataclass
class LearnerConfig:
    """TD-MPC2's update rule."""

    lr: float = 3.0e-4
    """Adam learning rate of the world model and (separate Adam) of the policy prior."""
    enc_lr_scale: float = 0.3
    """The encoder's learning rate is lr * enc_lr_scale."""
    pi_eps: float = 1.0e-5
    """Adam epsilon of the policy optimiser."""
    grad_clip_norm: float = 20.0
    """Gradient-norm clip of the model update and of the policy update."""
    rho: float = 0.5
    """Weight rho^t of rollout step t in every loss term."""
    consistency_coef: float = 20.0
    """Weight of the latent consistency term (MSE)."""
    reward_coef: float = 0.1
    """Weight of the reward term (two-hot CE)."""
    value_coef: float = 0.1
    """Weight of the value term (two-hot CE)."""
    entropy_coef: float = 1.0e-4
    """Weight of the (action-dim scaled) entropy bonus in the policy loss."""
    target_tau: float = 0.01
    """EMA rate of the Q ensemble into its target."""
    scale_tau: float = 0.01
    """EMA rate of the policy loss's Q scale."""


@dataclass
class OnlineEvalConfig:
    """Evaluation in MPPI eval mode during the run."""

    every_steps: int = 5000
    """Evaluate at the first episode end past every multiple of this; 0: never."""
    episodes: int = 5
    """Episodes per evaluation (run in lock-step, env seeds seed..seed+episodes-1)."""
    seed: int = 1000
    """First env seed (and planner seed) of the evaluation."""
    at_end: bool = True
    """Evaluate once more when ``steps`` is reached."""


@dataclass
class RecordConfig:
    """Every training episode goes into public-format chunks under ``<run_dir>/data/``."""

    episodes_per_chunk: int = 50
    """Episodes per chunk file."""
    task_set: str = "mt30"
    """Padding and task ids of the chunks come from this task set."""


@dataclass
class OnlineCheckpointConfig:
    """Training state + public checkpoint (always at the end)."""

    every_episodes: int = 1
    """Write them every n episodes."""


@dataclass
class StopConfig:
    """Stop this invocation early at an episode boundary (state saved; re-run to continue)."""

    episodes: int | None = None
    """After this many episodes of this invocation."""
    wall_minutes: float | None = None
    """After this many minutes of this invocation."""


@dataclass
class OnlineDistillConfig:
    """Online distillation (Fac-TDMPC Appendix C.1): a factored student distilled from the
    expert while it trains, in this run. After every expert update the student takes
    ``updates_per_step`` steps of the ranking distillation (``loss``) on windows of the same
    replay buffer, with the current expert as teacher. The expert itself is unchanged by it
    (the student has its own sampler and RNG streams). Writes ``<run_dir>/student/``
    (FactoredStudent.save_pretrained) at every checkpoint, student columns in train.csv, and
    the student's MPPI return beside the expert's in eval.csv."""

    enabled: bool = False
    """Distill a student in this run."""
    start_step: int | None = None
    """First agent step with student updates; null: seed_steps (the student follows every
    expert update, the seed-data pre-training included). Never before seed_steps."""
    updates_per_step: int = 1
    """Student updates after each expert update."""
    batch_size: int = 256
    """Windows per student update (same horizon as the expert's, replay.horizon)."""
    lr: float = 3.0e-4
    """Adam learning rate of the student."""
    enc_lr_scale: float = 1.0
    """The student encoder's learning rate is lr * enc_lr_scale."""
    grad_clip_norm: float = 10.0
    """Gradient-norm clip of the student update."""
    student_task_set: str = "native"
    """native: the task alone in its native sizes; mt30 (or another task set holding the
    task): padded to the set's sizes with the task's id there, like the multi-task data."""
    eval: bool = True
    """Evaluate the student (decentralized MPPI, ``planning``) at the expert's eval points."""
    export: str | None = None
    """Copy the final student folder here when ``steps`` is reached (null: only
    ``<run_dir>/student``)."""
    student: StudentSpec = field(default_factory=StudentSpec)
    """The student's sizes (``model@distill.student=<name>``), e.g. distill.student.mlp_dim=32."""
    loss: DistillConfig = field(default_factory=DistillConfig)
    """The distillation loss (``distill@distill.loss=<name>``), e.g. distill.loss.noise_std=[0.2]."""


@dataclass
class ExpertTrainConfig:
    """``python -m mt_factored.train_expert``: train a single-task TD-MPC2 expert online (where
    no public one fits), recording its data in the public chunk format."""

    task: str = "cartpole-balance"
    """Task name (mt30 or any task of mt_factored.tasks); the model uses its native sizes."""
    model_size: str = "cpu"
    """A file of mt_factored/recipes/expert_size/ (cpu, 1, 5, 19, 48, 317)."""
    model: ExpertSizeOverrides = field(default_factory=ExpertSizeOverrides)  # type: ignore[valid-type]
    seed: int = 1
    """Seeds torch, the replay sampler (seed), random actions (seed+1), MPPI (seed+2), the env."""
    steps: int = 100_000
    """Agent steps (one env.step, i.e. 2 physics steps with TD-MPC2's action repeat)."""
    seed_steps: int | None = None
    """Uniform random actions first; null: max(1000, 5 * episode length) as in TD-MPC2. At
    this step the agent pre-trains with one update per seed step, then learns every step."""
    updates_per_step: int = 1
    """Gradient updates per agent step after the seed steps (TD-MPC2: 1)."""
    max_episode_steps: int | None = None
    """Cut episodes short (tests); null: the task's 500 steps."""
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    eval: OnlineEvalConfig = field(default_factory=OnlineEvalConfig)
    record: RecordConfig = field(default_factory=RecordConfig)
    checkpoint: OnlineCheckpointConfig = field(default_factory=OnlineCheckpointConfig)
    stop: StopConfig = field(default_factory=StopConfig)
    distill: OnlineDistillConfig = field(default_factory=OnlineDistillConfig)
    resume: bool = True
    """Continue from <run_dir>/state.pt when it exists (false: start over, overwriting it)."""
    export: str | None = None
    """Copy the final public checkpoint here when ``steps`` is reached (null: only
    <run_dir>/expert.pt)."""
    device: str = "auto"
    """auto: cuda when available, else cpu."""
    threads: int | None = None
    """torch intra-op threads (null: torch's default)."""
    progress_bar: bool = True
    """tqdm bar over agent steps with the last training and evaluation returns."""
    run_dir: str = "runs/expert/${task}-${model_size}-s${seed}"
    """Run folder: state.pt, expert.pt, train.csv, eval.csv, data/chunk_<k>.pt, config.yaml."""
    planning: MPPIConfig = field(default_factory=MPPIConfig)
    """MPPI: TD-MPC2's settings (6 iterations, 512 samples, 64 elites, 24 policy
    trajectories, horizon 3, std 0.05..2, temperature 0.5)."""
