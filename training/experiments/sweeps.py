"""The paper's experiments as resumable sweeps: the ablation (architecture variants, Dice-weight
sweep, variants again at the best weights) and the baseline comparison.

A sweep is a list of :class:`Entry` (a column of one of the paper's tables, for one seed) whose
:class:`RunSpec` says what to train. Runs are identified by (arch, loss weights, seed), so two
columns that need the same run (the Dice-0.0 column of the sweep *is* AMAResNet with
cross-entropy only) share one training. Each run lives in ``OUT/runs/<key>/``: the checkpoint,
its training log, ``train.json`` when training finished and ``result.json`` when it was
evaluated. A rerun skips every run with a ``result.json`` and resumes an interrupted training
from its saved state, so a long sweep survives being stopped at any point.

Every run trains with :func:`training.fit.train.train` and is scored on the same held-out split
(``test`` by default) through the same :class:`model.Predictor` the service runs, at the
threshold chosen on validation. The train/val split and the evaluation set are fixed across
seeds (``split_seed``): seeds vary the initialisation and the patch stream.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model import Predictor

from ..data.samples import Sample, load_split
from ..evaluate.metrics import binary_metrics
from ..evaluate.scoring import predict_samples
from ..fit.train import TrainConfig, train
from ..simulate.evalset import simulated_pairs

#: Dice weights of the paper's Tables 3-4; the cross-entropy weight is 1 - Dice weight.
DICE_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(10))
#: The ablation's four variants, in the paper's column order, with their column labels.
VARIANTS = {
    "resnet18": "ResNet18",
    "resnet18_se": "+SE",
    "resnet18_pyramid": "+pyramid",
    "amaresnet18": "+SE+pyramid",
}
#: The comparison's models (paper's Figures 3-4, those available without downloads).
COMPARE_MODELS = {
    "cnn2d": "2-D CNN (Meding)",
    "vgg16": "VGG16",
    "vgg19": "VGG19",
    "resnet18_se": "SE-ResNet18",
    "densenet121": "DenseNet-121",
    "unet_encoder": "U-Net encoder",
    "amaresnet18": "AMAResNet-18",
}
#: AMAResNet's loss weights in the comparison (the paper's abstract: 0.7 CE + 0.3 Dice).
PAPER_WEIGHTS = (0.7, 0.3)
METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
#: Epoch cap of a time budget (the time budget stops it long before).
MAX_EPOCHS = 10_000

EventFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class RunSpec:
    """One training: ``arch`` with loss ``alpha * CE + beta * Dice`` from ``seed``."""

    arch: str
    alpha: float
    beta: float
    seed: int

    @property
    def key(self) -> str:
        return f"{self.arch}_ce{self.alpha:.2f}_dice{self.beta:.2f}_s{self.seed}"


@dataclass(frozen=True)
class Entry:
    """Column ``column`` of table ``table``, filled by ``run`` (one seed of it)."""

    table: str
    column: str
    run: RunSpec


def _weights(beta: float) -> tuple[float, float]:
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"Dice weight must be in [0, 1), got {beta}")
    return round(1.0 - beta, 6), round(beta, 6)


def variants_plan(seeds: Sequence[int], table: str, beta: float) -> list[Entry]:
    """The four ablation variants at loss weights (1 - beta, beta)."""
    alpha, beta = _weights(beta)
    return [
        Entry(table, label, RunSpec(arch, alpha, beta, seed))
        for seed in seeds
        for arch, label in VARIANTS.items()
    ]


def ablation_plan(
    seeds: Sequence[int],
    *,
    weights: Sequence[float] = DICE_WEIGHTS,
    best_beta: float | None = None,
) -> list[Entry]:
    """The ablation: (1) the four variants with cross-entropy only (``variants_ce``), (2)
    AMAResNet-18 at every Dice weight (``dice_sweep``), and, once the best weight is known, (3) the
    four variants again at it (``variants_best``; omitted while ``best_beta`` is None)."""
    if not seeds:
        raise ValueError("at least one seed is needed")
    plan = variants_plan(seeds, "variants_ce", 0.0)
    for seed in seeds:
        for beta in weights:
            alpha, b = _weights(beta)
            plan.append(
                Entry("dice_sweep", f"Dice {b:.1f}", RunSpec("amaresnet18", alpha, b, seed))
            )
    if best_beta is not None:
        plan += variants_plan(seeds, "variants_best", best_beta)
    return plan


def compare_plan(seeds: Sequence[int], models: Sequence[str] | None = None) -> list[Entry]:
    """The baseline comparison: every baseline with cross-entropy only (as its own paper trains
    it), AMAResNet-18 with the paper's joint loss (0.7 CE + 0.3 Dice)."""
    if not seeds:
        raise ValueError("at least one seed is needed")
    chosen = list(models) if models else list(COMPARE_MODELS)
    unknown = [m for m in chosen if m not in COMPARE_MODELS]
    if unknown:
        raise ValueError(f"unknown comparison model(s) {unknown}; known: {list(COMPARE_MODELS)}")
    plan = []
    for seed in seeds:
        for arch in chosen:
            alpha, beta = PAPER_WEIGHTS if arch == "amaresnet18" else (1.0, 0.0)
            plan.append(Entry("compare", COMPARE_MODELS[arch], RunSpec(arch, alpha, beta, seed)))
    return plan


def unique_runs(plan: Sequence[Entry]) -> list[RunSpec]:
    """The distinct trainings a plan needs, in plan order."""
    return list({e.run.key: e.run for e in plan}.values())


def parse_budget(text: str) -> tuple[int, float | None]:
    """``"20ep"`` -> (20 epochs, no time limit); ``"5m"`` / ``"2h"`` -> (no epoch cap, seconds)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ep|m|min|h)\s*", text.lower())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(
            f"budget {text!r} is not understood; use epochs ('20ep') or minutes / hours per model "
            "('30m', '2h')"
        )
    value, unit = float(match.group(1)), match.group(2)
    if unit == "ep":
        if not value.is_integer():
            raise ValueError(f"budget {text!r}: epochs must be a whole number")
        return int(value), None
    return MAX_EPOCHS, value * (3600 if unit == "h" else 60)


@dataclass
class SweepSettings:
    """What every run of a sweep shares (the budget is per model)."""

    data: Path
    budget: str = "20ep"
    samples_per_epoch: int = 5000
    batch_size: int = 50
    patch: int = 128
    size: int = 256
    patience: int = 5
    split: str = "test"
    split_seed: int = 0
    arch_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Not part of the fingerprint: they change the speed, not the result.
    num_workers: int = 1
    device: str | None = None

    def __post_init__(self) -> None:
        self.data = Path(self.data)
        parse_budget(self.budget)

    @classmethod
    def quick(cls, data: Path, **overrides: Any) -> SweepSettings:
        """A sweep that runs in minutes on 2 CPU cores: a smoke test, not a measurement."""
        base: dict[str, Any] = dict(
            budget="1ep", samples_per_epoch=40, batch_size=20, patch=32, size=64, num_workers=0
        )
        return cls(data=data, **{**base, **overrides})

    def fingerprint(self) -> dict[str, Any]:
        keep = {k: v for k, v in asdict(self).items() if k not in ("num_workers", "device")}
        return json.loads(json.dumps({**keep, "data": str(Path(self.data).resolve())}))

    def train_config(self, spec: RunSpec, run_dir: Path) -> TrainConfig:
        epochs, seconds = parse_budget(self.budget)
        return TrainConfig(
            data=self.data,
            out=run_dir / "model.safetensors",
            arch=spec.arch,
            arch_config=dict(self.arch_config.get(spec.arch, {})),
            epochs=epochs,
            samples_per_epoch=self.samples_per_epoch,
            batch_size=self.batch_size,
            alpha=spec.alpha,
            beta=spec.beta,
            patch=self.patch,
            size=self.size,
            seed=spec.seed,
            split_seed=self.split_seed,
            patience=self.patience,
            time_budget_s=seconds,
            num_workers=self.num_workers,
            resume=True,
            device=self.device,
        )


def load_eval_set(data: Path, split: str, split_seed: int) -> list[Sample]:
    """The held-out slices every run is scored on; a split of clean slices only gets a fixed
    simulated artifact twin of each (as training's validation does)."""
    samples = load_split(Path(data), split, seed=split_seed)
    if {s.label for s in samples} == {0, 1}:
        return samples
    return [s for s, _ in simulated_pairs(samples, seed=split_seed + 2)]


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(path)


class Sweep:
    """A results folder: checks that it belongs to these settings, runs what is missing."""

    def __init__(self, settings: SweepSettings, out: Path, experiment: str) -> None:
        self.settings, self.out, self.experiment = settings, Path(out), experiment
        self.runs_dir = self.out / "runs"
        self._eval: list[Sample] | None = None
        stamp = self.out / "sweep.json"
        mine: dict[str, Any] = {"experiment": experiment, "settings": settings.fingerprint()}
        if stamp.is_file():
            theirs = json.loads(stamp.read_text())
            if theirs != mine:
                diff = sorted(
                    k
                    for k in {**theirs["settings"], **mine["settings"]}
                    if theirs["settings"].get(k) != mine["settings"].get(k)
                )
                what = f"settings {diff}" if diff else f"experiment {theirs['experiment']!r}"
                raise ValueError(
                    f"{self.out} holds a sweep with different {what}; "
                    "use another --out or the same settings"
                )
        self.out.mkdir(parents=True, exist_ok=True)
        _write_json(stamp, mine)

    def eval_set(self) -> list[Sample]:
        if self._eval is None:
            s = self.settings
            self._eval = load_eval_set(s.data, s.split, s.split_seed)
        return self._eval

    def result_path(self, spec: RunSpec) -> Path:
        return self.runs_dir / spec.key / "result.json"

    def done(self, spec: RunSpec) -> bool:
        return self.result_path(spec).is_file()

    def run(self, spec: RunSpec, on_event: EventFn) -> dict[str, Any]:
        """Train (or resume) and evaluate one run; a finished run is read back, not redone."""
        if self.done(spec):
            return dict(json.loads(self.result_path(spec).read_text()))
        run_dir = self.runs_dir / spec.key
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg = self.settings.train_config(spec, run_dir)
        trained = run_dir / "train.json"
        t0 = time.perf_counter()
        if not trained.is_file():
            if not cfg.out.is_file():  # a state without its checkpoint cannot be resumed
                shutil.rmtree(cfg.state_dir, ignore_errors=True)
            res = train(cfg, on_progress=lambda e: on_event({**e, "key": spec.key}))
            _write_json(
                trained,
                {
                    "best_epoch": res.best_epoch,
                    "epochs_run": len(res.history),
                    "stopped": res.stopped,
                    "seconds": round(sum(h.seconds for h in res.history), 1),
                    "val": res.best_val,
                },
            )
            # The optimizer state (2x the weights) only serves resuming this run: drop it.
            shutil.rmtree(cfg.state_dir, ignore_errors=True)
        info = json.loads(trained.read_text())
        predictor = Predictor(cfg.out, device=self.settings.device)
        samples = self.eval_set()
        labels = np.array([s.label for s in samples])
        probs = predict_samples(predictor, samples)
        result = {
            "run": asdict(spec),
            "key": spec.key,
            "checkpoint": cfg.out.name,
            "train": info,
            "eval_split": self.settings.split,
            "metrics": binary_metrics(labels, probs, predictor.threshold),
            "labels": labels.tolist(),
            "probs": [float(p) for p in probs],  # unrounded: rounding ties change the AUC
            "seconds": round(time.perf_counter() - t0, 1),
        }
        _write_json(self.result_path(spec), result)
        return result

    def run_all(
        self, specs: Sequence[RunSpec], on_event: EventFn, done_before: int = 0, total: int = 0
    ) -> dict[str, dict[str, Any]]:
        """Run ``specs`` in order, reporting ``run_start`` / ``run_end`` events."""
        total = total or done_before + len(specs)
        results = {}
        for i, spec in enumerate(specs, start=done_before):
            skipped = self.done(spec)
            trained = not skipped and not (self.runs_dir / spec.key / "train.json").is_file()
            on_event({"event": "run_start", "key": spec.key, "index": i, "total": total})
            results[spec.key] = self.run(spec, on_event)
            on_event(
                {
                    "event": "run_end",
                    "key": spec.key,
                    "index": i + 1,
                    "total": total,
                    "skipped": skipped,
                    "trained": trained,
                    "metrics": results[spec.key]["metrics"],
                }
            )
        return results


def aggregate(plan: Sequence[Entry], results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (table, column): mean, sample standard deviation and per-seed values of every
    metric over the seeds, in plan order."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for e in plan:
        row = rows.setdefault(
            (e.table, e.column),
            {
                "table": e.table,
                "column": e.column,
                "arch": e.run.arch,
                "alpha": e.run.alpha,
                "beta": e.run.beta,
                "runs": [],
                "seeds": [],
            },
        )
        row["runs"].append(e.run.key)
        row["seeds"].append(e.run.seed)
    for row in rows.values():
        rs = [results[k] for k in row["runs"]]
        row["n"] = len(rs)
        row["metrics"] = {m: _stats([r["metrics"][m] for r in rs]) for m in METRICS}
        row["val_f1"] = _stats([r["train"]["val"].get("f1") for r in rs])
        row["val_roc_auc"] = _stats([r["train"]["val"].get("roc_auc") for r in rs])
    return list(rows.values())


def _stats(values: Sequence[float | None]) -> dict[str, Any]:
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "values": list(values)}
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return {"mean": float(np.mean(vals)), "std": std, "values": vals}


def select_best_beta(rows: Sequence[dict[str, Any]]) -> float:
    """The Dice weight of the sweep with the best mean *validation* F1 (ties: validation AUC,
    then the smaller weight). Chosen on validation, never on the split the tables report."""
    sweep = [r for r in rows if r["table"] == "dice_sweep"]
    if not sweep:
        raise ValueError("no dice_sweep rows to choose a weight from")

    def score(r: dict[str, Any]) -> tuple[float, float, float]:
        return (r["val_f1"]["mean"] or 0.0, r["val_roc_auc"]["mean"] or 0.0, -r["beta"])

    return float(max(sweep, key=score)["beta"])


def run_ablation(
    settings: SweepSettings,
    out: Path,
    *,
    seeds: Sequence[int],
    weights: Sequence[float] = DICE_WEIGHTS,
    best_beta: float | None = None,
    on_event: EventFn | None = None,
) -> dict[str, Any]:
    """Run the ablation in ``out``; returns ``{"plan", "rows", "results", "best_beta", ...}``."""
    emit = on_event or (lambda _e: None)
    sweep = Sweep(settings, out, "ablation")
    first = ablation_plan(seeds, weights=weights)
    specs = unique_runs(first)
    # Stage 3 adds at most the three non-AMAResNet variants per seed (AMAResNet at the best
    # weight is a sweep column already, unless the weight was fixed outside the sweep).
    guess = len(specs) + len(seeds) * (3 if best_beta is None or best_beta in weights else 4)
    results = sweep.run_all(specs, emit, total=guess)
    chosen_by = "given"
    if best_beta is None:
        best_beta = select_best_beta(aggregate(first, results))
        chosen_by = "validation F1 (mean over seeds)"
    plan = ablation_plan(seeds, weights=weights, best_beta=best_beta)
    rest = [s for s in unique_runs(plan) if s.key not in results]
    results.update(sweep.run_all(rest, emit, done_before=len(specs), total=len(specs) + len(rest)))
    return {
        "experiment": "ablation",
        "plan": plan,
        "rows": aggregate(plan, results),
        "results": results,
        "best_beta": best_beta,
        "best_beta_chosen_by": chosen_by,
        "settings": settings,
        "seeds": list(seeds),
    }


def run_compare(
    settings: SweepSettings,
    out: Path,
    *,
    seeds: Sequence[int],
    models: Sequence[str] | None = None,
    on_event: EventFn | None = None,
) -> dict[str, Any]:
    """Run the baseline comparison in ``out``; returns ``{"plan", "rows", "results", ...}``."""
    emit = on_event or (lambda _e: None)
    sweep = Sweep(settings, out, "compare")
    plan = compare_plan(seeds, models)
    results = sweep.run_all(unique_runs(plan), emit)
    return {
        "experiment": "compare",
        "plan": plan,
        "rows": aggregate(plan, results),
        "results": results,
        "settings": settings,
        "seeds": list(seeds),
    }
