"""A per-protocol (and / or per-scanner) threshold learned from the radiographers' reviews.

``amaqc calibrate --protocol P [--scanner S]`` takes the reviewed slices of the series that
match P and S (the labels of ``GET /api/v1/reviews/export``: :func:`app.db.reviews.
export_slices`), the probabilities the active model version gave them (its stored slice
verdicts: the same numbers the worker compares with the threshold), and chooses the threshold
by the rule training and ``amaqc calibrate --data`` use
(:func:`training.evaluate.metrics.best_threshold`: F1-optimal among the thresholds that flag at
most ``max_false_alarm_rate`` of the clean slices). It is stored as a threshold row of origin
``calibrate``, with the counts and metrics it was chosen on and the model version it holds for.

A site rarely has artifact reviews of a new protocol, but soon has clean ones: with clean
reviews only (at least :data:`MIN_CLEAN_ONLY` slices from :data:`MIN_CLEAN_ONLY_SERIES` series),
the threshold is the lowest that flags at most ``max_false_alarm_rate`` of them
(:func:`training.evaluate.metrics.clean_only_threshold`): the bound is kept, and every artifact
scoring above this protocol's clean slices is flagged. The shipped threshold has to guard the
noisiest protocol it was validated on; this one fits the site's own (docs/model-card.md
measures what it gives).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.config import Settings
from app.db import repo, thresholds
from app.db.reviews import export_slices
from app.db.session import session_scope

#: the false-alarm bound when the model version's checkpoint records none (as ``calibrate``)
DEFAULT_MAX_FALSE_ALARM_RATE = 0.1
#: clean-only calibration needs this many reviewed clean slices ...
MIN_CLEAN_ONLY = 40
#: ... from at least this many series (slices of one patient are not independent)
MIN_CLEAN_ONLY_SERIES = 2


@dataclass(frozen=True)
class Calibrated:
    """The stored row's id and value, and what it was chosen on."""

    threshold_id: int
    value: float
    details: dict[str, Any]


def _recorded_bound(checkpoint_path: str) -> float:
    """The false-alarm bound the checkpoint's training recorded (0.1 when none)."""
    from model import CheckpointError
    from model.checkpoint import read_metadata

    try:
        meta = read_metadata(checkpoint_path)
    except CheckpointError:
        return DEFAULT_MAX_FALSE_ALARM_RATE
    recorded = (meta.training.get("config") or {}).get("max_false_alarm_rate")
    return DEFAULT_MAX_FALSE_ALARM_RATE if recorded is None else float(recorded)


def calibrate_threshold(
    settings: Settings,
    *,
    protocol: str | None,
    scanner: str | None,
    max_false_alarm_rate: float | None = None,
    set_by: str = "amaqc calibrate",
) -> Calibrated:
    """Choose and store the threshold of (``scanner``, ``protocol``) from the reviewed slices
    of their series: F1-optimal under the false-alarm bound when the reviews hold both labels,
    the clean-only rule when they hold clean slices only (enough of them). Raises ValueError
    (naming what is missing) when neither is given, there is no active version, or the reviews
    lack what either rule needs."""
    from training.evaluate.metrics import best_threshold, binary_metrics, clean_only_threshold

    want_scanner, want_protocol = thresholds.normalise(scanner), thresholds.normalise(protocol)
    if not want_scanner and not want_protocol:
        raise ValueError("name a protocol (--protocol), a scanner (--scanner) or both")
    if max_false_alarm_rate is not None and not 0.0 <= max_false_alarm_rate <= 1.0:
        raise ValueError(f"max_false_alarm_rate must be in [0, 1], got {max_false_alarm_rate}")
    with session_scope(settings.database_url) as session:
        version = repo.active_model_version(session)
        if version is None:
            raise ValueError("no active model version: nothing to calibrate")
        bound = (
            _recorded_bound(version.checkpoint_path)
            if max_false_alarm_rate is None
            else max_false_alarm_rate
        )
        items = [
            item
            for item in export_slices(session)
            if (not want_scanner or want_scanner in thresholds.scanner_names(item.series))
            and (not want_protocol or want_protocol in thresholds.protocol_names(item.series))
        ]
        scored = repo.instance_verdicts(session, [i.instance.id for i in items], version.id)
        pairs = [
            (i.label, scored[i.instance.id].probability) for i in items if i.instance.id in scored
        ]
        labels, probs = [p[0] for p in pairs], [p[1] for p in pairs]
        clean, artifact = labels.count(0), labels.count(1)
        scope = " and ".join(
            f"{what} {name!r}"
            for what, name in (("scanner", want_scanner), ("protocol", want_protocol))
            if name
        )
        series = len({i.series.id for i in items if i.instance.id in scored})
        clean_series = len({i.series.id for i in items if i.instance.id in scored and i.label == 0})
        clean_only = not artifact and (
            clean >= MIN_CLEAN_ONLY and clean_series >= MIN_CLEAN_ONLY_SERIES and bound < 1.0
        )
        if not clean or not (artifact or clean_only):
            raise ValueError(
                f"the reviewed series of {scope} have {clean} clean and {artifact} artifact "
                f"slices scored by the active version {version.name}; calibration needs both, "
                f"or with clean slices only at least {MIN_CLEAN_ONLY} of them from "
                f"{MIN_CLEAN_ONLY_SERIES} series ({clean_series} series) and a false-alarm "
                f"bound below 1 ({len(items) - len(pairs)} reviewed slice(s) were not scored "
                "by it)"
            )
        # (just above the highest clean score may exceed 1 when that score is 1.0)
        if clean_only:
            value = min(clean_only_threshold(probs, bound), 1.0)
            rule = f"clean-only: the lowest threshold flagging <= {bound:.0%} of the clean slices"
        else:
            value = min(best_threshold(labels, probs, bound), 1.0)
            rule = f"F1-optimal among thresholds flagging <= {bound:.0%} of the clean slices"
        metrics = binary_metrics(labels, probs, value)
        details: dict[str, Any] = {
            "model_version": version.name,
            "model_threshold": version.threshold,
            "rule": rule,
            "clean": clean,
            "artifact": artifact,
            "series": series,
            "unscored": len(items) - len(pairs),
            "max_false_alarm_rate": bound,
            "metrics": {k: v for k, v in metrics.items() if k != "confusion"},
            "confusion": metrics["confusion"],
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        row = thresholds.set_threshold(
            session,
            scanner=want_scanner,
            protocol=want_protocol,
            value=value,
            origin="calibrate",
            set_by=set_by,
            details=details,
        )
        return Calibrated(row.id, row.value, details)
