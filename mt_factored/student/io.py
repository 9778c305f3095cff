"""A student on disk: ``config.json`` (config + ``format_version``) and ``model.safetensors``.

The folder is the artifact pushed to and pulled from the Hugging Face Hub;
``load_student`` reads a local folder or, for anything else, a Hub repo id through
the HF cache (``HF_HUB_OFFLINE=1`` serves it from the cache without network).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mt_factored.constants import CONFIG_NAME, STUDENT_FORMAT_VERSION, WEIGHTS_NAME
from mt_factored.student.config import StudentConfig
from mt_factored.student.model import FactoredStudent

FORMAT_KEY = "format_version"


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_student(student: FactoredStudent, folder: str | Path) -> Path:
    """Write ``student`` to ``folder`` (created); each file is written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()}
    _atomic_write(folder / WEIGHTS_NAME, lambda p: save_file(state, p, metadata={"format": "pt"}))
    config = {FORMAT_KEY: STUDENT_FORMAT_VERSION, **student.config.to_dict()}

    def write_config(p: str) -> None:
        Path(p).write_text(json.dumps(config, indent=2) + "\n")

    _atomic_write(folder / CONFIG_NAME, write_config)
    return folder


def load_student(
    folder_or_repo: str | Path,
    revision: str | None = None,
    map_location: str | torch.device = "cpu",
) -> FactoredStudent:
    """A student from a folder written by :func:`save_student` or a Hub model repo id."""
    folder = Path(folder_or_repo)
    if not folder.is_dir():
        from huggingface_hub import snapshot_download

        folder = Path(
            snapshot_download(
                str(folder_or_repo), revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME]
            )
        )
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} has no {name}: not a saved student")
    data = json.loads((folder / CONFIG_NAME).read_text())
    version = data.pop(FORMAT_KEY, None)
    if version != STUDENT_FORMAT_VERSION:
        raise ValueError(
            f"{folder / CONFIG_NAME}: student format_version {version!r}, this package reads "
            f"{STUDENT_FORMAT_VERSION}"
        )
    student = FactoredStudent(StudentConfig.from_dict(data))
    state = load_file(str(folder / WEIGHTS_NAME), device=str(torch.device(map_location)))
    student.load_state_dict(state)
    return student.to(map_location)
