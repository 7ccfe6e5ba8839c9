"""Physics and reproducibility of the k-space artifact simulations
(training/simulate/artifacts.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np
import pytest
from scipy import ndimage

from tests.utils.images import make_phantom
from training.simulate.artifacts import (
    KINDS,
    SEVERITIES,
    GhostingParams,
    GibbsParams,
    MotionParams,
    SpikeParams,
    WrapParams,
    apply,
    apply_ghosting,
    apply_gibbs,
    apply_motion,
    apply_spike,
    apply_wrap,
    kspace_error,
    random_artifact,
    simulate,
)


@pytest.fixture(scope="module")
def phantom() -> np.ndarray:
    return make_phantom()


# --- identities: zero-strength artifacts return the input ---------------------------------


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("shots", [1, 4])
def test_zero_motion_returns_input(phantom: np.ndarray, axis: int, shots: int) -> None:
    still = MotionParams((0.3, 0.7), (0.0,) * 3, ((0.0, 0.0),) * 3, axis=axis, shots=shots)
    np.testing.assert_allclose(apply_motion(phantom, still), phantom, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("ghosting", GhostingParams(num_ghosts=4, axis=0, intensity=0.0, restore=0.0)),
        ("spike", SpikeParams(positions=((0.1, 0.2),), intensity=0.0)),
        ("gibbs", GibbsParams(keep=1.0, axes=(0, 1))),
        ("wrap", WrapParams(axis=0, fraction=0.0, position=0.3, fill=0.5)),
    ],
)
def test_zero_strength_returns_input(phantom: np.ndarray, name: str, params: Any) -> None:
    out = apply(phantom, {"kind": name, **asdict(params)})
    np.testing.assert_allclose(out, phantom, atol=1e-4)


# --- physics of each kind -----------------------------------------------------------------


def test_motion_held_for_the_whole_scan_is_a_pure_shift(phantom: np.ndarray) -> None:
    shifted = MotionParams(times=(), angles=(0.0,), translations=((3.0, -5.0),))
    np.testing.assert_allclose(
        apply_motion(phantom, shifted), np.roll(phantom, (3, -5), axis=(0, 1)), atol=1e-4
    )


def test_motion_held_for_the_whole_scan_is_a_pure_rotation(phantom: np.ndarray) -> None:
    rotated = MotionParams(times=(), angles=(10.0,), translations=((0.0, 0.0),))
    expected = ndimage.rotate(phantom, 10.0, reshape=False, order=1)
    np.testing.assert_allclose(apply_motion(phantom, rotated), expected, atol=1e-4)


def test_motion_mid_scan_spreads_energy_along_phase_encode_only(phantom: np.ndarray) -> None:
    # A shift along the readout (x) after the centre lines: artifacts are replicated along the
    # phase-encode axis (y), so the error is spread over rows the object does not occupy.
    moved = MotionParams(times=(0.55,), angles=(0.0, 0.0), translations=((0.0, 0.0), (0.0, 4.0)))
    diff = np.abs(apply_motion(phantom, moved) - phantom)
    outside_rows = np.abs(np.linspace(-1, 1, 128)) > 0.9  # above and below the head
    outside_cols = np.abs(np.linspace(-1, 1, 128)) > 0.8  # left and right of the head
    assert diff[outside_rows].mean() > 5 * diff[:, outside_cols].mean()


def test_motion_between_two_interleaved_shots_gives_a_half_fov_ghost(phantom: np.ndarray) -> None:
    # Shot 0 reads the even lines, shot 1 (shifted 3 px along x) the odd ones, so the image is
    # the mean of both poses plus half their difference displaced by n/2 along phase-encode.
    moved = MotionParams(
        times=(0.5,), angles=(0.0, 0.0), translations=((0.0, 0.0), (0.0, 3.0)), axis=0, shots=2
    )
    still, shifted = phantom, np.roll(phantom, 3, axis=1)
    expected = np.abs((still + shifted) / 2 + np.roll(still - shifted, 64, axis=0) / 2)
    np.testing.assert_allclose(apply_motion(phantom, moved), expected, atol=1e-4)


def test_two_ghosts_are_half_fov_copies(phantom: np.ndarray) -> None:
    # Zeroing every other line of k-space gives |image - image shifted by n/2| / 2.
    out = apply_ghosting(phantom, GhostingParams(num_ghosts=2, axis=0, intensity=1.0, restore=0))
    expected = np.abs(phantom - np.roll(phantom, 64, axis=0)) / 2
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_spike_adds_a_cosine_stripe_pattern(phantom: np.ndarray) -> None:
    out = apply_spike(phantom, SpikeParams(positions=((0.0, 0.25),), intensity=0.1))
    stripes = 2 * 0.1 * phantom.mean() * np.cos(2 * np.pi * 0.25 * np.arange(128))
    np.testing.assert_allclose(out, np.abs(phantom + stripes[None, :]), atol=1e-4)


def test_gibbs_truncation_overshoots_at_edges() -> None:
    square = np.zeros((128, 128), np.float32)
    square[32:96, 32:96] = 1.0
    out = apply_gibbs(square, GibbsParams(keep=0.4, axes=(0, 1)))
    assert out.max() > 1.05  # the Gibbs overshoot (about 9 % for an ideal step)
    assert out[64, 20:32].max() > 0.03  # ripples outside the edge


def test_wrap_without_magnification_conserves_signal(phantom: np.ndarray) -> None:
    out = apply_wrap(phantom, WrapParams(axis=0, fraction=0.3, position=0.5, fill=0.0))
    assert out.sum() == pytest.approx(phantom.sum(), rel=0.02)  # folded, not lost
    assert out.max() > 1.3 * phantom.max()  # the scalp overlaps itself where it folds
    assert np.all(out[:10] == 0) and np.all(out[-10:] == 0)  # rows outside the smaller FOV


def test_wrap_folds_the_far_end_onto_the_start(phantom: np.ndarray) -> None:
    # The FOV starts at the object's left edge: what lies beyond its right edge folds onto its
    # left part; each row (readout) keeps its signal.
    out = apply_wrap(phantom, WrapParams(axis=1, fraction=0.3, position=0.0, fill=0.0))
    strip = out[:, out.sum(axis=0) > 0]
    third = strip.shape[1] // 3
    assert strip[:, :third].sum() > 1.3 * strip[:, -third:].sum()
    np.testing.assert_allclose(out.sum(axis=1), phantom.sum(axis=1), atol=2.0)  # row by row


# --- severity, scale, reproducibility ----------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_kspace_error_increases_with_severity(phantom: np.ndarray, kind: str) -> None:
    def error(severity: str, seed: int) -> float:
        return kspace_error(
            phantom, simulate(phantom, kind, severity, np.random.default_rng(seed))[0]
        )

    mean_error = [np.mean([error(s, seed) for seed in range(10)]) for s in SEVERITIES]
    assert mean_error[0] < mean_error[1] < mean_error[2], dict(
        zip(SEVERITIES, mean_error, strict=True)
    )


@pytest.mark.parametrize("kind", KINDS)
def test_output_keeps_the_intensity_scale(phantom: np.ndarray, kind: str) -> None:
    small, _ = simulate(phantom, kind, "severe", np.random.default_rng(3))
    large, _ = simulate(1000 * phantom, kind, "severe", np.random.default_rng(3))
    np.testing.assert_allclose(large, 1000 * small, rtol=1e-3, atol=0.1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("severity", SEVERITIES)
def test_output_is_finite_nonnegative_float32(
    phantom: np.ndarray, kind: str, severity: str
) -> None:
    out, record = simulate(phantom, kind, severity, np.random.default_rng(7))
    assert out.shape == phantom.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0
    assert (record["kind"], record["severity"]) == (kind, severity)


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_output_and_record(phantom: np.ndarray, kind: str) -> None:
    a, rec_a = simulate(phantom, kind, "moderate", np.random.default_rng(11))
    b, rec_b = simulate(phantom, kind, "moderate", np.random.default_rng(11))
    np.testing.assert_array_equal(a, b)
    assert rec_a == rec_b


@pytest.mark.parametrize("kind", KINDS)
def test_json_record_reproduces_output_exactly(phantom: np.ndarray, kind: str) -> None:
    out, record = simulate(phantom, kind, "severe", np.random.default_rng(5))
    np.testing.assert_array_equal(apply(phantom, json.loads(json.dumps(record))), out)


def test_random_artifact_draws_from_the_given_kinds_and_severities(phantom: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    records = [random_artifact(phantom, rng, ("spike", "wrap"), ("severe",))[1] for _ in range(8)]
    assert {r["kind"] for r in records} == {"spike", "wrap"}
    assert {r["severity"] for r in records} == {"severe"}


def test_full_size_slice_every_kind() -> None:
    image = 3000 * make_phantom(256)[:, 16:240]  # non-square, scanner-like intensities
    rng = np.random.default_rng(0)
    for kind in KINDS:
        out, _ = simulate(image, kind, "severe", rng)
        assert out.shape == image.shape and out.dtype == np.float32
        assert kspace_error(image, out) > 0.02


# --- validation names the bad value ------------------------------------------------------


def test_bad_severity_is_named(phantom: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"severity must be one of .*'mild'.*, got 'huge'"):
        simulate(phantom, "motion", "huge", np.random.default_rng(0))


def test_bad_kind_is_named(phantom: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"kind must be one of .*'motion'.*, got 'zipper'"):
        simulate(phantom, "zipper", "mild", np.random.default_rng(0))
    with pytest.raises(ValueError, match="got 'zipper'"):
        apply(phantom, {"kind": "zipper"})


def test_wrong_ndim_is_named(phantom: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"2-D .* got ndim=3"):
        simulate(phantom[None], "spike", "mild", np.random.default_rng(0))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: GhostingParams(num_ghosts=1, axis=0, intensity=0.5), "num_ghosts .* got 1"),
        (lambda: GhostingParams(num_ghosts=2, axis=2, intensity=0.5), "axis .* got 2"),
        (lambda: GhostingParams(num_ghosts=2, axis=0, intensity=1.5), "intensity .* got 1.5"),
        (lambda: GibbsParams(keep=0.0), "keep .* got 0.0"),
        (lambda: SpikeParams(positions=((0.7, 0.0),), intensity=0.1), "positions"),
        (lambda: WrapParams(axis=0, fraction=0.95), "fraction .* got 0.95"),
        (lambda: MotionParams((0.5,), (0.0,), ((0.0, 0.0),)), "need len.* 2 angles"),
        (lambda: MotionParams((0.7, 0.2), (0.0,) * 3, ((0.0, 0.0),) * 3), "times must be"),
    ],
)
def test_params_validation_names_the_value(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()
