"""Figures written by the analysis commands: images that appear whole (temp file in the
target's folder, then a rename; :func:`mt_factored.artifacts.atomic.atomic_write`)."""

from __future__ import annotations

import os
from pathlib import Path

from mt_factored.artifacts.atomic import atomic_write


def save_figure(fig, path: str | os.PathLike, dpi: float | None = None, **kwargs) -> Path:
    """Write a matplotlib figure atomically, in the format its extension names (PNG without
    one); ``kwargs``: more ``savefig`` arguments."""
    image_format = Path(path).suffix.lstrip(".").lower() or "png"
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=image_format, dpi=dpi, **kwargs))
