"""Realism augmentation (training/simulate/augment.py): physics of each operation,
reproducibility."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from scipy import ndimage

from tests.utils.images import make_phantom
from training.simulate.artifacts import GibbsParams, apply_gibbs, kspace_error
from training.simulate.augment import (
    RESOLUTION_MAX,
    Bias,
    Contrast,
    Display,
    Distortion,
    FatSuppression,
    FieldOfView,
    Noise,
    Orient,
    Resolution,
    Ringing,
    apply_bias,
    apply_contrast,
    apply_display,
    apply_distortion,
    apply_fat_suppression,
    apply_fov,
    apply_noise,
    apply_orient,
    apply_realism,
    apply_resolution,
    apply_ringing,
    head_mask,
    random_realism,
    realism_record,
)


@pytest.fixture(scope="module")
def phantom() -> np.ndarray:
    return make_phantom()


SEEDS = range(40)
Outputs = list[tuple[np.ndarray, dict[str, Any]]]


@pytest.fixture(scope="module")
def outputs(phantom: np.ndarray) -> Outputs:
    return [random_realism(phantom, np.random.default_rng(seed)) for seed in SEEDS]


# --- the entry point ---------------------------------------------------------------------


def test_same_seed_same_output(phantom: np.ndarray) -> None:
    a, rec_a = random_realism(phantom, np.random.default_rng(3))
    b, rec_b = random_realism(phantom, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert rec_a == rec_b


def test_json_record_reproduces_output_exactly(phantom: np.ndarray, outputs: Outputs) -> None:
    for out, record in outputs[:10]:
        np.testing.assert_array_equal(apply_realism(phantom, json.loads(json.dumps(record))), out)


def test_output_is_finite_nonnegative_float32(outputs: Outputs) -> None:
    for out, _ in outputs:
        assert out.dtype == np.float32 and out.ndim == 2
        assert np.isfinite(out).all() and out.min() >= 0


def test_shapes_stay_in_the_documented_range(outputs: Outputs) -> None:
    for out, record in outputs:
        names = [op["op"] for op in record["ops"]]
        if "resolution" in names:
            size = record["ops"][names.index("resolution")]["size"]
            assert max(out.shape) == size and 128 <= size <= 320
        else:  # only the FOV change: each side cropped <= 8 % or padded <= 25 %
            assert all(0.84 * 128 <= n <= 1.5 * 128 for n in out.shape)


def test_operations_vary_across_seeds(outputs: Outputs) -> None:
    seen = {op["op"] for _, record in outputs for op in record["ops"]}
    ops = {
        *("orient", "contrast", "fat_suppression", "bias", "fov", "distortion"),
        *("resolution", "ringing", "noise", "display"),
    }
    assert seen == ops
    assert len({out.shape for out, _ in outputs}) > 10


def test_wrong_ndim_and_unknown_op_are_named(phantom: np.ndarray) -> None:
    with pytest.raises(ValueError, match="got ndim=1"):
        random_realism(phantom[0], np.random.default_rng(0))
    with pytest.raises(ValueError, match="got 'sharpen'"):
        apply_realism(phantom, {"ops": [{"op": "sharpen"}]})


def test_full_size_scanner_range_slice() -> None:
    image = 4000 * make_phantom(256)
    out, _ = random_realism(image, np.random.default_rng(1))
    assert out.dtype == np.float32 and np.isfinite(out).all() and out.min() >= 0
    assert 0.2 < np.percentile(out, 99.5) / 4000 < 5  # same order of intensity scale


# --- each operation ------------------------------------------------------------------------


def test_contrast_inversion_inverts_inside_the_head_only(phantom: np.ndarray) -> None:
    out = apply_contrast(phantom, Contrast(invert=True))
    inside = head_mask(phantom) > 0.99
    assert np.corrcoef(out[inside], phantom[inside])[0, 1] < -0.9
    outside = ~ndimage.binary_fill_holes(phantom > 0.05)
    assert out[outside].max() < 0.1  # the background stays dark: no halo around the head
    assert out[64, 54] > 2 * out[64, 64] > 0  # ventricle (dark in T1) brighter than white matter


def test_gamma_is_monotone_and_darkens_midtones(phantom: np.ndarray) -> None:
    out = apply_contrast(phantom, Contrast(gamma=2.0))
    order = np.argsort(phantom.ravel(), kind="stable")
    assert np.all(np.diff(out.ravel()[order]) >= -1e-6)
    assert out.mean() < 0.9 * phantom.mean()


def test_non_monotone_curve_swaps_tissue_order(phantom: np.ndarray) -> None:
    # grey matter (0.55) -> 0.9, white matter (0.75) -> 0.3: a T2-like order
    curve = Contrast(knots=((0.0, 0.0), (0.55, 0.9), (0.75, 0.3), (1.0, 1.0)))
    out = apply_contrast(phantom, curve)
    assert out[64, 30] > 2 * out[64, 64]  # cortex vs central white matter


def test_identity_parameters_return_the_input(phantom: np.ndarray) -> None:
    for fn, params in [
        (apply_contrast, Contrast()),
        (apply_bias, Bias()),
        (apply_fov, FieldOfView()),
        (apply_orient, Orient()),
        (apply_ringing, Ringing(keep=1.0)),
        (apply_distortion, Distortion()),
    ]:
        np.testing.assert_allclose(fn(phantom, params), phantom, atol=1e-5)  # type: ignore[operator]


def test_noise_lowers_snr_to_the_requested_level(phantom: np.ndarray) -> None:
    out = apply_noise(phantom, Noise(snr=10.0, seed=0))
    level = phantom[phantom > 0.1 * np.percentile(phantom, 99.5)].mean()
    background = out[:, :8]  # outside the head: pure Rayleigh noise, mean sigma * sqrt(pi / 2)
    sigma = background.mean() / np.sqrt(np.pi / 2)
    assert sigma == pytest.approx(level / 10.0, rel=0.1)
    assert apply_noise(phantom, Noise(snr=40.0, seed=0))[:, :8].mean() < background.mean() / 3


def test_bias_field_is_smooth_and_multiplicative(phantom: np.ndarray) -> None:
    coefficients = (0.0, 0.3, -0.2, 0.1, 0.2, 0.0, 0.1, -0.3, 0.0, 0.1)
    out = apply_bias(phantom, Bias(coefficients))
    inside = phantom > 0.3
    field = out[inside] / phantom[inside]
    assert 0.3 < field.min() < 0.95 and 1.05 < field.max() < 3
    ratio = np.where(inside, out / np.maximum(phantom, 1e-6), np.nan)
    assert np.nanmax(np.abs(np.diff(ratio, axis=1))) < 0.05  # smooth: < 5 % per pixel


def test_fov_pads_and_crops_by_the_given_fractions(phantom: np.ndarray) -> None:
    out = apply_fov(phantom, FieldOfView((0.25, 0.0, -0.05, 0.1)))
    assert out.shape == (128 + 32, 128 - 6 + 13)
    np.testing.assert_array_equal(out[:32], 0)
    np.testing.assert_array_equal(out[32:, :-13], phantom[:, 6:])


def test_orient_rot90_transposes_the_shape(phantom: np.ndarray) -> None:
    out = apply_orient(phantom[:, :100], Orient(flip_rows=True, rot90=1))
    np.testing.assert_array_equal(out, np.rot90(phantom[::-1, :100]))


def test_lower_resolution_blurs_and_sets_the_matrix(phantom: np.ndarray) -> None:
    sharp = apply_resolution(phantom, Resolution(factor=1.0, size=200))
    blurred = apply_resolution(phantom, Resolution(factor=2.5, size=200))
    assert sharp.shape == blurred.shape == (200, 200)
    assert (np.diff(blurred) ** 2).sum() < 0.6 * (np.diff(sharp) ** 2).sum()  # edge energy
    wide = apply_resolution(phantom[:, :64], Resolution(factor=1.5, size=300))
    assert wide.shape == (300, 150)


def test_ringing_is_far_milder_than_moderate_gibbs(phantom: np.ndarray) -> None:
    worst_realism = kspace_error(phantom, apply_ringing(phantom, Ringing(0.8, (0, 1))))
    mildest_moderate = kspace_error(phantom, apply_gibbs(phantom, GibbsParams(0.42, (1,))))
    assert worst_realism < 0.25 * mildest_moderate


def test_ringing_rejects_artifact_strength() -> None:
    with pytest.raises(ValueError, match="keep .* got 0.5"):
        Ringing(keep=0.5)


def test_realism_noise_never_drops_below_the_snr_floor() -> None:
    from training.simulate.augment import SNR_RANGE, realism_record

    rng = np.random.default_rng(0)
    snrs = [
        op["snr"] for _ in range(400) for op in realism_record(rng)["ops"] if op["op"] == "noise"
    ]
    assert len(snrs) > 200  # noise is drawn most of the time
    assert SNR_RANGE[0] <= min(snrs) and max(snrs) <= SNR_RANGE[1]
    assert min(snrs) < 12 and max(snrs) > 80  # the whole range is used


def test_display_renders_an_8_bit_window_on_the_input_scale(phantom: np.ndarray) -> None:
    image = apply_noise(phantom, Noise(snr=20, seed=1))
    out = apply_display(image, Display(low=10.0, high=98.0))
    assert out.dtype == np.float32 and out.shape == image.shape
    levels = np.unique(out)
    assert 100 < levels.size <= 256  # quantised to 8 bits, the window still spread over them
    lo, hi = np.percentile(image, (10.0, 98.0))
    assert (out[image <= lo] == 0).all()  # below the window: black
    assert (out[image >= hi] == out.max()).all()  # above: saturated
    assert out.max() == pytest.approx(np.percentile(image, 99.5), rel=1e-5)  # the input's scale


def test_display_jpeg_changes_the_pixels_a_little(phantom: np.ndarray) -> None:
    plain = apply_display(phantom, Display())
    jpeg = apply_display(phantom, Display(jpeg_quality=60))
    difference = np.abs(jpeg - plain).mean() / plain.max()
    assert 0 < difference < 0.02


def test_display_rejects_bad_windows_and_qualities() -> None:
    with pytest.raises(ValueError, match="low < high"):
        Display(low=50.0, high=40.0)
    with pytest.raises(ValueError, match="jpeg_quality .* got 5"):
        Display(jpeg_quality=5)


def test_display_goes_after_a_simulated_artifact() -> None:
    from training.simulate.augment import split_acquisition

    record = {"ops": [{"op": "contrast"}, {"op": "noise"}, {"op": "display"}]}
    before, after = split_acquisition(record)
    assert [op["op"] for op in before["ops"]] == ["contrast"]
    assert [op["op"] for op in after["ops"]] == ["noise", "display"]


def test_realism_reaches_clinical_low_resolution_matrices() -> None:
    # anisotropic DWI / EPI come as ~60-px matrices: a 1 mm source must be drawn that coarse
    rng = np.random.default_rng(0)
    factors = [
        op["factor"]
        for _ in range(400)
        for op in realism_record(rng)["ops"]
        if op["op"] == "resolution"
    ]
    assert len(factors) > 100 and min(factors) >= 1.0 and max(factors) <= RESOLUTION_MAX
    assert np.mean(np.array(factors) > 3.5) > 0.1
    # and such an acquisition is coarse: its sharpest edge is far softer than the source's
    phantom = make_phantom(256)
    coarse = apply_resolution(phantom, Resolution(factor=4.5, size=256))
    assert coarse.shape == (256, 256)
    assert np.abs(np.diff(coarse, axis=1)).max() < np.abs(np.diff(phantom, axis=1)).max() / 2


# --- echo-planar distortion ----------------------------------------------------------------


def _bar(n: int = 200) -> np.ndarray:
    image = np.zeros((n, n), np.float32)
    image[:, 90:110] = 1.0  # a vertical bar, 20 px wide, centred on column 100
    return image


def test_distortion_displaces_along_the_phase_encode_axis_by_the_requested_shift() -> None:
    image = _bar()
    # one wide bump at the centre: columns near the middle row move by ~0.04 * 200 = 8 px
    out = apply_distortion(image, Distortion(axis=1, bumps=((0.5, 0.5, 0.3, 0.04),)))
    cols = np.arange(200)
    centre = (out[100] * cols).sum() / out[100].sum()
    assert centre == pytest.approx(100 + 8, abs=1.0)
    edge = (out[0] * cols).sum() / out[0].sum()  # far from the bump (0.5 of the side): < 2 px
    assert abs(edge - 100) < 2.5
    # along the other axis the bar's sides stay where they are (only its brightness varies)
    same = apply_distortion(image, Distortion(axis=0, bumps=((0.5, 0.5, 0.3, 0.04),)))
    np.testing.assert_array_equal(same[20:180] > 0.5, image[20:180] > 0.5)


def test_distortion_conserves_signal_and_piles_it_up_where_compressed() -> None:
    image = _bar()
    # a sharp bump centred on the bar's left edge: the shift falls across the bar, which is
    # pushed right by its left side more than by its right side, i.e. compressed
    p = Distortion(axis=1, bumps=((0.5, 0.45, 0.06, 0.03),))
    out = apply_distortion(image, p)
    assert out.sum() == pytest.approx(image.sum(), rel=1e-3)  # the Jacobian keeps the signal
    assert out.max() > 1.2  # compressed: brighter than any input pixel
    assert (out[100] > 0.5).sum() < 20  # and narrower


def test_dropout_removes_signal_at_its_centre_by_its_depth(phantom: np.ndarray) -> None:
    out = apply_distortion(phantom, Distortion(dropouts=((0.5, 0.5, 0.05, 0.8),)))
    assert out[64, 64] == pytest.approx(0.2 * phantom[64, 64], rel=0.05)
    np.testing.assert_allclose(out[:10], phantom[:10], atol=1e-6)  # far away: untouched


def test_distortion_rejects_implausible_parameters() -> None:
    with pytest.raises(ValueError, match="axis must be 0 or 1"):
        Distortion(axis=2)
    with pytest.raises(ValueError, match=r"\|shift\| <= 0.08"):
        Distortion(bumps=((0.5, 0.5, 0.2, 0.2),))
    with pytest.raises(ValueError, match="depth <= 0.95"):
        Distortion(dropouts=((0.5, 0.5, 0.2, 1.0),))


def _drawn_last(
    monkeypatch: pytest.MonkeyPatch, probability: str, op: str, not_before: set[str]
) -> int:
    """How often of 200 records ``op`` is drawn; asserts that no op of ``not_before`` precedes
    it and that without it (``probability`` set to 0) each record is the same but for it, i.e.
    drawing it changed no earlier draw and so no evaluation image that does not draw it."""
    import training.simulate.augment as augment

    with_it = [realism_record(np.random.default_rng(seed)) for seed in range(200)]
    monkeypatch.setattr(augment, probability, 0.0)
    without = [realism_record(np.random.default_rng(seed)) for seed in range(200)]
    drawn = 0
    for a, b in zip(with_it, without, strict=True):
        names = [o["op"] for o in a["ops"]]
        if op in names:
            drawn += 1
            assert not not_before & set(names[: names.index(op)]), names
        assert [o for o in a["ops"] if o["op"] != op] == b["ops"]
    return drawn


def test_distortion_is_drawn_last_and_applied_before_the_acquisition(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import training.simulate.augment as augment

    monkeypatch.setattr(augment, "FAT_SUPPRESSION_PROBABILITY", 0.0)  # drawn after it
    later = {"resolution", "ringing", "noise", "display"}  # it deforms the object, not samples
    drawn = _drawn_last(monkeypatch, "DISTORTION_PROBABILITY", "distortion", later)
    assert 30 < drawn < 90  # DISTORTION_PROBABILITY = 0.3 of 200


# --- fat suppression -------------------------------------------------------------------------


def _disc(n: int = 200, radius: float = 60.0) -> np.ndarray:
    y, x = np.indices((n, n))
    return (np.hypot(y - n / 2, x - n / 2) <= radius).astype(np.float32)


def _radial_profile(image: np.ndarray) -> np.ndarray:
    """Mean intensity at each whole-pixel distance from the centre of a square image."""
    n = image.shape[0]
    y, x = np.indices(image.shape)
    r = np.round(np.hypot(y - n / 2, x - n / 2)).astype(int)
    return np.bincount(r.ravel(), image.ravel()) / np.bincount(r.ravel())


def test_fat_suppression_darkens_the_rim_band_and_keeps_a_faint_outer_ring() -> None:
    head = _disc()  # radius 60 px; gap 0.05 * 200 = 10 px, ring 0.02 * 200 = 4 px
    p = FatSuppression(gap=0.05, ring=0.02, level=0.0, ring_level=0.4, mode="suppress")
    profile = _radial_profile(apply_fat_suppression(head, p))
    assert profile[:40].min() == pytest.approx(1.0, abs=1e-3)  # the brain is untouched
    assert profile[49:52].max() < 0.1  # the suppressed band (5..14 px inside the edge)
    assert 0.25 < profile[58] < 0.5  # the outer ring, at ring_level of what it was
    assert profile[64:].max() == 0.0  # nothing is added outside the head


def test_fat_suppression_ring_mode_adds_a_ring_outside_a_scalpless_head() -> None:
    head = _disc()
    p = FatSuppression(gap=0.05, ring=0.02, level=0.0, ring_level=0.3, mode="ring")
    out = apply_fat_suppression(head, p)
    profile = _radial_profile(out)
    np.testing.assert_allclose(out[head > 0], 1.0, atol=1e-3)  # the head is unchanged
    assert profile[63:68].max() < 0.05  # the dark gap (~10 px) just outside it
    assert 0.2 < profile[72] < 0.35  # the ring, at 0.3 of the head's scale
    assert profile[80:].max() < 1e-3


def test_fat_suppression_rejects_implausible_parameters_and_leaves_a_blank_image() -> None:
    with pytest.raises(ValueError, match="mode must be"):
        FatSuppression(mode="water")
    with pytest.raises(ValueError, match="gap <= 0.1"):
        FatSuppression(gap=0.5)
    with pytest.raises(ValueError, match="ring_level <= 0.8"):
        FatSuppression(ring_level=1.0)
    blank = np.zeros((64, 64), np.float32)
    np.testing.assert_array_equal(apply_fat_suppression(blank, FatSuppression()), blank)


def test_fat_suppression_is_drawn_last_and_applied_before_the_bias_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    later = {"bias", "fov", "distortion", "resolution", "ringing", "noise", "display"}
    drawn = _drawn_last(monkeypatch, "FAT_SUPPRESSION_PROBABILITY", "fat_suppression", later)
    assert 25 < drawn < 80  # FAT_SUPPRESSION_PROBABILITY = 0.25 of 200


def test_coarse_acquisition_sets_a_small_matrix_and_blurs_only_its_coarse_axis(
    phantom: np.ndarray,
) -> None:
    from training.simulate.augment import Coarse, apply_coarse

    iso = apply_coarse(phantom, Coarse((1.0, 1.0), 64))
    aniso = apply_coarse(phantom, Coarse((1.0, 3.0), 64))
    assert iso.shape == aniso.shape == (64, 64)
    # edge energy across columns (axis 1) drops with its 3x coarser acquisition, far more than
    # along rows
    cols = (np.diff(aniso, axis=1) ** 2).sum() / (np.diff(iso, axis=1) ** 2).sum()
    rows = (np.diff(aniso, axis=0) ** 2).sum() / (np.diff(iso, axis=0) ** 2).sum()
    assert cols < 0.5 * rows
    # a structure varying along rows only is left as sharp as the isotropic acquisition's
    steps = np.repeat(np.repeat(np.arange(8.0) % 2, 16)[:, None], 128, axis=1)
    a = apply_coarse(steps, Coarse((1.0, 3.0), 64))
    b = apply_coarse(steps, Coarse((1.0, 1.0), 64))
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert float(np.abs(aniso.mean() - iso.mean())) < 0.02 * float(iso.mean())  # no signal lost


def test_coarse_rejects_implausible_parameters() -> None:
    from training.simulate.augment import Coarse

    with pytest.raises(ValueError, match="factors must be two values in"):
        Coarse((1.0, 5.0), 64)
    with pytest.raises(ValueError, match="size must be in"):
        Coarse((1.0, 1.0), 16)


def test_coarse_is_drawn_only_when_asked_and_changes_no_other_draw() -> None:
    from training.simulate.augment import ACQUISITION_OPS

    default = [realism_record(np.random.default_rng(seed)) for seed in range(200)]
    asked = [
        realism_record(np.random.default_rng(seed), coarse_probability=0.5) for seed in range(200)
    ]
    drawn = 0
    for a, b in zip(asked, default, strict=True):
        names = [o["op"] for o in a["ops"]]
        assert "coarse" not in [o["op"] for o in b["ops"]]
        if "coarse" in names:
            drawn += 1
            assert not set(ACQUISITION_OPS) & set(names[: names.index("coarse")]), names
        assert [o for o in a["ops"] if o["op"] != "coarse"] == b["ops"]
    assert 70 <= drawn <= 130
    with pytest.raises(ValueError, match="coarse_probability"):
        realism_record(np.random.default_rng(0), coarse_probability=1.5)


def test_lower_resolution_never_acquires_below_the_clinical_floor() -> None:
    from training.simulate.augment import MIN_ACQUIRED_SIDE

    small = np.zeros((58, 58), np.float32)
    small[::2] = 1.0  # finest possible stripes: kept only by an acquisition of >= 58 rows
    floor = apply_resolution(small, Resolution(factor=4.5, size=58))
    at_floor = apply_resolution(small, Resolution(factor=58 / MIN_ACQUIRED_SIDE, size=58))
    np.testing.assert_allclose(floor, at_floor, atol=1e-6)  # 4.5x is capped at the floor
    big = np.zeros((256, 256), np.float32)
    big[::8] = 1.0
    coarse = apply_resolution(big, Resolution(factor=4.5, size=256))
    assert coarse.std() < 0.5 * apply_resolution(big, Resolution(factor=2.0, size=256)).std()
