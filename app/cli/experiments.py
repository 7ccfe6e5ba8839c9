"""``amaqc ablation`` and ``amaqc compare``: the paper's experiments as resumable sweeps
(:mod:`training.experiments.sweeps`), with one progress bar over the sweep and one per run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from .common import console, fail

app = typer.Typer()

DataOpt = Annotated[Path, typer.Option(help="Dataset folder (amaqc data build, or yours).")]
OutOpt = Annotated[
    Path, typer.Option(help="Results folder; rerunning into it skips finished runs.")
]
SeedsOpt = Annotated[int, typer.Option(min=1, help="Seeds per configuration (0 .. N-1).")]
BudgetOpt = Annotated[
    str | None,
    typer.Option(
        help="Per model: epochs ('20ep') or time ('30m', '2h'). Default 20ep (1ep quick)."
    ),
]
QuickOpt = Annotated[
    bool, typer.Option(help="Minutes on 2 CPU cores: tiny epochs, 32 px patches (a smoke test).")
]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: auto).")]
SplitOpt = Annotated[str, typer.Option(help="Split the tables report (test, transfer, ...).")]
PublishOpt = Annotated[
    Path | None,
    typer.Option(
        help="Also write the tables into this markdown file (between its markers) "
        "and the plots into img/ beside it, e.g. docs/results.md."
    ),
]
SamplesOpt = Annotated[int | None, typer.Option(help="Patches per epoch (default 5000).")]
PatchOpt = Annotated[int | None, typer.Option(help="Patch side in pixels (default 128).")]
SizeOpt = Annotated[int | None, typer.Option(help="Slices resized to this side (default 256).")]
WorkersOpt = Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")]


def _settings(
    data: Path,
    *,
    quick: bool,
    budget: str | None,
    split: str,
    device: str | None,
    workers: int,
    samples_per_epoch: int | None,
    patch: int | None,
    size: int | None,
) -> Any:
    from training.experiments import SweepSettings

    if not data.is_dir():
        raise fail(f"--data {data}: no such dataset folder")
    given = {
        "budget": budget,
        "samples_per_epoch": samples_per_epoch,
        "patch": patch,
        "size": size,
    }
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    overrides.update(split=split, device=device)
    try:
        if quick:
            return SweepSettings.quick(data, **overrides)
        return SweepSettings(data=data, num_workers=workers, **overrides)
    except ValueError as exc:
        raise fail(str(exc)) from None


def _run_with_progress(
    run: Callable[[Callable[[dict[str, Any]], None]], Any],
) -> tuple[Any, Counter[str]]:
    """Call ``run(on_event)`` under two bars (sweep, current run); returns the result and how
    many runs were ``trained``, ``reused`` (evaluated before) and ``evaluated`` (trained
    before, evaluated now)."""
    counts: Counter[str] = Counter()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        sweep = progress.add_task("sweep", total=None, info="")
        current = progress.add_task("run", total=None, info="")

        def on_event(event: dict[str, Any]) -> None:
            kind = event["event"]
            if kind == "run_start":
                progress.update(sweep, total=event["total"], completed=event["index"])
                progress.reset(current, total=None, description=event["key"], info="")
            elif kind == "step":
                progress.update(
                    current,
                    total=event["steps"],
                    completed=event["step"],
                    description=f"{event['key']} epoch {event['epoch'] + 1}",
                    info=f"loss {event['loss']:.4f}",
                )
            elif kind == "epoch":
                v = event["val"]
                progress.update(current, info=f"val F1 {v['f1']:.3f}")
            elif kind == "run_end":
                how = (
                    "reused" if event["skipped"] else "trained" if event["trained"] else "evaluated"
                )
                counts[how] += 1
                m = event["metrics"]
                auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
                progress.console.print(
                    f"{event['key']}: F1 {m['f1']:.3f}, AUC {auc}, acc {m['accuracy']:.3f} ({how})"
                )
                progress.update(sweep, total=event["total"], completed=event["index"])

        try:
            result = run(on_event)
        except (ValueError, FileNotFoundError) as exc:
            raise fail(str(exc)) from None
    return result, counts


def _finish(result: dict[str, Any], out: Path, publish: Path | None, counts: Counter[str]) -> str:
    from training.experiments import write_report
    from training.experiments.report import publish as publish_doc

    files = write_report(result, out)
    where = f"wrote {', '.join(p.name for p in files.values())} to {out}"
    if publish is not None:
        publish_doc(result, out, publish, publish.parent / "img")
        where += f"; updated {publish}"
    runs = f"{len(result['results'])} runs ({counts['trained']} trained, {counts['reused']} reused"
    if counts["evaluated"]:
        runs += f", {counts['evaluated']} evaluated from an earlier training"
    return f"{runs}); {where}"


@app.command()
def ablation(
    data: DataOpt,
    out: OutOpt,
    seeds: SeedsOpt = 3,
    budget: BudgetOpt = None,
    quick: QuickOpt = False,
    device: DeviceOpt = None,
    split: SplitOpt = "test",
    weights: Annotated[
        str | None, typer.Option(help="Dice weights to sweep, comma-separated (default 0.0..0.9).")
    ] = None,
    best_beta: Annotated[
        float | None,
        typer.Option(help="Dice weight of stage 3 (default: best validation F1 of the sweep)."),
    ] = None,
    publish: PublishOpt = None,
    samples_per_epoch: SamplesOpt = None,
    patch: PatchOpt = None,
    size: SizeOpt = None,
    workers: WorkersOpt = 1,
) -> None:
    """The paper's ablation: the four variants with cross-entropy only, AMAResNet-18 over Dice
    weights 0.0..0.9, then the four variants at the best weight pair.

    Writes ablation.md (tables in the paper's layout beside its numbers), ablation.csv,
    ablation-runs.csv, ablation.json (mean and SD over seeds) and the plots.
    """
    from training.experiments import DICE_WEIGHTS, run_ablation

    settings = _settings(
        data,
        quick=quick,
        budget=budget,
        split=split,
        device=device,
        workers=workers,
        samples_per_epoch=samples_per_epoch,
        patch=patch,
        size=size,
    )
    try:
        chosen = (
            tuple(round(float(w), 6) for w in weights.split(",") if w.strip())
            if weights
            else DICE_WEIGHTS
        )
    except ValueError:
        raise fail(f"--weights {weights!r}: expected comma-separated numbers") from None
    bad = [w for w in chosen if not 0.0 <= w < 1.0]
    if bad or not chosen:
        raise fail(f"--weights {weights!r}: every Dice weight must be in [0, 1)")
    if best_beta is not None and not 0.0 <= best_beta < 1.0:
        raise fail(f"--best-beta {best_beta}: must be in [0, 1)")
    result, counts = _run_with_progress(
        lambda on_event: run_ablation(
            settings,
            out,
            seeds=range(seeds),
            weights=chosen,
            best_beta=best_beta,
            on_event=on_event,
        )
    )
    summary = _finish(result, out, publish, counts)
    console.print(f"ablation: best Dice weight {result['best_beta']:.1f}; {summary}")


@app.command()
def compare(
    data: DataOpt,
    out: OutOpt,
    seeds: SeedsOpt = 3,
    budget: BudgetOpt = None,
    quick: QuickOpt = False,
    device: DeviceOpt = None,
    split: SplitOpt = "test",
    models: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated subset (default: cnn2d, vgg16, vgg19, resnet18_se, "
            "densenet121, unet_encoder, amaresnet18)."
        ),
    ] = None,
    publish: PublishOpt = None,
    samples_per_epoch: SamplesOpt = None,
    patch: PatchOpt = None,
    size: SizeOpt = None,
    workers: WorkersOpt = 1,
) -> None:
    """The paper's baseline comparison: a Meding-style 2-D CNN, VGG16, VGG19, SE-ResNet18,
    DenseNet-121 and a U-Net-encoder classifier (cross-entropy, from scratch) beside AMAResNet-18.

    Writes compare.md, compare.csv, compare-runs.csv, compare.json, the ROC curves of all models
    on one plot (AUCs in the legend) and a bar chart of Acc / Precision / Recall / F1.
    """
    from training.experiments import run_compare

    settings = _settings(
        data,
        quick=quick,
        budget=budget,
        split=split,
        device=device,
        workers=workers,
        samples_per_epoch=samples_per_epoch,
        patch=patch,
        size=size,
    )
    chosen = [m.strip() for m in models.split(",") if m.strip()] if models else None
    result, counts = _run_with_progress(
        lambda on_event: run_compare(
            settings, out, seeds=range(seeds), models=chosen, on_event=on_event
        )
    )
    best = max(result["rows"], key=lambda r: r["metrics"]["f1"]["mean"] or 0.0)
    summary = _finish(result, out, publish, counts)
    console.print(
        f"compare: best mean test F1 {best['column']} "
        f"({100 * (best['metrics']['f1']['mean'] or 0):.2f} %); {summary}"
    )
