"""The distillation loss of a batch (Fac-TDMPC Sec. 4.4, Algorithm 1).

For each window the K noise-perturbed action sequences are scored by both models
at every step h; the selected loss terms (:mod:`.terms`, ``cfg.terms``) compare the two
rollouts and are summed with their coefficients. With the paper's terms:

    loss = sum_h rho^h (0.5 KL(R^e_h || R_h) + 0.1 KL(Q^e_h || Q_h)) + 1.0 policy

:func:`distill_losses` draws the action noise and runs the expert; :func:`student_losses`
runs the student and the terms (so a benchmark can time the student's side alone).
"""

from __future__ import annotations

import torch

from mt_factored.constants import ACTION, EXPERT_PLANNED, OBS, TASK
from mt_factored.distill.config import Center, DistillConfig, Noise
from mt_factored.distill.registry import DistillBatch, LossTerm, selected_terms
from mt_factored.distill.rollout import (
    ExpertRollout,
    expert_policy_sequence,
    expert_rollout,
    noisy_actions,
    planner_actions,
    student_policy_sequence,
    student_rollout,
)
from mt_factored.expert.interface import Expert
from mt_factored.nn.compiling import Compiled
from mt_factored.student.model import FactoredStudent

LOSS_KEY = "loss"
"""The total in the returned dict; each term is ``loss/<name>``."""
METRIC_KEYS = ("metric/reward_top1", "metric/value_top1")
"""The detached diagnostics returned beside the terms."""


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


def terms_of(student: FactoredStudent, cfg: DistillConfig) -> list[tuple[LossTerm, float]]:
    """The terms ``cfg`` selects for ``student`` (a term on the policy prior needs one)."""
    return selected_terms(cfg.terms, has_policy_prior=student.pi_head is not None)


def log_keys(cfg: DistillConfig, has_policy_prior: bool = True) -> tuple[str, ...]:
    """Every key :func:`distill_losses` returns under ``cfg``, the total first."""
    terms = selected_terms(cfg.terms, has_policy_prior)
    return (LOSS_KEY, *(f"loss/{t.name}" for t, _ in terms), *METRIC_KEYS)


def planner_candidates(
    student: FactoredStudent,
    expert: Expert,
    obs0: torch.Tensor,
    data_action: torch.Tensor,
    task: torch.Tensor,
    mask: torch.Tensor,
    cfg: DistillConfig,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``cfg.num_noise_samples`` planner-like sequences ``[K, B, H, A]`` (``noise: planner``)."""
    horizon = data_action.shape[1]
    make = {
        Center.data: lambda: data_action,
        Center.expert_policy: lambda: expert_policy_sequence(expert, obs0, task, horizon),
        Center.student_policy: lambda: student_policy_sequence(student, obs0, task, horizon),
    }
    centers = torch.stack([make[c]() for c in cfg.planner_centers]) * mask[:, None]
    return planner_actions(
        centers,
        mask,
        cfg.num_noise_samples,
        cfg.planner_std,
        generator,
        agent_masks=student.agent_env_masks(task),
        single_agent_fraction=cfg.single_agent_fraction,
    )


def distill_losses(
    student: FactoredStudent,
    expert: Expert,
    batch: dict[str, torch.Tensor],
    cfg: DistillConfig,
    generator: torch.Generator | None = None,
    compile: bool = False,
) -> dict[str, torch.Tensor]:
    """Distillation loss of one batch of windows (Algorithm 1).

    Args:
        student: the factored student (trained).
        expert: the frozen teacher (run under ``torch.no_grad``; put it in eval mode).
        batch: ``obs [B, H+1, obs_dim]``, ``action [B, H, A]``, ``task [B]`` (keys from
            ``mt_factored.constants``; ``reward`` is not needed).
        cfg: distillation settings.
        generator: source of the action noise (on the batch's device).
        compile: run the student's side (its rollout and the loss terms, and so their
            backward) through ``torch.compile`` (see ``mt_factored.nn.compiling``); the
            noise and the expert's targets are computed as in eager.

    Returns:
        ``"loss/<name>"`` of every selected term (e.g. ``loss/reward_kl``), the detached
        diagnostics ``"metric/reward_top1"`` / ``"metric/value_top1"`` (how often the
        student's best of the K samples is the expert's), and the total ``"loss"``.
    """
    _check_batch(batch, student)
    obs, task, k = batch[OBS], batch[TASK].long(), cfg.num_noise_samples
    mask = student.merge_actions(student.agent_action_mask(task), task)  # [B, A]
    terms = terms_of(student, cfg)
    data_action = batch[ACTION].to(obs.dtype)
    keep_data_action = any(t.data_action for t, _ in terms)
    if cfg.noise == Noise.planner:
        actions = planner_candidates(
            student, expert, obs[:, 0], data_action, task, mask, cfg, generator
        )
        if keep_data_action:
            actions = torch.cat([actions, (data_action * mask[:, None]).unsqueeze(0)])
    else:
        actions = noisy_actions(
            data_action, mask, k, cfg.sample_stds(), generator, keep_data_action=keep_data_action
        )  # [K(+1), B, H, A], masked
    with_pi = any(t.expert_policy for t, _ in terms)
    targets = expert_rollout(expert, obs[:, 0], actions[:k], task, with_pi)
    losses = compiled_student_losses if compile else student_losses
    return losses(student, batch, actions, targets, cfg)


def student_losses(
    student: FactoredStudent,
    batch: dict[str, torch.Tensor],
    actions: torch.Tensor,
    ex: ExpertRollout,
    cfg: DistillConfig,
) -> dict[str, torch.Tensor]:
    """The student's side of :func:`distill_losses`, given the expert's rollout ``ex``.

    Args:
        actions: ``[K, B, H, A]`` noisy actions (``[K + 1, ...]`` with the data actions
            last when a selected term needs them), see :func:`noisy_actions`.
        ex: the expert along ``actions[:K]`` (``pi_mean`` needed by the policy term).
    """
    obs, task = batch[OBS], batch[TASK].long()
    k, horizon = cfg.num_noise_samples, actions.shape[2]
    inputs = DistillBatch(
        obs=obs,
        action=batch[ACTION],
        task=task,
        action_mask=student.merge_actions(student.agent_action_mask(task), task),
        weights=cfg.rho ** torch.arange(horizon, dtype=obs.dtype, device=obs.device),
        expert_planned=batch.get(EXPERT_PLANNED),
    )
    cond = student.condition(task)
    st = student_rollout(
        student, obs[:, 0], actions, task, cond, num_noise_samples=k, group_agents=cfg.group_agents
    )

    out: dict[str, torch.Tensor] = {}
    total = None
    for term, coef in terms_of(student, cfg):
        out[f"loss/{term.name}"] = value = term.fn(st, ex, inputs, cfg)
        total = coef * value if total is None else total + coef * value
    if total is None:
        raise ValueError("no distillation loss term is selected: give distill.terms a coefficient")
    with torch.no_grad():
        out["metric/reward_top1"] = (st.reward.argmax(1) == ex.reward.argmax(1)).float().mean()
        out["metric/value_top1"] = (st.value.mean(1).argmax(1) == ex.value.argmax(1)).float().mean()
    out[LOSS_KEY] = total
    return out


compiled_student_losses = Compiled(student_losses, "the distillation step")
"""One compiled function for the run (graphs keyed by the student, the config and shapes)."""
