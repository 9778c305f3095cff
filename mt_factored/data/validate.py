"""Checks of official chunk data, in a header part (keys, shapes, dtypes) and a block part.

The block checks run on any episode range, so prepare validates a chunk of any size
block by block while it converts it. Every failure raises `ChunkFormatError` naming the
file, the key and what was expected.

The unused slot: `action[:, 0]` and `reward[:, 0]` hold no data (the reset frame has no
action or reward). The public data stores NaN there. Zero is accepted too, with one
logged warning per file, since other tools write zeros; any other value is an error.
The sampler never reads the slot either way (windows start at t >= 0 and read
`action`/`reward` from t + 1).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from mt_factored.constants import ACTION, OBS, REWARD, TASK, TERMINATED
from mt_factored.errors import MismatchError

log = logging.getLogger(__name__)

REQUIRED_KEYS = (OBS, ACTION, REWARD, TASK)
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# torch dtype -> numpy dtype holding its bytes (bfloat16 as raw uint16 bits).
NUMPY_DTYPES: dict[torch.dtype, np.dtype] = {
    torch.float32: np.dtype("<f4"),
    torch.float16: np.dtype("<f2"),
    torch.bfloat16: np.dtype("<u2"),
    torch.float64: np.dtype("<f8"),
    torch.int64: np.dtype("<i8"),
    torch.int32: np.dtype("<i4"),
    torch.int16: np.dtype("<i2"),
    torch.int8: np.dtype("i1"),
    torch.uint8: np.dtype("u1"),
    torch.bool: np.dtype("?"),
}
DTYPE_NAMES: dict[torch.dtype, str] = {dt: str(dt).removeprefix("torch.") for dt in NUMPY_DTYPES}
TORCH_DTYPES: dict[str, torch.dtype] = {name: dt for dt, name in DTYPE_NAMES.items()}


class ChunkFormatError(MismatchError):
    """A chunk (or shard) that does not hold what the format requires."""

    def __init__(self, file: Any, key: str | None, expected: str, got: Any = None) -> None:
        where = f"{file}: key {key!r}" if key is not None else f"{file}"
        msg = f"{where}: expected {expected}" + (f", got {got}" if got is not None else "")
        super().__init__(msg)
        self.file, self.key, self.expected = file, key, expected


def as_float32(array: np.ndarray, dtype: str | torch.dtype) -> np.ndarray:
    """`array` as float32; `dtype` names the logical dtype (bfloat16 arrives as uint16 bits)."""
    if dtype in ("bfloat16", torch.bfloat16):
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(np.float32, copy=False)


def validate_header(
    name: Any,
    shapes: Mapping[str, Sequence[int]],
    dtypes: Mapping[str, torch.dtype],
    *,
    obs_dim: int | None = None,
    action_dim: int | None = None,
    frames: int | None = None,
) -> tuple[int, int]:
    """Checks keys, shapes and dtypes. Returns (episodes, frames)."""
    for key in REQUIRED_KEYS:
        if key not in shapes:
            raise ChunkFormatError(
                name, key, f"the keys {list(REQUIRED_KEYS)}", f"keys {sorted(shapes)}"
            )
    ndims = {OBS: 3, ACTION: 3, REWARD: 2, TASK: 2, TERMINATED: 2}
    layout = {
        OBS: "[episodes, frames, obs_dim]",
        ACTION: "[episodes, frames, action_dim]",
        REWARD: "[episodes, frames]",
        TASK: "[episodes, frames]",
        TERMINATED: "[episodes, frames]",
    }
    episodes, n_frames = tuple(shapes[OBS][:2]) if len(shapes[OBS]) >= 2 else (None, None)
    for key, ndim in ndims.items():
        if key not in shapes:
            continue
        shape = tuple(int(s) for s in shapes[key])
        if len(shape) != ndim or shape[:2] != (episodes, n_frames):
            raise ChunkFormatError(
                name,
                key,
                f"shape {layout[key]} with episodes, frames = {episodes}, {n_frames} (as obs)",
                f"shape {list(shape)}",
            )
    if n_frames < 2:
        raise ChunkFormatError(name, OBS, "at least 2 frames per episode", n_frames)
    checks = ((OBS, obs_dim, "obs_dim"), (ACTION, action_dim, "action_dim"))
    for key, dim, what in checks:
        if dim is not None and shapes[key][2] != dim:
            raise ChunkFormatError(
                name, key, f"{what} {dim} (last dim)", f"shape {list(shapes[key])}"
            )
    if frames is not None and n_frames != frames:
        raise ChunkFormatError(name, OBS, f"{frames} frames per episode", n_frames)
    for key in (OBS, ACTION, REWARD):
        if dtypes[key] not in FLOAT_DTYPES:
            raise ChunkFormatError(name, key, "dtype float32, float16 or bfloat16", dtypes[key])
    for key in (TASK, TERMINATED):
        if key in dtypes and dtypes[key] not in NUMPY_DTYPES:
            raise ChunkFormatError(name, key, "an integer, bool or float dtype", dtypes[key])
    return int(episodes), int(n_frames)


def validate_block(
    name: Any,
    block: Mapping[str, np.ndarray],
    dtypes: Mapping[str, torch.dtype],
    first_episode: int = 0,
    *,
    num_tasks: int | None = None,
    action_dims: Sequence[int] | None = None,
    warned: set | None = None,
) -> np.ndarray:
    """Checks the values of episodes `[first_episode, first_episode + len(block))`.

    Args:
        name: the file, for messages.
        block: numpy arrays of the episodes (bfloat16 as uint16 bits, see `dtypes`).
        dtypes: logical dtype of each key.
        first_episode: index of the block's first episode in the file, for messages.
        num_tasks: task ids must be in `[0, num_tasks)`.
        action_dims: per-task action dims: entries beyond them must be 0 (padding).
        warned: a set shared across the blocks of one file (one zero-slot warning per file).

    Returns:
        The task id of each episode, int64 [episodes].
    """
    action = as_float32(block[ACTION], dtypes[ACTION])
    reward = as_float32(block[REWARD], dtypes[REWARD])
    for key, slot in ((ACTION, action[:, 0]), (REWARD, reward[:, 0])):
        nan = np.isnan(slot).reshape(len(slot), -1)
        if nan.all():
            continue
        unused = (nan | (slot == 0).reshape(len(slot), -1)).all(axis=1)  # per episode
        if not unused.all():
            bad = int(np.flatnonzero(~unused)[0])
            raise ChunkFormatError(
                name,
                key,
                f"NaN (or 0) in the unused slot {key}[:, 0]",
                f"{slot[bad].tolist()} in episode {first_episode + bad}",
            )
        if warned is None or key not in warned:
            log.warning(
                "%s: %s[:, 0] holds 0 instead of NaN (the unused slot; never read)", name, key
            )
            if warned is not None:
                warned.add(key)
    for key, values in (
        (OBS, as_float32(block[OBS], dtypes[OBS])),
        (ACTION, action[:, 1:]),
        (REWARD, reward[:, 1:]),
    ):
        finite = np.isfinite(values).reshape(len(values), -1).all(axis=1)
        if not finite.all():
            bad = first_episode + int(np.flatnonzero(~finite)[0])
            raise ChunkFormatError(
                name, key, "finite values outside the unused slot", f"NaN/inf in episode {bad}"
            )
    task = block[TASK]
    if task.dtype.kind == "f" and not np.array_equal(task, np.round(task)):
        raise ChunkFormatError(name, TASK, "integer task ids", "non-integer values")
    task = task.astype(np.int64)
    constant = (task == task[:, :1]).all(axis=1)
    if not constant.all():
        bad = first_episode + int(np.flatnonzero(~constant)[0])
        raise ChunkFormatError(name, TASK, "one task id per episode", f"several in episode {bad}")
    ids = task[:, 0]
    upper = num_tasks if num_tasks is not None else np.iinfo(np.int32).max
    out = (ids < 0) | (ids >= upper)
    if out.any():
        bad = int(np.flatnonzero(out)[0])
        raise ChunkFormatError(
            name,
            TASK,
            f"task ids in [0, {upper})",
            f"{int(ids[bad])} in episode {first_episode + bad}",
        )
    if action_dims is not None:
        dims = np.asarray(action_dims, dtype=np.int64)
        if int(ids.max(initial=0)) >= len(dims):
            raise ChunkFormatError(
                name, TASK, f"task ids below {len(dims)} (the task set)", int(ids.max())
            )
        pad = np.arange(action.shape[2])[None, :] >= dims[ids][:, None]  # [E, action_dim]
        nonzero = ((action[:, 1:] != 0) & pad[:, None, :]).any(axis=(1, 2))
        if nonzero.any():
            bad = int(np.flatnonzero(nonzero)[0])
            raise ChunkFormatError(
                name,
                ACTION,
                f"0 in the padded entries action[..., {dims[ids[bad]]}:] of task {int(ids[bad])}",
                f"non-zero values in episode {first_episode + bad}",
            )
    return ids


def to_numpy(value: Any) -> tuple[np.ndarray, torch.dtype]:
    """A tensor's data as numpy (no copy; bfloat16 as uint16 bits) and its torch dtype."""
    tensor = torch.as_tensor(value)
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(np.uint16), tensor.dtype
    return tensor.numpy(), tensor.dtype


def validate_chunk(
    data: Mapping[str, Any],
    name: Any = "chunk",
    *,
    num_tasks: int | None = None,
    action_dims: Sequence[int] | None = None,
    obs_dim: int | None = None,
    action_dim: int | None = None,
    frames: int | None = None,
) -> np.ndarray:
    """Checks a whole chunk (keys, shapes, dtypes, unused slots, task ids, action padding).

    Args:
        data: key -> tensor or array, as `read_chunk` returns it.
        name: the file, for messages.
        num_tasks, action_dims: task-set expectations (see `validate_block`).
        obs_dim, action_dim, frames: expected sizes (e.g. 24, 6, 501 for mt30).

    Returns:
        The task id of each episode.
    """
    arrays = {k: to_numpy(v) for k, v in data.items() if k in (*REQUIRED_KEYS, TERMINATED)}
    shapes = {k: a.shape for k, (a, _) in arrays.items()}
    for key in REQUIRED_KEYS:  # before asking for dtypes of missing keys
        if key not in arrays:
            raise ChunkFormatError(
                name, key, f"the keys {list(REQUIRED_KEYS)}", f"keys {sorted(data)}"
            )
    dtypes = {k: dt for k, (_, dt) in arrays.items()}
    validate_header(name, shapes, dtypes, obs_dim=obs_dim, action_dim=action_dim, frames=frames)
    block = {k: a for k, (a, _) in arrays.items()}
    return validate_block(name, block, dtypes, num_tasks=num_tasks, action_dims=action_dims)
