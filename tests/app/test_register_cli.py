"""``amaqc register``: a checkpoint made outside the service joins its model registry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.config import Settings
from app.db import repo, repo_training
from app.db.session import session_scope
from tests.utils.service import tiny_checkpoint


def _amaqc(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AMAQC_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "app", "register", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_register_adds_a_version_and_activates_it_only_when_asked(tmp_path: Path) -> None:
    data_dir = tmp_path / "svc"
    first = tiny_checkpoint(tmp_path / "first.safetensors")
    done = _amaqc(data_dir, str(first), "--name", "site-calibrated")
    assert done.returncode == 0, done.stderr
    assert "'site-calibrated'" in done.stdout and "active: none" in done.stdout
    settings = Settings(data_dir=data_dir)
    with session_scope(settings.database_url) as session:
        (version,) = repo_training.list_model_versions(session)
        assert version.name == "site-calibrated" and not version.active
        assert version.checkpoint_path == str(first.resolve())

    done = _amaqc(data_dir, str(first), "--activate")  # same bytes: the same version, now active
    assert done.returncode == 0, done.stderr
    with session_scope(settings.database_url) as session:
        active = repo.active_model_version(session)
        assert active is not None and active.name == "site-calibrated"
        assert len(repo_training.list_model_versions(session)) == 1


def test_register_refuses_bad_files_and_taken_names_with_a_message(tmp_path: Path) -> None:
    data_dir = tmp_path / "svc"
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint at all")
    bad = _amaqc(data_dir, str(junk))
    assert bad.returncode != 0 and "not a safetensors file" in bad.stdout + bad.stderr
    missing = _amaqc(data_dir, str(tmp_path / "nope.safetensors"))
    assert missing.returncode != 0 and "no such checkpoint file" in missing.stdout + missing.stderr

    ok = _amaqc(data_dir, str(tiny_checkpoint(tmp_path / "a.safetensors")), "--name", "v1")
    assert ok.returncode == 0, ok.stderr
    other = tmp_path / "b.safetensors"
    tiny_checkpoint(other)  # other random weights: other bytes
    taken = _amaqc(data_dir, str(other), "--name", "v1")
    assert taken.returncode != 0 and "exists already" in taken.stdout + taken.stderr
    with session_scope(Settings(data_dir=data_dir).database_url) as session:
        assert [v.name for v in repo_training.list_model_versions(session)] == ["v1"]
