"""A retrained AMAResNet keeps the fused detector of the version it was fine-tuned from (issue
17: "retraining jobs refit it"): carried over when it does not read AMAResNet, refitted on the
job's data when it does, and said plainly when neither can be done."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model import Predictor, build_model, read_metadata
from model.checkpoint import load_checkpoint, load_spectral, save_checkpoint
from model.fusion import FusionModel
from tests.utils.datasets import tiny_dataset
from tests.utils.images import phantom, write_png16
from tests.utils.spectral import small_fusion, small_meta, spectral_checkpoint_file
from training.fit.fusion import carry_fusion
from training.simulate.artifacts import simulate


def _trained(path: Path, seed: int = 7, **meta: object) -> Path:
    """An AMAResNet like the base's, other weights, no fused detector (what a job writes)."""
    torch.manual_seed(seed)
    model = build_model("amaresnet18", pyramid_width=16).eval()
    return save_checkpoint(path, model, small_meta(**meta))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_checkpoint(path)[0].state_dict().items()}


def test_a_fused_detector_that_does_not_read_amaresnet_is_carried_over(tmp_path: Path) -> None:
    base = spectral_checkpoint_file(tmp_path / "base.safetensors", members=2)
    trained = _trained(tmp_path / "trained.safetensors")
    before = _weights(trained)
    note = carry_fusion(base, trained)
    assert "carried over unchanged" in note
    meta = read_metadata(trained)
    assert meta.fusion_model == small_fusion()
    assert meta.spectral == read_metadata(base).spectral
    base_net, new_net = load_spectral(base), load_spectral(trained)
    assert base_net is not None and new_net is not None
    for (k, a), (_, b) in zip(
        base_net.state_dict().items(), new_net.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
    after = _weights(trained)  # AMAResNet is the trained one, not the base's
    assert all(torch.equal(before[k], after[k]) for k in before)
    prediction = Predictor(trained).predict([phantom(64, 1)])[0]
    assert prediction.cnn_probability is not None and prediction.spectral_probability is not None


def test_without_a_fused_detector_to_carry_the_version_serves_amaresnet_alone(
    tmp_path: Path,
) -> None:
    trained = _trained(tmp_path / "trained.safetensors")
    plain = _trained(tmp_path / "plain.safetensors", seed=3)
    assert "from scratch" in carry_fusion(None, trained)
    assert "no fused detector" in carry_fusion(plain, trained)
    assert read_metadata(trained).fusion_model is None


def _reads_cnn() -> FusionModel:
    return FusionModel(
        features=("cnn_logit", "iqm_snr", "spectral_logit"),
        mean=(0.0, 1.5, 0.0),
        scale=(2.0, 0.5, 2.0),
        coef=(0.9, -0.4, 1.3),
        intercept=-0.1,
        threshold=0.55,
        info={"training": {"coarse_probability": 0.0}},
    )


def _data_with_calib(root: Path) -> Path:
    tiny_dataset(root, {"train": 6}, size=64)
    rng = np.random.default_rng(0)
    for i in range(6):
        clean = phantom(64, 50 + i)
        write_png16(root / "calib" / "clean" / f"c{i}.png", clean)
        spiked, _ = simulate(clean, "spike", "severe", rng)
        write_png16(root / "calib" / "artifact" / f"a{i}.png", spiked)
    return root


def test_a_fused_detector_that_reads_amaresnet_is_refitted_on_the_jobs_data(
    tmp_path: Path,
) -> None:
    base = spectral_checkpoint_file(tmp_path / "base.safetensors")
    # the same base with a fusion that reads AMAResNet's output
    model, meta = load_checkpoint(base)
    meta.fusion = _reads_cnn().to_dict()
    save_checkpoint(base, model, meta, spectral=load_spectral(base))
    trained = _trained(tmp_path / "trained.safetensors")
    data = _data_with_calib(tmp_path / "ds")
    note = carry_fusion(base, trained, data)
    assert "refitted on the new AMAResNet" in note
    refit = read_metadata(trained).fusion_model
    assert refit is not None
    assert refit.features == _reads_cnn().features
    assert refit.coef != _reads_cnn().coef  # fitted, not copied
    assert 0.0 <= refit.threshold <= 1.0 and refit.info["rule"]["threshold"] == refit.threshold
    assert refit.acquisition_thresholds == {}  # the base had none
    assert load_spectral(trained) is not None
    # without train and calib splits it cannot be refitted: AMAResNet alone, and said so
    other = _trained(tmp_path / "other.safetensors")
    note = carry_fusion(base, other, tmp_path / "nowhere")
    assert "serves AMAResNet alone" in note and "train-fusion" in note
    assert read_metadata(other).fusion_model is None


def test_a_refit_rechooses_the_thresholds_per_family_its_base_had(tmp_path: Path) -> None:
    from dataclasses import replace

    base = spectral_checkpoint_file(tmp_path / "base.safetensors")
    model, meta = load_checkpoint(base)
    per_family = replace(_reads_cnn(), acquisition_thresholds={"epi": 0.9, "non_epi": 0.2})
    meta.fusion = per_family.to_dict()
    save_checkpoint(base, model, meta, spectral=load_spectral(base))
    trained = _trained(tmp_path / "trained.safetensors")
    note = carry_fusion(base, trained, _data_with_calib(tmp_path / "ds"))
    refit = read_metadata(trained).fusion_model
    assert refit is not None
    # re-chosen, never copied: the job's calib (6 clean phantoms of one source) is too small
    # for a threshold of its own, so the refit serves its pooled one for every series
    assert refit.acquisition_thresholds == {} and refit.info["acquisition_rules"] == {}
    assert refit.threshold_for("non_epi") == refit.threshold == refit.info["rule"]["threshold"]
    assert "non_epi" not in note


@pytest.mark.parametrize("members", [1, 3])
def test_carrying_over_is_idempotent(tmp_path: Path, members: int) -> None:
    base = spectral_checkpoint_file(tmp_path / "base.safetensors", members=members)
    trained = _trained(tmp_path / "trained.safetensors")
    carry_fusion(base, trained)
    first = read_metadata(trained)
    carry_fusion(base, trained)  # a redelivered job runs it again
    again = read_metadata(trained)
    assert again.fusion == first.fusion and again.spectral == first.spectral
