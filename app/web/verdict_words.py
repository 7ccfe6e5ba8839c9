"""The viewer's numbers in plain words: which slice the series probability is, which slices
are flagged (by their DICOM InstanceNumber, else their position), and a short tooltip on each
figure."""

from __future__ import annotations

from typing import Any

from app.config import SeriesRule
from model.acquisition import EPI, NON_EPI

TIPS = {
    "probability": "The model's estimate (0 to 1) that the series shows an artifact: the slice "
    "probability the rule decides on. With rule 'any' that is the highest slice probability.",
    "flagged": "Slices whose probability is at or above the threshold. Slice numbers are the "
    "DICOM InstanceNumber (the position in the series where a slice has none).",
    "threshold": "A slice at or above this probability is flagged. It is the model version's own "
    "(chosen on its validation images; where the version has one per acquisition family, the "
    "one for the series' family: echo-planar or not) unless an admin set one for the series' "
    "scanner or protocol (Admin, Thresholds): then it says which.",
    "model": "The model version that scored this series, and its network.",
    "any": "Rule 'any': one flagged slice makes the series an artifact.",
    "count": "Rule 'count:k': the series is an artifact when at least k slices are flagged.",
    "fraction": "Rule 'fraction:f': the series is an artifact when at least that share of its "
    "slices is flagged.",
}


def slice_name(number: int | None, position: int) -> str:
    """``17`` (the InstanceNumber), else the 1-based position in the series."""
    return str(number) if number is not None else str(position + 1)


def _ordinal(n: int) -> str:
    if n == 1:
        return "highest"
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}-highest"


def explain(verdict: dict[str, Any] | None, slices: list[dict[str, Any]]) -> dict[str, Any]:
    """Plain words for the viewer's verdict line; ``slices`` as in the viewer's data (with
    ``name`` and ``probability``), in display order."""
    if verdict is None:
        return {"tips": TIPS}
    scored = [(i, s) for i, s in enumerate(slices) if s["probability"] is not None]
    rule = SeriesRule(verdict["rule"])
    need = rule.min_flagged(len(scored))
    ranked = sorted(scored, key=lambda item: (-item[1]["probability"], item[0]))
    flagged_ids = set(verdict["flagged"])
    flagged = [
        {"index": i, "name": s["name"], "probability": s["probability"]}
        for i, s in scored
        if s["id"] in flagged_ids
    ]
    words = f"series probability = {_ordinal(need)} slice"
    if need > 1:
        words += f" (rule {rule} needs {need} flagged slices)"
    decider = None
    if len(ranked) >= need:
        index, chosen = ranked[need - 1]
        decider = {"index": index, "name": chosen["name"], "probability": chosen["probability"]}
        words += f" (slice {chosen['name']}: {chosen['probability']:.2f})"
    return {
        "probability_words": words,
        "decider": decider,
        "flagged": flagged,
        "rule_tip": TIPS[rule.kind],
        "tips": TIPS,
    }


#: a family as the verdict line names it (``model.acquisition.ACQUISITION_LABELS`` in full
#: is the tooltip's)
FAMILY_WORDS = {EPI: "echo-planar", NON_EPI: "non-echo-planar"}


def threshold_for(verdict: Any, acquisition: str | None = None) -> str:
    """``set for scanner mr east 1, protocol t1 mprage`` when a per-scanner / per-protocol
    threshold decided the series verdict (a :class:`~app.db.models.SeriesVerdict`); ``the
    model's threshold for echo-planar series`` when the model version's threshold for the
    series' acquisition family did (``acquisition``: the series'); "" when the model version's
    own did (or the verdict predates thresholds)."""
    if verdict.threshold_source in (None, "model"):
        return ""
    if verdict.threshold_source == "acquisition":
        family = FAMILY_WORDS.get(acquisition or "", "this acquisition family's")
        return f"the model's threshold for {family} series"
    named = [
        f"{what} {name}"
        for what, name in (
            ("scanner", verdict.threshold_scanner),
            ("protocol", verdict.threshold_protocol),
        )
        if name
    ]
    return "set for " + ", ".join(named)
