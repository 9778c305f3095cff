"""Checksums of the files this project writes (model weights, dataset shards)."""

from __future__ import annotations

import hashlib
import os

CHECKSUM = "sha256"
"""The hash every recorded checksum uses."""
_BLOCK = 16 << 20


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 16 MiB blocks."""
    digest = hashlib.new(CHECKSUM)
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()
