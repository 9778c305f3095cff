"""pendulum-spin: spin the pole as fast as 9 rad/s, either way."""

from __future__ import annotations

from dm_control.suite import pendulum as stock

from mt_factored.tasks import rewards
from mt_factored.tasks.custom._util import environment

DOMAIN = stock


class PendulumSpin(stock.SwingUp):
    """Stock swingup start and observations; reward for the hinge speed."""

    def get_reward(self, physics: stock.Physics) -> float:
        return rewards.pendulum_spin(physics.angular_velocity().item())


def spin(time_limit=stock._DEFAULT_TIME_LIMIT, random=None, environment_kwargs=None):
    """Spin the pole at 9 rad/s or faster."""
    physics = stock.Physics.from_xml_string(*stock.get_model_and_assets())
    task = PendulumSpin(random=random)
    return environment(physics, task, time_limit, None, environment_kwargs)


TASKS = (spin,)
