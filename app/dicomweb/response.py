"""The Store Instances Response Module (PS3.18 Annex I) in the DICOM JSON model (Annex F).

Retrieve URL (0008,1190) is Type 2: present and empty here, at the top and in each Referenced
SOP Sequence item, because amaqc serves no WADO-RS retrieve. What a client wants back from
amaqc, where the verdict will be, goes in a private block (creator ``AMAQC``) of each item:
(0009,1001) UR the status URL of the instance's series (``GET`` it for the verdict), and in a
Failed SOP Sequence item (0009,1002) LT the sentence that names the problem.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .stow import Outcome, Stored
from .validate import Rejected

MEDIA_TYPE = "application/dicom+json"
PRIVATE_CREATOR = "AMAQC"
STATUS_URL_TAG = "00091001"
FAILURE_DETAIL_TAG = "00091002"

Attribute = dict[str, Any]


def _attr(vr: str, value: str | int | None) -> Attribute:
    return {"vr": vr, "Value": [value]} if value not in (None, "") else {"vr": vr}


def _private(tag: str, vr: str, value: str) -> dict[str, Attribute]:
    return {"00090010": _attr("LO", PRIVATE_CREATOR), tag: _attr(vr, value)}


def _referenced(outcome: Stored, status_url: str) -> dict[str, Attribute]:
    return {
        "00081150": _attr("UI", outcome.sop_class_uid),
        "00081155": _attr("UI", outcome.sop_instance_uid),
        "00081190": _attr("UR", None),
        **_private(STATUS_URL_TAG, "UR", status_url),
    }


def _failed(outcome: Rejected) -> dict[str, Attribute]:
    return {
        "00081150": _attr("UI", outcome.sop_class_uid),
        "00081155": _attr("UI", outcome.sop_instance_uid),
        "00081197": _attr("US", int(outcome.reason)),
        **_private(FAILURE_DETAIL_TAG, "LT", outcome.detail),
    }


def _other_failure(outcome: Rejected) -> dict[str, Attribute]:
    return {
        "00081197": _attr("US", int(outcome.reason)),
        **_private(FAILURE_DETAIL_TAG, "LT", outcome.detail),
    }


def http_status(outcomes: list[Outcome]) -> int:
    """200 all stored, 202 some failed, 409 none stored (PS3.18 10.5.3.1)."""
    stored = sum(isinstance(o, Stored) for o in outcomes)
    if stored == len(outcomes):
        return 200
    return 202 if stored else 409


def store_response(
    outcomes: list[Outcome], status_url: Callable[[int], str]
) -> dict[str, Attribute]:
    """The response body; ``status_url(series_id)`` gives the amaqc URL of a series' verdict.

    A refused part whose SOP Instance UID could not be read has no SOP instance to reference:
    it goes in the Other Failures Sequence (0008,119A).
    """
    stored = [o for o in outcomes if isinstance(o, Stored)]
    referenced = [_referenced(o, status_url(o.series_id)) for o in stored]
    rejected = [o for o in outcomes if isinstance(o, Rejected)]
    failed = [_failed(o) for o in rejected if o.sop_instance_uid]
    other = [_other_failure(o) for o in rejected if not o.sop_instance_uid]
    body: dict[str, Attribute] = {"00081190": _attr("UR", None)}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}
    if other:
        body["0008119A"] = {"vr": "SQ", "Value": other}
    return body
