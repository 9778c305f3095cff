"""Refuse to write (or publish) a model whose weights hold NaN or infinity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from mt_factored.errors import NonFiniteError


def non_finite(tensors: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``tensors`` that hold a NaN or an infinity
    (nested mappings are searched, their keys joined with ``.``)."""
    bad: list[str] = []
    for name, value in tensors.items():
        if isinstance(value, Mapping):
            bad += [f"{name}.{inner}" for inner in non_finite(value)]
        elif (
            isinstance(value, torch.Tensor)
            and value.is_floating_point()
            and not bool(torch.isfinite(value).all())
        ):
            bad.append(str(name))
    return bad


def require_finite(tensors: Mapping[str, Any], what: str, doing: str = "write") -> None:
    """Raise :class:`NonFiniteError` naming the first non-finite tensors of ``tensors``.

    Args:
        tensors: a state dict (or any mapping of names to tensors).
        what: what would have been written (or loaded), for the message.
        doing: "write" or "load".
    """
    bad = non_finite(tensors)
    if bad:
        listed = ", ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
        raise NonFiniteError(
            f"refusing to {doing} {what}: {len(bad)} tensor(s) hold NaN or Inf ({listed})",
            "the model diverged or was loaded from bad data; resume from an earlier, finite "
            "checkpoint with a lower learning rate or check the data "
            "(`python -m mt_factored.data verify`)",
        )
