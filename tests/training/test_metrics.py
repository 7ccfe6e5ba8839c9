from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.evaluate.metrics import (
    best_threshold,
    binary_metrics,
    clean_only_threshold,
    plot_confusion,
    plot_roc,
)


def test_metrics_match_a_hand_computed_confusion_matrix() -> None:
    y = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]
    p = [0.9, 0.8, 0.3, 0.6, 0.1, 0.7, 0.2, 0.4, 0.05, 0.55]
    m = binary_metrics(y, p, threshold=0.5)
    # predicted 1: 0.9 0.8 0.6 0.7 0.55 -> TP 4 (idx 0,1,3,9), FP 1 (idx 5); FN 1 (idx 2); TN 4
    assert m["confusion"] == {"tn": 4, "fp": 1, "fn": 1, "tp": 4}
    assert m["accuracy"] == pytest.approx(8 / 10)
    assert m["precision"] == pytest.approx(4 / 5)
    assert m["recall"] == pytest.approx(4 / 5)
    assert m["f1"] == pytest.approx(0.8)
    # AUC by counting: pairs (pos, neg) with p_pos > p_neg over 5 * 5 pairs.
    pos, neg = [0.9, 0.8, 0.3, 0.6, 0.55], [0.1, 0.7, 0.2, 0.4, 0.05]
    wins = sum(a > b for a in pos for b in neg)
    assert m["roc_auc"] == pytest.approx(wins / 25)


def test_auc_is_none_with_one_class() -> None:
    assert binary_metrics([0, 0, 0], [0.1, 0.2, 0.9], 0.5)["roc_auc"] is None


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="equal-length"):
        binary_metrics([0, 1], [0.5], 0.5)


def test_best_threshold_separates_separable_data() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.3, 0.35, 0.6, 0.7, 0.9])
    t = best_threshold(y, p)
    assert 0.35 < t <= 0.6
    assert binary_metrics(y, p, t)["f1"] == 1.0


def test_a_false_alarm_bound_keeps_a_weak_model_from_flagging_everything() -> None:
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 50)
    p = np.concatenate([rng.uniform(0.4, 0.8, 50), rng.uniform(0.45, 0.9, 50)])  # weak, overlapping
    loose = binary_metrics(y, p, best_threshold(y, p))
    assert loose["recall"] == 1.0 and loose["confusion"]["fp"] >= 40  # the F1 optimum: flag all
    t = best_threshold(y, p, max_false_alarm_rate=0.1)
    bounded = binary_metrics(y, p, t)
    assert bounded["confusion"]["fp"] <= 5 and bounded["recall"] > 0
    # no threshold at <= 10 % false alarms scores a higher F1
    for other in np.unique(p):
        m = binary_metrics(y, p, other)
        if m["confusion"]["fp"] <= 5:
            assert m["f1"] <= bounded["f1"] + 1e-12


def test_when_the_top_score_is_clean_a_zero_bound_flags_nothing() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.2, 0.9, 0.5, 0.1])
    t = best_threshold(y, p, max_false_alarm_rate=0.0)
    assert t > 0.9 and binary_metrics(y, p, t)["confusion"]["fp"] == 0
    with pytest.raises(ValueError, match="max_false_alarm_rate"):
        best_threshold(y, p, max_false_alarm_rate=1.5)


def test_plots_are_written(tmp_path: Path) -> None:
    roc = plot_roc({"a": ([0, 1, 0, 1], [0.2, 0.8, 0.4, 0.6])}, tmp_path / "roc.png")
    cm = plot_confusion({"tn": 3, "fp": 1, "fn": 0, "tp": 5}, tmp_path / "cm.png")
    for path in (roc, cm):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_paired_auc_difference_sees_a_better_model_and_is_seeded() -> None:
    from training.evaluate.metrics import paired_auc_difference

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 100)
    weak = y * 0.3 + rng.random(200)  # AUC ~0.75
    strong = y * 1.0 + rng.random(200)  # AUC ~1
    d = paired_auc_difference(y, weak, strong)
    assert d["new"] > 0.97 and 0.6 < d["old"] < 0.9
    assert 0 < d["ci_low"] < d["difference"] < d["ci_high"]
    assert paired_auc_difference(y, weak, strong) == d  # same seed, same interval
    same = paired_auc_difference(y, weak, weak)
    assert same["difference"] == same["ci_low"] == same["ci_high"] == 0.0
    with pytest.raises(ValueError, match="both classes"):
        paired_auc_difference(np.zeros(4), weak[:4], strong[:4])
    with pytest.raises(ValueError, match="one length"):
        paired_auc_difference(y, weak[:10], strong)


def test_clean_only_threshold_flags_at_most_the_bound_of_the_clean_scores() -> None:
    rng = np.random.default_rng(3)
    clean = rng.uniform(0, 1, 200)
    for bound in (0.0, 0.05, 0.1, 0.5):
        t = clean_only_threshold(clean, bound)
        flagged = int((clean >= t).sum())
        assert flagged <= bound * clean.size + 1e-9
        # the lowest such threshold: one notch lower flags one more
        assert int((clean >= np.nextafter(t, -np.inf) - 1e-12).sum()) > flagged or t <= 0
    assert clean_only_threshold([0.2, 0.9, 0.4], 0.0) > 0.9


def test_clean_only_threshold_refuses_no_scores_and_a_bound_of_one() -> None:
    with pytest.raises(ValueError, match="no clean scores"):
        clean_only_threshold([], 0.05)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        clean_only_threshold([0.3], 1.0)
