"""Low-level artifact IO, shared by every package that writes or reads files.

- `atomic.py`: the one atomic write (temp file in the target's folder, fsync, rename, fsync
  the folder) and what is built on it (text, JSON, ``torch.save``, staged folders).
- `checksums.py`: SHA-256 of files (model weights, dataset shards).
- `folder.py`: a model folder, ``config.json`` + ``model.safetensors``: written with the
  weights' checksum, read back with format-version, checksum and exact-shape checks.
- `remote.py`: files from the Hugging Face Hub through its cache (expert, student, data).
- `configs.py`: config dataclasses as data (strict dict round trip, partial overrides).
- `provenance.py`: run metadata (hardware, library version, source commit).
"""

from mt_factored.artifacts.atomic import (
    atomic_write,
    publish,
    save_torch,
    staged_files,
    write_json,
    write_text,
)
from mt_factored.artifacts.checksums import sha256_file
from mt_factored.artifacts.folder import ArtifactFormatError, NewerFormatWarning
from mt_factored.artifacts.remote import ArtifactNotFoundError, fetch_file, hub_file

__all__ = [
    "ArtifactFormatError",
    "ArtifactNotFoundError",
    "NewerFormatWarning",
    "atomic_write",
    "fetch_file",
    "hub_file",
    "publish",
    "save_torch",
    "sha256_file",
    "staged_files",
    "write_json",
    "write_text",
]
