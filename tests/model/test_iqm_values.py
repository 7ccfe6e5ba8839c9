"""The IQM panel's values are pinned: the served fusion model was fitted on them, so a faster
``model/iqm.py`` must give the same numbers (``tests/utils/iqm_reference.py`` says how the
reference was made and when to regenerate it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.iqm import IQM_NAMES, PANEL_VERSION, compute_iqms
from tests.utils.iqm_reference import REFERENCE, fingerprint, reference_slices

#: the tolerance issue 18 allows a rewrite (values ~0 compare absolutely)
REL, ABS = 1e-6, 1e-9

_REFERENCE = json.loads(REFERENCE.read_text())
_SLICES = reference_slices()


def test_the_reference_is_of_the_current_panel_version() -> None:
    assert _REFERENCE["panel_version"] == PANEL_VERSION
    assert set(_REFERENCE["slices"]) == set(_SLICES)


@pytest.mark.parametrize("name", sorted(_SLICES))
def test_the_panel_reproduces_its_pinned_values(name: str) -> None:
    expected = _REFERENCE["slices"][name]
    image = _SLICES[name]
    # a changed input (numpy / scipy upgrade) is not a changed panel: say which it is
    assert fingerprint(image) == pytest.approx(expected["fingerprint"], rel=1e-9), "input moved"
    values = compute_iqms(image)
    assert tuple(values) == IQM_NAMES
    wrong = {
        k: (values[k], v)
        for k, v in expected["iqms"].items()
        if not np.isclose(values[k], v, rtol=REL, atol=ABS)
    }
    assert not wrong, f"(got, pinned): {wrong}"
