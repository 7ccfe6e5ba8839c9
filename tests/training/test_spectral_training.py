"""Training the spectral network (training/fit/spectral.py, `amaqc train-spectral`) and carrying
it into the fused checkpoint (`attach_fusion`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from app.cli import app
from model import CheckpointMeta, Predictor, build_model, read_metadata
from model.checkpoint import load_spectral, save_checkpoint
from model.fusion import FusionModel
from model.spectral import (
    SpectralEnsemble,
    SpectralNet,
    ensemble,
    log_spectrum,
    spectral_description,
    spectral_logits,
)
from tests.utils.datasets import tiny_dataset
from tests.utils.images import make_phantom
from training.data.samples import load_split
from training.fit.fusion import attach_fusion
from training.fit.spectral import (
    fit_spectral,
    load_spectral_file,
    load_spectral_files,
    save_spectral_file,
    spectral_training_set,
)


def _toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """32 x 32 standardised "spectra" (the network is fully convolutional): white noise, and
    for every other one a bright 3 x 3 point somewhere, as a k-space spike makes."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 32, 32)).astype(np.float32)
    y = np.arange(n) % 2
    for i in np.flatnonzero(y):
        r, c = rng.integers(2, 28, 2)
        x[i, r : r + 3, c : c + 3] += 4.0
    return x.astype(np.float16), y


def test_the_network_learns_to_see_a_bright_point_where_it_was_not_shown() -> None:
    x, y = _toy(200, seed=1)
    net = fit_spectral(x, y, epochs=3, batch_size=10, seed=0)
    x_new, y_new = _toy(100, seed=2)  # other noise, other places
    logits = spectral_logits(net, list(x_new.astype(np.float32)))
    assert roc_auc_score(y_new, logits) > 0.95
    again = fit_spectral(x, y, epochs=3, batch_size=10, seed=0)  # a run is its seed's
    for name, tensor in again.state_dict().items():
        assert torch.equal(tensor, net.state_dict()[name]), name


def test_training_reports_progress_and_refuses_what_it_cannot_fit() -> None:
    x, y = _toy(50, seed=3)
    seen: list[tuple[int, float]] = []
    fit_spectral(x, y, epochs=2, advance=lambda n, loss: seen.append((n, loss)))
    assert [n for n, _ in seen] == [50, 50] and all(np.isfinite(loss) for _, loss in seen)
    with pytest.raises(ValueError, match="epochs"):
        fit_spectral(x, y, epochs=0)
    with pytest.raises(ValueError, match="need >= 50"):
        fit_spectral(x[:10], y[:10])


def test_the_training_set_is_the_fusion_twins_of_every_seed(tmp_path: Path) -> None:
    train = load_split(tiny_dataset(tmp_path, {"train": 2}), "train")
    spectra, labels, info = spectral_training_set(train, seeds=(1, 2), variants=2)
    assert spectra.shape[1:] == (128, 128) and spectra.dtype == np.float16
    assert len(labels) == info["slices"] == len(spectra)
    assert info["seeds"] == [1, 2] and int(labels.sum()) == info["artifact"]
    # per seed: 2 clean slices x 2 variants clean, and as many artifacts less the invisible
    assert (labels == 0).sum() == 8
    assert (labels == 1).sum() + info["dropped_not_visible"] == 8
    assert sum(info["artifact_kinds"].values()) == info["artifact"]
    assert "held_out_kinds" not in info
    with pytest.raises(ValueError, match="seed"):
        spectral_training_set(train, seeds=())


def test_a_kind_held_out_of_the_training_set_is_never_in_it(tmp_path: Path) -> None:
    from training.simulate.artifacts import KINDS

    train = load_split(tiny_dataset(tmp_path, {"train": 3}), "train")
    kept = [k for k in KINDS if k != "motion"]
    _spectra, labels, info = spectral_training_set(train, seeds=(1, 2, 3), kinds=kept)
    assert info["held_out_kinds"] == ["motion"]
    assert int(labels.sum()) == sum(info["artifact_kinds"].values()) > 0
    assert set(info["artifact_kinds"]) <= set(kept)
    _spectra, _labels, only = spectral_training_set(train, seeds=(1, 2), kinds=["spike"])
    assert set(only["artifact_kinds"]) == {"spike"}


def test_a_spectral_file_round_trips_and_a_foreign_file_is_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = SpectralNet().eval()
    path = save_spectral_file(tmp_path / "s.safetensors", net, {"seeds": [1, 2]})
    loaded, description = load_spectral_file(path)
    assert description["info"] == {"seeds": [1, 2]}
    x = torch.from_numpy(log_spectrum(make_phantom(64)))[None, None]
    assert torch.equal(loaded(x), net(x))
    plain = save_checkpoint(tmp_path / "p.safetensors", build_model("amaresnet18"), _meta())
    with pytest.raises(ValueError, match="not a spectral network file"):
        load_spectral_file(plain)
    with pytest.raises(ValueError, match="no such"):
        load_spectral_file(tmp_path / "missing.safetensors")
    wider = SpectralNet([[16, 1], [24, 2]])  # a header that declares another network
    header = {"amaqc_spectral": json.dumps(spectral_description(wider))}
    tensors = {"spectral." + k: v for k, v in net.state_dict().items()}
    save_file(tensors, str(tmp_path / "other.safetensors"), metadata=header)
    with pytest.raises(
        ValueError, match=r"other.safetensors: tensors do not match.*unexpected.*head\.weight"
    ):
        load_spectral_file(tmp_path / "other.safetensors")


def test_several_files_are_served_as_one_ensemble_and_say_what_each_was(tmp_path: Path) -> None:
    nets = []
    for seed, held in ((1, ["motion", "spike"]), (2, ["motion"])):
        torch.manual_seed(seed)
        nets.append(SpectralNet().eval())
        info = {"seeds": [seed], "epochs": 5, "held_out_kinds": held}
        save_spectral_file(tmp_path / f"s{seed}.safetensors", nets[-1], info)
    files = [tmp_path / "s1.safetensors", tmp_path / "s2.safetensors"]
    single, single_info = load_spectral_files(files[:1])
    assert isinstance(single, SpectralNet) and single_info["file"] == "s1.safetensors"
    assert len(single_info["sha256"]) == 64 and single_info["seeds"] == [1]
    joined, info = load_spectral_files(files)
    assert isinstance(joined, SpectralEnsemble)
    assert [m["file"] for m in info["members"]] == ["s1.safetensors", "s2.safetensors"]
    assert [m["seeds"] for m in info["members"]] == [[1], [2]]
    assert info["held_out_kinds"] == ["motion"]  # held out of every member, not of one
    x = torch.from_numpy(log_spectrum(make_phantom(64)))[None, None]
    with torch.no_grad():
        assert torch.allclose(joined(x), (nets[0](x) + nets[1](x)) / 2, atol=1e-6)
    save_spectral_file(tmp_path / "e.safetensors", ensemble(nets))
    with pytest.raises(ValueError, match="e.safetensors: already an ensemble"):
        load_spectral_files([tmp_path / "e.safetensors", files[0]])
    save_spectral_file(tmp_path / "small.safetensors", SpectralNet([[8, 2], [16, 2]]))
    with pytest.raises(ValueError, match="share one architecture"):
        load_spectral_files([files[0], tmp_path / "small.safetensors"])
    with pytest.raises(ValueError, match="no spectral network file"):
        load_spectral_files([])


def _meta() -> CheckpointMeta:
    return CheckpointMeta(
        arch="amaresnet18", arch_config={"pyramid_width": 16}, patch_size=32, patch_stride=32
    )


def _fusion(features: tuple[str, ...]) -> FusionModel:
    n = len(features)
    return FusionModel(features, (0.0,) * n, (1.0,) * n, (0.5,) * n, 0.0, threshold=0.7)


def test_attach_fusion_carries_the_network_the_fusion_reads_and_drops_one_it_does_not(
    tmp_path: Path,
) -> None:
    base = save_checkpoint(
        tmp_path / "base.safetensors", build_model("amaresnet18", pyramid_width=16), _meta()
    )
    torch.manual_seed(1)
    net = SpectralNet().eval()
    reads = _fusion(("iqm_snr", "spectral_logit"))
    with pytest.raises(ValueError, match="spectral network"):
        attach_fusion(base, reads, tmp_path / "x.safetensors")
    out = attach_fusion(base, reads, tmp_path / "with.safetensors", spectral=(net, {"seeds": [4]}))
    assert read_metadata(out).spectral["info"] == {"seeds": [4]}
    predictor = Predictor(out, device="cpu", backend="torch")
    image = make_phantom(96)
    expected = spectral_logits(net, [log_spectrum(image)])[0]
    assert expected is not None
    got = predictor.predict(image)[0].spectral_probability
    assert got == pytest.approx(1 / (1 + np.exp(-expected)), abs=1e-6)
    # refitted without the spectral feature: the network is not carried on
    again = attach_fusion(out, _fusion(("iqm_snr",)), tmp_path / "without.safetensors")
    assert read_metadata(again).spectral == {} and load_spectral(again) is None


def test_the_cli_trains_and_writes_a_network_train_fusion_can_read(tmp_path: Path) -> None:
    data = tiny_dataset(tmp_path / "ds", {"train": 6})
    (data / "manifest.csv").write_text("file,split,label\n")  # what the CLI looks for
    out = tmp_path / "spectral.safetensors"
    result = CliRunner().invoke(
        app,
        [
            "train-spectral",
            "--data",
            str(data),
            "--out",
            str(out),
            "--seeds",
            "1,2,3",
            "--epochs",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "next: amaqc train-fusion --spectral" in result.output
    _net, description = load_spectral_file(out)
    assert description["info"]["seeds"] == [1, 2, 3] and description["info"]["epochs"] == 1
    bad = CliRunner().invoke(app, ["train-spectral", "--data", str(data), "--seeds", "a,b"])
    assert bad.exit_code == 2 and "comma-separated integers" in bad.output
    unknown = CliRunner().invoke(app, ["train-spectral", "--data", str(data), "--hold-out", "x"])
    assert unknown.exit_code == 2 and "unknown kind(s) ['x']" in unknown.output
    held = tmp_path / "held.safetensors"
    args = ["--data", str(data), "--out", str(held), "--seeds", "1,2,3", "--epochs", "1"]
    result = CliRunner().invoke(app, ["train-spectral", *args, "--hold-out", "spike"])
    assert result.exit_code == 0, result.output
    info = load_spectral_file(held)[1]["info"]
    assert info["held_out_kinds"] == ["spike"] and "spike" not in info["artifact_kinds"]
    few = CliRunner().invoke(app, ["train-spectral", *args[:-3], "1", "--epochs", "1"])
    assert few.exit_code == 2 and "need >= 50" in few.output and "add seeds" in few.output
