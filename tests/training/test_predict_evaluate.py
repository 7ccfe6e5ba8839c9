from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from app.cli import app
from model import CheckpointMeta, Predictor, build_model, save_checkpoint
from tests.utils.images import phantom, write_dicom, write_jpeg, write_png8, write_png16
from training.evaluate.predict import predict_path
from training.evaluate.scoring import evaluate

runner = CliRunner()


def _checkpoint(tmp: Path, threshold: float) -> Path:
    meta = CheckpointMeta(
        arch="resnet18",
        threshold=threshold,
        patch_size=64,
        patch_stride=64,
        normalization={"method": "percentile", "lower": 0.5, "upper": 99.5, "size": 128},
    )
    return save_checkpoint(tmp / f"t{threshold}.safetensors", build_model("resnet18"), meta)


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    root = tmp_path / "scans"
    write_png16(root / "a16.png", phantom(80, 1))
    write_png8(root / "sub" / "b8.png", phantom(80, 2))
    write_jpeg(root / "sub" / "c.jpg", phantom(80, 3))
    write_dicom(root / "series" / "IM0001", phantom(64, 4))
    (root / "broken.png").write_bytes(b"not a png at all")
    (root / "notes.txt").write_text("ignored: not an image")
    return root


def test_predict_csv_has_header_and_one_line_per_image(mixed_folder: Path, tmp_path: Path) -> None:
    predictor = Predictor(_checkpoint(tmp_path, 0.5))
    report = predict_path(mixed_folder, predictor, tmp_path / "p.csv")
    with (tmp_path / "p.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == [
        "file",
        "probability",
        "label",
        "cnn_probability",
        "acquisition",
        "threshold",
    ]
    files = sorted(r[0] for r in rows[1:])
    assert files == ["a16.png", "series/IM0001", "sub/b8.png", "sub/c.jpg"]
    for _, prob, label, cnn, _family, threshold in rows[1:]:
        assert 0.0 <= float(prob) <= 1.0 and label in {"0", "1"}
        assert float(threshold) == 0.5
        assert int(label) == int(float(prob) >= 0.5)
        assert cnn == prob  # AMAResNet alone is served: its probability is the verdict's
    assert report.files == 4 and [p.name for p, _ in report.skipped] == ["broken.png"]


def _per_family_checkpoint(tmp: Path) -> Path:
    """A fused checkpoint whose one feature (the slice's SNR) decides, with a threshold per
    acquisition family set so that the same probability is flagged as echo-planar only."""
    from model.fusion import FusionModel

    fusion = FusionModel(
        ("iqm_snr",),
        (0.0,),
        (1.0,),
        (0.0,),
        0.0,
        threshold=0.4,
        acquisition_thresholds={"epi": 0.45, "non_epi": 0.9},
    )  # coef 0: every slice gets probability 0.5
    meta = CheckpointMeta(
        arch="resnet18",
        threshold=0.5,
        patch_size=64,
        patch_stride=64,
        normalization={"method": "percentile", "lower": 0.5, "upper": 99.5, "size": 128},
        fusion=fusion.to_dict(),
    )
    return save_checkpoint(tmp / "fam.safetensors", build_model("resnet18"), meta)


def test_predict_applies_each_dicom_files_acquisition_family_threshold(tmp_path: Path) -> None:
    import pydicom

    folder = tmp_path / "scans"
    epi = write_dicom(folder / "epi.dcm", phantom(64, 1))
    t1 = write_dicom(folder / "t1.dcm", phantom(64, 2), instance=2)
    write_png8(folder / "plain.png", phantom(64, 3))
    for path, sequence in ((epi, "EP"), (t1, ["GR", "IR"])):
        ds = pydicom.dcmread(path)
        ds.ScanningSequence = sequence
        ds.save_as(path)
    predictor = Predictor(_per_family_checkpoint(tmp_path))
    predict_path(folder, predictor, tmp_path / "p.csv")
    with (tmp_path / "p.csv").open() as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    assert {k: (r["acquisition"], r["threshold"], r["label"]) for k, r in rows.items()} == {
        "epi.dcm": ("epi", "0.450000", "1"),
        "t1.dcm": ("non_epi", "0.900000", "0"),
        "plain.png": ("", "0.400000", "1"),  # no header: the pooled threshold
    }
    predict_path(folder, predictor, tmp_path / "q.csv", acquisition="non_epi")
    with (tmp_path / "q.csv").open() as f:
        assert {r["label"] for r in csv.DictReader(f)} == {"0"}
    result = runner.invoke(app, ["predict", str(folder), "--acquisition", "swi"])
    assert result.exit_code != 0 and "unknown acquisition family 'swi'" in result.output


def test_predict_cli_reports_skipped_files_and_writes_csv(
    mixed_folder: Path, tmp_path: Path
) -> None:
    ckpt = _checkpoint(tmp_path, 0.5)
    out = tmp_path / "cli.csv"
    result = runner.invoke(
        app, ["predict", str(mixed_folder), "--output", str(out), "--checkpoint", str(ckpt)]
    )
    assert result.exit_code == 0, result.output
    assert "skipped 1 unreadable file" in result.output
    assert len(out.read_text().splitlines()) == 5


def test_predict_cli_with_a_bad_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 10)
    result = runner.invoke(app, ["predict", str(tmp_path), "--checkpoint", str(bad)])
    assert result.exit_code == 2 and "not a readable safetensors" in result.output


def _labelled(root: Path) -> Path:
    for i in range(4):
        write_png16(root / "test" / "clean" / f"c{i}.png", phantom(64, i))
    for i in range(3):
        noisy = phantom(64, 10 + i) + np.random.default_rng(i).random((64, 64)).astype("f4")
        write_png16(root / "test" / "artifact" / f"a{i}.png", noisy / noisy.max())
    return root


@pytest.mark.parametrize(
    ("threshold", "confusion"),
    [(0.0, {"tn": 0, "fp": 4, "fn": 0, "tp": 3}), (1.0, {"tn": 4, "fp": 0, "fn": 3, "tp": 0})],
)
def test_evaluate_matches_a_hand_computed_confusion_matrix(
    tmp_path: Path, threshold: float, confusion: dict[str, int]
) -> None:
    data = _labelled(tmp_path / "d")
    summary = evaluate(Predictor(_checkpoint(tmp_path, threshold)), data, out_dir=tmp_path / "e")
    m = summary["metrics"]
    assert m["confusion"] == confusion
    tp, fp, fn = confusion["tp"], confusion["fp"], confusion["fn"]
    assert m["accuracy"] == pytest.approx((tp + confusion["tn"]) / 7)
    assert m["precision"] == pytest.approx(tp / (tp + fp) if tp + fp else 0.0)
    assert m["recall"] == pytest.approx(tp / (tp + fn))
    for name in ("summary.json", "roc.png", "confusion.png", "predictions.csv"):
        assert (tmp_path / "e" / name).stat().st_size > 0
    assert json.loads((tmp_path / "e" / "summary.json").read_text())["metrics"] == m


def test_evaluate_breaks_down_by_kind_and_severity_from_the_manifest(tmp_path: Path) -> None:
    data = _labelled(tmp_path / "d")
    with (data / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "split", "label", "source", "kind", "severity"])
        for i in range(4):
            w.writerow([f"test/clean/c{i}.png", "test", 0, "ph", "", ""])
        for i, (kind, sev) in enumerate(
            [("motion", "mild"), ("spike", "severe"), ("motion", "moderate")]
        ):
            w.writerow([f"test/artifact/a{i}.png", "test", 1, "ph", kind, sev])
    summary = evaluate(Predictor(_checkpoint(tmp_path, 0.0)), data)
    assert summary["by_kind"]["motion"]["n"] == 2 and summary["by_kind"]["spike"]["n"] == 1
    assert summary["by_severity"]["mild"]["recall"] == 1.0  # threshold 0 flags everything
    assert summary["moderate_and_severe"]["n"] == 4 + 2
