from __future__ import annotations

import numpy as np
import pytest
import torch

from model.preprocess import Normalization
from tests.utils.images import phantom
from training.data import Sample
from training.patches import TrainPatches, anatomy_crop

NORM = Normalization(size=128)


def _samples(n_clean: int = 4, n_art: int = 0) -> list[Sample]:
    clean = [Sample(phantom(96, i), 0, f"g{i}", f"clean/{i}.png") for i in range(n_clean)]
    art = [Sample(phantom(96, 50 + i) * 0.5, 1, f"a{i}", f"artifact/{i}.png") for i in range(n_art)]
    return clean + art


def _ds(samples: list[Sample], **kw: object) -> TrainPatches:
    base: dict = dict(norm=NORM, patch=64, samples_per_epoch=200, seed=1)
    base.update(kw)
    return TrainPatches(samples, **base)


def test_items_are_patches_with_balanced_labels() -> None:
    ds = _ds(_samples())
    labels = []
    for i in range(60):
        x, y = ds[i]
        assert x.shape == (1, 64, 64) and x.dtype == torch.float32
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        labels.append(y)
    assert 0.3 < np.mean(labels) < 0.7


def test_simulated_artifact_items_record_kind_and_severity() -> None:
    ds = _ds(_samples(), severities=("severe",), kinds=("spike",))
    records = [ds.generate(i) for i in range(30)]
    for _, label, record in records:
        if label == 1:
            assert record["artifact"]["kind"] == "spike"
            assert record["artifact"]["severity"] == "severe"
        else:
            assert "artifact" not in record


def test_item_depends_only_on_seed_epoch_and_index() -> None:
    a, b = _ds(_samples()), _ds(_samples())
    assert torch.equal(a[7][0], b[7][0])
    b.set_epoch(1)
    assert not torch.equal(a[7][0], b[7][0])
    assert not torch.equal(a[7][0], _ds(_samples(), seed=2)[7][0])


def test_real_artifact_slices_are_used_and_simulation_can_be_off() -> None:
    ds = _ds(_samples(2, 2), simulate=False)
    names = {ds.generate(i)[2]["name"] for i in range(40) if ds.generate(i)[1] == 1}
    assert names and all(n.startswith("artifact/") for n in names)


def test_nothing_to_learn_from_is_refused() -> None:
    with pytest.raises(ValueError, match="simulate=False"):
        _ds(_samples(), simulate=False)
    with pytest.raises(ValueError, match="clean"):
        _ds(_samples(0, 2))


def test_anatomy_crop_prefers_foreground() -> None:
    image = torch.zeros(1, 128, 128)
    image[:, 64:, :] = 1.0  # anatomy only in the bottom half
    rng = np.random.default_rng(0)
    crops = [anatomy_crop(image, 32, rng) for _ in range(50)]
    assert all(float((c > 0.1).float().mean()) >= 0.15 for c in crops)
    # A single random crop (tries=1) often misses the anatomy: the preference is doing the work.
    single = [anatomy_crop(image, 32, rng, tries=1) for _ in range(50)]
    assert sum(float((c > 0.1).float().mean()) < 0.15 for c in single) > 5


def test_loader_workers_see_each_new_epoch() -> None:
    from training.train import make_loader

    ds = _ds(_samples(), samples_per_epoch=8)
    loader = make_loader(ds, 4, 1, None, torch.device("cpu"))
    first = torch.cat([x for x, _ in loader])
    ds.set_epoch(1)
    second = torch.cat([x for x, _ in loader])
    ds.set_epoch(0)
    again = torch.cat([x for x, _ in loader])
    assert not torch.equal(first, second)  # a worker process generated epoch 1's samples
    assert torch.equal(first, again)
