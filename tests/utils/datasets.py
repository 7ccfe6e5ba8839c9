"""Tiny datasets in the project's layout for training / evaluation tests."""

from __future__ import annotations

from pathlib import Path

from .images import phantom, write_png16


def tiny_dataset(root: Path, sizes: dict[str, int] | None = None, size: int = 96) -> Path:
    """``root/<split>/clean/p<i>.png`` phantoms; every split different (seeded by split)."""
    sizes = sizes or {"train": 6, "val": 3, "test": 3}
    for split_index, (split, n) in enumerate(sizes.items()):
        for i in range(n):
            write_png16(root / split / "clean" / f"p{i}.png", phantom(size, 100 * split_index + i))
    return root
