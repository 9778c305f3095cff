"""Publish students and experts on the Hugging Face Hub: model cards, conversion of what
training leaves behind, and the one-commit upload.

- ``python -m mt_factored.hub push checkpoint=... repo_id=ORG/NAME [--dry-run]``
  (``__main__.py``, ``push.py``): a Lightning checkpoint, a saved folder or a TD-MPC2 ``.pt``
  becomes a model folder, uploaded as one commit.
- ``card.py``: the model cards; ``results.py``: evaluation results in a card;
  ``convert.py``: checkpoints -> models; ``upload.py``: the commit operations and the upload.
- Loading is below this layer: ``mt_factored.student.load_student`` /
  ``FactoredStudent.from_pretrained`` and ``mt_factored.expert.pretrained.expert_from_pretrained``,
  on the folder files of ``mt_factored.artifacts``.
"""

from mt_factored.artifacts import (
    ArtifactFormatError,
    ArtifactNotFoundError,
    NewerFormatWarning,
    fetch_file,
)
from mt_factored.hub.upload import (
    HubOfflineError,
    commit_operations,
    push_folder,
    push_operations,
)

__all__ = [
    "ArtifactFormatError",
    "ArtifactNotFoundError",
    "HubOfflineError",
    "NewerFormatWarning",
    "commit_operations",
    "fetch_file",
    "push_folder",
    "push_operations",
]
