"""How far an expert's planning objective is from additive over joints, and agents from it.

Decentralized planning is exact when the return adds up over agents (Fac-TDMPC's
Proposition 1). This measures how far the expert is from that at the states of its data:
for a state and two independent uniform draws ``a, a'`` of the action sequence, with
``a^{i}`` meaning ``a`` whose joint ``i`` takes its values from ``a'``,

    T_i   = E[(J(a) - J(a^{i}))^2] / 2                         (total effect of joint i)
    U_ij  = E[(J(a) - J(a^{i}) - J(a^{j}) + J(a^{ij}))^2] / 4  (every interaction holding i and j)
    score = U_ij / sqrt(T_i T_j)

``U_ij`` is Liu & Owen's (2006) superset importance of the pair in the functional ANOVA
of ``J`` over the action box: it is exactly 0 when ``J`` is additive in (i, j) whatever the
other joints do, and ``score`` is 1 for a pure product ``a_i a_j``. ``J`` is the expert's
H-step planning return (discounted model rewards plus the value of its policy action at
the end; ``horizon=0`` gives its Q of the first action alone). Uniform draws cover the box
that MPPI's first iteration (std 2, clamped) explores.

:func:`propose_groups` turns the matrix into agents: the connected components of the
pairs above a threshold. ``python -m mt_factored.partition method=interaction``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from mt_factored.errors import InputError

ReturnFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps action sequences ``[S, H, A]`` (one per state of the batch) to returns ``[S]``."""


def interaction_matrix(
    returns: ReturnFn, base: torch.Tensor, other: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairwise interaction scores of ``returns`` over the joints (the last dim).

    Args:
        returns: the objective, evaluated at one action sequence per state.
        base, other: two independent draws of action sequences ``[S, H, A]``.

    Returns:
        (score ``[A, A]`` with a unit diagonal, total effect ``T [A]``).
    """
    if base.shape != other.shape or base.dim() != 3:
        raise InputError(
            f"base and other must both be [S, H, A], got {tuple(base.shape)}, {tuple(other.shape)}"
        )
    dims = base.shape[-1]
    j0 = returns(base)

    def swapped(*joints: int) -> torch.Tensor:
        a = base.clone()
        a[..., list(joints)] = other[..., list(joints)]
        return returns(a)

    singles = [swapped(i) for i in range(dims)]
    total = torch.stack([(j0 - s).square().mean() / 2 for s in singles])
    score = torch.eye(dims, dtype=total.dtype)
    for i in range(dims):
        for j in range(i + 1, dims):
            mixed = j0 - singles[i] - singles[j] + swapped(i, j)
            u = mixed.square().mean() / 4
            score[i, j] = score[j, i] = u / (total[i] * total[j]).sqrt().clamp_min(1e-12)
    return score, total


def expert_interaction(
    expert,
    obs: torch.Tensor,
    task: torch.Tensor,
    action_dim: int,
    horizon: int = 3,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`interaction_matrix` of an expert's planning return at states ``obs [S, obs_dim]``.

    Args:
        expert: an ``Expert`` (``encode``, ``next``, ``reward``, ``q_all``, ``pi_mean``,
            ``discounts``).
        task: ``[S]`` task ids.
        action_dim: the task's real action entries (the first ``action_dim`` of the layout).
        horizon: steps of the return (0: the Q of the first action only).
    """
    steps = max(horizon, 1)
    with torch.no_grad():
        z0 = expert.encode(obs, task)
        discount = expert.discounts.to(z0)[task]
        width = expert.action_dim

        def returns(seq: torch.Tensor) -> torch.Tensor:
            padded = torch.nn.functional.pad(seq, (0, width - action_dim))
            if horizon == 0:
                return expert.q_all(z0, padded[:, 0], task).mean(0).squeeze(-1)
            z, weight, total = z0, torch.ones_like(discount), torch.zeros_like(discount)
            for h in range(horizon):
                total = total + weight * expert.reward(z, padded[:, h], task).squeeze(-1)
                z = expert.next(z, padded[:, h], task)
                weight = weight * discount
            return total + weight * expert.q_all(z, expert.pi_mean(z, task), task).mean(0).squeeze(
                -1
            )

        shape = (obs.shape[0], steps, action_dim)
        device = obs.device
        base = torch.rand(shape, generator=generator, device=device) * 2 - 1
        other = torch.rand(shape, generator=generator, device=device) * 2 - 1
        return interaction_matrix(returns, base, other)


def propose_groups(score: torch.Tensor, threshold: float) -> tuple[tuple[int, ...], ...]:
    """Agents as the connected components of the joint pairs scoring above ``threshold``
    (each component sorted, components ordered by their first joint)."""
    if not 0 < threshold < 1:
        raise InputError(f"the interaction threshold must be in (0, 1), got {threshold}")
    n = score.shape[0]
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if float(score[i, j]) > threshold:
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    return tuple(sorted(tuple(g) for g in groups.values()))
