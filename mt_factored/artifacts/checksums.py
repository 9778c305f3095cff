"""Checksums of the files this project writes (model weights, dataset shards)."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from mt_factored.artifacts.atomic import write_text
from mt_factored.errors import MismatchError

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


MANIFEST_NAME = "SHA256SUMS"
"""A folder's manifest of shipped files, in ``sha256sum`` format (``<hex>  <relative path>``;
``sha256sum -c SHA256SUMS`` checks it too)."""
_MANIFEST_DEPTH = 3


def read_manifest(path: str | os.PathLike) -> dict[str, str]:
    """``relative path -> hex SHA-256`` of a :data:`MANIFEST_NAME` file."""
    out = {}
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, _, name = line.partition("  ")
            out[name.strip().removeprefix("*")] = digest.strip().lower()
    return out


def write_manifest(folder: str | os.PathLike, files: list[str | os.PathLike]) -> Path:
    """Write ``<folder>/SHA256SUMS`` listing ``files`` (paths inside ``folder``)."""
    folder = Path(folder)
    rows = sorted(Path(f).resolve().relative_to(folder.resolve()).as_posix() for f in files)
    text = "".join(f"{sha256_file(folder / name)}  {name}\n" for name in rows)
    return write_text(folder / MANIFEST_NAME, text)


def manifest_entry(path: str | os.PathLike) -> tuple[Path, str] | None:
    """(manifest, expected hash) of ``path`` when a :data:`MANIFEST_NAME` in one of its
    folders (up to three levels up) lists it; else None."""
    path = Path(path).resolve()
    for folder in list(path.parents)[:_MANIFEST_DEPTH]:
        manifest = folder / MANIFEST_NAME
        if manifest.is_file():
            expected = read_manifest(manifest).get(path.relative_to(folder).as_posix())
            if expected is not None:
                return manifest, expected
    return None


def verify_listed(path: str | os.PathLike) -> str | None:
    """Check ``path`` against the manifest that lists it (a shipped file); returns its hash
    (None when no manifest lists it).

    Raises:
        MismatchError: the file differs from what the manifest records.
    """
    entry = manifest_entry(path)
    if entry is None:
        return None
    manifest, expected = entry
    actual = sha256_file(path)
    if actual != expected:
        raise MismatchError(
            f"{path}: its SHA-256 {actual[:16]}... differs from {expected[:16]}... recorded in "
            f"{manifest}: the file was modified or corrupted",
            f"restore it (`git checkout -- {path}`), or copy your own file out of "
            f"{manifest.parent} and pass that path",
        )
    return actual


_HUB_BLOB = re.compile(r"^[0-9a-f]{64}$")


def verify_hub_blob(path: str | os.PathLike) -> str | None:
    """Check a file of the Hugging Face cache against the Hub's own hash of it; returns it.

    The cache stores a large (LFS) file as ``blobs/<sha256 of its content>`` behind the
    snapshot's symlink, so the Hub's hash is the blob's name. Files that are not such blobs
    (small git files, other folders) are not checked (None).

    Raises:
        MismatchError: the content no longer has the hash the Hub recorded.
    """
    blob = Path(path).resolve()
    if blob.parent.name != "blobs" or not _HUB_BLOB.match(blob.name):
        return None
    actual = sha256_file(blob)
    if actual != blob.name:
        raise MismatchError(
            f"{path}: its SHA-256 {actual[:16]}... differs from the Hub's {blob.name[:16]}... "
            "(the cached file was modified or corrupted)",
            f"delete {blob} and download it again (or pass force_download through `hf download`)",
        )
    return actual
