"""Action perturbations for robustness evaluation (Fac-TDMPC Sec. 5.5).

A perturbation changes ONE entry of the action vector a planner chose, after
planning and before the environment steps, so the planner never sees it coming:

- ``dummy:<joint>``: the joint is a "dummy" whose command is noise, uniform in
  [-1, 1] and drawn from the episode generator the hook is given. (The paper's
  dummy joint "follows a Normal distribution"; uniform keeps the command inside
  the actuator range, where a Normal would mostly be clipped to its ends.)
- ``scale:<joint>:<factor>``: the joint's command is multiplied by ``factor``
  (a weaker or stronger motor; the environment clips the result to [-1, 1]).

``<joint>`` is a 0-based action index or the actuator's name in dm_control's
``physics.model`` (``walker-stand``: ``right_hip`` ... ``left_ankle``), or ``*``
for every joint of the task, one perturbation each (a sweep).

    hooks = parse_perturbations(["dummy:*", "scale:right_knee:0.5"], "walker-stand")
    run_episodes(..., action_hook=hooks[0])
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mt_factored import tasks
from mt_factored.errors import InputError

KINDS = ("dummy", "scale")
SWEEP = "*"
SPEC_HELP = (
    "expected 'dummy:<joint>' or 'scale:<joint>:<factor>', with <joint> a 0-based action "
    "index, an actuator name, or '*' for every joint"
)


class PerturbationSpecError(InputError):
    """A perturbation spec that cannot be parsed or names a joint the task lacks."""


@dataclass(frozen=True)
class Perturbation:
    """One perturbed joint; an :data:`~mt_factored.planning.episodes.ActionHook`.

    Calling it maps native actions ``[envs, action_dim]`` to a perturbed copy; the
    input is never modified and every other column is returned bit-identical.
    """

    kind: Literal["dummy", "scale"]
    joint: int
    """0-based index of the perturbed entry of the task's action vector."""
    joint_name: str
    """The actuator's name in the dm_control model ("" where the model has none)."""
    factor: float | None = None
    """Scale factor (``scale`` only)."""

    @property
    def family(self) -> str:
        """The spec without its joint, e.g. ``dummy`` or ``scale:0.5`` (one plot panel each)."""
        return self.kind if self.factor is None else f"{self.kind}:{self.factor:g}"

    @property
    def label(self) -> str:
        """The spec with a numeric joint, e.g. ``dummy:1`` or ``scale:1:0.5``."""
        return f"{self.kind}:{self.joint}" + ("" if self.factor is None else f":{self.factor:g}")

    def __call__(self, action: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if action.ndim != 2 or not 0 <= self.joint < action.shape[1]:
            raise ValueError(
                f"{self.label} needs actions [envs, action_dim > {self.joint}], "
                f"got shape {action.shape}"
            )
        out = action.copy()
        if self.kind == "dummy":
            out[:, self.joint] = rng.uniform(-1.0, 1.0, size=action.shape[0])
        else:
            out[:, self.joint] *= self.factor
        return out


@functools.cache
def actuator_names(task: str) -> tuple[str, ...]:
    """Actuator names of ``task``'s dm_control model, in action order ("" for unnamed ones)."""
    env = tasks.make_env(task, seed=0)  # dm_control loads at the first call
    model = env.physics.model
    names = tuple(model.id2name(i, "actuator") or "" for i in range(model.nu))
    if len(names) != env.action_dim:
        raise RuntimeError(
            f"{task}: the model has {len(names)} actuators but {env.action_dim} action entries"
        )
    return names


def valid_joints(task: str) -> str:
    """``0=right_hip, 1=right_knee, ...``: the joints a spec may name for ``task``."""
    return ", ".join(
        f"{j}={name}" if name else str(j) for j, name in enumerate(actuator_names(task))
    )


def _joint_indices(joint: str, task: str, spec: str) -> list[int]:
    names = actuator_names(task)
    if joint == SWEEP:
        return list(range(len(names)))
    if joint.lstrip("-").isdigit():
        index = int(joint)
    elif joint and joint in names:
        index = names.index(joint)
    else:
        raise PerturbationSpecError(
            f"perturbation {spec!r}: {task} has no joint {joint!r}; valid joints: "
            f"{valid_joints(task)} (or '*' for all)"
        )
    if not 0 <= index < len(names):
        raise PerturbationSpecError(
            f"perturbation {spec!r}: joint {index} is out of range for {task}, which has "
            f"{len(names)} joint{'s' if len(names) != 1 else ''}: {valid_joints(task)}"
        )
    return [index]


def parse_perturbation(spec: str, task: str) -> list[Perturbation]:
    """Parse one spec for ``task``: one perturbation, or one per joint for ``<joint> = *``.

    Args:
        spec: ``dummy:<joint>`` or ``scale:<joint>:<factor>`` (see the module docstring).
        task: the task whose joints ``<joint>`` refers to, e.g. ``walker-stand``.

    Raises:
        PerturbationSpecError: malformed spec, unknown kind, non-finite factor, or a
            joint the task lacks (the message lists the task's joints).
    """
    if not isinstance(spec, str):
        raise PerturbationSpecError(f"perturbation {spec!r} is not a string; {SPEC_HELP}")
    kind, *rest = spec.strip().split(":")
    if kind not in KINDS:
        raise PerturbationSpecError(f"perturbation {spec!r}: unknown kind {kind!r}; {SPEC_HELP}")
    if len(rest) != (1 if kind == "dummy" else 2):
        raise PerturbationSpecError(f"perturbation {spec!r}: {SPEC_HELP}")
    factor = None
    if kind == "scale":
        try:
            factor = float(rest[1])
        except ValueError:
            factor = float("nan")
        if not np.isfinite(factor):
            raise PerturbationSpecError(
                f"perturbation {spec!r}: the scale factor must be a finite number, got {rest[1]!r}"
            )
    names = actuator_names(task)
    return [
        Perturbation(kind=kind, joint=j, joint_name=names[j], factor=factor)
        for j in _joint_indices(rest[0].strip(), task, spec)
    ]


def parse_perturbations(specs: str | Sequence[str], task: str) -> list[Perturbation]:
    """Parse one spec or a list of specs for ``task``, sweeps expanded, in the given order.

    Duplicates (the same kind, joint and factor twice) are kept once.
    """
    if isinstance(specs, str):
        specs = [specs]
    if len(specs) == 0:
        raise PerturbationSpecError(f"no perturbation given; {SPEC_HELP}")
    parsed = [p for spec in specs for p in parse_perturbation(spec, task)]
    return list(dict.fromkeys(parsed))
