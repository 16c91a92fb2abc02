"""SHA-256 digests of files: the integrity check of weight files and the completion records of cohorts."""

from __future__ import annotations

import hashlib


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks, so a large volume is not held in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
