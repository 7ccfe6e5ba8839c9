"""The scanner-side client stays light: it imports without torch (or the service's packages),
the ``amaqc_client`` package imports nothing of ``app`` / ``model`` / ``training``, and its own
distribution (``client/pyproject.toml``) asks for no torch."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "numpy", "app", "model", "training", "celery", "sqlalchemy")

BLOCKED_IMPORT = """
import sys
for name in ("torch", "torchvision", "numpy"):
    sys.modules[name] = None  # an import of it raises ImportError
import amaqc_client.cli, amaqc_client.send, amaqc_client.watch, amaqc_client.run
from amaqc_client.cli import app
from typer.testing import CliRunner
result = CliRunner().invoke(app, ["send", "--help"])
assert result.exit_code == 0, result.output
loaded = sorted({m.split(".")[0] for m in sys.modules if sys.modules[m] is not None})
print(" ".join(loaded))
"""


def test_the_client_imports_and_runs_with_torch_blocked() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_IMPORT], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "amaqc_client" in loaded and "httpx" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_check_sees_a_client_that_needs_torch() -> None:
    needs_torch = BLOCKED_IMPORT.replace(
        "import amaqc_client.cli,", "import torch, amaqc_client.cli,"
    )
    done = subprocess.run(
        [sys.executable, "-c", needs_torch], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode != 0 and "import of torch halted" in done.stderr


def test_amaqc_client_imports_nothing_of_the_service() -> None:
    bad = {}
    for path in sorted((ROOT / "amaqc_client").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            found = [n for n in names if n.split(".")[0] in HEAVY]
            if found:
                bad[path.name] = found
    assert not bad, f"amaqc_client must stay light: {bad}"


def _wheel(tmp_path: Path) -> Path:
    """Build the light distribution from a copy of client/ (the link resolved)."""
    source = tmp_path / "client"
    shutil.copytree(ROOT / "client", source, symlinks=False)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(source),
            "-w",
            str(tmp_path / "dist"),
        ],
        check=True,
        capture_output=True,
    )
    return next((tmp_path / "dist").glob("amaqc_client-*.whl"))


def test_the_light_distribution_holds_the_client_and_asks_for_no_torch(tmp_path: Path) -> None:
    with zipfile.ZipFile(_wheel(tmp_path)) as wheel:
        names = wheel.namelist()
        meta = wheel.read(next(n for n in names if n.endswith("METADATA"))).decode()
        entry = wheel.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert {"amaqc_client/send.py", "amaqc_client/watch.py", "amaqc_client/spool.py"} <= set(names)
    assert not [n for n in names if n.split("/")[0] in ("app", "model", "training")]
    requires = [
        line.split(":", 1)[1].strip()
        for line in meta.splitlines()
        if line.startswith("Requires-Dist:")
    ]
    assert sorted(r.split(">")[0] for r in requires) == ["httpx", "pydicom", "rich", "typer"]
    assert "amaqc-client = amaqc_client.cli:main" in entry


@pytest.mark.slow
def test_the_light_distribution_installs_and_runs_in_a_venv_without_torch(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
    )
    if done.returncode and "No matching distribution found" in done.stderr:
        pytest.skip(
            f"no package index reachable for the client's dependencies: {done.stderr[-300:]}"
        )
    assert done.returncode == 0, done.stderr
    help_ = subprocess.run(
        [str(venv / "bin" / "amaqc-client"), "watch", "--help"], capture_output=True, text=True
    )
    assert help_.returncode == 0 and "--quiet-seconds" in help_.stdout, help_.stderr
    torch = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import torch"], capture_output=True
    )
    assert torch.returncode != 0  # the install brought no torch


def test_without_httpx_send_says_which_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['httpx'] = None\n"
        "from typer.testing import CliRunner\n"
        "from amaqc_client.cli import app\n"
        "r = CliRunner().invoke(app, ['send', '.', '--key', 'k'])\n"
        "print(r.exit_code, r.output)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("1 ") and "pip install 'amaqc[client]'" in done.stdout
    assert "Traceback" not in done.stdout
