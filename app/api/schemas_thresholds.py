"""Schemas of the per-scanner / per-protocol thresholds (``/api/v1/thresholds``), and the
active model version's own thresholds they replace."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.db.models import Threshold


class ThresholdCreate(BaseModel):
    """A threshold for the series of one scanner, one protocol, or that scanner's protocol;
    it replaces the row of the same scanner and protocol, if there is one."""

    scanner: str = Field(
        default="",
        max_length=200,
        description="StationName, or the scanner shown in the worklist (ManufacturerModelName); "
        "'' for any scanner",
    )
    protocol: str = Field(
        default="",
        max_length=200,
        description="ProtocolName, or the protocol shown in the worklist (SeriesDescription); "
        "'' for any protocol",
    )
    value: float = Field(ge=0.0, le=1.0, description="A slice at or above it is flagged")


class ThresholdPublic(BaseModel):
    id: int
    scanner: str = Field(description="Normalised scanner name ('' for any)")
    protocol: str = Field(description="Normalised protocol name ('' for any)")
    value: float
    origin: str = Field(description="'admin' (set by hand) or 'calibrate' (amaqc calibrate)")
    set_by: str = Field(description="The key name or command that set it")
    details: dict[str, Any] = Field(description="What a calibration chose it on")
    updated_at: datetime


class ThresholdsPublic(BaseModel):
    items: list[ThresholdPublic]
    model_threshold: float | None = Field(
        description="The active model version's own threshold, which applies where no row does "
        "and the series' acquisition family has no threshold of its own (or is unknown)"
    )
    model_acquisition_thresholds: dict[Literal["epi", "non_epi"], float] = Field(
        default_factory=dict,
        description="The active model version's threshold per acquisition family ('epi': "
        "echo-planar, 'non_epi': not), which applies to a series of that family where no row "
        "does; {} when the version has one threshold for all",
    )


def threshold_public(row: Threshold) -> ThresholdPublic:
    return ThresholdPublic(
        id=row.id,
        scanner=row.scanner,
        protocol=row.protocol,
        value=row.value,
        origin=row.origin,
        set_by=row.set_by,
        details=row.details,
        updated_at=row.updated_at,
    )
