"""cheetah-run-backwards, cheetah-run-front, cheetah-run-back and cheetah-jump."""

from __future__ import annotations

import functools
from collections.abc import Callable

from dm_control.suite import cheetah as stock
from dm_control.suite import common

from mt_factored.tasks import rewards
from mt_factored.tasks.custom._util import environment, with_plane_half_x

DOMAIN = stock

# Ground plane x half-size (stock 100); rendering only, planes are infinite for collision.
_GROUND_HALF_X = 200


@functools.cache
def model_xml() -> str:
    """Stock cheetah.xml with a ground twice as long."""
    return with_plane_half_x(common.read_model("cheetah.xml"), "ground", _GROUND_HALF_X)


def body_heights(physics: stock.Physics, *bodies: str) -> list[float]:
    """World z of each named body's frame origin (`data.xpos`, not the centre of mass)."""
    return [float(physics.named.data.xpos[body, "z"]) for body in bodies]


def run_backwards_reward(physics: stock.Physics) -> float:
    return rewards.cheetah_run_backwards(physics.speed())


def run_front_reward(physics: stock.Physics) -> float:
    """Running on the front leg: the back foot is the lifted one."""
    return rewards.cheetah_run_lifted(physics.speed(), *body_heights(physics, "torso", "bfoot"))


def run_back_reward(physics: stock.Physics) -> float:
    """Running on the back leg: the front foot is the lifted one."""
    return rewards.cheetah_run_lifted(physics.speed(), *body_heights(physics, "torso", "ffoot"))


def jump_reward(physics: stock.Physics) -> float:
    return rewards.cheetah_jump(physics.speed(), *body_heights(physics, "torso", "bfoot", "ffoot"))


class CheetahCustom(stock.Cheetah):
    """Stock cheetah (initialisation, observations) with a custom reward of the physics."""

    def __init__(self, reward_fn: Callable[[stock.Physics], float], random=None) -> None:
        self._reward_fn = reward_fn
        super().__init__(random=random)

    def get_reward(self, physics: stock.Physics) -> float:
        return self._reward_fn(physics)


def _build(reward_fn, time_limit, random, environment_kwargs):
    physics = stock.Physics.from_xml_string(model_xml(), common.ASSETS)
    task = CheetahCustom(reward_fn, random=random)
    return environment(physics, task, time_limit, None, environment_kwargs)


def run_backwards(time_limit=stock._DEFAULT_TIME_LIMIT, random=None, environment_kwargs=None):
    """Run backwards at 8 m/s or faster."""
    return _build(run_backwards_reward, time_limit, random, environment_kwargs)


def run_front(time_limit=stock._DEFAULT_TIME_LIMIT, random=None, environment_kwargs=None):
    """Run forwards (6 m/s) on the front leg with torso and back foot high."""
    return _build(run_front_reward, time_limit, random, environment_kwargs)


def run_back(time_limit=stock._DEFAULT_TIME_LIMIT, random=None, environment_kwargs=None):
    """Run forwards (6 m/s) on the back leg with torso and front foot high."""
    return _build(run_back_reward, time_limit, random, environment_kwargs)


def jump(time_limit=stock._DEFAULT_TIME_LIMIT, random=None, environment_kwargs=None):
    """Jump in place: torso and both feet high, horizontal speed within 0.5 m/s."""
    return _build(jump_reward, time_limit, random, environment_kwargs)


TASKS = (run_backwards, run_front, run_back, jump)
