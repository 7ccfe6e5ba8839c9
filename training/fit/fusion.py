"""Fit the fused detector (``model.fusion``): features of whole slices, the logistic regression,
the pooled threshold rule, and the checkpoint that carries the result.

Training slices are the train split's clean slices, each with one realism-augmented clean twin
and one artifact twin from our own simulator (moderate and severe; the artifact twin is kept
only when its change is *visible*, aligned NRMSE >= ``VISIBLE_FLOOR``: a label a reader would not
agree with teaches nothing). TorchIO's artifacts are never trained on: the ``xsim`` split stays
the honest check.

The threshold rule (:func:`pooled_threshold`): on a pooled validation set of every non-training
source, the F1-optimal threshold among those that flag at most ``max_false_alarm_rate`` of the
clean slices **of each source**, so no one contrast or scanner is swamped with false alarms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from model import Predictor
from model.checkpoint import load_checkpoint, load_spectral, read_metadata, save_checkpoint
from model.fusion import (
    CNN_FEATURES,
    FUSION_FORMAT_EITHER,
    EitherHead,
    FusionModel,
    fusion_features,
)
from model.iqm import compute_iqms
from model.spectral import (
    SpectralModel,
    spectral_description,
    spectral_logits,
    spectrum_or_none,
)

from ..data.samples import Sample
from ..evaluate.calibrate import stored_dtype
from ..evaluate.metrics import clean_only_threshold
from ..evaluate.scoring import acquisition_names, source_names
from ..simulate.cross_sim import aligned_nrmse
from ..simulate.evalset import simulated_pairs

__all__ = [
    "FAMILY_MIN_CLEAN",
    "FAMILY_MIN_SOURCES",
    "MAX_FALSE_ALARM_RATE",
    "VISIBLE_FLOOR",
    "acquisition_thresholds",
    "add_spectral_logits",
    "attach_fusion",
    "carry_fusion",
    "chosen_thresholds",
    "fit_either",
    "fit_fusion",
    "pooled_threshold",
    "refit_like",
    "slice_features",
    "training_slices",
]

#: Aligned NRMSE below which a simulated artifact is not counted as one (not visible).
VISIBLE_FLOOR: Final = 0.05
#: The false-alarm bound of the threshold rule, per clean source.
MAX_FALSE_ALARM_RATE: Final = 0.05
#: An acquisition family gets a threshold of its own only with clean validation slices of at
#: least this many sources, and this many in all (:func:`acquisition_thresholds`).
FAMILY_MIN_SOURCES: Final = 2
FAMILY_MIN_CLEAN: Final = 50


def training_slices(
    samples: Sequence[Sample],
    *,
    seed: int,
    variants: int = 2,
    kinds: Sequence[str] | None = None,
    severities: Sequence[str] = ("moderate", "severe"),
    coarse_probability: float = 0.0,
) -> tuple[list[Sample], int]:
    """Whole training slices for the fusion model: (samples, artifact twins dropped as not
    visible). Each clean input gives ``variants`` clean twins and as many artifact twins."""
    from ..simulate.artifacts import KINDS

    pairs = simulated_pairs(
        samples,
        seed=seed,
        kinds=tuple(kinds) if kinds is not None else KINDS,
        severities=severities,
        variants=variants,
        coarse_probability=coarse_probability,
    )
    out: list[Sample] = []
    dropped = 0
    for i in range(0, len(pairs), 2):
        (clean, _), (artifact, record) = pairs[i], pairs[i + 1]
        out.append(clean)
        if aligned_nrmse(clean.pixels, artifact.pixels) >= VISIBLE_FLOOR:
            info = {**artifact.info, "kind": record["artifact"]["kind"]}
            out.append(Sample(artifact.pixels, 1, artifact.group, artifact.name, info))
        else:
            dropped += 1
    return out, dropped


def slice_features(
    predictor: Predictor,
    samples: Sequence[Sample],
    *,
    chunk: int = 16,
    advance: Callable[[int], None] | None = None,
) -> list[dict[str, float]]:
    """The fusion features of every sample: AMAResNet's output (run as the CNN alone) and the
    IQM panel. ``advance(n)`` is called after each chunk (for a progress bar)."""
    rows: list[dict[str, float]] = []
    for start in range(0, len(samples), chunk):
        part = samples[start : start + chunk]
        preds = predictor.predict([s.pixels for s in part])
        for sample, pred in zip(part, preds, strict=True):
            try:
                iqms: dict[str, float] | None = compute_iqms(sample.pixels)
            except ValueError:
                iqms = None
            cnn = pred.cnn_probability if pred.cnn_probability is not None else pred.probability
            rows.append(fusion_features(cnn, pred.patch_probs, iqms))
        if advance is not None:
            advance(len(part))
    return rows


def fit_fusion(
    rows: Sequence[Mapping[str, float]],
    labels: ArrayLike,
    *,
    features: Sequence[str] | None = None,
    c: float = 0.5,
    info: dict[str, Any] | None = None,
) -> FusionModel:
    """A balanced, L2-regularised logistic regression on standardised features.

    ``features`` default to every feature present in all rows; pass a subset to fit, e.g., the
    IQM panel alone (drop ``CNN_FEATURES``).
    """
    y = np.asarray(labels, dtype=int)
    if y.ndim != 1 or len(rows) != y.size:
        raise ValueError(f"{len(rows)} feature rows for {y.size} labels")
    if len(np.unique(y)) < 2:
        raise ValueError("fitting needs both clean and artifact slices")
    names = (
        list(features)
        if features is not None
        else sorted(set.intersection(*(set(r) for r in rows)))
    )
    if not names:
        raise ValueError("no feature is present in every row")
    x = np.array([[r[n] for n in names] for r in rows], dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = (x - mean) / scale
    reg = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    reg.fit(z, y)
    return FusionModel(
        features=tuple(names),
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        coef=tuple(float(v) for v in reg.coef_[0]),
        intercept=float(reg.intercept_[0]),
        info=dict(info or {}),
    )


def fit_either(
    rows: Sequence[Mapping[str, float]],
    labels: ArrayLike,
    *,
    features: Sequence[str],
    either: Sequence[str],
    c: float = 0.5,
    info: dict[str, Any] | None = None,
) -> FusionModel:
    """:func:`fit_fusion` over ``features``, plus one :class:`~model.fusion.EitherHead` per name
    in ``either``: that feature's own balanced logistic regression (fitted on the same rows),
    whose logit the model takes where it is higher than the regression's."""
    base = fit_fusion(rows, labels, features=features, c=c, info=info)
    heads = []
    for name in either:
        one = fit_fusion(rows, labels, features=[name], c=c)
        heads.append(
            EitherHead(
                feature=name,
                mean=one.mean[0],
                scale=one.scale[0],
                coef=one.coef[0],
                intercept=one.intercept,
            )
        )
    return replace(base, either=tuple(heads), format=FUSION_FORMAT_EITHER)


def iqm_only(names: Sequence[str]) -> list[str]:
    """``names`` without AMAResNet's features (the IQM panel alone)."""
    return [n for n in names if n not in CNN_FEATURES]


def pooled_threshold(
    labels: ArrayLike,
    probs: ArrayLike,
    sources: ArrayLike,
    *,
    max_false_alarm_rate: float = MAX_FALSE_ALARM_RATE,
) -> dict[str, Any]:
    """The threshold rule: F1-optimal among thresholds flagging at most ``max_false_alarm_rate``
    of the clean slices of *each* source (ties to the higher threshold). Returns the threshold,
    the binding source and F1 there, and the oracle F1 (no bound) for comparison."""
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=np.float64)
    src = np.asarray(sources)
    if not y.shape == p.shape == src.shape:
        raise ValueError("labels, probs and sources must have one length")
    if not 0.0 <= max_false_alarm_rate <= 1.0:
        raise ValueError(f"max_false_alarm_rate must be in [0, 1], got {max_false_alarm_rate}")
    if len(np.unique(y)) < 2:
        raise ValueError("the threshold rule needs clean and artifact slices")
    floor, binding = 0.0, ""
    for s in sorted(set(src[y == 0].tolist())) if max_false_alarm_rate < 1.0 else ():
        t = clean_only_threshold(p[(y == 0) & (src == s)], max_false_alarm_rate)
        if t > floor:
            floor, binding = t, s
    candidates = np.unique(np.append(p[p >= floor], floor))
    best_t, best_f1 = float(candidates[-1]), -1.0
    for t in candidates[::-1]:
        f1 = float(f1_score(y, (p >= t).astype(int), zero_division=0))
        if f1 > best_f1 + 1e-12:
            best_t, best_f1 = float(t), f1
    oracle = max(float(f1_score(y, (p >= t).astype(int), zero_division=0)) for t in np.unique(p))
    return {
        "threshold": best_t,
        "f1": best_f1,
        "oracle_f1": oracle,
        "false_alarm_floor": floor,
        "binding_source": binding,
        "max_false_alarm_rate_per_source": max_false_alarm_rate,
        "rule": (
            f"F1-optimal threshold on the pooled validation set among those flagging <= "
            f"{max_false_alarm_rate:.0%} of the clean slices of every source"
        ),
    }


def acquisition_thresholds(
    labels: ArrayLike,
    probs: ArrayLike,
    sources: ArrayLike,
    acquisitions: ArrayLike,
    *,
    max_false_alarm_rate: float = MAX_FALSE_ALARM_RATE,
    min_sources: int = FAMILY_MIN_SOURCES,
    min_clean: int = FAMILY_MIN_CLEAN,
) -> dict[str, dict[str, Any]]:
    """:func:`pooled_threshold` run on each acquisition family's slices alone (``model.
    acquisition``; the same per-source false-alarm bound): family -> its rule's result. A family
    gets none (its series keep the pooled threshold) without both clean and artifact slices, or
    with clean slices of fewer than ``min_sources`` sources or fewer than ``min_clean`` in all:
    a threshold that one acquisition's few clean slices set does not hold for the next scanner
    (measured: with the test subject's source left out of calib, the anatomical family's only
    other source, 8 clean slices, set a threshold that halved test's F1)."""
    y = np.asarray(labels, dtype=int)
    p = np.asarray(probs, dtype=np.float64)
    src, acq = np.asarray(sources), np.asarray(acquisitions)
    if not y.shape == acq.shape:
        raise ValueError("labels and acquisitions must have one length")
    out: dict[str, dict[str, Any]] = {}
    for family in sorted(set(acq.tolist())):
        sel = acq == family
        clean = sel & (y == 0)
        if len(np.unique(y[sel])) < 2 or clean.sum() < min_clean:
            continue
        if len(set(src[clean].tolist())) < min_sources:
            continue
        out[str(family)] = pooled_threshold(
            y[sel], p[sel], src[sel], max_false_alarm_rate=max_false_alarm_rate
        )
    return out


def chosen_thresholds(rules: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """family -> threshold of :func:`acquisition_thresholds`' results."""
    return {family: float(rule["threshold"]) for family, rule in rules.items()}


def attach_fusion(
    checkpoint: Path,
    fusion: FusionModel,
    out: Path,
    *,
    spectral: tuple[SpectralModel, dict[str, Any]] | None = None,
) -> Path:
    """Write ``checkpoint``'s weights (same precision) to ``out`` with ``fusion`` in its
    metadata; the CNN's own threshold and metrics are kept. ``spectral`` = (network, its
    provenance) is stored beside when ``fusion`` reads it; a spectral network ``checkpoint``
    carried is dropped when ``fusion`` does not."""
    net, meta = load_checkpoint(checkpoint)
    if fusion.uses_spectral and spectral is None:
        raise ValueError("the fused model reads the spectral network; pass it (spectral=)")
    meta.fusion = fusion.to_dict()
    meta.spectral = spectral_description(spectral[0], spectral[1]) if spectral else {}
    meta.__post_init__()  # validates the fusion and spectral descriptions
    return save_checkpoint(
        out,
        net,
        meta,
        dtype=stored_dtype(checkpoint),
        spectral=spectral[0] if spectral else None,
    )


def carry_fusion(base: Path | None, trained: Path, data: Path | None = None) -> str:
    """Give a retrained AMAResNet checkpoint (``trained``, rewritten in place) the fused
    detector of the version it was fine-tuned from (``base``), and say what was done.

    A fused model that does not read AMAResNet's output (the served panel + spectral network)
    is carried over as it is, with its spectral network: its inputs did not change. One that
    reads it is refitted, the same way (its features and ``either`` heads), on the AMAResNet
    features of ``data``'s train split (twins of our simulator, as ``train-fusion``), its
    threshold chosen on ``data``'s calib split by the pooled rule; without those splits the
    new version serves AMAResNet alone, and the message says so.
    """
    if base is None:
        return "trained from scratch: the version serves AMAResNet alone (no fused detector)"
    meta = read_metadata(base)
    fusion = meta.fusion_model
    if fusion is None:
        return "the base version has no fused detector: the version serves AMAResNet alone"
    spectral = load_spectral(base, meta) if fusion.uses_spectral else None
    carried = (spectral, dict(meta.spectral.get("info", {}))) if spectral is not None else None
    if not fusion.uses_cnn:
        attach_fusion(trained, fusion, trained, spectral=carried)
        return (
            f"the base version's fused detector ({len(fusion.features)} features, threshold "
            f"{fusion.threshold:.3f}) does not read AMAResNet: carried over unchanged"
        )
    from ..data.samples import load_split

    try:
        train = load_split(data, "train") if data is not None else []
        calib = load_split(data, "calib") if data is not None else []
    except ValueError:
        train, calib = [], []
    if not train or len({s.label for s in calib}) < 2:
        return (
            "the base version's fused detector reads AMAResNet's output and the job's data has "
            "no train and calib splits to refit it on (`amaqc data build` makes them): the "
            "version serves AMAResNet alone; refit it with `amaqc train-fusion --checkpoint`"
        )
    recipe = fusion.info.get("training", {})
    # train-fusion's own twins: seed 0, its --coarse share
    coarse = float(recipe.get("coarse_probability", 0.0))
    samples, _ = training_slices(train, seed=0, coarse_probability=coarse)
    predictor = Predictor(trained, detector="cnn")
    rows = add_spectral_logits(spectral, samples, slice_features(predictor, samples))
    labels = np.array([s.label for s in samples])
    refit = refit_like(rows, labels, fusion)
    calib_rows = add_spectral_logits(spectral, calib, slice_features(predictor, calib))
    calib_labels, calib_probs = [s.label for s in calib], refit.probability(calib_rows)
    rule = pooled_threshold(calib_labels, calib_probs, source_names(calib))
    info = {**fusion.info, "rule": rule}
    by_family: dict[str, float] = {}
    if fusion.acquisition_thresholds:  # the base chose one per family: so does the refit
        rules = acquisition_thresholds(
            calib_labels, calib_probs, source_names(calib), acquisition_names(calib)
        )
        by_family = chosen_thresholds(rules)
        info["acquisition_rules"] = rules
    final = replace(refit, threshold=rule["threshold"], acquisition_thresholds=by_family, info=info)
    attach_fusion(trained, final, trained, spectral=carried)
    per_family = "".join(f", {k} {v:.3f}" for k, v in by_family.items())
    return (
        f"the base version's fused detector refitted on the new AMAResNet ({len(samples)} "
        f"training slices), threshold {final.threshold:.3f}{per_family} on the calib split"
    )


def add_spectral_logits(
    net: SpectralModel | None,
    samples: Sequence[Sample],
    rows: list[dict[str, float]],
    *,
    chunk: int = 64,
    advance: Callable[[int], None] | None = None,
) -> list[dict[str, float]]:
    """``rows`` (one per sample, changed in place and returned) with the spectral network's
    logit (``spectral_logit``) added where a slice has a spectrum (a blank slice has none and
    reads the training mean); ``net`` None leaves them as they are. ``advance(n)`` is called
    after each chunk (for a progress bar)."""
    if net is None:
        return rows
    for start in range(0, len(samples), chunk):
        part = samples[start : start + chunk]
        spectra = [spectrum_or_none(sample.pixels) for sample in part]
        for i, z in enumerate(spectral_logits(net, spectra), start=start):
            if z is not None:
                rows[i]["spectral_logit"] = z
        if advance is not None:
            advance(len(part))
    return rows


def refit_like(
    rows: Sequence[Mapping[str, float]], labels: np.ndarray, like: FusionModel
) -> FusionModel:
    """A model fitted as ``like`` was (its features and ``either`` heads) on other rows."""
    if like.either:
        return fit_either(
            rows,
            labels,
            features=list(like.features),
            either=[h.feature for h in like.either],
            info=like.info,
        )
    return fit_fusion(rows, labels, features=list(like.features), info=like.info)
