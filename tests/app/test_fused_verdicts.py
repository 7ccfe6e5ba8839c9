"""A model version carrying the fused detector (issue 17): each slice verdict keeps AMAResNet's
own probability and the IQM panel; the API returns them with a plain line per metric; the
verdict's label is the fused detector's at its own threshold."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import Settings
from app.db.session import session_scope
from app.migrate import upgrade
from app.model_versions import register_checkpoint
from app.web.quality import quality_rows
from app.worker.inference import analyse
from model.fusion import FusionModel
from model.iqm import IQM_NAMES
from tests.app.conftest import make_settings
from tests.utils.service import SERVICE_FUSION, series_files, tiny_checkpoint
from training.fit.fusion import attach_fusion

FUSION = SERVICE_FUSION


@pytest.fixture
def fused_settings(tmp_path: Path) -> Settings:
    plain = tiny_checkpoint(tmp_path / "tiny.safetensors")
    fused = attach_fusion(plain, FUSION, tmp_path / "fused.safetensors")
    s = make_settings(tmp_path / "data", fused, max_upload_mb=2)
    upgrade(s.database_url)
    with session_scope(s.database_url) as session:
        version = register_checkpoint(session, fused)
        assert version.threshold == 0.7  # the served (fused) detector's threshold
    return s


def test_fused_verdicts_keep_the_cnn_probability_and_the_panel(fused_settings: Settings) -> None:
    from tests.app.conftest import app_client, auth, new_key

    key = auth(new_key(fused_settings, "scanner"))
    with app_client(fused_settings) as client:
        series_id = client.post("/api/v1/series", files=series_files(2), headers=key).json()[
            "series_id"
        ]
        assert analyse(fused_settings, series_id) == "done"
        body = client.get(f"/api/v1/series/{series_id}", headers=key).json()
    for inst in body["instances"]:
        assert set(inst["iqms"]) == set(IQM_NAMES)
        assert 0.0 <= inst["cnn_probability"] <= 1.0
        assert inst["cnn_probability"] != inst["probability"]  # the fused one is served
        assert inst["label"] == ("artifact" if inst["probability"] >= 0.7 else "clean")
        assert any(line.startswith("k-space spike") for line in inst["quality_notes"])
    assert body["verdict"]["threshold"] == 0.7


def test_the_quality_panel_ranks_metrics_by_what_pushed_the_verdict(
    fused_settings: Settings,
) -> None:
    iqms = {"qi1": 0.5, "spike": 1.0, "snr": 20.0}
    rows = quality_rows(iqms, 0.5, [[0.5]], str(fused_settings.checkpoint))
    # qi1: 2.0 * (0.5 - 0.1) / 0.1 = +8 (towards artifact); spike: 1.0 * (1.0 - 1.5) / 0.5
    # = -1 (towards clean); snr is not used by this model: 0
    assert [(r["name"], r["push"]) for r in rows] == [
        ("qi1", 8.0),
        ("snr", 0.0),
        ("spike", -1.0),
    ]
    assert rows[0]["artifact"] == "ghosts or motion smear in the air"


SPECTRAL_FUSION = FusionModel(
    features=("iqm_qi1", "spectral_logit"),
    mean=(0.1, 0.0),
    scale=(0.1, 2.0),
    coef=(2.0, 1.5),
    intercept=0.0,
    threshold=0.6,
)


@pytest.fixture
def spectral_settings(tmp_path: Path) -> Settings:
    import torch

    from model.spectral import SpectralNet

    root = tmp_path / "spectral"  # beside fused_settings' own folder, database and store
    plain = tiny_checkpoint(root / "tiny.safetensors")
    torch.manual_seed(0)
    fused = attach_fusion(
        plain, SPECTRAL_FUSION, root / "spectral.safetensors", spectral=(SpectralNet(), {})
    )
    s = make_settings(root / "data", fused, max_upload_mb=2)
    upgrade(s.database_url)
    with session_scope(s.database_url) as session:
        register_checkpoint(session, fused)
    return s


def test_a_verdict_keeps_the_spectral_networks_probability_where_the_detector_reads_it(
    spectral_settings: Settings, fused_settings: Settings
) -> None:
    from tests.app.conftest import app_client, auth, new_key

    for settings, reads in ((spectral_settings, True), (fused_settings, False)):
        key = auth(new_key(settings, "scanner"))
        with app_client(settings) as client:
            posted = client.post("/api/v1/series", files=series_files(2), headers=key)
            series_id = posted.json()["series_id"]
            assert analyse(settings, series_id) == "done"
            body = client.get(f"/api/v1/series/{series_id}", headers=key).json()
        for inst in body["instances"]:
            if reads:
                assert 0.0 < inst["spectral_probability"] < 1.0
                assert inst["label"] == ("artifact" if inst["probability"] >= 0.6 else "clean")
            else:
                assert inst["spectral_probability"] is None


def test_the_quality_panel_shows_the_spectral_networks_share(
    spectral_settings: Settings,
) -> None:
    import math

    rows = quality_rows(
        {"qi1": 0.1, "snr": 20.0},
        0.5,
        [[0.5]],
        str(spectral_settings.checkpoint),
        spectral_probability=0.9,
    )
    # the spectral logit log(0.9 / 0.1) = 2.197 pushes 1.5 * 2.197 / 2.0; qi1 at its mean: 0
    assert rows[0]["name"] == "spectral"
    assert rows[0]["push"] == pytest.approx(round(1.5 * math.log(9.0) / 2.0, 3))
    assert rows[0]["value"] == "0.9"
    assert {r["name"] for r in rows} == {"spectral", "qi1", "snr"}
    without = quality_rows({"qi1": 0.1}, 0.5, [[0.5]], str(spectral_settings.checkpoint))
    assert [r["name"] for r in without] == ["qi1"]


@pytest.mark.parametrize("z", [-25.0, -3.0, 0.0, 7.5, 20.0, 25.0])
def test_the_quality_panel_pushes_what_the_detector_pushed_for_a_stored_spectral_probability(
    spectral_settings: Settings, z: float
) -> None:
    from model.fusion import sigmoid

    stored = float(sigmoid(z))  # what the worker stores for a spectral logit z
    rows = quality_rows(
        {"qi1": 0.1}, 0.5, [[0.5]], str(spectral_settings.checkpoint), spectral_probability=stored
    )
    # the served fusion reads z itself: coefficient 1.5 over scale 2.0, mean 0
    (spectral,) = [r for r in rows if r["name"] == "spectral"]
    assert spectral["push"] == pytest.approx(round(1.5 * z / 2.0, 3), abs=1.5e-3)
