"""TD-MPC2 world model: the expert (teacher) the student is distilled from.

Submodules are named so that `state_dict()` keys are the public TD-MPC2 "new"
layout (`_encoder.state.0.weight`, `_Qs.params.0.weight`, `_target_Qs_params.0.weight`,
...). The public file additionally holds `_detach_Qs_params.*` (the same values
as `_Qs.params.*`) and tensordict bookkeeping entries; `mt_factored.expert.checkpoint`
adds and strips those, so this module keeps no duplicate tensors.

Shapes: every input has batch dims first and features last, `[..., dim]`; `task`
is a LongTensor whose shape broadcasts to the batch dims (usually `[B]`, also
`[B]` against `[T, B, dim]` inputs as in TD-MPC2's training rollouts), an int,
or None for a single-task model.

Task embedding: TD-MPC2's `nn.Embedding(..., max_norm=1)` rescales looked-up rows
of the *stored weight in place* to norm <= 1. Here the lookup rescales out of place
(same values; the scale is a constant for autograd, as in PyTorch) and never mutates
the weight, so load -> run -> save is exact and forwards are safe under
`inference_mode`, `torch.compile` and repeated lookups in one graph. For TD-MPC2's
exact update rule a trainer calls `renorm_task_emb_()` before each update (the lookup
scale is then 1 and the gradients are the reference's).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mt_factored.expert.checkpoint import (
    config_for_state,
    detect_layout,
    load_into,
    read_checkpoint,
    save_checkpoint,
    single_task_config,
)
from mt_factored.expert.config import TASK_EMB_MAX_NORM, ExpertConfig
from mt_factored.expert.ensemble import QEnsemble, ensemble_forward, frozen_copy
from mt_factored.expert.interface import PolicyOutput
from mt_factored.nn import (
    DiscreteRegression,
    SimNorm,
    ensemble_mlp,
    mlp,
    renormed_embedding,
)
from mt_factored.nn.blocks import trunc_normal_init_, zero_init_last_layer_

TaskIds = Tensor | int | None

TASK_EMB_INIT_RANGE = 0.02
"""TD-MPC2 initialises task-embedding weights uniformly in [-0.02, 0.02]."""
_RENORM_EPS = 1e-7  # PyTorch's embedding renorm: scale = max_norm / (norm + 1e-7)
_SQUASH_EPS = 1e-6  # tanh log-det correction: log(relu(1 - a^2) + 1e-6), as TD-MPC2
_ENTROPY_EPS = 1e-8  # denominator guard of TD-MPC2's entropy scale
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class TDMPC2Expert(nn.Module):
    """TD-MPC2 world model: encoder, latent dynamics, reward, policy prior and Q ensemble.

    Args:
        config: architecture and task facts (`ExpertConfig.from_size(5)` = mt30-5M).
    """

    def __init__(self, config: ExpertConfig) -> None:
        super().__init__()
        self._config = config
        c = config
        z_a_t = c.latent_dim + c.action_dim + c.task_dim
        if c.multitask:
            self._task_emb = nn.Embedding(c.num_tasks, c.task_dim)
        masks = torch.zeros(c.num_tasks, c.action_dim)
        for i, dim in enumerate(c.action_dims):
            masks[i, :dim] = 1.0
        # Single-task TD-MPC2 files have no masks; keep an all-ones one out of the state dict.
        self.register_buffer("_action_masks", masks, persistent=c.multitask)
        self.register_buffer("log_std_min", _scalar_buffer(c.log_std_min))
        self.register_buffer("log_std_dif", _scalar_buffer(c.log_std_max - c.log_std_min))
        self.register_buffer("_discounts", torch.tensor(c.discounts), persistent=False)
        enc_hidden = max(c.num_enc_layers - 1, 1) * [c.enc_dim]
        self._encoder = nn.ModuleDict(
            {"state": mlp(c.obs_dim + c.task_dim, enc_hidden, c.latent_dim, SimNorm(c.simnorm_dim))}
        )
        self._dynamics = mlp(z_a_t, 2 * [c.mlp_dim], c.latent_dim, SimNorm(c.simnorm_dim))
        self._reward = mlp(z_a_t, 2 * [c.mlp_dim], c.num_bins)
        self._pi = mlp(c.latent_dim + c.task_dim, 2 * [c.mlp_dim], 2 * c.action_dim)
        self._Qs = QEnsemble(
            ensemble_mlp(c.num_q, z_a_t, 2 * [c.mlp_dim], c.num_bins, dropout=c.dropout)
        )
        self.regression = DiscreteRegression(c.num_bins, c.vmin, c.vmax)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """TD-MPC2's initialisation; the target ensemble starts as a copy of the ensemble."""
        trunc_normal_init_(self)
        if self._config.multitask:
            nn.init.uniform_(self._task_emb.weight, -TASK_EMB_INIT_RANGE, TASK_EMB_INIT_RANGE)
        zero_init_last_layer_(self._reward)
        zero_init_last_layer_(self._Qs.params)
        self._target_Qs_params = frozen_copy(self._Qs.params)

    # ----------------------------------------------------------------- facts
    @property
    def config(self) -> ExpertConfig:
        return self._config

    @property
    def num_tasks(self) -> int:
        return self._config.num_tasks

    @property
    def obs_dim(self) -> int:
        return self._config.obs_dim

    @property
    def action_dim(self) -> int:
        return self._config.action_dim

    @property
    def latent_dim(self) -> int:
        return self._config.latent_dim

    @property
    def action_masks(self) -> Tensor:
        """`[num_tasks, action_dim]`: 1 on each task's real action entries."""
        return self._action_masks

    @property
    def discounts(self) -> Tensor:
        """`[num_tasks]` discount per task."""
        return self._discounts

    def action_mask(self, task: TaskIds) -> Tensor:
        """`[*task.shape, action_dim]` mask of `task` (`[1, action_dim]` for task None)."""
        if task is None:
            if self._config.multitask:
                raise ValueError("a multi-task expert needs task ids, got task=None")
            return self._action_masks
        task = self._task_tensor(task, self._action_masks.device)
        if not self._config.multitask:
            return self._action_masks[0].expand(*task.shape, -1)
        return self._action_masks[task]

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Learnable parameters by component, for per-group learning rates (TD-MPC2
        uses a lower rate for the encoder and a separate optimiser for `pi`)."""
        groups = {
            "encoder": self._encoder,
            "dynamics": self._dynamics,
            "reward": self._reward,
            "q": self._Qs,
            "pi": self._pi,
        }
        out = {name: list(module.parameters()) for name, module in groups.items()}
        out["task_emb"] = list(self._task_emb.parameters()) if self._config.multitask else []
        return out

    # ------------------------------------------------------------ task input
    @staticmethod
    def _task_tensor(task: Tensor | int, device: torch.device) -> Tensor:
        if isinstance(task, int):
            return torch.tensor(task, device=device)
        return task.long()

    def task_embedding(self, task: Tensor | int) -> Tensor:
        """`[*task.shape, task_dim]` rows of the task embedding, rescaled to norm <= 1."""
        weight = self._task_emb.weight
        return renormed_embedding(weight, self._task_tensor(task, weight.device), TASK_EMB_MAX_NORM)

    @torch.no_grad()
    def renorm_task_emb_(self) -> None:
        """Rescales the stored task-embedding rows to norm <= 1 in place (TD-MPC2's max_norm)."""
        if self._config.multitask:
            self._task_emb.weight.mul_(_renorm_scale(self._task_emb.weight))

    def _with_task(self, x: Tensor, task: TaskIds) -> Tensor:
        """`cat([x, task_emb])` (x unchanged for a single-task model)."""
        if not self._config.multitask:
            return x
        if task is None:
            raise ValueError("a multi-task expert needs task ids, got task=None")
        emb = self.task_embedding(task)
        try:
            emb = emb.expand(*x.shape[:-1], emb.shape[-1])
        except RuntimeError as err:
            raise ValueError(
                f"task ids of shape {tuple(emb.shape[:-1])} do not broadcast to the batch "
                f"shape {tuple(x.shape[:-1])}"
            ) from err
        return torch.cat([x, emb], dim=-1)

    def _with_task_action(self, z: Tensor, action: Tensor, task: TaskIds):
        return torch.cat([self._with_task(z, task), action], dim=-1)

    # ------------------------------------------------------- world model
    def encode(self, obs: Tensor, task: TaskIds) -> Tensor:
        """`[..., obs_dim]` -> latent `[..., latent_dim]`."""
        return self._encoder["state"](self._with_task(obs, task))

    def next(self, z: Tensor, action: Tensor, task: TaskIds) -> Tensor:
        """Latent dynamics: `z [..., latent]`, `action [..., A]` -> next latent."""
        return self._dynamics(self._with_task_action(z, action, task))

    def reward_logits(self, z: Tensor, action: Tensor, task: TaskIds) -> Tensor:
        """`[..., num_bins]` logits of the reward."""
        return self._reward(self._with_task_action(z, action, task))

    def reward(self, z: Tensor, action: Tensor, task: TaskIds) -> Tensor:
        """`[..., 1]` predicted reward."""
        return self.regression.to_scalar(self.reward_logits(z, action, task))

    # ---------------------------------------------------------------- values
    def q_logits(
        self, z: Tensor, action: Tensor, task: TaskIds, target: bool = False, detach: bool = False
    ) -> Tensor:
        """`[num_q, ..., num_bins]` value logits of every ensemble member.

        Args:
            target: use the EMA target ensemble (never dropout, never gradients).
            detach: use detached ensemble weights; gradients reach only `z`,
                `action` and the task embedding (TD-MPC2's policy loss).
        """
        return self._q(self._with_task_action(z, action, task), None, target, detach)

    def q_all(
        self, z: Tensor, action: Tensor, task: TaskIds, target: bool = False, detach: bool = False
    ) -> Tensor:
        """`[num_q, ..., 1]` value of every ensemble member."""
        return self.regression.to_scalar(self.q_logits(z, action, task, target, detach))

    def q_avg(
        self,
        z: Tensor,
        action: Tensor,
        task: TaskIds,
        generator: torch.Generator | None = None,
        target: bool = False,
        detach: bool = False,
        members: Tensor | None = None,
    ) -> Tensor:
        """`[..., 1]` mean value of two random members (planning and policy value)."""
        return self.q_pair(z, action, task, generator, target, detach, members).mean(dim=0)

    def q_pair(
        self,
        z: Tensor,
        action: Tensor,
        task: TaskIds,
        generator: torch.Generator | None = None,
        target: bool = False,
        detach: bool = False,
        members: Tensor | None = None,
    ) -> Tensor:
        """`[2, ..., 1]` values of two random members; only those two are evaluated.

        TD-MPC2 averages them for planning and the policy loss (`q_avg`) and takes
        their minimum for TD targets (`q_pair(..., target=True).amin(0)`).

        Args:
            members: the two member indices, drawn by the caller (see `q_members`);
                None: drawn here from `generator`.
        """
        x = self._with_task_action(z, action, task)
        if members is None:
            members = self.q_members(generator, x.device)
        return self.regression.to_scalar(self._q(x, members, target, detach))

    def q_members(self, generator: torch.Generator | None, device: torch.device) -> Tensor:
        """`[2]` indices of two distinct random ensemble members, on `device`."""
        if generator is None:
            return torch.randperm(self._config.num_q, device=device)[:2]
        perm = torch.randperm(self._config.num_q, generator=generator, device=generator.device)
        return perm[:2].to(device)

    def _q(self, x: Tensor, members, target: bool, detach: bool) -> Tensor:
        if target:
            return ensemble_forward(self._target_Qs_params, x, members, True, dropout=False)
        return ensemble_forward(self._Qs.params, x, members, detach, dropout=True)

    def _q_tensor_pairs(self) -> Iterator[tuple[Tensor, Tensor]]:
        """(target buffer, online parameter) pairs, matched by name."""
        online = dict(self._Qs.params.named_parameters())
        for name, buf in self._target_Qs_params.named_buffers():
            yield buf, online[name]

    @torch.no_grad()
    def soft_update_target(self, tau: float) -> None:
        """EMA of the ensemble into the target: `target += tau * (online - target)`."""
        if not 0.0 <= tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {tau}")
        targets, online = zip(*self._q_tensor_pairs(), strict=True)
        torch._foreach_lerp_(list(targets), list(online), tau)

    # ---------------------------------------------------------------- policy
    def _pi_head(self, z: Tensor, task: TaskIds) -> tuple[Tensor, Tensor]:
        return self._pi(self._with_task(z, task)).chunk(2, dim=-1)

    def pi(
        self,
        z: Tensor,
        task: TaskIds,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> PolicyOutput:
        """Samples the tanh-Gaussian policy prior (mean, log-std and noise masked per task).

        Args:
            noise: the standard normal noise `[..., A]`, drawn by the caller (see
                `policy_noise`); None: drawn here from `generator`.
        """
        mean, raw_log_std = self._pi_head(z, task)
        log_std = self.log_std_min + 0.5 * self.log_std_dif * (torch.tanh(raw_log_std) + 1)
        eps = _randn_like(mean, generator) if noise is None else noise
        mask = self.action_mask(task)
        mean, log_std, eps = mean * mask, log_std * mask, eps * mask
        log_prob = (-0.5 * eps.pow(2) - log_std - _HALF_LOG_2PI).sum(dim=-1, keepdim=True)
        scaled_log_prob = log_prob * mask.sum(dim=-1, keepdim=True)
        action = torch.tanh(mean + eps * log_std.exp())
        log_prob = log_prob - torch.log(F.relu(1 - action.pow(2)) + _SQUASH_EPS).sum(
            dim=-1, keepdim=True
        )
        entropy_scale = scaled_log_prob / (log_prob + _ENTROPY_EPS)
        return PolicyOutput(
            action=action,
            mean=torch.tanh(mean),
            log_std=log_std,
            log_prob=log_prob,
            entropy=-log_prob,
            scaled_entropy=-log_prob * entropy_scale,
        )

    def pi_mean(self, z: Tensor, task: TaskIds) -> Tensor:
        """`[..., A]` deterministic policy action `tanh(mean * mask)`."""
        mean, _ = self._pi_head(z, task)
        return torch.tanh(mean * self.action_mask(task))

    def pi_sample(
        self, z: Tensor, task: TaskIds, generator: torch.Generator | None = None
    ) -> Tensor:
        """`[..., A]` sampled policy action."""
        return self.pi(z, task, generator).action

    def policy_noise(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The noise `pi` draws for latents `z [..., latent]`: `[..., A]`."""
        shape = (*z.shape[:-1], self.action_dim)
        return _randn_like(z.new_empty(shape), generator)

    # ----------------------------------------------------------- checkpoints
    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        task_set: str = "mt30",
        model_size: int | float | str = 5,
        config: ExpertConfig | None = None,
        map_location: str | torch.device = "cpu",
        task: str | None = None,
        trust_pickle: bool = False,
    ) -> TDMPC2Expert:
        """Load a TD-MPC2 checkpoint of either public key layout, in eval mode.

        Args:
            config: the architecture to load into; default: the published `task_set` model of
                `model_size` (`"auto"`: the sizes read off the file, for multi-task experts of
                custom sizes), or with `task` a single-task model of `task` sized off the file.
            task: the task of a single-task checkpoint (experts trained here, any size).
            trust_pickle: unpickle the file fully (runs whatever it contains; only for files
                from a source you trust). Default: a pickle that names anything but tensors
                and plain containers is refused before it runs.

        Raises:
            CheckpointError / CheckpointMismatchError: unreadable file, or tensors that do not
                fit the config (the message names them and the configuration they fit).
        """
        state = read_checkpoint(path, map_location, trust_pickle)
        detect_layout(state, str(path))
        if config is None:
            config = (
                single_task_config(state, task)
                if task is not None
                else config_for_state(state, task_set, model_size, str(path))
            )
        model = cls(config).to(map_location)
        return load_into(model, state, str(path)).eval()

    def save_checkpoint(self, path: str | Path) -> Path:
        """Writes `{"model": state_dict}` in the public new layout (atomic); returns the path."""
        return save_checkpoint(self, path)

    def num_learnable_parameters(self) -> int:
        """Learnable parameters, counted like TD-MPC2 (target ensemble excluded)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _scalar_buffer(value: float) -> Tensor:
    """0-dim buffer; int64 for integral values, as in TD-MPC2's files."""
    if float(value).is_integer():
        return torch.tensor(int(value))
    return torch.tensor(float(value))


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like `x`, drawn from `generator` on its own device."""
    device = x.device if generator is None else generator.device
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device).to(x.device)


def _renorm_scale(rows: Tensor) -> Tensor:
    """Per-row factor bringing norms above the max norm down to it (PyTorch's formula)."""
    norm = rows.norm(dim=-1, keepdim=True)
    return torch.where(norm > TASK_EMB_MAX_NORM, TASK_EMB_MAX_NORM / (norm + _RENORM_EPS), 1.0)


def load_single_task_expert(
    path: str | Path,
    task: str,
    map_location: str | torch.device = "cpu",
    trust_pickle: bool = False,
) -> TDMPC2Expert:
    """A single-task expert of `task` whose sizes are read off the file (eval mode)."""
    return TDMPC2Expert.from_checkpoint(
        path, map_location=map_location, task=task, trust_pickle=trust_pickle
    )
