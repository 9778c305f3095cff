"""The random streams of an online run: saved with the training state and put back on resume
(so a resumed run draws what an uninterrupted one would), and a private stream for code that
must not move the caller's."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch


def capture_rng(
    action_rng: np.random.Generator, plan_gen: torch.Generator, env_random: np.random.RandomState
) -> dict[str, Any]:
    """The state of torch's global RNG (and CUDA's), the random-action and planner streams and
    the environment's."""
    rng = {
        "torch": torch.get_rng_state(),
        "numpy_actions": action_rng.bit_generator.state,
        "planner": plan_gen.get_state(),
        "env": env_random.get_state(),
    }
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def restore_rng(
    rng: Mapping[str, Any],
    action_rng: np.random.Generator,
    plan_gen: torch.Generator,
    env_random: np.random.RandomState,
) -> None:
    """Put back what :func:`capture_rng` saved."""
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    action_rng.bit_generator.state = rng["numpy_actions"]
    plan_gen.set_state(rng["planner"])
    env_random.set_state(rng["env"])


@contextmanager
def private_rng(seed: int) -> Iterator[None]:
    """Torch's global RNG (CPU and every CUDA device) seeded with `seed` inside the block
    and restored on exit, so what runs inside neither sees nor moves the caller's stream."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
