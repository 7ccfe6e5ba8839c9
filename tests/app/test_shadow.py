"""Shadow mode in-process (real model, real SQLite, the worker's service function called
directly): a candidate version scores series beside the active one, its rows never reach what
users see, and ``GET /models/{id}/shadow-report`` compares the two."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.config import Settings
from app.db import repo
from app.db.models import InstanceVerdict, ModelVersion, SeriesVerdict
from app.db.reviews import WorklistFilter, watermark, worklist
from app.db.session import session_scope
from app.model_versions import register_checkpoint
from app.notify import series_event
from app.worker import inference
from app.worker.inference import analyse
from tests.app.conftest import auth, new_key, set_threshold
from tests.utils.service import series_files, tiny_checkpoint


@pytest.fixture
def admin(settings: Settings) -> dict[str, str]:
    return auth(new_key(settings, "admin"))


@pytest.fixture
def candidate(settings: Settings, tmp_path: Path) -> int:
    """A registered, inactive version (another random init: other probabilities)."""
    path = tiny_checkpoint(tmp_path / "candidate.safetensors")
    with session_scope(settings.database_url) as session:
        return register_checkpoint(session, path, activate=False).id


def _upload(client: TestClient, headers: dict[str, str], uid: str, n: int = 2) -> int:
    r = client.post("/api/v1/series", files=series_files(n, uid), headers=headers)
    assert r.status_code in (200, 201, 202), r.text
    return int(r.json()["series_id"])


def _set_version_threshold(settings: Settings, version_id: int, threshold: float) -> None:
    with session_scope(settings.database_url) as session:
        version = session.get(ModelVersion, version_id)
        assert version is not None
        version.threshold = threshold


def _rows(settings: Settings, model: type[Any], *, shadow: bool) -> list[Any]:
    with session_scope(settings.database_url) as session:
        rows = list(session.scalars(select(model).where(model.shadow.is_(shadow))))
        session.expunge_all()
        return rows


def _user_view(client: TestClient, settings: Settings, headers: dict[str, str], sid: int) -> Any:
    """Everything a user or a receiver sees of the series' verdict."""
    series = client.get(f"/api/v1/series/{sid}", headers=headers).json()
    instances = [
        client.get(f"/api/v1/instances/{i['id']}", headers=headers).json()
        for i in series["instances"]
    ]
    listed = client.get("/api/v1/series", headers=headers).json()
    with session_scope(settings.database_url) as session:
        rows, _ = worklist(session, WorklistFilter())
        row = next(r for r in rows if r.series.id == sid)
        assert row.verdict is not None
        worklist_verdict = (row.verdict.id, row.verdict.model_version_id, row.verdict.label)
        counts = repo.verdict_counts(session)
        mark = str(watermark(session))  # the worklist's event stream: no change to announce
    return series, instances, listed, worklist_verdict, counts, mark, series_event(settings, sid)


# --- the API ---------------------------------------------------------------------------


def test_shadow_mode_starts_stops_and_refuses_the_active_version(
    client: TestClient, settings: Settings, admin: dict[str, str], candidate: int
) -> None:
    active = client.get("/api/v1/models", headers=admin).json()["active_id"]
    r = client.post(f"/api/v1/models/{active}/shadow", headers=admin)
    assert r.status_code == 409 and "is the active version" in r.json()["detail"]

    r = client.post(f"/api/v1/models/{candidate}/shadow", headers=admin)
    assert r.status_code == 200 and r.json()["shadow"] is True
    assert client.get("/api/v1/models", headers=admin).json()["shadow_id"] == candidate

    r = client.delete(f"/api/v1/models/{candidate}/shadow", headers=admin)
    assert r.status_code == 200 and r.json()["shadow"] is False
    assert client.get("/api/v1/models", headers=admin).json()["shadow_id"] is None
    r = client.delete(f"/api/v1/models/{candidate}/shadow", headers=admin)
    assert r.status_code == 409 and "not in shadow mode" in r.json()["detail"]
    assert client.post("/api/v1/models/999/shadow", headers=admin).status_code == 404
    assert client.get("/api/v1/models/999/shadow-report", headers=admin).status_code == 404


def test_a_changed_checkpoint_is_not_put_in_shadow_mode(
    client: TestClient, admin: dict[str, str], candidate: int
) -> None:
    path = Path(client.get(f"/api/v1/models/{candidate}", headers=admin).json()["checkpoint_path"])
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    r = client.post(f"/api/v1/models/{candidate}/shadow", headers=admin)
    assert r.status_code == 409
    assert "is not put in shadow mode" in r.json()["detail"]
    assert "changed on disk" in r.json()["detail"]
    assert client.get("/api/v1/models", headers=admin).json()["shadow_id"] is None


def test_activating_the_shadow_version_ends_its_shadow_mode(
    client: TestClient, admin: dict[str, str], candidate: int
) -> None:
    client.post(f"/api/v1/models/{candidate}/shadow", headers=admin)
    assert client.post(f"/api/v1/models/{candidate}/activate", headers=admin).status_code == 200
    models = client.get("/api/v1/models", headers=admin).json()
    assert models["active_id"] == candidate and models["shadow_id"] is None
    assert client.get(f"/api/v1/models/{candidate}", headers=admin).json()["shadow"] is False


# --- the worker and the read side ------------------------------------------------------


def test_shadow_rows_are_written_and_change_nothing_users_see(
    client: TestClient,
    settings: Settings,
    admin: dict[str, str],
    radiographer: dict[str, str],
    candidate: int,
) -> None:
    scanner = auth(new_key(settings, "scanner"))
    set_threshold(settings, 1.01)  # the active version flags nothing, the candidate all:
    _set_version_threshold(settings, candidate, 0.0)  # a leaked shadow row changes the label
    sid = _upload(client, scanner, "1.2.826.0.1.3680043.8.498.71", n=3)
    assert analyse(settings, sid) == "done"
    before = _user_view(client, settings, radiographer, sid)
    assert before[0]["verdict"]["label"] == "clean"

    client.post(f"/api/v1/models/{candidate}/shadow", headers=admin)
    assert analyse(settings, sid) == "already done"  # a redelivery: the shadow catches up

    shadow_slices = _rows(settings, InstanceVerdict, shadow=True)
    shadow_series = _rows(settings, SeriesVerdict, shadow=True)
    assert len(shadow_slices) == 3 and {v.model_version_id for v in shadow_slices} == {candidate}
    assert [(v.series_id, v.model_version_id, v.label) for v in shadow_series] == [
        (sid, candidate, 1)
    ]
    assert len(_rows(settings, SeriesVerdict, shadow=False)) == 1
    assert _user_view(client, settings, radiographer, sid) == before
    assert analyse(settings, sid) == "already done"
    assert len(_rows(settings, InstanceVerdict, shadow=True)) == 3  # idempotent


def test_a_new_series_is_scored_by_both_and_the_event_carries_the_active_verdict(
    client: TestClient, settings: Settings, admin: dict[str, str], candidate: int
) -> None:
    scanner = auth(new_key(settings, "scanner"))
    client.post(f"/api/v1/models/{candidate}/shadow", headers=admin)
    sid = _upload(client, scanner, "1.2.826.0.1.3680043.8.498.72")
    assert analyse(settings, sid) == "done"
    (shadow_verdict,) = _rows(settings, SeriesVerdict, shadow=True)
    (verdict,) = _rows(settings, SeriesVerdict, shadow=False)
    assert shadow_verdict.model_version_id == candidate != verdict.model_version_id
    event = series_event(settings, sid)
    assert event is not None
    assert event["model_version"]["id"] == verdict.model_version_id
    assert event["probability"] == verdict.probability


def test_the_verdict_callback_runs_before_the_shadow_scores(
    client: TestClient, settings: Settings, admin: dict[str, str], candidate: int
) -> None:
    """The task queues the webhook in ``on_verdict``: it must not wait for the shadow."""
    scanner = auth(new_key(settings, "scanner"))
    client.post(f"/api/v1/models/{candidate}/shadow", headers=admin)
    sid = _upload(client, scanner, "1.2.826.0.1.3680043.8.498.73")
    seen: list[tuple[int, int]] = []

    def on_verdict() -> None:
        seen.append(
            (
                len(_rows(settings, SeriesVerdict, shadow=False)),
                len(_rows(settings, SeriesVerdict, shadow=True)),
            )
        )

    assert analyse(settings, sid, on_verdict=on_verdict) == "done"
    assert seen == [(1, 0)]  # the verdict committed, the shadow not yet run
    assert len(_rows(settings, SeriesVerdict, shadow=True)) == 1  # and then it ran
    assert analyse(settings, sid, on_verdict=on_verdict) == "already done"
    assert len(seen) == 1  # nothing new: no second event


def test_a_broken_shadow_checkpoint_does_not_fail_the_series(
    client: TestClient, settings: Settings, admin: dict[str, str], candidate: int
) -> None:
    scanner = auth(new_key(settings, "scanner"))
    client.post(f"/api/v1/models/{candidate}/shadow", headers=admin)
    path = Path(client.get(f"/api/v1/models/{candidate}", headers=admin).json()["checkpoint_path"])
    path.write_bytes(b"not a checkpoint")
    inference._shadow_loaded.clear()  # a predictor an earlier test loaded for this version id
    sid = _upload(client, scanner, "1.2.826.0.1.3680043.8.498.73")
    assert analyse(settings, sid) == "done"
    assert inference.shadow(settings, sid) == "shadow failed"
    body = client.get(f"/api/v1/series/{sid}", headers=scanner).json()
    assert body["status"] == "done" and body["error"] is None and body["verdict"] is not None
    assert _rows(settings, InstanceVerdict, shadow=True) == []
    assert _rows(settings, SeriesVerdict, shadow=True) == []


# --- the report ------------------------------------------------------------------------


def test_the_shadow_report_matches_a_hand_computation(
    client: TestClient, settings: Settings, admin: dict[str, str], candidate: int
) -> None:
    scanner = auth(new_key(settings, "scanner"))
    set_threshold(settings, 0.0)  # the active version: artifact, every series
    client.post(f"/api/v1/models/{candidate}/shadow", headers=admin)
    ids = []
    for n, shadow_threshold in enumerate((1.01, 1.01, 0.0)):  # shadow: clean, clean, artifact
        _set_version_threshold(settings, candidate, shadow_threshold)
        ids.append(_upload(client, scanner, f"1.2.826.0.1.3680043.8.498.8{n}"))
        assert analyse(settings, ids[-1]) == "done"

    active = {v.series_id: v for v in _rows(settings, SeriesVerdict, shadow=False)}
    shadow = {v.series_id: v for v in _rows(settings, SeriesVerdict, shadow=True)}
    assert sorted(active) == sorted(shadow) == sorted(ids)
    agree = sum(active[i].label == shadow[i].label for i in ids)
    diff = sum(abs(active[i].probability - shadow[i].probability) for i in ids) / len(ids)

    report = client.get(f"/api/v1/models/{candidate}/shadow-report", headers=admin).json()
    assert report["series"] == 3 and report["in_shadow"] is True
    assert report["agree"] == agree == 1 and report["agreement"] == pytest.approx(1 / 3)
    assert report["active_labels"] == {"artifact": 3, "clean": 0}
    assert report["shadow_labels"] == {"artifact": 1, "clean": 2}
    assert report["mean_abs_probability_diff"] == pytest.approx(diff)
    assert report["thresholds"] == {"active": [0.0], "shadow": [0.0, 1.01]}
    assert report["rules"] == [str(settings.rule)]
    assert [p["series_id"] for p in report["items"]] == sorted(ids, reverse=True)
    first = report["items"][0]
    assert first == {
        "series_id": ids[2],
        "active_version_id": active[ids[2]].model_version_id,
        "active_label": "artifact",
        "active_probability": active[ids[2]].probability,
        "shadow_label": "artifact",
        "shadow_probability": shadow[ids[2]].probability,
        "agree": True,
    }


def test_the_shadow_report_pages_by_series_id(
    client: TestClient, settings: Settings, admin: dict[str, str], candidate: int
) -> None:
    scanner = auth(new_key(settings, "scanner"))
    client.post(f"/api/v1/models/{candidate}/shadow", headers=admin)
    ids = [_upload(client, scanner, f"1.2.826.0.1.3680043.8.498.9{n}") for n in range(3)]
    for sid in ids:
        analyse(settings, sid)
    url = f"/api/v1/models/{candidate}/shadow-report"
    page = client.get(url, params={"limit": 2}, headers=admin).json()
    assert [p["series_id"] for p in page["items"]] == [ids[2], ids[1]]
    assert page["next_cursor"] == ids[1] and page["series"] == 3
    rest = client.get(url, params={"limit": 2, "cursor": ids[1]}, headers=admin).json()
    assert [p["series_id"] for p in rest["items"]] == [ids[0]] and rest["next_cursor"] is None


def test_a_version_never_in_shadow_has_an_empty_report(
    client: TestClient, admin: dict[str, str], candidate: int
) -> None:
    report = client.get(f"/api/v1/models/{candidate}/shadow-report", headers=admin).json()
    assert report["series"] == 0 and report["agreement"] is None and report["items"] == []
    assert report["mean_abs_probability_diff"] is None
    assert report["shadow_labels"] == {"artifact": 0, "clean": 0}
