"""The service's tables as SQLAlchemy 2.x typed ORM classes. Alembic owns the schema: a change
here needs a migration (``tests/app/test_migrations.py`` runs ``alembic check``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from .types import UTCDateTime, utcnow

ROLES = ("scanner", "radiographer", "admin")
STATUSES = ("receiving", "queued", "processing", "done", "failed")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
JOB_FINISHED = ("succeeded", "failed", "cancelled")
ACTIVATION_KINDS = ("register", "explicit", "auto", "rollback")

# Named constraints, so migrations can alter them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads this class attribute)
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class ApiKey(Base):
    """An API key: only the SHA-256 of the key is stored, plus a short visible prefix."""

    __tablename__ = "api_key"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class WebSession(Base):
    """A web UI sign-in (``app/db/web_sessions.py``): the browser's cookie holds a random
    token, this row only its SHA-256. ``role`` is the key's role at sign-in: a key whose role
    has changed since no longer has this session."""

    __tablename__ = "web_session"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_key.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    #: the token pages embed and cookie-authenticated writes must send back
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: the last request seen on this session (kept to the minute: see ``TOUCH_SECONDS``)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class Study(Base):
    __tablename__ = "study"
    id: Mapped[int] = mapped_column(primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: patient identifiers from the DICOM header: shown to radiographers and admins, never logged
    patient_id: Mapped[str | None] = mapped_column(String(64))
    patient_name: Mapped[str | None] = mapped_column(String(200))
    accession_number: Mapped[str | None] = mapped_column(String(64))
    study_description: Mapped[str | None] = mapped_column(String(200))


class Series(Base):
    """One series and its processing state; the row, not the queue, is the source of truth.

    ``complete`` is true once the series will get no more instances: at once for an upload to
    ``/series``, after ``series_stable_seconds`` without a new slice for ``/slices``.

    A series belongs to the key that uploaded it: ``series_uid`` is unique per uploader, so a
    Series Instance UID another key already used starts a series of the caller's own (nothing
    tells the caller that the other exists).
    """

    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("uploader_key_id", "series_uid"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    series_uid: Mapped[str] = mapped_column(String(64))
    study_id: Mapped[int | None] = mapped_column(ForeignKey("study.id"), index=True)
    scanner: Mapped[str | None] = mapped_column(String(200))
    protocol: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    complete: Mapped[bool] = mapped_column(Boolean, default=True)
    error: Mapped[str | None] = mapped_column(Text)
    uploader_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_key.id"), index=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_instance_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: the worker process (:attr:`WorkerHeartbeat.name`) that marked it ``processing``; the
    #: sweeper enqueues the series again once that worker's heartbeat goes silent
    worker: Mapped[str | None] = mapped_column(String(200))
    # DICOM header context (null without a DICOM header); ``scanner`` is the name shown, these
    # the tags it may come from
    series_description: Mapped[str | None] = mapped_column(String(200))
    protocol_name: Mapped[str | None] = mapped_column(String(200))
    station_name: Mapped[str | None] = mapped_column(String(200))
    manufacturer: Mapped[str | None] = mapped_column(String(200))
    manufacturer_model: Mapped[str | None] = mapped_column(String(200))
    #: AcquisitionDateTime (or date + time) as ISO text in the scanner's local time (no zone)
    acquired_at: Mapped[str | None] = mapped_column(String(32))
    #: the acquisition family (``model.acquisition``: ``epi`` or ``non_epi``) from the DICOM
    #: header, else from the upload's ``protocol`` or the series' names; null when nothing says
    #: (and before 0014). It picks the model version's threshold for the family
    #: (:attr:`ModelVersion.acquisition_thresholds`)
    acquisition: Mapped[str | None] = mapped_column(String(20))

    instances: Mapped[list[Instance]] = relationship(
        back_populates="series", order_by="Instance.id", lazy="raise"
    )


class WorkerHeartbeat(Base):
    """One worker process that runs tasks, refreshed every ``worker_heartbeat_seconds``.

    ``name`` is ``<hostname>:<pid>`` of the process that executes tasks (the worker itself with
    the solo pool, each pool child with prefork); ``idle_since`` is null while it runs a task, else
    when it last became idle. A process that is killed stops refreshing ``beat_at``: the sweeper
    enqueues again the series it held (``Series.worker``), and an inference worker idle for a
    while shows that a series still ``queued`` lost its message (a restarted broker).
    """

    __tablename__ = "worker_heartbeat"
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    queues: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    beat_at: Mapped[datetime] = mapped_column(default=utcnow)
    idle_since: Mapped[datetime | None]


class Instance(Base):
    """One 2-D slice: a file (content-addressed by SHA-256) and a frame index within it.

    A SOP Instance UID is stored once per series (and, by ``app.ingest.service``, once per
    uploader: the same UID from another key is another key's instance)."""

    __tablename__ = "instance"
    __table_args__ = (
        UniqueConstraint("series_id", "sha256", "frame_index"),
        UniqueConstraint("series_id", "sop_instance_uid", "frame_index"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    sop_instance_uid: Mapped[str | None] = mapped_column(String(64), index=True)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_path: Mapped[str] = mapped_column(String(300))
    instance_number: Mapped[int | None]
    frame_index: Mapped[int] = mapped_column(Integer, default=0)
    rows: Mapped[int]
    cols: Mapped[int]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)

    series: Mapped[Series] = relationship(back_populates="instances", lazy="raise")


class ModelVersion(Base):
    """A registered checkpoint; exactly one is ``active`` and serves new verdicts.

    At most one other version is in ``shadow``: it scores new series beside the active one and
    its verdicts are stored as shadow rows that no user-facing read returns.

    Versions a training job registers carry their ``parent`` (the version fine-tuned from),
    the training data summary, metrics on the fixed validation set beside the then-active
    version's (``validation``) and a ROC curve PNG (``roc_path``).
    """

    __tablename__ = "model_version"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    checkpoint_path: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64))
    arch: Mapped[str] = mapped_column(String(100))
    threshold: Mapped[float] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: the served detector's threshold per acquisition family (``model.acquisition`` name ->
    #: value), from the checkpoint's fused detector; each replaces ``threshold`` for the series
    #: of its family, ``threshold`` stays the one for a series of unknown family. Null or {}:
    #: one threshold for all (a checkpoint without them, or a row before 0014)
    acquisition_thresholds: Mapped[dict[str, Any] | None]
    active: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    shadow: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"))
    data_summary: Mapped[dict[str, Any] | None]
    validation: Mapped[dict[str, Any] | None]
    roc_path: Mapped[str | None] = mapped_column(String(1000))


class TrainingJob(Base):
    """A retraining job: what to train on and how, its progress, and how it ended.

    ``status`` is one of :data:`JOB_STATUSES`; the worker stops a running job at its next
    training step once ``cancel_requested`` is set. ``progress`` holds epoch, step, loss, the
    latest validation metrics and an ETA; ``log`` the last lines of the job's log; a finished
    job's ``result_version_id`` is the version it registered and ``activation`` says whether it
    was activated and why, with both models' numbers on the fixed validation set.
    """

    __tablename__ = "training_job"
    id: Mapped[int] = mapped_column(primary_key=True)
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    source: Mapped[dict[str, Any]]
    params: Mapped[dict[str, Any]]
    base_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"))
    result_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"))
    requested_by_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_key.id"))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    #: deliveries that started it (a worker lost mid-job redelivers it; it resumes)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    log: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    activation: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelActivation(Base):
    """One change of the active version (the activation history; rollback walks it back).

    ``kind`` is one of :data:`ACTIVATION_KINDS`; ``undone`` marks an activation a rollback
    reverted, so repeated rollbacks step further back.
    """

    __tablename__ = "model_activation"
    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"), index=True)
    previous_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"))
    kind: Mapped[str] = mapped_column(String(20))
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_key.id"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("training_job.id"))
    undone: Mapped[bool] = mapped_column(Boolean, default=False)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class InstanceVerdict(Base):
    """One slice's verdict by one model version. ``shadow`` rows were written by the version in
    shadow mode: kept for the shadow report, never shown as "the" verdict."""

    __tablename__ = "instance_verdict"
    __table_args__ = (UniqueConstraint("instance_id", "model_version_id", "shadow"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instance.id"), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"))
    probability: Mapped[float] = mapped_column(Float)
    label: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[float] = mapped_column(Float)
    #: (rows, cols) patch probabilities as nested lists
    patch_map: Mapped[list[Any]] = mapped_column(default=list)
    shadow: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: AMAResNet's own slice probability (``probability`` is the served detector's: the fused
    #: one where the checkpoint carries a fusion model); null for rows before detector v2
    cnn_probability: Mapped[float | None] = mapped_column(Float)
    #: the image-quality metrics of ``model.iqm`` for this slice, name -> value
    iqms: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: where ``threshold`` came from (as :attr:`SeriesVerdict.threshold_source`)
    threshold_source: Mapped[str | None] = mapped_column(String(20))
    #: what ran the network, e.g. ``onnxruntime-int8 (cpu)`` or ``torch (cuda)``: int8 and
    #: float32 give slightly different ``cnn_probability`` / ``patch_map`` (null before 0012)
    inference: Mapped[str | None] = mapped_column(String(40))
    #: the spectral network's probability (``model.spectral``) where the served fused detector
    #: reads it; null otherwise and before 0013
    spectral_probability: Mapped[float | None] = mapped_column(Float)


class SeriesVerdict(Base):
    """A series' verdict by one model version; ``shadow`` as for :class:`InstanceVerdict`."""

    __tablename__ = "series_verdict"
    __table_args__ = (UniqueConstraint("series_id", "model_version_id", "shadow"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    model_version_id: Mapped[int] = mapped_column(ForeignKey("model_version.id"))
    probability: Mapped[float] = mapped_column(Float)
    label: Mapped[int] = mapped_column(Integer)
    flagged_count: Mapped[int] = mapped_column(Integer)
    #: instance ids of the flagged slices
    flagged: Mapped[list[Any]] = mapped_column(default=list)
    rule: Mapped[str] = mapped_column(String(40))
    threshold: Mapped[float] = mapped_column(Float)
    shadow: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: where ``threshold`` came from: one of :data:`THRESHOLD_SOURCES` (null before revision
    #: 0010), and the scanner and protocol of the :class:`Threshold` row that applied, as
    #: they were then ("" for any; null with ``acquisition`` and ``model``)
    threshold_source: Mapped[str | None] = mapped_column(String(20))
    threshold_scanner: Mapped[str | None] = mapped_column(String(200))
    threshold_protocol: Mapped[str | None] = mapped_column(String(200))


#: a verdict's threshold source, most specific first: a :class:`Threshold` row for the
#: series' scanner and protocol, for its protocol, for its scanner, else the model version's
#: threshold for the series' acquisition family (:attr:`Series.acquisition`), else the model
#: version's own
THRESHOLD_SOURCES = ("scanner+protocol", "protocol", "scanner", "acquisition", "model")
#: how a :class:`Threshold` row was set
THRESHOLD_ORIGINS = ("admin", "calibrate")


class Threshold(Base):
    """A decision threshold for the series of one scanner and / or one protocol; it replaces
    the active model version's own threshold for them (``app/db/thresholds.py`` picks the
    most specific row). ``scanner`` and ``protocol`` are normalised names, "" for any (not
    both); ``origin`` one of :data:`THRESHOLD_ORIGINS`; ``details`` what a calibration chose it
    on (counts, metrics, the model version)."""

    __tablename__ = "threshold"
    __table_args__ = (UniqueConstraint("scanner", "protocol"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    scanner: Mapped[str] = mapped_column(String(200))
    protocol: Mapped[str] = mapped_column(String(200))
    value: Mapped[float] = mapped_column(Float)
    origin: Mapped[str] = mapped_column(String(20))
    set_by: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Review(Base):
    """A radiographer's judgement of a series verdict; the newest review of a series counts.

    ``label`` is the reviewer's series label (1 = artifact); ``model_label`` the verdict it
    judged (null when the series had none), so confirm/override is ``label == model_label``.
    ``reviewer`` keeps the key's name at review time (labels outlive keys).
    """

    __tablename__ = "review"
    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_key.id"))
    reviewer: Mapped[str] = mapped_column(String(200))
    label: Mapped[int] = mapped_column(Integer)
    model_label: Mapped[int | None]
    model_probability: Mapped[float | None] = mapped_column(Float)
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_version.id"))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: the reader checked the slice labels accepted from the model (``ReviewSlice.source ==
    #: "model"``); retraining uses those only when this is true
    model_slices_confirmed: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )

    slices: Mapped[list[ReviewSlice]] = relationship(
        back_populates="review", order_by="ReviewSlice.instance_id", lazy="selectin"
    )


SLICE_SOURCES = ("reader", "model")


class ReviewSlice(Base):
    """A per-slice label within a review (only for the slices the reviewer labelled).

    ``source`` is one of :data:`SLICE_SOURCES`: ``reader`` when the reader set it, ``model``
    when the reader accepted the model's call for that slice without changing it.
    """

    __tablename__ = "review_slice"
    __table_args__ = (UniqueConstraint("review_id", "instance_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    review_id: Mapped[int] = mapped_column(ForeignKey("review.id"), index=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instance.id"))
    label: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(10), default="reader", server_default="reader")

    review: Mapped[Review] = relationship(back_populates="slices", lazy="raise")


#: ``pending``: not yet accepted (tried again at ``next_attempt_at``); ``sent``: the destination
#: took every object; ``superseded``: the verdict changed before it went out, and the row of the
#: newer verdict sends that instead
DELIVERY_STATUSES = ("pending", "sent", "superseded")


class PacsDelivery(Base):
    """The outbox of ``app/pacs``: the report (SR + heatmap captures) of one series verdict for
    one PACS destination, kept until the destination accepts it.

    ``digest`` identifies the verdict (``app.pacs.report.SeriesReport.digest``); ``destination``
    is ``AE@host:port``. A sender claims a due row by moving ``next_attempt_at`` a lease ahead
    (so two workers never send it at once); a failed attempt sets it to the backoff and keeps
    ``last_error``. ``sr_uid`` is the SOP Instance UID of the SR that was accepted."""

    __tablename__ = "pacs_delivery"
    __table_args__ = (UniqueConstraint("series_id", "digest", "destination"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    digest: Mapped[str] = mapped_column(String(16))
    destination: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    objects: Mapped[int] = mapped_column(Integer, default=0)
    sr_uid: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
