"""Series-level numbers from slice verdicts (``training.evaluate.series``): windows of
consecutive clean slices, artifact twins swapped in, each rule's series rates."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.samples import Sample
from training.evaluate.series import series_level

PIXELS = np.zeros((2, 2), np.float32)


def _volume(n: int, source: str = "a", severity: str = "severe") -> list[Sample]:
    """``n`` clean slices of one volume and an artifact twin of each."""
    out = []
    for i in range(n):
        info = {"source": source, "plane": "axial", "index": str(i)}
        out.append(Sample(PIXELS, 0, source, f"{source}c{i}", dict(info)))
        out.append(Sample(PIXELS, 1, source, f"{source}a{i}", {**info, "severity": severity}))
    return out


def test_one_flagged_clean_slice_flags_every_series_window_that_holds_it() -> None:
    samples = _volume(30)
    # every artifact twin flagged, one clean slice (index 10) flagged
    flagged = np.array([s.label == 1 or s.info["index"] == "10" for s in samples])
    result = series_level(samples, flagged, n=12)
    anyrule, two, three = (result["rules"][r] for r in ("any", "count:2", "count:3"))
    assert anyrule["clean_series"] == 19  # windows 0-11 ... 18-29
    assert anyrule["max_false_alarm_rate"] == pytest.approx(11 / 19)  # windows from 0..10
    assert two["max_false_alarm_rate"] == 0.0
    assert anyrule["recall"] == {"1": 1.0, "3": 1.0, "12": 1.0}
    # one corrupted slice (the window's 6th) reaches 2 flagged only beside the false alarm:
    # windows 0..10 hold index 10, less window 5, whose corrupted slice is index 10 itself
    assert two["recall"]["1"] == pytest.approx(10 / 19)
    assert three["recall"]["3"] == 1.0 and three["recall"]["12"] == 1.0


def test_mild_twins_and_short_volumes_make_no_series() -> None:
    mild = _volume(14, severity="mild")
    result = series_level(mild, np.array([s.label == 1 for s in mild]), n=12)
    assert result["rules"]["any"]["artifact_series"] == {"1": 0, "3": 0, "12": 0}
    assert result["rules"]["any"]["recall"]["1"] is None
    short = _volume(5)
    assert series_level(short, np.zeros(len(short), bool), n=12) == {}
    with pytest.raises(ValueError, match="flagged has shape"):
        series_level(short, np.zeros(3, bool))


def test_each_source_is_counted_apart_and_the_worst_is_named() -> None:
    samples = _volume(13, "quiet") + _volume(13, "noisy")
    flagged = np.array([s.group == "noisy" and s.label == 0 for s in samples])
    rule = series_level(samples, flagged, n=12)["rules"]["count:3"]
    assert rule["false_alarm_rate_by_source"] == {"noisy": 1.0, "quiet": 0.0}
    assert (rule["max_false_alarm_source"], rule["clean_series"]) == ("noisy", 4)
