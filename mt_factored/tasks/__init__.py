"""Task sets and dm_control environments (TD-MPC2's mt30 and its wrapper stack).

- `TaskSpec` / `TaskSet` (`spec.py`): tasks as data; a task's position in its set is
  its task id. `get_task_set("mt30")` returns the fixed mt30 list (`sets.py`).
- `make_env(name, seed)` / `MultiTaskEnv(task_set, seed)` (`env.py`, `multitask.py`):
  numpy environments; importing them imports dm_control and registers the 11 custom
  mt30 tasks (`custom/`, rewards in `rewards.py`). They are loaded on first access, so
  `from mt_factored.tasks import get_task_set` stays light and callers can still set
  MUJOCO_GL (e.g. "egl" for headless rendering) before dm_control is imported.

Adding a task set: in `sets.py`, list its tasks in task-id order as
`task_spec(name, obs_keys, action_dim)` rows (name "<domain>-<task>", mapped to
dm_control by `dm_control_names`) and register `TaskSet(name, rows)` in `TASK_SETS`.
A task that dm_control lacks needs a module in `custom/` (a stock-signature factory
named after the dm_control task, listed in that module's `TASKS`, the module in
`custom.MODULES`) and `custom=True` on its row. The env checks every task's observation
keys and action bounds against its row when it is built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mt_factored.tasks.sets import TASK_SETS, get_task, get_task_set
from mt_factored.tasks.spec import TaskSet, TaskSpec, UnknownTaskError, dm_control_names

if TYPE_CHECKING:
    from mt_factored.tasks.env import DMControlEnv, make_env
    from mt_factored.tasks.multitask import MultiTaskEnv

__all__ = [
    "TASK_SETS",
    "DMControlEnv",
    "MultiTaskEnv",
    "TaskSet",
    "TaskSpec",
    "UnknownTaskError",
    "dm_control_names",
    "get_task",
    "get_task_set",
    "make_env",
]

_LAZY = {"DMControlEnv": "env", "make_env": "env", "MultiTaskEnv": "multitask"}


def __getattr__(name: str):
    """Imports the dm_control-backed names on first access."""
    if name in _LAZY:
        module_name = f"mt_factored.tasks.{_LAZY[name]}"
        try:
            module = importlib.import_module(module_name)
        except AttributeError as err:  # would be reported as a bare "cannot import name"
            raise ImportError(f"importing {module_name} failed: {err!r}") from err
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
