"""``amaqc quantize``: a tiny checkpoint quantised on a tiny dataset is accepted only by the rule,
serves as int8 afterwards, and a rejection leaves nothing that could serve."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from app.cli import app
from model import Predictor
from model.backends import file_digest, onnxruntime_available
from model.int8 import int8_paths, read_record, shipped_folder
from tests.utils.images import phantom, write_png16
from tests.utils.service import tiny_amaresnet
from training.experiments.quantize import run_quantisation, split_aucs

pytestmark = pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime not installed")

#: int8 slice probabilities within this of float32's (a random tiny network: ~0.003)
INT8_TOLERANCE = 0.02


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset, checkpoint): 6 clean training phantoms; a test split of 8 clean phantoms and 8
    noise images, which an untrained tiny network already ranks apart by a wide margin (so
    int8's small errors cannot swap a pair and the AUC stays put); a patch-32 AMAResNet."""
    root = tmp_path_factory.mktemp("quantize")
    data = root / "ds"
    for i in range(6):
        write_png16(data / "train" / "clean" / f"p{i}.png", phantom(96, seed=i))
    for i in range(8):
        write_png16(data / "test" / "clean" / f"p{i}.png", phantom(96, seed=100 + i))
        noise = np.random.default_rng(i).random((96, 96))
        write_png16(data / "test" / "artifact" / f"a{i}.png", noise)
    (data / "manifest.csv").write_text("path,label\n")  # what the CLI looks for
    return data, tiny_amaresnet(root / "model.safetensors")


def test_an_accepted_quantisation_serves_int8_close_to_float32(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    data, ckpt = dataset
    record, path = run_quantisation(data, ckpt, cache_dir=tmp_path, calibration=32, speed_rounds=1)
    assert record.accepted and [a.split for a in record.aucs] == ["test"]  # absent splits skipped
    assert record.checkpoint_sha256 == file_digest(ckpt) and record.float_nodes > 0
    assert set(record.speed) == {"float32", "int8"}
    model_path, record_path = int8_paths(tmp_path, file_digest(ckpt))
    assert path == record_path and model_path.is_file()
    int8 = Predictor(ckpt, device="cpu", precision="auto", cache_dir=tmp_path)
    fp32 = Predictor(ckpt, device="cpu", precision="float32", cache_dir=tmp_path)
    assert (int8.backend, fp32.backend) == ("onnxruntime-int8", "onnxruntime")
    slices = [phantom(96, seed=200 + i) for i in range(4)]
    diffs = [
        abs(a.probability - b.probability)
        for a, b in zip(int8.predict(slices), fp32.predict(slices), strict=True)
    ]
    assert max(diffs) < INT8_TOLERANCE


def test_a_rejected_quantisation_writes_no_accepted_record_and_no_int8_file(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    data, ckpt = dataset
    # a bound of 0 fails every change, even none: the rejection path, deterministically
    record, path = run_quantisation(
        data, ckpt, cache_dir=tmp_path, calibration=16, max_auc_change=0.0, speed_rounds=0
    )
    assert not record.accepted and record.onnx_sha256 is None
    model_path, _ = int8_paths(tmp_path, file_digest(ckpt))
    stored = read_record(tmp_path, file_digest(ckpt))
    assert path.is_file() and stored is not None and not stored.accepted
    assert not model_path.exists()
    assert Predictor(ckpt, device="cpu", precision="auto", cache_dir=tmp_path).precision == (
        "float32"
    )


def test_a_looser_rule_than_the_issue_is_refused(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    data, ckpt = dataset
    with pytest.raises(ValueError, match="max_auc_change"):
        run_quantisation(data, ckpt, cache_dir=tmp_path, max_auc_change=0.05)
    assert not list(tmp_path.iterdir())


def test_cli_prints_the_table_and_accepts(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    data, ckpt = dataset
    args = ["quantize", "--data", str(data), "--checkpoint", str(ckpt), "--cache-dir"]
    result = CliRunner().invoke(app, [*args, str(tmp_path), "--calibration", "16"])
    assert result.exit_code == 0, result.output
    assert "int8 accepted" in result.output and "float32" in result.output
    assert int8_paths(tmp_path, file_digest(ckpt))[0].is_file()


def test_cli_ship_writes_beside_the_checkpoint_and_drops_older_ones(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    data, original = dataset
    ckpt = Path(shutil.copy(original, tmp_path / "model.safetensors"))
    shipped = shipped_folder(ckpt)
    shipped.mkdir()
    stale = shipped / f"{'0' * 64}-e1-int8.json"  # a checkpoint published before this one
    stale.write_text("{}")
    args = ["quantize", "--data", str(data), "--checkpoint", str(ckpt), "--ship"]
    result = CliRunner().invoke(app, [*args, "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in shipped.iterdir()) == sorted(
        p.name for p in int8_paths(shipped, file_digest(ckpt))
    )
    assert not int8_paths(tmp_path / "cache", file_digest(ckpt))[1].exists()  # not the cache
    served = Predictor(ckpt, device="cpu", precision="auto", cache_dir=tmp_path / "cache")
    assert served.precision == "int8"


def test_cli_without_held_out_splits_is_a_one_line_error(
    dataset: tuple[Path, Path], tmp_path: Path
) -> None:
    data, ckpt = dataset
    args = ["quantize", "--data", str(data), "--checkpoint", str(ckpt), "--split", "transfer"]
    result = CliRunner().invoke(app, [*args, "--cache-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "none of the held-out splits" in result.output
    assert not list(tmp_path.iterdir())


def test_cli_refuses_int8_that_moves_an_auc_and_exits_1(
    dataset: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, ckpt = dataset

    def worse(split: str, samples: Any, float32: np.ndarray, int8: np.ndarray) -> Any:
        # int8 probabilities that rank every slice the other way round: AUC -> 1 - AUC, a
        # change of |1 - 2 AUC| (here 1: the untrained network ranks the noise images last)
        return split_aucs(split, samples, float32, 1.0 - int8)

    monkeypatch.setattr("training.experiments.quantize.split_aucs", worse)
    args = ["quantize", "--data", str(data), "--checkpoint", str(ckpt), "--cache-dir"]
    result = CliRunner().invoke(app, [*args, str(tmp_path), "--calibration", "16"])
    assert result.exit_code == 1, result.output
    assert "int8 rejected" in result.output
    model_path, record_path = int8_paths(tmp_path, file_digest(ckpt))
    assert record_path.is_file() and not model_path.exists()
