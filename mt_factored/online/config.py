"""Recipe -> objects for the online expert trainer: model sizes and the device."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
from omegaconf import DictConfig, OmegaConf

from mt_factored.constants import RECIPES_DIR
from mt_factored.expert.config import ExpertConfig

SIZES_DIR = RECIPES_DIR / "expert_size"


def size_config(model_size: str | int) -> DictConfig:
    """`recipes/expert_size/<model_size>.yaml` (5, "5", "5M" and "cpu" all work)."""
    name = str(model_size).strip()
    folder = SIZES_DIR
    path = folder / f"{name}.yaml"
    if not path.is_file() and name.upper().endswith("M"):
        path = folder / f"{name[:-1]}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ValueError(
            f"unknown model_size={model_size!r}; sizes in {folder}: {', '.join(known)}"
        )
    return OmegaConf.load(path)


def build_expert_config(
    task: str, model_size: str | int, overrides: Mapping | None = None
) -> ExpertConfig:
    """Single-task `ExpertConfig` of `task` (native observation/action sizes, no task
    embedding, like the public single-task checkpoints).

    Args:
        task: a task name (e.g. "cartpole-balance").
        model_size: a file of `recipes/expert_size/`: its `base` is a published size
            (`ExpertConfig.single_task(task, base)`), its other fields override it.
        overrides: further field overrides (the recipe's `model.*`; None values ignored).
    """
    size = OmegaConf.to_container(size_config(model_size), resolve=True)
    size.update({k: v for k, v in dict(overrides or {}).items() if v is not None})
    base = size.pop("base")
    return dataclasses.replace(ExpertConfig.single_task(task, base), **size)


def resolve_device(device: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; anything else as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
