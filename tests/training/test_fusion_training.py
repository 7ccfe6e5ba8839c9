"""Fitting the fused detector: the visibility floor, the per-source threshold rule, the fit."""

from __future__ import annotations

import numpy as np
import pytest

from model.fusion import FusionModel
from tests.utils.images import make_phantom
from training.data.samples import Sample
from training.fit.fusion import fit_fusion, pooled_threshold, training_slices


def test_the_threshold_bounds_false_alarms_per_source_not_only_overall() -> None:
    # source "a": 20 clean slices scoring low; source "b": 20 clean slices, two of them high.
    clean_a = np.linspace(0.0, 0.3, 20)
    clean_b = np.r_[np.linspace(0.0, 0.3, 18), 0.8, 0.9]
    art = np.linspace(0.5, 1.0, 40)
    probs = np.r_[clean_a, clean_b, art]
    labels = np.r_[np.zeros(40), np.ones(40)].astype(int)
    sources = ["a"] * 20 + ["b"] * 20 + ["a"] * 40
    # overall, 2 of 40 clean slices (5 %) above 0.75 would be allowed; per source, b's 2 of 20
    # (10 %) are not: the threshold must sit above b's second-highest clean score (0.8)
    rule = pooled_threshold(labels, probs, sources, max_false_alarm_rate=0.05)
    assert rule["threshold"] > 0.8
    assert rule["binding_source"] == "b"
    flagged_b = (clean_b >= rule["threshold"]).sum()
    assert flagged_b <= 1
    assert rule["oracle_f1"] >= rule["f1"]


def test_the_threshold_is_f1_optimal_when_no_bound_binds() -> None:
    probs = np.r_[np.linspace(0, 0.4, 50), np.linspace(0.6, 1.0, 50)]
    labels = np.r_[np.zeros(50), np.ones(50)].astype(int)
    rule = pooled_threshold(labels, probs, ["s"] * 100, max_false_alarm_rate=0.05)
    assert 0.4 < rule["threshold"] <= 0.6
    assert rule["f1"] == pytest.approx(1.0)


def test_the_rule_refuses_one_class_and_bad_bounds() -> None:
    with pytest.raises(ValueError, match="clean and artifact"):
        pooled_threshold([0, 0], [0.1, 0.2], ["a", "a"])
    with pytest.raises(ValueError, match="max_false_alarm_rate"):
        pooled_threshold([0, 1], [0.1, 0.2], ["a", "a"], max_false_alarm_rate=2.0)


def test_fit_recovers_an_informative_feature_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(200), np.ones(200)].astype(int)
    rows = [
        {
            "iqm_gsr_rows": float(0.1 * label + 0.03 * rng.standard_normal()),
            "iqm_snr": float(rng.standard_normal()),
        }
        for label in y
    ]
    model = fit_fusion(rows, y)
    weights = dict(zip(model.features, model.coef, strict=True))
    assert weights["iqm_gsr_rows"] > 5 * abs(weights["iqm_snr"])
    assert FusionModel.from_dict(model.to_dict()) == model
    probs = model.probability(rows)
    assert probs[y == 1].mean() > 0.8 > 0.2 > probs[y == 0].mean()


def test_fit_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both clean and artifact"):
        fit_fusion([{"iqm_snr": 1.0}], [0])


def test_training_slices_keep_only_visible_artifacts() -> None:
    sample = Sample(make_phantom(96), 0, "g", "train/clean/a.png", {"source": "x"})
    out, dropped = training_slices([sample], seed=0, variants=4, kinds=("motion", "spike"))
    clean = [s for s in out if s.label == 0]
    artifacts = [s for s in out if s.label == 1]
    assert len(clean) == 4 and len(artifacts) + dropped == 4
    assert all(s.info["kind"] in ("motion", "spike") for s in artifacts)


def _result(f1: float, auc: float) -> dict:
    row = {"f1": f1, "roc_auc": auc, "precision": 0.9, "recall": 0.3, "n": 10}
    return {
        "threshold": {
            "threshold": 0.9,
            "rule": "r",
            "binding_source": "a",
            "f1": f1,
            "oracle_f1": 0.8,
        },
        **{
            s: {"metrics": row, "moderate_and_severe": row}
            for s in ("test", "transfer", "xsim", "msim")
        },
    }


#: the ``training`` record of a train-fusion summary, as the card section reads it
TRAINING = {"slices": 10, "artifact": 5, "dropped_not_visible": 1, "visible_floor_nrmse": 0.05}


def test_the_served_variant_is_the_one_with_the_better_held_out_f1() -> None:
    from training.experiments.fusion_experiment import choose_variant

    assert choose_variant({"fused": _result(0.4, 0.9), "iqm": _result(0.5, 0.8)}) == "iqm"
    assert choose_variant({"fused": _result(0.5, 0.9), "iqm": _result(0.5, 0.8)}) == "fused"


def test_the_choice_counts_the_monai_split_and_takes_a_dataset_without_it() -> None:
    from training.experiments.fusion_experiment import choose_variant

    fused, iqm = _result(0.5, 0.9), _result(0.45, 0.8)
    fused["msim"] = {"metrics": {"f1": 0.0, "roc_auc": 0.5}, "moderate_and_severe": None}
    fused["msim"]["moderate_and_severe"] = fused["msim"]["metrics"]
    assert choose_variant({"fused": fused, "iqm": iqm}) == "iqm"  # (0.5 * 3 + 0) / 4 < 0.45
    for result in (fused, iqm):
        del result["msim"]  # a dataset built before msim: the mean over the splits it has
    assert choose_variant({"fused": fused, "iqm": iqm}) == "fused"


def test_the_card_section_names_the_served_variant_and_its_threshold() -> None:
    from training.experiments.fusion_report import render_fusion

    summary = {
        "detectors": {
            "cnn": _result(0.1, 0.7),
            "fused": _result(0.4, 0.9),
            "iqm": _result(0.5, 0.8),
        },
        "served_variant": "iqm",
        "training": TRAINING,
    }
    text = render_fusion(summary)
    assert "Served: **IQM panel alone**" in text
    assert "| test | IQM panel alone (served) | 0.900 | 80.0 | 50.0 |" in text
    assert "AMAResNet + panel (served)" not in text


def test_the_choice_takes_the_spectral_candidates_when_they_are_there_and_never_the_cnn() -> None:
    from training.experiments.fusion_experiment import choose_variant

    detectors = {
        "cnn": _result(0.9, 0.99),  # never served alone by this rule
        "iqm": _result(0.5, 0.8),
        "fused": _result(0.45, 0.9),
        "spectral": _result(0.6, 0.85),
        "all": _result(0.55, 0.95),
    }
    assert choose_variant(detectors) == "spectral"
    del detectors["spectral"], detectors["all"]
    assert choose_variant(detectors) == "iqm"


def test_the_card_section_says_what_the_spectral_network_was_trained_on() -> None:
    from training.experiments.fusion_report import render_fusion

    summary = {
        "detectors": {"iqm": _result(0.5, 0.8), "spectral": _result(0.6, 0.85)},
        "served_variant": "spectral",
        "held_out_variant": "spectral",
        "held_out_kinds": {
            "motion": {"n_artifact": 4, "roc_auc": 0.8, "recall": 0.5, "false_alarm_rate": 0.0}
        },
        "spectral": {"seeds": [1, 2, 3], "epochs": 4},
        "training": TRAINING,
    }
    text = render_fusion(summary)
    assert "Served: **panel + spectral network**" in text
    assert "twins of seeds [1, 2, 3], 4 epochs" in text
    assert "The spectral network itself was trained on every kind" in text


def test_the_card_section_names_each_member_of_an_ensemble() -> None:
    from training.experiments.fusion_report import render_fusion

    members = [{"seeds": [1, 2], "epochs": 5}, {"seeds": [8, 9], "epochs": 4}]
    summary = {
        "detectors": {"iqm": _result(0.5, 0.8), "spectral": _result(0.6, 0.85)},
        "served_variant": "spectral",
        "spectral": {"members": members, "held_out_kinds": []},
        "training": TRAINING,
    }
    text = render_fusion(summary)
    assert "the mean logit of an ensemble of 2 spectral networks" in text
    assert "trained apart: seeds [1, 2], 5 epochs; seeds [8, 9], 4 epochs;" in text
    assert "twins of seeds" not in text  # no single network's recipe


def test_the_card_says_when_the_network_too_never_saw_the_held_out_kind() -> None:
    from training.experiments.fusion_report import render_fusion

    foreign = {"tio_motion": {"n_artifact": 9, "roc_auc": 0.61, "recall": 0.111}}
    summary = {
        "detectors": {"iqm": _result(0.5, 0.8), "spectral": _result(0.6, 0.85)},
        "served_variant": "spectral",
        "held_out_variant": "spectral",
        "held_out_kinds": {
            "motion": {
                "n_artifact": 4,
                "roc_auc": 0.8,
                "recall": 0.5,
                "false_alarm_rate": 0.0,
                "foreign": foreign,
            },
            "wrap": {"n_artifact": 3, "roc_auc": 0.9, "recall": 1.0, "false_alarm_rate": 0.0},
        },
        "spectral": {"seeds": [1], "epochs": 4, "held_out_kinds": ["motion"]},
        "training": TRAINING,
    }
    text = render_fusion(summary)
    assert "trained without motion too" in text
    assert "trained on every kind" not in text
    assert "| motion | 4 | 80.0 | 50.0 | 0.0 | tio_motion 61.0 / 11.1 |" in text
    assert "| wrap | 3 | 90.0 | 100.0 | 0.0 | - |" in text


def test_a_held_out_kind_is_scored_on_the_other_simulators_version_of_it() -> None:
    from training.data.samples import Sample
    from training.experiments.fusion_experiment import FOREIGN_KINDS, _hold_out_kinds, _Set

    rng = np.random.default_rng(0)
    pixels = np.zeros((2, 2), np.float32)

    def make(n: int, label: int, kind: str, source: str, shift: float) -> _Set:
        info = {"kind": kind, "severity": "severe" if label else "", "source": source}
        samples = [Sample(pixels, label, source, f"{kind}{i}", dict(info)) for i in range(n)]
        # iqm_snr carries every artifact kind; iqm_efc only ours (our simulator's fingerprint)
        ours = label and not kind.startswith(("tio_", "monai_"))
        rows = [
            {"iqm_snr": float(rng.normal(shift * label)), "iqm_efc": float(rng.normal(2.0 * ours))}
            for _ in range(n)
        ]
        return _Set(samples, rows)

    def joined(*parts: _Set) -> _Set:
        return _Set([s for p in parts for s in p.samples], [r for p in parts for r in p.rows])

    ours = ("motion", "ghosting", "spike", "gibbs", "wrap")
    train = joined(make(200, 0, "", "t", 0), *(make(40, 1, k, "t", 2.0) for k in ours))
    calib = joined(make(100, 0, "", "c", 0), *(make(20, 1, k, "c", 2.0) for k in ours))
    test = joined(make(60, 0, "", "x", 0), *(make(10, 1, k, "x", 2.0) for k in ours))
    xsim = joined(
        make(60, 0, "", "x", 0),
        make(30, 1, "tio_motion", "x", 0.0),  # invisible to both features: chance
        make(30, 1, "tio_spike", "x", 3.0),  # carried by "a": found
    )
    evals = {"test": test, "transfer": test, "xsim": xsim}
    like = fit_fusion(train.rows, train.labels, features=["iqm_snr", "iqm_efc"])
    held = _hold_out_kinds(train, calib, evals, like)
    assert set(held) == set(ours)
    assert set(held["motion"]["foreign"]) == {"tio_motion"}
    assert set(held["spike"]["foreign"]) == {"tio_spike"}  # no msim here: monai_spike absent
    assert held["gibbs"]["foreign"] == {} and held["wrap"]["foreign"] == {}
    assert abs(held["motion"]["foreign"]["tio_motion"]["roc_auc"] - 0.5) < 0.2
    assert held["spike"]["foreign"]["tio_spike"]["roc_auc"] > 0.9
    assert held["spike"]["foreign"]["tio_spike"]["n_artifact"] == 30
    assert held["spike"]["n_artifact"] == 20  # test + transfer (the same set twice here)
    assert set(FOREIGN_KINDS) == set(ours)


def _two_kinds(seed: int = 0) -> tuple[list[dict[str, float]], np.ndarray, np.ndarray]:
    """Clean slices; artifacts the air and the spectrum both show (most); artifacts only the
    spectrum shows (a few: TorchIO's motion, ringing inside the head with clean air)."""
    rng = np.random.default_rng(seed)
    rows, labels, only_spectrum = [], [], []
    for kind, n in (("clean", 300), ("both", 300), ("spectrum", 40)):
        for _ in range(n):
            air = rng.normal(5.0 if kind == "both" else 0.0)
            spectrum = rng.normal({"clean": 0.0, "both": 1.5, "spectrum": 3.5}[kind])
            rows.append({"iqm_ghost_anisotropy": float(air), "spectral_logit": float(spectrum)})
            labels.append(int(kind != "clean"))
            only_spectrum.append(kind == "spectrum")
    return rows, np.array(labels), np.array(only_spectrum)


def test_an_either_head_flags_what_only_its_feature_shows() -> None:
    from training.fit.fusion import fit_either

    rows, y, only = _two_kinds()
    names = ["iqm_ghost_anisotropy", "spectral_logit"]
    plain = fit_fusion(rows, y, features=names)
    either = fit_either(rows, y, features=names, either=["spectral_logit"])
    # the regression is the same; the head is spectral_logit's own regression
    assert either.coef == plain.coef and either.intercept == plain.intercept
    alone = fit_fusion(rows, y, features=["spectral_logit"])
    assert either.either[0].coef == pytest.approx(alone.coef[0])
    expected = np.maximum(plain.probability(rows), alone.probability(rows))
    assert either.probability(rows) == pytest.approx(expected)
    # artifacts only the spectrum shows: the air outvotes it in the regression, not in either
    clean = y == 0
    t_plain = np.quantile(plain.probability(rows)[clean], 0.95)
    t_either = np.quantile(either.probability(rows)[clean], 0.95)
    recall_plain = (plain.probability(rows)[only] >= t_plain).mean()
    recall_either = (either.probability(rows)[only] >= t_either).mean()
    assert recall_either > recall_plain + 0.1
    assert FusionModel.from_dict(either.to_dict()) == either


def test_a_kind_held_out_is_refitted_the_way_the_served_model_was() -> None:
    from training.fit.fusion import fit_either
    from training.fit.fusion import refit_like as _fit

    rows, y, _ = _two_kinds()
    names = ["iqm_ghost_anisotropy", "spectral_logit"]
    either = fit_either(rows, y, features=names, either=["spectral_logit"])
    refit = _fit(rows[:500], y[:500], either)
    assert [h.feature for h in refit.either] == ["spectral_logit"]
    assert refit.features == either.features
    assert not _fit(rows, y, fit_fusion(rows, y, features=names)).either


def _two_families(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Echo-planar clean slices that score high (its baseline) next to anatomical ones that
    score low; each family's artifacts score above its own clean slices."""
    rng = np.random.default_rng(seed)
    parts = [  # (n, label, source, family, centre)
        (50, 0, "t1", "non_epi", 0.10),
        (50, 0, "t1b", "non_epi", 0.10),
        (100, 1, "t1", "non_epi", 0.60),
        (50, 0, "dwi", "epi", 0.70),
        (50, 0, "dwib", "epi", 0.70),
        (100, 1, "dwi", "epi", 0.95),
    ]
    probs, labels, sources, families = [], [], [], []
    for n, label, source, family, centre in parts:
        probs += np.clip(rng.normal(centre, 0.05, n), 0, 1).tolist()
        labels += [label] * n
        sources += [source] * n
        families += [family] * n
    return np.array(labels), np.array(probs), np.array(sources), np.array(families)


def test_each_acquisition_family_gets_the_pooled_rule_on_its_own_slices() -> None:
    from training.fit.fusion import acquisition_thresholds

    labels, probs, sources, families = _two_families()
    pooled = pooled_threshold(labels, probs, sources)
    rules = acquisition_thresholds(labels, probs, sources, families)
    assert set(rules) == {"epi", "non_epi"}
    # the echo-planar clean slices hold the pooled threshold up; the anatomical one drops
    assert rules["non_epi"]["threshold"] < pooled["threshold"] - 0.2
    for family, rule in rules.items():
        clean = (labels == 0) & (families == family)
        assert (probs[clean] >= rule["threshold"]).mean() <= 0.05  # the bound still holds
    t1_artifacts = (labels == 1) & (families == "non_epi")
    assert (probs[t1_artifacts] >= rules["non_epi"]["threshold"]).mean() > 0.9
    assert (probs[t1_artifacts] >= pooled["threshold"]).mean() < 0.5
    # a family with one class only gets no threshold of its own
    only_clean = acquisition_thresholds(labels[:300], probs[:300], sources[:300], families[:300])
    assert set(only_clean) == {"non_epi"}
    # nor one whose clean slices come from a single source, or are too few
    one_source = np.where(sources == "t1b", "t1", sources)
    assert set(acquisition_thresholds(labels, probs, one_source, families)) == {"epi"}
    assert acquisition_thresholds(labels, probs, sources, families, min_clean=101) == {}


def test_a_split_is_scored_at_each_slices_familys_threshold() -> None:
    from training.data.samples import Sample
    from training.experiments.fusion_experiment import _score, _Set

    labels, probs, sources, families = _two_families()
    contrast = {"epi": "DWI-b0", "non_epi": "T1"}
    pixels = np.zeros((2, 2), np.float32)
    samples = [
        Sample(
            pixels,
            int(y),
            str(s),
            f"{s}{i}",
            {
                "source": str(s),
                "contrast": contrast[f],
                "severity": "severe" if y else "",
                "plane": "axial",
                "index": str(i),
            },
        )
        for i, (y, s, f) in enumerate(zip(labels, sources, families, strict=True))
    ]
    # a one-feature "model" whose probability is the constructed score
    rows = [{"iqm_snr": float(np.log(p / (1 - p)))} for p in np.clip(probs, 1e-4, 1 - 1e-4)]
    model = FusionModel(("iqm_snr",), (0.0,), (1.0,), (1.0,), 0.0)
    data = _Set(samples, rows)
    per = _score("fused", model, data, {"test": data})
    pooled = _score("fused", model, data, {"test": data}, per_acquisition=False)
    assert set(per["acquisition_thresholds"]) == {"epi", "non_epi"}
    assert pooled["acquisition_thresholds"] == {}
    f1_per = per["test"]["moderate_and_severe"]["f1"]
    assert f1_per > pooled["test"]["moderate_and_severe"]["f1"] + 0.1
    # the pooled threshold's numbers are kept beside for comparison
    assert per["test"]["moderate_and_severe_pooled"] == pooled["test"]["moderate_and_severe"]
    assert per["test"]["by_source"]["t1"]["false_alarm_rate"] <= 0.05
    # and at series level: clean series of each source, under each rule
    series = per["test"]["series_level"]["rules"]
    assert set(series) == {"any", "count:2", "count:3"}
    assert set(series["any"]["false_alarm_rate_by_source"]) == {"t1", "t1b", "dwi", "dwib"}


def test_a_candidate_that_breaks_the_false_alarm_bound_is_chosen_only_if_all_do() -> None:
    from training.experiments.fusion_experiment import choose_variant

    better, safer = _result(0.6, 0.9), _result(0.5, 0.9)
    for result, rate in ((better, 0.08), (safer, 0.04)):
        result["test"]["by_source"] = {"a": {"n": 50, "false_alarm_rate": rate}}
    assert choose_variant({"spectral": better, "spectral_or": safer}) == "spectral_or"
    safer["test"]["by_source"]["a"]["false_alarm_rate"] = 0.06  # both break it: the better F1
    assert choose_variant({"spectral": better, "spectral_or": safer}) == "spectral"


def test_the_card_section_gives_each_candidates_series_false_alarms() -> None:
    from training.experiments.fusion_report import render_fusion

    served = _result(0.5, 0.9)
    served["test"]["series_level"] = {
        "rules": {"any": {"max_false_alarm_rate": 0.35, "max_false_alarm_source": "mriqc_0042"}}
    }
    text = render_fusion(
        {"detectors": {"iqm": served}, "served_variant": "iqm", "training": TRAINING}
    )
    assert "series FA % |" in text
    rows = [line for line in text.splitlines() if line.startswith("| test | IQM panel alone")]
    assert rows and rows[0].endswith("| 35.0 (mriqc_0042) |")
    transfer = [line for line in text.splitlines() if line.startswith("| transfer | IQM")]
    assert transfer[0].endswith("| n/a |")  # no series-level measurement there
