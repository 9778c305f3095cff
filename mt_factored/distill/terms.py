"""Named distillation loss terms: one small function each, selected and weighted in the config.

    distill:
      terms: {reward_kl: 0.5, value_kl: 0.1, policy: 1.0}   # the paper's (the default)

A term is ``fn(student, expert, batch, cfg) -> scalar``: the student's rollout
(:class:`StudentRollout`, with gradients), the expert's (:class:`ExpertRollout`, without),
the batch (:class:`DistillBatch`: data windows, action mask, horizon weights) and the
:class:`~mt_factored.distill.DistillConfig`. :func:`~mt_factored.distill.distill_losses`
runs the models once, calls every selected term, logs each under ``loss/<name>`` and sums
``coefficient * term`` in registration order (the built-in terms first, in the order below).

Adding a term is one function and one line of config::

    @loss_term("value_spread")
    def value_spread(student, expert, batch, cfg):
        return (student.value.std(2) - expert.value.std(1).unsqueeze(1)).square().mean()

    distill.terms.value_spread=0.1

A term that needs more than the rollouts carry by default says so (``expert_policy``: the
expert's policy mean along the rollout; ``data_action``: the student's latents along the
unperturbed data actions; ``policy_prior``: the student's policy prior, the term is left out
for a student without one). Both rollouts also carry their model, the final latent and
an ``extra`` mapping, so a term can compute more (e.g. the H-step return of a plan: the
discounted rewards plus the value at the policy's action in the final latent).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mt_factored.distill.config import DistillConfig
from mt_factored.distill.registry import DistillBatch, loss_term
from mt_factored.distill.rollout import ExpertRollout, StudentRollout


# ----------------------------------------------------------------------------- helpers
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
    one_hot = F.one_hot(inverse).to(per_window.dtype)  # [B, T]
    per_task = (per_window @ one_hot) / one_hot.sum(dim=0)  # mean over each task's windows
    return (per_task @ one_hot.T).sqrt().clamp_min(floor)


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


def return_scale(
    expert: torch.Tensor, task: torch.Tensor, floor: float, cfg: DistillConfig
) -> torch.Tensor | float:
    """The divisor of one kind of expert return ``[H, K, B]`` under ``cfg.normalize``."""
    if cfg.normalize == "none":
        return 1.0
    if cfg.normalize == "task":
        return task_scale(expert, 1, task, floor)
    return expert_scale(expert, 1, floor)  # "window" / "shared"


def value_scale(ex: ExpertRollout, batch: DistillBatch, cfg: DistillConfig) -> torch.Tensor | float:
    return return_scale(ex.value, batch.task, cfg.value_std_floor, cfg)


# ------------------------------------------------------------------------------ terms
@loss_term("reward_kl")
def reward_kl(
    st: StudentRollout, ex: ExpertRollout, batch: DistillBatch, cfg: DistillConfig
) -> torch.Tensor:
    """Rank the K rewards of every step like the expert: ``sum_h rho^h KL(R^e_h || R_h)``.

    With ``normalize: shared`` the rewards are divided by the expert's VALUE spread (a reward
    error then costs what it costs the planned return), else by their own (see DistillConfig).
    """
    if cfg.normalize == "shared":  # rewards in the values' units: planning sums both
        scale = value_scale(ex, batch, cfg)
    else:
        scale = return_scale(ex.reward, batch.task, cfg.reward_std_floor, cfg)
    temps = (cfg.student_temperature, cfg.expert_temperature)
    per_step = ranking_kl(st.reward, ex.reward, 1, *temps, scale).mean(dim=-1)  # [H]
    return (batch.weights * per_step).sum()


@loss_term("value_kl")
def value_kl(
    st: StudentRollout, ex: ExpertRollout, batch: DistillBatch, cfg: DistillConfig
) -> torch.Tensor:
    """Rank the K values (every student member against the expert's member mean) like the
    expert: ``sum_h rho^h mean_q KL(Q^e_h || Q^q_h)``."""
    scale = value_scale(ex, batch, cfg)
    if isinstance(scale, torch.Tensor):
        scale = scale.unsqueeze(1)  # broadcast over the student's Q members
    temps = (cfg.student_temperature, cfg.expert_temperature)
    per_step = ranking_kl(st.value, ex.value.unsqueeze(1), 2, *temps, scale).mean(dim=(1, 2))
    return (batch.weights * per_step).sum()


@loss_term("reward_mse")
def reward_mse(
    st: StudentRollout, ex: ExpertRollout, batch: DistillBatch, cfg: DistillConfig
) -> torch.Tensor:
    """Ablation: regress the expert's rewards, raw scale (``distill=mse``)."""
    per_step = (st.reward - ex.reward).square().mean(dim=(1, 2))
    return (batch.weights * per_step).sum()


@loss_term("value_mse")
def value_mse(
    st: StudentRollout, ex: ExpertRollout, batch: DistillBatch, cfg: DistillConfig
) -> torch.Tensor:
    """Ablation: regress the expert's values with every member, raw scale (``distill=mse``)."""
    per_step = (st.value - ex.value.unsqueeze(1)).square().mean(dim=(1, 2, 3))
    return (batch.weights * per_step).sum()


@loss_term("policy", expert_policy=True, policy_prior=True)
def policy(
    st: StudentRollout, ex: ExpertRollout, batch: DistillBatch, cfg: DistillConfig
) -> torch.Tensor:
    """Distill the policy prior: masked MSE between the student's and the expert's
    deterministic actions along the rollouts. The student's latents pass gradient only
    with ``policy_shapes_latents`` (TD-MPC2 detaches its policy from the latents).

    At the first state of a window the expert's planner labelled (``batch.expert_planned``,
    closed-loop rows with ``closed_loop.plans=expert``) the target is the planner's first
    action instead of the expert's policy mean: the best action known at that state."""
    latents = st.latents[:-1]
    if not cfg.policy_shapes_latents:  # TD-MPC2's choice: the prior only reads the latents
        latents = latents.detach()
    pi_mean = st.model.pi(latents, st.cond).mean  # [H, K, B, N, G]
    pi_env = st.model.merge_actions(pi_mean, batch.task)  # [H, K, B, A]
    target = ex.pi_mean
    if batch.expert_planned is not None:
        planned = batch.expert_planned[None, :, None]  # [1, B, 1] over [K, B, A]
        first = torch.where(planned, batch.action[:, 0].to(target)[None], target[0])
        target = torch.cat([first[None], target[1:]])
    per_step = masked_mse(pi_env, target, batch.action_mask).mean(dim=(1, 2))
    return (batch.weights * per_step).sum()


def expert_plan_returns(ex: ExpertRollout) -> torch.Tensor:
    """The expert's MPPI objective of each sequence, ``[K, B]``: ``sum_h gamma^h r_h +
    gamma^H mean_members Q(z_H, pi_mean(z_H))`` (TD-MPC2's planning return, with the policy
    mean for a deterministic target)."""
    task = ex.task
    with torch.no_grad():
        discount = ex.model.discounts.to(ex.reward)[task]  # [B]
        powers = discount ** torch.arange(ex.reward.shape[0] + 1, device=discount.device)[:, None]
        z_h = ex.final_latent  # [K, B, L]
        pi = ex.model.pi_mean(z_h, task)
        terminal = ex.model.q_all(z_h, pi, task).mean(dim=0).squeeze(-1)  # [K, B]
        return (powers[:-1, None] * ex.reward).sum(0) + powers[-1] * terminal


def student_plan_returns(st: StudentRollout) -> torch.Tensor:
    """The student's decentralized MPPI objective summed over its agents, ``[K, B]``: per agent
    ``sum_h gamma^h r_k,h + gamma^H mean_members q_k(s_k,H, pi_k mean)``, then the sum over the
    task's agents (padded agents contribute 0)."""
    model, cond = st.model, st.cond
    discount = cond.discount  # [B]
    powers = discount ** torch.arange(st.reward.shape[0] + 1, device=discount.device)[:, None]
    s_h = st.latents[-1]  # [K, B, N, m]
    pi = model.pi(s_h, cond).mean.detach()  # a proposal: the ranking trains q, not the prior
    terminal = model.q(s_h, pi, cond).mean(dim=0)  # [K, B, N]
    terminal = (terminal * cond.agent_mask.to(terminal.dtype)).sum(-1)
    return (powers[:-1, None] * st.reward).sum(0) + powers[-1] * terminal


@loss_term("return_kl", policy_prior=True)
def return_kl(
    st: StudentRollout, ex: ExpertRollout, batch: DistillBatch, cfg: DistillConfig
) -> torch.Tensor:
    """Rank the K sequences by what the planner maximises, like the expert: ``KL(softmax(J^e /
    sigma) || softmax(J / sigma))`` with J the H-step planning return (discounted rewards plus
    the terminal value at the policy's action) and sigma the expert's std of J over the K
    sequences (floored at ``return_std_floor``). Per-step ranking (reward_kl, value_kl) does not
    ask this question: MPPI scores whole sequences by exactly this sum."""
    expert_j = expert_plan_returns(ex)
    student_j = student_plan_returns(st)
    scale = expert_scale(expert_j, 0, cfg.return_std_floor)
    temps = (cfg.student_temperature, cfg.expert_temperature)
    return ranking_kl(student_j, expert_j, 0, *temps, scale).mean()


@loss_term("consistency", data_action=True)
def consistency(
    st: StudentRollout, ex: ExpertRollout, batch: DistillBatch, cfg: DistillConfig
) -> torch.Tensor:
    """TD-MPC2's latent consistency (the paper finds it harmful, off by default): the
    student's next latents under the data actions vs its encoding of the next observations."""
    with torch.no_grad():
        target = st.model.encode(batch.obs[:, 1:], batch.task[:, None]).transpose(0, 1)
    err = (st.data_latents[1:] - target).square().mean(dim=-1)  # [H, B, N]
    agent_mask = st.cond.agent_mask.to(err.dtype)
    per_window = (err * agent_mask).sum(dim=-1) / agent_mask.sum(dim=-1)
    return (batch.weights * per_window.mean(dim=-1)).sum()
