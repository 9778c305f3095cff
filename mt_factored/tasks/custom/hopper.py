"""hopper-hop-backwards."""

from __future__ import annotations

from dm_control.suite import hopper as stock

from mt_factored.tasks import rewards
from mt_factored.tasks.custom._util import environment

DOMAIN = stock


class HopperBackwards(stock.Hopper):
    """Stock hopper (built with hopping unset) rewarded for hopping backwards."""

    def __init__(self, random=None) -> None:
        super().__init__(hopping=False, random=random)

    def get_reward(self, physics: stock.Physics) -> float:
        return rewards.hopper_hop_backwards(physics.height(), physics.speed())


def hop_backwards(time_limit=stock._DEFAULT_TIME_LIMIT, random=None, environment_kwargs=None):
    """Hop backwards at 1 m/s or faster while standing."""
    physics = stock.Physics.from_xml_string(*stock.get_model_and_assets())
    task = HopperBackwards(random=random)
    return environment(physics, task, time_limit, stock._CONTROL_TIMESTEP, environment_kwargs)


TASKS = (hop_backwards,)
