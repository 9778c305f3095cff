"""The student as a Hugging Face model folder, through huggingface_hub's ``PyTorchModelHubMixin``.

``FactoredStudent`` inherits :class:`StudentHubMixin`, so it has the mixin's
``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``. A folder holds:

- ``model.safetensors``: the state dict (safetensors, no pickle);
- ``config.json``: every :class:`StudentConfig` field at the top level (the mixin's
  convention) plus ``format_version``, ``model_type``, library name and version, the task
  table (id, name, action dim, discount, agents), the embodiment table and the SHA-256 of
  the weights. The tables are derived from the fields, for readers; loading ignores them;
- ``README.md``: a model card; a short one of its own (how to load it, its size, the training
  settings when given), or the one a caller hands in (``python -m mt_factored.hub push``
  writes the full card with the evaluation results, :mod:`mt_factored.hub.card`).

The hooks below add what the mixin leaves out: a version check (another MAJOR
``format_version`` is refused; unknown fields of a newer minor version are ignored with a
:class:`~mt_factored.artifacts.folder.NewerFormatWarning`), strict weight loading with one error
naming every mismatch, the weights checksum, and atomic files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from huggingface_hub import ModelCard, ModelCardData, PyTorchModelHubMixin

from mt_factored.artifacts.atomic import staged_files
from mt_factored.artifacts.folder import (
    FolderKind,
    write_weights_and_config,
)
from mt_factored.artifacts.provenance import reproduce_markdown
from mt_factored.constants import (
    CONFIG_NAME,
    LIBRARY_NAME,
    LICENSE,
    MODEL_CARD_NAME,
    PIPELINE_TAG,
    STUDENT_FORMAT_VERSION,
    STUDENT_TAGS,
)
from mt_factored.student.config import StudentConfig
from mt_factored.tasks.sets import TASK_SETS
from mt_factored.tasks.spec import dm_control_names

STUDENT_MODEL_TYPE = "factored-student"
STUDENT_FOLDER = FolderKind(
    STUDENT_MODEL_TYPE,
    STUDENT_FORMAT_VERSION,
    StudentConfig,
    extra_metadata=("task_set", "tasks", "embodiments"),
)
"""A student folder's ``config.json``: its fields, the tables derived from them (read by
people, skipped by loading) and the common metadata."""

T = TypeVar("T", bound="StudentHubMixin")

SHORT_CARD = """---
{{ card_data }}
---

# Factored student

A factored per-joint world model (Fac-TDMPC student, `mt_factored`) for {{ num_tasks }} tasks,
up to {{ num_agents }} agents per task, {{ num_parameters }} parameters.

```python
from mt_factored.student import FactoredStudent

student = FactoredStudent.from_pretrained("<this folder or ORG/NAME>")
```

## Reproduce

{{ reproduce }}
"""
"""The card of a folder written by ``save_pretrained`` alone (publishing writes a fuller one)."""


# --------------------------------------------------------------------------- config.json
def known_task_set(task_names: Sequence[str]) -> str | None:
    """The name of the known task set whose task list is exactly ``task_names``, if any."""
    names = tuple(task_names)
    return next((n for n, ts in TASK_SETS.items() if tuple(ts.names) == names), None)


def _domain(task: str) -> str:
    try:
        return dm_control_names(task)[0]
    except ValueError:  # a task name outside the "<domain>-<task>" convention
        return task


def embodiment_table(config: StudentConfig) -> dict[str, dict[str, Any]]:
    """``{embodiment: {action_dim, tasks}}``; an embodiment is a dm_control domain with its
    action size (``reacher-2dof`` and ``reacher-3dof`` when a domain has two)."""
    bodies: dict[tuple[str, int], list[str]] = {}
    for name, dim in zip(config.task_names, config.action_dims, strict=True):
        bodies.setdefault((_domain(name), dim), []).append(name)
    domains = [domain for domain, _ in bodies]
    return {
        (domain if domains.count(domain) == 1 else f"{domain}-{dim}dof"): {
            "action_dim": dim,
            "tasks": tasks,
        }
        for (domain, dim), tasks in bodies.items()
    }


def task_table(config: StudentConfig) -> list[dict[str, Any]]:
    """One row per task id: name, embodiment, action dim, discount and agents (groups of joints)."""
    body_of = {t: body for body, row in embodiment_table(config).items() for t in row["tasks"]}
    return [
        {
            "id": i,
            "name": name,
            "embodiment": body_of[name],
            "action_dim": dim,
            "discount": discount,
            "agents": [list(group) for group in groups],
        }
        for i, (name, dim, discount, groups) in enumerate(
            zip(
                config.task_names,
                config.action_dims,
                config.discounts,
                config.partitions,
                strict=True,
            )
        )
    ]


def student_config_json(config: StudentConfig) -> dict[str, Any]:
    """The content of ``config.json`` (without the weights checksum)."""
    return {
        **STUDENT_FOLDER.header(),
        **config.to_dict(),
        "task_set": known_task_set(config.task_names),
        "tasks": task_table(config),
        "embodiments": embodiment_table(config),
    }


# --------------------------------------------------------------------------------- mixin
class StudentHubMixin(PyTorchModelHubMixin):
    """``PyTorchModelHubMixin`` with the student's folder format (see the module docstring).

    The model class provides ``config`` (a :class:`StudentConfig`) and takes it as its only
    constructor argument.
    """

    config: StudentConfig

    def _save_pretrained(self, save_directory: Path) -> None:
        """Mixin hook: write ``model.safetensors`` then ``config.json`` (with its checksum)."""
        write_weights_and_config(Path(save_directory), self, student_config_json(self.config))

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        config: Any = None,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        model_card: ModelCard | None = None,
        model_card_kwargs: dict[str, Any] | None = None,
        **push_to_hub_kwargs: Any,
    ) -> str | None:
        """Write ``model.safetensors``, ``config.json`` and ``README.md`` into ``save_directory``.

        The mixin's ``save_pretrained``, run in a staging folder whose files are then renamed
        into place one by one: readers never see a partial file, and ``README.md`` is always
        the card of these weights (the mixin alone keeps an existing one).

        Args:
            model_card: the card to write (``mt_factored.hub.card.student_card`` writes the
                published one); None: the short card of :meth:`generate_model_card`.
            model_card_kwargs: passed to :meth:`generate_model_card` (``training``: settings
                that reproduce the run).
            push_to_hub, repo_id, push_to_hub_kwargs: as the mixin (prefer
                ``python -m mt_factored.hub push``).

        Returns:
            The commit URL when ``push_to_hub``, else None (as the mixin).
        """
        if config is not None:
            raise ValueError(
                "the saved config is the model's own StudentConfig; do not pass config="
            )
        folder = Path(save_directory)
        with staged_files(folder, last=CONFIG_NAME) as staging:
            if model_card is not None:  # the mixin keeps a README.md that is already there
                model_card.save(staging / MODEL_CARD_NAME)
            super().save_pretrained(staging, model_card_kwargs=model_card_kwargs)
        if push_to_hub:
            return self.push_to_hub(
                repo_id or folder.name, model_card_kwargs=model_card_kwargs, **push_to_hub_kwargs
            )
        return None

    def generate_model_card(
        self, *args: Any, training: dict[str, Any] | None = None, **kwargs: Any
    ) -> ModelCard:
        """Mixin hook: a short card (metadata, how to load, size, the training settings)."""
        c = self.config
        data = ModelCardData(
            library_name=LIBRARY_NAME,
            license=LICENSE,
            tags=sorted(STUDENT_TAGS),
            pipeline_tag=PIPELINE_TAG,
        )
        parameters = sum(p.numel() for p in self.parameters())  # type: ignore[attr-defined]
        return ModelCard.from_template(
            data,
            template_str=SHORT_CARD,
            num_tasks=c.num_tasks,
            num_agents=c.num_agents,
            num_parameters=f"{parameters:,}",
            reproduce=reproduce_markdown(training),
        )

    @classmethod
    def from_pretrained(
        cls: type[T],
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        map_location: str | torch.device = "cpu",
        **fetch: Any,
    ) -> T:
        """Load a student from a folder, or from a Hub repo id through the HF cache.

        ``hf download ORG/NAME --local-dir X`` then ``from_pretrained(X)``, or
        ``from_pretrained("ORG/NAME", revision=...)`` (downloads into the HF cache; with
        ``HF_HUB_OFFLINE=1`` only the cache is used). The model comes back in eval mode.
        ``fetch``: huggingface_hub's ``cache_dir``, ``force_download``, ``local_files_only``,
        ``token``. Errors: as :func:`mt_factored.artifacts.folder.load_folder_model`'s. (The
        mixin's own ``from_pretrained`` would decode the config itself, dropping
        ``format_version`` and unknown fields silently.)
        """
        return STUDENT_FOLDER.load(
            pretrained_model_name_or_path, cls, map_location, revision=revision, **fetch
        )
