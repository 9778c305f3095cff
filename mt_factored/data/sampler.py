"""Which windows go into batch k: pure functions of (seed, epoch, world size, rank, k).

Window ids. With F frames per episode and horizon H, an episode has S = F - H valid starts
t in [0, S): the window reads obs[t..t+H], action[t+1..t+H], reward[t+1..t+H], so it
never crosses an episode and never reads the unused slot action[0] / reward[0].
Window id w = i * S + t for the i-th selected episode.

Uniform sampling (the default): a global stream of positions p = 0, 1, 2, ... maps to
windows through a pseudo-random permutation of all N window ids per epoch
(epoch = p // N, a new key per epoch), so an epoch-sized draw never repeats a window.
Rank r of W takes, for its batch k, the positions [(k*W + r)*B, (k*W + r + 1)*B).

Per-task weights: a schedule of M = 65,536 slots holds task j in round(w_j * M) slots
(largest remainder, at least 1 per weighted task) in a seeded shuffled order. Position p
falls in slot p % M of cycle p // M; its task is that slot's task and its index within
the task is cycle * count_j + (earlier slots of task j in the schedule). That index runs
through a per-task permutation of the task's windows (a new key per task epoch). So
the task mix follows the weights exactly per cycle of M positions, no window of a task
repeats within that task's epoch, and every quantity is a pure function of (seed, p).

The permutation is a keyed Feistel network on the next even power of two >= N with
cycle-walking (memory-free; O(1) per id; stable across numpy versions).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from mt_factored.errors import InputError

SCHEDULE_SLOTS = 1 << 16
_ROUNDS = 4  # Luby-Rackoff: 4 rounds of a pseudo-random function give a pseudo-random permutation
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_ROUND_OFFSETS = np.array(
    [(0x9E3779B97F4A7C15 * (r + 1)) % 2**64 for r in range(_ROUNDS)], dtype=np.uint64
)


def key64(*parts: object) -> int:
    """A stable 64-bit key from printable parts (seed, tags, ...)."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little")


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def permute(index: np.ndarray, n: np.ndarray | int, key: np.ndarray | int) -> np.ndarray:
    """Applies the keyed permutation of [0, n) to `index` (element-wise n and key allowed).

    Args:
        index: int array, each entry in [0, n).
        n: domain size(s), broadcastable to `index`.
        key: 64-bit key(s), broadcastable to `index`.

    Returns:
        int64 array of permuted ids, each in [0, n).
    """
    index = np.asarray(index, dtype=np.int64)
    n = np.broadcast_to(np.asarray(n, dtype=np.int64), index.shape)
    key = np.broadcast_to(np.asarray(key, dtype=np.uint64), index.shape)
    sizes, inverse = np.unique(n, return_inverse=True)
    size_bits = np.array([max(2, (int(v) - 1).bit_length()) for v in sizes], dtype=np.uint64)
    bits = (size_bits + (size_bits & np.uint64(1)))[inverse.reshape(index.shape)]  # even
    half = bits >> np.uint64(1)
    mask = (np.uint64(1) << half) - np.uint64(1)
    round_keys = [_mix(key + offset) for offset in _ROUND_OFFSETS]

    def feistel(x: np.ndarray, sel: slice | np.ndarray) -> np.ndarray:
        h, m = half[sel], mask[sel]
        left, right = x >> h, x & m
        for rk in round_keys:
            left, right = right, left ^ (_mix(right ^ rk[sel]) & m)
        return (left << h) | right

    out = feistel(index.astype(np.uint64), slice(None))
    todo = np.flatnonzero(out >= n.astype(np.uint64))
    while todo.size:  # cycle-walking: expected < 4 extra rounds
        out[todo] = feistel(out[todo], todo)
        todo = todo[out[todo] >= n[todo].astype(np.uint64)]
    return out.astype(np.int64)


def _epoch_keys(seed_key: int, tag: np.ndarray, epoch: np.ndarray) -> np.ndarray:
    """Per-element permutation keys for (tag, epoch) pairs under one seed."""
    x = np.uint64(seed_key) ^ _mix(tag.astype(np.uint64) * _GOLDEN + epoch.astype(np.uint64))
    return _mix(x)


class WindowSampler:
    """Maps (rank, world size, batch index) to the (episode, start) of every window.

    Args:
        episode_tasks: task id of every episode of the dataset, [episodes].
        frames: frames per episode (501 for mt30).
        horizon: H; a window spans H + 1 frames.
        batch_size: windows per batch (per rank).
        seed: the stream's seed.
        task_ids: restrict sampling to these tasks (None: all).
        task_weights: {task id: weight} or a sequence indexed by task id (None: uniform
            over all selected windows). Tasks with weight 0 are not sampled.
    """

    def __init__(
        self,
        episode_tasks: np.ndarray,
        frames: int,
        horizon: int,
        batch_size: int,
        seed: int = 0,
        task_ids: Sequence[int] | None = None,
        task_weights: Mapping[int, float] | Sequence[float] | None = None,
    ) -> None:
        if horizon < 1 or horizon >= frames:
            raise InputError(
                f"horizon must be in [1, {frames - 1}] for {frames}-frame episodes, got {horizon}"
            )
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.starts = frames - horizon  # valid window starts per episode
        self.batch_size = batch_size
        self.seed_key = key64("mt_factored.window_sampler", int(seed))
        episode_tasks = np.asarray(episode_tasks, dtype=np.int64)
        present = np.unique(episode_tasks)
        if task_ids is not None:
            task_ids = [int(t) for t in task_ids]
            missing = sorted(set(task_ids) - set(present.tolist()))
            if missing:
                raise InputError(
                    f"task_ids {missing} have no episodes in the dataset "
                    f"(tasks present: {present.tolist()})"
                )
            selected = np.isin(episode_tasks, task_ids)
        else:
            selected = np.ones(len(episode_tasks), dtype=bool)
        self.weighted = task_weights is not None
        if not self.weighted:
            self.episodes = None if selected.all() else np.flatnonzero(selected)
            count = len(episode_tasks) if self.episodes is None else len(self.episodes)
            self.num_windows = count * self.starts
            if self.num_windows == 0:
                raise InputError("no episodes to sample windows from")
            return
        weights = self._weights(task_weights, present, task_ids)
        self.tasks = np.array(sorted(weights), dtype=np.int64)  # active tasks (weight > 0)
        order = np.argsort(episode_tasks, kind="stable")
        bounds = np.searchsorted(episode_tasks[order], self.tasks, side="left")
        ends = np.searchsorted(episode_tasks[order], self.tasks, side="right")
        self.task_episodes = [order[a:b] for a, b in zip(bounds, ends, strict=True)]
        self.task_windows = np.array(
            [len(e) * self.starts for e in self.task_episodes], dtype=np.int64
        )
        self.num_windows = int(self.task_windows.sum())
        self._build_schedule(np.array([weights[t] for t in self.tasks.tolist()], dtype=np.float64))

    @staticmethod
    def _weights(task_weights, present: np.ndarray, task_ids) -> dict[int, float]:
        if isinstance(task_weights, Mapping):
            weights = {int(t): float(w) for t, w in task_weights.items()}
        else:
            weights = {t: float(w) for t, w in enumerate(task_weights)}
        if any(w < 0 or not np.isfinite(w) for w in weights.values()):
            raise InputError(f"task_weights must be finite and >= 0, got {weights}")
        if task_ids is not None:
            weights = {t: w for t, w in weights.items() if t in set(task_ids)}
        weights = {t: w for t, w in weights.items() if w > 0}
        if not weights:
            raise InputError("task_weights gives no selected task a positive weight")
        missing = sorted(set(weights) - set(present.tolist()))
        if missing:
            raise InputError(f"task_weights give weight to tasks {missing} that have no episodes")
        return weights

    def _build_schedule(self, weights: np.ndarray) -> None:
        slots = SCHEDULE_SLOTS
        raw = weights / weights.sum() * slots
        counts = np.floor(raw).astype(np.int64)
        extra = np.argsort(-(raw - counts), kind="stable")[: slots - counts.sum()]
        counts[extra] += 1
        while (counts == 0).any():  # every weighted task gets at least one slot
            counts[np.argmax(counts)] -= 1
            counts[np.flatnonzero(counts == 0)[0]] += 1
        base = np.repeat(np.arange(len(counts)), counts)
        shuffle = permute(np.arange(slots), slots, key64(self.seed_key, "schedule"))
        self.slot_task = base[shuffle]  # index into self.tasks
        order = np.argsort(self.slot_task, kind="stable")
        first = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.slot_rank = np.empty(slots, dtype=np.int64)
        self.slot_rank[order] = np.arange(slots) - first[self.slot_task[order]]
        self.slot_counts = counts

    def positions(self, batch: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
        """Stream positions of batch `batch` of rank `rank` among `world_size` ranks."""
        if not 0 <= rank < world_size:
            raise InputError(f"rank {rank} not in [0, {world_size})")
        first = (int(batch) * world_size + rank) * self.batch_size
        return first + np.arange(self.batch_size, dtype=np.int64)

    def windows(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(episode index, start frame) of the window at each stream position."""
        if not self.weighted:
            epoch, index = np.divmod(positions, self.num_windows)
            keys = _epoch_keys(self.seed_key, np.zeros_like(epoch), epoch)
            window = permute(index, self.num_windows, keys)
            episode, start = np.divmod(window, self.starts)
            if self.episodes is not None:
                episode = self.episodes[episode]
            return episode, start
        cycle, slot = np.divmod(positions, SCHEDULE_SLOTS)
        task = self.slot_task[slot]
        within = cycle * self.slot_counts[task] + self.slot_rank[slot]
        n = self.task_windows[task]
        epoch, index = np.divmod(within, n)
        window = permute(index, n, _epoch_keys(self.seed_key, self.tasks[task] + 1, epoch))
        local, start = np.divmod(window, self.starts)
        episode = np.empty_like(local)
        for j in np.unique(task):
            sel = task == j
            episode[sel] = self.task_episodes[j][local[sel]]
        return episode, start

    def batch(
        self, batch: int, rank: int = 0, world_size: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """(episode, start) of the `batch_size` windows of batch `batch` of `rank`."""
        return self.windows(self.positions(batch, rank, world_size))
