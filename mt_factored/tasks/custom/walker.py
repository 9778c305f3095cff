"""walker-walk-backwards and walker-run-backwards."""

from __future__ import annotations

import functools

from dm_control.suite import common
from dm_control.suite import walker as stock

from mt_factored.tasks import rewards
from mt_factored.tasks.custom._util import environment, with_plane_half_x

DOMAIN = stock

# Floor plane x half-size (stock 250); rendering only, planes are infinite for collision.
_FLOOR_HALF_X = 500


@functools.cache
def model_xml() -> str:
    """Stock walker.xml with a floor twice as long."""
    return with_plane_half_x(common.read_model("walker.xml"), "floor", _FLOOR_HALF_X)


class WalkerBackwards(stock.PlanarWalker):
    """Stock walker walk/run with the horizontal speed goal pointing backwards."""

    def get_reward(self, physics: stock.Physics) -> float:
        return rewards.walker_backwards(
            physics.torso_height(),
            physics.torso_upright(),
            physics.horizontal_velocity(),
            self._move_speed,
        )


def _build(move_speed, time_limit, random, environment_kwargs):
    physics = stock.Physics.from_xml_string(model_xml(), common.ASSETS)
    task = WalkerBackwards(move_speed=move_speed, random=random)
    return environment(physics, task, time_limit, stock._CONTROL_TIMESTEP, environment_kwargs)


def walk_backwards(time_limit=stock._DEFAULT_TIME_LIMIT, random=None, environment_kwargs=None):
    """Walk backwards at 1 m/s or faster."""
    return _build(stock._WALK_SPEED, time_limit, random, environment_kwargs)


def run_backwards(time_limit=stock._DEFAULT_TIME_LIMIT, random=None, environment_kwargs=None):
    """Run backwards at 8 m/s or faster."""
    return _build(stock._RUN_SPEED, time_limit, random, environment_kwargs)


TASKS = (walk_backwards, run_backwards)
