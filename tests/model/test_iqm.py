"""The IQM panel on constructed images: each metric answers to its artifact and not to the
nuisances (bias field, lower resolution, intensity scale, a masked background)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from model.iqm import (
    IQM_NAMES,
    compute_iqms,
    explain,
    gsr,
    kline_tables,
    kspace_lines,
    noise_sigma,
    prepare,
    spike,
)
from tests.utils.images import make_phantom

N = 128


def _slice(noise: float = 0.01, seed: int = 0) -> np.ndarray:
    """A head phantom with texture and Rician-like background noise."""
    rng = np.random.default_rng(seed)
    img = make_phantom(N)
    texture = ndimage.gaussian_filter(rng.standard_normal((N, N)), 2) * 0.05
    img = np.where(img > 0.05, img + texture, img)
    return np.abs(img + noise * rng.standard_normal((N, N))).astype(np.float32)


def _nyquist_ghost(image: np.ndarray, axis: int, intensity: float = 0.15) -> np.ndarray:
    """Every other k-space line along ``axis`` scaled: a ghost at N/2 along ``axis``."""
    k = np.fft.fft2(image)
    lines = np.arange(image.shape[axis]) % 2 == 1
    scale = np.where(lines, 1 - 2 * intensity, 1.0)
    k = k * (scale[:, None] if axis == 0 else scale[None, :])
    return np.abs(np.fft.ifft2(k)).astype(np.float32)


def _with_spike(
    image: np.ndarray, ky: int = 20, kx: int = 31, amplitude: float = 0.2
) -> np.ndarray:
    """One bright k-space sample: stripes of ``amplitude`` x the mean intensity."""
    k = np.fft.fft2(image)
    k[ky, kx] += amplitude * image.mean() * image.size
    return np.abs(np.fft.ifft2(k)).astype(np.float32)


def _bias(image: np.ndarray) -> np.ndarray:
    y, x = np.mgrid[0 : 1 : complex(0, N), 0 : 1 : complex(0, N)]
    return (image * (0.6 + 0.8 * x * (1 - 0.3 * y))).astype(np.float32)


def _lower_resolution(image: np.ndarray, factor: int = 2) -> np.ndarray:
    small = ndimage.zoom(image, 1 / factor, order=1)
    return ndimage.zoom(small, factor, order=1)[:N, :N].astype(np.float32)


def test_the_panel_has_every_documented_metric_and_all_are_finite() -> None:
    values = compute_iqms(_slice())
    assert tuple(values) == IQM_NAMES
    assert all(np.isfinite(v) for v in values.values())


def test_a_ghost_raises_gsr_along_its_axis_only() -> None:
    clean = prepare(_slice())
    for axis in (0, 1):
        ghosted = prepare(_nyquist_ghost(_slice(), axis))
        assert gsr(ghosted, axis) > gsr(clean, axis) + 0.03
        assert abs(gsr(ghosted, 1 - axis) - gsr(clean, 1 - axis)) < 0.01


def test_a_kspace_spike_raises_the_spike_score() -> None:
    clean, spiked = prepare(_slice()), prepare(_with_spike(_slice()))
    assert spike(spiked) > spike(clean) + 1.5


@pytest.mark.parametrize("nuisance", [_bias, _lower_resolution])
def test_a_bias_field_or_a_lower_resolution_does_not_look_like_an_artifact(nuisance) -> None:  # type: ignore[no-untyped-def]
    base = compute_iqms(_slice())
    changed = compute_iqms(nuisance(_slice()))
    ghost = compute_iqms(_nyquist_ghost(_slice(), 0))
    spiked = compute_iqms(_with_spike(_slice()))
    # the artifact metrics move far less under the nuisance than under the artifact
    assert changed["gsr_rows"] - base["gsr_rows"] < 0.25 * (ghost["gsr_rows"] - base["gsr_rows"])
    assert changed["spike"] - base["spike"] < 0.25 * (spiked["spike"] - base["spike"])
    assert changed["bg_level"] - base["bg_level"] < 0.25 * (ghost["bg_level"] - base["bg_level"])


def test_the_panel_is_scale_invariant() -> None:
    image = _slice()
    a, b = compute_iqms(image), compute_iqms(image * 3000.0)
    for name in IQM_NAMES:
        assert b[name] == pytest.approx(a[name], rel=1e-4, abs=1e-9), name


def test_a_masked_zero_background_reads_as_no_evidence_not_a_division_by_zero() -> None:
    image = make_phantom(N)  # exact zeros around the head
    values = compute_iqms(image)
    assert all(np.isfinite(v) for v in values.values())
    assert values["qi1"] == 0.0
    assert values["gsr_rows"] == pytest.approx(0.0, abs=1e-3)
    assert values["bg_level"] == pytest.approx(0.0, abs=5e-3)


def test_noise_sigma_recovers_white_noise() -> None:
    rng = np.random.default_rng(3)
    assert noise_sigma(0.5 + 0.02 * rng.standard_normal((256, 256))) == pytest.approx(
        0.02, rel=0.05
    )


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((64, 64)), "no non-zero pixel"),
        (np.ones((8, 8)), "needs >= 16"),
        (np.ones((4, 4, 4)), "2-D slice"),
    ],
)
def test_what_cannot_be_measured_is_refused_with_the_reason(
    image: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        compute_iqms(image)


def test_explain_gives_one_plain_line_per_metric() -> None:
    lines = explain({"gsr_rows": 0.08, "unknown": 1.0})
    assert lines == [
        "ghost-to-signal, vertical 0.08 (lower is better): N/2 ghosts along the vertical axis"
    ]


def _every_nth_line(image: np.ndarray, axis: int, n: int = 4, scale: float = 0.6) -> np.ndarray:
    """Every ``n``-th k-space line along ``axis`` scaled by ``scale``: lines acquired unlike
    their neighbours (an interleaved ghost, a segment read in another pose)."""
    k = np.fft.fft2(image)
    lines = np.where(np.arange(image.shape[axis]) % n == 0, scale, 1.0)
    k = k * (lines[:, None] if axis == 0 else lines[None, :])
    return np.abs(np.fft.ifft2(k)).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("axis", [0, 1])
def test_corrupted_kspace_lines_raise_the_line_jumps_along_their_axis_only(
    axis: int, seed: int
) -> None:
    clean = _slice(seed=seed)
    jumps0, _ = kline_tables(prepare(clean))
    jumps, _ = kline_tables(prepare(_every_nth_line(clean, axis)))
    rise = (jumps - jumps0)[:, :2].sum(axis=1)  # the two lower bands, where the object is
    assert rise[axis] > 0.5
    assert abs(rise[1 - axis]) < 0.2


def test_the_line_metrics_ignore_a_bias_field_and_read_the_same_transposed() -> None:
    clean = _slice()
    jumps0, spreads0 = kline_tables(prepare(clean))
    jumps, spreads = kline_tables(prepare(_bias(clean)))
    assert np.abs(jumps - jumps0).max() < 0.1
    assert np.abs(spreads - spreads0).max() < 0.1
    assert kspace_lines(prepare(clean.T)) == pytest.approx(kspace_lines(prepare(clean)))
