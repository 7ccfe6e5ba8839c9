"""The spectral network on ONNX Runtime (model/spectral_runtime.py): it agrees with torch, its
export is cached by the checkpoint's bytes, and torch takes over where the runtime cannot run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model import Predictor
from model.backends import MAX_PROBABILITY_DIFFERENCE, BackendUnavailable, onnxruntime_available
from model.spectral import ensemble, log_spectrum, spectral_logits
from model.spectral_runtime import (
    OnnxSpectral,
    TorchSpectral,
    make_spectral_runner,
    probe_spectra,
    spectral_export_path,
)
from tests.utils.images import make_phantom
from tests.utils.spectral import seeded_net, spectral_checkpoint_file

needs_ort = pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime not installed")
CPU = torch.device("cpu")


def _slices() -> list[np.ndarray]:
    """Head-like slices at three matrices, one with a k-space spike, and a blank one."""
    spiked = np.fft.fft2(make_phantom(128).astype(np.float64))
    spiked[30, 17] += 0.4 * np.abs(spiked).max()
    return [
        make_phantom(256),
        make_phantom(96) * 40.0,
        np.abs(np.fft.ifft2(spiked)),
        make_phantom(58),
        np.zeros((64, 64)),
    ]


@needs_ort
@pytest.mark.parametrize("members", [1, 3])
def test_the_export_agrees_with_torch_and_a_slice_without_a_spectrum_stays_none(
    tmp_path: Path, members: int
) -> None:
    net = ensemble([seeded_net(seed=5 + i) for i in range(members)])
    ckpt = spectral_checkpoint_file(tmp_path / "s.safetensors", seed=5, members=members)
    runner = make_spectral_runner(net, device=CPU, backend="onnxruntime", checkpoint=ckpt)
    assert isinstance(runner, OnnxSpectral)
    assert runner.max_difference is not None and runner.max_difference < 1e-4
    spectra = [log_spectrum(s) if s.any() else None for s in _slices()]
    got, want = runner(spectra), spectral_logits(net, spectra)
    assert got[-1] is None and want[-1] is None
    np.testing.assert_allclose(got[:-1], want[:-1], atol=1e-4)  # in logit; measured ~2e-6
    assert len(set(got[:-1])) == 4  # one logit per slice, not a constant
    assert runner([]) == [] and runner([None]) == [None]
    # run in lanes (the served default on more than one thread), and one spectrum alone
    laned = OnnxSpectral(spectral_export_path(ckpt), lanes=2)
    assert laned.session.get_session_options().intra_op_num_threads == 1
    assert laned.runner.wide() is not laned.session
    both = laned(spectra)
    assert both[-1] is None
    np.testing.assert_allclose(both[:-1], got[:-1], atol=1e-6)
    for spectrum, logit in zip(spectra[:-1], got[:-1], strict=True):
        assert laned([spectrum])[0] == pytest.approx(logit, abs=1e-6)


@needs_ort
def test_the_export_is_cached_by_the_checkpoints_bytes(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = spectral_checkpoint_file(tmp_path / "a" / "s.safetensors", seed=1)
    make_spectral_runner(seeded_net(1), device=CPU, checkpoint=first, cache_dir=cache)
    export = spectral_export_path(first, cache)
    assert export.is_file() and export.parent == cache
    stamp = export.stat().st_mtime_ns
    make_spectral_runner(seeded_net(1), device=CPU, checkpoint=first, cache_dir=cache)
    assert export.stat().st_mtime_ns == stamp  # read from the cache, not exported again
    changed = spectral_checkpoint_file(tmp_path / "a" / "s.safetensors", seed=2)  # same path
    runner = make_spectral_runner(seeded_net(2), device=CPU, checkpoint=changed, cache_dir=cache)
    assert spectral_export_path(changed, cache) != export
    assert len(list(cache.glob("*-spectral-e*.onnx"))) == 2
    probes = probe_spectra()
    np.testing.assert_allclose(runner(probes), spectral_logits(seeded_net(2), probes), atol=1e-4)


@needs_ort
def test_a_damaged_cached_export_is_exported_again(tmp_path: Path) -> None:
    ckpt = spectral_checkpoint_file(tmp_path / "s.safetensors")
    export = spectral_export_path(ckpt)
    export.parent.mkdir(parents=True)
    export.write_bytes(b"not an onnx file")
    runner = make_spectral_runner(seeded_net(), device=CPU, checkpoint=ckpt)
    assert isinstance(runner, OnnxSpectral) and export.stat().st_size > 10_000


def test_torch_runs_it_where_onnx_runtime_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = spectral_checkpoint_file(tmp_path / "s.safetensors")
    # in memory (nothing to key a cache by) and when asked for torch
    assert isinstance(make_spectral_runner(seeded_net(), device=CPU), TorchSpectral)
    torch_runner = make_spectral_runner(seeded_net(), device=CPU, backend="torch", checkpoint=ckpt)
    assert isinstance(torch_runner, TorchSpectral)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    fallback = make_spectral_runner(seeded_net(), device=CPU, checkpoint=ckpt)
    assert isinstance(fallback, TorchSpectral)
    probes = probe_spectra(2)
    assert fallback(probes) == spectral_logits(seeded_net(), probes)
    with pytest.raises(BackendUnavailable, match="onnxruntime is not installed"):
        make_spectral_runner(seeded_net(), device=CPU, backend="onnxruntime", checkpoint=ckpt)


@needs_ort
def test_an_export_that_disagrees_with_torch_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ckpt = spectral_checkpoint_file(tmp_path / "s.safetensors", seed=3)
    other = seeded_net(seed=4)  # the cache is given another network's export
    from model import spectral_runtime

    original = spectral_runtime.export_spectral_onnx
    monkeypatch.setattr(
        spectral_runtime, "export_spectral_onnx", lambda _net, path=None: original(other, path)
    )
    with pytest.raises(BackendUnavailable, match="differs from torch"):
        make_spectral_runner(seeded_net(3), device=CPU, backend="onnxruntime", checkpoint=ckpt)
    # auto serves with torch instead
    runner = make_spectral_runner(seeded_net(3), device=CPU, checkpoint=ckpt, cache_dir=tmp_path)
    assert isinstance(runner, TorchSpectral)


@needs_ort
def test_the_predictor_runs_the_spectral_network_beside_its_scorer(tmp_path: Path) -> None:
    ckpt = spectral_checkpoint_file(tmp_path / "s.safetensors", seed=6)
    onnx = Predictor(ckpt, device="cpu")  # auto on the CPU: ONNX Runtime for both networks
    ref = Predictor(ckpt, device="cpu", backend="torch")
    assert (onnx.backend, onnx.spectral_backend) == ("onnxruntime", "onnxruntime")
    assert (ref.backend, ref.spectral_backend) == ("torch", "torch")
    assert Predictor(ckpt, device="cpu", detector="cnn").spectral_backend is None
    slices = _slices()
    for a, b in zip(onnx.predict(slices), ref.predict(slices), strict=True):
        if b.spectral_probability is None:
            assert a.spectral_probability is None
            continue
        assert a.spectral_probability == pytest.approx(b.spectral_probability, abs=1e-5)
        assert a.probability == pytest.approx(b.probability, abs=MAX_PROBABILITY_DIFFERENCE)
