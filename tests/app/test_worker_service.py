"""The inference service in-process (real model, real SQLite): verdicts, idempotency, failures."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from app.config import SeriesRule, Settings
from app.db import repo
from app.db.models import InstanceVerdict, Series, SeriesVerdict
from app.db.session import get_engine, session_scope
from app.worker.inference import analyse, series_verdict_values
from tests.app.conftest import app_client, auth, backend_settings, new_key
from tests.utils.service import series_files
from tests.utils.sql import count_starting, statements_sent


def _upload(client: TestClient, headers: dict[str, str], n: int = 2) -> int:
    return int(
        client.post("/api/v1/series", files=series_files(n), headers=headers).json()["series_id"]
    )


def _count(settings: Settings, model: type) -> int:
    with session_scope(settings.database_url) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_analyse_writes_instance_and_series_verdicts(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    series_id = _upload(client, scanner)
    assert analyse(settings, series_id) == "done"
    body = client.get(f"/api/v1/series/{series_id}", headers=scanner).json()
    assert body["status"] == "done" and body["verdict"]["label"] in ("artifact", "clean")
    assert all(i["probability"] is not None for i in body["instances"])
    assert body["model_version"]["arch"] == "resnet18"


def test_a_redelivered_job_writes_no_second_verdict(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    series_id = _upload(client, scanner)
    analyse(settings, series_id)
    assert analyse(settings, series_id) == "already done"
    assert _count(settings, InstanceVerdict) == 2 and _count(settings, SeriesVerdict) == 1


def test_a_slice_arriving_after_the_verdict_updates_it(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    series_id = _upload(client, scanner, n=2)
    assert analyse(settings, series_id) == "done"
    later = series_files(3)[2:]  # a third instance of the same series
    r = client.post("/api/v1/series", files=later, headers=scanner)
    assert r.json()["series_id"] == series_id and r.json()["new_instances"] == 1
    assert analyse(settings, series_id) == "done"
    assert _count(settings, InstanceVerdict) == 3 and _count(settings, SeriesVerdict) == 1
    with session_scope(settings.database_url) as session:
        probabilities = {
            v.instance_id: v.probability for v in session.scalars(select(InstanceVerdict))
        }
        verdict = session.scalars(select(SeriesVerdict)).one()
        expected = series_verdict_values(probabilities, verdict.threshold, settings.rule)
        assert verdict.probability == expected["probability"]
        assert verdict.flagged == expected["flagged"]
        assert session.get(Series, series_id).status == "done"  # type: ignore[union-attr]
    assert analyse(settings, series_id) == "already done"


def test_a_missing_stored_file_fails_the_series_with_a_reason(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    series_id = _upload(client, scanner, n=1)
    for path in settings.storage_dir.rglob("*.dcm"):
        path.unlink()
    assert analyse(settings, series_id) == "failed"
    with session_scope(settings.database_url) as session:
        series = session.get(Series, series_id)
        assert series is not None and series.status == "failed"
        assert "stored file unusable" in (series.error or "")


def test_a_series_slice_verdicts_reach_postgresql_in_one_insert(
    tmp_path: Path, checkpoint: Path
) -> None:
    with backend_settings("postgresql", tmp_path / "data", checkpoint) as settings:
        with app_client(settings) as client:
            series_id = _upload(client, auth(new_key(settings, "scanner")), n=4)
        with statements_sent(get_engine(settings.database_url)) as statements:
            assert analyse(settings, series_id) == "done"
    assert count_starting(statements, "INSERT INTO instance_verdict ") == 1  # not one per slice
    assert count_starting(statements, "INSERT INTO series_verdict ") == 1


def test_heatmap_is_a_png_once_scored(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    series_id = _upload(client, scanner, n=1)
    instance = client.get(f"/api/v1/series/{series_id}", headers=scanner).json()["instances"][0]
    assert client.get(instance["heatmap_url"], headers=scanner).status_code == 404
    analyse(settings, series_id)
    r = client.get(instance["heatmap_url"], headers=scanner)
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")


def test_count_rule_needs_k_flagged_slices() -> None:
    values = series_verdict_values({1: 0.9, 2: 0.8, 3: 0.1}, 0.5, SeriesRule("count:3"))
    assert values["label"] == 0 and values["flagged"] == [1, 2] and values["probability"] == 0.1


def test_fraction_rule_flags_when_enough_slices_are_artifacts() -> None:
    values = series_verdict_values({1: 0.9, 2: 0.8, 3: 0.1}, 0.5, SeriesRule("fraction:0.5"))
    assert values["label"] == 1 and values["probability"] == 0.8


def test_no_patient_identifier_is_logged(
    client: TestClient,
    settings: Settings,
    scanner: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    series_id = _upload(client, scanner)
    analyse(settings, series_id)
    assert caplog.records, "expected some log records"
    assert "Doe^Jane" not in caplog.text and "PID-SECRET-42" not in caplog.text


def test_each_slice_verdict_says_what_ran_the_network(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    from app.worker.inference import predictor_for, ran_on

    series_id = _upload(client, scanner, n=2)
    assert analyse(settings, series_id) == "done"
    with session_scope(settings.database_url) as session:
        version = repo.active_model_version(session)
        assert version is not None
        expected = ran_on(predictor_for(version, settings=settings))
    assert expected in ("onnxruntime (cpu)", "torch (cpu)", "torch (cuda)")
    body = client.get(f"/api/v1/series/{series_id}", headers=scanner).json()
    assert [i["inference"] for i in body["instances"]] == [expected, expected]


def test_slice_verdicts_and_the_series_verdict_are_one_commit(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    """Issue 18: a scored series costs the worker two commits that write (processing, then
    every verdict), not three: the slice verdicts and the series verdict go in together."""
    series_id = _upload(client, scanner, n=3)
    engine = get_engine(settings.database_url)
    log: list[str] = []  # every statement and every commit, in order

    def statement(_conn: object, _cursor: object, sql: str, *_: object) -> None:
        log.append(sql.lstrip().upper())

    def commit(_conn: object) -> None:
        log.append("COMMIT")

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        assert analyse(settings, series_id) == "done"
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)
    writes = [i for i, sql in enumerate(log) if sql.startswith(("INSERT", "UPDATE"))]
    commits = {log.index("COMMIT", i) for i in writes}  # the commit each write went out with
    assert len(commits) == 2
    slices = next(i for i, sql in enumerate(log) if sql.startswith("INSERT INTO INSTANCE_VERDICT"))
    series = next(i for i, sql in enumerate(log) if sql.startswith("INSERT INTO SERIES_VERDICT"))
    assert log.index("COMMIT", slices) == log.index("COMMIT", series)


def test_a_failing_series_verdict_leaves_no_slice_verdicts(
    client: TestClient, settings: Settings, scanner: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No half-written verdict: when the series verdict cannot be written, the slice verdicts
    of the same job are rolled back with it, and the redelivered job writes both."""
    series_id = _upload(client, scanner, n=2)

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("database went away")

    monkeypatch.setattr(repo, "put_series_verdict", broken)
    with pytest.raises(RuntimeError):
        analyse(settings, series_id)
    assert _count(settings, InstanceVerdict) == 0 and _count(settings, SeriesVerdict) == 0
    monkeypatch.undo()
    assert analyse(settings, series_id) == "done"
    assert _count(settings, InstanceVerdict) == 2 and _count(settings, SeriesVerdict) == 1


def test_the_worker_reads_back_the_pixels_without_their_metadata(
    client: TestClient, settings: Settings, scanner: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18: the worker wants the pixels of files the API read whole; the metadata's
    allow-list lookups (a sixth of a read) are skipped, the pixels are the same."""
    import training.data.dicom_reader
    from app.worker.inference import load_pixels
    from training.data import read_slices

    series_id = _upload(client, scanner, n=3)
    with session_scope(settings.database_url) as session:
        instances = repo.series_instances(session, series_id)
    expected = [
        read_slices(settings.storage_dir / i.storage_path)[i.frame_index].pixels for i in instances
    ]

    def refuse(*_: object) -> None:
        raise AssertionError("metadata read")

    monkeypatch.setattr(training.data.dicom_reader, "dicom_meta", refuse)
    pixels = load_pixels(settings, instances)
    assert len(pixels) == 3
    for got, want in zip(pixels, expected, strict=True):
        np.testing.assert_array_equal(got, want)
