"""The second cross-simulator split (msim): MONAI's Gibbs ringing, k-space spikes and Rician
noise, each visible, with clean twins carrying nuisances; reproducible from its seed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.utils.images import make_phantom, phantom, write_png16
from training.data.build import MANIFEST_COLUMNS
from training.data.samples import Sample, load_split
from training.simulate.cross_sim import VISIBLE, aligned_nrmse
from training.simulate.cross_sim_monai import (
    CLEAN_NUISANCES,
    KINDS,
    gibbs,
    kspace_spikes,
    monai_artifact,
    monai_nuisance,
    monai_sim_pairs,
)
from training.simulate.dataset_extra import MSIM_FROM, materialize_extra, pristine_samples


def _samples(n: int = 3, size: int = 64) -> list[Sample]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = make_phantom(size) + 0.01 * np.abs(rng.standard_normal((size, size)))
        out.append(
            Sample(img.astype(np.float32), 0, f"s{i}", f"test/clean/s{i}.png", {"source": "x"})
        )
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_visible_and_labelled_by_its_nrmse(kind: str) -> None:
    # three samples cycle the three kinds: each kind gets one artifact twin
    pairs = monai_sim_pairs(_samples(), seed=1)
    made = [(s, r["artifact"]) for s, r in pairs if s.label == 1 and s.info["kind"] == kind]
    assert made, f"no visible {kind}"
    for sample, record in made:
        assert VISIBLE[0] <= record["nrmse"] <= VISIBLE[1]
        assert sample.info["severity"] == ("moderate" if record["nrmse"] < 0.15 else "severe")
        assert sample.name.startswith("test/artifact/")


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_deterministic_for_a_seed(kind: str) -> None:
    image = make_phantom(64)
    a, ra = monai_artifact(image, kind, np.random.default_rng(3))
    b, rb = monai_artifact(image, kind, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert ra == rb and ra["kind"] == kind
    c, _ = monai_artifact(image, kind, np.random.default_rng(4))
    assert not np.array_equal(a, c)


def test_the_split_is_reproducible_from_its_seed() -> None:
    a = monai_sim_pairs(_samples(2), seed=4, variants=2)
    b = monai_sim_pairs(_samples(2), seed=4, variants=2)
    assert [s.name for s, _ in a] == [s.name for s, _ in b]
    assert [r for _, r in a] == [r for _, r in b]
    for (sa, _), (sb, _) in zip(a, b, strict=True):
        np.testing.assert_array_equal(sa.pixels, sb.pixels)


@pytest.mark.parametrize("kind", CLEAN_NUISANCES)
def test_the_clean_nuisances_change_little_and_stay_clean(kind: str) -> None:
    image = make_phantom(64)
    for seed in range(4):
        out, record = monai_nuisance(image, kind, np.random.default_rng(seed))
        assert record["kind"] == kind and out.shape == image.shape
        assert 1e-3 < aligned_nrmse(image, out) < 0.25
    pairs = monai_sim_pairs(_samples(4), seed=2)
    clean = [(s, r["clean"]) for s, r in pairs if s.label == 0]
    assert {r["kind"] for _, r in clean} == set(CLEAN_NUISANCES)
    assert all(s.info["kind"] == "" and s.name.startswith("test/clean/") for s, _ in clean)


def test_zero_strength_gibbs_returns_the_input() -> None:
    image = make_phantom(64)
    np.testing.assert_allclose(gibbs(image, 0.0), image, atol=1e-4)


def test_zero_strength_spikes_return_the_input() -> None:
    image = make_phantom(64)
    out, _ = kspace_spikes(image, [(40, 20), (10, 50)], [0.0, 0.0])
    np.testing.assert_allclose(out, image, atol=1e-4)


def test_gibbs_rings_near_edges() -> None:
    # a bright square: truncating k-space overshoots inside the edge and undershoots outside
    image = np.zeros((64, 64), np.float32)
    image[16:48, 16:48] = 1.0
    out = gibbs(image, 0.6)
    assert out[32, 16:22].max() > 1.03  # overshoot just inside the edge
    assert np.allclose(out[32, 28:36], 1.0, atol=0.1)  # the flat interior is left alone


def test_a_spike_makes_stripes_at_its_frequency() -> None:
    image = make_phantom(64)
    out, _ = kspace_spikes(image, [(32, 32 + 12)], [0.1])
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(out - image)))
    assert np.unravel_index(np.argmax(spectrum), spectrum.shape) in {(32, 44), (32, 20)}


def test_an_unknown_kind_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="monai_blur"):
        monai_artifact(make_phantom(32), "monai_blur", np.random.default_rng(0))
    with pytest.raises(ValueError, match="alpha"):
        gibbs(make_phantom(32), 1.5)


def test_the_split_is_written_and_loads(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    rows = []
    for split, subject in (("test", "mriqc_0042"), ("transfer", "nibabel_epi")):
        for i in range(2):
            file = f"{split}/clean/{subject}_axial_{i:03d}.png"
            write_png16(root / file, phantom(48, i))
            rows.append(
                {
                    "file": file,
                    "split": split,
                    "label": 0,
                    "source": subject,
                    "subject": subject,
                    "contrast": "T1",
                    "plane": "axial",
                    "index": i,
                }
            )
    with (root / "manifest.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    new = materialize_extra(root, pristine_samples(root, sorted(MSIM_FROM)), progress=False)
    msim = [r for r in new if r["split"] == "msim"]
    assert sum(r["label"] == "0" for r in msim) == 2 * sum(MSIM_FROM.values())
    art = [r for r in msim if r["label"] == "1"]
    assert art and all(r["kind"] in KINDS and r["severity"] for r in art)
    assert all(json.loads(r["artifact"])["kind"] == r["kind"] for r in art)
    samples = load_split(root, "msim")
    assert len(samples) == len(msim)
    assert {s.info["kind"] for s in samples if s.label == 1} <= set(KINDS)
