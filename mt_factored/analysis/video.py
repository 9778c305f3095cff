"""Videos of an evaluation put together: student and expert side by side, and a filmstrip.

Every model's first episode of a task runs with the same env seed and is written as
``<model>-<task>.mp4`` (``evaluate ... video=true``). From those files:

- :func:`side_by_side`: one mp4 per task, the models' frames next to each other (the shorter
  episode holds its last frame), each labelled with its model's name;
- :func:`filmstrip`: one PNG per task, a row per model of ``frames`` evenly spaced frames
  (small enough for a README).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from mt_factored.artifacts.atomic import atomic_write

log = logging.getLogger(__name__)
FPS = 30


def read_frames(path: str | Path) -> list[np.ndarray]:
    """Every frame of a video file as an ``[H, W, 3]`` uint8 array."""
    import imageio.v2 as imageio

    with imageio.get_reader(str(path)) as reader:
        return [np.asarray(frame)[..., :3] for frame in reader]


def label(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` with ``text`` in its top-left corner (white on a dark box)."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    box = draw.textbbox((4, 2), text)
    draw.rectangle((box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 255))
    return np.asarray(image)


def side_by_side(videos: Mapping[str, str | Path], out: str | Path, fps: int = FPS) -> Path:
    """One mp4 of the videos' frames next to each other, in the order of ``videos``
    (model name -> its video)."""
    import imageio.v2 as imageio

    clips = {name: read_frames(path) for name, path in videos.items()}
    length = max(len(frames) for frames in clips.values())
    joined = [
        np.concatenate(
            [label(frames[min(i, len(frames) - 1)], name) for name, frames in clips.items()],
            axis=1,
        )
        for i in range(length)
    ]
    return atomic_write(out, lambda tmp: imageio.mimsave(tmp, joined, fps=fps), keep_suffix=True)


def filmstrip(
    videos: Mapping[str, str | Path], out: str | Path, frames: int = 6, scale: float = 0.5
) -> Path:
    """A PNG: one row per model (labelled), ``frames`` evenly spaced frames of its episode,
    each resized by ``scale``."""
    from PIL import Image

    rows = []
    for name, path in videos.items():
        clip = read_frames(path)
        picks = np.linspace(0, len(clip) - 1, frames).round().astype(int)
        cells = []
        for i in picks:
            image = Image.fromarray(clip[i])
            size = (max(1, int(image.width * scale)), max(1, int(image.height * scale)))
            cells.append(np.asarray(image.resize(size, Image.BILINEAR)))
        row = np.concatenate(cells, axis=1)
        rows.append(label(row, name))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    strip = np.concatenate(rows, axis=0)
    return atomic_write(out, lambda tmp: Image.fromarray(strip).save(tmp, format="PNG"))


def combine_videos(
    out_dir: str | Path,
    models: list[str],
    tasks: list[str],
    *,
    layout: str = "separate",
    filmstrip_frames: int = 0,
) -> dict[str, list[Path]]:
    """After ``video=true``: the side-by-side mp4 (``<task>.mp4``) and the filmstrip
    (``<task>-filmstrip.png``) of each task whose models all wrote their video."""
    out_dir = Path(out_dir)
    written: dict[str, list[Path]] = {}
    for task in tasks:
        videos = {m: out_dir / f"{m}-{task}.mp4" for m in models}
        if not all(p.is_file() for p in videos.values()):
            log.warning("%s: not every model wrote its video; nothing combined", task)
            continue
        files = []
        if layout == "side_by_side" and len(videos) > 1:
            files.append(side_by_side(videos, out_dir / f"{task}.mp4"))
        if filmstrip_frames > 0:
            files.append(filmstrip(videos, out_dir / f"{task}-filmstrip.png", filmstrip_frames))
        written[task] = files
        for path in files:
            log.info("wrote %s", path)
    return written
