from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model import Predictor, load_checkpoint, read_metadata
from tests.utils.datasets import tiny_dataset
from training.fit.train import LR_FLOOR, TrainConfig, scheduled_lr, train

ROOT = Path(__file__).resolve().parents[2]


def _cfg(data: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict = dict(
        data=data,
        out=out,
        epochs=1,
        samples_per_epoch=20,
        batch_size=10,
        patch=64,
        size=128,
        num_workers=0,
        arch_config={"pyramid_width": 16},
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_dataset(tmp_path_factory.mktemp("tiny"))


def test_one_epoch_writes_a_loadable_checkpoint_log_and_curves(data: Path, tmp_path: Path) -> None:
    cfg = _cfg(data, tmp_path / "m.safetensors")
    events: list[dict] = []
    result = train(cfg, on_progress=events.append)
    model, meta = load_checkpoint(result.checkpoint)
    assert meta.arch == "amaresnet18" and meta.patch_size == 64
    assert meta.normalization["size"] == 128
    assert 0.0 <= meta.threshold <= 1.0 and "val_f1" in meta.metrics
    assert meta.training["config"]["lr"] == 1e-3 and meta.training["config"]["batch_size"] == 10
    log = json.loads(cfg.log_path.read_text())
    assert len(log["history"]) == 1 and log["history"][0]["train_loss"] > 0
    assert cfg.curves_path.read_bytes()[:4] == b"\x89PNG"
    assert [e["event"] for e in events].count("step") == 2  # 20 samples / batch 10
    assert events[-1]["event"] == "epoch"
    (pred,) = Predictor((model, meta)).predict([torch.rand(100, 90).numpy()])
    assert 0 <= pred.probability <= 1


def test_cpu_training_flushes_subnormals(data: Path, tmp_path: Path) -> None:
    """Weights and Adam moments decayed below float32's normal range made a CPU fine-tune 3x
    slower after 14 epochs; training flushes such values to zero."""
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush subnormals")
    torch.set_flush_denormal(False)
    subnormal = torch.tensor([1e-39])
    assert (subnormal * 1.0).item() != 0.0  # kept by default
    train(_cfg(data, tmp_path / "m.safetensors"))
    assert (subnormal * 1.0).item() == 0.0


@pytest.mark.slow
def test_same_seed_same_weights(data: Path, tmp_path: Path) -> None:
    a = train(_cfg(data, tmp_path / "a.safetensors", seed=3)).checkpoint
    b = train(_cfg(data, tmp_path / "b.safetensors", seed=3)).checkpoint
    c = train(_cfg(data, tmp_path / "c.safetensors", seed=4)).checkpoint
    ta, tb, tc = (load_file(str(p)) for p in (a, b, c))
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    assert not all(torch.equal(ta[k], tc[k]) for k in ta)


@pytest.mark.slow
def test_resume_continues_where_it_stopped(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.safetensors"
    train(_cfg(data, out, epochs=1, patience=10))
    resumed = train(_cfg(data, out, epochs=2, patience=10, resume=True))
    assert [h.epoch for h in resumed.history] == [0, 1]
    straight = train(_cfg(data, tmp_path / "s.safetensors", epochs=2, patience=10))
    state_a = load_file(str(out.with_suffix(".state") / "tensors.safetensors"))
    state_b = load_file(str(tmp_path / "s.state" / "tensors.safetensors"))
    assert all(torch.allclose(state_a[k], state_b[k], atol=1e-6) for k in state_a)
    assert straight.history[1].train_loss == pytest.approx(resumed.history[1].train_loss, rel=1e-5)


def test_resume_with_a_different_config_is_refused(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.safetensors"
    train(_cfg(data, out))
    with pytest.raises(ValueError, match="different configuration"):
        train(_cfg(data, out, epochs=2, lr=1e-2, resume=True))


@pytest.mark.slow
def test_early_stopping_stops_after_patience(data: Path, tmp_path: Path) -> None:
    result = train(_cfg(data, tmp_path / "e.safetensors", epochs=6, patience=1, lr=1e-9))
    assert result.stopped.startswith("early stop")
    assert len(result.history) < 6


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"patch": 256}, "patch"),
        ({"lr": 0.0}, "lr"),
        ({"max_false_alarm_rate": 1.5}, "max_false_alarm_rate"),
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"keep": "first"}, "keep"),
    ],
)
def test_bad_config_is_refused_naming_the_field(tmp_path: Path, kw: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        _cfg(tmp_path, tmp_path / "m.safetensors", **kw)


def test_val_split_without_artifacts_gets_simulated_ones(data: Path, tmp_path: Path) -> None:
    result = train(_cfg(data, tmp_path / "v.safetensors"))
    meta = read_metadata(result.checkpoint)
    assert meta.training["data"]["val"]["artifact"] == meta.training["data"]["val"]["clean"] == 3


@pytest.mark.slow
def test_distributed_training_on_two_cpu_processes(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29533",
        "-m",
        "app",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--samples-per-epoch",
        "20",
        "--batch-size",
        "10",
        "--patch",
        "64",
        "--size",
        "128",
        "--workers",
        "0",
        "--distributed",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    meta = read_metadata(out)
    assert meta.training["world_size"] == 2
    load_checkpoint(out)
    assert proc.stdout.count("best epoch") == 1  # only rank 0 reports


def test_slice_level_logits_are_the_served_slice_probability(data: Path, tmp_path: Path) -> None:
    """Slice-level training scores a slice through the same grid and aggregation as the
    Predictor that will serve the checkpoint: train on what is served."""
    from model.preprocess import normalize_slice
    from training.fit.train import slice_logits

    cfg = _cfg(data, tmp_path / "m.safetensors", slice_level=True)
    result = train(cfg)
    model, meta = load_checkpoint(result.checkpoint)
    model.eval()
    raw = [torch.rand(128, 128).numpy() * 1000, torch.rand(150, 110).numpy()]
    served = [p.probability for p in Predictor((model, meta), device="cpu").predict(raw)]
    batch = torch.stack([normalize_slice(r, meta.norm) for r in raw])
    with torch.no_grad():
        trained = torch.softmax(slice_logits(model, batch, cfg), dim=1)[:, 1]
    assert trained.tolist() == pytest.approx(served, abs=1e-5)
    assert meta.training["config"]["slice_level"] is True


def test_cosine_schedule_anneals_from_lr_to_the_floor(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, tmp_path / "m.safetensors", lr=1e-3, lr_schedule="cosine")
    lrs = [scheduled_lr(cfg, step, 100) for step in range(100)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-3 * LR_FLOOR)
    assert lrs[50] == pytest.approx((1e-3 + 1e-3 * LR_FLOOR) / 2, rel=0.05)
    assert all(a > b for a, b in itertools.pairwise(lrs))
    constant = _cfg(tmp_path, tmp_path / "m.safetensors", lr=1e-3)
    assert {scheduled_lr(constant, step, 100) for step in range(100)} == {1e-3}


def test_cosine_training_sets_the_optimiser_lr_each_step(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.safetensors"
    result = train(_cfg(data, out, epochs=2, patience=10, lr_schedule="cosine"))
    # 2 epochs x 2 steps: the last step runs at the floor, the first epoch's last step above it
    assert result.history[1].lr == pytest.approx(1e-3 * LR_FLOOR)
    assert 1e-3 * LR_FLOOR < (result.history[0].lr or 0) < 1e-3
    state = json.loads((out.with_suffix(".state") / "state.json").read_text())
    assert state["config"]["lr_schedule"] == "cosine" and state["config"]["epochs"] == 2
    with pytest.raises(ValueError, match="different configuration"):  # schedule length changed
        train(_cfg(data, out, epochs=3, patience=10, lr_schedule="cosine", resume=True))


def test_keep_last_holds_the_final_epoch_and_never_stops_early(data: Path, tmp_path: Path) -> None:
    # lr 1e-9: validation never improves after epoch 1, so keep="best" would stop at epoch 2
    out = tmp_path / "k.safetensors"
    result = train(_cfg(data, out, epochs=3, patience=1, lr=1e-9, keep="last"))
    assert result.stopped == "epochs" and len(result.history) == 3
    assert result.best_epoch == 2 and read_metadata(out).training["best_epoch"] == 2
    state = load_file(str(out.with_suffix(".state") / "tensors.safetensors"))
    kept = load_file(str(out))
    assert all(torch.equal(kept[k], state[f"model.{k}"]) for k in kept)
