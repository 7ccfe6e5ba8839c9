"""C-STORE SCU: the DICOM objects of one report to one destination, in one association.

A send succeeds only when the destination accepted every object (status Success, or one of the
Warning statuses PS3.4 B.2.3 lists: coercion of data elements, elements discarded, data set
does not match the SOP class); anything else raises :class:`SendFailed` and the outbox tries
again later. Objects are offered in their own transfer syntax plus the two uncompressed ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from .destinations import Destination

logger = logging.getLogger(__name__)

#: Success, and the Warning statuses after which the object is stored
ACCEPTED = frozenset({0x0000, 0xB000, 0xB006, 0xB007})


class SendFailed(Exception):
    """The destination did not take every object: unreachable, association rejected or
    aborted, or a C-STORE status other than success / warning. Worth another attempt.
    ``unreachable``: the destination took nothing from anyone (no association, or it went
    away mid-send), so its other reports need not be tried now either."""

    def __init__(self, message: str, *, unreachable: bool) -> None:
        super().__init__(message)
        self.unreachable = unreachable


def c_store(
    destination: Destination,
    datasets: Sequence[Dataset],
    *,
    calling_ae: str,
    timeout: float,
) -> int:
    """Send ``datasets`` to ``destination`` as ``calling_ae``; returns how many were stored.
    ``timeout`` (seconds) bounds the connection, the association and each C-STORE reply."""
    ae = AE(ae_title=calling_ae)
    ae.connection_timeout = timeout
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        syntaxes = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}
        syntaxes |= {
            ds.file_meta.TransferSyntaxUID for ds in datasets if str(ds.SOPClassUID) == sop_class
        }
        ae.add_requested_context(sop_class, sorted(syntaxes))
    try:
        assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    except OSError as exc:  # e.g. a host name that does not resolve
        raise SendFailed(f"{destination}: {exc}", unreachable=True) from None
    if not assoc.is_established:
        why = (
            "association rejected (is the called AE title right?)"
            if assoc.is_rejected
            else "no association: unreachable (connection refused or timed out) or aborted"
        )
        raise SendFailed(f"{destination}: {why}", unreachable=True)
    try:
        for ds in datasets:
            try:
                reply = assoc.send_c_store(ds)
            except ValueError as exc:  # no accepted presentation context for this object
                raise SendFailed(f"{destination}: {exc}", unreachable=False) from None
            code = int(reply.Status) if "Status" in reply else None
            if code not in ACCEPTED:
                shown = "no reply" if code is None else f"status 0x{code:04X}"
                raise SendFailed(
                    f"{destination}: C-STORE of {ds.SOPClassUID.name} got {shown}",
                    unreachable=code is None,  # aborted or timed out: the node went away
                )
    finally:
        if assoc.is_established:
            assoc.release()
    logger.info("%s took %d object(s)", destination, len(datasets))
    return len(datasets)
