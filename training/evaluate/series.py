"""Series-level numbers from a slice-level split: what a radiographer sees.

The service flags a *series* when at least k of its slices are flagged
(``AMAQC_SERIES_RULE``: ``any`` is k = 1, ``count:k``). A slice-level false-alarm rate of 4 %
says little about a 12-slice series: if the flagged slices were independent, 1 - 0.96^12 = 39 %
of clean series would be flagged under ``any``; if they clustered in a few slices, far fewer.
The splits hold real slices in their volume's order (``info["index"]``), so series are put
together from them:

- a **clean series** is a window of ``n`` consecutive clean slices of one source and plane
  (slices repeated at an index, e.g. realism variants, form series of their own);
- an **artifact series** is the same window with ``m`` consecutive slices in its middle
  replaced by an artifact twin of the same slice (moderate or severe, the first found), for
  ``m`` = 1 (one corrupted slice, as an RF spike in 2-D multi-slice), 3 and ``n`` (every slice,
  as bulk motion through the whole acquisition).

The splits' slices are every few slices of the volume and their nuisances are drawn per slice,
not per series, so these are estimates of the rule's effect, not of a site's rates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from ..data.samples import Sample
from .scoring import TARGET_SEVERITIES

__all__ = ["RULE_COUNTS", "SERIES_SLICES", "series_level"]

#: slices per series
SERIES_SLICES: Final = 12
#: the rules compared: a series is flagged with at least k flagged slices (1 = ``any``)
RULE_COUNTS: Final = (1, 2, 3)


def _windows(clean: list[tuple[int, int]], n: int) -> list[list[int]]:
    """Windows of ``n`` consecutive positions of (index, sample position) sorted by index."""
    return [[pos for _, pos in clean[i : i + n]] for i in range(len(clean) - n + 1)]


def series_level(
    samples: Sequence[Sample],
    flagged: np.ndarray,
    *,
    n: int = SERIES_SLICES,
    counts: Sequence[int] = RULE_COUNTS,
) -> dict[str, Any]:
    """Series false-alarm rate per source and series recall for m = 1, 3 and ``n`` corrupted
    slices, per rule (``k`` flagged slices make an artifact series). ``flagged``: (N,) bool,
    each slice at its threshold. Sources with fewer than ``n`` clean slices in one plane are
    left out; returns {} when no source has a series."""
    flagged = np.asarray(flagged, dtype=bool)
    if flagged.shape != (len(samples),):
        raise ValueError(f"flagged has shape {flagged.shape}, want ({len(samples)},)")
    if n < 1 or any(k < 1 for k in counts):
        raise ValueError("a series has at least one slice and a rule needs k >= 1")
    clean: dict[tuple[str, str, int], list[tuple[int, int]]] = defaultdict(list)
    twins: dict[tuple[str, str, int], int] = {}
    seen: dict[tuple[str, str, int], int] = defaultdict(int)
    for pos, s in enumerate(samples):
        source, plane = str(s.info.get("source", s.group)), str(s.info.get("plane", ""))
        try:
            index = int(s.info.get("index", ""))
        except ValueError:
            continue
        if s.label == 0:
            repeat = seen[(source, plane, index)]
            seen[(source, plane, index)] += 1
            clean[(source, plane, repeat)].append((index, pos))
        elif s.info.get("severity") in TARGET_SEVERITIES:
            twins.setdefault((source, plane, index), pos)
    false_alarms: dict[str, list[int]] = defaultdict(list)
    affected: dict[int, list[int]] = {m: [] for m in sorted({1, min(3, n), n})}
    for (source, plane, _), items in clean.items():
        items.sort()
        for window in _windows(items, n):
            false_alarms[source].append(int(flagged[window].sum()))
            for m in affected:
                start = (n - m) // 2
                middle = window[start : start + m]
                found = [twins.get((source, plane, int(samples[p].info["index"]))) for p in middle]
                replaced = [r for r in found if r is not None]
                if len(replaced) < len(found):
                    continue  # a slice without an artifact twin: no such series here
                rest = [p for p in window if p not in middle]
                affected[m].append(int(flagged[rest].sum()) + int(flagged[replaced].sum()))
    if not false_alarms:
        return {}
    out: dict[str, Any] = {"slices_per_series": n, "rules": {}}
    for k in counts:
        rule = "any" if k == 1 else f"count:{k}"
        by_source = {s: float(np.mean(np.array(c) >= k)) for s, c in sorted(false_alarms.items())}
        worst = max(by_source, key=lambda s: by_source[s])
        out["rules"][rule] = {
            "false_alarm_rate_by_source": by_source,
            "max_false_alarm_rate": by_source[worst],
            "max_false_alarm_source": worst,
            "clean_series": sum(len(c) for c in false_alarms.values()),
            "recall": {
                str(m): (float(np.mean(np.array(c) >= k)) if c else None)
                for m, c in affected.items()
            },
            "artifact_series": {str(m): len(c) for m, c in affected.items()},
        }
    return out
