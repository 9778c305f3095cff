"""Optional `torch.compile` of the project's hot pure functions, with a clean eager fallback.

The hot paths (a plan's H-step returns, the distillation step) are pure tensor functions:
their randomness is drawn outside, from the caller's generator and in the eager path's
order, so compiled and eager runs see the same numbers and agree to fp32 round-off.

- CPU: Inductor's default mode generates fused C++/OpenMP kernels (needs a C++ compiler).
- CUDA: ``mode="reduce-overhead"`` adds CUDA graphs (one launch per compiled call).
- Shapes are static (``dynamic=False``): one graph per shape, e.g. per (envs, agents,
  budget) of a plan; a run meets only a handful of them.
- Compilation failing (no compiler, an unsupported op) warns once and runs the eager
  function from then on, so ``compile=true`` never makes a command fail.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

RECOMPILE_LIMIT = 64
"""Graphs kept per compiled function (torch's default, 8, is below the shapes of an mt30
evaluation: up to 6 agent counts x single- and multi-env plans)."""

_COMPILE_ERRORS: tuple[type[BaseException], ...] = (
    torch._dynamo.exc.BackendCompilerFailed,
    torch._dynamo.exc.InternalTorchDynamoError,
    torch._dynamo.exc.TorchRuntimeError,
    torch._inductor.exc.InductorError,
)
"""What a failed compilation raises (a genuine error of the function itself raises the
same exception type in eager and compiled runs, and is not caught)."""


def compile_mode(device_type: str) -> str:
    """Inductor mode per device: CUDA graphs on CUDA, plain fused kernels elsewhere."""
    return "reduce-overhead" if device_type == "cuda" else "default"


class Compiled:
    """``fn`` compiled lazily at its first call, per device type, falling back to eager.

    Args:
        fn: a pure tensor function (no ``torch.Generator`` arguments: draw noise outside).
        name: how warnings and timings name it.

    Attributes:
        compile_seconds: wall time spent in calls that compiled a new graph (the first call
            per shape), so benchmarks can report it apart from the per-call time.
        fallback: the reason compilation was abandoned, or None.
    """

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", repr(fn))
        self._compiled: dict[str, Callable[..., Any]] = {}
        self._seen_shapes: set[tuple] = set()
        self.compile_seconds = 0.0
        self.fallback: str | None = None
        functools.update_wrapper(self, fn)

    def _for_device(self, device_type: str) -> Callable[..., Any]:
        if device_type not in self._compiled:
            torch._dynamo.config.recompile_limit = max(
                torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT
            )
            self._compiled[device_type] = torch.compile(
                self.fn, mode=compile_mode(device_type), dynamic=False
            )
        return self._compiled[device_type]

    def __call__(self, *args: Any) -> Any:
        if self.fallback is not None:
            return self.fn(*args)
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        device_type = tensors[0].device.type if tensors else "cpu"
        key = (device_type, *(tuple(t.shape) for t in tensors))
        compiled = self._for_device(device_type)
        if device_type == "cuda":
            # CUDA graphs reuse their output memory: each call is a new step whose
            # outputs the caller consumes before the next call.
            torch.compiler.cudagraph_mark_step_begin()
        start = time.perf_counter()
        try:
            out = compiled(*args)
        except _COMPILE_ERRORS as err:
            self.fallback = _reason(err)
            warnings.warn(
                f"torch.compile of {self.name} failed ({self.fallback}); running it eagerly "
                "(set compile=false to skip the attempt)",
                RuntimeWarning,
                stacklevel=2,
            )
            return self.fn(*args)
        if key not in self._seen_shapes:
            self._seen_shapes.add(key)
            self.compile_seconds += time.perf_counter() - start
        return out


def _reason(err: BaseException) -> str:
    """One line naming why compilation failed (the backend's own error when it has one)."""
    inner = getattr(err, "inner_exception", None) or err
    lines = [line for line in str(inner).splitlines() if line.strip()]
    return f"{type(inner).__name__}: {lines[0] if lines else ''}".rstrip(": ")
