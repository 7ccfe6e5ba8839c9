"""The cross-simulator split: TorchIO's artifacts, each visible, with clean twins carrying
nuisances; reproducible from its seed."""

from __future__ import annotations

import numpy as np
import pytest

from tests.utils.images import make_phantom
from training.data.samples import Sample
from training.simulate.cross_sim import (
    VISIBLE,
    aligned_nrmse,
    cross_sim_pairs,
    tio_artifact,
    tio_nuisance,
)


def _samples(n: int = 3) -> list[Sample]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = make_phantom(96) + 0.01 * np.abs(rng.standard_normal((96, 96)))
        out.append(
            Sample(img.astype(np.float32), 0, f"s{i}", f"test/clean/s{i}.png", {"source": "x"})
        )
    return out


def test_aligned_nrmse_ignores_a_global_shift_but_not_a_change() -> None:
    image = make_phantom(64)
    assert aligned_nrmse(image, np.roll(image, (3, -5), axis=(0, 1))) < 1e-6
    changed = image.copy()
    changed[10:20, 10:20] += 0.5
    assert aligned_nrmse(image, changed) > 0.05


def test_every_artifact_is_visible_and_labelled_by_its_nrmse() -> None:
    pairs = cross_sim_pairs(_samples(), seed=1)
    clean = {s.name: s for s, _ in pairs if s.label == 0}
    artifacts = [(s, r) for s, r in pairs if s.label == 1]
    assert len(clean) == 3 and artifacts
    for sample, record in artifacts:
        nrmse = record["artifact"]["nrmse"]
        assert VISIBLE[0] <= nrmse <= VISIBLE[1]
        assert sample.info["severity"] == ("moderate" if nrmse < 0.15 else "severe")
        assert sample.info["kind"].startswith("tio_")
        assert sample.name.startswith("test/artifact/")


def test_the_split_is_reproducible_from_its_seed() -> None:
    a = cross_sim_pairs(_samples(2), seed=4)
    b = cross_sim_pairs(_samples(2), seed=4)
    assert [s.name for s, _ in a] == [s.name for s, _ in b]
    for (sa, _), (sb, _) in zip(a, b, strict=True):
        np.testing.assert_array_equal(sa.pixels, sb.pixels)


def test_zero_motion_returns_the_input() -> None:
    import torch
    import torchio as tio

    image = make_phantom(64)
    subject = tio.ScalarImage(tensor=torch.from_numpy(image[None, None]))
    out = tio.Motion(np.zeros((1, 3)), np.zeros((1, 3)), np.array([0.5]), "linear")(subject)
    np.testing.assert_allclose(out.data[0, 0].numpy(), image, atol=1e-4)


def test_the_bias_field_is_a_smooth_multiplicative_change() -> None:
    image = make_phantom(96)
    out, record = tio_nuisance(image, "tio_bias", np.random.default_rng(0))
    assert record["kind"] == "tio_bias" and out.shape == image.shape
    inside = image > 0.2
    log_ratio = np.where(inside, np.log(np.maximum(out, 1e-9) / np.maximum(image, 1e-9)), 0)
    assert np.ptp(log_ratio[inside]) > 0.1  # it does change the intensities
    both = inside[:, 1:] & inside[:, :-1]
    assert np.abs(np.diff(log_ratio, axis=1))[both].max() < 0.05  # smoothly


def test_the_lower_resolution_blurs_without_moving_anything() -> None:
    image = make_phantom(96)
    out, record = tio_nuisance(image, "tio_anisotropy", np.random.default_rng(0))
    assert record["kind"] == "tio_anisotropy" and out.shape == image.shape
    assert 0.005 < aligned_nrmse(image, out) < 0.5
    assert np.abs(np.diff(out, axis=0)).sum() + np.abs(np.diff(out, axis=1)).sum() < (
        np.abs(np.diff(image, axis=0)).sum() + np.abs(np.diff(image, axis=1)).sum()
    )


def test_an_unknown_kind_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="tio_blur"):
        tio_artifact(make_phantom(32), "tio_blur", np.random.default_rng(0))
