"""Retraining in-process (real SQLite, real training of a tiny job, the worker's service
function called directly): admin-only endpoints, data-source checks, job outcomes, the
registry's activation rules. The end-to-end path with real workers is test_retraining_e2e.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.schemas_training import ARCHS
from app.config import Settings
from app.db import repo
from app.db.session import session_scope
from app.model_versions import register_checkpoint
from app.retrain.dataset import validation_series, write_reviews_dataset
from app.retrain.evaluation import beats
from app.retrain.sources import ReviewedSlice
from app.worker.training import run_training_job
from tests.app.conftest import auth, new_key
from tests.utils.datasets import tiny_dataset
from tests.utils.service import scored_series, series_files, tiny_checkpoint

#: a job of seconds: 2 steps per epoch on 64 px slices cut into one 64 px patch
TINY_JOB = {"epochs": 1, "samples_per_epoch": 20, "batch_size": 10, "patch": 64, "size": 64}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """conftest's settings, with data loading in the job's own process (tiny data)."""
    return settings.model_copy(update={"training_loader_workers": 0})


@pytest.fixture
def admin(settings: Settings) -> dict[str, str]:
    return auth(new_key(settings, "admin"))


@pytest.fixture
def dataset(settings: Settings) -> str:
    tiny_dataset(settings.data_dir / "datasets" / "tiny", {"train": 4, "val": 2}, size=64)
    return "datasets/tiny"


def _start(client: TestClient, headers: dict[str, str], path: str, **params: object) -> int:
    body = {"source": {"kind": "dataset", "path": path}, **TINY_JOB, **params}
    r = client.post("/api/v1/training-jobs", json=body, headers=headers)
    assert r.status_code == 202, r.text
    return int(r.json()["job_id"])


def _active_id(settings: Settings) -> int:
    with session_scope(settings.database_url) as session:
        version = repo.active_model_version(session)
        assert version is not None
        return version.id


# --- access ----------------------------------------------------------------------------


def _retraining_routes(client: TestClient) -> list[tuple[str, str]]:
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    routes = [
        (method.upper(), path.replace("{job_id}", "1").replace("{version_id}", "1"))
        for path, methods in paths.items()
        if path.startswith(("/api/v1/training-jobs", "/api/v1/models"))
        for method in methods
    ]
    assert len(routes) >= 11, routes
    return routes


@pytest.mark.parametrize("role", ["scanner", "radiographer"])
def test_every_retraining_endpoint_refuses_non_admin_keys(
    client: TestClient, settings: Settings, role: str
) -> None:
    headers = auth(new_key(settings, role))
    for method, path in _retraining_routes(client):
        r = client.request(method, path, headers=headers, json={})
        assert r.status_code == 403, (method, path, r.status_code)
        assert "admin" in r.json()["detail"]


def test_retraining_endpoints_need_a_key(client: TestClient) -> None:
    for method, path in _retraining_routes(client):
        assert client.request(method, path, json={}).status_code == 401, (method, path)


# --- requests refused before anything runs ---------------------------------------------


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("../elsewhere", "'..'"),
        ("/etc", "outside the data dir"),
        ("datasets/nope", "does not exist"),
        ("link-out", "symlink that resolves outside"),
        ("datasets/tiny/train/clean/p0.png", "not a folder"),
        ("", "empty"),
    ],
)
def test_a_dataset_path_that_is_not_a_folder_under_the_data_dir_is_refused(
    client: TestClient,
    settings: Settings,
    admin: dict[str, str],
    dataset: str,
    tmp_path: Path,
    path: str,
    problem: str,
) -> None:
    os.symlink(tmp_path, settings.data_dir / "link-out")
    body = {"source": {"kind": "dataset", "path": path}, **TINY_JOB}
    r = client.post("/api/v1/training-jobs", json=body, headers=admin)
    assert r.status_code == 422 and problem in r.json()["detail"], r.text


def test_a_symlink_inside_the_dataset_that_leaves_the_data_dir_fails_the_job(
    client: TestClient, settings: Settings, admin: dict[str, str], dataset: str, tmp_path: Path
) -> None:
    os.symlink(tmp_path, settings.data_dir / dataset / "train" / "clean" / "escape")
    job_id = _start(client, admin, dataset)
    assert run_training_job(settings, job_id) == "failed"
    job = client.get(f"/api/v1/training-jobs/{job_id}", headers=admin).json()
    assert "escape is a symlink that resolves outside the data dir" in job["error"]


def test_the_reviews_source_is_refused_while_nothing_is_reviewed(
    client: TestClient, admin: dict[str, str]
) -> None:
    r = client.post(
        "/api/v1/training-jobs", json={"source": {"kind": "reviews"}, **TINY_JOB}, headers=admin
    )
    assert r.status_code == 422 and "no reviewed series" in r.json()["detail"]


def test_fine_tuning_keeps_the_base_architecture(
    client: TestClient, admin: dict[str, str], dataset: str
) -> None:
    body = {"source": {"kind": "dataset", "path": dataset}, "arch": "amaresnet18"}
    r = client.post("/api/v1/training-jobs", json=body, headers=admin)
    assert r.status_code == 422 and "fine-tuning keeps the architecture" in r.json()["detail"]


def test_the_api_knows_every_architecture_of_the_model_registry() -> None:
    import model

    assert sorted(ARCHS) == model.list_models()


# --- jobs ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_job_registers_a_version_with_its_numbers_and_leaves_the_active_one(
    client: TestClient, settings: Settings, admin: dict[str, str], dataset: str
) -> None:
    before = _active_id(settings)
    job_id = _start(client, admin, dataset, name="site-a-1")
    assert run_training_job(settings, job_id) == "succeeded"
    job = client.get(f"/api/v1/training-jobs/{job_id}", headers=admin).json()
    assert job["status"] == "succeeded" and job["error"] is None
    assert job["progress"]["epoch"] == 1 and job["progress"]["step"] == 2
    assert set(job["progress"]["val"]) >= {"f1", "roc_auc", "accuracy"}
    assert any("epoch 1/1" in line for line in job["log"])
    assert job["activation"]["activated"] is False and "did not ask" in job["activation"]["reason"]
    version = client.get(f"/api/v1/models/{job['result_version_id']}", headers=admin).json()
    assert version["name"] == "site-a-1" and version["parent_id"] == before
    assert version["training_job_id"] == job_id and version["active"] is False
    assert version["validation"]["set"]["slices"] == 4  # 2 clean val slices + 2 simulated
    assert version["validation"]["active"]["version_id"] == before
    assert {"f1", "roc_auc"} <= set(version["validation"]["candidate"])
    assert version["data_summary"]["train"]["slices"] == 4
    roc = client.get(version["roc_url"], headers=admin)
    assert roc.status_code == 200 and roc.content.startswith(b"\x89PNG")
    assert _active_id(settings) == before
    assert run_training_job(settings, job_id) == "already succeeded"  # redelivery: no-op


@pytest.mark.slow
def test_a_job_keeps_the_fused_detector_of_the_version_it_fine_tunes(
    client: TestClient, settings: Settings, admin: dict[str, str], dataset: str, tmp_path: Path
) -> None:
    from model import read_metadata
    from tests.utils.spectral import small_fusion, spectral_checkpoint_file

    base = spectral_checkpoint_file(tmp_path / "fused-base.safetensors")
    with session_scope(settings.database_url) as session:
        base_id = register_checkpoint(session, base).id  # the active version
    job_id = _start(client, admin, dataset)
    assert run_training_job(settings, job_id) == "succeeded"
    job = client.get(f"/api/v1/training-jobs/{job_id}", headers=admin).json()
    assert any("does not read AMAResNet: carried over unchanged" in line for line in job["log"])
    version = client.get(f"/api/v1/models/{job['result_version_id']}", headers=admin).json()
    assert version["parent_id"] == base_id
    meta = read_metadata(settings.models_dir / f"job-{job_id}.safetensors")
    assert meta.fusion_model == small_fusion()  # the verdict is still the fused detector's
    assert meta.spectral == read_metadata(base).spectral


def test_auto_activation_follows_the_comparison_on_the_fixed_set(
    client: TestClient, settings: Settings, admin: dict[str, str], dataset: str
) -> None:
    before = _active_id(settings)
    job_id = _start(client, admin, dataset, auto_activate=True)
    run_training_job(settings, job_id)
    job = client.get(f"/api/v1/training-jobs/{job_id}", headers=admin).json()
    decision = job["activation"]
    won = beats(decision["candidate"], decision["active"])
    assert decision["activated"] is won
    assert _active_id(settings) == (job["result_version_id"] if won else before)


def test_a_job_can_anneal_its_learning_rate_keep_its_last_epoch_and_guide_its_crops(
    client: TestClient, settings: Settings, admin: dict[str, str], dataset: str
) -> None:
    settings_ = {"lr_schedule": "cosine", "keep": "last", "guided_crops": 0.5, "patch_floor": 0.05}
    job_id = _start(client, admin, dataset, epochs=2, **settings_)
    job = client.get(f"/api/v1/training-jobs/{job_id}", headers=admin).json()
    assert job["params"]["lr_schedule"] == "cosine" and job["params"]["keep"] == "last"
    assert run_training_job(settings, job_id) == "succeeded"
    log = json.loads((settings.training_dir / f"job-{job_id}" / "model.log.json").read_text())
    assert {k: log["config"][k] for k in settings_} == settings_
    assert log["best_epoch"] == 1  # the last of two epochs, whatever validation said
    lrs = [h["lr"] for h in log["history"]]
    assert lrs[1] < lrs[0] <= 1e-4  # annealed from the fine-tuning default


def test_the_paper_recipe_is_the_default_and_unknown_schedules_are_refused(
    client: TestClient, settings: Settings, admin: dict[str, str], dataset: str
) -> None:
    job_id = _start(client, admin, dataset)
    params = client.get(f"/api/v1/training-jobs/{job_id}", headers=admin).json()["params"]
    assert params["lr_schedule"] == "constant" and params["keep"] == "best"
    assert params["guided_crops"] == 0.0 and params["patch_floor"] == 0.0
    refused = (("lr_schedule", "linear"), ("keep", "first"), ("guided_crops", 1.5))
    for field, value in (*refused, ("patch_floor", 1.0), ("patch_floor", -0.1)):
        body = {"source": {"kind": "dataset", "path": dataset}, **TINY_JOB, field: value}
        r = client.post("/api/v1/training-jobs", json=body, headers=admin)
        assert r.status_code == 422 and field in r.text, r.text


def test_the_comparison_is_f1_then_roc_auc() -> None:
    assert beats({"f1": 0.8, "roc_auc": 0.5}, {"f1": 0.7, "roc_auc": 0.9})
    assert beats({"f1": 0.8, "roc_auc": 0.9}, {"f1": 0.8, "roc_auc": 0.8})
    assert not beats({"f1": 0.8, "roc_auc": 0.8}, {"f1": 0.8, "roc_auc": 0.8})


def test_a_job_past_its_time_budget_fails_and_says_so(
    client: TestClient, settings: Settings, admin: dict[str, str], dataset: str
) -> None:
    before = _active_id(settings)
    job_id = _start(client, admin, dataset, time_budget_s=0.001)
    assert run_training_job(settings, job_id) == "failed"
    job = client.get(f"/api/v1/training-jobs/{job_id}", headers=admin).json()
    assert job["error"].startswith("ran out of time") and job["result_version_id"] is None
    assert _active_id(settings) == before


def test_a_queued_job_is_cancelled_at_once_and_never_runs(
    client: TestClient, settings: Settings, admin: dict[str, str], dataset: str
) -> None:
    job_id = _start(client, admin, dataset)
    r = client.delete(f"/api/v1/training-jobs/{job_id}", headers=admin)
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    assert run_training_job(settings, job_id) == "already cancelled"
    again = client.delete(f"/api/v1/training-jobs/{job_id}", headers=admin)
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


def test_unknown_jobs_and_versions_are_404(client: TestClient, admin: dict[str, str]) -> None:
    assert client.get("/api/v1/training-jobs/999", headers=admin).status_code == 404
    assert client.post("/api/v1/models/999/activate", headers=admin).status_code == 404


# --- registry --------------------------------------------------------------------------


@pytest.fixture
def trained(settings: Settings, tmp_path: Path) -> int:
    """The id of a registered, inactive version (another random init: different bytes)."""
    path = tiny_checkpoint(tmp_path / "other.safetensors")
    with session_scope(settings.database_url) as session:
        return register_checkpoint(session, path, activate=False).id


def test_activate_then_rollback_walks_the_history(
    client: TestClient, settings: Settings, admin: dict[str, str], trained: int
) -> None:
    first = _active_id(settings)
    r = client.post(f"/api/v1/models/{trained}/activate", headers=admin)
    assert r.status_code == 200 and r.json()["previous_version_id"] == first
    assert client.post(f"/api/v1/models/{trained}/activate", headers=admin).json() is None
    assert _active_id(settings) == trained
    back = client.post("/api/v1/models/rollback", headers=admin)
    assert back.status_code == 200 and back.json()["version_id"] == first
    assert _active_id(settings) == first
    nothing = client.post("/api/v1/models/rollback", headers=admin)
    assert nothing.status_code == 409 and "nothing to roll back to" in nothing.json()["detail"]
    history = client.get("/api/v1/models/activations", headers=admin).json()["items"]
    assert [a["kind"] for a in history] == ["rollback", "explicit", "register"]
    assert history[1]["undone"] is True


def test_a_checkpoint_changed_on_disk_is_never_activated(
    client: TestClient, settings: Settings, admin: dict[str, str], trained: int
) -> None:
    before = _active_id(settings)
    path = Path(client.get(f"/api/v1/models/{trained}", headers=admin).json()["checkpoint_path"])
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    r = client.post(f"/api/v1/models/{trained}/activate", headers=admin)
    assert r.status_code == 409 and "changed on disk" in r.json()["detail"]
    path.unlink()
    r = client.post(f"/api/v1/models/{trained}/activate", headers=admin)
    assert r.status_code == 409 and "no such checkpoint file" in r.json()["detail"]
    assert _active_id(settings) == before


# --- reviews as training data ----------------------------------------------------------


def test_reviewed_slices_become_a_split_dataset_with_simulated_artifacts(
    client: TestClient, settings: Settings, scanner: dict[str, str], tmp_path: Path
) -> None:
    from training.data.samples import load_split

    slices = []
    for n in range(3):
        uid = f"1.2.826.0.1.3680043.8.498.{70 + n}"
        sid = client.post("/api/v1/series", files=series_files(2, uid), headers=scanner).json()[
            "series_id"
        ]
        with session_scope(settings.database_url) as session:
            for inst in repo.series_instances(session, sid):
                label = 1 if n == 1 else 0
                slices.append(ReviewedSlice(inst.id, sid, inst.storage_path, 0, label))
    counts = write_reviews_dataset(settings, slices, tmp_path / "data", seed=0)
    assert counts["reviewed_slices"] == 6 and counts["simulated"] == 4
    assert counts["clean"] == 4 and counts["artifact"] == 2
    val = load_split(tmp_path / "data", "val")
    train = load_split(tmp_path / "data", "train")
    assert {s.group for s in val}.isdisjoint({s.group for s in train})
    assert len(train) + len(val) == 6 + 4


def test_radiographer_reviews_train_a_model_through_the_api(
    client: TestClient,
    settings: Settings,
    scanner: dict[str, str],
    radiographer: dict[str, str],
    admin: dict[str, str],
) -> None:
    from app.retrain.sources import reviewed_slices

    labels = {}
    for n, review in enumerate(("clean", "artifact", "clean")):
        sid, ids = scored_series(client, settings, scanner, f"1.2.826.0.1.3680043.8.498.{80 + n}")
        body: dict[str, object] = {"label": review}
        if review == "artifact":  # which slice shows it: only that one is an artifact label
            body["slices"] = {str(ids[0]): "artifact"}
            labels[ids[0]] = 1
        else:
            labels.update(dict.fromkeys(ids, 0))
        r = client.post(f"/api/v1/series/{sid}/reviews", json=body, headers=radiographer)
        assert r.status_code == 201, r.text
    with session_scope(settings.database_url) as session:
        assert {s.instance_id: s.label for s in reviewed_slices(session)} == labels
    r = client.post(
        "/api/v1/training-jobs", json={"source": {"kind": "reviews"}, **TINY_JOB}, headers=admin
    )
    assert r.status_code == 202, r.text
    assert run_training_job(settings, r.json()["job_id"]) == "succeeded"
    job = client.get(r.json()["status_url"], headers=admin).json()
    assert job["status"] == "succeeded" and job["result_version_id"] is not None


def test_reviews_of_a_single_series_cannot_be_split() -> None:
    with pytest.raises(ValueError, match="at least 2 series"):
        validation_series([7, 7, 7])


def test_a_worker_refuses_an_unknown_queue() -> None:
    from typer.testing import CliRunner

    from app.cli import app

    result = CliRunner().invoke(app, ["worker", "--queues", "inference,trainnig"])
    assert result.exit_code != 0 and "unknown queue" in result.output
