"""The import direction is one way: model <- training, model <- app (DESIGN.md)."""

from __future__ import annotations

import ast
import sys
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


# -- inside training/ and app/cli/ ----------------------------------------------------------

#: training's stages, lowest first: a package imports only itself and those before it
TRAINING_STAGES = ["data", "simulate", "evaluate", "fit", "experiments"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_statements(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import in ``path``, relative ones resolved against its package."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            found.append((module, [alias.name for alias in node.names]))
    return found


def _qualified_imports(path: Path) -> set[str]:
    """Every module ``path`` may import: ``from p import n`` gives ``p`` and ``p.n``."""
    return {
        target
        for module, names in _import_statements(path)
        for target in [module, *(f"{module}.{n}" for n in names)]
    }


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "training" else None


def test_training_modules_live_in_a_stage_package() -> None:
    flat = [p.name for p in (ROOT / "training").glob("*.py") if p.name != "__init__.py"]
    stray = sorted(
        p.name for p in (ROOT / "training").iterdir() if p.is_dir() and p.name != "__pycache__"
    )
    assert not flat, f"training/ modules outside a stage package: {flat}"
    assert stray == sorted(TRAINING_STAGES), f"training/ packages {stray} != {TRAINING_STAGES}"


def test_training_stages_import_downwards_only() -> None:
    bad = {}
    for path in sorted((ROOT / "training").rglob("*.py")):
        own = _stage(_module_name(path))
        if own is None:  # training/__init__.py
            assert not _qualified_imports(path) - {"__future__", "__future__.annotations"}
            continue
        higher = {
            target
            for target in _qualified_imports(path)
            if _stage(target) in TRAINING_STAGES
            and TRAINING_STAGES.index(str(_stage(target))) > TRAINING_STAGES.index(own)
        }
        if higher:
            bad[str(path.relative_to(ROOT))] = sorted(higher)
    assert not bad, f"training/ imports a higher stage ({' <- '.join(TRAINING_STAGES)}): {bad}"


def _circles(package: str) -> list[list[str]]:
    """Import circles among the modules of ``package`` (a folder under ROOT)."""
    files = sorted((ROOT / package).rglob("*.py"))
    modules = {_module_name(f): f for f in files}

    def owner(target: str) -> str | None:  # the module of ours that ``target`` names, if any
        ours = [m for m in modules if target == m or target.startswith(m + ".")]
        return max(ours, key=len) if ours else None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str | None] = set()
        for module, names in _import_statements(path):
            subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in modules]
            edges |= set(subs) if names and len(subs) == len(names) else {*subs, owner(module)}
        graph[name] = {e for e in edges if e is not None} - {name}
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return circles


@pytest.mark.parametrize("package", ["app/cli", "training"])
def test_no_import_circle(package: str) -> None:
    assert (ROOT / package / "__init__.py").is_file()
    assert not _circles(package), f"import circles in {package}/: {_circles(package)}"


def test_the_checker_sees_an_import_circle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("from . import sub\n")
    (tmp_path / "pkg" / "sub.py").write_text("from . import helper\nfrom .other import x\n")
    (tmp_path / "pkg" / "other.py").write_text("from pkg import sub\n")
    (tmp_path / "pkg" / "helper.py").write_text("import os\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _circles("pkg") == [["pkg.sub", "pkg.other", "pkg.sub"]]
    (tmp_path / "pkg" / "other.py").write_text("from .helper import y\n")
    assert _circles("pkg") == []
