"""The acquisition family a series' threshold is chosen by (``model.acquisition``): names and
training contrasts (the DICOM header's tags are tested with the service's ingest)."""

from __future__ import annotations

import pytest

from model.acquisition import ACQUISITIONS, EPI, NON_EPI, from_names, of_contrast, validate


@pytest.mark.parametrize(
    "name",
    ["ep2d_diff_mddw_30", "DTI 64 dir", "rs-fMRI", "BOLD_resting", "*epfid2d1_64", "Axial DWI"],
)
def test_an_echo_planar_name_says_epi(name: str) -> None:
    assert from_names(None, "", name) == EPI


@pytest.mark.parametrize(
    "name", ["T1 epilepsy protocol", "t1_mprage_sag", "FLAIR ax", "different", "T2 TSE", None]
)
def test_a_name_never_says_not_echo_planar(name: str | None) -> None:
    assert from_names(name) is None


def test_training_contrasts_map_to_their_readout() -> None:
    assert [of_contrast(c) for c in ("DWI-b0", "EPI", "dwi", "T1", "PD", "")] == [
        EPI,
        EPI,
        EPI,
        NON_EPI,
        NON_EPI,
        NON_EPI,
    ]


def test_an_unknown_family_is_refused_by_name() -> None:
    assert [validate(a) for a in ACQUISITIONS] == list(ACQUISITIONS)
    with pytest.raises(ValueError, match="unknown acquisition family 'swi'; one of epi, non_epi"):
        validate("swi")
