"""The admin model page's model card (issue 22 item 8), from checkpoint metadata: metrics per
split from the training code's flat keys, the fused detector's table and threshold rule, the
training data, active / shadow, and a card without any of them (never an error)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.db.models import ModelVersion
from app.model_versions import checkpoint_metadata
from app.web.model_card import NOT_RECORDED, metric_rows, model_card, read_metadata

FUSION: dict[str, Any] = {
    "format": "amaqc-fusion/1",
    "features": ["iqm_snr", "iqm_efc"],
    "threshold": 0.9908,
    "info": {
        "variant": "iqm",
        "threshold_set": "calib",
        "choice": "the one with the higher mean F1",
        "metrics": {
            "xsim": {
                "n": 476,
                "f1": 0.5123,
                "roc_auc": 0.7773,
                "confusion": {"tp": 83, "fn": 155, "fp": 3, "tn": 235},
            },
            "val": {"n": 73, "f1": 0.5, "accuracy": 0.726},
        },
        "rule": {
            "rule": "F1-optimal threshold on the pooled validation set among those flagging <= 5% "
            "of the clean slices of every source",
            "max_false_alarm_rate_per_source": 0.05,
            "binding_source": "dipy_aniso",
            "f1": 0.537,
        },
        "training": {"slices": 2927, "artifact": 1347, "split": "train"},
    },
}


def _version(**fields: Any) -> ModelVersion:
    values: dict[str, Any] = {
        "id": 1,
        "name": "amaqc-default",
        "checkpoint_path": "/nowhere/amaqc-default.safetensors",
        "sha256": "0" * 64,
        "arch": "amaresnet18",
        "threshold": 0.9908,
        "metrics": {},
        "active": True,
        "shadow": False,
    }
    return ModelVersion(**{**values, **fields})


def test_flat_metrics_become_one_row_per_split_and_subset_in_split_order() -> None:
    rows = metric_rows(
        {
            "test_f1": 0.35,
            "test_n": 148,
            "test_modsev_f1": 0.41,
            "val_f1": 0.39,
            "val_roc_auc": 0.781,
            "best_epoch": 28,  # no split: left out
            "val_confusion": {"tp": 1},  # not a number: left out
        }
    )
    assert [(r["split"], r["subset"]) for r in rows] == [
        ("val", "all slices"),
        ("test", "all slices"),
        ("test", "moderate + severe artifacts only"),
    ]
    # columns: slices, accuracy, precision, recall, F1, ROC-AUC
    assert rows[0]["cells"] == ["\u2013", "\u2013", "\u2013", "\u2013", "0.390", "0.781"]
    assert rows[1]["cells"][0] == "148" and rows[1]["cells"][4] == "0.350"


def test_a_fused_checkpoints_card_names_its_threshold_rule_and_tables() -> None:
    meta = {
        "arch": "amaresnet18",
        "threshold": 0.8358,
        "patch_size": 64,
        "normalization": {"size": 256},
        "created_at": "2026-11-24T04:42:41+00:00",
        "amaqc_version": "0.1.0",
        "metrics": {"test_f1": 0.3478, "test_modsev_f1": 0.4062},
        "fusion": FUSION,
        "training": {
            "best_epoch": 28,
            "samples_seen": 174000,
            "config": {"epochs": 200, "kinds": ["motion", "spike"], "severities": ["severe"]},
            "data": {
                "train": {"slices": 790, "clean": 790, "artifact": 0, "sources": {"mni152": 190}}
            },
        },
    }
    card = model_card(_version(), meta)
    assert card["status"]["key"] == "active" and card["created"] == "2026-11-24T04:42:41+00:00"
    threshold = card["threshold"]
    assert threshold["value"] == "0.991" and "pooled validation set" in threshold["rule"]
    facts = dict(threshold["facts"])
    assert facts["chosen on the split"] == "calib"
    assert facts["false alarms allowed per source"] == "at most 5% of clean slices"
    assert facts["AMAResNet's own threshold"] == "0.836"
    assert "image-quality metrics panel alone" in card["detector"]
    assert [r["split"] for r in card["metrics"]] == ["test", "test"]
    assert card["metric_columns"] == ["F1"]  # the columns no split has a value in are left out
    assert card["metrics"][1]["cells"] == ["0.406"]
    fused = card["fused_metrics"]
    assert [r["split"] for r in fused] == ["val", "xsim"]
    assert (fused[1]["found"], fused[1]["missed"], fused[1]["false_alarms"]) == ("83", "155", "3")
    assert card["training_data"][0]["sources"] == "mni152 (190)"
    run = dict(card["training_run"])
    assert run["best epoch"] == "29 of up to 200" and run["patches seen"] == "174,000"
    assert run["simulated artifacts"] == "motion, spike (severe)"
    assert run["fused detector fitted on"].startswith("2,927 slices of the train split")


def test_a_card_without_metadata_degrades_to_what_the_row_holds() -> None:
    version = _version(active=False, shadow=True, metrics={"val_f1": 0.5}, threshold=0.5)
    card = model_card(version, None, "no such checkpoint file")
    assert card["problem"] == "no such checkpoint file"
    assert card["status"]["key"] == "shadow"
    assert card["created"] == NOT_RECORDED and card["detector"] == NOT_RECORDED
    assert card["threshold"]["rule"] == NOT_RECORDED and card["threshold"]["facts"] == []
    assert [r["split"] for r in card["metrics"]] == ["val"]  # the row's metrics
    assert card["fused_metrics"] == [] and card["training_data"] == []
    assert card["training_run"] == []


def test_a_cnn_checkpoints_rule_comes_from_its_training_config() -> None:
    meta = {
        "arch": "resnet18",
        "threshold": 0.42,
        "training": {"config": {"val_split": "val", "max_false_alarm_rate": 0.1}},
    }
    card = model_card(_version(active=False, threshold=0.3), meta)
    assert card["status"]["key"] == "inactive"
    assert card["threshold"]["rule"] == (
        "F1-optimal on the val split among thresholds that flag at most 10% of its clean slices"
    )
    assert card["threshold"]["checkpoint_value"] == "0.420"  # the row's 0.300 is the one used
    assert card["detector"].startswith("the network (resnet18) alone")


def test_the_served_checkpoint_has_a_card_with_metrics_and_its_rule(checkpoint: Path) -> None:
    served = Path(__file__).resolve().parents[2] / "model" / "weights" / "amaqc-default.safetensors"
    meta = checkpoint_metadata(served)
    card = model_card(_version(checkpoint_path=str(served)), meta)
    assert card["metrics"] and card["problem"] is None
    if meta.get("fusion"):
        assert card["fused_metrics"] and card["threshold"]["rule"] != NOT_RECORDED
    tiny, problem = read_metadata(_version(checkpoint_path=str(checkpoint), sha256="1" * 64))
    assert problem is None and tiny is not None
    assert model_card(_version(), tiny)["metrics"] == []  # the tiny model has none
