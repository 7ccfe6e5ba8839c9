"""The fused detector's IQM panel computed beside the network (``Predictor(overlap_panel=True)``,
the default) gives exactly what the serial path gives, fails as it fails, leaves nothing running
when the network fails, and never reuses a panel thread across a fork."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import model.predictor as predictor_module
from model import CheckpointMeta, Predictor, build_model, save_checkpoint
from model.fusion import FusionModel
from model.iqm import IQM_NAMES, Prepared
from tests.utils.iqm_reference import reference_slices
from tests.utils.service import TINY_NORMALIZATION

#: reads AMAResNet's outputs and IQMs, so a difference in either moves the probability
FUSION = FusionModel(
    features=("cnn_logit", "patch_mean", "patch_std", "iqm_snr", "iqm_qi1", "iqm_spike"),
    mean=(0.0, 0.5, 0.1, 1.0, 0.1, 1.5),
    scale=(1.0, 0.2, 0.1, 0.5, 0.1, 0.5),
    coef=(0.5, 0.3, -0.2, -0.4, 2.0, 1.0),
    intercept=0.1,
    threshold=0.5,
)


@pytest.fixture(scope="module")
def fused_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(0)
    meta = CheckpointMeta(
        arch="amaresnet18",
        arch_config={"pyramid_width": 8},
        patch_size=32,
        patch_stride=32,
        normalization={**TINY_NORMALIZATION, "size": 64},
        threshold=0.5,
        fusion=FUSION.to_dict(),
    )
    net = build_model("amaresnet18", pyramid_width=8).eval()
    return save_checkpoint(tmp_path_factory.mktemp("fused") / "f.safetensors", net, meta)


def _slices() -> list[np.ndarray]:
    """Real-looking slices of several sizes and dtypes (the IQM panel's pinned ones, without the
    non-finite one, which normalisation refuses) and a blank one, which has no panel."""
    pinned = [s for name, s in reference_slices().items() if name != "non_finite_96"]
    return [*pinned, np.zeros((64, 64), np.uint16)]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_overlapped_and_serial_verdicts_are_identical(fused_checkpoint: Path, backend: str) -> None:
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
    predictor = Predictor(fused_checkpoint, device="cpu", backend=backend)
    assert predictor.detector == "fused" and predictor.overlap_panel  # the default
    slices = _slices()
    overlapped = predictor.predict(slices)
    predictor.overlap_panel = False
    serial = predictor.predict(slices)
    assert len(overlapped) == len(serial) == len(slices)
    for a, b in zip(overlapped, serial, strict=True):
        assert a.probability == b.probability
        assert a.cnn_probability == b.cnn_probability
        assert a.label == b.label
        np.testing.assert_array_equal(a.patch_probs, b.patch_probs)
        assert a.iqms == b.iqms  # same floats, not approximately
    assert sum(p.iqms is None for p in serial) == 1  # the blank slice
    assert all(set(p.iqms) == set(IQM_NAMES) for p in serial if p.iqms is not None)
    # and one slice alone, the worker's smallest call
    (alone,) = Predictor(fused_checkpoint, device="cpu", backend=backend).predict(slices[0])
    assert alone.iqms == serial[0].iqms
    # the network's own float arithmetic may differ with the batch (oneDNN picks its kernels
    # by batch size and CPU: 2e-9 on a Xeon, 0 on an EPYC); the panel must not
    assert alone.probability == pytest.approx(serial[0].probability, rel=1e-6, abs=1e-9)


def test_the_panel_runs_on_the_panel_thread_only_when_overlapped(
    fused_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    from model.iqm import iqms_of as real

    def recording(prepared: Prepared) -> dict[str, float]:
        threads.append(threading.current_thread().name)
        return real(prepared)

    monkeypatch.setattr("model.predictor.iqms_of", recording)
    predictor = Predictor(fused_checkpoint, device="cpu", backend="torch")
    predictor.predict(_slices()[:2])
    assert len(threads) == 2 and all(t.startswith("amaqc-iqm-panel") for t in threads)
    threads.clear()
    Predictor(fused_checkpoint, device="cpu", backend="torch", overlap_panel=False).predict(
        _slices()[:2]
    )
    assert threads == [threading.current_thread().name] * 2


@pytest.mark.parametrize("overlap", [True, False])
def test_a_panel_error_propagates_and_a_value_error_means_no_panel(
    fused_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, overlap: bool
) -> None:
    predictor = Predictor(fused_checkpoint, device="cpu", backend="torch", overlap_panel=overlap)
    slices = _slices()[:3]

    def broken(prepared: Prepared) -> dict[str, float]:
        raise RuntimeError("panel broke")

    monkeypatch.setattr("model.predictor.iqms_of", broken)
    with pytest.raises(RuntimeError, match="panel broke"):
        predictor.predict(slices)

    def unusable(prepared: Prepared) -> dict[str, float]:
        raise ValueError("too small")

    monkeypatch.setattr("model.predictor.iqms_of", unusable)
    preds = predictor.predict(slices)
    assert [p.iqms for p in preds] == [None] * 3
    assert all(0.0 <= p.probability <= 1.0 for p in preds)


def test_a_network_error_wins_and_leaves_no_panel_running(
    fused_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on the serial path, the network's exception is the one raised (the panel's own, here
    also an error, is not), and predict returns only once the panel's work is over."""
    finished: list[int] = []

    def slow_and_broken(prepared: Prepared) -> dict[str, float]:
        time.sleep(0.05)
        finished.append(1)
        if len(finished) == 3:
            raise RuntimeError("panel broke too")
        return {}

    def network_down(patches: object) -> object:
        raise OSError("network down")

    monkeypatch.setattr("model.predictor.iqms_of", slow_and_broken)
    predictor = Predictor(fused_checkpoint, device="cpu", backend="torch")
    monkeypatch.setattr(predictor, "patch_probabilities", network_down)
    with pytest.raises(OSError, match="network down"):
        predictor.predict(_slices()[:3])
    assert len(finished) == 3  # nothing of the call still runs


def test_the_panel_pool_is_made_again_in_a_forked_child(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = predictor_module.panel_pool()
    assert predictor_module.panel_pool() is pool  # one per process
    assert pool.submit(os.getpid).result(timeout=10) == os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: -1)  # "after a fork"
    child_pool = predictor_module.panel_pool()
    assert child_pool is not pool
    assert child_pool.submit(lambda: 42).result(timeout=10) == 42
    assert predictor_module.panel_pool() is child_pool


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_real_forked_child_gets_a_working_panel_thread() -> None:
    """A prefork Celery child inherits the parent's executor but not its thread: the child's
    first panel must not wait forever on a thread that does not exist there."""
    assert predictor_module.panel_pool().submit(lambda: 1).result(timeout=10) == 1  # parent's
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running pytest's teardown
        try:
            ok = predictor_module.panel_pool().submit(lambda: 7).result(timeout=10) == 7
            os.write(write, b"ok" if ok else b"bad")
        finally:
            os._exit(0)
    os.close(write)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child's panel never ran")
        assert os.read(read, 16) == b"ok"
    finally:
        os.close(read)
