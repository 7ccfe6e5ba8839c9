"""Content-addressed storage of original files under ``<data_dir>/objects``.

A file's path is ``objects/<sha[:2]>/<sha><ext>``: chosen from its SHA-256 and an extension
from a fixed list, never from anything in the upload.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

EXTENSIONS = frozenset({".dcm", ".png", ".jpg", ".nii", ".nii.gz"})


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def relative_path(sha256: str, ext: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a hex SHA-256: {sha256!r}")
    if ext not in EXTENSIONS:
        raise ValueError(f"extension must be one of {sorted(EXTENSIONS)}, got {ext!r}")
    return f"{sha256[:2]}/{sha256}{ext}"


def put(root: Path, source: Path, sha256: str, ext: str) -> str:
    """Copy ``source`` into the store (once per content) and return its relative path."""
    rel = relative_path(sha256, ext)
    target = root / rel
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            shutil.copyfile(source, tmp)
            tmp.replace(target)  # atomic: a reader never sees half a file
        except BaseException:  # a full disk: no half-written file is left behind
            tmp.unlink(missing_ok=True)
            raise
    return rel


def resolve(root: Path, rel: str) -> Path:
    """Absolute path of a stored object; refuses anything outside ``root``."""
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ValueError(f"storage path escapes the store: {rel!r}")
    return path
