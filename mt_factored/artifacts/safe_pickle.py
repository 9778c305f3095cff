"""Reading ``torch.save`` files without running what they contain.

A pickle can name any Python callable, and unpickling calls it: a ``.pt`` file from the
internet can run code on load. Every checkpoint and data chunk this project reads goes
through :func:`load_torch`:

1. ``torch.load(weights_only=True)``: tensors, containers, numbers (every TD-MPC2 expert
   checkpoint and every Lightning checkpoint of this project loads so);
2. when that refuses the file, :class:`RestrictedUnpickler`: the ``tensordict`` and
   ``omegaconf`` classes that public TD-MPC2 files pickle (dataset chunks are TensorDicts)
   become inert stand-ins (:class:`Stub`: they keep their arguments and state, the tensors are
   found inside), tensor rebuilding and a short list of plain types are allowed, and any other
   callable is refused (:class:`PickleRefusedError`, naming it) before it runs;
3. full unpickling only when the caller says ``trust_pickle=True`` (a documented opt-in of the
   commands), for files from a source the user trusts.
"""

from __future__ import annotations

import _compat_pickle
import os
import pickle
from types import SimpleNamespace
from typing import Any

import torch
from torch._tensor import _rebuild_from_type_v2 as _torch_rebuild_from_type_v2

from mt_factored.errors import MismatchError

STAND_IN_MODULES = ("tensordict", "omegaconf")
"""Modules whose classes become :class:`Stub` stand-ins (never imported, never called)."""

ALLOWED_GLOBALS = frozenset(
    {
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # how protocol-2 pickles store bytes
        ("torch", "Size"),
        ("torch", "Tensor"),
        ("torch", "device"),
        ("torch._utils", "_rebuild_tensor"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        *(
            ("builtins", name)
            for name in ("set", "frozenset", "slice", "complex", "bytearray", "tuple", "list")
        ),
    }
)
"""The callables a checkpoint or chunk may name besides the stand-ins, the torch dtypes and
storage types (a short, reviewed list: each only builds data)."""

TRUST_HINT = (
    "if you trust the file's source, pass trust_pickle=true to unpickle it fully "
    "(that runs whatever it contains)"
)


class PickleRefusedError(MismatchError, pickle.UnpicklingError):
    """A pickle that names a callable outside the allowlist: refused before it runs."""


class Stub:
    """Stands in for a ``tensordict.*`` / ``omegaconf.*`` global: keeps constructor args and
    pickled state, runs nothing."""

    _stub_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Stub:
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<stub {self._stub_name}>"


_STUBS: dict[str, type] = {}


def stub_class(module: str, name: str) -> type:
    """The :class:`Stub` subclass standing in for ``module.name`` (one per name)."""
    key = f"{module}.{name}"
    if key not in _STUBS:
        _STUBS[key] = type(name, (Stub,), {"_stub_name": key})
    return _STUBS[key]


def _rebuild_from_type_v2(func: Any, new_type: Any, args: tuple, state: Any) -> Any:
    """torch's tensor-subclass rebuild, keeping the plain tensor when the subclass is a stub
    (``func`` and ``new_type`` passed :meth:`RestrictedUnpickler.find_class` already)."""
    ret = func(*args)
    if isinstance(new_type, type) and issubclass(new_type, Stub):
        return ret
    return _torch_rebuild_from_type_v2(func, new_type, args, state)


def _is_torch_data_type(name: str) -> bool:
    value = getattr(torch, name, None)
    return isinstance(value, torch.dtype) or (name.endswith("Storage") and isinstance(value, type))


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles data only: stand-ins for tensordict/omegaconf, an allowlist for the rest."""

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (protocol < 3 pickles, e.g. torch.save's): __builtin__ -> builtins
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if module.split(".")[0] in STAND_IN_MODULES:
            return stub_class(module, name)
        if (module, name) == ("torch._tensor", "_rebuild_from_type_v2"):
            return _rebuild_from_type_v2
        if (module, name) in ALLOWED_GLOBALS or (module == "torch" and _is_torch_data_type(name)):
            return super().find_class(module, name)
        raise PickleRefusedError(
            f"the pickle calls {module}.{name}, which no checkpoint or data file needs: "
            "refused, nothing in it was run",
            TRUST_HINT,
        )


def _restricted_load(file: Any, **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


RESTRICTED_PICKLE = SimpleNamespace(
    Unpickler=RestrictedUnpickler, load=_restricted_load, __name__="mt_factored_restricted_pickle"
)
"""A ``pickle_module`` for ``torch.load`` (which subclasses its ``Unpickler``)."""


def load_torch(
    path: str | os.PathLike,
    map_location: Any = "cpu",
    *,
    trust_pickle: bool = False,
    mmap: bool | None = None,
) -> Any:
    """``torch.load`` of ``path`` that runs no code from the file (see the module docstring).

    Raises:
        PickleRefusedError: the file names a callable that is not allowed (with the path).
        Whatever torch raises for a truncated or corrupt file.
    """
    if trust_pickle:
        return torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" not in str(err):
            raise
    try:
        return torch.load(
            path,
            map_location=map_location,
            weights_only=False,
            pickle_module=RESTRICTED_PICKLE,
            mmap=mmap,
        )
    except PickleRefusedError as err:
        raise PickleRefusedError(f"{path}: {err.what}", err.fix) from None
