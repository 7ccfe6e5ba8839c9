"""Per-epoch snapshots and their weight average (``amaqc train --snapshots``, ``amaqc average``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from app.cli import app
from model import load_checkpoint, read_metadata
from tests.training.test_train import _cfg
from tests.utils.datasets import tiny_dataset
from training.fit.average import average_checkpoints, average_weights
from training.fit.train import TrainConfig, config_from_json, train


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> TrainConfig:
    """Three epochs of a tiny run with every epoch's weights kept."""
    root = tmp_path_factory.mktemp("avg")
    cfg = _cfg(tiny_dataset(root / "data"), root / "m.safetensors", epochs=3, snapshots=True)
    train(cfg)
    return cfg


def _snapshots(cfg: TrainConfig) -> list[Path]:
    return sorted(cfg.snapshot_dir.glob("epoch*.safetensors"))


def test_snapshots_hold_every_epoch_in_float32_and_the_last_is_the_final_state(
    run: TrainConfig,
) -> None:
    snaps = _snapshots(run)
    assert [p.name for p in snaps] == [f"epoch{i:03d}.safetensors" for i in range(3)]
    assert [read_metadata(p).training["best_epoch"] for p in snaps] == [0, 1, 2]
    last = load_file(str(snaps[-1]))
    state = load_file(str(run.state_dir / "tensors.safetensors"))
    assert all(torch.equal(last[k], state[f"model.{k}"]) for k in last)
    assert all(t.dtype != torch.float16 for t in last.values())
    first = load_file(str(snaps[0]))
    assert any(not torch.equal(first[k], last[k]) for k in last)  # the epochs differ


def test_average_weights_is_the_elementwise_mean_and_keeps_integer_buffers() -> None:
    nets = [torch.nn.BatchNorm1d(3) for _ in range(3)]
    for i, net in enumerate(nets):
        with torch.no_grad():
            net.weight.fill_(float(i))
        net.num_batches_tracked = torch.tensor(10 * (i + 1))
    avg = average_weights(nets)
    assert torch.equal(avg["weight"], torch.ones(3))
    assert int(avg["num_batches_tracked"]) == 10


def test_average_checkpoints_writes_a_checkpoint_with_remeasured_batch_norm(
    run: TrainConfig, tmp_path: Path
) -> None:
    snaps = _snapshots(run)
    out = tmp_path / "avg.safetensors"
    val = average_checkpoints(snaps, out, fp16=True)
    _, meta = load_checkpoint(out)
    assert meta.training["averaged"]["epochs"] == [0, 1, 2]
    assert meta.threshold == pytest.approx(val["threshold"])
    assert "val_roc_auc" in meta.metrics
    weights = load_file(str(out))
    assert all(t.dtype == torch.float16 for t in weights.values() if t.is_floating_point())
    nets = [load_checkpoint(p)[0] for p in snaps]
    mean = average_weights(nets)
    conv = next(k for k in weights if k.endswith("conv1.weight"))
    assert torch.allclose(weights[conv].float(), mean[conv], atol=1e-3)
    bn = next(k for k in weights if k.endswith("running_var"))
    assert not torch.allclose(weights[bn].float(), mean[bn], atol=1e-3)  # measured again

    kept = tmp_path / "kept.safetensors"
    average_checkpoints(snaps, kept, bn_patches=0)
    assert torch.allclose(load_file(str(kept))[bn], mean[bn])


def test_average_refuses_one_checkpoint_and_different_networks(
    run: TrainConfig, tmp_path: Path
) -> None:
    snaps = _snapshots(run)
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints(snaps[:1], tmp_path / "x.safetensors")
    other = _cfg(run.data, tmp_path / "o.safetensors", arch_config={"pyramid_width": 8})
    train(other)
    with pytest.raises(ValueError, match="arch_config differs"):
        average_checkpoints([snaps[0], other.out], tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_config_from_json_round_trips_and_ignores_unknown_fields(run: TrainConfig) -> None:
    recorded = read_metadata(run.out).training["config"]
    again = config_from_json({**recorded, "no_such_field": 1})
    assert again == run


def test_average_cli(run: TrainConfig, tmp_path: Path) -> None:
    out = tmp_path / "cli.safetensors"
    result = CliRunner().invoke(
        app, ["average", *map(str, _snapshots(run)), "--out", str(out), "--bn-patches", "20"]
    )
    assert result.exit_code == 0, result.output
    assert "averaged 3 checkpoints" in result.output and out.is_file()
    bad = CliRunner().invoke(app, ["average", str(_snapshots(run)[0]), "--out", str(out)])
    assert bad.exit_code != 0 and "at least two" in bad.output
