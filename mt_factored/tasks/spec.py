"""Task descriptions as data: `TaskSpec` (one task) and `TaskSet` (an ordered list of tasks).

Nothing here imports dm_control; building environments lives in `mt_factored.tasks.env`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch

from mt_factored.errors import InputError

# Domain names of the task-name prefix that differ from the dm_control domain name.
DOMAIN_ALIASES: dict[str, str] = {"cup": "ball_in_cup", "pointmass": "point_mass"}


class UnknownTaskError(InputError):
    """A task name that is not in the task set; the message lists close matches."""

    def __init__(self, name: str, known: Iterable[str], where: str = "") -> None:
        known = list(known)
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        where = f" in {where}" if where else ""
        if close:
            hint = "Did you mean: " + ", ".join(close) + "?"
        else:
            hint = "Known tasks: " + ", ".join(known)
        super().__init__(f"Unknown task {name!r}{where}. {hint}")
        self.name = name
        self.close_matches = tuple(close)


def dm_control_names(name: str) -> tuple[str, str]:
    """Maps a task name to its dm_control (domain, task) pair.

    Every `-` becomes `_`, the result is split once at the first `_`, and the domain
    aliases (`cup` -> `ball_in_cup`) are applied:
    `cartpole-balance-sparse` -> (`cartpole`, `balance_sparse`).

    Args:
        name: task name such as "reacher-three-easy".

    Returns:
        (domain, task) as dm_control's `suite.load` expects them.
    """
    domain, sep, task = name.replace("-", "_").partition("_")
    if not sep or not domain or not task:
        raise ValueError(f"Task name {name!r} is not of the form '<domain>-<task>'.")
    return DOMAIN_ALIASES.get(domain, domain), task


@dataclass(frozen=True)
class TaskSpec:
    """One task: its dm_control names, flattened observation layout and timing."""

    name: str
    """Task name, e.g. "walker-stand"."""
    domain: str
    """dm_control domain, e.g. "ball_in_cup"."""
    task: str
    """dm_control task within the domain, e.g. "catch"."""
    obs_dim: int
    """Size of the flattened observation (sum of the `obs_keys` sizes)."""
    action_dim: int
    """Number of actuators; actions lie in [-1, 1]."""
    obs_keys: tuple[tuple[str, int], ...]
    """(key, flattened size) of each dm_control observation entry, in flattening order."""
    episode_length: int = 500
    """Agent steps per episode."""
    action_repeat: int = 2
    """dm_control steps per agent step."""
    custom: bool = False
    """True for tasks this package adds to dm_control (see `mt_factored.tasks.custom`)."""

    def __post_init__(self) -> None:
        if self.obs_dim != sum(size for _, size in self.obs_keys):
            raise ValueError(
                f"{self.name}: obs_dim {self.obs_dim} != sum of obs_keys sizes {self.obs_keys}."
            )
        if self.action_dim < 1 or self.episode_length < 1 or self.action_repeat < 1:
            raise ValueError(
                f"{self.name}: action_dim, episode_length, action_repeat must be >= 1."
            )

    @property
    def discount(self) -> float:
        """TD-MPC2's heuristic discount: clip((f - 1) / f, 0.95, 0.995), f = episode_length / 5."""
        frac = self.episode_length / 5
        return min(max((frac - 1) / frac, 0.95), 0.995)


def task_spec(
    name: str, obs_keys: tuple[tuple[str, int], ...], action_dim: int, custom: bool = False
) -> TaskSpec:
    """Builds a `TaskSpec` whose dm_control names and obs_dim follow from `name` and `obs_keys`."""
    domain, task = dm_control_names(name)
    obs_dim = sum(size for _, size in obs_keys)
    return TaskSpec(name, domain, task, obs_dim, action_dim, obs_keys, custom=custom)


@dataclass(frozen=True)
class TaskSet:
    """An ordered, immutable list of tasks; a task's position is its task id."""

    name: str
    tasks: tuple[TaskSpec, ...]
    _ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if not self.tasks:
            raise ValueError(f"Task set {self.name!r} is empty.")
        ids = {spec.name: i for i, spec in enumerate(self.tasks)}
        if len(ids) != len(self.tasks):
            dupes = sorted({s.name for s in self.tasks if self.names.count(s.name) > 1})
            raise ValueError(f"Task set {self.name!r} lists tasks twice: {dupes}.")
        object.__setattr__(self, "_ids", ids)

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(self.tasks)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, TaskSpec):
            return item in self.tasks
        return item in self._ids

    def __getitem__(self, key: int | str) -> TaskSpec:
        """The task with id `key` (int) or name `key` (str)."""
        if isinstance(key, str):
            return self.tasks[self.index(key)]
        if not 0 <= key < len(self.tasks):
            raise IndexError(f"Task id {key} out of range for {self.name!r} ({len(self)} tasks).")
        return self.tasks[key]

    def index(self, name: str) -> int:
        """The task id of `name`; raises `UnknownTaskError` listing close matches."""
        try:
            return self._ids[name]
        except KeyError:
            raise UnknownTaskError(name, self.names, f"task set {self.name!r}") from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.tasks)

    @property
    def obs_dims(self) -> tuple[int, ...]:
        return tuple(spec.obs_dim for spec in self.tasks)

    @property
    def action_dims(self) -> tuple[int, ...]:
        return tuple(spec.action_dim for spec in self.tasks)

    @property
    def episode_lengths(self) -> tuple[int, ...]:
        return tuple(spec.episode_length for spec in self.tasks)

    @property
    def discounts(self) -> tuple[float, ...]:
        return tuple(spec.discount for spec in self.tasks)

    @property
    def max_obs_dim(self) -> int:
        return max(self.obs_dims)

    @property
    def max_action_dim(self) -> int:
        return max(self.action_dims)

    def action_masks(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Float mask [num_tasks, max_action_dim]: 1 on each task's first action_dim entries."""
        dims = torch.tensor(self.action_dims, device=device)
        cols = torch.arange(self.max_action_dim, device=device)
        return (cols[None, :] < dims[:, None]).float()

    def subset(self, names: str | Iterable[str], name: str | None = None) -> TaskSet:
        """A new task set of `names` in the given order (task ids are positions in the subset).

        Args:
            names: task names of this set (a single name is a one-task subset).
            name: name of the new set; defaults to "<this name>-subset".

        Returns:
            The subset. Map a task back to this set's id with `self.index(spec.name)`.
        """
        names = [names] if isinstance(names, str) else list(names)
        specs = tuple(self[n] for n in names)
        return TaskSet(name or f"{self.name}-subset", specs)
