"""The admin pages in a real browser (Debian's Chromium driven by Playwright) against the API
served by uvicorn and a real training worker (``--queues training``): SQLite + the local
broker, and PostgreSQL + Redis.

One walk-through per backend: sign in as an admin, the job form shows the API's refusal of a
path outside the data dir, a tiny job started from the form runs while its page's progress bar
and loss curve follow it live, the version it registered is activated after the confirmation
page, the activation history shows it, and a rollback restores the first version.
(The README's admin screenshots come from ``tests/app/test_screenshots.py``: the served model
and a job on real slices.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from app.config import Settings, get_settings
from app.db import repo
from app.db.session import session_scope
from tests.app.conftest import backend_settings, new_key
from tests.utils.browser import chromium_page, sideways_overflow
from tests.utils.datasets import tiny_dataset
from tests.utils.server import serve
from tests.utils.service import start_worker, stop_process, worker_log

#: a Redis database of its own (conftest's stack uses 13, the retraining e2e tests 11)
REDIS_URL = "redis://127.0.0.1:6379/12"
WAIT_MS = 180_000  # a job on a cold worker of a busy 2-core machine
#: records every value the progress bar shows, with the job status beside it; installed before
#: the page's own (deferred) script runs, so the first value it renders is seen too
RECORD_BAR = """
document.addEventListener("readystatechange", () => {
  const bar = document.getElementById("bar");
  if (document.readyState !== "interactive" || !bar) return;
  window.__bar = [];
  const note = () => window.__bar.push([Number(bar.value), document.body.dataset.jobStatus || ""]);
  new MutationObserver(note).observe(bar, { attributes: true, attributeFilter: ["value"] });
  new MutationObserver(note).observe(document.body, { attributes: true });
});
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def admin_url(
    request: pytest.FixtureRequest, tmp_path: Path, checkpoint: Path
) -> Iterator[tuple[Settings, str]]:
    """The API on loopback with a training worker, the tiny checkpoint active and a tiny
    dataset under ``<data dir>/datasets/tiny``."""
    from app.api.main import app

    data = tmp_path / "data"
    with ExitStack() as cleanup:
        settings = cleanup.enter_context(
            backend_settings(request.param, data, checkpoint, redis_url=REDIS_URL)
        )
        tiny_dataset(data / "datasets" / "tiny", {"train": 4, "val": 2}, size=64)
        worker = start_worker(settings, "training", {"AMAQC_TRAINING_LOADER_WORKERS": "0"})
        cleanup.callback(stop_process, worker)
        app.dependency_overrides[get_settings] = lambda: settings
        cleanup.callback(app.dependency_overrides.clear)
        yield settings, cleanup.enter_context(serve(app))


def _active_name(settings: Settings) -> str:
    with session_scope(settings.database_url) as session:
        version = repo.active_model_version(session)
        assert version is not None
        return version.name


@pytest.mark.slow
def test_admin_trains_activates_and_rolls_back_in_the_browser(
    admin_url: tuple[Settings, str],
) -> None:
    from playwright.sync_api import expect

    settings, base_url = admin_url
    first = _active_name(settings)
    admin = new_key(settings, "admin", "Ada Admin")
    with chromium_page(base_url, WAIT_MS) as page:
        page.context.add_init_script(RECORD_BAR)
        page.goto("/login")
        page.fill("#api_key", admin)
        page.click("button[type=submit]")
        page.click("header a[href='/admin']")
        expect(page.locator("#versions tbody tr")).to_have_count(1)
        expect(page.locator("#versions tr.active")).to_contain_text(first)
        expect(page.locator("#no-rollback")).to_contain_text("nothing to roll back to")

        # the form shows the API's refusal inline and keeps what was typed
        page.click("nav.subnav >> text=Start a training job")
        page.fill("#path", "../outside")
        page.click("#start")
        expect(page.locator("#form-error")).to_contain_text("'..'")
        expect(page.locator("#path")).to_have_value("../outside")
        assert sideways_overflow(page, 820, 1180) <= 0  # a tablet, portrait
        page.set_viewport_size({"width": 1280, "height": 800})

        # a tiny job: 3 epochs of 4 steps on 64 px slices
        page.fill("#path", "datasets/tiny")
        page.fill("#epochs", "3")
        page.fill("#seed", "3")
        page.click("summary")
        page.fill("#samples_per_epoch", "40")
        page.fill("#batch_size", "10")
        page.fill("#patch", "64")
        page.fill("#size", "64")
        page.click("#start")
        page.wait_for_url("**/admin/jobs/*")
        job_id = int(page.url.rsplit("/", 1)[1])
        expect(page.locator("body")).to_have_attribute(
            "data-job-status", "succeeded", timeout=WAIT_MS
        )
        expect(page.locator("#bar")).to_have_attribute("value", "100")
        seen = page.evaluate("window.__bar")
        values = [v for v, _ in seen]
        assert values == sorted(values), f"the bar went backwards: {seen}"
        assert any(s == "running" and v < 100 for v, s in seen), f"never seen running: {seen}"
        assert int(page.locator("#loss-curve").get_attribute("data-points") or 0) == 12
        expect(page.locator("#loss-curve circle.f1")).to_have_count(3)
        expect(page.locator("#epoch")).to_have_text("3 of 3")
        expect(page.locator("#cancel-form")).to_be_hidden()
        expect(page.locator("#log")).to_contain_text("registered model version")
        assert sideways_overflow(page, 820, 1180) <= 0  # a tablet, portrait
        page.set_viewport_size({"width": 1280, "height": 800})

        # the registered version: its ROC curve, then activate it after the confirmation
        page.click("#result-link")
        expect(page.locator("h1")).to_contain_text(f"job-{job_id}")
        page.wait_for_function("() => document.getElementById('roc').naturalWidth > 0")
        expect(page.locator("#comparison")).to_contain_text(first)
        page.click("#activate")
        expect(page.locator("h1")).to_have_text(f"Activate job-{job_id}?")
        assert _active_name(settings) == first  # nothing changes before the confirmation
        page.click("#confirm")
        page.wait_for_url("**/admin")
        expect(page.locator("#versions tr.active")).to_contain_text(f"job-{job_id}")
        newest = page.locator("#history tbody tr").first
        expect(newest).to_contain_text("explicit")
        expect(newest).to_contain_text("Ada Admin")
        assert _active_name(settings) == f"job-{job_id}"
        assert sideways_overflow(page, 820, 1180) <= 0
        page.set_viewport_size({"width": 1280, "height": 800})

        # roll back, confirmed
        page.click("#rollback")
        expect(page.locator("h1")).to_have_text(f"Roll back to {first}?")
        page.click("#confirm")
        page.wait_for_url("**/admin")
        expect(page.locator("#versions tr.active")).to_contain_text(first)
        expect(page.locator("#history tbody tr").first).to_contain_text("rollback")
        expect(page.locator("#history tr.undone")).to_contain_text(f"job-{job_id}")
        assert _active_name(settings) == first, worker_log(settings, "training").read_text()
