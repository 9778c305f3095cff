"""cup-spin: swing the ball fast and far, out of the cup."""

from __future__ import annotations

import numpy as np
from dm_control.suite import ball_in_cup as stock
from dm_control.suite import base

from mt_factored.tasks import rewards
from mt_factored.tasks.custom._util import environment

DOMAIN = stock

# Probability that an episode may start with the ball outside the cup.
_OUTSIDE_START_PROB = 0.1


class CupSpin(stock.BallInCup):
    """Stock ball-in-cup physics; the ball starts in the cup in 90% of episodes."""

    def initialize_episode(self, physics: stock.Physics) -> None:
        allow_outside = self.random.uniform() < _OUTSIDE_START_PROB
        while True:
            physics.named.data.qpos["ball_x"] = self.random.uniform(-0.2, 0.2)
            physics.named.data.qpos["ball_z"] = self.random.uniform(0.2, 0.5)
            physics.after_reset()
            if physics.data.ncon == 0 and (allow_outside or physics.in_target()):
                break
        # The base Task's hook, not BallInCup's (which would place the ball again).
        base.Task.initialize_episode(self, physics)

    def get_reward(self, physics: stock.Physics) -> float:
        ball_speed = np.linalg.norm(physics.named.data.qvel[["ball_x", "ball_z"]])
        dist = np.linalg.norm(physics.ball_to_target())
        return rewards.cup_spin(physics.in_target(), dist, ball_speed)


def spin(time_limit=stock._DEFAULT_TIME_LIMIT, random=None, environment_kwargs=None):
    """Keep the ball out of the cup, swinging it fast and far."""
    physics = stock.Physics.from_xml_string(*stock.get_model_and_assets())
    task = CupSpin(random=random)
    return environment(physics, task, time_limit, stock._CONTROL_TIMESTEP, environment_kwargs)


TASKS = (spin,)
