"""What training leaves behind -> the model folder that is published.

Accepted checkpoints: a Lightning ``.ckpt`` of the distillation module (the student and its
training settings), a saved student or expert folder, a TD-MPC2 ``.pt`` (either public key
layout) or a ``hub:ORG/NAME/file.pt`` expert spec.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mt_factored.artifacts.folder import MODEL_TYPE_KEY, ArtifactFormatError, read_config
from mt_factored.constants import CONFIG_NAME
from mt_factored.errors import MissingError
from mt_factored.expert import TDMPC2Expert
from mt_factored.expert.pretrained import (
    CHECKPOINT_KEY,
    EXPERT_MODEL_TYPE,
    expert_from_pretrained,
    save_expert_pretrained,
)
from mt_factored.expert.resolve import HUB_PREFIX, resolve_checkpoint_path
from mt_factored.hub.card import expert_card, student_card
from mt_factored.student import FactoredStudent, read_lightning_checkpoint
from mt_factored.student.pretrained import STUDENT_MODEL_TYPE


@dataclass(frozen=True)
class PushSource:
    """A model to publish and what its card should say about where it comes from."""

    kind: str
    """"student" or "expert"."""
    model: torch.nn.Module
    training: dict[str, Any] | None = None
    """Settings to reproduce the run (Lightning hyperparameters and step), students only."""
    checkpoint_name: str | None = None
    """File name of the public-layout checkpoint in an expert folder."""


def load_for_push(
    checkpoint: str | os.PathLike, task_set: str = "mt30", model_size: int | str = "auto"
) -> PushSource:
    """The model a ``checkpoint=`` argument names (see the module docstring).

    Args:
        task_set, model_size: how to read a TD-MPC2 ``.pt`` (``"auto"``: sizes off the file).
    """
    spec = str(checkpoint)
    path = resolve_checkpoint_path(spec) if spec.startswith(HUB_PREFIX) else Path(spec).expanduser()
    if path.is_dir():
        return _load_folder(path)
    if not path.is_file():
        raise MissingError(
            f"checkpoint={spec} does not exist; give a Lightning .ckpt, a saved folder, a "
            "TD-MPC2 .pt or hub:ORG/NAME/file.pt"
        )
    if path.suffix == ".ckpt":
        trained = read_lightning_checkpoint(path)
        return PushSource("student", trained.student, training=trained.training)
    if path.suffix == ".pt":
        expert = TDMPC2Expert.from_checkpoint(path, task_set=task_set, model_size=model_size)
        return PushSource("expert", expert.eval(), checkpoint_name=path.name)
    raise ArtifactFormatError(
        f"checkpoint={spec}: expected a Lightning .ckpt, a TD-MPC2 .pt or a model folder"
    )


def _load_folder(folder: Path) -> PushSource:
    if not (folder / CONFIG_NAME).is_file():
        raise MissingError(f"{folder} has no {CONFIG_NAME}: not a saved student or expert")
    data = read_config(folder / CONFIG_NAME)
    kind = data.get(MODEL_TYPE_KEY, STUDENT_MODEL_TYPE)
    if kind == STUDENT_MODEL_TYPE:
        return PushSource("student", FactoredStudent.from_pretrained(folder))
    if kind == EXPERT_MODEL_TYPE:
        return PushSource(
            "expert", expert_from_pretrained(folder), checkpoint_name=data.get(CHECKPOINT_KEY)
        )
    raise ArtifactFormatError(f"{folder / CONFIG_NAME}: unknown model_type {kind!r}")


def write_folder(source: PushSource, folder: str | os.PathLike, **card: Any) -> Path:
    """Save ``source`` as a Hub model folder with its full model card (``card``: the card's
    ``repo_id``, ``results``, ``results_meta``, ``datasets``)."""
    if source.kind == "student":
        model_card = student_card(source.model, training=source.training, **card)
        source.model.save_pretrained(folder, model_card=model_card)
        return Path(folder)
    checkpoint_name = source.checkpoint_name or "expert.pt"
    return save_expert_pretrained(
        source.model,
        folder,
        checkpoint_name=checkpoint_name,
        model_card=expert_card(source.model, checkpoint_name, **card),
    )
