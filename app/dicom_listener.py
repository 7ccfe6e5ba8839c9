"""The DICOM C-STORE listener: scanners and PACS push instances with plain DIMSE (PS3.7).

A Storage SCP (pynetdicom) that negotiates Verification and every Storage SOP class, in the
transfer syntaxes whose pixel data can be decoded here (pydicom + pylibjpeg: uncompressed,
deflate, JPEG, JPEG-LS, JPEG 2000, HTJ2K, RLE). Each received instance goes through the check
and the storage of every other DICOM upload (:func:`app.dicomweb.validate.check_part`, then
:func:`app.dicomweb.stow.store_series`): it joins its series by Series Instance UID as a slice,
like ``POST /api/v1/slices``, is committed, then enqueued, and only then is the C-STORE
answered with success (0x0000). A refused instance is stored nowhere and gets a failure status
with an Error Comment naming the problem. Non-image SOP classes (SR, presentation states, ...)
are negotiated on purpose, so that the sender gets that reason per instance instead of a
presentation context rejected without one.

What the listener receives is recorded as uploaded by one scanner API key, the one named
``AMAQC_DICOM_KEY_NAME`` (created on first start); revoking that key stops the listener from
storing. Patient identifiers are never logged (nor UIDs: only AE titles, counts and statuses).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from pydicom.dataset import Dataset
from pydicom.uid import UID

from app.config import Settings
from app.db import repo
from app.db.models import ApiKey
from app.db.session import session_scope
from app.dicomweb.multipart import DICOM, Part
from app.dicomweb.stow import Stored, store_series
from app.dicomweb.validate import FailureReason, Rejected, check_part, decodable
from app.ingest.uploads import private_workdir
from app.sweeper import Sweeper

logger = logging.getLogger(__name__)
# pynetdicom's own INFO lines come once per message; at DEBUG it dumps datasets (identifiers)
logging.getLogger("pynetdicom").setLevel(logging.WARNING)

_COMMENT_MAX = 64  # Error Comment (0000,0902) is LO: at most 64 characters


#: C-STORE success; the failure statuses (PS3.4 B.2.3, and the general ones of PS3.7 Annex C)
#: are those STOW-RS reports as Failure Reason: :class:`app.dicomweb.validate.FailureReason`
SUCCESS = 0x0000


#: transfer syntaxes negotiated when their pixel data can be decoded here (checked at start)
CANDIDATE_SYNTAXES = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old modalities)
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (8-bit)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (12-bit)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, first-order prediction (SV1)
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.5",  # RLE Lossless
)


def transfer_syntaxes() -> list[str]:
    """The candidate syntaxes pydicom and its plugins can decode in this environment."""
    return [uid for uid in CANDIDATE_SYNTAXES if decodable(uid)]


@dataclass(frozen=True)
class Received:
    """What the listener answers for one instance, and the amaqc series it went to."""

    status: int
    comment: str | None = None
    series_id: int | None = None

    def response(self) -> Dataset:
        """The C-STORE response status dataset: Status and, on failure, Error Comment."""
        ds = Dataset()
        ds.Status = int(self.status)
        if self.comment:
            ds.ErrorComment = short_comment(self.comment)
        return ds


def short_comment(detail: str) -> str:
    """``detail`` fitted into an Error Comment: without the "part N: " prefix, 64 characters."""
    head, sep, rest = detail.partition(": ")
    if sep and head.startswith("part "):
        detail = rest
    text = " ".join(detail.split()).encode("ascii", "replace").decode().replace("\\", "/")
    return text if len(text) <= _COMMENT_MAX else text[: _COMMENT_MAX - 3] + "..."


class ListenerKeyError(RuntimeError):
    """The listener's uploader key cannot be used (revoked, or a role that may not ingest)."""


def listener_key_id(settings: Settings) -> int:
    """The id of the key named ``AMAQC_DICOM_KEY_NAME``, created as a scanner key if there is
    none (its plain value is never shown: nothing but the listener uses it)."""
    name = settings.dicom_key_name
    with session_scope(settings.database_url) as session:
        keys = repo.api_keys_named(session, name)
        usable = [k for k in keys if not k.revoked]
        if not usable and keys:
            raise ListenerKeyError(
                f"the API key {name!r} is revoked; the listener stores nothing with it "
                "(set AMAQC_DICOM_KEY_NAME to another name to start with a new key)"
            )
        if not usable:
            key, _ = repo.create_api_key(session, name, "scanner")
            logger.info("created scanner key %s (%r) for the DICOM listener", key.id, name)
            return key.id
        if usable[0].role not in ("scanner", "admin"):
            raise ListenerKeyError(
                f"the API key {name!r} has role {usable[0].role}; the listener needs a "
                "scanner (or admin) key to record as uploader"
            )
        return usable[0].id


def receive_instance(settings: Settings, key_id: int, data: bytes) -> Received:
    """Check ``data`` (one encoded instance with its file meta) and store it as a slice of its
    series, or say why not. Never raises: a surprise becomes a processing failure."""
    if len(data) > settings.max_upload_bytes:
        return Received(
            FailureReason.OUT_OF_RESOURCES,
            f"{len(data)} bytes, over AMAQC_MAX_UPLOAD_MB={settings.max_upload_mb:g}",
        )
    try:
        with private_workdir(settings) as workdir:
            path = workdir / "instance"
            path.write_bytes(data)
            checked = check_part(Part(1, DICOM, path), settings, None)
            if isinstance(checked, Rejected):
                return _refused(checked)
            with session_scope(settings.database_url) as session:
                key = session.get(ApiKey, key_id)
                if key is None or key.revoked:
                    revoked = "the listener's API key is revoked"
                    return Received(FailureReason.NOT_AUTHORIZED, revoked)
                (outcome,) = store_series(session, settings, key, [checked], complete=False)
    except OSError as exc:  # the temporary folder or the store: disk full, permissions
        logger.error("could not write a received instance: %s", type(exc).__name__)
        detail = "the server could not store it; try again later"
        return Received(FailureReason.OUT_OF_RESOURCES, detail)
    except Exception as exc:  # the database down, a bug: refuse this one, keep listening
        logger.exception("C-STORE failed unexpectedly (%s)", type(exc).__name__)
        return Received(FailureReason.PROCESSING_FAILURE, "processing failure; try again later")
    if isinstance(outcome, Stored):
        return Received(SUCCESS, series_id=outcome.series_id)
    return _refused(outcome)


def _refused(rejected: Rejected) -> Received:
    """The refusal in words that fit an Error Comment (a non-image class named first)."""
    if rejected.reason == FailureReason.SOP_CLASS_NOT_SUPPORTED and rejected.sop_class_uid:
        return Received(rejected.reason, f"not an image: {UID(rejected.sop_class_uid).name}")
    return Received(rejected.reason, rejected.detail)


class DicomListener:
    """The Storage SCP on ``host:port`` (port 0: a free one, see :attr:`port`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        host: str | None = None,
        port: int | None = None,
        ae_title: str | None = None,
        sweep: bool = True,
    ) -> None:
        self.settings = settings
        self.host = settings.dicom_host if host is None else host
        self.port = settings.dicom_port if port is None else port
        self.ae_title = settings.dicom_ae_title if ae_title is None else ae_title
        self._sweep = sweep
        self._server: Any = None
        self._sweeper: Sweeper | None = None
        self._key_id: int | None = None
        self._lock = threading.Lock()
        # per association (weak: an entry goes with its association)
        self._tallies: WeakKeyDictionary[Any, Counter[str]] = WeakKeyDictionary()
        #: bytes received since the last complete C-STORE request; -1: aborted
        self._inflight: WeakKeyDictionary[Any, int] = WeakKeyDictionary()

    def start(self) -> None:
        """Find or create the uploader key, bind, serve in background threads; also run the
        sweeper (closes stable series) when ``sweep`` and ``AMAQC_SWEEP_INTERVAL_SECONDS``."""
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.events import EventHandlerType
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        from app.config import check_ae_title

        self.ae_title = check_ae_title(self.ae_title)
        self._key_id = listener_key_id(self.settings)
        syntaxes = transfer_syntaxes()
        ae = AE(ae_title=self.ae_title)
        ae.require_calling_aet = self.settings.allowed_aes
        # strict: an association addressed to another AE title is rejected (A-ASSOCIATE-RJ,
        # "called AE title not recognised"); else pynetdicom accepts any called title
        ae.require_called_aet = self.settings.dicom_ae_title_strict
        ae.add_supported_context(Verification)
        for context in AllStoragePresentationContexts:
            assert context.abstract_syntax is not None  # set on every context of that list
            ae.add_supported_context(context.abstract_syntax, syntaxes)
        handlers: list[EventHandlerType] = [
            (evt.EVT_DATA_RECV, self._on_data),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_RELEASED, self._on_end),
            (evt.EVT_ABORTED, self._on_end),
        ]
        self._server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        self.port = int(self._server.server_address[1])
        if self._sweep and self.settings.sweep_interval_seconds > 0:
            self._sweeper = Sweeper(self.settings)
            self._sweeper.start()
        allowed = ", ".join(self.settings.allowed_aes) or "any"
        logger.info(
            "DICOM listener %s on %s:%d (calling AE titles: %s; called AE title: %s; %d "
            "transfer syntaxes)",
            self.ae_title,
            self.host,
            self.port,
            allowed,
            "must match" if self.settings.dicom_ae_title_strict else "any",
            len(syntaxes),
        )

    def stop(self) -> None:
        """Stop accepting associations, end the open ones and the sweeper."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None

    def __enter__(self) -> DicomListener:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def _inflight_limit(self) -> int:
        """The upload limit plus room for PDU and PDV headers and the command set."""
        limit = self.settings.max_upload_bytes
        return limit + limit // 100 + 64 * 1024

    def _on_data(self, event: Any) -> None:
        """Abort an association whose instance grows past the upload limit while it arrives:
        pynetdicom holds a dataset in memory until it is complete."""
        key = event.assoc
        with self._lock:
            received = self._inflight.get(key, 0)
            if received < 0:  # aborted already: the rest of what is in flight
                return
            received += len(event.data)
            over = received > self._inflight_limit
            self._inflight[key] = -1 if over else received
        if over:
            logger.warning(
                "association from %s aborted: an instance of more than AMAQC_MAX_UPLOAD_MB=%g MB",
                event.assoc.requestor.ae_title,
                self.settings.max_upload_mb,
            )
            event.assoc.abort(block=False)

    def _on_store(self, event: Any) -> Dataset:
        assert self._key_id is not None
        with self._lock:
            self._inflight[event.assoc] = 0  # the dataset is complete; the next one counts
        received = receive_instance(self.settings, self._key_id, event.encoded_dataset())
        with self._lock:
            tally = self._tallies.setdefault(event.assoc, Counter())
            tally["stored" if received.status == SUCCESS else f"{received.status:#06x}"] += 1
        if received.status != SUCCESS:
            logger.info(
                "C-STORE from %s refused %#06x: %s",
                event.assoc.requestor.ae_title,
                received.status,
                received.comment,  # our own sentence: sizes, classes, codecs, never identifiers
            )
        return received.response()

    def _on_end(self, event: Any) -> None:
        with self._lock:
            tally = self._tallies.pop(event.assoc, Counter())
        if tally:
            stored = tally.pop("stored", 0)
            logger.info(
                "association from %s (%s) ended: %d instance(s) stored, refused %s",
                event.assoc.requestor.ae_title,
                event.assoc.requestor.address,
                stored,
                dict(tally) or "none",
            )
