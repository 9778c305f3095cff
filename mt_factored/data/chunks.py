"""Official TD-MPC2 dataset chunks: read, write, and read lazily in bounded memory.

A chunk is `torch.save` of a `tensordict.TensorDict` with batch size `[episodes, frames]`
and keys `obs`, `action`, `reward`, `task` (+ optional `terminated`); see
`/work/shared/specs/tdmpc2-formats.md` ("Dataset chunk files") and `validate.py`.

No chunk's pickle runs code: every way in uses the restricted unpickler of
`mt_factored.artifacts.safe_pickle`, which replaces every `tensordict.*` class by a stand-in
that keeps its arguments and state (the tensors are found inside, `_extract_tensors`: files
of any tensordict release, or none installed, read so) and refuses any callable outside a
short allowlist, naming it (`PickleRefusedError`).
- `ChunkFile` reads only the pickle (metadata) and the zip offsets of the tensor
  records, then copies any episode range with plain file reads: prepare converts a
  chunk of any size with memory bounded by the block it copies.
- `read_chunk` returns every tensor, file-backed (`ChunkFile`), or loaded whole through
  `torch.load` with the restricted unpickler (legacy pre-zip files); only with
  `trust_pickle=True` does the installed tensordict unpickle it.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import struct
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mt_factored.artifacts.atomic import atomic_write
from mt_factored.artifacts.safe_pickle import (
    RESTRICTED_PICKLE,
    PickleRefusedError,
    RestrictedUnpickler,
    Stub,
    load_torch,
)
from mt_factored.data.validate import DTYPE_NAMES, NUMPY_DTYPES, ChunkFormatError, validate_chunk
from mt_factored.errors import MissingError

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- unpickling
# The stand-ins and the allowlist are mt_factored.artifacts.safe_pickle's: a chunk's pickle
# runs nothing but tensor rebuilding, whatever the file holds.


@dataclass
class _LazyStorage:
    key: str  # record name under data/ in the zip
    dtype: torch.dtype


@dataclass
class _LazyTensor:
    storage: _LazyStorage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _lazy_rebuild_tensor(storage, storage_offset, size, stride, *_args) -> _LazyTensor:
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


class _LazyUnpickler(RestrictedUnpickler):
    """Reads a zip chunk's data.pkl alone: storages and tensors become metadata records."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _lazy_rebuild_tensor
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        typename, storage_type, key = pid[:3]
        if typename != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TypedStorage deprecation
            dtype = torch.uint8 if storage_type is torch.UntypedStorage else storage_type.dtype
        return _LazyStorage(str(key), dtype)


_TENSOR_TYPES = (torch.Tensor, _LazyTensor)


def _children(obj: Any) -> list[Any]:
    if isinstance(obj, Stub):
        return [obj.state, *obj.args, *obj.kwargs.values()]
    if isinstance(obj, dict):
        return list(obj.values())
    if isinstance(obj, list | tuple):
        return list(obj)
    return []


def _leaf_tensor(value: Any, depth: int = 3) -> Any:
    """`value` if it is a tensor, else the first tensor inside a stub wrapping one."""
    if isinstance(value, _TENSOR_TYPES):
        return value
    if depth and isinstance(value, Stub):
        for child in _children(value):
            found = _leaf_tensor(child, depth - 1)
            if found is not None:
                return found
    return None


def _extract_tensors(obj: Any) -> dict[str, Any]:
    """The str -> tensor mapping inside an unpickled chunk (TensorDict, stub or plain dict).

    Breadth-first over stub args/state, dicts and tuples; the first mapping with string
    keys that holds tensors wins (a TensorDict's `_tensordict`, at any pickle layout).
    """
    if hasattr(obj, "batch_size") and callable(getattr(obj, "keys", None)):  # a real TensorDict
        obj = {k: obj.get(k) for k in obj.keys()}  # noqa: SIM118 (TensorDict.keys)
    queue, seen = [obj], set()
    while queue:
        node = queue.pop(0)
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict) and len(node) and all(isinstance(k, str) for k in node):
            tensors = {k: _leaf_tensor(v) for k, v in node.items()}
            tensors = {k: v for k, v in tensors.items() if v is not None}
            if tensors:
                return tensors
        queue.extend(_children(node))
    raise pickle.UnpicklingError("no mapping of named tensors found in the pickle")


# --------------------------------------------------------------------------- lazy reader
def _record_offset(zf: zipfile.ZipFile, raw: io.BufferedReader, name: str) -> int:
    """Byte offset of the (uncompressed) zip record `name` inside the file."""
    info = zf.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:
        raise ChunkFormatError(Path(raw.name), name, "an uncompressed record (torch.save layout)")
    raw.seek(info.header_offset)
    header = raw.read(30)
    if header[:4] != b"PK\x03\x04":
        raise ChunkFormatError(Path(raw.name), name, "a zip local file header")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


class ChunkFile:
    """An official chunk opened lazily: shapes and dtypes now, episode ranges on demand.

    Only the small pickle is read on open; `read(key, start, stop)` copies episodes
    `[start, stop)` of one key with a plain file read, so memory stays at the block size.
    Works for `torch.save` zip files holding C-contiguous tensors (every official chunk);
    raises `ChunkFormatError` otherwise (then use `read_chunk`, which loads it whole).

    Args:
        path: the chunk file.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not zipfile.is_zipfile(self.path):
            raise ChunkFormatError(
                self.path,
                None,
                "a torch.save zip archive (torch >= 1.6); convert older files with "
                "`python -m mt_factored.data prepare source=...`",
            )
        self._tensors: dict[str, _LazyTensor] = {}
        self._offsets: dict[str, int] = {}
        with zipfile.ZipFile(self.path) as zf, open(self.path, "rb") as raw:
            pkl = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pkl) != 1:
                raise ChunkFormatError(self.path, None, "exactly one data.pkl record")
            prefix = pkl[0][: -len("data.pkl")]
            try:
                obj = _LazyUnpickler(io.BytesIO(zf.read(pkl[0]))).load()
                tensors = _extract_tensors(obj)
            except PickleRefusedError as err:
                raise PickleRefusedError(f"{self.path}: {err.what}", err.fix) from None
            except Exception as err:  # any unpickling failure is a format error of this file
                raise ChunkFormatError(self.path, None, f"a readable chunk pickle ({err})") from err
            for key, tensor in tensors.items():
                if not isinstance(tensor, _LazyTensor):
                    continue
                shape, stride = tensor.shape, tensor.stride
                contiguous = tuple(int(np.prod(shape[i + 1 :])) for i in range(len(shape)))
                if any(s != c for s, c, n in zip(stride, contiguous, shape, strict=True) if n > 1):
                    raise ChunkFormatError(self.path, key, "a C-contiguous tensor")
                if tensor.storage.dtype not in NUMPY_DTYPES:
                    raise ChunkFormatError(
                        self.path, key, f"a dtype in {list(DTYPE_NAMES.values())}"
                    )
                record = f"{prefix}data/{tensor.storage.key}"
                itemsize = NUMPY_DTYPES[tensor.storage.dtype].itemsize
                self._offsets[key] = _record_offset(zf, raw, record) + tensor.offset * itemsize
                self._tensors[key] = tensor

    def offset(self, key: str) -> int:
        """Byte offset of element [0, 0, ...] of `key` in the file."""
        return self._offsets[key]

    def shape(self, key: str) -> tuple[int, ...]:
        return self._tensors[key].shape

    def dtype(self, key: str) -> torch.dtype:
        return self._tensors[key].storage.dtype

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: self.shape(k) for k in self._tensors}

    @property
    def dtypes(self) -> dict[str, torch.dtype]:
        return {k: self.dtype(k) for k in self._tensors}

    def _row_items(self, key: str) -> int:
        return int(np.prod(self.shape(key)[1:]))

    def read(
        self, key: str, start: int, stop: int, fh: io.BufferedReader | None = None
    ) -> np.ndarray:
        """Episodes `[start, stop)` of `key` as a new numpy array (bfloat16 as uint16 bits)."""
        dtype = NUMPY_DTYPES[self.dtype(key)]
        row = self._row_items(key)
        offset = self._offsets[key] + start * row * dtype.itemsize
        count = (stop - start) * row
        if fh is None:
            with open(self.path, "rb") as f:
                flat = np.fromfile(f, dtype=dtype, count=count, offset=offset)
        else:
            fh.seek(offset)
            flat = np.fromfile(fh, dtype=dtype, count=count)
        if flat.size != count:
            raise ChunkFormatError(
                self.path, key, f"{count} items at byte {offset} (file truncated)"
            )
        return flat.reshape((stop - start, *self.shape(key)[1:]))

    def memmap(self, key: str) -> np.ndarray:
        """The whole tensor as a read-only-on-disk (copy-on-write) numpy memmap."""
        dtype = NUMPY_DTYPES[self.dtype(key)]
        return np.memmap(
            self.path, dtype=dtype, mode="c", offset=self._offsets[key], shape=self.shape(key)
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor, file-backed (no copy); bfloat16 viewed back from its bits."""
        out = {}
        for key in self._tensors:
            tensor = torch.from_numpy(self.memmap(key))
            out[key] = tensor.view(torch.bfloat16) if self.dtype(key) == torch.bfloat16 else tensor
        return out


# --------------------------------------------------------------------------- public API
def _load(path: Path, trust_pickle: bool) -> dict[str, torch.Tensor]:
    """The chunk's tensors: the lazy reader (zip files), else ``torch.load`` through the
    restricted unpickler; with ``trust_pickle`` torch and the installed tensordict first."""
    zipped = zipfile.is_zipfile(path)
    if trust_pickle:
        try:  # mmap keeps zip files file-backed; legacy (pre-zip) files load into RAM
            obj = load_torch(path, trust_pickle=True, mmap=zipped)
            return {k: v for k, v in _extract_tensors(obj).items() if isinstance(v, torch.Tensor)}
        except Exception as err:  # files of older tensordict releases, tensordict missing
            log.info("%s: tensordict could not unpickle it (%s); using stand-ins", path, err)
    if zipped:
        try:
            return ChunkFile(path).tensors()
        except PickleRefusedError:
            raise
        except ChunkFormatError as err:  # e.g. non-contiguous tensors: load it whole
            log.info("%s: %s; reading it whole", path, err)
    obj = torch.load(
        path, map_location="cpu", weights_only=False, pickle_module=RESTRICTED_PICKLE, mmap=zipped
    )
    return {k: v for k, v in _extract_tensors(obj).items() if isinstance(v, torch.Tensor)}


def read_chunk(
    path: str | os.PathLike, validate: bool = True, trust_pickle: bool = False, **expect: Any
) -> dict[str, torch.Tensor]:
    """Reads an official chunk into a dict of (file-backed where possible) CPU tensors.

    The pickle runs nothing: tensordict's classes become stand-ins and any callable outside
    the allowlist of :mod:`mt_factored.artifacts.safe_pickle` is refused
    (:class:`PickleRefusedError`). Files of any tensordict release read so.

    Args:
        path: the chunk file (`torch.save` of a TensorDict, or of a plain dict).
        validate: check the chunk with `validate_chunk` (errors name the file and key).
        trust_pickle: unpickle with torch and the installed tensordict (runs whatever the
            file contains: only for files from a source you trust).
        **expect: expectations for `validate_chunk` (num_tasks, action_dims, obs_dim, ...).

    Returns:
        `{"obs": [E,T,obs], "action": [E,T,act], "reward": [E,T], "task": [E,T], ...}`.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingError(f"chunk file {path} does not exist")
    try:
        data = _load(path, trust_pickle)
    except (ChunkFormatError, PickleRefusedError) as err:
        if isinstance(err, PickleRefusedError) and str(path) not in err.what:
            raise PickleRefusedError(f"{path}: {err.what}", err.fix) from None
        raise
    except Exception as err:
        raise ChunkFormatError(path, None, f"a torch.save'd TensorDict chunk ({err})") from err
    if validate:
        validate_chunk(data, name=str(path), **expect)
    return data


def write_chunk(
    path: str | os.PathLike, data: Mapping[str, torch.Tensor], validate: bool = True, **expect: Any
) -> Path:
    """Writes `data` as an official chunk: `torch.save` of a TensorDict, atomically.

    The file opens in the reference code's loader (a TensorDict pickle) and reads back
    bit-identically with `read_chunk`.

    Args:
        path: destination file; parent folders are created.
        data: `{"obs": [E,T,obs], "action": [E,T,act], "reward": [E,T], "task": [E,T]}`
            (+ optional `terminated` [E,T]); `action[:, 0]` and `reward[:, 0]` NaN.
        validate: check `data` with `validate_chunk` first.
        **expect: expectations for `validate_chunk`.

    Returns:
        The path written.
    """
    from tensordict import TensorDict  # the reference loader needs a TensorDict pickle

    path = Path(path)
    data = {k: torch.as_tensor(v) for k, v in data.items()}
    if validate:
        validate_chunk(data, name=str(path), **expect)
    batch_size = list(data["obs"].shape[:2])  # [episodes, frames]
    td = TensorDict({k: v.contiguous() for k, v in data.items()}, batch_size=batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: torch.save(td, tmp))
    return path
