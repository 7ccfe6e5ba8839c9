"""The CPU inference backend: the exported network agrees with torch, the export cache follows the
checkpoint's bytes, and torch takes over where ONNX Runtime is missing."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from model import CheckpointMeta, Predictor, build_model, save_checkpoint
from model.backends import (
    LANES,
    MAX_PROBABILITY_DIFFERENCE,
    SPINNING,
    BackendUnavailable,
    OnnxScorer,
    cpu_session,
    lane_count,
    make_scorer,
    onnxruntime_available,
    run_in_lanes,
)
from model.export import DenseConvBN, InferenceNetwork, export_onnx
from model.resnet import AMAResNet
from tests.utils.images import make_phantom, phantom

SERVED = Path(__file__).resolve().parents[2] / "model" / "weights" / "amaqc-default.safetensors"
needs_ort = pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime not installed")


def _randomise_norms(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics, so folding them into the dense matrices is exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))
    return net.eval()


def _tiny(arch: str = "amaresnet18", seed: int = 0) -> AMAResNet:
    torch.manual_seed(seed)
    net = build_model(arch, pyramid_width=8)  # narrow pyramid: faster; ignored without one
    assert isinstance(net, AMAResNet)
    _randomise_norms(net, seed)
    return net


def _meta(patch: int = 32, size: int = 96) -> CheckpointMeta:
    return CheckpointMeta(
        arch="amaresnet18",
        arch_config={"pyramid_width": 8},
        patch_size=patch,
        patch_stride=patch,
        normalization={"method": "percentile", "lower": 0.5, "upper": 99.5, "size": size},
        threshold=0.5,
    )


def _slices(size: int = 96, count: int = 6) -> list[np.ndarray]:
    """Real-looking slices: head phantoms of several shapes, bit depths and noise levels, one
    with a ghost (a shifted faint copy, as a phase-encode artifact makes)."""
    rng = np.random.default_rng(1)
    out: list[np.ndarray] = []
    for i in range(count):
        img = make_phantom(size) if i % 2 else phantom(size, seed=i)
        img = np.abs(img + rng.normal(0, 0.01 * (i + 1), img.shape))
        if i == count - 1:
            img = img + 0.3 * np.roll(img, size // 2, axis=0)
        out.append((img * 4000).astype(np.uint16) if i % 3 == 0 else img.astype(np.float32))
    return out


def test_dense_conv_equals_the_convolution_and_its_batchnorm() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 24, 3, padding=1, bias=False)
    bn = _randomise_norms(nn.Sequential(nn.BatchNorm2d(24)))[0]
    assert isinstance(bn, nn.BatchNorm2d)
    x = torch.randn(5, 16, 2, 2)
    with torch.no_grad():
        want = bn(conv(x))
        got = DenseConvBN(conv, bn, (16, 2, 2))(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["amaresnet18", "resnet18", "resnet18_se", "resnet18_pyramid"])
@pytest.mark.parametrize("patch", [32, 48, 64])
def test_inference_rewrite_computes_the_same_probabilities(arch: str, patch: int) -> None:
    net = _tiny(arch)
    x = torch.rand(6, 1, patch, patch)
    with torch.no_grad():
        want = torch.softmax(net(x), dim=1)[:, 1]
        got = InferenceNetwork(net, patch)(x)
    assert (got - want).abs().max().item() < 1e-5


@needs_ort
@pytest.mark.parametrize("patch", [32, 64])
def test_onnx_runtime_agrees_with_torch_on_real_looking_slices(patch: int) -> None:
    net, meta = _tiny(), _meta(patch, size=128)
    onnx = Predictor((net, meta), device="cpu", backend="onnxruntime", detector="cnn")
    ref = Predictor((net, meta), device="cpu", backend="torch", detector="cnn")
    assert onnx.backend == "onnxruntime" and ref.backend == "torch"
    slices = _slices(128)
    a, b = onnx.predict(slices), ref.predict(slices)
    diff = max(abs(x.probability - y.probability) for x, y in zip(a, b, strict=True))
    patch_diff = max(np.abs(x.patch_probs - y.patch_probs).max() for x, y in zip(a, b, strict=True))
    assert diff < 1e-4 and patch_diff < 1e-4  # measured ~1e-7
    assert onnx.scorer.max_difference is not None  # type: ignore[attr-defined]
    assert onnx.scorer.max_difference < MAX_PROBABILITY_DIFFERENCE  # type: ignore[attr-defined]


@needs_ort
@pytest.mark.slow
def test_served_checkpoint_on_onnx_runtime_agrees_with_torch(tmp_path: Path) -> None:
    """Full size: the shipped checkpoint, 256^2 slices, 16 patches of 64 px each."""
    onnx = Predictor(SERVED, backend="onnxruntime", cache_dir=tmp_path, device="cpu")
    ref = Predictor(SERVED, backend="torch", device="cpu")
    assert (onnx.spectral_backend, ref.spectral_backend) == ("onnxruntime", "torch")
    assert onnx.spectral_runner.lanes == lane_count()  # type: ignore[union-attr]
    slices = _slices(256, count=4)
    a, b = onnx.predict(slices), ref.predict(slices)
    for x, y in zip(a, b, strict=True):
        assert x.cnn_probability == pytest.approx(y.cnn_probability, abs=1e-4)
        assert x.spectral_probability == pytest.approx(y.spectral_probability, abs=1e-4)
        assert x.probability == pytest.approx(y.probability, abs=1e-4)  # the fused detector's
        assert np.abs(x.patch_probs - y.patch_probs).max() < 1e-4


@needs_ort
def test_the_export_is_cached_and_a_changed_checkpoint_is_exported_again(tmp_path: Path) -> None:
    net, meta = _tiny(), _meta()
    ckpt = save_checkpoint(tmp_path / "model.safetensors", net, meta)
    cache = tmp_path / "cache"
    first = Predictor(ckpt, device="cpu", backend="onnxruntime", cache_dir=cache)
    (export,) = cache.glob("*.onnx")
    stamp = export.stat().st_mtime_ns
    Predictor(ckpt, device="cpu", backend="onnxruntime", cache_dir=cache)
    assert list(cache.glob("*.onnx")) == [export] and export.stat().st_mtime_ns == stamp

    changed = _tiny(seed=1)
    save_checkpoint(ckpt, changed, meta)
    second = Predictor(ckpt, device="cpu", backend="onnxruntime", cache_dir=cache)
    assert len(list(cache.glob("*.onnx"))) == 2
    slices = _slices()
    want = Predictor((changed, meta), device="cpu", backend="torch").predict(slices)
    got = second.predict(slices)
    old = first.predict(slices)
    for g, w in zip(got, want, strict=True):
        assert g.probability == pytest.approx(w.probability, abs=1e-4)
    assert any(abs(g.probability - o.probability) > 1e-3 for g, o in zip(got, old, strict=True))


@needs_ort
def test_a_corrupt_cached_export_is_exported_again(tmp_path: Path) -> None:
    net, meta = _tiny(), _meta()
    ckpt = save_checkpoint(tmp_path / "model.safetensors", net, meta)
    Predictor(ckpt, device="cpu", backend="onnxruntime", cache_dir=tmp_path / "cache")
    (export,) = (tmp_path / "cache").glob("*.onnx")
    export.write_bytes(b"not an onnx model")
    again = Predictor(ckpt, device="cpu", backend="onnxruntime", cache_dir=tmp_path / "cache")
    assert again.backend == "onnxruntime" and export.stat().st_size > 1000


@needs_ort
def test_default_cache_is_next_to_the_checkpoint(tmp_path: Path) -> None:
    ckpt = save_checkpoint(tmp_path / "model.safetensors", _tiny(), _meta())
    assert Predictor(ckpt, device="cpu").backend == "onnxruntime"  # auto on CPU
    assert len(list((tmp_path / ".amaqc-onnx").glob("*.onnx"))) == 1


def test_auto_keeps_an_in_memory_network_on_torch() -> None:
    """No file, no cache: an export would cost more than it saves for a one-off Predictor."""
    assert Predictor((_tiny(), _meta()), device="cpu").backend == "torch"


def test_torch_is_the_fallback_when_onnxruntime_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    ckpt = save_checkpoint(tmp_path / "model.safetensors", _tiny(), _meta())
    predictor = Predictor(ckpt, device="cpu", cache_dir=tmp_path / "cache")
    assert predictor.backend == "torch"
    assert 0.0 <= predictor.predict(_slices(count=2))[0].probability <= 1.0
    assert not (tmp_path / "cache").exists()
    with pytest.raises(BackendUnavailable, match="onnxruntime is not installed"):
        Predictor(ckpt, device="cpu", backend="onnxruntime")


@needs_ort
def test_a_failing_export_leaves_auto_on_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: object, **_kwargs: object) -> bytes:
        raise RuntimeError("exporter bug")

    monkeypatch.setattr("model.backends.export_onnx", broken)
    ckpt = save_checkpoint(tmp_path / "model.safetensors", _tiny(), _meta())
    assert Predictor(ckpt, device="cpu").backend == "torch"
    with pytest.raises(RuntimeError, match="exporter bug"):
        Predictor(ckpt, device="cpu", backend="onnxruntime")


def test_onnx_runtime_is_refused_on_a_gpu_and_unknown_backends_are_named() -> None:
    with pytest.raises(BackendUnavailable, match="runs on the CPU"):
        make_scorer(_tiny(), patch_size=32, device=torch.device("cuda"), backend="onnxruntime")
    with pytest.raises(ValueError, match="'tensorrt'"):
        make_scorer(_tiny(), patch_size=32, device=torch.device("cpu"), backend="tensorrt")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_uses_torch_on_cuda() -> None:
    predictor = Predictor((_tiny(), _meta()), device="cuda")
    assert predictor.backend == "torch"
    assert len(predictor.predict(_slices(count=2))) == 2


@needs_ort
def test_served_sessions_do_not_spin_unless_asked() -> None:
    """ONNX Runtime's threads spin-wait by default; the worker's sessions (the network's, the
    spectral networks') share the cores with the IQM panel, so they are made without it."""
    predictor = Predictor((_tiny(), _meta()), device="cpu", backend="onnxruntime")
    options = predictor.scorer.session.get_session_options()  # type: ignore[attr-defined]
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert SPINNING is False
    with_spin = cpu_session(export_onnx(_tiny(), 32), spinning=True).get_session_options()
    assert with_spin.get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_run_in_lanes_splits_runs_side_by_side_and_keeps_the_order() -> None:
    seen: list[tuple[int, str]] = []

    def run(x: np.ndarray) -> np.ndarray:
        seen.append((len(x), threading.current_thread().name))
        return x * 10

    x = np.arange(7.0)
    np.testing.assert_array_equal(run_in_lanes(run, x, 3), x * 10)
    assert sorted(n for n, _ in seen) == [2, 2, 3]
    assert all(name.startswith("amaqc-onnx-lane") for _, name in seen)
    seen.clear()
    np.testing.assert_array_equal(run_in_lanes(run, x[:1], 4), x[:1] * 10)  # one row: one run
    np.testing.assert_array_equal(run_in_lanes(run, x, 1), x * 10)
    assert [n for n, _ in seen] == [1, 7] and all(
        name == threading.current_thread().name for _, name in seen
    )


@needs_ort
def test_served_sessions_run_in_single_threaded_lanes_with_the_same_numbers() -> None:
    """The Predictor's ONNX Runtime sessions (network and spectral networks) run each call as
    :func:`lane_count` single-threaded runs side by side; the probabilities do not change."""
    predictor = Predictor((_tiny(), _meta()), device="cpu", backend="onnxruntime")
    scorer = predictor.scorer
    assert isinstance(scorer, OnnxScorer)
    assert scorer.lanes == lane_count() == (LANES or torch.get_num_threads())
    if scorer.lanes > 1:
        assert scorer.session.get_session_options().intra_op_num_threads == 1
    patches = torch.from_numpy(
        np.stack([make_phantom(32), phantom(32, seed=1), phantom(32, seed=2)])[:, None]
    ).float()
    one = OnnxScorer(export_onnx(_tiny(), 32), lanes=1)
    for lanes in (2, 3):
        laned = OnnxScorer(export_onnx(_tiny(), 32), lanes=lanes)
        assert laned.session.get_session_options().intra_op_num_threads == 1
        np.testing.assert_allclose(laned(patches).numpy(), one(patches).numpy(), atol=1e-6)
