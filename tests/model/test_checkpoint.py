from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from model import (
    CheckpointError,
    CheckpointMeta,
    build_model,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)


def _meta(**overrides: object) -> CheckpointMeta:
    base: dict = {
        "arch": "amaresnet18",
        "arch_config": {"pyramid_width": 16},
        "threshold": 0.42,
        "metrics": {"f1": 0.9},
    }
    base.update(overrides)
    return CheckpointMeta(**base)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    model = build_model("amaresnet18", pyramid_width=16).eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, _meta())
    return path, model


def test_round_trip_restores_weights_and_metadata(saved: tuple[Path, torch.nn.Module]) -> None:
    path, model = saved
    loaded, meta = load_checkpoint(path)
    assert meta.arch == "amaresnet18" and meta.threshold == pytest.approx(0.42)
    assert meta.metrics == {"f1": 0.9} and meta.amaqc_version and meta.created_at
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training


def test_fp16_checkpoint_is_half_the_size_and_close(tmp_path: Path) -> None:
    model = build_model("amaresnet18", pyramid_width=16).eval()
    full = save_checkpoint(tmp_path / "f32.safetensors", model, _meta())
    half = save_checkpoint(tmp_path / "f16.safetensors", model, _meta(), dtype=torch.float16)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded, _ = load_checkpoint(half)
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(torch.softmax(model(x), 1), torch.softmax(loaded(x), 1), atol=2e-2)


def test_file_is_plain_safetensors_with_json_metadata(saved: tuple[Path, torch.nn.Module]) -> None:
    path, _ = saved
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8 : 8 + header_len])
    meta = json.loads(header["__metadata__"]["amaqc"])
    assert meta["arch"] == "amaresnet18" and meta["patch_size"] == 128


def test_tensors_not_matching_the_declared_arch_are_refused(tmp_path: Path) -> None:
    model = build_model("resnet18")  # no SE, no pyramid
    path = save_checkpoint(tmp_path / "lie.safetensors", model, _meta())  # claims amaresnet18
    with pytest.raises(CheckpointError, match="missing tensor.*pyramid|missing tensor.*se"):
        load_checkpoint(path)


def test_shape_mismatch_is_named(tmp_path: Path) -> None:
    model = build_model("amaresnet18", pyramid_width=32)
    path = save_checkpoint(tmp_path / "w.safetensors", model, _meta())  # meta says width 16
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_checkpoint(path)


def test_truncated_file_is_refused(saved: tuple[Path, torch.nn.Module], tmp_path: Path) -> None:
    path, _ = saved
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        load_checkpoint(cut)


def test_missing_metadata_key_is_named(tmp_path: Path) -> None:
    meta = json.loads(_meta().to_json())
    del meta["threshold"]
    path = tmp_path / "nokey.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"amaqc": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="missing key.*threshold"):
        read_metadata(path)


def test_safetensors_without_amaqc_metadata_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(1)}, str(path))
    with pytest.raises(CheckpointError, match="no amaqc metadata"):
        load_checkpoint(path)


def test_a_pickle_is_refused_not_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"x": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.safetensors")


@pytest.mark.parametrize(
    ("overrides", "name"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"aggregation": {"how": "median"}}, "aggregation"),
        ({"patch_stride": 256}, "patch_stride"),
    ],
)
def test_invalid_metadata_values_are_named(overrides: dict, name: str) -> None:
    with pytest.raises(CheckpointError, match=name):
        _meta(**overrides)
