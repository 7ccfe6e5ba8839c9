"""``amaqc calibrate``: a checkpoint's threshold chosen again on a site's labelled images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import model
from app.cli import app
from model import Predictor, read_metadata
from tests.utils.images import phantom, write_png16
from tests.utils.service import TINY_NORMALIZATION
from training.evaluate.calibrate import calibrate, load_calibration_set
from training.evaluate.metrics import best_threshold
from training.evaluate.scoring import predict_samples

#: the broken file in ``site`` is reported (asserted below through the skipped count)
pytestmark = pytest.mark.filterwarnings("ignore:.*unreadable files skipped:UserWarning")


def _checkpoint(path: Path, *, fp16: bool = False, rate: float | None = None) -> Path:
    torch.manual_seed(0)
    meta = model.CheckpointMeta(
        arch="resnet18",
        patch_size=64,
        patch_stride=64,
        normalization=TINY_NORMALIZATION,
        threshold=0.5,
        training={} if rate is None else {"config": {"max_false_alarm_rate": rate}},
    )
    net = model.build_model("resnet18")
    return model.save_checkpoint(path, net, meta, dtype=torch.float16 if fp16 else None)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site's reviewed images: 12 clean phantoms, 8 with bright stripes, one broken file."""
    root = tmp_path / "site"
    for i in range(12):
        write_png16(root / "clean" / f"c{i}.png", phantom(96, i))
    for i in range(8):
        img = phantom(96, 50 + i).astype(float)
        img[:, :: 4 + i % 3] += 0.5 * img.max()
        write_png16(root / "artifact" / f"a{i}.png", img)
    (root / "clean" / "broken.png").write_bytes(b"not an image")
    return root


def test_the_threshold_is_the_rule_applied_to_the_site_images_and_the_weights_stay(
    site: Path, tmp_path: Path
) -> None:
    src = _checkpoint(tmp_path / "m.safetensors", fp16=True)
    out = tmp_path / "cal.safetensors"
    rec = calibrate(src, site, out, max_false_alarm_rate=0.25)
    samples, skipped = load_calibration_set(site)
    assert skipped == 1 and (rec["clean"], rec["artifact"]) == (12, 8)
    labels = np.array([s.label for s in samples])
    probs = predict_samples(Predictor(src), samples)
    expected = best_threshold(labels, probs, 0.25)
    meta = read_metadata(out)
    assert meta.threshold == pytest.approx(expected) == pytest.approx(rec["threshold"])
    assert ((probs >= meta.threshold) & (labels == 0)).sum() <= 3  # 25 % of 12 clean
    assert meta.training["calibration"]["previous_threshold"] == 0.5
    assert meta.training["calibration"]["confusion"]["fp"] == int(
        ((probs >= meta.threshold) & (labels == 0)).sum()
    )
    before, after = load_file(str(src)), load_file(str(out))
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # same weights, still float16
    assert all(t.dtype == torch.float16 for t in after.values() if t.is_floating_point())


def test_no_false_alarm_allowed_puts_the_threshold_above_every_clean_image(
    site: Path, tmp_path: Path
) -> None:
    src = _checkpoint(tmp_path / "m.safetensors")
    rec = calibrate(src, site, tmp_path / "cal.safetensors", max_false_alarm_rate=0.0)
    samples, _ = load_calibration_set(site)
    probs = predict_samples(Predictor(src), samples)
    clean = probs[np.array([s.label for s in samples]) == 0]
    assert rec["threshold"] > clean.max()
    assert rec["confusion"]["fp"] == 0


def test_the_default_bound_is_the_one_the_checkpoint_was_trained_with(
    site: Path, tmp_path: Path
) -> None:
    src = _checkpoint(tmp_path / "m.safetensors", rate=0.0)
    rec = calibrate(src, site, tmp_path / "cal.safetensors")
    assert rec["max_false_alarm_rate"] == 0.0 and rec["confusion"]["fp"] == 0


def test_cli_calibrates_and_reports_bad_input_clearly(site: Path, tmp_path: Path) -> None:
    src = _checkpoint(tmp_path / "m.safetensors")
    out = tmp_path / "cal.safetensors"
    runner = CliRunner()
    args = ["calibrate", "--checkpoint", str(src), "--data", str(site), "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "12 clean + 8 artifact" in result.output and "skipped" in result.output
    assert "only 12 clean images" in result.output  # the small-sample warning
    assert read_metadata(out).training["calibration"]["clean"] == 12

    clean_only = tmp_path / "clean_only"
    for i in range(3):
        write_png16(clean_only / "clean" / f"c{i}.png", phantom(96, i))
    bad = runner.invoke(app, [*args[:4], str(clean_only), "--out", str(tmp_path / "x.st")])
    assert bad.exit_code != 0 and "needs clean and artifact images" in bad.output
    assert not (tmp_path / "x.st").exists()
    missing = runner.invoke(app, [*args[:4], str(tmp_path / "nope"), "--out", str(out)])
    assert missing.exit_code != 0 and "no such folder" in missing.output
