"""Service settings: one pydantic-settings class, read from ``AMAQC_*`` environment variables.

Only ``app/`` reads the environment. Handlers get the settings with ``Depends(get_settings)``
(``SettingsDep``) so tests override them; ``get_settings()`` is cached for the process.
"""

from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from app.pacs.destinations import Destination

RULES = ("any", "count", "fraction")
_AE_TITLE_MAX = 16


def parse_ae_titles(text: str) -> list[str]:
    """``"MR1, MR2 CT_3"`` -> ``["MR1", "MR2", "CT_3"]`` (commas or spaces); each checked."""
    return [check_ae_title(t) for t in text.replace(",", " ").split()]


def check_ae_title(title: str) -> str:
    """A DICOM AE title (PS3.5 AE): 1..16 characters, no backslash or control characters;
    leading and trailing spaces are not significant and are removed."""
    stripped = title.strip()
    if not stripped or len(stripped) > _AE_TITLE_MAX:
        raise ValueError(f"AE title must be 1 to 16 characters, got {title!r}")
    if "\\" in stripped or not stripped.isascii() or not stripped.isprintable():
        raise ValueError(f"AE title may hold printable ASCII except backslash, got {title!r}")
    return stripped


def default_checkpoint() -> Path:
    """``model/weights/amaqc-default.safetensors``, located without importing ``model`` (torch)."""
    spec = importlib.util.find_spec("model")
    root = (
        Path(spec.origin).parent
        if spec and spec.origin
        else Path(__file__).resolve().parents[1] / "model"
    )
    return root / "weights" / "amaqc-default.safetensors"


class SeriesRule:
    """When a series is flagged: ``any`` slice, ``count:k`` (>= k slices) or ``fraction:f``."""

    def __init__(self, text: str) -> None:
        kind, _, arg = text.strip().partition(":")
        if kind not in RULES:
            raise ValueError(f"series rule must be any, count:K or fraction:F, got {text!r}")
        self.kind: Literal["any", "count", "fraction"] = kind  # type: ignore[assignment]
        self.k = 1
        self.fraction = 0.0
        if kind == "count":
            if not arg.isdigit() or int(arg) < 1:
                raise ValueError(f"series rule count:K needs an integer K >= 1, got {text!r}")
            self.k = int(arg)
        elif kind == "fraction":
            try:
                self.fraction = float(arg)
            except ValueError:
                raise ValueError(f"series rule fraction:F needs a number F, got {text!r}") from None
            if not 0.0 < self.fraction <= 1.0:
                raise ValueError(f"series rule fraction F must be in (0, 1], got {text!r}")
        elif arg:
            raise ValueError(f"series rule 'any' takes no argument, got {text!r}")

    def min_flagged(self, n_slices: int) -> int:
        """How many flagged slices make an artifact verdict for a series of ``n_slices``."""
        if self.kind == "count":
            return self.k
        if self.kind == "fraction":
            return max(1, math.ceil(self.fraction * n_slices - 1e-9))
        return 1

    def __str__(self) -> str:
        if self.kind == "count":
            return f"count:{self.k}"
        if self.kind == "fraction":
            return f"fraction:{self.fraction:g}"
        return "any"


class Settings(BaseSettings):
    """Everything the API, the worker and the CLI service commands are configured with."""

    model_config = SettingsConfigDict(env_prefix="AMAQC_", extra="ignore")

    data_dir: Path = Path(".amaqc")
    #: default ``sqlite:///<data_dir>/amaqc.db``
    database_url: str = ""
    #: default: kombu's SQLAlchemy transport on ``<data_dir>/broker.db`` (no server needed)
    broker_url: str = ""
    checkpoint: Path = Field(default_factory=default_checkpoint)
    max_upload_mb: float = Field(default=512.0, gt=0)
    #: pixels of one slice (rows x columns x frames of one file for DICOM)
    max_pixels: int = Field(default=64 * 1024 * 1024, gt=0)
    max_files: int = Field(default=2000, gt=0)
    #: what one ZIP may expand to
    max_unzipped_mb: float = Field(default=2048.0, gt=0)
    series_stable_seconds: float = Field(default=3.0, ge=0)
    series_rule: str = "any"
    #: a series queued/processing for longer than this is enqueued again by the sweeper
    stuck_after_seconds: float = Field(default=300.0, gt=0)
    #: how often the API's sweeper runs; 0 disables it (tests drive it by hand)
    sweep_interval_seconds: float = Field(default=1.0, ge=0)
    #: how often a worker process refreshes its heartbeat row
    worker_heartbeat_seconds: float = Field(default=5.0, gt=0)
    #: a worker whose heartbeat is this old is dead: the sweeper enqueues again the series it
    #: was processing; an inference worker idle this long means a series still queued lost its
    #: message (a restarted broker), so that one is sent again too
    worker_silent_seconds: float = Field(default=15.0, gt=0)
    host: str = "127.0.0.1"
    port: int = 8000
    #: POST a JSON event here when a series verdict is written (empty: no webhook)
    webhook_url: str = ""
    #: when set, each event carries ``X-Amaqc-Signature: sha256=<HMAC-SHA256 of the body>``
    webhook_secret: str = ""
    #: ``flagged``: only artifact verdicts; ``all``: every series verdict
    webhook_events: Literal["flagged", "all"] = "flagged"
    webhook_timeout_seconds: float = Field(default=5.0, gt=0)
    #: a web UI session that has seen no request for this long is ended (8 h: a session
    #: left open overnight ends, a shift's pauses do not)
    session_idle_seconds: float = Field(default=8 * 3600.0, gt=0)
    #: a web UI session ends this long after sign-in however busy it is (12 h: a long shift)
    session_max_seconds: float = Field(default=12 * 3600.0, gt=0)
    #: the session cookie's ``Secure`` flag: browsers send it over HTTPS and to http://localhost
    #: and http://127.0.0.1 only; turn off to serve the UI over plain HTTP on another host
    cookie_secure: bool = True
    #: how often the worklist's event stream looks in the database for new verdicts
    events_poll_seconds: float = Field(default=1.0, gt=0)
    #: the DICOM C-STORE listener (``amaqc dicom-listen``): its AE title, bind address and port
    dicom_ae_title: str = "AMAQC"
    dicom_host: str = "127.0.0.1"
    dicom_port: int = Field(default=11112, ge=0, le=65535)
    #: calling AE titles allowed to associate, separated by commas or spaces; empty: any
    dicom_allowed_aes: str = ""
    #: reject an association whose called AE title is not ``dicom_ae_title`` (false: any is
    #: accepted, as many PACS setups expect)
    dicom_ae_title_strict: bool = False
    #: the name of the scanner API key recorded as uploader of what the listener receives
    #: (created on the listener's first start; revoke it to stop the listener from storing)
    dicom_key_name: str = Field(default="dicom listener", min_length=1, max_length=200)
    #: the fixed validation set every training job scores its candidate and the active version
    #: on (a labelled folder in any layout ``amaqc train`` reads, all of it); default: the
    #: ``val`` split of the job's own data (docs/retraining.md)
    validation_dir: Path | None = None
    #: show patient IDs but never patient names (worklist, viewer and API), for sites whose
    #: rules say so; the names are still stored from the DICOM header
    hide_patient_names: bool = False
    #: DataLoader worker processes of a training job (0: load in the job's own process)
    training_loader_workers: int = Field(default=1, ge=0)
    #: what runs the detector's network in the worker: ``auto`` (ONNX Runtime on a CPU worker
    #: when it is installed, torch on CUDA and as the fallback), ``torch`` or ``onnxruntime``
    #: (a worker that cannot run the one named fails its series, saying why)
    inference_backend: Literal["auto", "torch", "onnxruntime"] = "auto"
    #: the network's precision on ONNX Runtime: ``auto`` (int8 where ``amaqc quantize`` wrote an
    #: accepted int8 export for the served checkpoint's bytes, else float32), ``float32`` or
    #: ``int8`` (a worker without an accepted int8 export fails its series, saying why)
    inference_precision: Literal["auto", "float32", "int8"] = "auto"
    #: the fused detector computes the slices' IQM panels on a thread of its own while the
    #: network runs, instead of after it (same values; ``false`` for the serial path)
    inference_overlap_panel: bool = True
    #: where each series verdict goes back as DICOM (SR + heatmap captures, docs/dicom.md):
    #: ``AE_TITLE@host:port`` entries separated by commas or spaces; empty: nowhere
    pacs_destinations: str = ""
    #: ``all``: every series verdict; ``flagged``: artifact verdicts only
    pacs_send: Literal["all", "flagged"] = "all"
    #: also send a secondary-capture heatmap of each flagged slice
    pacs_heatmaps: bool = True
    #: the first retry after a failed send; doubled after each failure up to the maximum
    pacs_retry_seconds: float = Field(default=5.0, gt=0)
    pacs_retry_max_seconds: float = Field(default=300.0, gt=0)
    #: bounds the connection, the association and each C-STORE reply of one send
    pacs_timeout_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _defaults_under_data_dir(self) -> Settings:
        SeriesRule(self.series_rule)  # raises on a bad rule, naming it
        self.dicom_ae_title = check_ae_title(self.dicom_ae_title)
        parse_ae_titles(self.dicom_allowed_aes)  # raises on a bad title, naming it
        self.pacs_targets  # noqa: B018 (raises on a bad destination, naming it)
        if self.worker_silent_seconds < 2 * self.worker_heartbeat_seconds:
            raise ValueError(
                f"worker_silent_seconds ({self.worker_silent_seconds:g}) must be at least twice "
                f"worker_heartbeat_seconds ({self.worker_heartbeat_seconds:g}): one late beat "
                "would make a live worker look dead"
            )
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir.resolve() / 'amaqc.db'}"
        if not self.broker_url:
            self.broker_url = f"sqla+sqlite:///{self.data_dir.resolve() / 'broker.db'}"
        return self

    @property
    def rule(self) -> SeriesRule:
        return SeriesRule(self.series_rule)

    @property
    def allowed_aes(self) -> list[str]:
        """The calling AE titles the DICOM listener accepts; empty: any."""
        return parse_ae_titles(self.dicom_allowed_aes)

    @property
    def pacs_targets(self) -> list[Destination]:
        """The PACS destinations of ``pacs_destinations`` (``app.pacs.destinations``)."""
        from app.pacs.destinations import parse_destinations

        return parse_destinations(self.pacs_destinations)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_request_bytes(self) -> int:
        """A whole request body: the upload limit plus 1 MiB for multipart framing and fields."""
        return self.max_upload_bytes + 1024 * 1024

    @property
    def max_unzipped_bytes(self) -> int:
        return int(self.max_unzipped_mb * 1024 * 1024)

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "objects"

    @property
    def training_dir(self) -> Path:
        """Working folders of training jobs (``job-<id>/``: data, state, logs, curves)."""
        return self.data_dir / "training"

    @property
    def models_dir(self) -> Path:
        """Checkpoints that training jobs register."""
        return self.data_dir / "models"


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (from the environment); override with FastAPI dependency
    overrides or ``get_settings.cache_clear()`` in tests."""
    return Settings()
