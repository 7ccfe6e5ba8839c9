from __future__ import annotations

import numpy as np
import pytest
import torch

from model.preprocess import Normalization, normalize_slice
from tests.utils.images import phantom
from training.data.samples import Sample
from training.fit.patches import TrainPatches, anatomy_crop, guided_crop

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
    from training.fit.train import make_loader

    ds = _ds(_samples(), samples_per_epoch=8)
    loader = make_loader(ds, 4, 1, None, torch.device("cpu"))
    first = torch.cat([x for x, _ in loader])
    ds.set_epoch(1)
    second = torch.cat([x for x, _ in loader])
    ds.set_epoch(0)
    again = torch.cat([x for x, _ in loader])
    assert not torch.equal(first, second)  # a worker process generated epoch 1's samples
    assert torch.equal(first, again)


# --- crops where the artifact shows --------------------------------------------------------


def test_guided_crop_takes_the_anatomy_window_where_the_change_is_largest() -> None:
    image = torch.zeros(1, 128, 128)
    image[:, :, :64] = 1.0  # anatomy on the left half only
    change = torch.zeros(1, 128, 128)
    change[:, 40:60, 20:40] = 1.0  # what the artifact altered, inside the anatomy
    change[:, :, 100:] = 5.0  # far more, but on background: never a training window
    rng = np.random.default_rng(0)
    for _ in range(20):
        crop = guided_crop(image, change, 32, rng, tries=200)
        assert float((crop > 0.1).float().mean()) >= 0.15
    # with many tries the window found holds the change; random anatomy windows rarely do
    marked = image.clone()
    marked[:, 40:60, 20:40] = 0.5

    def held(crop: torch.Tensor) -> float:
        return float((crop == 0.5).float().mean())

    hits = [held(guided_crop(marked, change, 32, rng, tries=200)) for _ in range(20)]
    misses = [held(anatomy_crop(marked, 32, rng)) for _ in range(20)]
    assert min(hits) > 0.3 and np.mean(misses) < 0.15


def test_guided_crop_falls_back_without_anatomy_and_checks_shapes() -> None:
    blank = torch.zeros(1, 64, 64)
    rng = np.random.default_rng(0)
    assert guided_crop(blank, torch.ones(1, 64, 64), 32, rng).shape == (1, 32, 32)
    with pytest.raises(ValueError, match="must match image"):
        guided_crop(blank, torch.ones(1, 32, 32), 16, rng)
    with pytest.raises(ValueError, match="guided must be in"):
        _ds(_samples(), guided=1.5)


def test_guided_items_show_more_of_the_artifact_and_clean_ones_stay_clean(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With guided=1 an artifact patch holds more of what the artifact changed than the average
    anatomy window of its slice, and a clean patch is a window of the clean slice (its phantom
    artifact only chose the place)."""
    import training.fit.patches as patches

    picks: list[tuple[torch.Tensor, torch.Tensor, tuple[int, int] | None]] = []

    def recording(
        image: torch.Tensor,
        change: torch.Tensor,
        patch: int,
        rng: np.random.Generator,
        tries: int = 10,
    ) -> tuple[int, int] | None:
        at = real(image, change, patch, rng, tries)
        picks.append((image, change, at))
        return at

    real = patches.guided_window
    monkeypatch.setattr(patches, "guided_window", recording)
    ds = _ds(_samples(), patch=32, guided=1.0, kinds=("gibbs", "ghosting"))
    picked, average = [], []
    for i in range(30):
        crop, label = ds[i]
        image, change, at = picks[-1]
        assert at is not None
        top, left = at
        window = image[:, top : top + 32, left : left + 32]
        assert torch.equal(crop, window) or torch.equal(crop, window.flip(-1))
        if label == 0:  # the patch is the clean slice's own pixels: no phantom leaked in
            assert torch.equal(image, normalize_slice(ds.generate(i)[0], NORM))
            continue
        amounts = torch.nn.functional.avg_pool2d(change[None], 32, stride=1)[0, 0]
        anatomy = torch.nn.functional.avg_pool2d((image > 0.1).float()[None], 32, stride=1)[0, 0]
        picked.append(float(amounts[top, left]))
        average.append(float(amounts[anatomy >= 0.15].mean()))
    assert len(picked) > 5
    assert np.mean(picked) > 1.3 * np.mean(average), (np.mean(picked), np.mean(average))


def test_no_guided_crops_leaves_the_stream_as_it_was() -> None:
    """guided=0 draws nothing more: item i is the anatomy crop of generate(i), as before."""
    ds = _ds(_samples())
    for i in range(10):
        image, _, _ = ds.generate(i)
        rng = np.random.default_rng([1, 0, i, 1])
        crop = anatomy_crop(normalize_slice(image, NORM), 64, rng)
        crop = crop.flip(-1) if rng.random() < 0.5 else crop
        assert torch.equal(ds[i][0], crop)


# --- patch labels where the change is (issue 17, item 5) -------------------------------------


def test_patch_change_reads_the_change_inside_the_window_on_the_slice_nrmse_scale() -> None:
    from training.fit.patches import patch_change

    clean = torch.full((1, 64, 64), 0.5)
    change = torch.zeros(1, 64, 64)
    change[:, :16, :16] = 0.25  # half the slice's RMS, in the top-left window only
    assert patch_change(change, clean, 0, 0, 16) == pytest.approx(0.5)
    assert patch_change(change, clean, 32, 32, 16) == 0.0
    # a change spread evenly over the slice at NRMSE x reads x in every window
    even = torch.full((1, 64, 64), 0.05)
    assert patch_change(even, clean, 10, 30, 16) == pytest.approx(0.1)
    assert patch_change(change, torch.zeros(1, 64, 64), 0, 0, 16) == 0.0


def test_patch_floor_labels_an_artifact_patch_by_the_change_it_holds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same pixels as without the floor; a simulated artifact patch is labelled 1 exactly when
    its change reaches the floor, clean patches stay 0, and some artifact patches of the same
    stream fall on each side of the floor."""
    import training.fit.patches as patches

    seen: list[float] = []

    def recording(*args: object) -> float:
        value = real(*args)
        seen.append(value)
        return value

    real = patches.patch_change
    monkeypatch.setattr(patches, "patch_change", recording)
    kw = dict(patch=32, kinds=("spike", "gibbs", "ghosting"))
    plain = _ds(_samples(), **kw)
    floor = 0.12
    labelled = _ds(_samples(), patch_floor=floor, **kw)
    flips = kept = 0
    for i in range(60):
        seen.clear()
        x, y = labelled[i]
        x0, y0 = plain[i]
        assert torch.equal(x, x0)  # the floor changes labels, never pixels
        if y0 == 0:
            assert y == 0 and not seen  # clean items are not measured
            continue
        assert len(seen) == 1
        assert y == int(seen[0] >= floor)
        flips += y == 0
        kept += y == 1
    assert flips > 0 and kept > 0, (flips, kept)


def test_patch_floor_is_checked_and_ignored_for_whole_slices() -> None:
    with pytest.raises(ValueError, match="patch_floor must be in"):
        _ds(_samples(), patch_floor=1.0)
    whole = _ds(_samples(), patch_floor=0.5, whole=True)
    assert whole.patch_floor == 0.0
    assert [whole[i][1] for i in range(20)] == [whole.generate(i)[1] for i in range(20)]
