"""The model's decision threshold per acquisition family (``model/acquisition.py``): registration
copies it from the checkpoint, the worker applies it where no site row does (real model, real
SQLite), the version in shadow mode its own, and the API and the pages name it."""

from __future__ import annotations

import html
import json
import re
import struct
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import Settings
from app.db import repo, thresholds
from app.db.models import Instance, InstanceVerdict, ModelVersion, Series, SeriesVerdict
from app.db.session import session_scope
from app.migrate import upgrade
from app.model_versions import (
    CheckpointUnusable,
    register_checkpoint,
    served_acquisition_thresholds,
)
from app.retrain.registry import register_trained
from app.web.verdict_words import threshold_for
from app.worker.inference import analyse
from tests.app.conftest import app_client, auth, new_key, set_threshold, sign_in
from tests.utils.protocols import header_dicom, upload
from tests.utils.service import SERVICE_FUSION, tiny_checkpoint
from training.fit.fusion import attach_fusion

#: 0.0 flags every echo-planar slice, 1.0 (almost surely) none of the others; a series of
#: unknown family gets 0.7
BY_FAMILY = {"epi": 0.0, "non_epi": 1.0}
FUSION = replace(SERVICE_FUSION, acquisition_thresholds=BY_FAMILY)


@pytest.fixture
def fused(tmp_path: Path) -> Path:
    """A checkpoint whose fused detector carries a threshold per family."""
    plain = tiny_checkpoint(tmp_path / "ckpt" / "tiny.safetensors")
    return attach_fusion(plain, FUSION, tmp_path / "ckpt" / "fused.safetensors")


@pytest.fixture
def family_settings(tmp_path: Path, fused: Path) -> Settings:
    """A migrated SQLite database serving ``fused`` (a folder of its own: beside ``settings``'
    database and store where a test takes both)."""
    from tests.app.conftest import make_settings

    s = make_settings(tmp_path / "family" / "data", fused, max_upload_mb=2)
    upgrade(s.database_url)
    with session_scope(s.database_url) as session:
        register_checkpoint(session, fused)
    return s


def _series_ids(client: TestClient, headers: dict[str, str]) -> dict[str, int]:
    """One slice (the same image) for each family: echo-planar, not, and unknown."""
    return {
        "epi": upload(
            client, headers, header_dicom("1.2.7.1", protocol="ep2d_diff", ScanningSequence="EP")
        ),
        "non_epi": upload(
            client,
            headers,
            header_dicom("1.2.7.2", protocol="t1_mprage", ScanningSequence=["GR", "IR"]),
        ),
        "unknown": upload(client, headers, header_dicom("1.2.7.3", protocol="t1_mprage")),
    }


# --- registration ------------------------------------------------------------------------


def test_registration_copies_the_thresholds_per_family_from_the_checkpoint(
    settings: Settings, fused: Path, tmp_path: Path
) -> None:
    with session_scope(settings.database_url) as session:
        plain = repo.active_model_version(session)
        assert plain is not None and plain.acquisition_thresholds == {}
        version = register_checkpoint(session, fused, activate=False)
        assert (version.threshold, version.acquisition_thresholds) == (0.7, BY_FAMILY)
        trained_path = tmp_path / "trained.safetensors"
        trained_path.write_bytes(fused.read_bytes()[:-1] + b" ")  # other bytes, same header
        trained = register_trained(
            session,
            trained_path,
            name="fine-tuned",
            parent_id=version.id,
            data_summary={},
            validation={},
            roc_path=None,
        )
        assert trained.id != version.id and trained.acquisition_thresholds == BY_FAMILY


def _fake_checkpoint(path: Path, meta: dict[str, Any]) -> Path:
    """A safetensors header holding ``meta`` and no tensors: all registration reads."""
    header = json.dumps({"__metadata__": {"amaqc": json.dumps(meta)}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    return path


@pytest.mark.parametrize(
    ("found", "words"),
    [
        ({"flair": 0.5}, "unknown acquisition family 'flair'"),
        ({"epi": 1.5}, r"the epi threshold must be in \[0, 1\], got 1.5"),
        ({"epi": "high"}, "the epi threshold is not a number: 'high'"),
        ({"epi": True}, "the epi threshold is not a number: True"),
        (["epi", 0.9], "must map a family to a threshold"),
    ],
)
def test_a_malformed_threshold_per_family_is_refused_and_nothing_is_registered(
    settings: Settings, tmp_path: Path, found: Any, words: str
) -> None:
    meta = {"arch": "resnet18", "fusion": {"threshold": 0.7, "acquisition_thresholds": found}}
    with pytest.raises(CheckpointUnusable, match=words):
        served_acquisition_thresholds(meta)
    path = _fake_checkpoint(tmp_path / "bad.safetensors", meta)
    with session_scope(settings.database_url) as session, pytest.raises(CheckpointUnusable):
        register_checkpoint(session, path, activate=False)
    with session_scope(settings.database_url) as session:
        assert session.scalar(select(func.count()).select_from(ModelVersion)) == 1


def test_a_checkpoint_without_thresholds_per_family_gets_none() -> None:
    assert served_acquisition_thresholds({"arch": "resnet18", "threshold": 0.5}) == {}
    assert served_acquisition_thresholds({"fusion": {"threshold": 0.7}}) == {}
    assert served_acquisition_thresholds({"fusion": {"acquisition_thresholds": {}}}) == {}


# --- which threshold applies -------------------------------------------------------------


def test_a_site_row_beats_the_familys_threshold_which_beats_the_models(
    settings: Settings,
) -> None:
    series = Series(series_uid="x", protocol_name="ep2d_bold", acquisition="epi")
    with session_scope(settings.database_url) as session:
        version = repo.active_model_version(session)
        assert version is not None
        version.threshold, version.acquisition_thresholds = 0.6, {"epi": 0.25}
        added = thresholds.set_threshold(
            session, scanner="", protocol="EP2D BOLD", value=0.1, origin="admin", set_by="t"
        )
        seen = [thresholds.applicable(session, series, version)]
        thresholds.remove_threshold(session, added.id)
        seen.append(thresholds.applicable(session, series, version))
        series.acquisition = "non_epi"  # a family the version has no threshold for
        seen.append(thresholds.applicable(session, series, version))
        series.acquisition = None  # unknown
        seen.append(thresholds.applicable(session, series, version))
        version.acquisition_thresholds = None  # a version registered before 0014
        series.acquisition = "epi"
        seen.append(thresholds.applicable(session, series, version))
    assert [(a.source, a.value, a.protocol) for a in seen] == [
        ("protocol", 0.1, "ep2d bold"),
        ("acquisition", 0.25, None),
        ("model", 0.6, None),
        ("model", 0.6, None),
        ("model", 0.6, None),
    ]


# --- the worker --------------------------------------------------------------------------


def test_the_worker_gives_each_family_its_threshold_and_an_unknown_one_the_models(
    family_settings: Settings,
) -> None:
    headers = auth(new_key(family_settings, "scanner"))
    with app_client(family_settings) as client:
        ids = _series_ids(client, headers)
        for series_id in ids.values():
            assert analyse(family_settings, series_id) == "done"
        bodies = {
            family: client.get(f"/api/v1/series/{series_id}", headers=headers).json()
            for family, series_id in ids.items()
        }
        # a site row still wins over the family's threshold
        with session_scope(family_settings.database_url) as session:
            thresholds.set_threshold(
                session, scanner="", protocol="ep2d diff", value=1.0, origin="admin", set_by="t"
            )
        assert analyse(family_settings, ids["epi"]) == "done"
        site = client.get(f"/api/v1/series/{ids['epi']}", headers=headers).json()["verdict"]
    got = {
        family: (b["acquisition"], b["verdict"]["threshold"], b["verdict"]["threshold_source"])
        for family, b in bodies.items()
    }
    assert got == {
        "epi": ("epi", 0.0, "acquisition"),
        "non_epi": ("non_epi", 1.0, "acquisition"),
        "unknown": (None, 0.7, "model"),
    }
    assert bodies["epi"]["verdict"]["label"] == "artifact"  # 0.0 flags every slice
    probabilities = {b["verdict"]["probability"] for b in bodies.values()}
    assert len(probabilities) == 1  # the same image: only the threshold differs
    for body in bodies.values():
        threshold = body["verdict"]["threshold"]
        for inst in body["instances"]:
            assert inst["label"] == ("artifact" if inst["probability"] >= threshold else "clean")
    assert (site["threshold"], site["threshold_source"], site["threshold_protocol"]) == (
        1.0,
        "protocol",
        "ep2d diff",
    )
    with session_scope(family_settings.database_url) as session:
        slice_sources = {v.threshold_source for v in session.scalars(select(InstanceVerdict))}
    assert slice_sources == {"acquisition", "model"}


def test_the_shadow_version_is_judged_on_its_own_threshold_for_the_family(
    client: TestClient, settings: Settings, fused: Path
) -> None:
    admin, scanner = auth(new_key(settings, "admin")), auth(new_key(settings, "scanner"))
    set_threshold(settings, 1.01)  # the active version (one threshold for all) flags nothing
    with session_scope(settings.database_url) as session:
        candidate = register_checkpoint(session, fused, activate=False)
        candidate.threshold = 1.01  # its own flags nothing either; its EPI threshold (0.0) all
        candidate_id = candidate.id
        # a site row: the active version's verdict uses it, the shadow's does not
        thresholds.set_threshold(
            session, scanner="", protocol="ep2d diff", value=0.0, origin="admin", set_by="t"
        )
    assert client.post(f"/api/v1/models/{candidate_id}/shadow", headers=admin).status_code == 200
    ids = _series_ids(client, scanner)
    for series_id in (ids["epi"], ids["unknown"]):
        assert analyse(settings, series_id) == "done"
    with session_scope(settings.database_url) as session:
        shadow = {
            v.series_id: (v.threshold, v.threshold_source, v.label)
            for v in session.scalars(select(SeriesVerdict).where(SeriesVerdict.shadow.is_(True)))
        }
        active = {
            v.series_id: (v.threshold, v.threshold_source, v.label)
            for v in session.scalars(select(SeriesVerdict).where(SeriesVerdict.shadow.is_(False)))
        }
        shadow_slices = {
            (v.threshold, v.threshold_source)
            for v in session.scalars(
                select(InstanceVerdict)
                .join(Instance, Instance.id == InstanceVerdict.instance_id)
                .where(InstanceVerdict.shadow.is_(True), Instance.series_id == ids["epi"])
            )
        }
    assert shadow == {ids["epi"]: (0.0, "acquisition", 1), ids["unknown"]: (1.01, "model", 0)}
    assert active == {ids["epi"]: (0.0, "protocol", 1), ids["unknown"]: (1.01, "model", 0)}
    assert shadow_slices == {(0.0, "acquisition")}


# --- the API and the pages ---------------------------------------------------------------


def test_the_thresholds_and_models_apis_return_the_models_threshold_per_family(
    family_settings: Settings, settings: Settings
) -> None:
    for s, want in ((family_settings, BY_FAMILY), (settings, {})):
        with app_client(s) as client:
            admin = auth(new_key(s, "admin"))
            body = client.get("/api/v1/thresholds", headers=admin).json()
            models = client.get("/api/v1/models", headers=admin).json()
        assert body["model_acquisition_thresholds"] == want
        active = next(v for v in models["items"] if v["id"] == models["active_id"])
        assert active["acquisition_thresholds"] == want
    with app_client(settings) as client:
        schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "acquisition" in json.dumps(schemas["VerdictPublic"]["properties"]["threshold_source"])
    assert "acquisition" in schemas["SeriesPublic"]["properties"]


def _text(page: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</(?:span|dd)>', page, re.S)
    assert found, f"no #{element_id}"
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


def test_the_pages_name_the_family_and_the_threshold_it_got(family_settings: Settings) -> None:
    headers = auth(new_key(family_settings, "scanner"))
    with app_client(family_settings, base_url="https://testserver") as web:
        ids = _series_ids(web, headers)
        for series_id in ids.values():
            assert analyse(family_settings, series_id) == "done"
        sign_in(web, new_key(family_settings, "admin", "Ada"))
        epi = web.get(f"/series/{ids['epi']}").text
        unknown = web.get(f"/series/{ids['unknown']}").text
        admin = web.get("/admin/thresholds").text
    assert _text(epi, "threshold-for") == "(the model's threshold for echo-planar series)"
    assert _text(epi, "acquisition") == "echo-planar (diffusion, fMRI)"
    assert 'id="threshold-for"' not in unknown and 'id="acquisition"' not in unknown
    assert _text(admin, "model-threshold-epi") == "for echo-planar series 0"
    assert _text(admin, "model-threshold-non_epi") == "for non-echo-planar series 1"
    assert "for a series of unknown acquisition family 0.7" in _text(admin, "model-threshold-any")


def test_the_verdict_line_names_the_family_only_for_its_source() -> None:
    def verdict(source: str | None) -> Any:
        return SimpleNamespace(
            threshold_source=source, threshold_scanner=None, threshold_protocol=None
        )

    assert threshold_for(verdict("acquisition"), "non_epi") == (
        "the model's threshold for non-echo-planar series"
    )
    assert threshold_for(verdict("model"), "epi") == ""
    assert threshold_for(verdict(None), "epi") == ""
