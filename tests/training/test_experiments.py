"""The paper's experiments: plan composition (pure), aggregation and selection (pure), and
``amaqc ablation`` / ``amaqc compare --quick`` end to end on a tiny dataset, resumed."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from app.cli import app
from model import load_checkpoint, read_metadata
from tests.utils.datasets import tiny_dataset
from training.experiments.sweeps import (
    COMPARE_MODELS,
    DICE_WEIGHTS,
    RunSpec,
    Sweep,
    SweepSettings,
    ablation_plan,
    aggregate,
    compare_plan,
    parse_budget,
    select_best_beta,
    unique_runs,
)

runner = CliRunner()


# --- the plans, as pure functions ----------------------------------------------------------


def test_ablation_plan_is_4_plus_10_plus_4_columns_per_seed() -> None:
    plan = ablation_plan([0, 1, 2], best_beta=0.3)
    per_table = Counter(e.table for e in plan)
    assert per_table == {"variants_ce": 12, "dice_sweep": 30, "variants_best": 12}
    for seed in (0, 1, 2):
        mine = [e for e in plan if e.run.seed == seed]
        assert len(mine) == 4 + 10 + 4
        # Dice 0.0 is AMAResNet with CE only, and AMAResNet at the best pair is the Dice-0.3
        # column: both are trained once.
        assert len(unique_runs(mine)) == 16
    assert sorted({e.run.beta for e in plan if e.table == "dice_sweep"}) == list(DICE_WEIGHTS)
    assert all(e.run.alpha + e.run.beta == pytest.approx(1.0) for e in plan)
    assert {e.run.beta for e in plan if e.table == "variants_ce"} == {0.0}
    assert {(e.run.alpha, e.run.beta) for e in plan if e.table == "variants_best"} == {(0.7, 0.3)}
    assert {e.run.arch for e in plan if e.table == "dice_sweep"} == {"amaresnet18"}


def test_ablation_plan_without_a_best_weight_has_no_third_stage() -> None:
    plan = ablation_plan([0], weights=[0.0, 0.5])
    assert Counter(e.table for e in plan) == {"variants_ce": 4, "dice_sweep": 2}


def test_compare_plan_is_seven_models_amaresnet_with_the_joint_loss() -> None:
    plan = compare_plan([0, 1])
    assert len(plan) == 14 and len(unique_runs(plan)) == 14
    assert [e.run.arch for e in plan[:7]] == list(COMPARE_MODELS)
    weights = {e.run.arch: (e.run.alpha, e.run.beta) for e in plan}
    assert weights.pop("amaresnet18") == (0.7, 0.3)
    assert set(weights.values()) == {(1.0, 0.0)}


def test_compare_plan_refuses_an_unknown_model_naming_it() -> None:
    with pytest.raises(ValueError, match="yolov5"):
        compare_plan([0], ["vgg16", "yolov5"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2ep", (2, None)), ("5m", (10_000, 300.0)), ("1.5h", (10_000, 5400.0))],
)
def test_budget_is_epochs_or_time(text: str, expected: tuple[int, float | None]) -> None:
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["", "0ep", "2", "5 parsecs", "1.5ep"])
def test_a_bad_budget_is_refused_quoting_it(text: str) -> None:
    with pytest.raises(ValueError, match="budget"):
        parse_budget(text)


# --- aggregation and selection -------------------------------------------------------------


def _result(f1: float, val_f1: float) -> dict[str, Any]:
    metrics = {"accuracy": f1, "precision": f1, "recall": f1, "f1": f1, "roc_auc": None}
    return {"metrics": metrics, "train": {"val": {"f1": val_f1, "roc_auc": 0.5}}}


def test_aggregate_gives_mean_and_sample_sd_over_seeds() -> None:
    plan = compare_plan([0, 1], ["vgg16"])
    results = {e.run.key: _result(f1, 0.5) for e, f1 in zip(plan, (0.5, 0.7), strict=True)}
    (row,) = aggregate(plan, results)
    assert row["n"] == 2 and row["seeds"] == [0, 1]
    assert row["metrics"]["f1"]["mean"] == pytest.approx(0.6)
    assert row["metrics"]["f1"]["std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert row["metrics"]["roc_auc"]["mean"] is None  # undefined, not zero


def test_the_best_dice_weight_is_chosen_on_validation_not_on_the_test_split() -> None:
    plan = ablation_plan([0], weights=[0.0, 0.3, 0.5])
    test_f1 = {0.0: 0.6, 0.3: 0.7, 0.5: 0.9}
    val_f1 = {0.0: 0.6, 0.3: 0.8, 0.5: 0.7}
    results = {e.run.key: _result(test_f1[e.run.beta], val_f1[e.run.beta]) for e in plan}
    assert select_best_beta(aggregate(plan, results)) == 0.3


def test_a_results_folder_of_other_settings_is_refused_naming_them(tmp_path: Path) -> None:
    Sweep(SweepSettings.quick(tmp_path), tmp_path / "out", "compare")
    Sweep(SweepSettings.quick(tmp_path, device="cpu"), tmp_path / "out", "compare")  # same
    with pytest.raises(ValueError, match=r"different settings \['budget'\]"):
        Sweep(SweepSettings.quick(tmp_path, budget="2ep"), tmp_path / "out", "compare")
    with pytest.raises(ValueError, match="experiment 'compare'"):
        Sweep(SweepSettings.quick(tmp_path), tmp_path / "out", "ablation")


def test_run_keys_name_arch_weights_and_seed() -> None:
    assert RunSpec("vgg16", 0.7, 0.3, 2).key == "vgg16_ce0.70_dice0.30_s2"


# --- end to end, through the CLI -----------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_dataset(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def compare_out(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare")
    result = runner.invoke(
        app, ["compare", "--data", str(data), "--out", str(out), "--quick", "--seeds", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "7 runs (7 trained, 0 reused)" in result.output
    return out


@pytest.fixture(scope="module")
def ablation_out(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ablation")
    args = ["ablation", "--data", str(data), "--out", str(out), "--quick", "--seeds", "1"]
    # The third stage's weight is given, so that it trains the three other variants anew (the
    # choice on validation is tested above as a pure function).
    result = runner.invoke(app, [*args, "--weights", "0.0,0.5", "--best-beta", "0.5"])
    assert result.exit_code == 0, result.output
    return out


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _assert_png(path: Path) -> None:
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 200


def _assert_every_column_was_trained_and_evaluated(out: Path, rows: list[dict]) -> None:
    for row in rows:
        for key in row["runs"]:
            run = out / "runs" / key
            meta = read_metadata(run / "model.safetensors")
            assert meta.arch == row["arch"]
            config = meta.training["config"]
            assert (config["alpha"], config["beta"]) == (row["alpha"], row["beta"])
            load_checkpoint(run / "model.safetensors")  # the weights match the arch
            assert json.loads((run / "train.json").read_text())["epochs_run"] >= 1
            result = json.loads((run / "result.json").read_text())
            assert len(result["probs"]) == result["metrics"]["n"] == 6  # 3 clean + 3 artifact
            auc = roc_auc_score(result["labels"], result["probs"])  # what the ROC plot shows
            assert auc == pytest.approx(result["metrics"]["roc_auc"])
            assert result["metrics"]["f1"] == pytest.approx(row["metrics"]["f1"]["mean"])
            assert result["metrics"]["threshold"] == pytest.approx(meta.threshold)


@pytest.mark.slow
def test_compare_writes_table_csv_json_and_plots(compare_out: Path) -> None:
    summary = json.loads((compare_out / "compare.json").read_text())
    rows = summary["rows"]
    assert [r["column"] for r in rows] == list(COMPARE_MODELS.values())
    _assert_every_column_was_trained_and_evaluated(compare_out, rows)
    table = _read_csv(compare_out / "compare.csv")
    assert [t["column"] for t in table] == [r["column"] for r in rows]
    for t, r in zip(table, rows, strict=True):
        assert float(t["f1_mean"]) == pytest.approx(r["metrics"]["f1"]["mean"], abs=1e-6)
    assert len(_read_csv(compare_out / "compare-runs.csv")) == 7
    md = (compare_out / "compare.md").read_text()
    for label in [*COMPARE_MODELS.values(), "YOLOv5 (not rerun)"]:
        assert label in md
    for line in ("| Acc % |", "| Precision % |", "| Recall % |", "| F1 % |"):
        assert line in md
    assert "| *paper F1 %* |" in md and "80.11" in md and "79.81" in md
    _assert_png(compare_out / "compare-roc.png")
    _assert_png(compare_out / "compare-bars.png")


@pytest.mark.slow
def test_ablation_runs_three_stages_and_writes_the_tables(ablation_out: Path) -> None:
    summary = json.loads((ablation_out / "ablation.json").read_text())
    rows = summary["rows"]
    best = summary["best_beta"]
    assert best == 0.5 and summary["best_beta_chosen_by"] == "given"
    assert Counter(r["table"] for r in rows) == {
        "variants_ce": 4,
        "dice_sweep": 2,
        "variants_best": 4,
    }
    assert {r["beta"] for r in rows if r["table"] == "variants_best"} == {best}
    _assert_every_column_was_trained_and_evaluated(ablation_out, rows)
    trained = {p.name for p in (ablation_out / "runs").iterdir()}
    assert trained == {key for r in rows for key in r["runs"]}  # nothing trained twice or extra
    assert len(trained) == 4 + 1 + 3  # Dice 0.0 = AMAResNet CE only; AMAResNet at 0.5 shared
    assert len(_read_csv(ablation_out / "ablation.csv")) == 10
    md = (ablation_out / "ablation.md").read_text()
    assert "| *paper F1 %* | 68.03 | 40.93 | 65.42 | 74.23 |" in md
    assert f"**Dice {best:.1f}** (selected)" in md
    assert "| ResNet18 |" in md and "| worse |" in md  # the direction check
    for name in ("roc", "bars", "dice-sweep"):
        _assert_png(ablation_out / f"ablation-{name}.png")


@pytest.mark.slow
def test_a_rerun_skips_finished_runs_and_redoes_a_missing_one(
    data: Path, compare_out: Path
) -> None:
    keep = compare_out / "runs" / "vgg16_ce1.00_dice0.00_s0" / "result.json"
    before = keep.read_bytes()
    args = ["compare", "--data", str(data), "--out", str(compare_out), "--quick", "--seeds", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "7 runs (0 trained, 7 reused)" in result.output
    shutil.rmtree(compare_out / "runs" / "cnn2d_ce1.00_dice0.00_s0")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "7 runs (1 trained, 6 reused)" in result.output
    assert "cnn2d_ce1.00_dice0.00_s0: F1" in result.output
    assert keep.read_bytes() == before


@pytest.mark.slow
def test_a_run_stopped_before_its_evaluation_is_evaluated_not_retrained(
    data: Path, compare_out: Path
) -> None:
    run = compare_out / "runs" / "unet_encoder_ce1.00_dice0.00_s0"
    ckpt = (run / "model.safetensors").read_bytes()
    (run / "result.json").unlink()
    args = ["compare", "--data", str(data), "--out", str(compare_out), "--quick", "--seeds", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "7 runs (0 trained, 6 reused, 1 evaluated from an earlier training)" in result.output
    assert (run / "model.safetensors").read_bytes() == ckpt
    assert (run / "result.json").is_file()


def test_a_rerun_with_another_budget_is_a_one_line_error(data: Path, tmp_path: Path) -> None:
    Sweep(SweepSettings.quick(data), tmp_path, "compare")
    args = ["compare", "--data", str(data), "--out", str(tmp_path), "--quick", "--budget", "3ep"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "different settings ['budget']" in result.output
    assert "Traceback" not in result.output


def test_a_missing_dataset_is_a_one_line_error(tmp_path: Path) -> None:
    args = ["ablation", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--quick"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "no such dataset folder" in result.output


@pytest.mark.slow
def test_publish_fills_the_document_between_its_markers(
    data: Path, compare_out: Path, tmp_path: Path
) -> None:
    doc = tmp_path / "docs" / "results.md"
    doc.parent.mkdir()
    doc.write_text(
        "# Results\n\nhand-written intro\n\n<!-- compare:start -->\nmeasured: pending\n"
        "<!-- compare:end -->\n\nhand-written reading\n"
    )
    args = ["compare", "--data", str(data), "--out", str(compare_out), "--quick", "--seeds", "1"]
    result = runner.invoke(app, [*args, "--publish", str(doc)])
    assert result.exit_code == 0, result.output
    text = doc.read_text()
    assert "measured: pending" not in text
    assert text.startswith("# Results\n\nhand-written intro\n")
    assert text.rstrip().endswith("hand-written reading")
    assert "| DenseNet-121 |" in text
    assert "![ROC curves of all models](img/compare-roc.png)" in text
    _assert_png(doc.parent / "img" / "compare-roc.png")
