"""``amaqc train-fusion``: the fused detector of issue 17 (AMAResNet + the IQM panel), and
``amaqc train-spectral``: the spectral network it may also read (``model/spectral.py``)."""

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
    spectral: Annotated[
        list[Path] | None,
        typer.Option(
            help="A spectral network from `amaqc train-spectral`: adds the candidates that read "
            "it (default: the one the checkpoint carries, if any). Repeat it to serve several "
            "networks, trained apart, as one ensemble (the mean of their logits)."
        ),
    ] = None,
    per_acquisition: Annotated[
        bool,
        typer.Option(
            "--per-acquisition/--pooled-only",
            help="Also choose a threshold per acquisition family (echo-planar or not) by the "
            "same rule on that family's calib slices; a series whose family is unknown keeps "
            "the pooled one.",
        ),
    ] = True,
) -> None:
    """Fit the fused detector (logistic regression over AMAResNet's output and the IQM panel)
    on the train split, choose its threshold on the pooled calib split (<= 5 % false alarms on
    every clean source) and one per acquisition family (echo-planar or not), and score it
    beside AMAResNet alone and the IQM panel alone.

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
                spectral=spectral or (),
                per_acquisition=per_acquisition,
                progress=progress,
            )
        except (ValueError, FileNotFoundError) as exc:
            raise fail(str(exc)) from None
    table = Table("detector", "threshold", *[f"{s} AUC / F1" for s in EVAL_SPLITS])
    for name, result in summary["detectors"].items():
        name = f"{name} (served)" if name == summary["served_variant"] else name
        cells = []
        for split in EVAL_SPLITS:
            m = result[split].get("moderate_and_severe") or result[split]["metrics"]
            auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
            cells.append(f"{auc} / {m['f1']:.3f}")
        cut = f"{result['threshold']['threshold']:.3f}"
        cut += "".join(
            f"\n{family} {rule['threshold']:.3f}"
            for family, rule in result.get("acquisition_thresholds", {}).items()
        )
        table.add_row(name, cut, *cells)
    console.print(table)
    where = "its family's threshold" if per_acquisition else "each detector's pooled threshold"
    console.print(
        f"moderate + severe artifacts, F1 at {where}; wrote "
        f"{out / 'amaqc-fused.safetensors'} and {out / 'summary.json'}"
    )


@app.command("train-spectral")
def train_spectral(
    data: Annotated[Path, typer.Option(help="Dataset from `amaqc data build`.")] = Path(".data/ds"),
    out: Annotated[Path, typer.Option(help="The network file to write.")] = Path(
        ".data/spectral/spectral.safetensors"
    ),
    seeds: Annotated[
        str,
        typer.Option(
            help="Seeds of the simulated training twins, comma-separated; keep them apart from "
            "train-fusion's --seed (0), so the fusion is fitted on twins the network never saw."
        ),
    ] = "1,2,3,4,5",
    variants: Annotated[
        int, typer.Option(min=1, help="Clean + artifact twins per training slice and seed.")
    ] = 2,
    coarse: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of training twins acquired coarse.")
    ] = 0.3,
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training twins.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights and batch order.")] = 0,
    hold_out: Annotated[
        list[str] | None,
        typer.Option(
            help="An artifact kind the network never sees in training (repeat): for measuring "
            "whether it flags a kind it was not taught (train-fusion's held-out kinds)."
        ),
    ] = None,
) -> None:
    """Train the spectral network (a small CNN on each slice's log k-space magnitude,
    `model/spectral.py`) on our simulator's whole-slice twins, then give it to
    `amaqc train-fusion --spectral OUT`.
    """
    import torch

    from model.predictor import default_device
    from training.data.samples import load_split
    from training.fit.spectral import fit_spectral, save_spectral_file, spectral_training_set
    from training.simulate.artifacts import KINDS

    require_dataset(data)
    held = sorted(set(hold_out or ()))
    if unknown := [k for k in held if k not in KINDS]:
        raise fail(f"--hold-out: unknown kind(s) {unknown}; choose from {', '.join(KINDS)}")
    kinds = [k for k in KINDS if k not in held]
    if not kinds:
        raise fail("--hold-out leaves no artifact kind to train on")
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise fail(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    if not seed_list:
        raise fail("--seeds names no seed")
    if 0 in seed_list:
        console.print(
            "[yellow]warning:[/] seed 0 is train-fusion's own; its fit then sees twins the "
            "network was trained on"
        )
    try:
        train = load_split(data, "train")
    except ValueError as exc:
        raise fail(str(exc)) from None
    device = default_device()
    with progress_bar() as bar:
        task = bar.add_task(
            "training twins", total=len(seed_list) * sum(1 for s in train if s.label == 0), info=""
        )
        try:
            spectra, labels, info = spectral_training_set(
                train,
                seeds=seed_list,
                variants=variants,
                coarse_probability=coarse,
                kinds=kinds,
                advance=lambda n: bar.advance(task, n),
            )
        except ValueError as exc:
            raise fail(str(exc)) from None
        fit_task = bar.add_task("training", total=epochs * (len(labels) // 50) * 50, info="")

        def advance(n: int, loss: float) -> None:
            bar.update(fit_task, advance=n, info=f"loss {loss:.3f}")

        try:
            net = fit_spectral(
                spectra, labels, epochs=epochs, seed=seed, device=device, advance=advance
            )
        except ValueError as exc:  # too few twins for one batch
            raise fail(f"{exc}; add seeds (--seeds) or training slices") from None
    info.update(
        epochs=epochs,
        seed=seed,
        device=str(device),
        torch=torch.__version__,
        recipe="BCE, Adam lr 1e-3 cosine to 0, weight decay 1e-4, batch 50, flips/transposes",
    )
    save_spectral_file(out, net, info)
    console.print(
        f"wrote {out} ({info['slices']} training twins, {info['artifact']} with an artifact, "
        f"{epochs} epochs); next: amaqc train-fusion --spectral {out}"
    )
