from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from app.cli import app
from tests.utils.images import phantom, write_png16

runner = CliRunner()


def test_simulate_writes_corrupted_16bit_copies_with_parameters(tmp_path: Path) -> None:
    src = tmp_path / "in"
    write_png16(src / "a.png", phantom(96, 1))
    write_png16(src / "b.png", phantom(96, 2))
    (src / "junk.png").write_bytes(b"junk")
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["simulate", str(src), str(out), "--kind", "ghosting", "--severity", "severe"]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 2 severe ghosting image(s)" in result.output
    assert "skipped 1 unreadable" in result.output
    png = Image.open(out / "a_ghosting_severe.png")
    assert png.mode.startswith("I")  # 16-bit
    record = json.loads((out / "a_ghosting_severe.json").read_text())
    assert record["kind"] == "ghosting" and record["severity"] == "severe"
    original = np.asarray(Image.open(src / "a.png"), dtype=np.float32)
    corrupted = np.asarray(png, dtype=np.float32)
    assert corrupted.shape == original.shape
    assert np.abs(corrupted / corrupted.max() - original / original.max()).mean() > 0.005


def test_simulate_is_reproducible_under_a_seed(tmp_path: Path) -> None:
    write_png16(tmp_path / "in" / "a.png", phantom(64, 3))
    for out in ("o1", "o2"):
        runner.invoke(app, ["simulate", str(tmp_path / "in"), str(tmp_path / out), "--seed", "7"])
    a = (tmp_path / "o1" / "a_motion_moderate.png").read_bytes()
    assert a == (tmp_path / "o2" / "a_motion_moderate.png").read_bytes()


def test_simulate_rejects_an_unknown_kind_naming_it(tmp_path: Path) -> None:
    write_png16(tmp_path / "a.png", phantom(64, 3))
    result = runner.invoke(
        app, ["simulate", str(tmp_path / "a.png"), str(tmp_path / "o"), "--kind", "zipper"]
    )
    assert result.exit_code == 2 and "zipper" in result.output
