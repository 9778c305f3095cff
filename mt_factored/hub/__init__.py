"""Publish students and experts on the Hugging Face Hub, and fetch them back.

- ``python -m mt_factored.hub push checkpoint=... repo_id=ORG/NAME [--dry-run]``
  (``__main__.py``): a Lightning checkpoint, a saved folder or a TD-MPC2 ``.pt`` becomes a
  model folder, uploaded as one commit.
- ``files.py``: folder files (atomic writes, checksums, format versions, fetching a file
  from a folder or the HF cache); ``card.py``: model cards; ``convert.py``: checkpoints ->
  models; ``upload.py``: the commit operations and the upload.
- Loading: ``FactoredStudent.from_pretrained`` (``mt_factored.student.io``) and
  ``mt_factored.expert.hub.expert_from_pretrained``.

Nothing here imports the student or expert packages at import time (they import
``files.py``).
"""

from mt_factored.hub.files import (
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
