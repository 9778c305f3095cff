"""The config dataclasses as Hydra structured configs: the one source of every key and default.

:func:`register` stores them in Hydra's ``ConfigStore``:

- ``<command>_schema`` (``train_schema``, ``evaluate_schema``, ...): the schema of each command,
  the first entry of its primary config's defaults list (``mt_factored/recipes/<command>.yaml``), so a key
  that the dataclass lacks, or a value of the wrong type, fails when the config is composed;
- the default options of the config groups, built from the dataclasses themselves:
  ``model/default`` (:class:`StudentSpec`), ``distill/paper`` (:class:`DistillConfig`),
  ``planning/default`` (:class:`MPPIConfig`), ``trainer/default``, ``logger/csv_tensorboard``.
  YAML options of those groups (``distill/mse.yaml``, ``trainer/ddp.yaml``, ...) hold only what
  differs.

Typed dict fields (``student.partitions``, ``distill.terms``, ``loader.task_weights``) stay
open in struct mode, so ``student.partitions={walker-stand: [[0, 3], [1], [2], [4], [5]]}``
adds a key without ``+``; the dataclass types check the values.
"""

from __future__ import annotations

from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from mt_factored.analysis.config import (
    BudgetSweepConfig,
    EvaluateConfig,
    FidelityCommandConfig,
    PartitionConfig,
    VizConfig,
)
from mt_factored.analysis.expert_curves import ExpertCurvesConfig
from mt_factored.artifacts.shipped import register_resolvers
from mt_factored.data.config import DatasetPathConfig, ExportConfig, PrepareConfig
from mt_factored.distill import DistillConfig
from mt_factored.hub.push import PushConfig
from mt_factored.hub.push_dataset import PushDatasetConfig
from mt_factored.online.config import ExpertTrainConfig
from mt_factored.planning.base import MPPIConfig
from mt_factored.student.config import StudentSpec
from mt_factored.training.config import FinetuneConfig, LoggerConfig, TrainConfig, TrainerConfig

COMMANDS: dict[str, type] = {
    "train": TrainConfig,
    "finetune": FinetuneConfig,
    "evaluate": EvaluateConfig,
    "fidelity": FidelityCommandConfig,
    "budget_sweep": BudgetSweepConfig,
    "viz": VizConfig,
    "partition": PartitionConfig,
    "expert_train": ExpertTrainConfig,
    "data_prepare": PrepareConfig,
    "data_export": ExportConfig,
    "data_info": DatasetPathConfig,
    "data_verify": DatasetPathConfig,
    "hub_push": PushConfig,
    "hub_push_dataset": PushDatasetConfig,
    "plot_expert_curves": ExpertCurvesConfig,
}
"""Primary config name -> its schema (stored as ``<name>_schema``)."""

GROUP_DEFAULTS: dict[tuple[str, str], type] = {
    ("model", "default"): StudentSpec,
    ("distill", "paper"): DistillConfig,
    ("planning", "default"): MPPIConfig,
    ("trainer", "default"): TrainerConfig,
    ("logger", "csv_tensorboard"): LoggerConfig,
}
"""(group, option) -> the dataclass whose defaults are that option."""


def structured(cls: type) -> DictConfig:
    """``OmegaConf.structured(cls)`` with its typed dict fields open to new keys."""
    node = OmegaConf.structured(cls)
    _open_dicts(node)
    return node


def _open_dicts(node: Any) -> None:
    """Let every dict-typed field (not a dataclass node) take new keys in struct mode."""
    if not isinstance(node, DictConfig) or node._is_none() or node._is_missing():
        return
    if OmegaConf.get_type(node) is dict:
        OmegaConf.set_struct(node, False)
    for key in node.keys():
        _open_dicts(node._get_node(key))


def schema_name(command: str) -> str:
    return f"{command}_schema"


def register() -> None:
    """Store every schema and group default in the ConfigStore, and register the asset
    resolvers (idempotent)."""
    register_resolvers()
    store = ConfigStore.instance()
    for command, cls in COMMANDS.items():
        store.store(name=schema_name(command), node=structured(cls))
    for (group, option), cls in GROUP_DEFAULTS.items():
        store.store(group=group, name=option, node=structured(cls))


register()
