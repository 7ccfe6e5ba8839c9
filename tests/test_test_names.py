"""The suite's own layout: pytest imports test modules by their base name (no packages under
tests/), so two test files of one name in different folders stop the whole collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def test_every_test_module_has_a_unique_base_name() -> None:
    names = Counter(p.name for p in Path(__file__).parent.rglob("test_*.py"))
    assert not [n for n, k in names.items() if k > 1], names.most_common(3)
