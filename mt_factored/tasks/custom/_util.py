"""Helpers shared by the custom task modules: model XML edits and environment assembly."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from importlib import resources

from dm_control.rl import control
from dm_control.suite import base


def with_plane_half_x(xml: bytes | str, geom_name: str, half_x: float) -> str:
    """The model XML with the x half-size of the plane geom `geom_name` set to `half_x`."""
    root = ET.fromstring(xml)
    geom = root.find(f".//geom[@name='{geom_name}']")
    if geom is None or geom.get("type") != "plane":
        raise ValueError(f"No plane geom named {geom_name!r} in model {root.get('model')!r}.")
    size = geom.get("size", "").split()
    geom.set("size", " ".join([str(half_x), *size[1:]]))
    return ET.tostring(root, encoding="unicode")


def read_asset(filename: str) -> str:
    """The text of `mt_factored/tasks/assets/<filename>`."""
    return (resources.files("mt_factored.tasks") / "assets" / filename).read_text()


def environment(
    physics: control.Physics,
    task: base.Task,
    time_limit: float,
    control_timestep: float | None = None,
    environment_kwargs: dict | None = None,
) -> control.Environment:
    """A dm_control environment; `control_timestep=None` means one physics step per control step."""
    kwargs = dict(environment_kwargs or {})
    if control_timestep is not None:
        kwargs["control_timestep"] = control_timestep
    return control.Environment(physics, task, time_limit=time_limit, **kwargs)
