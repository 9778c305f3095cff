"""The known task sets, as data (mt30: the public TD-MPC2 30-task DMControl set; dmc_extra:
stock DMControl tasks outside mt30, for finetuning to new embodiments).

To add a task set, write its tasks as a tuple of `task_spec(...)` rows in task-id order
and add `"<name>": TaskSet("<name>", rows)` to `TASK_SETS`. New dm_control tasks that
the stock suite lacks go into `mt_factored.tasks.custom` (with `custom=True` here).
"""

from __future__ import annotations

from mt_factored.errors import InputError
from mt_factored.tasks.spec import TaskSet, TaskSpec, UnknownTaskError, task_spec

# Observation layouts, (key, flattened size) in dm_control's dict order, shared by a domain.
WALKER = (("orientations", 14), ("height", 1), ("velocity", 9))
CHEETAH = (("position", 8), ("velocity", 9))
REACHER = (("position", 2), ("to_target", 2), ("velocity", 2))
REACHER_THREE = (("position", 3), ("to_target", 2), ("velocity", 3))
ACROBOT = (("orientations", 4), ("velocity", 2))
PENDULUM = (("orientation", 2), ("velocity", 1))
CARTPOLE = (("position", 3), ("velocity", 2))
CUP = (("position", 4), ("velocity", 4))
FINGER_SPIN = (("position", 4), ("velocity", 3), ("touch", 2))
FINGER_TURN = FINGER_SPIN + (("target_position", 2), ("dist_to_target", 1))
FISH = (("joint_angles", 7), ("upright", 1), ("target", 3), ("velocity", 13))
HOPPER = (("position", 6), ("velocity", 7), ("touch", 2))

MT30 = TaskSet(
    "mt30",
    (
        task_spec("walker-stand", WALKER, 6),
        task_spec("walker-walk", WALKER, 6),
        task_spec("walker-run", WALKER, 6),
        task_spec("cheetah-run", CHEETAH, 6),
        task_spec("reacher-easy", REACHER, 2),
        task_spec("reacher-hard", REACHER, 2),
        task_spec("acrobot-swingup", ACROBOT, 1),
        task_spec("pendulum-swingup", PENDULUM, 1),
        task_spec("cartpole-balance", CARTPOLE, 1),
        task_spec("cartpole-balance-sparse", CARTPOLE, 1),
        task_spec("cartpole-swingup", CARTPOLE, 1),
        task_spec("cartpole-swingup-sparse", CARTPOLE, 1),
        task_spec("cup-catch", CUP, 2),
        task_spec("finger-spin", FINGER_SPIN, 2),
        task_spec("finger-turn-easy", FINGER_TURN, 2),
        task_spec("finger-turn-hard", FINGER_TURN, 2),
        task_spec("fish-swim", FISH, 5),
        task_spec("hopper-stand", HOPPER, 4),
        task_spec("hopper-hop", HOPPER, 4),
        task_spec("walker-walk-backwards", WALKER, 6, custom=True),
        task_spec("walker-run-backwards", WALKER, 6, custom=True),
        task_spec("cheetah-run-backwards", CHEETAH, 6, custom=True),
        task_spec("cheetah-run-front", CHEETAH, 6, custom=True),
        task_spec("cheetah-run-back", CHEETAH, 6, custom=True),
        task_spec("cheetah-jump", CHEETAH, 6, custom=True),
        task_spec("hopper-hop-backwards", HOPPER, 4, custom=True),
        task_spec("reacher-three-easy", REACHER_THREE, 3, custom=True),
        task_spec("reacher-three-hard", REACHER_THREE, 3, custom=True),
        task_spec("cup-spin", CUP, 2, custom=True),
        task_spec("pendulum-spin", PENDULUM, 1, custom=True),
    ),
)

# Stock DMControl tasks outside mt30: embodiments the mt30 student never saw (finetuning
# targets, `python -m mt_factored.finetune`). Native sizes; data recorded with this set is
# padded to its widest task (quadruped: 78 observations, 12 actions).
QUADRUPED = (
    ("egocentric_state", 44),
    ("torso_velocity", 3),
    ("torso_upright", 1),
    ("imu", 6),
    ("force_torque", 24),
)
SWIMMER_SIX = (("joints", 5), ("to_target", 2), ("body_velocities", 18))
POINT_MASS = (("position", 2), ("velocity", 2))

DMC_EXTRA = TaskSet(
    "dmc_extra",
    (
        task_spec("quadruped-walk", QUADRUPED, 12),
        task_spec("quadruped-run", QUADRUPED, 12),
        task_spec("swimmer-swimmer6", SWIMMER_SIX, 5),
        task_spec("pointmass-easy", POINT_MASS, 2),
    ),
)

TASK_SETS: dict[str, TaskSet] = {"mt30": MT30, "dmc_extra": DMC_EXTRA}


def get_task_set(name: str) -> TaskSet:
    """The task set called `name` (e.g. "mt30"); unknown names raise a ValueError listing the sets."""
    try:
        return TASK_SETS[name]
    except KeyError:
        raise InputError(
            f"Unknown task set {name!r}; known task sets: {', '.join(TASK_SETS)}."
        ) from None


def get_task(name: str) -> TaskSpec:
    """The `TaskSpec` called `name`, looked up in every known task set."""
    for task_set in TASK_SETS.values():
        if name in task_set:
            return task_set[name]
    known = dict.fromkeys(n for task_set in TASK_SETS.values() for n in task_set.names)
    raise UnknownTaskError(name, known)
