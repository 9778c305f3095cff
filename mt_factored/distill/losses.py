"""Ranking distillation losses (Fac-TDMPC Sec. 4.4, Algorithm 1).

For each window the K noise-perturbed action sequences are scored by both models
at every step h; the K rewards (and values) become softmax distributions and the
student is trained to rank the K actions like the expert:

    loss = sum_h rho^h (reward_coef KL(R^e_h || R_h) + value_coef KL(Q^e_h || Q_h))
           + policy_coef * policy + consistency_coef * consistency

The loss terms are functions of model outputs, targets and masks
(:func:`ranking_kl`, :func:`masked_mse`); :func:`distill_losses` runs the models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mt_factored.constants import ACTION, OBS, TASK
from mt_factored.distill.config import DistillConfig
from mt_factored.distill.rollout import (
    ExpertRollout,
    expert_rollout,
    perturb_actions,
    student_rollout,
)
from mt_factored.expert.interface import Expert
from mt_factored.student.model import FactoredStudent


def expert_scale(expert: torch.Tensor, dim: int, floor: float) -> torch.Tensor:
    """Divisor of :func:`ranking_kl`: the expert's std over ``dim`` (kept), at least ``floor``."""
    return expert.detach().std(dim=dim, keepdim=True).clamp_min(floor)


def task_scale(expert: torch.Tensor, dim: int, task: torch.Tensor, floor: float) -> torch.Tensor:
    """Divisor of :func:`ranking_kl` shared by the windows of one task: the root mean square,
    over the batch's windows of that task, of the expert's std over ``dim`` (kept), at least
    ``floor``. ``expert`` is ``[..., B]`` with windows last; ``task`` is ``[B]``.

    Unlike :func:`expert_scale` it does not stretch every window to unit spread: a window
    whose K samples the expert barely tells apart keeps a near-uniform target, so the
    signal goes to the windows where the action matters.
    """
    per_window = expert.detach().std(dim=dim, keepdim=True).square()  # [..., 1, ..., B]
    _, inverse = torch.unique(task, return_inverse=True)
    one_hot = torch.nn.functional.one_hot(inverse).to(per_window.dtype)  # [B, T]
    per_task = (per_window @ one_hot) / one_hot.sum(dim=0)  # mean over each task's windows
    return (per_task @ one_hot.T).sqrt().clamp_min(floor)


def _scale(
    expert: torch.Tensor, dim: int, task: torch.Tensor, floor: float, mode
) -> torch.Tensor | float:
    if mode in (False, "none"):
        return 1.0
    if mode == "task":
        return task_scale(expert, dim, task, floor)
    return expert_scale(expert, dim, floor)  # True / "window" / "shared"


def ranking_kl(
    student: torch.Tensor,
    expert: torch.Tensor,
    dim: int,
    student_temperature: float = 1.0,
    expert_temperature: float = 1.0,
    scale: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """``KL(softmax(expert / (T_e scale)) || softmax(student / (T_s scale)))`` over ``dim``.

    Direction: KL(expert || student), Hinton et al.'s distillation objective (the
    cross-entropy to the teacher's soft targets minus their entropy). It is
    mass-covering: every action the expert ranks high pulls the student up, with
    gradient ``(p_s - p_e) / T_s`` per sample. The paper writes D_KL(R_h, R_h^e); read
    as KL(student || expert) that would be mode-seeking, and its gradient vanishes on
    actions the student already rates low, the failure distillation is meant to avoid.

    Args:
        student: scores of the student (broadcasts against ``expert``).
        expert: scores of the expert (no gradient is taken through it).
        dim: the axis of the noise samples.
        scale: divisor of both score sets (see :func:`expert_scale`).

    Returns:
        The KL with ``dim`` reduced.
    """
    log_p_s = F.log_softmax(student / (student_temperature * scale), dim=dim)
    log_p_e = F.log_softmax(expert.detach() / (expert_temperature * scale), dim=dim)
    return (log_p_e.exp() * (log_p_e - log_p_s)).sum(dim=dim)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the last dim of ``(pred - target)^2`` on entries where ``mask`` is 1."""
    sq = (pred - target.detach()).square() * mask
    return sq.sum(dim=-1) / mask.sum(dim=-1).clamp_min(1.0)


def _check_batch(batch: dict[str, torch.Tensor], student: FactoredStudent) -> None:
    obs, action, task = batch[OBS], batch[ACTION], batch[TASK]
    if action.dim() != 3 or obs.dim() != 3 or task.dim() != 1:
        raise ValueError(
            f"expected obs [B, H+1, obs_dim], action [B, H, A], task [B]; got obs {tuple(obs.shape)}, "
            f"action {tuple(action.shape)}, task {tuple(task.shape)}"
        )
    b, h = action.shape[:2]
    if obs.shape[:2] != (b, h + 1) or task.shape[0] != b:
        raise ValueError(
            f"window shapes disagree: obs {tuple(obs.shape)} needs [B={b}, H+1={h + 1}, ...], task [B={b}]"
        )
    if action.shape[-1] != student.config.action_dim or obs.shape[-1] != student.config.obs_dim:
        raise ValueError(
            f"obs/action sizes ({obs.shape[-1]}, {action.shape[-1]}) differ from the student's "
            f"({student.config.obs_dim}, {student.config.action_dim})"
        )


def distill_losses(
    student: FactoredStudent,
    expert: Expert,
    batch: dict[str, torch.Tensor],
    cfg: DistillConfig,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Distillation loss of one batch of windows (Algorithm 1).

    Args:
        student: the factored student (trained).
        expert: the frozen teacher (run under ``torch.no_grad``; put it in eval mode).
        batch: ``obs [B, H+1, obs_dim]``, ``action [B, H, A]``, ``task [B]`` (keys from
            ``mt_factored.constants``; ``reward`` is not needed).
        cfg: distillation settings.
        generator: source of the action noise (on the batch's device).

    Returns:
        ``"loss/reward_kl"``, ``"loss/value_kl"`` (``..._mse`` with ``loss="mse"``),
        ``"loss/policy"`` (with a policy prior and ``policy_coef > 0``),
        ``"loss/consistency"`` (with ``consistency_coef > 0``), the detached
        diagnostics ``"metric/reward_top1"`` / ``"metric/value_top1"`` (how often the
        student's best of the K samples is the expert's), and the total ``"loss"``.
    """
    _check_batch(batch, student)
    obs, task, k = batch[OBS], batch[TASK].long(), cfg.num_noise_samples
    mask = student.merge_actions(student.agent_action_mask(task), task)  # [B, A]
    use_consistency = cfg.consistency_coef > 0
    actions = perturb_actions(
        batch[ACTION].to(obs.dtype), mask, k, cfg.sample_stds(), generator, use_consistency
    )  # [K(+1), B, H, A], masked
    with_pi = cfg.policy_coef > 0 and student.pi_head is not None
    targets = expert_rollout(expert, obs[:, 0], actions[:k], task, with_pi)
    return student_losses(student, batch, actions, targets, cfg)


def student_losses(
    student: FactoredStudent,
    batch: dict[str, torch.Tensor],
    actions: torch.Tensor,
    ex: ExpertRollout,
    cfg: DistillConfig,
) -> dict[str, torch.Tensor]:
    """The student's side of :func:`distill_losses`, given the expert's rollout ``ex``.

    Args:
        actions: ``[K, B, H, A]`` perturbed actions (``[K + 1, ...]`` with the data
            actions last when ``cfg.consistency_coef > 0``), see :func:`perturb_actions`.
        ex: the expert along ``actions[:K]`` (``pi_mean`` needed when the policy term is on).
    """
    obs, task = batch[OBS], batch[TASK].long()
    k, horizon = cfg.num_noise_samples, actions.shape[2]
    mask = student.merge_actions(student.agent_action_mask(task), task)  # [B, A]
    use_consistency = cfg.consistency_coef > 0
    with_pi = cfg.policy_coef > 0 and student.pi_head is not None
    cond = student.condition(task)
    st = student_rollout(student, obs[:, 0], actions, task, cond)
    st_reward, st_value = st.reward[:, :k], st.value[:, :, :k]  # [H, K, B], [H, Q, K, B]
    weights = cfg.rho ** torch.arange(horizon, dtype=obs.dtype, device=obs.device)

    out: dict[str, torch.Tensor] = {}
    if cfg.loss == "kl":
        v_scale = _scale(ex.value, 1, task, cfg.value_std_floor, cfg.normalize)
        if cfg.normalize == "shared":  # rewards in the values' units: planning sums both
            r_scale = v_scale
        else:
            r_scale = _scale(ex.reward, 1, task, cfg.reward_std_floor, cfg.normalize)
        if isinstance(v_scale, torch.Tensor):
            v_scale = v_scale.unsqueeze(1)  # broadcast over the student's Q members
        temps = (cfg.student_temperature, cfg.expert_temperature)
        reward_term = ranking_kl(st_reward, ex.reward, 1, *temps, r_scale).mean(dim=-1)  # [H]
        value_term = ranking_kl(st_value, ex.value.unsqueeze(1), 2, *temps, v_scale).mean(
            dim=(1, 2)
        )
    else:
        reward_term = (st_reward - ex.reward).square().mean(dim=(1, 2))
        value_term = (st_value - ex.value.unsqueeze(1)).square().mean(dim=(1, 2, 3))
    out[f"loss/reward_{cfg.loss}"] = (weights * reward_term).sum()
    out[f"loss/value_{cfg.loss}"] = (weights * value_term).sum()
    total = (
        cfg.reward_coef * out[f"loss/reward_{cfg.loss}"]
        + cfg.value_coef * out[f"loss/value_{cfg.loss}"]
    )

    if with_pi:
        latents = st.latents[:horizon, :k]
        if not cfg.policy_shapes_latents:  # TD-MPC2's choice: the prior only reads the latents
            latents = latents.detach()
        pi_mean = student.pi(latents, cond).mean  # [H, K, B, N, G]
        pi_env = student.merge_actions(pi_mean, task)  # [H, K, B, A]
        out["loss/policy"] = (weights * masked_mse(pi_env, ex.pi_mean, mask).mean(dim=(1, 2))).sum()
        total = total + cfg.policy_coef * out["loss/policy"]
    if use_consistency:
        with torch.no_grad():
            target = student.encode(obs[:, 1:], task[:, None]).transpose(0, 1)  # [H, B, N, m]
        err = (st.latents[1:, k] - target).square().mean(dim=-1)  # [H, B, N]
        agent_mask = cond.agent_mask.to(err.dtype)
        per_window = (err * agent_mask).sum(dim=-1) / agent_mask.sum(dim=-1)
        out["loss/consistency"] = (weights * per_window.mean(dim=-1)).sum()
        total = total + cfg.consistency_coef * out["loss/consistency"]

    with torch.no_grad():
        out["metric/reward_top1"] = (st_reward.argmax(1) == ex.reward.argmax(1)).float().mean()
        out["metric/value_top1"] = (st_value.mean(1).argmax(1) == ex.value.argmax(1)).float().mean()
    out["loss"] = total
    return out
