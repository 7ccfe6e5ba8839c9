"""``amaqc train-fusion``: the fused detector of issue 17 (AMAResNet + the IQM panel)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .common import (
    console,
    default_checkpoint,
    fail,
    progress_bar,
    progress_tasks,
    require_dataset,
)

app = typer.Typer()


@app.command("train-fusion")
def train_fusion(
    data: Annotated[
        Path, typer.Option(help="Dataset from `amaqc data build` (train, calib, xsim, ...).")
    ] = Path(".data/ds"),
    checkpoint: Annotated[
        Path | None, typer.Option(help="The AMAResNet checkpoint to fuse (default: served).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for the checkpoint, summary and plots.")] = Path(
        ".data/fusion"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the simulated training twins.")] = 0,
    variants: Annotated[
        int, typer.Option(min=1, help="Clean + artifact twins per training slice.")
    ] = 2,
    coarse: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of training twins acquired coarse (48-128 px matrix, anisotropic voxels).",
        ),
    ] = 0.0,
) -> None:
    """Fit the fused detector (logistic regression over AMAResNet's output and the IQM panel)
    on the train split, choose its threshold on the pooled calib split (<= 5 % false alarms on
    every clean source), and score it beside AMAResNet alone and the IQM panel alone.

    Writes OUT/amaqc-fused.safetensors (the same weights, the fusion model in its metadata),
    OUT/summary.json and OUT/roc-<split>.png. Features are cached in OUT/features.json, so a
    rerun only refits.
    """
    from training.experiments import EVAL_SPLITS, run_fusion_experiment

    ckpt = checkpoint or default_checkpoint()
    require_dataset(data)
    with progress_bar() as bar:
        progress = progress_tasks(bar)
        try:
            summary = run_fusion_experiment(
                data,
                ckpt,
                out,
                seed=seed,
                variants=variants,
                coarse_probability=coarse,
                progress=progress,
            )
        except (ValueError, FileNotFoundError) as exc:
            raise fail(str(exc)) from None
    table = Table("detector", "threshold", *[f"{s} AUC / F1" for s in EVAL_SPLITS])
    for name, result in summary["detectors"].items():
        cells = []
        for split in EVAL_SPLITS:
            m = result[split].get("moderate_and_severe") or result[split]["metrics"]
            auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
            cells.append(f"{auc} / {m['f1']:.3f}")
        table.add_row(name, f"{result['threshold']['threshold']:.3f}", *cells)
    console.print(table)
    console.print(
        f"moderate + severe artifacts, F1 at each detector's pooled threshold; wrote "
        f"{out / 'amaqc-fused.safetensors'} and {out / 'summary.json'}"
    )
