"""Who set a slice label: the reader, or the model's call the reader accepted. The export and
the retraining-from-reviews path say so, and use a model-accepted label only when the reader
confirmed it (the model must not learn its own unchecked calls)."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db.session import session_scope
from app.retrain.sources import reviewed_slices, unconfirmed_model_labels
from tests.app.conftest import auth, new_key, set_threshold
from tests.utils.service import scored_series


@pytest.fixture
def flagging(settings: Settings) -> Settings:
    set_threshold(settings, 0.0)  # the model calls every slice artifact
    return settings


def _export(client: TestClient, headers: dict[str, str]) -> dict[int, dict[str, str]]:
    text = client.get("/api/v1/reviews/export?format=csv", headers=headers).text
    return {int(r["instance_id"]): r for r in csv.DictReader(io.StringIO(text))}


def _review(
    client: TestClient, series_id: int, headers: dict[str, str], **body: object
) -> dict[str, object]:
    r = client.post(f"/api/v1/series/{series_id}/reviews", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_unconfirmed_model_labels_are_stored_but_never_training_data(
    client: TestClient, flagging: Settings, scanner: dict[str, str], radiographer: dict[str, str]
) -> None:
    series_id, ids = scored_series(client, flagging, scanner, "1.2.22.10", n=3)
    review = _review(
        client,
        series_id,
        radiographer,
        label="artifact",
        slices={str(ids[0]): "artifact", str(ids[1]): "artifact", str(ids[2]): "artifact"},
        slice_sources={str(ids[0]): "model", str(ids[1]): "model"},
    )
    assert review["slice_sources"] == {
        str(ids[0]): "model",
        str(ids[1]): "model",
        str(ids[2]): "reader",
    }
    assert review["model_slices_confirmed"] is False

    rows = _export(client, radiographer)
    assert set(rows) == {ids[2]}  # only the reader's own slice label
    assert rows[ids[2]]["slice_label_by"] == "reader"
    with session_scope(flagging.database_url) as session:
        assert [(s.instance_id, s.label_by) for s in reviewed_slices(session)] == [
            (ids[2], "reader")
        ]
        assert unconfirmed_model_labels(session) == 2

    # a retraining job from the reviews says how many it left out
    admin = auth(new_key(flagging, "admin"))
    tiny = {"epochs": 1, "samples_per_epoch": 20, "batch_size": 10, "patch": 64, "size": 64}
    r = client.post(
        "/api/v1/training-jobs", json={"source": {"kind": "reviews"}, **tiny}, headers=admin
    )
    assert r.status_code == 202, r.text
    source = client.get(r.json()["status_url"], headers=admin).json()["source"]
    assert source == {
        "kind": "reviews",
        "reviewed_slices": 1,
        "unconfirmed_model_labels_left_out": 2,
    }


def test_confirmed_model_labels_are_training_data_marked_as_the_models(
    client: TestClient, flagging: Settings, scanner: dict[str, str], radiographer: dict[str, str]
) -> None:
    series_id, ids = scored_series(client, flagging, scanner, "1.2.22.11", n=2)
    _review(
        client,
        series_id,
        radiographer,
        label="artifact",
        slices={str(ids[0]): "artifact", str(ids[1]): "artifact"},
        slice_sources={str(ids[0]): "model", str(ids[1]): "reader"},
        model_slices_confirmed=True,
    )
    rows = _export(client, radiographer)
    assert {i: r["slice_label_by"] for i, r in rows.items()} == {ids[0]: "model", ids[1]: "reader"}
    assert {r["label_source"] for r in rows.values()} == {"slice"}
    with session_scope(flagging.database_url) as session:
        assert {s.instance_id: s.label_by for s in reviewed_slices(session)} == {
            ids[0]: "model",
            ids[1]: "reader",
        }
        assert unconfirmed_model_labels(session) == 0


def test_a_clean_series_label_is_marked_as_following_from_the_series(
    client: TestClient, flagging: Settings, scanner: dict[str, str], radiographer: dict[str, str]
) -> None:
    series_id, ids = scored_series(client, flagging, scanner, "1.2.22.12", n=2)
    _review(client, series_id, radiographer, label="clean")
    rows = _export(client, radiographer)
    assert set(rows) == set(ids)
    assert {r["label_source"] for r in rows.values()} == {"series"}
    assert {r["slice_label_by"] for r in rows.values()} == {""}


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            {"label": "clean", "slices": {"FIRST": "clean"}, "slice_sources": {"FIRST": "model"}},
            "marked as accepted from the model but the model called them otherwise",
        ),
        (
            {"label": "artifact", "slice_sources": {"FIRST": "model"}},
            "slice_sources: instance(s) FIRST have no slice label",
        ),
        (
            {
                "label": "artifact",
                "slices": {"FIRST": "artifact"},
                "slice_sources": {"FIRST": "ai"},
            },
            "Input should be 'reader' or 'model'",
        ),
    ],
)
def test_a_wrong_provenance_is_422_naming_the_problem(
    client: TestClient,
    flagging: Settings,
    scanner: dict[str, str],
    radiographer: dict[str, str],
    body: dict[str, object],
    problem: str,
) -> None:
    series_id, ids = scored_series(client, flagging, scanner, "1.2.22.13", n=1)

    def fill(value: object) -> object:
        if isinstance(value, dict):
            return {k.replace("FIRST", str(ids[0])): v for k, v in value.items()}
        return value

    r = client.post(
        f"/api/v1/series/{series_id}/reviews",
        json={k: fill(v) for k, v in body.items()},
        headers=radiographer,
    )
    assert r.status_code == 422, r.text
    assert problem.replace("FIRST", str(ids[0])) in str(r.json()["detail"]), r.text
