"""The import direction is one way: model <- training, model <- app (DESIGN.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {"model": {"app", "training"}, "training": {"app"}}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_against_the_layering(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no python files under {package}/"
    bad = {
        str(f.relative_to(ROOT)): sorted(_imports(f) & FORBIDDEN[package])
        for f in files
        if _imports(f) & FORBIDDEN[package]
    }
    assert not bad, f"{package}/ must not import {sorted(FORBIDDEN[package])}: {bad}"


@pytest.mark.parametrize("package", ["model", "training"])
def test_only_app_reads_the_environment(package: str) -> None:
    offenders = [
        str(f.relative_to(ROOT))
        for f in sorted((ROOT / package).rglob("*.py"))
        if "os.environ" in f.read_text() or "getenv" in f.read_text()
    ]
    assert not offenders, f"{package}/ reads the environment: {offenders}"


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import os\nfrom app.cli import main\nfrom .x import y\n")
    assert _imports(probe) == {"os", "app"}
