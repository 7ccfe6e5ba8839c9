"""The viewer's figures in plain words: which slice the series probability is, the flagged
slices by InstanceNumber, a tooltip on each figure; the API says what ``flagged_slices`` are."""

from __future__ import annotations

import html
import json

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.web.verdict_words import explain
from tests.app.conftest import new_key, set_threshold, sign_in
from tests.utils.service import scored_series


def _slices(probabilities: list[float | None], numbers: list[int | None]) -> list[dict]:
    return [
        {"id": 100 + i, "name": str(n if n is not None else i + 1), "probability": p}
        for i, (p, n) in enumerate(zip(probabilities, numbers, strict=True))
    ]


def test_rule_any_names_the_highest_slice() -> None:
    slices = _slices([0.2, 0.91, 0.5, None], [15, 17, 16, 18])
    verdict = {"rule": "any", "flagged": [101, 102], "probability": 0.91}
    words = explain(verdict, slices)
    assert words["probability_words"] == "series probability = highest slice (slice 17: 0.91)"
    assert [(f["name"], f["index"]) for f in words["flagged"]] == [("17", 1), ("16", 2)]
    assert words["rule_tip"].startswith("Rule 'any'")


def test_rule_count_names_the_kth_highest_slice() -> None:
    slices = _slices([0.2, 0.91, 0.88, 0.95], [None, None, None, None])
    words = explain({"rule": "count:3", "flagged": [101, 102, 103]}, slices)
    assert words["probability_words"] == (
        "series probability = 3rd-highest slice (rule count:3 needs 3 flagged slices) "
        "(slice 3: 0.88)"
    )
    assert words["decider"] == {"index": 2, "name": "3", "probability": 0.88}


@pytest.mark.parametrize(("n", "word"), [(2, "2nd"), (11, "11th"), (12, "12th"), (22, "22nd")])
def test_ordinals_read_as_english(n: int, word: str) -> None:
    slices = _slices([1.0 - i / 100 for i in range(n)], [None] * n)
    text = explain({"rule": f"count:{n}", "flagged": []}, slices)["probability_words"]
    assert f"= {word}-highest slice" in text


def test_the_viewer_says_what_its_numbers_are(web: TestClient, settings: Settings) -> None:
    set_threshold(settings, 0.0)
    series_id, _ = scored_series(
        web, settings, {"Authorization": f"Bearer {new_key(settings, 'scanner')}"}, n=3
    )
    sign_in(web, new_key(settings, "radiographer"))
    page = web.get(f"/series/{series_id}").text
    data = json.loads(page.split('id="series-data">', 1)[1].split("</script>")[0])
    top = max(data["slices"], key=lambda s: s["probability"])
    assert (
        f"series probability = highest slice (slice {top['number']}: {top['probability']:.2f})"
        in page
    )
    buttons = [
        s.split("</button>")[0].rsplit(">", 1)[1] for s in page.split('class="slice-link"')[1:]
    ]
    assert buttons == [str(s["number"]) for s in data["slices"]]  # InstanceNumbers 1, 2, 3
    text = html.unescape(page)
    assert 'title="A slice at or above this probability is flagged.' in text
    assert "Rule 'any': one flagged slice makes the series an artifact." in text


def test_the_api_says_flagged_slices_are_instance_ids(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    set_threshold(settings, 0.0)
    series_id, ids = scored_series(client, settings, scanner, n=2)
    verdict = client.get(f"/api/v1/series/{series_id}", headers=scanner).json()["verdict"]
    assert verdict["flagged_slices"] == ids and verdict["flagged_instance_numbers"] == [1, 2]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["VerdictPublic"]
    assert (
        "Instance ids (not slice numbers)" in schema["properties"]["flagged_slices"]["description"]
    )
    assert "highest slice probability" in schema["properties"]["probability"]["description"]
