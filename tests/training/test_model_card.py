from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model import read_metadata
from tests.utils.datasets import tiny_dataset
from training.data.samples import Sample, load_split
from training.experiments.model_card import (
    END,
    START,
    compare_with,
    publish,
    site_calibrated,
    write_between_markers,
)
from training.fit.train import TrainConfig, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("card")
    data = tiny_dataset(root / "d", {"train": 4, "val": 2, "test": 2})
    for i in range(2):  # a transfer split with both classes
        src = data / "test" / "clean" / f"p{i}.png"
        (data / "transfer" / "clean").mkdir(parents=True, exist_ok=True)
        (data / "transfer" / "artifact").mkdir(parents=True, exist_ok=True)
        (data / "transfer" / "clean" / src.name).write_bytes(src.read_bytes())
    (data / "test" / "artifact").mkdir()
    (data / "test" / "artifact" / "a.png").write_bytes((data / "val/clean/p0.png").read_bytes())
    (data / "transfer" / "artifact" / "a.png").write_bytes((data / "val/clean/p1.png").read_bytes())
    cfg = TrainConfig(
        data=data,
        out=root / "m.safetensors",
        epochs=1,
        samples_per_epoch=10,
        batch_size=10,
        patch=64,
        size=128,
        num_workers=0,
        arch_config={"pyramid_width": 16},
    )
    return train(cfg).checkpoint, data


def test_publish_records_metrics_and_fills_the_card(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    ckpt, data = trained
    card = tmp_path / "card.md"
    card.write_text(
        "# header kept\n\n" + START + "\nSTALE-CONTENT\n" + END + "\n\n## Limitations\nmine\n"
    )
    out = tmp_path / "served.safetensors"
    results = publish(ckpt, data, out, card, tmp_path / "img", command="amaqc train ...")
    meta = read_metadata(out)
    for split in ("val", "test", "transfer"):
        assert meta.metrics[f"{split}_f1"] == results[split]["metrics"]["f1"]
    text = card.read_text()
    assert text.startswith("# header kept") and text.rstrip().endswith("mine")
    assert "STALE-CONTENT" not in text and "amaqc train ..." in text
    assert f"{meta.threshold:.3f}" in text
    assert (tmp_path / "img" / "model-roc.png").stat().st_size > 1000
    assert out.stat().st_size < 0.6 * ckpt.stat().st_size  # float16


def test_markers_are_added_to_a_new_card(tmp_path: Path) -> None:
    card = tmp_path / "new.md"
    write_between_markers(card, "measured\n")
    assert card.read_text() == f"{START}\nmeasured\n{END}\n"


def test_publish_against_the_checkpoint_it_replaces(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    ckpt, data = trained
    card = tmp_path / "card.md"
    out = tmp_path / "served.safetensors"
    publish(ckpt, data, out, card, tmp_path / "img", command="first")
    # the served file replaced by itself. (Its ROC-AUCs are not compared: this 1-epoch model
    # scores the 3 images nearly alike, so fp16 vs fp32 rounding can turn a tie into an order
    # and 0.5 into 0.0; test_a_checkpoint_compared_with_itself_differs_by_zero pins the maths.)
    results = publish(ckpt, data, out, card, tmp_path / "img", command="again", previous=out)
    for split in ("test", "transfer"):
        d = results[split]["vs_previous"]["all"]
        assert d["n"] == 3
        assert d["difference"] == pytest.approx(d["new"] - d["old"])
        assert d["ci_low"] <= d["difference"] <= d["ci_high"]
    assert "### Against the checkpoint it replaced" in card.read_text()


def test_a_checkpoint_compared_with_itself_differs_by_zero(trained: tuple[Path, Path]) -> None:
    _, data = trained
    samples = load_split(data, "test")
    probs = np.linspace(0.1, 0.9, len(samples))
    d = compare_with(samples, probs, probs)["all"]
    assert d["old"] == d["new"] and d["difference"] == 0.0
    assert d["ci_low"] == d["ci_high"] == 0.0
    worse = compare_with(samples, probs, probs[::-1])["all"]
    assert worse["difference"] == pytest.approx(worse["new"] - worse["old"]) != 0.0


def _samples(sources: list[str], labels: list[int]) -> list[Sample]:
    pixels = np.zeros((4, 4), dtype=np.float32)
    return [
        Sample(pixels, y, src, f"{i}.png", {"source": src, "severity": "severe" if y else ""})
        for i, (src, y) in enumerate(zip(sources, labels, strict=True))
    ]


def test_site_calibrated_gives_each_source_its_own_clean_only_threshold() -> None:
    # source "noisy" scores its clean slices high; a shared cut would flag them or miss "quiet"'s
    calib = _samples(["noisy"] * 20 + ["quiet"] * 20, [0] * 40)
    calib_probs = np.concatenate([np.linspace(0.5, 0.7, 20), np.linspace(0.0, 0.2, 20)])
    test = _samples(["noisy", "noisy", "quiet", "quiet"], [0, 1, 0, 1])
    probs = np.array([0.6, 0.9, 0.1, 0.4])  # quiet's artifact lies below noisy's clean scores
    (row,) = site_calibrated(
        calib, calib_probs, {"test": (test, probs)}, max_false_alarm_rate=0.05
    ).values()
    # 5 % of 20: the highest clean slice of each source may be flagged, the second may not
    assert np.sort(calib_probs[:20])[-2] < row["thresholds"]["noisy"] < calib_probs[:20].max()
    assert np.sort(calib_probs[20:])[-2] < row["thresholds"]["quiet"] < calib_probs[20:].max()
    assert row["confusion"] == {"tn": 2, "fp": 0, "fn": 0, "tp": 2} and row["f1"] == 1.0


def test_site_calibrated_skips_sources_it_has_no_clean_slices_of() -> None:
    calib = _samples(["a"] * 10, [0] * 10)
    test = _samples(["a", "a", "b"], [0, 1, 1])
    out = site_calibrated(calib, np.linspace(0, 0.5, 10), {"t": (test, np.array([0.1, 0.9, 0.9]))})
    assert out["t"]["n"] == 2 and out["t"]["skipped"] == 1 and set(out["t"]["thresholds"]) == {"a"}


@pytest.mark.parametrize(
    ("variant", "says"),
    [
        ("iqm", "the IQM panel alone"),
        ("fused", "AMAResNet + the IQM panel;"),
        ("spectral", "the IQM panel + the spectral network"),
        ("all", "AMAResNet + the IQM panel + the spectral network"),
    ],
)
def test_the_cards_first_line_names_what_the_served_detector_reads(variant: str, says: str) -> None:
    from training.experiments.model_card import _served_line

    meta = {"threshold": 0.8, "fusion": {"threshold": 0.9, "info": {"variant": variant}}}
    line = _served_line(meta, {})
    assert says in line and "decision threshold **0.900**" in line


def test_the_cards_first_line_names_each_acquisition_familys_threshold() -> None:
    from training.experiments.model_card import _served_line

    fusion = {"threshold": 0.92, "info": {"variant": "spectral_or"}}
    plain = _served_line({"threshold": 0.8, "fusion": fusion}, {})
    assert "or the network alone" in plain and "echo-planar" not in plain
    fusion["acquisition_thresholds"] = {"epi": 0.92, "non_epi": 0.836}
    line = _served_line({"threshold": 0.8, "fusion": fusion}, {})
    assert "**0.920** for a series whose acquisition family is unknown" in line
    assert "**0.836** for not echo-planar" in line and "**0.920** for echo-planar" in line


def test_the_card_shows_the_series_level_table_when_there_is_one() -> None:
    from training.experiments.model_card import _series_section

    assert _series_section({"test": {"metrics": {}}}) == []
    rule = {
        "max_false_alarm_rate": 0.35,
        "max_false_alarm_source": "mriqc_0042",
        "clean_series": 57,
        "recall": {"1": 0.85, "3": 1.0, "12": None},
    }
    lines = _series_section(
        {"test": {"series_level": {"slices_per_series": 12, "rules": {"any": rule}}}}
    )
    assert "### Series level: what a radiographer sees" in lines
    assert "| test | any | 57 | 35.0 (mriqc_0042) | 85.0 | 100.0 | n/a |" in lines


def test_cli_publishes_and_ships_the_int8_record_beside_the_file(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from app.cli import app
    from model.backends import file_digest
    from model.int8 import read_record, shipped_folder

    ckpt, data = trained
    out = tmp_path / "served.safetensors"
    shipped = shipped_folder(out)
    shipped.mkdir()
    (shipped / f"{'0' * 64}-e1-int8.json").write_text("{}")  # the file it replaces
    args = ["model-card", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(out)]
    args += ["--card", str(tmp_path / "card.md"), "--img-dir", str(tmp_path / "img")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = read_record(shipped, file_digest(out))
    assert record is not None and {a.split for a in record.aucs} == {"test", "transfer"}
    assert ("int8 accepted" if record.accepted else "int8 rejected") in result.output
    assert not (shipped / f"{'0' * 64}-e1-int8.json").exists()

    plain = tmp_path / "other" / "plain.safetensors"
    plain.parent.mkdir()
    args[args.index(str(out))] = str(plain)
    result = CliRunner().invoke(app, [*args, "--no-quantize"])
    assert result.exit_code == 0, result.output
    assert "int8" not in result.output and not shipped_folder(plain).exists()
