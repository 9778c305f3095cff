"""`ExpertConfig`: the sizes and task facts that define one TD-MPC2 world model.

The size table below is a fact of the published TD-MPC2 checkpoints
(see /work/shared/specs/tdmpc2-formats.md), not a tunable: a checkpoint only
loads into a model built with its own sizes. Task facts (action dims, discounts,
names) come from `mt_factored.tasks`, never from a table here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from mt_factored.artifacts.configs import DictRoundTrip
from mt_factored.errors import InputError
from mt_factored.nn.checks import check_world_model_config
from mt_factored.tasks import get_task, get_task_set

# Published multi-task model sizes (millions of parameters -> architecture).
MODEL_SIZES: dict[int, dict[str, int]] = {
    1: {"enc_dim": 256, "mlp_dim": 384, "latent_dim": 128, "num_enc_layers": 2, "num_q": 2},
    5: {"enc_dim": 256, "mlp_dim": 512, "latent_dim": 512, "num_enc_layers": 2, "num_q": 5},
    19: {"enc_dim": 1024, "mlp_dim": 1024, "latent_dim": 512, "num_enc_layers": 3, "num_q": 5},
    48: {"enc_dim": 1792, "mlp_dim": 1792, "latent_dim": 768, "num_enc_layers": 4, "num_q": 5},
    317: {"enc_dim": 4096, "mlp_dim": 4096, "latent_dim": 1376, "num_enc_layers": 5, "num_q": 8},
}
# Task-embedding width of the published multi-task checkpoints, per task set and size.
TASK_DIMS: dict[str, dict[int, int]] = {
    "mt30": {1: 96, 5: 64, 19: 64, 48: 64, 317: 96},
    "mt80": {1: 96, 5: 96, 19: 96, 48: 96, 317: 96},
}
# Size fields that differ from MODEL_SIZES for one task set.
SIZE_OVERRIDES: dict[str, dict[int, dict[str, int]]] = {"mt80": {19: {"latent_dim": 768}}}

TASK_EMB_MAX_NORM = 1.0
"""Task-embedding rows are rescaled to at most this L2 norm at lookup (TD-MPC2's max_norm)."""


def normalize_model_size(model_size: int | float | str) -> int:
    """5, 5.0, "5" and "5M" -> 5; anything not in `MODEL_SIZES` raises a ValueError."""
    text = str(model_size).strip().upper().removesuffix("M")
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer() or int(value) not in MODEL_SIZES:
        raise InputError(
            f"Unknown TD-MPC2 model size {model_size!r}; published sizes (millions of "
            f"parameters): {', '.join(str(s) for s in MODEL_SIZES)}."
        )
    return int(value)


@dataclass(frozen=True, kw_only=True)
class ExpertConfig(DictRoundTrip):
    """Architecture and task facts of a TD-MPC2 world model (all fields keyword-only).

    Build it with `from_size` (published multi-task sizes), `single_task`, `custom`
    or directly. `dataclasses.asdict(config)` is JSON-serialisable; `from_dict`
    reads it back.
    """

    obs_dim: int
    """Observation size the encoder takes (24 = mt30's padded size)."""
    action_dim: int
    """Action size of the model's inputs/outputs (6 = mt30's padded size)."""
    num_tasks: int
    """Number of tasks (rows of the task embedding); 1 for a single-task model."""
    task_dim: int
    """Task-embedding width; 0 = single-task model without an embedding."""
    enc_dim: int
    """Width of the encoder's hidden layers."""
    mlp_dim: int
    """Width of the hidden layers of dynamics, reward, policy and Q networks."""
    latent_dim: int
    """Latent state size (a multiple of `simnorm_dim`)."""
    num_enc_layers: int
    """Encoder layers including the output layer (hidden layers = max(n - 1, 1))."""
    num_q: int
    """Q-ensemble members (>= 2: values average two random members)."""
    num_bins: int = 101
    """Bins of the discrete (two-hot) reward and value regression."""
    vmin: float = -10.0
    """Lowest bin, in symlog space."""
    vmax: float = 10.0
    """Highest bin, in symlog space."""
    simnorm_dim: int = 8
    """Group size of the simplicial normalisation of latents."""
    dropout: float = 0.01
    """Dropout after the first layer of every Q member (training mode only)."""
    log_std_min: float = -10
    """Lower bound of the policy's log standard deviation."""
    log_std_max: float = 2
    """Upper bound of the policy's log standard deviation."""
    action_dims: tuple[int, ...]
    """Real action dims per task (the rest of `action_dim` is padding, masked to 0)."""
    discounts: tuple[float, ...]
    """Discount per task."""
    task_names: tuple[str, ...]
    """Task name per task id."""

    def __post_init__(self) -> None:
        for name in ("action_dims", "discounts", "task_names"):  # JSON gives lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        positive = ("obs_dim", "action_dim", "num_tasks", "enc_dim", "mlp_dim", "latent_dim")
        check_world_model_config(self, "ExpertConfig", (*positive, "num_enc_layers", "simnorm_dim"))
        if self.task_dim < 0:
            raise InputError(f"ExpertConfig.task_dim must be >= 0, got {self.task_dim}")
        if self.task_dim == 0 and self.num_tasks != 1:
            raise InputError(
                f"task_dim=0 means a single-task model, but num_tasks={self.num_tasks}; "
                "give the multi-task model a task_dim > 0"
            )
        if self.num_q < 2:
            raise InputError(f"num_q must be >= 2 (values average two members), got {self.num_q}")
        if self.num_bins < 2:
            raise InputError(f"num_bins must be >= 2, got {self.num_bins}")
        if not self.vmin < self.vmax:
            raise InputError(f"need vmin < vmax, got {self.vmin}, {self.vmax}")
        if not 0 <= self.dropout < 1:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("action_dims", "discounts", "task_names"):
            if len(getattr(self, name)) != self.num_tasks:
                raise InputError(
                    f"ExpertConfig.{name} has {len(getattr(self, name))} entries for "
                    f"num_tasks={self.num_tasks}"
                )
        if len(set(self.task_names)) != self.num_tasks:
            raise InputError(f"task_names must be unique: {self.task_names}")

    @property
    def multitask(self) -> bool:
        """True when the model has a task embedding (task_dim > 0)."""
        return self.task_dim > 0

    def describe(self) -> str:
        """One line naming the architecture (for error messages and logs)."""
        kind = (
            f"{self.num_tasks} tasks, task_dim {self.task_dim}"
            if self.multitask
            else f"single-task {self.task_names[0]}"
        )
        return (
            f"{kind}, obs {self.obs_dim}, action {self.action_dim}, enc {self.enc_dim}, "
            f"mlp {self.mlp_dim}, latent {self.latent_dim}, "
            f"{self.num_enc_layers} encoder layers, num_q {self.num_q}"
        )

    @classmethod
    def from_size(cls, model_size: int | float | str = 5, task_set: str = "mt30") -> ExpertConfig:
        """The published multi-task architecture of `model_size` (1, 5, 19, 48, 317) on `task_set`.

        Raises:
            ValueError: unknown size or task set.
            NotImplementedError: a published task set (mt80) whose task list this
                package does not have.
        """
        size = normalize_model_size(model_size)
        try:
            tasks = get_task_set(task_set)
        except ValueError as err:
            if task_set in TASK_DIMS:
                raise NotImplementedError(
                    f"Task set {task_set!r} has published TD-MPC2 checkpoints, but "
                    f"mt_factored.tasks has no task list for it yet ({err})"
                ) from err
            raise
        sizes = {**MODEL_SIZES[size], **SIZE_OVERRIDES.get(task_set, {}).get(size, {})}
        # Task sets without published checkpoints follow the mt30 widths.
        task_dim = TASK_DIMS.get(task_set, TASK_DIMS["mt30"])[size]
        return cls(
            obs_dim=tasks.max_obs_dim,
            action_dim=tasks.max_action_dim,
            num_tasks=len(tasks),
            task_dim=task_dim,
            action_dims=tasks.action_dims,
            discounts=tasks.discounts,
            task_names=tasks.names,
            **sizes,
        )

    @classmethod
    def single_task(cls, task: str, model_size: int | float | str = 5) -> ExpertConfig:
        """A single-task model (no task embedding) on `task`'s native obs/action dims."""
        spec = get_task(task)
        return cls(
            obs_dim=spec.obs_dim,
            action_dim=spec.action_dim,
            num_tasks=1,
            task_dim=0,
            action_dims=(spec.action_dim,),
            discounts=(spec.discount,),
            task_names=(spec.name,),
            **MODEL_SIZES[normalize_model_size(model_size)],
        )

    @classmethod
    def custom(
        cls, task_set_or_task: str, model_size: int | float | str = 5, **overrides: Any
    ) -> ExpertConfig:
        """A published size (multi-task on a task set, or single-task on a task) with overrides.

        Example: `ExpertConfig.custom("mt30", task_dim=16, enc_dim=32, mlp_dim=32,
        latent_dim=32, num_q=2)`.
        """
        try:
            get_task_set(task_set_or_task)
        except ValueError:
            if task_set_or_task in TASK_DIMS:  # a published set we lack: from_size says so
                cls.from_size(model_size, task_set_or_task)
            base = cls.single_task(task_set_or_task, model_size)
        else:
            base = cls.from_size(model_size, task_set_or_task)
        return dataclasses.replace(base, **overrides)
