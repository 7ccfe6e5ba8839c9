"""The spectral network (model/spectral.py): its input, its place in the checkpoint (tensors
``spectral.*`` beside AMAResNet's, a description in the header, nothing pickled) and in the
fused detector the Predictor serves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from model import CheckpointError, Predictor, build_model, load_checkpoint
from model.checkpoint import load_spectral, read_metadata, save_checkpoint
from model.fusion import fusion_features
from model.iqm import compute_iqms, prepare
from model.spectral import (
    GRID,
    SpectralEnsemble,
    SpectralError,
    SpectralNet,
    build_spectral,
    ensemble,
    log_spectrum,
    log_spectrum_of,
    spectral_description,
    spectral_from_tensors,
    spectral_logits,
    spectrum_or_none,
)
from tests.utils.images import make_phantom
from tests.utils.iqm_reference import reference_slices
from tests.utils.spectral import seeded_net as _net
from tests.utils.spectral import small_fusion as _fusion
from tests.utils.spectral import small_meta as _meta
from tests.utils.spectral import spectral_checkpoint_file


@pytest.fixture(scope="module")
def spectral_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return spectral_checkpoint_file(tmp_path_factory.mktemp("s") / "s.safetensors")


def test_the_spectrum_is_a_fixed_grid_whatever_the_matrix_and_the_scale() -> None:
    image = make_phantom(96)
    s = log_spectrum(image)
    assert s.shape == (GRID, GRID) and s.dtype == np.float32
    assert np.median(s) == pytest.approx(0.0, abs=1e-5) and s.std() == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(log_spectrum(image * 37.0), s, atol=1e-3)  # scale-free
    assert log_spectrum(make_phantom(64)[:, :50]).shape == (GRID, GRID)  # any matrix


def test_a_kspace_spike_is_a_bright_point_of_the_spectrum_where_it_was_put() -> None:
    image = make_phantom(128).astype(np.float64)
    k = np.fft.fft2(image)
    k[20, 40] += 0.5 * np.abs(k).max()  # a spike at (+20, +40) cycles of a 128 matrix
    spiked = np.abs(np.fft.ifft2(k))
    before, after = log_spectrum(image), log_spectrum(spiked)
    where = np.unravel_index(np.argmax(after - before), after.shape)
    # fftshift puts frequency f of a 128 matrix at 64 + f; the grid is that matrix's
    assert {tuple(map(int, where))} & {(84, 104), (44, 24)}
    assert (after - before).max() > 3.0


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((4, 64, 64)), "2-D"),
        (np.ones((5, 64)), "too small"),
        (np.full((32, 32), np.nan), "NaN"),
        (np.zeros((32, 32)), "blank"),
    ],
)
def test_a_slice_without_a_spectrum_is_refused_by_name(image: np.ndarray, message: str) -> None:
    with pytest.raises(SpectralError, match=message):
        log_spectrum(image)


def test_the_spectrum_from_the_panels_fft_is_the_spectrum() -> None:
    """The Predictor takes the spectrum from the IQM panel's FFT of the slice (one FFT, not two);
    it must be the spectrum itself: real-looking slices of several sizes and dtypes, a signed and
    a non-finite one (which go the long way)."""
    slices = dict(reference_slices())
    slices["signed"] = make_phantom(64).astype(np.float64) - 100.0
    for name, image in slices.items():
        try:
            expected = log_spectrum(image)
        except SpectralError:
            with pytest.raises(SpectralError):
                log_spectrum_of(image, prepare(image))
            continue
        got = log_spectrum_of(image, prepare(image))
        assert got.dtype == np.float32 and got.shape == (GRID, GRID), name
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=name)


def test_spectrum_or_none_is_the_spectrum_or_none_for_a_blank_slice() -> None:
    image = make_phantom(64)
    spectrum = spectrum_or_none(image)
    assert spectrum is not None
    np.testing.assert_array_equal(spectrum, log_spectrum(image))
    assert spectrum_or_none(np.zeros((32, 32))) is None


def test_tensors_load_into_the_declared_network_or_are_refused_by_name() -> None:
    net = _net(seed=3)
    description = spectral_description(net)
    state = net.state_dict()
    loaded = spectral_from_tensors(description, {k: v.double() for k, v in state.items()})
    assert not loaded.training
    for name, tensor in loaded.state_dict().items():
        assert tensor.dtype == state[name].dtype  # stored in another precision, loaded as built
        assert torch.equal(tensor, state[name]), name
    short = {k: v for k, v in state.items() if not k.startswith("head")}
    with pytest.raises(SpectralError, match=r"2 missing tensor\(s\)"):
        spectral_from_tensors(description, short)
    with pytest.raises(SpectralError, match="unexpected tensor"):
        spectral_from_tensors(description, {**state, "extra": torch.zeros(1)})
    wrong = {**state, "head.bias": torch.zeros(2)}
    with pytest.raises(SpectralError, match=r"head\.bias: file \(2,\) vs arch \(1,\)"):
        spectral_from_tensors(description, wrong)


def test_the_network_and_its_description_round_trip_through_the_checkpoint(
    spectral_checkpoint: Path,
) -> None:
    with safe_open(str(spectral_checkpoint), framework="pt") as f:
        header = json.loads(f.metadata()["amaqc"])
        names = list(f.keys())
    assert header["spectral"]["format"] == "amaqc-spectral/1"
    assert header["spectral"]["info"] == {"seeds": [1]}
    assert any(n.startswith("spectral.") for n in names)
    _model, meta = load_checkpoint(spectral_checkpoint)  # AMAResNet's tensors alone, strictly
    assert meta.spectral["blocks"] == [list(b) for b in SpectralNet().blocks]
    loaded = load_spectral(spectral_checkpoint)
    assert loaded is not None
    expected = _net().state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_a_checkpoint_without_a_spectral_network_has_none(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "p.safetensors", build_model("amaresnet18"), _meta())
    assert load_spectral(path) is None


def test_the_network_and_its_description_go_together(tmp_path: Path) -> None:
    model, net = build_model("amaresnet18", pyramid_width=16), _net()
    with pytest.raises(CheckpointError, match="none was given"):
        save_checkpoint(
            tmp_path / "a.safetensors", model, _meta(spectral=spectral_description(net))
        )
    with pytest.raises(CheckpointError, match="needs its description"):
        save_checkpoint(tmp_path / "b.safetensors", model, _meta(), spectral=net)
    with pytest.raises(CheckpointError, match="spectral network"):
        _meta(spectral={**spectral_description(net), "grid": 64})


def test_spectral_tensors_the_header_does_not_declare_are_refused(
    spectral_checkpoint: Path, tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    with safe_open(str(spectral_checkpoint), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        header = json.loads(f.metadata()["amaqc"])
    header["spectral"] = {}
    path = tmp_path / "undeclared.safetensors"
    save_file(tensors, str(path), metadata={"amaqc": json.dumps(header)})
    with pytest.raises(CheckpointError, match="unexpected tensor"):
        load_checkpoint(path)
    # and a declared network whose tensors are missing
    header["spectral"] = json.loads(read_metadata(spectral_checkpoint).to_json())["spectral"]
    kept = {k: v for k, v in tensors.items() if not k.startswith("spectral.head")}
    path = tmp_path / "short.safetensors"
    save_file(kept, str(path), metadata={"amaqc": json.dumps(header)})
    with pytest.raises(CheckpointError, match="missing tensor"):
        load_spectral(path)


def test_a_bad_description_is_refused_by_name() -> None:
    good = spectral_description(SpectralNet())
    with pytest.raises(SpectralError, match="format"):
        build_spectral({**good, "format": "other/9"})
    with pytest.raises(SpectralError, match="blocks"):
        build_spectral({**good, "blocks": [[16]]})


def test_an_ensembles_logit_is_the_mean_of_its_members_and_it_round_trips(tmp_path: Path) -> None:
    members = [_net(1), _net(2), _net(3)]
    spectra: list[np.ndarray | None] = [
        log_spectrum(make_phantom(n) * (1 + n / 100)) for n in (64, 96, 128)
    ]
    spectra.append(None)  # a blank slice has no spectrum and stays None
    each = np.array([spectral_logits(net, spectra[:3]) for net in members], dtype=np.float64)
    joined = ensemble(members)
    assert isinstance(joined, SpectralEnsemble) and len(joined.members) == 3
    got = spectral_logits(joined, spectra)
    assert got[3] is None
    np.testing.assert_allclose(got[:3], each.mean(0), atol=1e-5)
    assert np.ptp(each, axis=0).min() > 1e-3  # the members disagree: the mean is not one of them
    assert ensemble([members[0]]) is members[0]  # one network stays itself
    description = spectral_description(joined, {"seeds": [1]})
    assert description["members"] == 3 and "members" not in spectral_description(members[0])
    path = spectral_checkpoint_file(tmp_path / "e.safetensors", seed=1, members=3)
    loaded = load_spectral(path)
    assert isinstance(loaded, SpectralEnsemble) and read_metadata(path).spectral["members"] == 3
    np.testing.assert_allclose(spectral_logits(loaded, spectra)[:3], got[:3], atol=1e-6)
    load_checkpoint(path)  # AMAResNet's tensors still load strictly beside the members'
    served = Predictor(path, device="cpu", backend="torch")
    assert served.spectral_backend == "torch"
    (verdict,) = served.predict([make_phantom(96)])
    assert verdict.spectral_probability is not None


def test_an_ensemble_of_differing_networks_or_of_none_is_refused() -> None:
    with pytest.raises(SpectralError, match="no spectral network"):
        ensemble([])
    other = SpectralNet(((8, 2), (16, 2)))
    with pytest.raises(SpectralError, match=r"share one architecture: network\(s\) \[1\]"):
        ensemble([_net(1), other])
    good = spectral_description(ensemble([_net(1), _net(2)]))
    for members in (0, -1, "2", 2.0, True):
        with pytest.raises(SpectralError, match="members must be a whole number"):
            build_spectral({**good, "members": members})
    with pytest.raises(SpectralError, match="at least 2 members"):
        SpectralEnsemble(members=1)
    assert isinstance(build_spectral({**good, "members": 1}), SpectralNet)


def test_the_predictor_serves_the_fusion_that_reads_the_spectral_network(
    spectral_checkpoint: Path,
) -> None:
    slices = [make_phantom(96), make_phantom(80) * 3.0, np.zeros((64, 64))]
    predictor = Predictor(spectral_checkpoint, device="cpu", backend="torch")
    assert predictor.spectral is not None
    got = predictor.predict(slices)
    net, fusion = _net(), _fusion()
    for image, pred in zip(slices[:2], got[:2], strict=True):
        logit = spectral_logits(net, [log_spectrum(image)])[0]
        assert logit is not None
        assert pred.spectral_probability == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-6)
        row = fusion_features(pred.cnn_probability, pred.patch_probs, compute_iqms(image), logit)
        assert pred.probability == pytest.approx(float(fusion.probability([row])[0]), abs=1e-6)
        assert pred.label == int(pred.probability >= 0.55)
    # a blank slice has neither panel nor spectrum: both read their training means
    assert got[2].spectral_probability is None and got[2].iqms is None
    assert got[2].probability == pytest.approx(1 / (1 + np.exp(0.1)), abs=1e-6)


def test_the_spectral_network_is_needed_only_by_the_fusion_that_reads_it(
    spectral_checkpoint: Path,
) -> None:
    model, meta = load_checkpoint(spectral_checkpoint)
    with pytest.raises(ValueError, match="spectral network"):
        Predictor((model, meta), device="cpu")
    assert Predictor((model, meta), device="cpu", detector="cnn").spectral is None
    served = Predictor((model, meta), device="cpu", spectral=_net())
    assert served.predict(make_phantom(64))[0].spectral_probability is not None
