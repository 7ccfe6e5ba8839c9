from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model import CheckpointMeta, Predictor, build_model, save_checkpoint


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    model = build_model("amaresnet18", pyramid_width=16).eval()
    meta = CheckpointMeta(
        arch="amaresnet18",
        arch_config={"pyramid_width": 16},
        patch_size=64,
        patch_stride=64,
        normalization={"method": "percentile", "lower": 0.5, "upper": 99.5, "size": 128},
        threshold=0.5,
    )
    return Predictor((model, meta), device="cpu", batch_size=5)


def _phantom(dtype: type, size: tuple[int, int] = (120, 100), scale: float = 1.0) -> np.ndarray:
    yy, xx = np.mgrid[: size[0], : size[1]]
    cy, cx = size[0] / 2, size[1] / 2
    img = ((yy - cy) ** 2 / (0.4 * size[0]) ** 2 + (xx - cx) ** 2 / (0.4 * size[1]) ** 2) < 1
    return (img * scale + (yy % 7 == 0) * 0.1 * scale).astype(dtype)


@pytest.mark.parametrize(
    ("dtype", "scale"),
    [(np.uint8, 200), (np.uint16, 4000), (np.int16, 1500), (np.float32, 1.0), (np.float64, 3.0)],
)
def test_any_dtype_gives_a_probability_label_and_patch_map(
    predictor: Predictor, dtype: type, scale: float
) -> None:
    (pred,) = predictor.predict([_phantom(dtype, scale=scale)])
    assert 0.0 <= pred.probability <= 1.0
    assert pred.label == int(pred.probability >= predictor.threshold)
    assert pred.patch_probs.shape == (2, 2)  # 128 / 64


def test_intensity_scale_does_not_change_the_prediction(predictor: Predictor) -> None:
    a, b = predictor.predict([_phantom(np.float32), _phantom(np.float32) * 1000 + 50])
    assert a.probability == pytest.approx(b.probability, abs=1e-5)


@pytest.mark.parametrize("size", [(30, 40), (128, 128), (256, 200), (513, 300)])
def test_any_size_is_accepted(predictor: Predictor, size: tuple[int, int]) -> None:
    (pred,) = predictor.predict([_phantom(np.uint16, size, 1000)])
    assert 0.0 <= pred.probability <= 1.0


def test_batching_does_not_change_results(predictor: Predictor) -> None:
    slices = [
        _phantom(np.float32, scale=s) + np.random.default_rng(s).random((120, 100))
        for s in range(1, 8)
    ]
    together = predictor.predict(slices)
    alone = [predictor.predict([s])[0] for s in slices]
    for t, a in zip(together, alone, strict=True):
        assert t.probability == pytest.approx(a.probability, abs=1e-5)


def test_a_single_2d_array_is_one_slice(predictor: Predictor) -> None:
    assert len(predictor.predict(_phantom(np.float32))) == 1
    assert predictor.predict([]) == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.full((32, 32), np.nan), "NaN"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), "NaN/Inf"),
        (np.zeros((0, 0)), "empty"),
        (np.zeros((4, 32, 32)), "2-D"),
    ],
)
def test_bad_slices_are_clear_value_errors(
    predictor: Predictor, bad: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        predictor.predict([bad])


def test_a_3d_array_passed_directly_is_refused(predictor: Predictor) -> None:
    with pytest.raises(ValueError, match="list\\(volume\\)"):
        predictor.predict(np.zeros((3, 32, 32)))


def test_predictor_loads_from_a_checkpoint_file(tmp_path: Path) -> None:
    model = build_model("resnet18")
    meta = CheckpointMeta(arch="resnet18", threshold=0.0, aggregation={"how": "max", "k": None})
    path = save_checkpoint(tmp_path / "r.safetensors", model, meta)
    predictor = Predictor(path)
    assert predictor.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    (pred,) = predictor.predict([_phantom(np.uint16, (256, 256), 900)])
    assert pred.label == 1  # threshold 0 flags everything
    assert pred.patch_probs.shape == (2, 2)  # default size 256, patch 128


def test_full_size_slice_through_default_geometry(tmp_path: Path) -> None:
    model = build_model("amaresnet18")
    path = save_checkpoint(tmp_path / "a.safetensors", model, CheckpointMeta(arch="amaresnet18"))
    preds = Predictor(path).predict([_phantom(np.int16, (512, 512), 2000)] * 2)
    assert len(preds) == 2 and preds[0].probability == pytest.approx(preds[1].probability)
