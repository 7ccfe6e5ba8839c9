from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app

runner = CliRunner()


def _commands() -> list[str]:
    return sorted(c.name or c.callback.__name__ for c in app.registered_commands)  # type: ignore[union-attr]


def test_top_level_help_lists_every_subcommand() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in _commands():
        assert name in result.output


@pytest.mark.parametrize("name", _commands())
def test_every_subcommand_has_help(name: str) -> None:
    result = runner.invoke(app, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_models_lists_the_four_variants() -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0
    for name in ("resnet18", "resnet18_se", "resnet18_pyramid", "amaresnet18"):
        assert name in result.output


def test_info_on_a_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["info", str(tmp_path / "none.safetensors")])
    assert result.exit_code == 2
    assert "no such checkpoint" in result.output
    assert "Traceback" not in result.output


def test_info_shows_threshold_and_metrics(tmp_path: Path) -> None:
    from model import CheckpointMeta, build_model, save_checkpoint

    meta = CheckpointMeta(arch="resnet18", threshold=0.3125, metrics={"roc_auc": 0.97})
    path = save_checkpoint(tmp_path / "r.safetensors", build_model("resnet18"), meta)
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "0.3125" in result.output and "roc_auc" in result.output


def test_info_names_the_spectral_network_or_each_member_of_its_ensemble(tmp_path: Path) -> None:
    from app.cli.about import spectral_summary
    from tests.utils.spectral import spectral_checkpoint_file

    for members, want in ((1, "1 network: seeds [1]"), (3, "ensemble of 3 networks")):
        path = spectral_checkpoint_file(tmp_path / f"s{members}.safetensors", members=members)
        result = runner.invoke(app, ["info", str(path)], terminal_width=200)
        assert result.exit_code == 0, result.output
        assert "spectral network" in result.output and want in result.output
    info = {"members": [{"seeds": [1], "epochs": 5}, {"seeds": [8, 9], "epochs": 4}]}
    line = spectral_summary({"members": 2, "info": info})
    assert line == (
        "ensemble of 2 networks (mean logit): seeds [1], 5 epochs; seeds [8, 9], 4 epochs"
    )


@pytest.mark.parametrize(
    ("flag", "unit"), [("--slice-level", "slices/s"), ("--no-realism", "patches/s")]
)
def test_train_reports_each_epoch_and_writes_the_checkpoint(
    tmp_path: Path, flag: str, unit: str
) -> None:
    from model import read_metadata
    from tests.utils.datasets import tiny_dataset

    data = tiny_dataset(tmp_path / "tiny")
    out = tmp_path / "m.safetensors"
    args = ["train", "--data", str(data), "--out", str(out), "--arch", "resnet18", "--epochs", "1"]
    args += ["--samples-per-epoch", "20", "--batch-size", "10", "--patch", "32", "--size", "64"]
    result = runner.invoke(app, [*args, "--workers", "0", flag])
    assert result.exit_code == 0, result.output
    assert "epoch 1: loss" in result.output and unit in result.output
    assert read_metadata(out).training["config"]["slice_level"] is (flag == "--slice-level")


def test_info_says_whether_the_network_serves_as_int8(tmp_path: Path) -> None:
    import shutil

    served = Path(__file__).resolve().parents[1] / "model" / "weights" / "amaqc-default.safetensors"
    result = runner.invoke(app, ["info", str(served)], terminal_width=250)
    assert result.exit_code == 0, result.output
    assert "int8 network" in result.output and "accepted (largest held-out" in result.output
    copy = shutil.copy(served, tmp_path / "copy.safetensors")  # same bytes, no record beside
    result = runner.invoke(app, ["info", str(copy)], terminal_width=250)
    assert "none measured for this file" in result.output

    from model.backends import file_digest
    from model.int8 import AucChange, Int8Record, shipped_folder, write_int8

    rejected = Int8Record(file_digest(copy), [AucChange("test", "all", 40, 0.8, 0.79)])
    shipped_folder(copy).mkdir()
    write_int8(shipped_folder(copy), rejected, None)
    result = runner.invoke(app, ["info", str(copy)], terminal_width=250)
    assert "not served" in result.output and "float32" in result.output
