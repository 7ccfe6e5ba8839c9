from __future__ import annotations

from pathlib import Path

import pytest

from app.config import SeriesRule, Settings


def test_defaults_live_under_the_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.database_url == f"sqlite:///{tmp_path.resolve()}/amaqc.db"
    assert s.broker_url == f"sqla+sqlite:///{tmp_path.resolve()}/broker.db"


def test_environment_sets_the_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMAQC_DATABASE_URL", "postgresql+psycopg://db/amaqc")
    assert Settings().database_url == "postgresql+psycopg://db/amaqc"


def test_default_checkpoint_is_the_served_one() -> None:
    assert Settings().checkpoint.parts[-3:] == ("model", "weights", "amaqc-default.safetensors")


@pytest.mark.parametrize(
    ("rule", "n", "need"), [("any", 10, 1), ("count:3", 10, 3), ("fraction:0.25", 10, 3)]
)
def test_series_rule_gives_the_number_of_flagged_slices_needed(
    rule: str, n: int, need: int
) -> None:
    assert SeriesRule(rule).min_flagged(n) == need


@pytest.mark.parametrize("bad", ["most", "count:0", "count:x", "fraction:1.5", "any:2"])
def test_a_bad_series_rule_is_refused_by_name(bad: str) -> None:
    with pytest.raises(ValueError, match=bad):
        Settings(series_rule=bad)


def test_dicom_settings_take_ae_titles_separated_by_commas_or_spaces() -> None:
    s = Settings(dicom_allowed_aes="MR1, MR_2  CT3", dicom_ae_title=" QC ")
    assert s.allowed_aes == ["MR1", "MR_2", "CT3"] and s.dicom_ae_title == "QC"
    assert Settings().allowed_aes == [] and Settings().dicom_port == 11112


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("dicom_ae_title", "A" * 17),
        ("dicom_ae_title", "   "),
        ("dicom_allowed_aes", "MR1,BAD\\AE"),
        ("dicom_allowed_aes", "MR1,AETITLE_LONGER_THAN_16"),
    ],
)
def test_a_bad_ae_title_is_refused_by_name(field: str, bad: str) -> None:
    with pytest.raises(ValueError, match="AE title"):
        Settings(**{field: bad})
