"""The one way to load a student: from a saved folder, a Hub repo id (through the Hugging Face
cache), or a Lightning checkpoint of a distillation run.

    student = load_student("runs/quickstart/checkpoints/last.ckpt")  # a training checkpoint
    student = load_student("checkpoints/NAME")                       # save_pretrained / hf download
    student = load_student("ORG/NAME", revision="v1")                # the HF cache (downloads once)

A Lightning checkpoint is read without Lightning and without unpickling code: its
``hyper_parameters["student"]`` is the :class:`StudentConfig` and its ``state_dict`` holds the
student's weights under the ``student.`` prefix (``mt_factored.training.DistillModule``
keeps the student as its ``student`` attribute).
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mt_factored.artifacts import ArtifactFormatError, ArtifactNotFoundError
from mt_factored.artifacts.finite import require_finite
from mt_factored.artifacts.folder import load_state_exact
from mt_factored.constants import LAST_CKPT_NAME, STUDENT_HPARAMS_KEY, STUDENT_STATE_PREFIX
from mt_factored.student.config import StudentConfig
from mt_factored.student.model import FactoredStudent

LIGHTNING_SUFFIX = ".ckpt"


@dataclass(frozen=True)
class TrainedStudent:
    """The student of a Lightning checkpoint and what the run recorded with it."""

    student: FactoredStudent
    """The student, weights exact, in eval mode on the CPU."""
    training: dict[str, Any]
    """The run's other hyperparameters (distillation, optimiser, seed), its global step and
    the Lightning version, as plain JSON values."""


def read_lightning_checkpoint(path: str | os.PathLike) -> TrainedStudent:
    """The student of a distillation run's ``.ckpt`` and the run's settings.

    Raises:
        ArtifactNotFoundError: no such file.
        ArtifactFormatError: not a checkpoint of the distillation module, or weights that do
            not fit the recorded architecture.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactNotFoundError(
            f"{path}: no such Lightning checkpoint. `python -m mt_factored.train recipe=...` "
            f"writes runs/<name>/checkpoints/{LAST_CKPT_NAME}; a student folder or a Hub id "
            "(ORG/NAME) works too."
        )
    try:  # hyperparameters are plain containers: no arbitrary unpickling needed
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as err:
        raise ArtifactFormatError(f"cannot read {path} as a Lightning checkpoint: {err}") from err
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if (
        not isinstance(hparams, dict)
        or STUDENT_HPARAMS_KEY not in hparams
        or "state_dict" not in ckpt
    ):
        raise ArtifactFormatError(
            f"{path} is not a checkpoint of mt_factored's DistillModule (no "
            f"hyper_parameters[{STUDENT_HPARAMS_KEY!r}] / state_dict); pass the run's "
            f"checkpoints/{LAST_CKPT_NAME}"
        )
    try:
        config = StudentConfig.from_dict(hparams[STUDENT_HPARAMS_KEY])
    except (TypeError, ValueError) as err:
        raise ArtifactFormatError(f"{path}: invalid student hyperparameters: {err}") from err
    state = {
        k[len(STUDENT_STATE_PREFIX) :]: v
        for k, v in ckpt["state_dict"].items()
        if k.startswith(STUDENT_STATE_PREFIX)
    }
    require_finite(state, f"the student of {path}", doing="load")
    student = FactoredStudent(config)
    load_state_exact(student, state, f"{path} (hyper_parameters[{STUDENT_HPARAMS_KEY!r}])")
    training = {
        "global_step": ckpt.get("global_step"),
        **{k: v for k, v in hparams.items() if k != STUDENT_HPARAMS_KEY},
        "lightning": ckpt.get("pytorch-lightning_version"),
    }
    return TrainedStudent(student.eval(), _plain(training))


def load_student(
    source: str | os.PathLike,
    *,
    revision: str | None = None,
    map_location: str | torch.device = "cpu",
) -> FactoredStudent:
    """A student from a Lightning ``.ckpt``, a saved folder or a Hub repo id (HF cache).

    Args:
        source: ``<run_dir>/checkpoints/last.ckpt``, a folder written by ``save_pretrained``
            (or ``hf download ORG/NAME --local-dir X``), or ``ORG/NAME``.
        revision: branch, tag or commit of a Hub repo.
        map_location: where the weights go.

    Returns:
        The student in eval mode.
    """
    if Path(source).suffix == LIGHTNING_SUFFIX:
        return read_lightning_checkpoint(Path(source).expanduser()).student.to(map_location)
    return FactoredStudent.from_pretrained(
        str(source), revision=revision, map_location=map_location
    )


def _plain(value: Any) -> Any:
    """JSON/YAML-safe copy (tuples -> lists, unknown objects -> str)."""
    return json.loads(json.dumps(value, default=str))
