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
from model.fusion import (
    FUSION_FORMAT_EITHER,
    EitherHead,
    FusionError,
    FusionModel,
    fusion_features,
)
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
        ({"acquisition_thresholds": {"t2": 0.5}}, "unknown acquisition family 't2'"),
        ({"acquisition_thresholds": {"epi": 1.2}}, "the epi threshold must be in"),
    ],
)
def test_a_malformed_fusion_model_is_refused_by_name(change: dict, message: str) -> None:
    with pytest.raises(FusionError, match=message):
        _fusion(**change)


def test_a_checkpoint_with_a_malformed_fusion_model_is_refused() -> None:
    bad = {**_fusion().to_dict(), "coef": [1.0]}
    with pytest.raises(CheckpointError, match="coef has 1 values"):
        CheckpointMeta(arch="amaresnet18", fusion=bad)


def _either(**overrides: object) -> FusionModel:
    head = EitherHead(feature="spectral_logit", mean=0.5, scale=2.0, coef=3.0, intercept=-1.0)
    return _fusion(either=(head,), format=FUSION_FORMAT_EITHER, **overrides)


def test_an_either_head_raises_the_logit_only_where_its_own_is_higher() -> None:
    model, plain = _either(), _fusion()
    quiet = {"cnn_logit": 0.0, "iqm_gsr_rows": 0.01, "iqm_snr": 1.5, "spectral_logit": 0.5}
    loud = {**quiet, "spectral_logit": 4.5}  # head: -1 + 3 * (4.5 - 0.5) / 2 = 5
    # the regression alone says -0.2 for both; the head says -1 (quiet) and 5 (loud)
    assert model.probability([quiet])[0] == pytest.approx(plain.probability([quiet])[0])
    assert model.probability([loud])[0] == pytest.approx(1 / (1 + np.exp(-5.0)))
    assert plain.probability([loud])[0] == pytest.approx(1 / (1 + np.exp(0.2)))
    # without the head's feature (a blank slice's spectrum) the regression decides
    no_spectrum = {k: v for k, v in loud.items() if k != "spectral_logit"}
    assert model.probability([no_spectrum])[0] == pytest.approx(plain.probability([loud])[0])
    # the shares still add up to the logit: the rise is put on the head's feature
    shares = model.contributions(loud)
    assert sum(shares.values()) - 0.2 == pytest.approx(5.0)
    assert shares["spectral_logit"] == pytest.approx(5.2)
    assert model.uses_spectral and not plain.uses_spectral


def test_an_either_model_round_trips_and_a_format_1_model_is_written_as_before(
    tmp_path: Path,
) -> None:
    assert "either" not in _fusion().to_dict()
    data = json.loads(json.dumps(_either().to_dict()))
    assert data["format"] == FUSION_FORMAT_EITHER
    assert FusionModel.from_dict(data) == _either()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "amaqc-fusion/1"}, "want amaqc-fusion/2"),
        ({"either": [{"feature": "spectral_logit"}]}, "missing or malformed"),
        (
            {"either": [{"feature": "iqm_nope", "mean": 0, "scale": 1, "coef": 1, "intercept": 0}]},
            "unknown feature",
        ),
        (
            {
                "either": [
                    {"feature": "spectral_logit", "mean": 0, "scale": 0, "coef": 1, "intercept": 0}
                ]
            },
            "scale must be > 0",
        ),
    ],
)
def test_a_malformed_either_head_is_refused_by_name(change: dict, message: str) -> None:
    with pytest.raises(FusionError, match=message):
        FusionModel.from_dict({**_either().to_dict(), **change})


def test_a_format_1_reader_would_refuse_an_either_model_not_ignore_its_head() -> None:
    # the format names the head: a model without heads must not claim format 2 either
    with pytest.raises(FusionError, match="want amaqc-fusion/1"):
        _fusion(format=FUSION_FORMAT_EITHER)


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


def test_a_threshold_per_acquisition_family_round_trips_and_falls_back_to_the_pooled_one(
    tmp_path: Path,
) -> None:
    per_family = _fusion(threshold=0.92, acquisition_thresholds={"epi": 0.92, "non_epi": 0.84})
    assert per_family.to_dict()["acquisition_thresholds"] == {"epi": 0.92, "non_epi": 0.84}
    assert "acquisition_thresholds" not in _fusion().to_dict()  # written as before without
    assert FusionModel.from_dict(per_family.to_dict()) == per_family
    assert per_family.threshold_for("non_epi") == 0.84
    assert per_family.threshold_for("epi") == 0.92
    assert per_family.threshold_for(None) == 0.92  # family unknown: the pooled threshold
    only_epi = _fusion(threshold=0.9, acquisition_thresholds={"epi": 0.95})
    assert only_epi.threshold_for("non_epi") == 0.9  # a family without its own: pooled
    meta = CheckpointMeta(
        arch="amaresnet18",
        arch_config={"pyramid_width": 16},
        patch_size=32,
        patch_stride=32,
        fusion=per_family.to_dict(),
    )
    path = save_checkpoint(
        tmp_path / "a.safetensors", build_model("amaresnet18", pyramid_width=16), meta
    )
    predictor = Predictor(path, device="cpu")
    assert predictor.threshold == 0.92
    assert predictor.threshold_for("non_epi") == 0.84
    assert Predictor(path, device="cpu", detector="cnn").threshold_for("non_epi") == 0.5
