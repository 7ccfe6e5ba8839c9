"""The fused detector: a logistic regression over AMAResNet's output and the IQM panel.

AMAResNet sees patches of anatomy; the IQM panel (:mod:`model.iqm`) sees the whole slice's air,
k-space and edges, where ghosts, spikes and wrap-around show first and where a bias field or a
lower resolution leaves no trace. A small calibrated model over both,

    p = sigmoid(b + sum_i w_i (f_i - mean_i) / scale_i),

with ``f`` the features of :func:`fusion_features`, is stored as plain numbers in the checkpoint's
JSON metadata (``CheckpointMeta.fusion``): nothing is unpickled, and a reader can see each
feature's weight. Torch-free; ``training.fit.fusion`` fits it (scikit-learn).

A model may also carry ``either`` heads (format ``amaqc-fusion/2``): one-feature logistic
regressions ``b_h + w_h (f_h - mean_h) / scale_h`` whose logit replaces the regression's where
it is higher,

    p = sigmoid(max(regression logit, head logits)),

so one strong piece of evidence (the spectral network seeing an artifact in k-space that the
air metrics say nothing of) is not outvoted by the rest of the panel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np

from .acquisition import ACQUISITIONS
from .iqm import IQM_NAMES

__all__ = [
    "CNN_FEATURES",
    "FUSION_FORMAT",
    "FUSION_FORMAT_EITHER",
    "LOG_IQMS",
    "SPECTRAL_FEATURES",
    "EitherHead",
    "FusionError",
    "FusionModel",
    "acquisition_threshold_map",
    "fusion_features",
    "logit",
    "sigmoid",
]

FUSION_FORMAT: Final = "amaqc-fusion/1"
#: The format of a model with ``either`` heads (readers of format 1 refuse it, never ignore it).
FUSION_FORMAT_EITHER: Final = "amaqc-fusion/2"
#: Features taken from AMAResNet's output: the slice probability and the patch map.
CNN_FEATURES: Final = ("cnn_logit", "patch_max_logit", "patch_mean", "patch_std", "patch_frac")
#: Features taken from the spectral network (:mod:`model.spectral`): its logit.
SPECTRAL_FEATURES: Final = ("spectral_logit",)
#: IQMs that are positive ratios spanning decades: the model reads their log10.
LOG_IQMS: Final = frozenset(
    {
        "snr",
        "bg_level",
        "bg_structure",
        "hf_energy",
        "sharpness",
        "edge_signal",
        "kspace_cliff",
        "matrix_size",
    }
)
_CLIP: Final = 1e-4


class FusionError(ValueError):
    """A fusion model description that cannot be used, with the reason."""


def sigmoid(z: float | np.ndarray) -> np.ndarray:
    """The logistic function, clipped at +-50 (no overflow warning): the one place a logit
    becomes a probability (the fused detector, the spectral network's stored probability)."""
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0))))


def logit(p: float, clip: float = _CLIP) -> float:
    """The inverse of :func:`sigmoid` for a probability clipped to [clip, 1 - clip]."""
    p = min(max(float(p), clip), 1 - clip)
    return math.log(p / (1 - p))


def fusion_features(
    cnn_probability: float | None,
    patch_probs: np.ndarray | None,
    iqms: Mapping[str, float] | None,
    spectral_logit: float | None = None,
) -> dict[str, float]:
    """The named features of one slice. ``None`` parts are left out (the model then reads its
    training mean for them: no evidence either way)."""
    out: dict[str, float] = {}
    if spectral_logit is not None:
        out["spectral_logit"] = float(spectral_logit)
    if cnn_probability is not None:
        out["cnn_logit"] = logit(cnn_probability)
    if patch_probs is not None and np.size(patch_probs):
        m = np.asarray(patch_probs, dtype=np.float64).ravel()
        out["patch_max_logit"] = logit(float(m.max()))
        out["patch_mean"] = float(m.mean())
        out["patch_std"] = float(m.std())
        out["patch_frac"] = float((m >= 0.5).mean())
    for name, value in (iqms or {}).items():
        if name in LOG_IQMS:
            out[f"iqm_{name}"] = math.log10(max(float(value), _CLIP))
        else:
            out[f"iqm_{name}"] = float(value)
    return out


def acquisition_threshold_map(found: object) -> dict[str, float]:
    """A validated threshold per acquisition family (``model.acquisition`` name -> a
    probability); :class:`FusionError` naming the first bad entry."""
    if not isinstance(found, Mapping):
        raise FusionError(f"acquisition_thresholds must map a family to a threshold, got {found!r}")
    out: dict[str, float] = {}
    for name, value in found.items():
        if name not in ACQUISITIONS:
            raise FusionError(
                f"unknown acquisition family {name!r} (one of {', '.join(ACQUISITIONS)})"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise FusionError(f"the {name} threshold is not a number: {value!r}")
        if not 0.0 <= float(value) <= 1.0:
            raise FusionError(f"the {name} threshold must be in [0, 1], got {value}")
        out[str(name)] = float(value)
    return out


@dataclass(frozen=True)
class EitherHead:
    """A one-feature logistic regression, ``intercept + coef * (f - mean) / scale``, that the
    fused model's logit is raised to where it is higher (see the module docstring)."""

    feature: str
    mean: float
    scale: float
    coef: float
    intercept: float

    def __post_init__(self) -> None:
        values = (self.mean, self.scale, self.coef, self.intercept)
        if not all(isinstance(v, float | int) and math.isfinite(v) for v in values):
            raise FusionError(f"either head {self.feature!r}: every number must be finite")
        if self.scale <= 0:
            raise FusionError(f"either head {self.feature!r}: scale must be > 0")

    def logits(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """(N,) the head's logit per row; -inf where the row lacks the feature (no evidence)."""
        out = np.full(len(rows), -np.inf)
        for i, row in enumerate(rows):
            if self.feature in row:
                out[i] = self.intercept + self.coef * (row[self.feature] - self.mean) / self.scale
        return out


@dataclass(frozen=True)
class FusionModel:
    """A standardised logistic regression over named features, with its own threshold.

    ``features`` name the inputs (see :func:`fusion_features`); ``mean`` and ``scale`` standardise
    them; ``coef`` and ``intercept`` are the regression; ``threshold`` is the decision threshold
    on its probability. ``either`` are the heads whose logit replaces the regression's where it
    is higher (:class:`EitherHead`). ``acquisition_thresholds`` replace ``threshold`` for the
    series of a known acquisition family (:mod:`model.acquisition`; each chosen by the same rule
    on that family's validation slices; ``threshold`` stays the one for a series whose family is
    unknown). ``info`` carries provenance (training data, rule, metrics).
    """

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    threshold: float = 0.5
    info: dict[str, Any] = field(default_factory=dict)
    either: tuple[EitherHead, ...] = ()
    format: str = FUSION_FORMAT
    acquisition_thresholds: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.features)
        if n == 0:
            raise FusionError("a fusion model needs at least one feature")
        for name in ("mean", "scale", "coef"):
            values = getattr(self, name)
            if len(values) != n:
                raise FusionError(f"{name} has {len(values)} values for {n} features")
            if not all(math.isfinite(v) for v in values):
                raise FusionError(f"{name} holds a non-finite value")
        if any(s <= 0 for s in self.scale):
            raise FusionError("every scale must be > 0")
        if len(set(self.features)) != n:
            raise FusionError("feature names must be unique")
        known = set(CNN_FEATURES) | set(SPECTRAL_FEATURES) | {f"iqm_{q}" for q in IQM_NAMES}
        unknown = sorted((set(self.features) | {h.feature for h in self.either}) - known)
        if unknown:
            raise FusionError(f"unknown feature(s) {unknown}")
        if not math.isfinite(self.intercept):
            raise FusionError("intercept must be finite")
        if not 0.0 <= self.threshold <= 1.0:
            raise FusionError(f"threshold must be in [0, 1], got {self.threshold}")
        acquisition_threshold_map(self.acquisition_thresholds)
        want = FUSION_FORMAT_EITHER if self.either else FUSION_FORMAT
        if self.format != want:
            raise FusionError(f"unsupported fusion format {self.format!r} (want {want})")

    def threshold_for(self, acquisition: str | None) -> float:
        """The decision threshold for a series of ``acquisition`` (None: unknown)."""
        if acquisition is None:
            return self.threshold
        return float(self.acquisition_thresholds.get(acquisition, self.threshold))

    @property
    def uses_cnn(self) -> bool:
        return any(f in CNN_FEATURES for f in self.features)

    @property
    def uses_spectral(self) -> bool:
        """Whether the model reads the spectral network's output (:mod:`model.spectral`)."""
        used = {*self.features, *(h.feature for h in self.either)}
        return any(f in SPECTRAL_FEATURES for f in used)

    def matrix(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """(N, F) standardised features; a feature missing from a row reads 0 (its mean)."""
        x = np.zeros((len(rows), len(self.features)))
        mean, scale = np.asarray(self.mean), np.asarray(self.scale)
        for i, row in enumerate(rows):
            for j, name in enumerate(self.features):
                if name in row:
                    x[i, j] = (row[name] - mean[j]) / scale[j]
        return x

    def regression_logits(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """(N,) the logistic regression's logit alone (no ``either`` head)."""
        return self.matrix(rows) @ np.asarray(self.coef) + self.intercept

    def logits(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """(N,) the model's logit: the regression's, raised to any higher ``either`` head's."""
        z = self.regression_logits(rows)
        for head in self.either:
            z = np.maximum(z, head.logits(rows))
        return z

    def probability(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """(N,) artifact probabilities of feature rows (dicts of :func:`fusion_features`)."""
        if not rows:
            return np.zeros(0)
        return sigmoid(self.logits(rows))

    def contributions(self, row: Mapping[str, float]) -> dict[str, float]:
        """Each feature's additive share of the logit for one slice (what pushed it up): the
        regression's shares, plus, where an ``either`` head raised the logit, the rise on that
        head's feature (so intercept + the shares is the model's logit)."""
        x = self.matrix([row])[0]
        out = {n: float(c * v) for n, c, v in zip(self.features, self.coef, x, strict=True)}
        base = self.intercept + sum(out.values())
        heads = [(float(h.logits([row])[0]), h.feature) for h in self.either]
        top, feature = max(heads, default=(base, ""))
        if top > base:
            out[feature] = out.get(feature, 0.0) + top - base
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("features", "mean", "scale", "coef"):
            d[k] = list(d[k])
        if not self.either:
            del d["either"]  # a format-1 model is written as before
        else:
            d["either"] = [asdict(h) for h in self.either]
        if self.acquisition_thresholds:
            d["acquisition_thresholds"] = dict(self.acquisition_thresholds)
        else:
            del d["acquisition_thresholds"]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FusionModel:
        try:
            return cls(
                features=tuple(str(f) for f in data["features"]),
                mean=tuple(float(v) for v in data["mean"]),
                scale=tuple(float(v) for v in data["scale"]),
                coef=tuple(float(v) for v in data["coef"]),
                intercept=float(data["intercept"]),
                threshold=float(data.get("threshold", 0.5)),
                info=dict(data.get("info", {})),
                either=tuple(
                    EitherHead(
                        feature=str(h["feature"]),
                        mean=float(h["mean"]),
                        scale=float(h["scale"]),
                        coef=float(h["coef"]),
                        intercept=float(h["intercept"]),
                    )
                    for h in data.get("either", ())
                ),
                format=str(data.get("format", FUSION_FORMAT)),
                acquisition_thresholds=acquisition_threshold_map(
                    data.get("acquisition_thresholds", {})
                ),
            )
        except FusionError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise FusionError(f"fusion model: missing or malformed field ({exc})") from None
