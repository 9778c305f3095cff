"""The config checks every TD-MPC2-style world model shares (the expert's and the student's)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mt_factored.errors import InputError


def check_world_model_config(config: Any, owner: str, positive: Iterable[str]) -> None:
    """Raise `InputError` unless the sizes and per-task tables of ``config`` fit together.

    Args:
        config: has ``latent_dim``, ``simnorm_dim``, ``log_std_min``, ``log_std_max``,
            ``action_dim``, ``action_dims`` and ``discounts``.
        owner: the config's class name, for the messages.
        positive: the fields that must be >= 1.
    """
    for name in positive:
        if getattr(config, name) < 1:
            raise InputError(f"{owner}.{name} must be >= 1, got {getattr(config, name)}")
    if config.latent_dim % config.simnorm_dim:
        raise InputError(
            f"latent_dim ({config.latent_dim}) must be a multiple of simnorm_dim "
            f"({config.simnorm_dim})"
        )
    if not config.log_std_min < config.log_std_max:
        raise InputError(
            f"need log_std_min < log_std_max, got {config.log_std_min}, {config.log_std_max}"
        )
    bad = [d for d in config.action_dims if not 1 <= d <= config.action_dim]
    if bad:
        raise InputError(f"action_dims must lie in [1, action_dim={config.action_dim}]: {bad}")
    bad = [d for d in config.discounts if not 0 < d <= 1]
    if bad:
        raise InputError(f"discounts must lie in (0, 1]: {bad}")
