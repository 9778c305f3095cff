"""Dict round trip shared by the frozen config dataclasses (expert, student, distillation)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT", bound="DictRoundTrip")


class DictRoundTrip:
    """``to_dict`` / ``from_dict`` for a dataclass, strict about unknown keys.

    Configs are written into checkpoints and Hub folders; a key this version does not
    know means the file came from a different version or was edited by hand, so it is
    reported by name instead of being dropped silently.
    """

    def to_dict(self) -> dict[str, Any]:
        """``dataclasses.asdict(self)``: plain JSON-serialisable values."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[ConfigT], data: Mapping[str, Any]) -> ConfigT:
        """Inverse of :meth:`to_dict`; unknown keys raise a TypeError naming them."""
        known = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise TypeError(f"{cls.__name__}.from_dict: unknown fields {unknown}")
        return cls(**data)
