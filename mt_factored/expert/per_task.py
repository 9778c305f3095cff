"""`PerTaskExperts`: single-task TD-MPC2 experts behind the multi-task padded layout.

Inputs follow the multi-task layout of a `TaskSet` (mt30: obs `[B, 24]`, action
`[B, 6]`, task ids `[B]`). Rows are grouped by task (one sort, one host sync per
call, one batched call per expert present in the batch); each expert sees its
task's native obs/action slice and the results are scattered back. Latents are
zero-padded to the largest expert latent, so `z` is one tensor `[B, latent_dim]`;
actions are zero-padded to the task set's action size.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from mt_factored.expert.model import TDMPC2Expert, load_single_task_expert
from mt_factored.tasks import TaskSet, get_task_set

log = logging.getLogger(__name__)

_Part = tuple[torch.Tensor, torch.Tensor]  # (rows of the flat batch, result for those rows)


class PerTaskExperts(nn.Module):
    """One single-task expert per covered task, used through the `Expert` interface.

    Args:
        experts: task name -> checkpoint path (sizes read off the file) or a
            single-task `TDMPC2Expert` of that task.
        task_set: the multi-task set whose ids, padding, masks and discounts apply.
        map_location: device for experts loaded from paths.
        trust_pickle: unpickle their files fully (see `TDMPC2Expert.from_checkpoint`).
    """

    def __init__(
        self,
        experts: Mapping[str, str | Path | TDMPC2Expert],
        task_set: TaskSet | str = "mt30",
        map_location: str | torch.device = "cpu",
        trust_pickle: bool = False,
    ) -> None:
        super().__init__()
        if not experts:
            raise ValueError("PerTaskExperts needs at least one expert")
        self.task_set = get_task_set(task_set) if isinstance(task_set, str) else task_set
        modules: dict[str, TDMPC2Expert] = {}
        for name, source in experts.items():
            spec = self.task_set[name]  # UnknownTaskError lists close matches
            if not isinstance(source, TDMPC2Expert):
                source = load_single_task_expert(source, name, map_location, trust_pickle)
            c = source.config
            if c.multitask or (c.obs_dim, c.action_dim) != (spec.obs_dim, spec.action_dim):
                raise ValueError(
                    f"expert for {name!r} must be single-task with obs {spec.obs_dim} and "
                    f"action {spec.action_dim}; got {c.num_tasks} task(s), obs {c.obs_dim}, "
                    f"action {c.action_dim}"
                )
            if c.task_names[0] != name:
                log.warning("expert for %r was built for %r", name, c.task_names[0])
            modules[name] = source
        # Ids follow the task set's order, whatever the mapping's order.
        self.experts = nn.ModuleDict(
            {n: modules[n] for n in sorted(modules, key=self.task_set.index)}
        )
        self.register_buffer("_action_masks", self.task_set.action_masks(), persistent=False)
        self.register_buffer("_discounts", torch.tensor(self.task_set.discounts), persistent=False)
        self._latent_dim = max(e.latent_dim for e in modules.values())

    # ----------------------------------------------------------------- facts
    @property
    def tasks(self) -> tuple[str, ...]:
        """Covered task names, in task-id order."""
        return tuple(self.experts)

    @property
    def num_tasks(self) -> int:
        return len(self.task_set)

    @property
    def obs_dim(self) -> int:
        return self.task_set.max_obs_dim

    @property
    def action_dim(self) -> int:
        return self.task_set.max_action_dim

    @property
    def latent_dim(self) -> int:
        return self._latent_dim

    @property
    def action_masks(self) -> torch.Tensor:
        return self._action_masks

    @property
    def discounts(self) -> torch.Tensor:
        return self._discounts

    def action_mask(self, task: torch.Tensor) -> torch.Tensor:
        return self._action_masks[task.long()]

    # --------------------------------------------------------------- routing
    def _route(
        self, task: torch.Tensor, lead: torch.Size
    ) -> list[tuple[TDMPC2Expert, torch.Tensor]]:
        """(expert, rows of the flattened batch) for every task present in `task`."""
        flat = task.long().expand(lead).reshape(-1)
        order = torch.argsort(flat, stable=True)
        ids, counts = torch.unique_consecutive(flat[order], return_counts=True)
        groups, start = [], 0
        for tid, count in zip(ids.tolist(), counts.tolist(), strict=True):
            if not 0 <= tid < len(self.task_set):
                raise ValueError(f"task id {tid} out of range for {self.task_set.name!r}")
            name = self.task_set[tid].name
            if name not in self.experts:
                raise KeyError(
                    f"no expert for task {name!r} (id {tid}); experts cover: "
                    f"{', '.join(self.tasks)}"
                )
            groups.append((self.experts[name], order[start : start + count]))
            start += count
        return groups

    def _run(
        self,
        task: torch.Tensor,
        inputs: tuple[torch.Tensor, ...],
        widths: tuple[Callable[[TDMPC2Expert], int], ...],
        fn: Callable[..., torch.Tensor],
        out_width: int,
        member_axis: bool = False,
    ) -> torch.Tensor:
        """Runs `fn(expert, *native inputs)` per task group and scatters the results.

        Inputs are `[..., dim]` with shared batch dims; each is cut to `widths[i](expert)`.
        Results `[n, w]` (or `[members, n, w]` with `member_axis`) are zero-padded to
        `out_width` and put back in batch order.
        """
        lead = inputs[0].shape[:-1]
        flat = [x.reshape(-1, x.shape[-1]) for x in inputs]
        parts: list[_Part] = []
        for expert, rows in self._route(task, lead):
            native = [x[rows, : width(expert)] for x, width in zip(flat, widths, strict=True)]
            parts.append((rows, fn(expert, *native)))
        return _assemble(parts, flat[0], out_width, lead, member_axis)

    # ---------------------------------------------------------------- Expert
    def encode(self, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        return self._run(task, (obs,), (_obs,), lambda e, o: e.encode(o, None), self.latent_dim)

    def next(self, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        return self._run(
            task,
            (z, action),
            (_latent, _act),
            lambda e, z_, a: e.next(z_, a, None),
            self.latent_dim,
        )

    def reward(self, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        return self._run(
            task, (z, action), (_latent, _act), lambda e, z_, a: e.reward(z_, a, None), 1
        )

    def q_all(
        self, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor, target: bool = False
    ) -> torch.Tensor:
        """`[num_q, ..., 1]`; every expert in the batch must have the same num_q."""
        return self._run(
            task,
            (z, action),
            (_latent, _act),
            lambda e, z_, a: e.q_all(z_, a, None, target=target),
            1,
            member_axis=True,
        )

    def q_avg(
        self,
        z: torch.Tensor,
        action: torch.Tensor,
        task: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return self._run(
            task,
            (z, action),
            (_latent, _act),
            lambda e, z_, a: e.q_avg(z_, a, None, generator=generator),
            1,
        )

    def pi_mean(self, z: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        return self._run(task, (z,), (_latent,), lambda e, z_: e.pi_mean(z_, None), self.action_dim)

    def pi_sample(
        self, z: torch.Tensor, task: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self._run(
            task,
            (z,),
            (_latent,),
            lambda e, z_: e.pi_sample(z_, None, generator),
            self.action_dim,
        )


def _obs(expert: TDMPC2Expert) -> int:
    return expert.obs_dim


def _latent(expert: TDMPC2Expert) -> int:
    return expert.latent_dim


def _act(expert: TDMPC2Expert) -> int:
    return expert.action_dim


def _assemble(
    parts: list[_Part], like: torch.Tensor, width: int, lead: torch.Size, member_axis: bool
) -> torch.Tensor:
    """Zero tensor `[(members,) n, width]` with each part's rows filled, reshaped to lead."""
    n = like.shape[0]
    if not parts:
        return like.new_zeros(*lead, width)
    members = {res.shape[0] for _, res in parts} if member_axis else {None}
    if len(members) > 1:
        raise ValueError(f"experts in this batch have different ensemble sizes {sorted(members)}")
    (m,) = members
    first = parts[0][1]
    out = first.new_zeros((n, width) if m is None else (m, n, width))
    for rows, res in parts:
        out[..., rows, : res.shape[-1]] = res
    return out.reshape(*out.shape[:-2], *lead, width)
