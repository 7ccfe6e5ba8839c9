"""Per-scanner and per-protocol decision thresholds: the rows, and which one a series gets.

A :class:`~app.db.models.Threshold` names a scanner, a protocol, or both ("" for any). The
worker compares a series' slice probabilities with the most specific row that matches it,
scanner + protocol > protocol > scanner, else with the model version's threshold for the
series' acquisition family (``acquisition``: echo-planar or not, ``model/acquisition.py``)
where the version has one and the series' family is known, else with the version's own
(``model``). A site's row still wins over the family's: it was set for that site's series, the
family's on the model's validation slices.

Names are matched after :func:`normalise` (case, ``_`` / ``-`` and runs of spaces ignored).
A series answers to several names, tried in this order (the first that a row names wins within
a level):

- scanner: its StationName (one machine), then the scanner shown in the worklist
  (ManufacturerModelName, else Manufacturer, or the upload's ``scanner`` form field), then
  ManufacturerModelName;
- protocol: its ProtocolName, then the protocol shown in the worklist (the upload's
  ``protocol`` form field, else SeriesDescription), then SeriesDescription.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import THRESHOLD_ORIGINS, ModelVersion, Series, Threshold
from .types import utcnow

_SEPARATORS = re.compile(r"[\s_\-]+")


def normalise(name: str | None) -> str:
    """``"T1_MPRAGE  sag"`` -> ``"t1 mprage sag"``; None -> ""."""
    return _SEPARATORS.sub(" ", name or "").strip().casefold()


def _names(*values: str | None) -> list[str]:
    out: list[str] = []
    for value in values:
        name = normalise(value)
        if name and name not in out:
            out.append(name)
    return out


def scanner_names(series: Series) -> list[str]:
    """The normalised names a threshold row may give the series' scanner, best first."""
    return _names(series.station_name, series.scanner, series.manufacturer_model)


def protocol_names(series: Series) -> list[str]:
    """The normalised names a threshold row may give the series' protocol, best first."""
    return _names(series.protocol_name, series.protocol, series.series_description)


@dataclass(frozen=True)
class Applied:
    """The threshold a series' verdict uses and where it came from."""

    value: float
    source: str  # one of app.db.models.THRESHOLD_SOURCES
    scanner: str | None = None  # the row's scanner ("" for any); None for the model's
    protocol: str | None = None

    def columns(self) -> dict[str, Any]:
        """The SeriesVerdict columns that record it (``threshold`` included)."""
        return {
            "threshold": self.value,
            "threshold_source": self.source,
            "threshold_scanner": self.scanner,
            "threshold_protocol": self.protocol,
        }


def model_threshold(series: Series, version: ModelVersion) -> Applied:
    """``version``'s threshold for ``series`` without the site's rows: the one for the series'
    acquisition family where the version has it (source ``acquisition``), else the version's
    own (``model``: also for a series of unknown family). The version in shadow mode is judged
    on this alone, as it was chosen."""
    by_family = version.acquisition_thresholds or {}
    if series.acquisition is not None and series.acquisition in by_family:
        return Applied(float(by_family[series.acquisition]), "acquisition")
    return Applied(float(version.threshold), "model")


def applicable(session: Session, series: Series, version: ModelVersion) -> Applied:
    """The most specific threshold row for ``series``, else ``version``'s threshold for it
    (:func:`model_threshold`)."""
    scanners, protocols = scanner_names(series), protocol_names(series)
    best: tuple[tuple[int, int, int], Threshold] | None = None
    for row in session.scalars(select(Threshold)):
        if row.scanner and row.scanner not in scanners:
            continue
        if row.protocol and row.protocol not in protocols:
            continue
        level = 0 if row.scanner and row.protocol else 1 if row.protocol else 2
        rank = (
            level,
            protocols.index(row.protocol) if row.protocol else 0,
            scanners.index(row.scanner) if row.scanner else 0,
        )
        if best is None or rank < best[0]:
            best = (rank, row)
    if best is None:
        return model_threshold(series, version)
    row = best[1]
    source = ("scanner+protocol", "protocol", "scanner")[best[0][0]]
    return Applied(float(row.value), source, row.scanner, row.protocol)


def list_thresholds(session: Session) -> list[Threshold]:
    """Every row, by scanner then protocol ("" for any sorts first)."""
    return list(session.scalars(select(Threshold).order_by(Threshold.scanner, Threshold.protocol)))


def set_threshold(
    session: Session,
    *,
    scanner: str | None,
    protocol: str | None,
    value: float,
    origin: str,
    set_by: str,
    details: dict[str, Any] | None = None,
) -> Threshold:
    """Create or replace the row for (scanner, protocol); names are normalised, at least one
    must be given. Raises ValueError naming a bad value."""
    scanner_name, protocol_name = normalise(scanner), normalise(protocol)
    if not scanner_name and not protocol_name:
        raise ValueError("a threshold needs a scanner, a protocol or both (got neither)")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"a threshold is a probability in [0, 1], got {value}")
    if origin not in THRESHOLD_ORIGINS:
        raise ValueError(f"origin must be one of {THRESHOLD_ORIGINS}, got {origin!r}")
    for name, limit in ((scanner_name, 200), (protocol_name, 200)):
        if len(name) > limit:
            raise ValueError(f"a scanner or protocol name has at most {limit} characters")
    row = session.scalars(
        select(Threshold).where(
            Threshold.scanner == scanner_name, Threshold.protocol == protocol_name
        )
    ).one_or_none()
    if row is None:
        row = Threshold(scanner=scanner_name, protocol=protocol_name)
        session.add(row)
    row.value = float(value)
    row.origin = origin
    row.set_by = set_by[:200]
    row.details = details or {}
    row.updated_at = utcnow()
    session.flush()
    return row


def remove_threshold(session: Session, threshold_id: int) -> bool:
    """Delete a row; False when there is none with that id."""
    row = session.get(Threshold, threshold_id)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True
