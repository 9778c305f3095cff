"""A TD-MPC2 expert as a Hugging Face model folder.

The folder keeps the public checkpoint so the reference code (and ``expert=hub:ORG/NAME/<file>``
in a recipe) loads it, and adds the Hub conventions next to it:

- ``<checkpoint_name>`` (e.g. ``mt30-5M.pt``): ``{"model": state_dict}`` in the public layout;
- ``model.safetensors``: the same weights, this package's module state dict, no pickle;
- ``config.json``: every :class:`ExpertConfig` field plus ``format_version``, ``model_type``,
  library name and version, the checkpoint name and the SHA-256 of ``model.safetensors``;
- ``README.md``: the model card handed in (``python -m mt_factored.hub push`` writes
  :func:`mt_factored.hub.card.expert_card`), else a short one.

TDMPC2Expert is not a ``PyTorchModelHubMixin`` (its state dict mirrors the public files, and
its loading goes through ``checkpoint.py``), so the two functions here play the mixin's
``save_pretrained`` / ``from_pretrained`` and share the student's checks (``mt_factored.artifacts.folder``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelCard, ModelCardData

from mt_factored.artifacts.atomic import atomic_write, staged_files
from mt_factored.artifacts.folder import (
    FolderKind,
    write_weights_and_config,
)
from mt_factored.constants import (
    CONFIG_NAME,
    EXPERT_FORMAT_VERSION,
    EXPERT_TAGS,
    LIBRARY_NAME,
    LICENSE,
    MODEL_CARD_NAME,
    PIPELINE_TAG,
    WEIGHTS_NAME,
)
from mt_factored.errors import InputError
from mt_factored.expert.config import ExpertConfig
from mt_factored.expert.model import TDMPC2Expert

EXPERT_MODEL_TYPE = "tdmpc2-expert"
CHECKPOINT_KEY = "checkpoint"
"""The name of the public-layout checkpoint, in ``config.json``."""
EXPERT_FOLDER = FolderKind(
    EXPERT_MODEL_TYPE, EXPERT_FORMAT_VERSION, ExpertConfig, extra_metadata=(CHECKPOINT_KEY,)
)


def save_expert_pretrained(
    expert: TDMPC2Expert,
    folder: str | os.PathLike,
    *,
    checkpoint_name: str = "expert.pt",
    model_card: ModelCard | None = None,
) -> Path:
    """Write the expert folder (see the module docstring); each file appears atomically.

    Args:
        checkpoint_name: file name of the public-layout checkpoint, e.g. ``mt30-5M.pt``.
        model_card: the card to write (:func:`mt_factored.hub.card.expert_card`); None: a
            short card (metadata and how to load the folder).

    Returns:
        The folder.
    """
    if Path(checkpoint_name).name != checkpoint_name or not checkpoint_name.endswith(".pt"):
        raise InputError(
            f"checkpoint_name must be a bare file name ending in .pt, got {checkpoint_name!r}"
        )
    if checkpoint_name in (CONFIG_NAME, WEIGHTS_NAME, MODEL_CARD_NAME):
        raise InputError(f"checkpoint_name {checkpoint_name!r} collides with a folder file")
    folder = Path(folder)
    with staged_files(folder, last=CONFIG_NAME) as staging:
        expert.save_checkpoint(staging / checkpoint_name)
        config = {
            **EXPERT_FOLDER.header(),
            CHECKPOINT_KEY: checkpoint_name,
            **expert.config.to_dict(),
        }
        write_weights_and_config(staging, expert, config)
        card = model_card or short_card(expert, checkpoint_name)
        atomic_write(staging / MODEL_CARD_NAME, lambda p: card.save(p))
    return folder


def short_card(expert: TDMPC2Expert, checkpoint_name: str) -> ModelCard:
    """The card of a folder written without one: metadata, what it is, how to load it."""
    data = ModelCardData(
        library_name=LIBRARY_NAME,
        license=LICENSE,
        tags=sorted(EXPERT_TAGS),
        pipeline_tag=PIPELINE_TAG,
    )
    text = (
        f"---\n{data.to_yaml()}\n---\n\n# TD-MPC2 expert\n\n{expert.config.describe()}. "
        f"`{checkpoint_name}` is the public TD-MPC2 checkpoint layout; `model.safetensors` + "
        "`config.json` hold the same weights: `mt_factored.expert.pretrained."
        "expert_from_pretrained(<this folder or ORG/NAME>)`.\n"
    )
    return ModelCard(text)


def expert_from_pretrained(
    folder_or_repo: str | os.PathLike,
    *,
    revision: str | None = None,
    map_location: str | torch.device = "cpu",
    **fetch: Any,
) -> TDMPC2Expert:
    """Load an expert folder written by :func:`save_expert_pretrained` (a folder or a Hub
    repo id through the HF cache) from its safetensors weights; returned in eval mode.
    ``fetch``: huggingface_hub's ``cache_dir``, ``force_download``, ``local_files_only``,
    ``token``. Errors: as :func:`mt_factored.artifacts.folder.load_folder_model`'s.
    """
    return EXPERT_FOLDER.load(
        folder_or_repo, TDMPC2Expert, map_location, revision=revision, **fetch
    )
