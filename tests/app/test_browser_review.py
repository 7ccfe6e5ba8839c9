"""The review a reader can trust, in a real browser (Debian's Chromium driven by Playwright)
against the API served by uvicorn on SQLite; verdicts are written in-process (``analyse``),
so no worker is needed.

An unreviewed series has no label chosen; after an override a reload shows the override, and a
second save is a second review in the history; the form stays usable at 800 px.
``AMAQC_SHOTS=<dir>`` also saves screenshots there.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.config import Settings
from tests.app.conftest import set_threshold
from tests.utils.browser import sideways_overflow
from tests.utils.ui import base_url, page, scored, shot, sign_in

__all__ = ["base_url", "page"]  # fixtures


@pytest.mark.slow
def test_a_reload_after_an_override_shows_the_override(
    settings: Settings, base_url: str, page: Any
) -> None:
    from playwright.sync_api import expect

    set_threshold(settings, 0.0)  # every slice flagged: the model says "artifact"
    series_id = scored(settings, base_url, "1.2.22.1")
    sign_in(page, settings)
    page.goto(f"/series/{series_id}")

    # unreviewed: the model's verdict is shown, no label is chosen for the reader
    expect(page.locator("#review-state")).to_have_text("Not reviewed yet: choose a label.")
    expect(page.locator(".model-says .badge")).to_have_text("artifact")
    assert page.locator("input[name=label]:checked").count() == 0
    page.click("#submit-review")
    expect(page.locator("#review-status")).to_have_text("Choose artifact or clean.")

    # override to clean, one slice labelled clean with the keyboard, a comment
    page.locator("#stage").click()
    page.keyboard.press("c")
    expect(page.locator("#slice-label-count")).to_have_text("1 of 4 labelled")
    page.check("input[name=label][value=clean]")
    page.fill("#comment", "flow artefact, not motion")
    page.click("#submit-review")
    expect(page.locator("#review-status")).to_contain_text("Saved: overridden (clean)")
    expect(page.locator("#review-state")).to_contain_text(
        "Reviewed: clean — overrides the model (artifact)"
    )

    # reload: the saved review, not the model's verdict, fills the form
    page.reload()
    expect(page.locator("#review-state")).to_contain_text(
        "Reviewed: clean — overrides the model (artifact)"
    )
    expect(page.locator("#review-state")).to_contain_text("by Ann Radiographer")
    expect(page.locator("input[name=label][value=clean]")).to_be_checked()
    expect(page.locator("input[name=label][value=artifact]")).not_to_be_checked()
    expect(page.locator("#comment")).to_have_value("flow artefact, not motion")
    expect(page.locator("#slice-label-count")).to_have_text("1 of 4 labelled")
    expect(page.locator("#decision")).to_have_text("Overrides the model (artifact)")

    # saving again (a comment added) keeps the human decision and adds a review row
    page.fill("#comment", "flow artefact, not motion; checked twice")
    page.click("#submit-review")
    expect(page.locator("#history li")).to_have_count(2)
    r = page.request.get(f"/api/v1/series/{series_id}/reviews")
    items = r.json()["items"]
    assert [i["label"] for i in items] == ["clean", "clean"]
    assert items[0]["comment"].endswith("checked twice") and len(items[0]["slices"]) == 1
    shot(page, "viewer-reviewed.png")


@pytest.mark.slow
def test_the_review_form_stays_usable_at_800_px(
    settings: Settings, base_url: str, page: Any
) -> None:
    from playwright.sync_api import expect

    set_threshold(settings, 1.01)  # nothing flagged: the model says "clean"
    series_id = scored(settings, base_url, "1.2.22.2", n=2)
    sign_in(page, settings)
    page.set_viewport_size({"width": 800, "height": 900})
    page.goto(f"/series/{series_id}")
    assert sideways_overflow(page, 800, 900) <= 0
    form = page.locator("#review")
    form.scroll_into_view_if_needed()
    box = form.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 800
    page.check("input[name=label][value=artifact]")
    expect(page.locator("#decision")).to_have_text("Overrides the model (clean)")
    page.click("#submit-review")
    expect(page.locator("#review-state")).to_contain_text(
        "Reviewed: artifact — overrides the model (clean)"
    )


@pytest.mark.slow
def test_slice_labels_accepted_from_the_model_stay_marked_as_the_models(
    settings: Settings, base_url: str, page: Any
) -> None:
    from playwright.sync_api import expect

    set_threshold(settings, 0.0)  # the model calls every slice artifact
    series_id = scored(settings, base_url, "1.2.22.3", n=3)
    sign_in(page, settings)
    page.goto(f"/series/{series_id}")
    expect(page.locator("#model-confirm")).to_be_hidden()
    page.click("#use-model")
    expect(page.locator("#slice-label-count")).to_have_text(
        "3 of 3 labelled (3 accepted from the model)"
    )
    expect(page.locator("#model-confirm")).to_be_visible()
    page.locator("#stage").click()
    page.keyboard.press("End")
    page.keyboard.press("a")  # the reader's own call for the last slice
    expect(page.locator("#slice-label-count")).to_have_text(
        "3 of 3 labelled (2 accepted from the model)"
    )
    page.check("input[name=label][value=artifact]")
    page.click("#submit-review")
    expect(page.locator("#history li").first).to_contain_text(
        "2 accepted from the model (not checked: not used for retraining)"
    )
    review = page.request.get(f"/api/v1/series/{series_id}/reviews").json()["items"][0]
    assert sorted(review["slice_sources"].values()) == ["model", "model", "reader"]
    assert review["model_slices_confirmed"] is False

    page.reload()  # the provenance survives a reload; now the reader confirms
    expect(page.locator("#slice-label-count")).to_have_text(
        "3 of 3 labelled (2 accepted from the model)"
    )
    page.check("#model-confirmed")
    page.click("#submit-review")
    expect(page.locator("#history li")).to_have_count(2)
    review = page.request.get(f"/api/v1/series/{series_id}/reviews").json()["items"][0]
    assert review["model_slices_confirmed"] is True
