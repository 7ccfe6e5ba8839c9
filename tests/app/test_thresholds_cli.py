"""``amaqc thresholds set / list / remove`` and ``amaqc calibrate --protocol``: on the
service's database (SQLite), with the real model's verdicts and real reviews."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import app as cli
from app.config import Settings, get_settings
from app.db import repo, thresholds
from app.db.session import session_scope
from app.worker.inference import analyse
from tests.app.conftest import auth, new_key
from tests.utils.protocols import header_dicom, upload


@pytest.fixture
def amaqc(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """A runner whose ``amaqc`` works on ``settings``' database."""
    monkeypatch.setenv("AMAQC_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("AMAQC_CHECKPOINT", str(settings.checkpoint))
    yield CliRunner()
    get_settings.cache_clear()


def test_thresholds_set_list_and_remove(amaqc: CliRunner, settings: Settings) -> None:
    done = amaqc.invoke(cli, ["thresholds", "set", "0.3", "--protocol", "T1_MPRAGE"])
    assert done.exit_code == 0, done.output
    assert "scanner any, protocol t1 mprage -> 0.3" in done.output
    done = amaqc.invoke(
        cli, ["thresholds", "set", "0.6", "--protocol", "t1 mprage", "--scanner", "MR-EAST-1"]
    )
    assert done.exit_code == 0, done.output
    listed = amaqc.invoke(cli, ["thresholds", "list"])
    assert listed.exit_code == 0 and "2 threshold(s)" in listed.output
    assert "mr east 1" in listed.output and "0.6" in listed.output
    with session_scope(settings.database_url) as session:
        rows = {(t.scanner, t.protocol): t for t in thresholds.list_thresholds(session)}
        assert (
            rows[("", "t1 mprage")].value == 0.3 and rows[("mr east 1", "t1 mprage")].value == 0.6
        )
        first = rows[("", "t1 mprage")].id
    assert amaqc.invoke(cli, ["thresholds", "remove", str(first)]).exit_code == 0
    gone = amaqc.invoke(cli, ["thresholds", "remove", str(first)])
    assert gone.exit_code == 2 and f"no threshold {first}" in gone.output
    with session_scope(settings.database_url) as session:
        assert [t.value for t in thresholds.list_thresholds(session)] == [0.6]


def test_thresholds_list_names_the_models_threshold_per_family(
    amaqc: CliRunner, settings: Settings
) -> None:
    plain = amaqc.invoke(cli, ["thresholds", "list"])
    assert plain.exit_code == 0 and "acquisition family" not in plain.output
    with session_scope(settings.database_url) as session:
        version = repo.active_model_version(session)
        assert version is not None
        version.acquisition_thresholds = {"epi": 0.921, "non_epi": 0.836}
    listed = amaqc.invoke(cli, ["thresholds", "list"], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    assert "known acquisition family: epi 0.921, non_epi 0.836" in " ".join(listed.output.split())


def test_thresholds_set_refuses_a_row_for_everything(amaqc: CliRunner) -> None:
    done = amaqc.invoke(cli, ["thresholds", "set", "0.3"])
    assert done.exit_code == 2 and "neither" in done.output


def _reviewed(
    client: TestClient, settings: Settings, protocol: str, seeds: range, headers: dict[str, str]
) -> dict[int, float]:
    """Series of one slice each (the phantoms of ``seeds``), scored: their probabilities."""
    out = {}
    for seed in seeds:
        series_id = upload(
            client, headers, header_dicom(f"1.2.3.5.{seed}", protocol=protocol, seed=seed)
        )
        assert analyse(settings, series_id) == "done"
        body = client.get(f"/api/v1/series/{series_id}", headers=headers).json()
        out[series_id] = float(body["instances"][0]["probability"])
    return out


def _review(client: TestClient, headers: dict[str, str], series_id: int, artifact: bool) -> None:
    instance = client.get(f"/api/v1/series/{series_id}", headers=headers).json()["instances"][0]
    label = "artifact" if artifact else "clean"
    body = {"label": label, "slices": {str(instance["id"]): label}}
    r = client.post(f"/api/v1/series/{series_id}/reviews", json=body, headers=headers)
    assert r.status_code in (200, 201), r.text


def test_calibrate_protocol_stores_the_threshold_its_reviews_give(
    amaqc: CliRunner, client: TestClient, settings: Settings
) -> None:
    reader = auth(new_key(settings, "admin", "Ann"))  # uploads and reviews
    t1 = _reviewed(client, settings, "T1_MPRAGE", range(10, 18), reader)
    flair = _reviewed(client, settings, "FLAIR", range(30, 34), reader)
    ranked = sorted(t1, key=t1.__getitem__)
    assert len({t1[i] for i in ranked}) == len(ranked), "the tiny model gave ties: pick seeds"
    for series_id in ranked:  # the three highest are the artifacts: a clean cut exists
        _review(client, reader, series_id, artifact=series_id in ranked[-3:])
    for series_id in flair:  # another protocol, labelled against the t1 cut: never used
        _review(client, reader, series_id, artifact=flair[series_id] < t1[ranked[-3]])

    done = amaqc.invoke(
        cli, ["calibrate", "--protocol", "t1 mprage", "--max-false-alarm-rate", "0"]
    )
    assert done.exit_code == 0, done.output
    assert "5 clean + 3 artifact reviewed slices of 8 series" in done.output
    with session_scope(settings.database_url) as session:
        (row,) = thresholds.list_thresholds(session)
        version = repo.active_model_version(session)
        assert version is not None
        assert (row.scanner, row.protocol, row.origin) == ("", "t1 mprage", "calibrate")
        assert row.value == pytest.approx(t1[ranked[-3]])  # the lowest artifact: F1 = 1
        assert row.details["model_version"] == version.name
        assert row.details["confusion"] == {"tn": 5, "fp": 0, "fn": 0, "tp": 3}


def test_calibrate_protocol_without_both_labels_says_what_is_missing(
    amaqc: CliRunner, client: TestClient, settings: Settings
) -> None:
    reader = auth(new_key(settings, "admin", "Ann"))  # uploads and reviews
    for series_id in _reviewed(client, settings, "T1_MPRAGE", range(10, 12), reader):
        _review(client, reader, series_id, artifact=False)
    done = amaqc.invoke(cli, ["calibrate", "--protocol", "t1 mprage", "--scanner", "MR-EAST-1"])
    assert done.exit_code == 2
    assert "2 clean and 0 artifact" in done.output and "'mr east 1'" in done.output
    with session_scope(settings.database_url) as session:
        assert thresholds.list_thresholds(session) == []


def test_calibrate_without_data_or_protocol_says_what_to_give(amaqc: CliRunner) -> None:
    done = amaqc.invoke(cli, ["calibrate"])
    assert done.exit_code == 2 and "--protocol" in done.output


def test_calibrate_protocol_from_clean_reviews_only_keeps_the_false_alarm_bound(
    amaqc: CliRunner,
    client: TestClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.retrain import thresholds as rule

    monkeypatch.setattr(rule, "MIN_CLEAN_ONLY", 10)  # 40 in service: fewer uploads here
    reader = auth(new_key(settings, "admin", "Ann"))
    t1 = _reviewed(client, settings, "T1_MPRAGE", range(40, 50), reader)
    for series_id in t1:
        _review(client, reader, series_id, artifact=False)
    done = amaqc.invoke(
        cli, ["calibrate", "--protocol", "t1 mprage", "--max-false-alarm-rate", "0.1"]
    )
    assert done.exit_code == 0, done.output
    assert "10 clean + 0 artifact" in done.output and "clean-only" in done.output
    ranked = sorted(t1.values(), reverse=True)
    assert ranked[0] > ranked[1], "the tiny model gave ties: pick seeds"
    with session_scope(settings.database_url) as session:
        (row,) = thresholds.list_thresholds(session)
        # 10 % of 10 clean slices: one may be flagged, the second highest may not
        assert ranked[1] < row.value <= ranked[0]
        assert row.details["confusion"] == {"tn": 9, "fp": 1, "fn": 0, "tp": 0}
        assert row.details["rule"].startswith("clean-only")


def test_calibrate_protocol_from_too_few_clean_reviews_says_how_many_it_needs(
    amaqc: CliRunner, client: TestClient, settings: Settings
) -> None:
    reader = auth(new_key(settings, "admin", "Ann"))
    for series_id in _reviewed(client, settings, "T1_MPRAGE", range(60, 63), reader):
        _review(client, reader, series_id, artifact=False)
    done = amaqc.invoke(cli, ["calibrate", "--protocol", "t1 mprage"])
    assert done.exit_code == 2
    assert "3 clean and 0 artifact" in done.output and "at least 40" in done.output
    with session_scope(settings.database_url) as session:
        assert thresholds.list_thresholds(session) == []
