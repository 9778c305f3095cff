"""reacher-three-easy and reacher-three-hard: the stock Reacher task on a 3-link arm."""

from __future__ import annotations

import functools

from dm_control.suite import common
from dm_control.suite import reacher as stock

from mt_factored.tasks.custom._util import environment, read_asset

DOMAIN = stock


@functools.cache
def model_xml() -> str:
    """assets/reacher_three_links.xml: joints shoulder0, shoulder1, wrist."""
    return read_asset("reacher_three_links.xml")


def _build(target_size, time_limit, random, environment_kwargs):
    physics = stock.Physics.from_xml_string(model_xml(), common.ASSETS)
    task = stock.Reacher(target_size=target_size, random=random)
    return environment(physics, task, time_limit, None, environment_kwargs)


def three_easy(time_limit=stock._DEFAULT_TIME_LIMIT, random=None, environment_kwargs=None):
    """Reach a target of radius 0.05 (stock easy)."""
    return _build(stock._BIG_TARGET, time_limit, random, environment_kwargs)


def three_hard(time_limit=stock._DEFAULT_TIME_LIMIT, random=None, environment_kwargs=None):
    """Reach a target of radius 0.015 (stock hard)."""
    return _build(stock._SMALL_TARGET, time_limit, random, environment_kwargs)


TASKS = (three_easy, three_hard)
