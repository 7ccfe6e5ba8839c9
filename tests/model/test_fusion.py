"""The fused detector: stored as plain JSON numbers in the checkpoint (never unpickled), validated
on load, and served by the Predictor beside AMAResNet's own probability."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from model import CheckpointError, CheckpointMeta, Predictor, build_model, read_metadata
from model.checkpoint import save_checkpoint
from model.fusion import FusionError, FusionModel, fusion_features
from model.iqm import compute_iqms
from tests.utils.images import make_phantom


def _fusion(threshold: float = 0.5, **overrides: object) -> FusionModel:
    base: dict = {
        "features": ("cnn_logit", "iqm_gsr_rows", "iqm_snr"),
        "mean": (0.0, 0.01, 1.5),
        "scale": (2.0, 0.05, 0.5),
        "coef": (0.8, 1.7, -0.4),
        "intercept": -0.2,
        "threshold": threshold,
    }
    base.update(overrides)
    return FusionModel(**base)


@pytest.fixture(scope="module")
def fused_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_model("amaresnet18", pyramid_width=16).eval()
    meta = CheckpointMeta(
        arch="amaresnet18",
        arch_config={"pyramid_width": 16},
        patch_size=32,
        patch_stride=32,
        threshold=0.4,
        fusion=_fusion(threshold=0.6).to_dict(),
    )
    return save_checkpoint(tmp_path_factory.mktemp("f") / "f.safetensors", model, meta)


def test_the_fusion_model_round_trips_through_the_checkpoint_header_as_json(
    fused_checkpoint: Path,
) -> None:
    with safe_open(str(fused_checkpoint), framework="pt") as f:
        header = json.loads(f.metadata()["amaqc"])  # plain JSON: nothing to unpickle
    assert header["fusion"]["coef"] == [0.8, 1.7, -0.4]
    loaded = read_metadata(fused_checkpoint).fusion_model
    assert loaded == _fusion(threshold=0.6)


def test_probability_is_the_standardised_logistic_regression() -> None:
    model = _fusion()
    row = {"cnn_logit": 1.0, "iqm_gsr_rows": 0.11, "iqm_snr": 1.0}
    z = -0.2 + 0.8 * (1.0 / 2.0) + 1.7 * (0.10 / 0.05) - 0.4 * (-0.5 / 0.5)
    assert model.probability([row])[0] == pytest.approx(1 / (1 + np.exp(-z)))
    assert sum(model.contributions(row).values()) == pytest.approx(z + 0.2)


def test_a_missing_feature_reads_as_its_training_mean() -> None:
    model = _fusion()
    full = {"cnn_logit": 0.0, "iqm_gsr_rows": 0.01, "iqm_snr": 1.5}
    assert model.probability([{}])[0] == pytest.approx(model.probability([full])[0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"coef": (1.0, 2.0)}, "coef has 2 values for 3 features"),
        ({"scale": (1.0, 0.0, 1.0)}, "scale must be > 0"),
        ({"features": ("cnn_logit", "iqm_gsr_rows", "iqm_nope")}, "unknown feature"),
        ({"mean": (0.0, float("nan"), 1.0)}, "non-finite"),
        ({"threshold": 1.5}, "threshold must be in"),
    ],
)
def test_a_malformed_fusion_model_is_refused_by_name(change: dict, message: str) -> None:
    with pytest.raises(FusionError, match=message):
        _fusion(**change)


def test_a_checkpoint_with_a_malformed_fusion_model_is_refused() -> None:
    bad = {**_fusion().to_dict(), "coef": [1.0]}
    with pytest.raises(CheckpointError, match="coef has 1 values"):
        CheckpointMeta(arch="amaresnet18", fusion=bad)


def test_the_predictor_serves_the_fused_detector_and_keeps_the_cnn_probability(
    fused_checkpoint: Path,
) -> None:
    image = make_phantom(96)
    fused = Predictor(fused_checkpoint, device="cpu")
    cnn = Predictor(fused_checkpoint, device="cpu", detector="cnn")
    assert (fused.detector, fused.threshold) == ("fused", 0.6)
    assert (cnn.detector, cnn.threshold) == ("cnn", 0.4)
    a, b = fused.predict(image)[0], cnn.predict(image)[0]
    assert a.cnn_probability == pytest.approx(b.probability)
    row = fusion_features(b.probability, b.patch_probs, compute_iqms(image))
    assert a.probability == pytest.approx(float(_fusion().probability([row])[0]))
    assert a.label == int(a.probability >= 0.6)
    assert a.iqms == compute_iqms(image)
    assert b.iqms is None


def test_asking_for_the_fused_detector_of_a_plain_checkpoint_is_a_clear_error(
    tmp_path: Path,
) -> None:
    model = build_model("amaresnet18", pyramid_width=16).eval()
    path = save_checkpoint(
        tmp_path / "plain.safetensors",
        model,
        CheckpointMeta(arch="amaresnet18", arch_config={"pyramid_width": 16}),
    )
    with pytest.raises(ValueError, match="no fusion model"):
        Predictor(path, detector="fused")
    with pytest.raises(ValueError, match="detector must be one of"):
        Predictor(path, detector="best")


def test_a_blank_slice_gets_a_verdict_without_the_panel(fused_checkpoint: Path) -> None:
    pred = Predictor(fused_checkpoint, device="cpu").predict(np.zeros((64, 64)))[0]
    assert pred.iqms is None
    assert 0.0 <= pred.probability <= 1.0
