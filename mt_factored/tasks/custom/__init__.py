"""The 11 custom mt30 tasks, added to dm_control's stock domain suites.

One module per domain; each defines `DOMAIN` (the stock dm_control module) and `TASKS`
(factories named after their dm_control task, with the stock factory signature
`(time_limit, random, environment_kwargs)`). Models, initialisation and timing follow
the public TD-MPC2 custom tasks (nicklashansen/tdmpc2, `tdmpc2/envs/tasks/`); reward
formulas live in `mt_factored.tasks.rewards`.

`register_custom_tasks()` adds every factory to `DOMAIN.SUITE` under the tag "custom"
and appends the pairs to `suite.ALL_TASKS` / `suite.TASKS_BY_DOMAIN`, so that
`suite.load(domain, task)` finds them. Calling it again does nothing.
"""

from __future__ import annotations

from dm_control import suite

from mt_factored.tasks.custom import ball_in_cup, cheetah, hopper, pendulum, reacher, walker

CUSTOM_TAG = "custom"
MODULES = (walker, cheetah, hopper, reacher, ball_in_cup, pendulum)


def register_custom_tasks() -> None:
    """Adds the custom tasks to the stock dm_control suites (idempotent)."""
    new_pairs = []
    for module in MODULES:
        domain_suite = module.DOMAIN.SUITE
        domain = module.DOMAIN.__name__.rsplit(".", 1)[-1]
        for factory in module.TASKS:
            name = factory.__name__
            if name not in domain_suite:
                domain_suite.add(CUSTOM_TAG)(factory)
            elif domain_suite[name].__module__ != factory.__module__:
                raise RuntimeError(f"dm_control already has a task {domain}/{name} of its own.")
            if (domain, name) not in suite.ALL_TASKS:
                new_pairs.append((domain, name))
    if new_pairs:
        suite.ALL_TASKS = suite.ALL_TASKS + tuple(new_pairs)
        by_domain = dict(suite.TASKS_BY_DOMAIN)
        for domain, name in new_pairs:
            by_domain[domain] = by_domain.get(domain, ()) + (name,)
        suite.TASKS_BY_DOMAIN = by_domain
