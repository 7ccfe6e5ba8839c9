"""Publish a trained checkpoint as the served default: evaluate it on every held-out split,
record the metrics in its metadata, plot the ROC curves, and write the model card from the
measured numbers (so the card can never drift from the file it describes)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model import Predictor, load_checkpoint, save_checkpoint
from model.acquisition import ACQUISITION_LABELS
from model.checkpoint import load_spectral

from ..data.samples import Sample, load_split
from ..evaluate.metrics import binary_metrics, clean_only_threshold, paired_auc_difference, plot_roc
from ..evaluate.scoring import (
    acquisition_names,
    family_thresholds,
    predict_samples,
    source_names,
    summarise,
    target_mask,
)
from ..evaluate.series import series_level
from ..fit.train import LR_FLOOR

SPLITS = ("val", "test", "transfer", "xsim", "msim")  # xsim, msim where the dataset has them
#: the pooled validation split whose clean slices stand in for a site's own clean reviews
CALIB = "calib"
#: the false-alarm bound of the site-calibrated thresholds (as the shipped threshold's rule)
SITE_FALSE_ALARM_RATE = 0.05
METRIC_KEYS = ("accuracy", "precision", "recall", "f1", "roc_auc")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def publish(
    checkpoint: Path,
    data: Path,
    out: Path,
    card: Path,
    img_dir: Path,
    *,
    command: str,
    previous: Path | None = None,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on val/test/transfer of ``data``, write ``out`` (fp16, metrics in
    its metadata), ``img_dir/model-roc.png``, copy the training curves, and write ``card``.

    With ``previous`` (the checkpoint it replaces; read before ``out`` is written, so it may be
    ``out`` itself), each split also gets ``vs_previous``: the paired ROC-AUC difference with a
    bootstrap 95 % interval, on all images and on moderate + severe artifacts only."""
    model, meta = load_checkpoint(checkpoint)
    spectral = load_spectral(checkpoint, meta)
    predictor = Predictor((model, meta), device="cpu", spectral=spectral)
    before = Predictor(previous, device="cpu") if previous is not None else None
    # each slice at the threshold its series would be served with (its acquisition family's)
    by_acquisition = dict(predictor.fusion.acquisition_thresholds) if predictor.fusion else {}
    results: dict[str, Any] = {}
    scored: dict[str, tuple[list[Sample], np.ndarray]] = {}
    curves = {}
    for split in SPLITS:
        if split in ("xsim", "msim") and not (Path(data) / split).is_dir():
            continue  # a dataset built before the cross-simulator splits
        samples = load_split(data, split)
        probs = predict_samples(predictor, samples)
        results[split] = summarise(
            samples, probs, predictor.threshold, split, by_acquisition=by_acquisition
        )
        curves[f"{split} ({len(samples)} slices)"] = ([s.label for s in samples], probs.tolist())
        if before is not None:
            results[split]["vs_previous"] = compare_with(
                samples, predict_samples(before, samples), probs
            )
        scored[split] = (samples, probs)
        cut = family_thresholds(acquisition_names(samples), predictor.threshold, by_acquisition)
        series = series_level(samples, probs >= cut)
        if series:
            results[split]["series_level"] = series
    if (Path(data) / CALIB).is_dir():
        calib = load_split(data, CALIB)
        site = site_calibrated(calib, predict_samples(predictor, calib), scored)
        for split, row in site.items():
            results[split]["site_calibrated"] = row
    img_dir.mkdir(parents=True, exist_ok=True)
    plot_roc(curves, img_dir / "model-roc.png")
    curves_png = checkpoint.with_suffix(".curves.png")
    if curves_png.is_file():
        shutil.copyfile(curves_png, img_dir / "model-training-curves.png")
    for split, summary in results.items():
        for key in METRIC_KEYS:
            meta.metrics[f"{split}_{key}"] = summary["metrics"][key]
        if "moderate_and_severe" in summary:
            for key in METRIC_KEYS:
                meta.metrics[f"{split}_modsev_{key}"] = summary["moderate_and_severe"][key]
    save_checkpoint(out, model, meta, dtype=torch.float16, spectral=spectral)
    measured = render_card(
        meta_dict=json.loads(meta.to_json()),
        results=results,
        out=out,
        command=command,
        img_rel=_rel(img_dir, card.parent),
    )
    write_between_markers(card, measured)
    return results


def site_calibrated(
    calib: Sequence[Sample],
    calib_probs: np.ndarray,
    scored: dict[str, tuple[list[Sample], np.ndarray]],
    *,
    max_false_alarm_rate: float = SITE_FALSE_ALARM_RATE,
) -> dict[str, dict[str, Any]]:
    """What a site gets from ``amaqc calibrate --protocol`` on clean reviews alone: each source's
    own threshold, the lowest flagging at most ``max_false_alarm_rate`` of that source's clean
    slices in ``calib`` (:func:`clean_only_threshold`), applied to the same source's slices of
    every split in ``scored`` (``split -> (samples, probs)``); metrics on clean + moderate /
    severe artifacts. A source with no clean slice in ``calib`` keeps no row (skipped slices
    are counted). calib shares subjects (not images) with the splits: an optimistic stand-in
    for a site's own patients."""
    sources = source_names(calib)
    clean = np.array([s.label == 0 for s in calib])
    cut = {
        str(src): clean_only_threshold(calib_probs[clean & (sources == src)], max_false_alarm_rate)
        for src in sorted(set(sources[clean].tolist()))
    }
    out: dict[str, dict[str, Any]] = {}
    for split, (samples, probs) in scored.items():
        target = target_mask(samples)
        scored_slices = target if target is not None else np.ones(len(samples), dtype=bool)
        src = source_names(samples)
        keep = np.isin(src, list(cut)) & scored_slices
        labels = np.array([s.label for s in samples])[keep]
        if keep.sum() == 0 or len(np.unique(labels)) < 2:
            continue
        # flagged iff p >= the source's own threshold: compare p - t with 0
        shifted = probs[keep] - np.array([cut[str(x)] for x in src[keep]])
        m = binary_metrics(labels, shifted, 0.0)
        m.pop("threshold")
        m["roc_auc"] = None  # per-source cuts: the pooled ranking's AUC is not this rule's
        out[split] = {
            **m,
            "thresholds": {k: v for k, v in cut.items() if k in set(src[keep].tolist())},
            "skipped": int((~keep & scored_slices).sum()),
            "max_false_alarm_rate": max_false_alarm_rate,
        }
    return out


def compare_with(samples: Sequence[Sample], old: np.ndarray, new: np.ndarray) -> dict[str, Any]:
    """Paired ROC-AUC differences (new - old) on all samples and on clean + moderate/severe."""
    labels = np.array([s.label for s in samples])
    groups = [("all", np.ones(len(samples), dtype=bool))]
    target = target_mask(samples)
    if target is not None:
        groups.append(("moderate_and_severe", target))
    out: dict[str, Any] = {}
    for name, mask in groups:
        if len(np.unique(labels[mask])) == 2:
            out[name] = {
                "n": int(mask.sum()),
                **paired_auc_difference(labels[mask], old[mask], new[mask]),
            }
    return out


START, END = "<!-- measured:start -->", "<!-- measured:end -->"


def write_between_markers(card: Path, measured: str, *, start: str = START, end: str = END) -> None:
    """Replace the generated part of ``card`` (between the ``start`` and ``end`` markers), keeping
    the hand-written rest (limitations, reading of the numbers); a new card gets just the
    generated part."""
    block = f"{start}\n{measured}{end}\n"
    text = card.read_text() if card.is_file() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1].lstrip("\n")
    else:
        text = block + text
    card.parent.mkdir(parents=True, exist_ok=True)
    card.write_text(text)


def _rel(path: Path, start: Path) -> str:
    try:
        return path.resolve().relative_to(start.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _row(name: str, m: dict[str, Any]) -> str:
    return f"| {name} | {m['n']} | " + " | ".join(_pct(m[k]) for k in METRIC_KEYS) + " |"


def _threshold_rule(cfg: dict[str, Any]) -> str:
    rate = cfg.get("max_false_alarm_rate")
    if rate is None:
        return "F1-optimal on validation"
    return f"F1-optimal on validation among thresholds flagging <= {rate:.0%} of clean slices"


def _served_line(meta_dict: dict[str, Any], cfg: dict[str, Any]) -> str:
    """What decides: AMAResNet's threshold, or the fused detector (section below) and its."""
    fusion = meta_dict.get("fusion") or {}
    cnn = f"AMAResNet threshold {meta_dict['threshold']:.3f} ({_threshold_rule(cfg)})"
    if not fusion:
        return f" decision threshold **{meta_dict['threshold']:.3f}** ({_threshold_rule(cfg)})."
    variant = fusion.get("info", {}).get("variant", "fused")
    what = {
        "iqm": "the IQM panel alone",
        "spectral": "the IQM panel + the spectral network",
        "all": "AMAResNet + the IQM panel + the spectral network",
        "spectral_or": "the IQM panel + the spectral network, or the network alone",
    }.get(variant, "AMAResNet + the IQM panel")
    families = fusion.get("acquisition_thresholds") or {}
    per_family = (
        " for a series whose acquisition family is unknown; "
        + ", ".join(
            f"**{v:.3f}** for {ACQUISITION_LABELS.get(k, k)} series"
            for k, v in sorted(families.items())
        )
        + " (each chosen by the same rule on that family's calib slices; the held-out"
        " numbers below are at each slice's family's threshold)"
        if families
        else ""
    )
    return (
        f" the served verdict is the fused detector's ({what}; see *Detector v2* below), "
        f"decision threshold **{fusion['threshold']:.3f}**{per_family}; {cnn}, kept in every"
        " verdict."
    )


def _series_section(results: dict[str, Any]) -> list[str]:
    """The series-level table (``training.evaluate.series``), or nothing without one."""
    rows = [(split, r["series_level"]) for split, r in results.items() if "series_level" in r]
    if not rows:
        return []
    n = rows[0][1]["slices_per_series"]
    lines = [
        "",
        "### Series level: what a radiographer sees",
        "",
        "The service flags a series when at least k of its slices are flagged "
        f"(`AMAQC_SERIES_RULE`: `any` is k = 1, the default; `count:k`). Series of {n} "
        "consecutive clean slices of "
        "one source and plane (the split's own slices, in their volume's order: every few "
        "slices of the volume, nuisances drawn per slice); an artifact series is the same "
        "window with 1, 3 or all of its middle slices replaced by a moderate or severe "
        "artifact twin (their kinds as the split cycles them). `training/evaluate/series.py`.",
        "",
        "| split | rule | clean series | series false alarms % (worst source) | "
        "recall % 1 slice | recall % 3 slices | recall % all slices |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, result in rows:
        for rule, row in result["rules"].items():
            recall = row["recall"]
            lines.append(
                f"| {split} | {rule} | {row['clean_series']} | "
                f"{_pct(row['max_false_alarm_rate'])} ({row['max_false_alarm_source']}) | "
                f"{_pct(recall.get('1'))} | {_pct(recall.get('3'))} | "
                f"{_pct(recall.get(str(n)))} |"
            )
    return lines


def render_card(
    *, meta_dict: dict[str, Any], results: dict[str, Any], out: Path, command: str, img_rel: str
) -> str:
    train = meta_dict["training"]
    cfg = train.get("config", {})
    data = train.get("data", {})
    lines = [
        "# Model card: amaqc default detector",
        "",
        f"File: `{_rel(out, Path.cwd())}` ({out.stat().st_size / 1e6:.1f} MB, float16 "
        "safetensors). "
        f"Architecture `{meta_dict['arch']}` (ResNet-18 + SE + pyramid fusion), patches of "
        f"{meta_dict['patch_size']} px on slices resized to "
        f"{meta_dict['normalization']['size']} px, aggregation `{meta_dict['aggregation']['how']}`,"
        + _served_line(meta_dict, cfg)
        + " "
        f"amaqc {meta_dict['amaqc_version']}, created {meta_dict['created_at']}.",
        "",
        "## Training",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Seed {cfg.get('seed')}; Adam lr {cfg.get('lr')}"
        + (
            f" cosine-annealed to {LR_FLOOR:g} x over {cfg.get('epochs')} epochs"
            if cfg.get("lr_schedule", "constant") == "cosine"
            else ""
        )
        + f", weight decay {cfg.get('weight_decay')}, "
        f"batch {cfg.get('batch_size')}, loss {cfg.get('alpha')} x CE + {cfg.get('beta')} x Dice; "
        f"artifact kinds {', '.join(cfg.get('kinds', []))} at severities "
        f"{', '.join(cfg.get('severities', []))}; "
        + ("final" if cfg.get("keep", "best") == "last" else "best")
        + f" epoch {train.get('best_epoch', 0) + 1} "
        f"after {train.get('samples_seen')} patches "
        f"({train.get('seconds', 0) / 60:.0f} min on 2 CPU cores)"
        + (f", fine-tuned from `{Path(cfg['init_from']).name}`." if cfg.get("init_from") else "."),
        "",
        "Training data (slices, clean base images; artifacts simulated on the fly): "
        f"`{json.dumps(data.get('train', {}).get('sources', {}))}`.",
        "",
        f"![training curves]({img_rel}/model-training-curves.png)",
        "",
        "## Held-out results (slice level, served detector, threshold above)",
        "",
        "val = DWI b0 + one T1 slice; test = a T1 subject never "
        "seen; transfer = EPI/BOLD and anisotropic DWI, contrasts never trained on. Every clean "
        "slice has an artifact twin (kinds and mild / moderate / severe cycled); xsim = "
        "TorchIO's artifacts (all visible, counted as moderate or severe) with clean twins "
        "carrying a bias field or a lower resolution; msim = MONAI's Gibbs ringing, k-space "
        "spikes and Rician noise (all visible) with clean twins carrying a bias field or a "
        "gamma change.",
        "",
        "| split | slices | Acc % | Precision % | Recall % | F1 % | ROC-AUC % |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, summary in results.items():
        lines.append(_row(split, summary["metrics"]))
        if "moderate_and_severe" in summary:
            lines.append(_row(f"{split}, moderate + severe only", summary["moderate_and_severe"]))
        if "moderate_and_severe_pooled" in summary:
            lines.append(
                _row(
                    f"{split}, moderate + severe, pooled threshold for every slice",
                    summary["moderate_and_severe_pooled"],
                )
            )
    lines += [
        "",
        f"![ROC curves]({img_rel}/model-roc.png)",
        "",
        "### By artifact kind and severity",
        "",
        "| split | group | n | recall % | ROC-AUC vs all clean % |",
        "|---|---|---|---|---|",
    ]
    for split, summary in results.items():
        for key in ("by_kind", "by_severity"):
            for group, row in summary.get(key, {}).items():
                if "recall" in row:
                    lines.append(
                        f"| {split} | {group} | {row['n_artifact']} | "
                        f"{_pct(row['recall'])} | {_pct(row.get('roc_auc'))} |"
                    )
    site = [(split, r["site_calibrated"]) for split, r in results.items() if "site_calibrated" in r]
    if site:
        lines += [
            "",
            "### With a site's own threshold per protocol (clean reviews only)",
            "",
            "The shipped threshold has to hold for the noisiest source it was validated on. A "
            "site that runs `amaqc calibrate --protocol P` on clean reviewed series alone gets a "
            "threshold of its own: the lowest flagging at most "
            f"{100 * site[0][1]['max_false_alarm_rate']:.0f} % of them. Stand-in here: each "
            "source's clean slices of `calib` (the same subjects, other images: optimistic), "
            "applied to that source's slices; clean + moderate / severe artifacts.",
            "",
            "| split | slices | F1 % shipped threshold | F1 % own threshold | recall % | "
            "false alarms % | thresholds |",
            "|---|---|---|---|---|---|---|",
        ]
        for split, row in site:
            shipped = results[split].get("moderate_and_severe") or results[split]["metrics"]
            c = row["confusion"]
            fa = c["fp"] / max(1, c["fp"] + c["tn"])
            cuts = ", ".join(f"{k} {v:.3f}" for k, v in row["thresholds"].items())
            lines.append(
                f"| {split} | {row['n']} | {_pct(shipped['f1'])} | {_pct(row['f1'])} | "
                f"{_pct(row['recall'])} | {_pct(fa)} | {cuts} |"
            )
    lines += _series_section(results)
    compared = [(split, r["vs_previous"]) for split, r in results.items() if "vs_previous" in r]
    if compared:
        lines += [
            "",
            "### Against the checkpoint it replaced",
            "",
            "Both scored on the same images; the interval is a paired bootstrap (2,000 resamples"
            " of the images).",
            "",
            "| split | images | ROC-AUC % before | ROC-AUC % now | difference (95 % interval) |",
            "|---|---|---|---|---|",
        ]
        for split, groups in compared:
            for group, d in groups.items():
                name = split if group == "all" else f"{split}, moderate + severe only"
                lines.append(
                    f"| {name} | {d['n']} | {_pct(d['old'])} | {_pct(d['new'])} | "
                    f"{100 * d['difference']:+.1f} ({100 * d['ci_low']:+.1f} to "
                    f"{100 * d['ci_high']:+.1f}) |"
                )
    lines += ["", "False-alarm rate on clean slices by source:", ""]
    for split, summary in results.items():
        for source, row in summary.get("by_source", {}).items():
            if "false_alarm_rate" in row:
                lines.append(f"- {split} / {source}: {_pct(row['false_alarm_rate'])} %")
    return "\n".join(lines) + "\n"
