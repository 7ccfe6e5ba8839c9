"""AMAQC_INFERENCE_BACKEND and _PRECISION: read by the settings, handed by the worker to the
Predictor."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.db.models import ModelVersion
from app.worker.inference import BadSeriesData, predictor_for
from tests.utils.service import tiny_amaresnet


def _version(tmp_path: Path) -> ModelVersion:
    path = tiny_amaresnet(tmp_path / "m.safetensors", size=64)
    return ModelVersion(
        id=1, name="v1", checkpoint_path=str(path), sha256="x", arch="amaresnet18", threshold=0.5
    )


@pytest.mark.parametrize(
    ("setting", "chosen", "unknown"),
    [("inference_backend", "torch", "tensorflow"), ("inference_precision", "int8", "int4")],
)
def test_the_environment_chooses_the_backend_and_precision(
    monkeypatch: pytest.MonkeyPatch, setting: str, chosen: str, unknown: str
) -> None:
    variable = f"AMAQC_{setting.upper()}"
    assert getattr(Settings(), setting) == "auto"
    monkeypatch.setenv(variable, chosen)
    assert getattr(Settings(), setting) == chosen
    monkeypatch.setenv(variable, unknown)
    with pytest.raises(ValidationError, match=setting):
        Settings()


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_the_worker_loads_the_predictor_with_the_configured_backend(
    tmp_path: Path, backend: str
) -> None:
    pytest.importorskip("onnxruntime")
    settings = Settings(data_dir=tmp_path, inference_backend=backend)
    predictor = predictor_for(_version(tmp_path), {}, settings=settings)
    assert predictor.backend == backend
    exports = list((tmp_path / ".amaqc-onnx").glob("*.onnx"))  # next to the checkpoint
    assert len(exports) == (1 if backend == "onnxruntime" else 0)


def test_a_backend_that_cannot_run_fails_the_series_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    settings = Settings(data_dir=tmp_path, inference_backend="onnxruntime")
    with pytest.raises(BadSeriesData, match="onnxruntime is not installed"):
        predictor_for(_version(tmp_path), {}, settings=settings)
    auto = Settings(data_dir=tmp_path)
    assert predictor_for(_version(tmp_path), {}, settings=auto).backend == "torch"


def test_the_worker_serves_an_accepted_int8_export_and_says_so(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from model.backends import export_path, file_digest, probe_patches
    from model.export import export_onnx
    from model.int8 import AucChange, Int8Record, quantise_onnx, write_int8

    version = _version(tmp_path)
    int8_only = Settings(data_dir=tmp_path, inference_precision="int8")
    with pytest.raises(BadSeriesData, match="amaqc quantize"):
        predictor_for(version, {}, settings=int8_only)
    auto = Settings(data_dir=tmp_path)
    assert predictor_for(version, {}, settings=auto).backend == "onnxruntime"  # none yet

    ckpt = Path(version.checkpoint_path)
    fp32 = export_path(ckpt)
    export_onnx(predictor_for(version, {}, settings=auto).model, 32, fp32)
    quantise_onnx(fp32, tmp_path / "int8.onnx", probe_patches(1, 32, count=16).numpy())
    record = Int8Record(
        checkpoint_sha256=file_digest(ckpt),
        aucs=[AucChange("test", "all", 40, 0.8, 0.801)],
        onnx_sha256=file_digest(tmp_path / "int8.onnx"),
    )
    write_int8(fp32.parent, record, tmp_path / "int8.onnx")
    predictor = predictor_for(version, {}, settings=auto)
    assert (predictor.backend, predictor.precision) == ("onnxruntime-int8", "int8")
    float32 = Settings(data_dir=tmp_path, inference_precision="float32")
    assert predictor_for(version, {}, settings=float32).precision == "float32"


def test_the_environment_can_turn_off_the_panel_beside_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().inference_overlap_panel is True
    monkeypatch.setenv("AMAQC_INFERENCE_OVERLAP_PANEL", "false")
    serial = Settings(data_dir=tmp_path, inference_backend="torch")
    assert serial.inference_overlap_panel is False
    version = _version(tmp_path)
    assert predictor_for(version, {}, settings=serial).overlap_panel is False
    default = Settings(data_dir=tmp_path, inference_backend="torch", inference_overlap_panel=True)
    assert predictor_for(version, {}, settings=default).overlap_panel is True
