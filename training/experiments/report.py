"""What a sweep of :mod:`.sweeps` publishes: markdown tables in the paper's layout
(rows Acc / Precision / Recall / F1, one column per model or weight, the paper's decimals) next
to the paper's own numbers, a CSV, a JSON with mean and spread over seeds, and the plots (ROC
curves of all models on one plot with their AUCs, a bar chart of Acc / P / R / F1, the metrics
against the Dice weight). :func:`publish` copies them into a markdown document between markers.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .model_card import write_between_markers
from .sweeps import METRICS, VARIANTS

#: Paper numbers (Acc, Precision, Recall, F1 in %), as printed (so with the paper's decimals).
PAPER_TABLE1 = {
    "ResNet18": ("68.8", "66.4", "69.75", "68.03"),
    "+SE": ("56.7", "30.0", "64.38", "40.93"),
    "+pyramid": ("70.5", "55.8", "79.04", "65.42"),
    "+SE+pyramid": ("75.0", "72.0", "76.6", "74.23"),
}
#: Table 3 (Dice-weight sweep): the paper's best column, CE 0.7 / Dice 0.3. (Its Table 4 repeats
#: Table 3 verbatim.)
PAPER_TABLE3 = {"Dice 0.3": ("78.1", "88.2", "73.38", "80.11")}
#: The comparison: AMAResNet and YOLOv5 as the paper reports them (YOLOv5 needs pretrained
#: weights from the internet and is not rerun here).
YOLO = "YOLOv5 (not rerun)"
PAPER_COMPARE = {
    "AMAResNet-18": ("78.1", "88.2", "73.38", "80.11"),
    YOLO: ("79.21", "81.37", "78.3", "79.81"),
}
#: What the paper says happens to each variant's F1 when the Dice term is added.
PAPER_DIRECTION = {
    "ResNet18": "worse",
    "+SE": "better",
    "+pyramid": "better",
    "+SE+pyramid": "better",
}

NONE = "\u2013"  # en dash: the paper printed nothing here
LABELS = {
    "accuracy": "Acc",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
    "roc_auc": "ROC-AUC",
}
#: Decimals of the paper's tables (Acc and Precision 1, Recall and F1 2); AUC is ours.
DECIMALS = {"accuracy": 1, "precision": 1, "recall": 2, "f1": 2, "roc_auc": 1}
TITLES = {
    "variants_ce": "Table 1 (paper's Tables 1-2): variants, cross-entropy only",
    "dice_sweep": "Table 3 (paper's Tables 3-4): AMAResNet-18, Dice weight sweep "
    "(cross-entropy weight = 1 - Dice weight)",
    "variants_best": "Variants again at the best weight pair",
    "compare": "Comparison with the baselines (paper's Figures 3-4)",
}


def pct(metric: str, value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.{DECIMALS[metric]}f}"


def cell(metric: str, stats: dict[str, Any]) -> str:
    """``mean ± sd`` in % (just the mean for a single seed)."""
    if stats["mean"] is None:
        return "n/a"
    if len(stats["values"]) < 2:
        return pct(metric, stats["mean"])
    return f"{pct(metric, stats['mean'])} ± {pct(metric, stats['std'])}"


def table_md(
    rows: Sequence[dict[str, Any]],
    reference: Mapping[str, tuple[str, ...]] | None = None,
    extra_columns: Sequence[str] = (),
    bold: str | None = None,
) -> str:
    """The paper's layout: one row per metric, one column per model / weight; ``reference``
    adds the paper's rows (a dash where it printed nothing); ``extra_columns`` are paper-only."""
    columns = [r["column"] for r in rows] + list(extra_columns)
    head = [f"**{c}** (selected)" if c == bold else c for c in columns]
    lines = ["| | " + " | ".join(head) + " |", "|---" * (len(columns) + 1) + "|"]
    for m in METRICS:
        cells = [cell(m, r["metrics"][m]) for r in rows] + [NONE] * len(extra_columns)
        lines.append(f"| {LABELS[m]} % | " + " | ".join(cells) + " |")
    if reference:
        for i, m in enumerate(METRICS[:4]):
            cells = [reference[c][i] if c in reference else NONE for c in columns]
            lines.append(f"| *paper {LABELS[m]} %* | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _by_table(rows: Sequence[dict[str, Any]], table: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["table"] == table]


def direction_md(rows: Sequence[dict[str, Any]], results: dict[str, Any]) -> str:
    """Per variant: F1 with cross-entropy only vs at the best weights, the paired difference
    over seeds, and whether its sign is the one the paper reports."""
    ce = {r["column"]: r for r in _by_table(rows, "variants_ce")}
    best = {r["column"]: r for r in _by_table(rows, "variants_best")}
    lines = [
        "| variant | F1 % CE only | F1 % best pair | ΔF1 (paired, points) | paper says "
        "| same sign |",
        "|---|---|---|---|---|---|",
    ]
    for column in VARIANTS.values():
        if column not in ce or column not in best:
            continue
        a = [results[k]["metrics"]["f1"] for k in ce[column]["runs"]]
        b = [results[k]["metrics"]["f1"] for k in best[column]["runs"]]
        d = 100 * (np.asarray(b) - np.asarray(a))
        spread = f" ± {np.std(d, ddof=1):.2f}" if d.size > 1 else ""
        said = PAPER_DIRECTION[column]
        same = (d.mean() < 0) if said == "worse" else (d.mean() > 0)
        lines.append(
            f"| {column} | {cell('f1', ce[column]['metrics']['f1'])} | "
            f"{cell('f1', best[column]['metrics']['f1'])} | {d.mean():+.2f}{spread} | {said} | "
            f"{'yes' if same else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def _settings_md(result: dict[str, Any], n_eval: tuple[int, int]) -> str:
    s = result["settings"]
    seeds = result["seeds"]
    runs = result["results"].values()
    hours = sum(r["train"]["seconds"] for r in runs) / 3600
    return (
        f"{len(seeds)} seed(s) ({', '.join(map(str, seeds))}), budget `{s.budget}` per model, "
        f"{s.samples_per_epoch} patches of {s.patch} px per epoch on slices resized to "
        f"{s.size} px, batch {s.batch_size}, early stop after {s.patience} epochs without "
        f"validation-F1 gain. Scored on split `{s.split}` ({n_eval[0]} clean + {n_eval[1]} "
        "artifact slices) at each checkpoint's validation threshold (`amaqc train`'s rule). "
        f"Cells: mean ± sample SD over seeds, in %. {len(result['results'])} trainings, "
        f"{hours:.2f} h of training in total.\n"
    )


def render(result: dict[str, Any], img_rel: str = ".") -> str:
    """The markdown of an ablation or comparison result (image paths under ``img_rel``)."""
    rows, name = result["rows"], result["experiment"]
    first = next(iter(result["results"].values()))
    n_eval = (first["labels"].count(0), first["labels"].count(1))
    parts = [_settings_md(result, n_eval)]
    if name == "ablation":
        best = result["best_beta"]
        parts += [
            f"#### {TITLES['variants_ce']}\n",
            table_md(_by_table(rows, "variants_ce"), PAPER_TABLE1),
            f"#### {TITLES['dice_sweep']}\n",
            table_md(_by_table(rows, "dice_sweep"), PAPER_TABLE3, bold=f"Dice {best:.1f}"),
            f"Best Dice weight: **{best:.1f}** (CE {1 - best:.1f}), chosen by "
            f"{result['best_beta_chosen_by']}; the paper's best is 0.3.\n",
            f"![metrics against the Dice weight]({img_rel}/ablation-dice-sweep.png)\n",
            f"#### {TITLES['variants_best']} (CE {1 - best:.1f} / Dice {best:.1f})\n",
            table_md(_by_table(rows, "variants_best")),
            "The paper reports that adding the Dice term makes plain ResNet18 worse and the "
            "other three variants better"
            + (
                " (here the best weight is cross-entropy only, so this stage repeats Table 1 and "
                "cannot test that):\n"
                if best == 0.0
                else ":\n"
            ),
            direction_md(rows, result["results"]),
            f"![ROC curves of the variants]({img_rel}/ablation-roc.png)\n",
            f"![Acc / Precision / Recall / F1 of the variants]({img_rel}/ablation-bars.png)\n",
        ]
    else:
        parts += [
            f"#### {TITLES['compare']}\n",
            "Baselines trained with cross-entropy only, AMAResNet-18 with 0.7 CE + 0.3 Dice, all "
            "from scratch on the same data with the same budget.\n",
            table_md(rows, PAPER_COMPARE, extra_columns=[YOLO]),
            f"![ROC curves of all models]({img_rel}/compare-roc.png)\n",
            f"![Acc / Precision / Recall / F1 of all models]({img_rel}/compare-bars.png)\n",
        ]
    return "\n".join(parts)


def _roc_curves(
    rows: Sequence[dict[str, Any]], results: dict[str, Any]
) -> dict[str, list[tuple[list[int], list[float]]]]:
    return {
        r["column"]: [(results[k]["labels"], results[k]["probs"]) for k in r["runs"]] for r in rows
    }


def plot_mean_roc(
    curves: dict[str, list[tuple[list[int], list[float]]]], path: Path, title: str
) -> Path:
    """One ROC curve per model (true-positive rate averaged over seeds on a common
    false-positive grid), its AUC mean ± SD over seeds in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    grid = np.linspace(0, 1, 201)
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=120)
    for name, runs in curves.items():
        runs = [(y, p) for y, p in runs if len(set(y)) == 2]
        if not runs:
            continue
        tprs, aucs = [], []
        for y, p in runs:
            fpr, tpr, _ = roc_curve(y, p)
            tprs.append(np.interp(grid, fpr, tpr))
            aucs.append(roc_auc_score(y, p))
        tpr_mean = np.mean(tprs, axis=0)
        tpr_mean[0] = 0.0
        sd = f" ± {np.std(aucs, ddof=1):.3f}" if len(aucs) > 1 else ""
        ax.plot(grid, tpr_mean, lw=1.6, label=f"{name} (AUC {np.mean(aucs):.3f}{sd})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=title,
    )
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_bars(rows: Sequence[dict[str, Any]], path: Path, title: str) -> Path:
    """Grouped bars of Acc / Precision / Recall / F1 per model, error bars = SD over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = METRICS[:4]
    x = np.arange(len(rows))
    width = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 4), dpi=120)
    for i, m in enumerate(metrics):
        means = [100 * (r["metrics"][m]["mean"] or 0) for r in rows]
        sds = [100 * (r["metrics"][m]["std"] or 0) for r in rows]
        ax.bar(x + (i - 1.5) * width, means, width, yerr=sds, capsize=2, label=LABELS[m])
    ax.set_xticks(x, [r["column"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set(ylabel="%", ylim=(0, 100), title=title)
    ax.legend(fontsize=8, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_sweep(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Test metrics (mean ± SD over seeds) and validation F1 against the Dice weight."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    betas = [r["beta"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for m in (*METRICS[:4], "roc_auc"):
        ax.errorbar(
            betas,
            [100 * (r["metrics"][m]["mean"] or np.nan) for r in rows],
            yerr=[100 * (r["metrics"][m]["std"] or 0) for r in rows],
            marker="o",
            capsize=2,
            label=LABELS[m],
        )
    ax.plot(betas, [100 * (r["val_f1"]["mean"] or np.nan) for r in rows], "k:", label="val F1")
    ax.set(xlabel="Dice weight (CE weight = 1 - Dice weight)", ylabel="%", ylim=(0, 100))
    ax.set_title("AMAResNet-18: loss-weight sweep")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plots(result: dict[str, Any], out: Path) -> list[Path]:
    rows, results, name = result["rows"], result["results"], result["experiment"]
    if name == "ablation":
        shown = _by_table(rows, "variants_ce") + [
            {**r, "column": f"{r['column']} (best pair)"} for r in _by_table(rows, "variants_best")
        ]
        return [
            plot_mean_roc(_roc_curves(shown, results), out / "ablation-roc.png", "ROC: variants"),
            plot_bars(shown, out / "ablation-bars.png", "Variants: CE only and best pair"),
            plot_sweep(_by_table(rows, "dice_sweep"), out / "ablation-dice-sweep.png"),
        ]
    return [
        plot_mean_roc(_roc_curves(rows, results), out / "compare-roc.png", "ROC: all models"),
        plot_bars(rows, out / "compare-bars.png", "Acc / Precision / Recall / F1"),
    ]


def write_csvs(result: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """``<name>.csv`` (one line per table column; metrics as fractions, mean and SD over seeds)
    and ``<name>-runs.csv`` (one line per training)."""
    name = result["experiment"]
    table = out / f"{name}.csv"
    with table.open("w", newline="") as f:
        w = csv.writer(f)
        stats = [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
        w.writerow(["table", "column", "arch", "alpha", "beta", "n_seeds", *stats, "val_f1_mean"])
        for r in result["rows"]:
            vals = [r["metrics"][m][s] for m in METRICS for s in ("mean", "std")]
            w.writerow(
                [r["table"], r["column"], r["arch"], r["alpha"], r["beta"], r["n"]]
                + ["" if v is None else f"{v:.6f}" for v in vals]
                + [r["val_f1"]["mean"]]
            )
    runs = out / f"{name}-runs.csv"
    with runs.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                *("key", "arch", "alpha", "beta", "seed", "epochs_run", "best_epoch"),
                *("stopped", "train_seconds", "threshold", *METRICS),
            ]
        )
        for key, r in result["results"].items():
            m = r["metrics"]
            w.writerow(
                [key, *(r["run"][k] for k in ("arch", "alpha", "beta", "seed"))]
                + [r["train"][k] for k in ("epochs_run", "best_epoch", "stopped", "seconds")]
                + [m["threshold"], *("" if m[k] is None else m[k] for k in METRICS)]
            )
    return table, runs


def write_report(result: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write ``<name>.md``, ``.csv``, ``-runs.csv``, ``.json`` and the plots into ``out``."""
    out = Path(out)
    name = result["experiment"]
    md = out / f"{name}.md"
    md.write_text(f"# amaqc {name}\n\n" + render(result))
    table, runs = write_csvs(result, out)
    payload = {
        "experiment": name,
        "settings": result["settings"].fingerprint(),
        "seeds": result["seeds"],
        "best_beta": result.get("best_beta"),
        "best_beta_chosen_by": result.get("best_beta_chosen_by"),
        "rows": result["rows"],
        "plan": [asdict(e) for e in result["plan"]],
        "paper": {
            key: {col: [float(v) for v in vals] for col, vals in table.items()}
            for key, table in (
                ("table1", PAPER_TABLE1),
                ("table3", PAPER_TABLE3),
                ("compare", PAPER_COMPARE),
            )
        },
    }
    js = out / f"{name}.json"
    js.write_text(json.dumps(payload, indent=1))
    files = {"markdown": md, "csv": table, "runs_csv": runs, "json": js}
    files.update({p.stem: p for p in plots(result, out)})
    return files


def publish(result: dict[str, Any], out: Path, doc: Path, img_dir: Path) -> Path:
    """Copy the plots of ``out`` to ``img_dir`` and write the tables into ``doc`` between
    ``<!-- <name>:start -->`` and ``<!-- <name>:end -->`` (the hand-written rest is kept)."""
    name = result["experiment"]
    img_dir.mkdir(parents=True, exist_ok=True)
    for png in sorted(Path(out).glob(f"{name}-*.png")):
        shutil.copyfile(png, img_dir / png.name)
    try:
        rel = img_dir.resolve().relative_to(doc.parent.resolve()).as_posix()
    except ValueError:
        rel = img_dir.resolve().as_posix()
    write_between_markers(
        doc, render(result, rel), start=f"<!-- {name}:start -->", end=f"<!-- {name}:end -->"
    )
    return doc
