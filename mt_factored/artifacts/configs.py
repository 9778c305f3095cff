"""Config dataclasses as data: a strict dict round trip, plain JSON values, partial overrides.

The config dataclasses are the schema of every recipe (``mt_factored.schema`` registers them
with Hydra); these helpers are what the model and run configs need besides: ``to_dict`` /
``from_dict`` for checkpoints and ``config.json`` (unknown keys are refused by name),
:func:`plain` for loggers and model cards, and :func:`partial_config` for a node that
overrides only some fields of another config (e.g. the student's MPPI budget).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf, open_dict

ConfigT = TypeVar("ConfigT", bound="DictRoundTrip")


def plain(value: Any) -> Any:
    """A JSON-safe copy: dataclasses -> dicts, enums -> their values, tuples -> lists, other
    objects -> ``str``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    return str(value)


def _enum_values(value: Any) -> Any:
    """``value`` with every Enum member replaced by its value (containers kept as they are)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _enum_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_enum_values(v) for v in value)
    return value


class DictRoundTrip:
    """``to_dict`` / ``from_dict`` for a dataclass, strict about unknown keys.

    Configs are written into checkpoints and Hub folders; a key this version does not
    know means the file came from a different version or was edited by hand, so it is
    reported by name instead of being dropped silently.
    """

    def to_dict(self) -> dict[str, Any]:
        """``dataclasses.asdict(self)`` with enums as their values: plain JSON-serialisable
        values (tuples stay tuples)."""
        return _enum_values(dataclasses.asdict(self))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[ConfigT], data: Mapping[str, Any]) -> ConfigT:
        """Inverse of :meth:`to_dict`; unknown keys raise a TypeError naming them."""
        known = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise TypeError(f"{cls.__name__}.from_dict: unknown fields {unknown}")
        return cls(**data)


def partial_config(cls: type, name: str, doc: str, only: Sequence[str] | None = None) -> type:
    """A dataclass with the fields of ``cls`` (or ``only`` those), each optional and None by
    default: a config node that overrides some fields of a ``cls`` and keeps the rest.

    Its field documentation is ``cls``'s (``docs_from``); read it back with :func:`overrides`.
    """
    hints = typing.get_type_hints(cls)
    fields = [
        (f.name, typing.Optional[hints[f.name]], dataclasses.field(default=None))  # noqa: UP045
        for f in dataclasses.fields(cls)
        if only is None or f.name in only
    ]
    made = dataclasses.make_dataclass(name, fields, kw_only=True)
    made.__doc__ = doc
    made.__module__ = cls.__module__
    made.docs_from = cls
    return made


def overrides(node: Any) -> dict[str, Any]:
    """The fields a partial config sets (its non-None values); ``{}`` for None."""
    if node is None:
        return {}
    items = dataclasses.asdict(node) if dataclasses.is_dataclass(node) else dict(node)
    return {k: v for k, v in items.items() if v is not None}


def as_object(cfg: Any) -> Any:
    """A composed config as its dataclass instance (``OmegaConf.to_object``: interpolations
    resolved, every ``__post_init__`` check run, the ``hydra`` node left out); anything else is
    returned as it is."""
    if not isinstance(cfg, DictConfig):
        return cfg
    if "hydra" in cfg:
        cfg = cfg.copy()
        with open_dict(cfg):
            del cfg["hydra"]
    return OmegaConf.to_object(cfg)
