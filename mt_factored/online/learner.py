"""TD-MPC2's update rule (paper, Appendix A) for one expert trained online.

- `world_model_losses`: rollout of the latent dynamics from the encoded first
  observation along the data actions; consistency (rho-weighted MSE between `next(z)`
  and the no-grad encoding of the next observation), two-hot reward CE and two-hot Q
  CE against `r + gamma * avg(2 random target Qs at pi(z'))`, each averaged over the
  horizon (and the Q ensemble).
- `policy_loss`: `-(Q / scale + entropy_coef * scaled_entropy)`, rho-weighted over the
  detached latents, with the Q ensemble's weights detached; `scale` is a running
  5th-95th percentile range of Q (`RunningScale`).
- `TDMPC2Learner`: the optimisers (Adam, encoder lr scaled; a separate Adam for the
  policy), gradient clipping, and the EMA of the Q ensemble into its target.

Batches are time-major: `obs [H+1, B, obs_dim]`, `action [H, B, A]`, `reward [H, B]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mt_factored.constants import ACTION, OBS, REWARD
from mt_factored.expert.model import TDMPC2Expert
from mt_factored.online.config import LearnerConfig

TaskIds = torch.Tensor | None


class RunningScale(nn.Module):
    """EMA (rate `tau`) of the 5th-95th percentile range of Q, at least 1.

    Divides Q in the policy loss so that the entropy bonus keeps the same weight
    whatever the magnitude of the task's returns (TD-MPC2's moving statistics).
    """

    def __init__(self, tau: float, percentiles: tuple[float, float] = (5.0, 95.0)) -> None:
        super().__init__()
        self.tau = tau
        self.register_buffer("value", torch.ones(1))
        self.register_buffer("percentiles", torch.tensor(percentiles) / 100.0)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Moves the scale towards the percentile range of the batch `x`."""
        low, high = torch.quantile(x.detach().float().flatten(), self.percentiles.to(x.device))
        self.value.lerp_((high - low).clamp(min=1.0).reshape(1), self.tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.value


def _rho_weights(rho: float, steps: int, like: torch.Tensor) -> torch.Tensor:
    return rho ** torch.arange(steps, device=like.device, dtype=like.dtype)


def world_model_losses(
    expert: TDMPC2Expert,
    batch: Mapping[str, torch.Tensor],
    task: TaskIds,
    discount: float,
    cfg: LearnerConfig,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """TD-MPC2's model objective on a batch of windows.

    Args:
        expert: the model (in train mode: the Q ensemble's first layer has dropout).
        batch: time-major windows (see the module docstring).
        task: `[B]` task ids of a multi-task expert, None for a single-task one.
        discount: gamma of the TD target.
        cfg: `rho`, `consistency_coef`, `reward_coef`, `value_coef`.

    Returns:
        (`{"loss/consistency", "loss/reward", "loss/value", "loss"}`, the latents of the
        rollout `[H+1, B, L]`, still attached to the graph).
    """
    obs, action = batch[OBS], batch[ACTION]
    reward = batch[REWARD].unsqueeze(-1)
    horizon = action.shape[0]
    weights = _rho_weights(float(cfg.rho), horizon, obs)
    task_h = None if task is None else task.expand(horizon, -1)

    with torch.no_grad():
        next_z = expert.encode(obs[1:], task_h)
        next_action = expert.pi(next_z, task_h).action
        td_target = reward + discount * expert.q_avg(next_z, next_action, task_h, target=True)

    z = expert.encode(obs[0], task)
    latents = [z]
    consistency = obs.new_zeros(())
    for t in range(horizon):
        z = expert.next(z, action[t], task)
        consistency = consistency + F.mse_loss(z, next_z[t]) * weights[t]
        latents.append(z)
    latents = torch.stack(latents)
    rollout = latents[:-1]
    reward_ce = expert.regression.cross_entropy(
        expert.reward_logits(rollout, action, task_h), reward
    )
    q_ce = expert.regression.cross_entropy(expert.q_logits(rollout, action, task_h), td_target)

    terms = {
        "loss/consistency": consistency / horizon,
        "loss/reward": (reward_ce.mean(dim=(1, 2)) * weights).sum() / horizon,
        # q_ce: [num_q, H, B, 1]; averaged over members like over steps.
        "loss/value": (q_ce.mean(dim=(2, 3)) * weights).sum() / (horizon * q_ce.shape[0]),
    }
    terms["loss"] = (
        float(cfg.consistency_coef) * terms["loss/consistency"]
        + float(cfg.reward_coef) * terms["loss/reward"]
        + float(cfg.value_coef) * terms["loss/value"]
    )
    return terms, latents


def policy_loss(
    expert: TDMPC2Expert,
    latents: torch.Tensor,
    task: TaskIds,
    scale: RunningScale,
    cfg: LearnerConfig,
) -> dict[str, torch.Tensor]:
    """TD-MPC2's policy objective on detached latents `[H+1, B, L]`.

    Updates `scale` with the values at the first step before dividing by it.

    Returns:
        `{"loss": ..., "entropy": mean entropy estimate}`.
    """
    steps = latents.shape[0]
    task_h = None if task is None else task.expand(steps, -1)
    policy = expert.pi(latents, task_h)
    q = expert.q_avg(latents, policy.action, task_h, detach=True)  # [H+1, B, 1]
    scale.update(q[0])
    objective = float(cfg.entropy_coef) * policy.scaled_entropy + scale(q)
    weights = _rho_weights(float(cfg.rho), steps, q)
    return {
        "loss": (-objective.mean(dim=(1, 2)) * weights).mean(),
        "entropy": policy.entropy.detach().mean(),
    }


class TDMPC2Learner:
    """Optimisers and one update step of TD-MPC2 for one expert.

    Args:
        expert: the model (its `_target_Qs_params` is the EMA target).
        cfg: the `learner` settings (:class:`LearnerConfig`).
        task: task id for a multi-task expert, None for a single-task one.
    """

    def __init__(self, expert: TDMPC2Expert, cfg: LearnerConfig, task: int | None = None) -> None:
        self.expert, self.cfg, self.task = expert, cfg, task
        groups = expert.parameter_groups()
        lr = float(cfg.lr)
        self.optim = torch.optim.Adam(
            [
                {"params": groups["encoder"], "lr": lr * float(cfg.enc_lr_scale)},
                {"params": groups["dynamics"]},
                {"params": groups["reward"]},
                {"params": groups["q"]},
                {"params": groups["task_emb"]},
            ],
            lr=lr,
        )
        self.pi_params = groups["pi"]
        self.pi_optim = torch.optim.Adam(self.pi_params, lr=lr, eps=float(cfg.pi_eps))
        device = next(expert.parameters()).device
        self.scale = RunningScale(float(cfg.scale_tau)).to(device)
        self.discount = float(expert.discounts[task or 0])
        self.updates = 0

    def update(self, batch: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """One model update, one policy update, one target EMA step; returns the terms."""
        cfg, expert = self.cfg, self.expert
        clip = float(cfg.grad_clip_norm)
        task = None
        if self.task is not None:
            task = torch.full(
                batch[OBS].shape[1:2], self.task, dtype=torch.long, device=batch[OBS].device
            )
            expert.renorm_task_emb_()  # TD-MPC2's max_norm embedding, applied before the step

        expert.train()
        terms, latents = world_model_losses(expert, batch, task, self.discount, cfg)
        terms["loss"].backward()
        grad_norm = nn.utils.clip_grad_norm_(expert.parameters(), clip)
        self.optim.step()
        self.optim.zero_grad(set_to_none=True)

        pi_terms = policy_loss(expert, latents.detach(), task, self.scale, cfg)
        pi_terms["loss"].backward()
        nn.utils.clip_grad_norm_(self.pi_params, clip)
        self.pi_optim.step()
        # Also drops the policy loss's gradients on the task embedding (pi only steps pi).
        expert.zero_grad(set_to_none=True)

        expert.soft_update_target(float(cfg.target_tau))
        expert.eval()
        self.updates += 1
        out = {
            k.removeprefix("loss/") + "_loss": float(v.detach())
            for k, v in terms.items()
            if k != "loss"
        }
        out.update(
            grad_norm=float(grad_norm),
            pi_loss=float(pi_terms["loss"].detach()),
            pi_scale=float(self.scale.value),
            entropy=float(pi_terms["entropy"]),
        )
        return out

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
