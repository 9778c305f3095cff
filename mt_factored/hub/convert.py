"""What training leaves behind -> the model folder that is published.

Accepted checkpoints: a Lightning ``.ckpt`` of ``DistillModule`` (the student and its
training settings), a saved student or expert folder, a TD-MPC2 ``.pt`` (either public key
layout) or a ``hub:ORG/NAME/file.pt`` expert spec.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mt_factored.constants import CONFIG_NAME
from mt_factored.hub.files import MODEL_TYPE_KEY, ArtifactFormatError, load_state_exact, read_config

STUDENT_PREFIX = "student."
"""Prefix of the student's parameters in a DistillModule state dict."""


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


def _plain(value: Any) -> Any:
    """JSON/YAML-safe copy (tuples -> lists, unknown objects -> str)."""
    return json.loads(json.dumps(value, default=str))


def student_from_lightning_checkpoint(path: str | os.PathLike) -> PushSource:
    """The student of a ``DistillModule`` checkpoint, weights exact, plus its settings."""
    from mt_factored.student import FactoredStudent, StudentConfig

    path = Path(path)
    try:  # hyperparameters are plain containers: no arbitrary unpickling needed
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError) as err:
        raise ArtifactFormatError(f"cannot read {path} as a Lightning checkpoint: {err}") from err
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or "student" not in hparams or "state_dict" not in ckpt:
        raise ArtifactFormatError(
            f"{path} is not a checkpoint of mt_factored's DistillModule (no "
            "hyper_parameters['student'] / state_dict); pass the run's checkpoints/last.ckpt"
        )
    try:
        config = StudentConfig.from_dict(hparams["student"])
    except (TypeError, ValueError) as err:
        raise ArtifactFormatError(f"{path}: invalid student hyperparameters: {err}") from err
    state = {
        k[len(STUDENT_PREFIX) :]: v
        for k, v in ckpt["state_dict"].items()
        if k.startswith(STUDENT_PREFIX)
    }
    student = FactoredStudent(config)
    load_state_exact(student, state, f"{path} (hyper_parameters['student'])")
    training = {
        "global_step": ckpt.get("global_step"),
        **{k: v for k, v in hparams.items() if k != "student"},
        "lightning": ckpt.get("pytorch-lightning_version"),
    }
    return PushSource("student", student.eval(), training=_plain(training))


def load_for_push(
    checkpoint: str | os.PathLike, task_set: str = "mt30", model_size: int | str = "auto"
) -> PushSource:
    """The model a ``checkpoint=`` argument names (see the module docstring).

    Args:
        task_set, model_size: how to read a TD-MPC2 ``.pt`` (``"auto"``: sizes off the file).
    """
    from mt_factored.expert import TDMPC2Expert
    from mt_factored.expert.resolve import HUB_PREFIX, resolve_checkpoint_path

    spec = str(checkpoint)
    path = resolve_checkpoint_path(spec) if spec.startswith(HUB_PREFIX) else Path(spec).expanduser()
    if path.is_dir():
        return _load_folder(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint={spec} does not exist; give a Lightning .ckpt, a saved folder, a "
            "TD-MPC2 .pt or hub:ORG/NAME/file.pt"
        )
    if path.suffix == ".ckpt":
        return student_from_lightning_checkpoint(path)
    if path.suffix == ".pt":
        expert = TDMPC2Expert.from_checkpoint(path, task_set=task_set, model_size=model_size)
        return PushSource("expert", expert.eval(), checkpoint_name=path.name)
    raise ArtifactFormatError(
        f"checkpoint={spec}: expected a Lightning .ckpt, a TD-MPC2 .pt or a model folder"
    )


def _load_folder(folder: Path) -> PushSource:
    from mt_factored.expert.hub import CHECKPOINT_KEY, EXPERT_MODEL_TYPE, expert_from_pretrained
    from mt_factored.student import FactoredStudent
    from mt_factored.student.io import STUDENT_MODEL_TYPE

    if not (folder / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{folder} has no {CONFIG_NAME}: not a saved student or expert")
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
    """Save ``source`` as a Hub model folder; ``card`` goes to the model card."""
    if source.kind == "student":
        source.model.save_pretrained(
            folder, model_card_kwargs={"training": source.training, **card}
        )
        return Path(folder)
    from mt_factored.expert.hub import save_expert_pretrained

    return save_expert_pretrained(
        source.model,
        folder,
        checkpoint_name=source.checkpoint_name or "expert.pt",
        model_card_kwargs=card,
    )
