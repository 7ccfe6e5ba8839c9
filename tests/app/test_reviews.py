"""Reviews through the API, and their export as training labels that round-trip through
``training.data.labelled.load_labelled_dataset`` (the loader ``amaqc train`` uses)."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.worker.inference import analyse
from tests.app.conftest import set_threshold
from tests.utils.service import scored_series, series_files
from training.data.labelled import load_labelled_dataset


@pytest.fixture
def flagging(settings: Settings) -> Settings:
    set_threshold(settings, 0.0)  # every slice flagged, whatever the untrained model says
    return settings


def test_an_override_is_stored_with_the_reviewer_and_the_verdict_it_judged(
    client: TestClient, flagging: Settings, scanner: dict[str, str], radiographer: dict[str, str]
) -> None:
    series_id, ids = scored_series(client, flagging, scanner, "1.2.9.1", n=3)
    body = {"label": "clean", "slices": {str(ids[0]): "clean"}, "comment": "flow, not motion"}
    r = client.post(f"/api/v1/series/{series_id}/reviews", json=body, headers=radiographer)
    assert r.status_code == 201, r.text
    review = r.json()
    assert review["decision"] == "overridden" and review["model_label"] == "artifact"
    assert review["reviewer"] == "test" and review["slices"] == {str(ids[0]): "clean"}
    listed = client.get(f"/api/v1/series/{series_id}/reviews", headers=radiographer).json()
    assert [x["id"] for x in listed["items"]] == [review["id"]]


def test_a_confirmation_is_marked_confirmed(
    client: TestClient, flagging: Settings, scanner: dict[str, str], radiographer: dict[str, str]
) -> None:
    series_id, _ = scored_series(client, flagging, scanner, "1.2.9.2", n=3)
    r = client.post(
        f"/api/v1/series/{series_id}/reviews", json={"label": "artifact"}, headers=radiographer
    )
    assert r.status_code == 201 and r.json()["decision"] == "confirmed"


def test_a_scanner_key_may_not_review(
    client: TestClient, flagging: Settings, scanner: dict[str, str]
) -> None:
    series_id, _ = scored_series(client, flagging, scanner, "1.2.9.3", n=3)
    r = client.post(f"/api/v1/series/{series_id}/reviews", json={"label": "clean"}, headers=scanner)
    assert r.status_code == 403 and "radiographer or admin" in r.json()["detail"]


def test_a_series_without_a_verdict_cannot_be_reviewed(
    client: TestClient, scanner: dict[str, str], radiographer: dict[str, str]
) -> None:
    series_id = client.post("/api/v1/series", files=series_files(1), headers=scanner).json()[
        "series_id"
    ]
    r = client.post(
        f"/api/v1/series/{series_id}/reviews", json={"label": "clean"}, headers=radiographer
    )
    assert r.status_code == 409 and "no verdict yet (status queued)" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"label": "clean", "slices": {"999": "clean"}}, "instance(s) 999 are not in series"),
        ({"label": "clean", "slices": {"FIRST": "artifact"}}, "cannot have a slice labelled"),
        ({"label": "maybe"}, "label: Input should be 'artifact' or 'clean'"),
        ({"label": "clean", "extra": 1}, "extra: Extra inputs are not permitted"),
    ],
)
def test_an_inconsistent_review_is_422_naming_the_problem(
    client: TestClient,
    flagging: Settings,
    scanner: dict[str, str],
    radiographer: dict[str, str],
    body: dict,
    problem: str,
) -> None:
    series_id, ids = scored_series(client, flagging, scanner, "1.2.9.4", n=1)
    if "slices" in body:
        body = {
            **body,
            "slices": {k.replace("FIRST", str(ids[0])): v for k, v in body["slices"].items()},
        }
    r = client.post(f"/api/v1/series/{series_id}/reviews", json=body, headers=radiographer)
    assert r.status_code == 422 and problem in r.json()["detail"], r.text


def test_export_needs_a_radiographer_or_admin_key(
    client: TestClient, scanner: dict[str, str]
) -> None:
    assert client.get("/api/v1/reviews/export", headers=scanner).status_code == 403


def _read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_export_round_trips_through_the_training_loader(
    client: TestClient,
    flagging: Settings,
    scanner: dict[str, str],
    radiographer: dict[str, str],
    tmp_path: Path,
) -> None:
    clean_id, clean_slices = scored_series(client, flagging, scanner, "1.2.9.10", n=2)
    art_id, art_slices = scored_series(client, flagging, scanner, "1.2.9.11", n=3)
    unreviewed_id, _ = scored_series(client, flagging, scanner, "1.2.9.12", n=1)
    post = "/api/v1/series/{}/reviews"
    # the first review of a series is superseded by the second
    client.post(post.format(clean_id), json={"label": "artifact"}, headers=radiographer)
    comment = 'motion? no: "pulsation", ; flow\nartifact'
    client.post(
        post.format(clean_id), json={"label": "clean", "comment": comment}, headers=radiographer
    )
    slices = {str(art_slices[0]): "artifact", str(art_slices[2]): "clean"}
    client.post(
        post.format(art_id), json={"label": "artifact", "slices": slices}, headers=radiographer
    )

    text = client.get("/api/v1/reviews/export?format=csv", headers=radiographer).text
    rows = _read_csv(text)
    expected = {clean_slices[0]: "clean", clean_slices[1]: "clean"}
    expected |= {art_slices[0]: "artifact", art_slices[2]: "clean"}  # slice 1: unknown
    assert {int(r["instance_id"]): r["label"] for r in rows} == expected
    assert all(int(r["series_id"]) != unreviewed_id for r in rows)
    clean_row = next(r for r in rows if int(r["instance_id"]) == clean_slices[0])
    assert clean_row["label_source"] == "series" and clean_row["model_label"] == "artifact"
    assert clean_row["comment"] == 'motion? no: "pulsation", ; flow artifact'

    r = client.get("/api/v1/reviews/export?format=zip", headers=radiographer)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    root = tmp_path / "dataset"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert zf.read("labels.csv").decode() == text
        zf.extractall(root)
    dataset = load_labelled_dataset(root, verify=True)
    assert dataset.layout == "labels-file"
    assert not dataset.missing and not dataset.unlabelled and not dataset.unreadable
    by_file = {row["file"]: row["label"] for row in rows}
    got = {item.path.relative_to(root).as_posix(): item.label for item in dataset.items}
    assert got == {f: int(label == "artifact") for f, label in by_file.items()}
    # slices of one study stay together when the training split is drawn
    groups = {item.group for item in dataset.items}
    assert all(g.startswith("study-") for g in groups) and len(groups) == 2


def test_frames_of_a_multi_frame_file_are_exported_one_file_each(
    client: TestClient,
    flagging: Settings,
    scanner: dict[str, str],
    radiographer: dict[str, str],
    tmp_path: Path,
) -> None:
    import nibabel as nib

    from tests.utils.images import phantom

    volume = np.stack([phantom(64, seed=s) for s in range(3)], axis=-1).astype(np.float32)
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), path)
    files = [("files", ("vol.nii.gz", path.read_bytes(), "application/gzip"))]
    r = client.post("/api/v1/series", files=files, headers=scanner)
    assert r.status_code == 202, r.text
    series_id = r.json()["series_id"]
    assert analyse(flagging, series_id) == "done"
    client.post(
        f"/api/v1/series/{series_id}/reviews", json={"label": "clean"}, headers=radiographer
    )
    r = client.get("/api/v1/reviews/export?format=zip", headers=radiographer)
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        names = sorted(n for n in zf.namelist() if n != "labels.csv")
        zf.extractall(tmp_path / "ds")
    assert len(names) == 3 and all(n.endswith(".npy") for n in names)
    for name in names:  # each file is its frame's pixels, as the viewer gets them
        instance_id = name.rsplit("instance-", 1)[1].removesuffix(".npy")
        raw = client.get(f"/api/v1/instances/{instance_id}/pixels", headers=radiographer)
        rows, cols = map(int, raw.headers["x-amaqc-shape"].split(","))
        served = np.frombuffer(raw.content, "<f4").reshape(rows, cols)
        np.testing.assert_array_equal(np.load(tmp_path / "ds" / name), served)
    dataset = load_labelled_dataset(tmp_path / "ds")
    assert len(dataset.items) == 3 and {i.label for i in dataset.items} == {0}
