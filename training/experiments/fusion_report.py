"""The model card's detector-v2 section, rendered from ``amaqc train-fusion``'s summary.json, so
the card's numbers are the measured ones."""

from __future__ import annotations

from typing import Any, Final

from model.iqm import IQM_NAMES

from ..fit.spectral import recipe
from .fusion_experiment import SPECTRAL_DETECTORS
from .model_card import write_between_markers

__all__ = ["FUSION_END", "FUSION_START", "render_fusion", "write_fusion_section"]

FUSION_START: Final = "<!-- fusion:start -->"
FUSION_END: Final = "<!-- fusion:end -->"
_NAMES: Final = {
    "cnn": "AMAResNet alone",
    "iqm": "IQM panel alone",
    "fused": "AMAResNet + panel",
    "spectral": "panel + spectral network",
    "all": "AMAResNet + panel + spectral network",
    "spectral_or": "panel + spectral network, or the network alone",
}


def network_text(info: dict[str, Any]) -> str:
    """What the card says the spectral network is: one network's recipe, or an ensemble's
    members' (``info`` as ``run_fusion_experiment`` records it)."""
    members = info.get("members") or []
    what = (
        "a small CNN on the slice's log k-space magnitude, trained by `amaqc train-spectral` on "
        "our simulator's twins"
    )
    never = "never on the seed the regressions are fitted on"
    if not members:
        where = "`model/spectral.py`"
        return f"the logit of the spectral network ({where}: {what} of {recipe(info)}, {never})"
    recipes = "; ".join(recipe(m) for m in members)
    return (
        f"the mean logit of an ensemble of {len(members)} spectral networks (`model/spectral.py`:"
        f" each {what}, trained apart: {recipes}; {never})"
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _max_false_alarms(summary: dict[str, Any]) -> tuple[str, float | None]:
    worst, rate = "", None
    for source, row in summary.get("by_source", {}).items():
        r = row.get("false_alarm_rate")
        if r is not None and (rate is None or r > rate):
            worst, rate = source, r
    return worst, rate


def _series_fa(split_result: dict[str, Any]) -> str:
    """The worst source's share of clean series flagged under the default rule (``any``), or
    n/a without a series-level measurement (``training.evaluate.series``)."""
    rule = split_result.get("series_level", {}).get("rules", {}).get("any")
    if not rule:
        return "n/a"
    return f"{_pct(rule['max_false_alarm_rate'])} ({rule['max_false_alarm_source']})"


def render_fusion(summary: dict[str, Any], img_rel: str = "img") -> str:
    """Markdown for the card: the rule, every detector on every split (moderate + severe), per
    kind, kinds held out of training, and the fused model's weights."""
    detectors = summary["detectors"]
    served = summary.get("served_variant", "fused")
    splits = [k for k in detectors[served] if k not in ("threshold", "acquisition_thresholds")]
    fused_rule = detectors[served]["threshold"]
    families = detectors[served].get("acquisition_thresholds") or {}
    lines = [
        "## Detector v2: AMAResNet fused with an image-quality panel"
        + (" and a spectral network" if summary.get("spectral") else ""),
        "",
        f"Served: **{_NAMES[served]}** ({summary.get('choice', 'the better on held-out splits')})."
        " The AMAResNet probability stays in every verdict (`cnn_probability`).",
        "",
        "Every candidate is a logistic regression (`model/fusion.py`, stored as JSON "
        "numbers in the checkpoint header) over some of: AMAResNet's slice probability and patch "
        f"map; {len(IQM_NAMES)} image-quality metrics of the whole slice (`model/iqm.py`: air, "
        "ghosts along each axis, k-space spikes, truncation and line jumps, edges)"
        + ("; " + network_text(summary["spectral"]) if summary.get("spectral") else "")
        + (
            "; *or the network alone* takes the higher of the regression's logit and the "
            "spectral network's own (a one-feature logistic regression), so the network's "
            "evidence is not outvoted by the air metrics"
            if "spectral_or" in detectors
            else ""
        )
        + ". All were fitted on the train split's slices "
        f"({summary['training']['slices']} whole slices, {summary['training']['artifact']} of them"
        " with an artifact of our simulator; "
        f"{summary['training']['dropped_not_visible']} artifact twins dropped as not visible, "
        f"aligned NRMSE < {summary['training']['visible_floor_nrmse']}"
        + (
            f"; a share {summary['training']['coarse_probability']:g} of the twins acquired "
            "coarse, `--coarse`"
            if summary["training"].get("coarse_probability")
            else ""
        )
        + "). Neither TorchIO's (xsim) nor MONAI's (msim) artifacts were ever trained on.",
        "",
        f"Threshold **{fused_rule['threshold']:.3f}**: {fused_rule['rule']} (pooled set "
        f"`calib`: DWI b0, T1, EPI and anisotropic DWI slices of the non-training subjects, "
        "fresh draws of both simulators, no image shared with the splits below). Binding "
        f"source: {fused_rule['binding_source'] or 'none'}; F1 there {_pct(fused_rule['f1'])} % "
        f"(oracle {_pct(fused_rule['oracle_f1'])} %)."
        + (
            " The same rule on each acquisition family's calib slices alone (`model/"
            "acquisition.py`; the family comes from the series' DICOM header at ingest): "
            + "; ".join(
                f"{family} **{rule['threshold']:.3f}** (binding source "
                f"{rule['binding_source'] or 'none'}, F1 there {_pct(rule['f1'])} %)"
                for family, rule in families.items()
            )
            + ". A series of a known family is served at its family's threshold, any other at"
            " the pooled one."
            if families
            else ""
        ),
        "",
        "Moderate + severe artifacts against every clean slice of the split; F1 at each "
        + (
            "slice's acquisition family's threshold (each detector's own; *F1 one threshold* ="
            " at the pooled threshold for every slice)"
            if families
            else "detector's own pooled threshold"
        )
        + "; *LSO F1* = F1 at the threshold the same rule picks "
        "with this split's sources left out of the pool (what a new site's scanner would get); "
        "*max FA* = the highest false-alarm rate of any clean source of the split; *series FA* ="
        " the share of 12-slice clean series of the worst source flagged under the default rule "
        "(`any` slice; the card's *Series level* table says how the series are made).",
        "",
        "| split | detector | threshold | ROC-AUC % | F1 % | precision % | recall % | LSO F1 % "
        "| max FA % |" + (" F1 one threshold % |" if families else "") + " series FA % |",
        "|---|---|---|---|---|---|---|---|---|" + ("---|" if families else "") + "---|",
    ]
    for split in splits:
        for name, result in detectors.items():
            s = result[split]
            m = s.get("moderate_and_severe") or s["metrics"]
            lso = s.get("leave_source_out", {})
            source, fa = _max_false_alarms(s)
            label = _NAMES.get(name, name) + (" (served)" if name == served else "")
            cut = f"{result['threshold']['threshold']:.3f}" + "".join(
                f", {k} {v['threshold']:.3f}"
                for k, v in (result.get("acquisition_thresholds") or {}).items()
            )
            pooled = s.get("moderate_and_severe_pooled")
            lines.append(
                f"| {split} | {label} | {cut} "
                f"| {_pct(m['roc_auc'])} | {_pct(m['f1'])} | {_pct(m['precision'])} | "
                f"{_pct(m['recall'])} | {_pct(lso.get('f1'))} | {_pct(fa)} ({source}) |"
                + (f" {_pct(pooled['f1'] if pooled else None)} |" if families else "")
                + f" {_series_fa(s)} |"
            )
    lines += [
        "",
        "val = DWI b0 + a T1 slice; test = a T1 subject never seen (8-bit renders); transfer = "
        "EPI/BOLD and anisotropic DWI; xsim = TorchIO motion, ghosting and spikes (each "
        "visible) on the test and transfer subjects, clean twins with a TorchIO bias field or "
        "a 1.5-3x lower resolution; msim = MONAI Gibbs ringing, k-space spikes and Rician "
        "noise (each visible) on the same subjects, clean twins with a MONAI bias field or a "
        "gamma change. Neither simulator is ever trained on.",
        "",
    ]
    lines += [f"![ROC {s}]({img_rel}/fusion-roc-{s}.png)" for s in splits]
    lines += [
        "",
        f"### {_NAMES[served]} (served) by artifact kind (recall at the served threshold)",
        "",
        "| split | kind | artifacts | recall % | ROC-AUC vs all clean % |",
        "|---|---|---|---|---|",
    ]
    for split in splits:
        for kind, row in detectors[served][split].get("by_kind", {}).items():
            if "recall" in row:
                lines.append(
                    f"| {split} | {kind} | {row['n_artifact']} | {_pct(row['recall'])} | "
                    f"{_pct(row.get('roc_auc'))} |"
                )
    held = summary.get("held_out_kinds", {})
    if held:
        net_held = summary.get("spectral", {}).get("held_out_kinds") or []
        if summary.get("held_out_variant") not in SPECTRAL_DETECTORS:
            network = ""
        elif net_held:
            network = (
                " The spectral network was trained without "
                + ", ".join(net_held)
                + " too: for that kind this is the whole detector never having seen it."
            )
        else:
            network = " The spectral network itself was trained on every kind (not held out)."
        lines += [
            "",
            "### Each kind held out of training",
            "",
            f"{_NAMES[summary.get('held_out_variant', 'fused')]}: its logistic regression "
            "refitted without one of our artifact kinds (and its threshold re-chosen without "
            "it), scored on that kind alone (moderate + severe, test + transfer) and on the "
            "other simulators' version of it (against every clean slice of their split): does "
            "it flag an artifact it has never seen?" + network,
            "",
            "| kind held out | artifacts | ROC-AUC % | recall % | false alarms % | "
            "other simulators: ROC-AUC % / recall % |",
            "|---|---|---|---|---|---|",
        ]
        for kind, row in held.items():
            foreign = "; ".join(
                f"{name} {_pct(f['roc_auc'])} / {_pct(f['recall'])}"
                for name, f in row.get("foreign", {}).items()
            )
            lines.append(
                f"| {kind} | {row['n_artifact']} | {_pct(row['roc_auc'])} | "
                f"{_pct(row['recall'])} | {_pct(row['false_alarm_rate'])} | {foreign or '-'} |"
            )
    coef = sorted(summary.get("coefficients", {}).items(), key=lambda kv: -abs(kv[1]))
    if coef:
        lines += [
            "",
            f"Weights of the served model ({_NAMES[served]}; standardised features, largest "
            "first): " + ", ".join(f"`{n}` {w:+.2f}" for n, w in coef) + ".",
        ]
    for head in summary.get("either", []):
        lines += [
            "",
            f"Its logit is raised to `{head['feature']}`'s own where that is higher: "
            f"{head['intercept']:+.2f} {head['coef']:+.2f} x (`{head['feature']}` - "
            f"{head['mean']:.2f}) / {head['scale']:.2f}.",
        ]
    return "\n".join(lines) + "\n"


def write_fusion_section(card: Any, summary: dict[str, Any], img_rel: str = "img") -> None:
    """Replace the card's detector-v2 section (between its own markers)."""
    write_between_markers(card, render_fusion(summary, img_rel), start=FUSION_START, end=FUSION_END)
