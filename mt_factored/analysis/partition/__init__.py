"""Sub-dynamics discovery (after ED2): propose a task's agents from its data.

- `discover_partition` (`discover.py`): transitions -> influence of each action dim on each
  state change -> cosine affinity of action dims -> agglomerative groups (`Discovery`).
- `task_transitions` (`transitions.py`): one task's ``(s, a, s')`` from chunks or shards.
- `write_recipe` (`recipe.py`): a train recipe = a base recipe + ``student.partitions``.
- `run_partition` (`report.py`): ``python -m mt_factored.partition data=... task=...``
  (`PartitionConfig`).
"""

from mt_factored.analysis.partition.discover import (
    PartitionResult,
    action_affinity,
    cluster_actions,
    discover_partition,
    influence_matrix,
)
from mt_factored.analysis.partition.recipe import recipe_text, write_recipe
from mt_factored.analysis.partition.transitions import task_transitions

__all__ = [
    "PartitionResult",
    "action_affinity",
    "cluster_actions",
    "discover_partition",
    "influence_matrix",
    "recipe_text",
    "task_transitions",
    "write_recipe",
]
