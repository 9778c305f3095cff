"""Sub-dynamics discovery: group a robot's action dimensions by the state changes they drive.

ED2's idea (sub-dynamics discovery, SD2): describe every action dimension by how strongly it
moves each state dimension, then cluster action dimensions with similar descriptions; each
cluster becomes one agent. Three pure steps on transitions ``(s, a, s')``:

1. :func:`influence_matrix` ``[A, S]``: effect of action ``i`` on the change of state ``j``.
   ``method="regression"`` (default) fits ``Δs ~ [s, a]`` by ridge regression on
   standardised columns and keeps ``|coefficient|`` of the action block: the effect of ``a_i``
   with the state and the other actions held fixed. Data collected by a state-feedback
   policy makes actions correlated with the state; conditioning on ``s`` keeps that
   correlation out of the influence. ``method="correlation"`` is ED2's measure,
   ``|Pearson(a_i, Δs_j)|``. Either way an entry counts only when significant
   (``|t| >= min_t``), so action dims without a measurable effect get an all-zero row
   instead of a profile of noise (absolute values of noise look alike: two such rows would
   have a cosine similarity near 2/pi).
2. :func:`action_affinity` ``[A, A]``: cosine similarity of the influence rows, in [0, 1].
3. :func:`cluster_actions`: agglomerative clustering of the affinity. Number of groups:
   merge while the two most similar groups are linked by at least ``threshold``, or force
   ``num_groups``. With complete linkage (default) the link is the *least* similar pair,
   so every pair of action dims in a group has affinity ``>= threshold`` ("they drive
   mostly the same state changes"); average linkage uses the mean pair, which lets chains
   (a~b, b~c, a!~c) grow into one group depending on the merge order.

:func:`discover_partition` runs all three.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mt_factored.errors import InputError
from mt_factored.student.config import Partition

Method = Literal["regression", "correlation"]
METHODS = ("regression", "correlation")
Linkage = Literal["complete", "average"]
LINKAGES = ("complete", "average")

_CONSTANT_STD = 1e-8  # columns with a smaller standard deviation carry no signal


@dataclass(kw_only=True)
class Discovery:
    """How :func:`discover_partition` measures influence and clusters (also the keys of
    ``python -m mt_factored.partition``)."""

    method: str = "regression"
    """Influence of action dim i on state change j: regression (|coefficient| of a_i in a
    ridge fit of ds on [s, a], standardised columns; holds the state fixed, so
    feedback-policy data does not blur the profiles) or correlation (ED2's |Pearson(a_i,
    ds_j)|). ``python -m mt_factored.partition method=interaction`` groups by the expert's
    return instead (:mod:`.interaction`: how far it is from additive over joints)."""
    ridge: float = 1.0e-3
    """Ridge penalty per transition (standardised units)."""
    min_t: float = 4.0
    """Entries with |t statistic| below this count as no influence."""
    linkage: str = "complete"
    """Agglomerative clustering of the cosine similarity (0..1) of influence profiles:
    complete merges while some two groups have EVERY cross pair at least ``threshold``
    similar; average uses the mean cross pair (chains a~b~c can end up in one group)."""
    threshold: float = 0.5
    """Similarity at which groups merge."""
    num_groups: int | None = None
    """Force this many groups (null: use threshold)."""


@dataclass(frozen=True)
class PartitionResult:
    """What :func:`discover_partition` found, with the evidence behind it."""

    partition: Partition
    """Groups of action indices (sorted, groups ordered by their first index)."""
    influence: np.ndarray
    """``[A, S]`` significant influence of each action dim on each state-change dim."""
    affinity: np.ndarray
    """``[A, A]`` cosine similarity of the influence rows (1 on the diagonal)."""
    merges: tuple[tuple[Partition, float], ...]
    """The clustering's merges in order: (the two groups merged, their link)."""


def _as_matrix(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"{name} must be [transitions, dim], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InputError(
            f"{name} holds NaN or inf values; drop the first frame of each episode "
            "(action[:, 0] is NaN in the chunk format) and any padding rows first"
        )
    return x


def _standardize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns to zero mean and unit variance; constant columns become 0. Returns (z, kept)."""
    std = x.std(axis=0)
    kept = std > _CONSTANT_STD
    z = np.zeros_like(x)
    z[:, kept] = (x[:, kept] - x[:, kept].mean(axis=0)) / std[kept]
    return z, kept


def _regression_effects(
    state: np.ndarray, action: np.ndarray, delta: np.ndarray, ridge: float
) -> tuple[np.ndarray, np.ndarray]:
    """Ridge fit ``delta ~ [state, action]`` (all standardised): action coefficients and t."""
    n, num_states = state.shape
    x = np.concatenate([state, action], axis=1)
    gram = x.T @ x
    inv = np.linalg.pinv(gram + ridge * n * np.eye(x.shape[1]), hermitian=True)
    coef = inv @ (x.T @ delta)  # [S + A, S']
    dof = max(n - x.shape[1] - 1, 1)
    noise_var = ((delta - x @ coef) ** 2).sum(axis=0) / dof  # [S']
    # Ridge estimator covariance: noise_var * inv X'X inv (exactly OLS's when ridge = 0).
    coef_var = np.einsum("ik,kl,li->i", inv, gram, inv)[:, None] * noise_var[None]
    t = coef / np.sqrt(np.maximum(coef_var, np.finfo(np.float64).tiny))
    return coef[num_states:], t[num_states:]


def _correlation_effects(action: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of every action dim with every state change, and its t statistic."""
    n = action.shape[0]
    r = np.clip(action.T @ delta / n, -1.0, 1.0)  # both standardised
    t = r * np.sqrt(max(n - 2, 1) / np.maximum(1.0 - r**2, 1e-12))
    return r, t


def influence_matrix(
    obs: np.ndarray,
    next_obs: np.ndarray,
    action: np.ndarray,
    method: Method = "regression",
    ridge: float = 1e-3,
    min_t: float = 4.0,
) -> np.ndarray:
    """How strongly each action dimension changes each state dimension.

    Args:
        obs: ``[N, S]`` states ``s_t``.
        next_obs: ``[N, S]`` states ``s_{t+1}``.
        action: ``[N, A]`` actions ``a_t`` that led from ``obs`` to ``next_obs``.
        method: "regression" (ridge fit of ``Δs`` on ``[s, a]``) or "correlation" (ED2's
            Pearson correlation of ``a`` with ``Δs``).
        ridge: L2 penalty of the regression per transition, on standardised columns.
        min_t: entries whose ``|t|`` statistic is below this are set to 0 (4 keeps false
            positives near 1e-4 per entry on independent samples; transitions of one
            episode are correlated, so the real rate is higher).

    Returns:
        ``[A, S]`` non-negative influences in standardised units; constant action or state
        columns give zero rows / columns.
    """
    obs, next_obs, action = (
        _as_matrix(obs, "obs"),
        _as_matrix(next_obs, "next_obs"),
        _as_matrix(action, "action"),
    )
    if obs.shape != next_obs.shape or len(action) != len(obs):
        raise InputError(
            f"need obs and next_obs [N, S] and action [N, A] with the same N; got "
            f"{obs.shape}, {next_obs.shape}, {action.shape}"
        )
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    if ridge < 0 or min_t < 0:
        raise InputError(f"ridge and min_t must be >= 0, got {ridge}, {min_t}")
    num_params = obs.shape[1] + action.shape[1] + 1
    if len(obs) <= num_params:
        raise InputError(
            f"{len(obs)} transitions are too few to fit {num_params} parameters; use more episodes"
        )
    # Constant columns (padding, a dead actuator) are left out of the fit: they have no
    # variance to explain or to explain with, and they would make the Gram matrix singular.
    state, state_kept = _standardize(obs)
    act, act_kept = _standardize(action)
    delta, _ = _standardize(next_obs - obs)
    if method == "regression":
        effect, t = _regression_effects(state[:, state_kept], act[:, act_kept], delta, ridge)
    else:
        effect, t = _correlation_effects(act[:, act_kept], delta)
    influence = np.zeros((action.shape[1], obs.shape[1]))
    influence[act_kept] = np.where(np.abs(t) >= min_t, np.abs(effect), 0.0)
    return influence


def action_affinity(influence: np.ndarray) -> np.ndarray:
    """``[A, A]`` cosine similarity of the influence rows; a zero row is similar to nothing."""
    influence = np.asarray(influence, dtype=np.float64)
    if influence.ndim != 2 or (influence < 0).any():
        raise InputError(f"influence must be a non-negative [A, S] matrix, got {influence.shape}")
    norm = np.linalg.norm(influence, axis=1, keepdims=True)
    unit = np.divide(influence, norm, out=np.zeros_like(influence), where=norm > 0)
    affinity = unit @ unit.T
    np.fill_diagonal(affinity, 1.0)
    return np.clip(affinity, 0.0, 1.0)


def _group_links(members: np.ndarray, affinity: np.ndarray, linkage: Linkage) -> np.ndarray:
    """``[C, C]`` link between groups (one-hot ``members [C, A]``); -inf on the diagonal."""
    if linkage == "average":
        sizes = members.sum(axis=1)
        links = members @ affinity @ members.T / np.outer(sizes, sizes)
    else:  # complete: the least similar cross pair of groups g and h
        pairs = members[:, None, :, None] * members[None, :, None, :] > 0  # [C, C, A, A]
        links = np.where(pairs, affinity, np.inf).min(axis=(2, 3))
    np.fill_diagonal(links, -np.inf)
    return links


def cluster_actions(
    affinity: np.ndarray,
    threshold: float = 0.5,
    num_groups: int | None = None,
    linkage: Linkage = "complete",
) -> tuple[Partition, tuple[tuple[Partition, float], ...]]:
    """Agglomerative clustering of action dims by their affinity.

    Args:
        affinity: ``[A, A]`` symmetric similarities in [0, 1].
        threshold: without ``num_groups``, keep merging the two most linked groups while
            their link is ``>= threshold``.
        num_groups: merge until exactly this many groups remain (1..A), whatever the links.
        linkage: "complete" (link = least similar cross pair) or "average" (mean pair).

    Returns:
        (partition, merges): the groups (sorted, ordered by first index) and every merge
        done as ((group, group), link).
    """
    affinity = np.asarray(affinity, dtype=np.float64)
    num_actions = affinity.shape[0]
    if affinity.shape != (num_actions, num_actions) or num_actions < 1:
        raise InputError(f"affinity must be a square [A, A] matrix, got {affinity.shape}")
    if not np.allclose(affinity, affinity.T):
        raise InputError("affinity must be symmetric")
    if num_groups is not None and not 1 <= num_groups <= num_actions:
        raise InputError(f"num_groups must lie in [1, {num_actions}], got {num_groups}")
    if linkage not in LINKAGES:
        raise InputError(f"linkage must be one of {LINKAGES}, got {linkage!r}")
    members = np.eye(num_actions)  # [groups, A] one-hot membership
    merges = []
    while len(members) > (num_groups or 1):
        links = _group_links(members, affinity, linkage)
        g, h = np.unravel_index(np.argmax(links), links.shape)
        if num_groups is None and links[g, h] < threshold:
            break
        pair = tuple(sorted((*_groups(members[[g]]), *_groups(members[[h]])), key=min))
        merges.append((pair, float(links[g, h])))
        members[g] += members[h]
        members = np.delete(members, h, axis=0)
    return _groups(members), tuple(merges)


def _groups(members: np.ndarray) -> Partition:
    groups = [tuple(int(j) for j in np.flatnonzero(row)) for row in members]
    return tuple(sorted(groups, key=min))


def discover_partition(
    obs: np.ndarray,
    next_obs: np.ndarray,
    action: np.ndarray,
    settings: Discovery | None = None,
    **overrides: object,
) -> PartitionResult:
    """Influence -> affinity -> clustering (see the module docstring and each step).

    Args:
        obs, next_obs, action: as for :func:`influence_matrix`.
        settings: method, ridge, min_t, threshold, num_groups, linkage (default
            :class:`Discovery`'s); ``overrides`` replace single ones, e.g. ``num_groups=2``.

    Returns:
        A :class:`PartitionResult`; ``result.partition`` is ready for
        ``StudentConfig.partitions``.
    """
    s = dataclasses.replace(settings or Discovery(), **overrides)
    influence = influence_matrix(
        obs, next_obs, action, method=s.method, ridge=s.ridge, min_t=s.min_t
    )
    affinity = action_affinity(influence)
    partition, merges = cluster_actions(
        affinity, threshold=s.threshold, num_groups=s.num_groups, linkage=s.linkage
    )
    return PartitionResult(partition, influence, affinity, merges)
