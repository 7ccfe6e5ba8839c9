"""The admin pages without a browser (real SQLite, the local broker, no worker unless a test
runs a job in-process): who may see them, the job form's checks and messages, activate and
roll back through their confirmation pages, cancel, and a trained version's page."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.db import repo
from app.db.models import TrainingJob
from app.db.session import session_scope
from app.model_versions import register_checkpoint
from app.web.admin_views import fraction_done
from app.worker.training import CURVE_POINTS, Reporter, run_training_job
from tests.app.conftest import auth, new_key, sign_in
from tests.utils.datasets import tiny_dataset
from tests.utils.service import tiny_checkpoint

TINY_FORM = {"epochs": "1", "samples_per_epoch": "20", "batch_size": "10", "patch": "64"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """conftest's settings, with a job's data loading in its own process (tiny data)."""
    return settings.model_copy(update={"training_loader_workers": 0})


@pytest.fixture
def admin_csrf(web: TestClient, settings: Settings) -> str:
    """``web`` signed in as an admin named Ada; returns the page's CSRF token."""
    return sign_in(web, new_key(settings, "admin", "Ada"))


@pytest.fixture
def dataset(settings: Settings) -> str:
    tiny_dataset(settings.data_dir / "datasets" / "tiny", {"train": 4, "val": 2}, size=64)
    return "datasets/tiny"


def _admin_routes() -> list[tuple[str, str]]:
    from app.web.admin import router

    routes = [
        (method, route.path.replace("{version_id}", "1").replace("{job_id}", "1"))
        for route in router.routes
        for method in sorted(getattr(route, "methods", ()))
        if method != "HEAD"
    ]
    assert len(routes) >= 10, routes
    return routes


def _active(settings: Settings) -> str:
    with session_scope(settings.database_url) as session:
        version = repo.active_model_version(session)
        assert version is not None
        return version.name


def _alert(page: str) -> str:
    found = re.search(r'<p class="error" role="alert"[^>]*>(.*?)</p>', page, re.S)
    assert found, "no error shown"
    return html.unescape(found.group(1))


# --- who may see them ------------------------------------------------------------------


def test_every_admin_page_and_action_is_403_for_a_radiographer(
    web: TestClient, settings: Settings
) -> None:
    csrf = sign_in(web, new_key(settings, "radiographer"))
    for method, path in _admin_routes():
        r = web.request(method, path, data={"csrf": csrf} if method == "POST" else None)
        assert r.status_code == 403, (method, path, r.status_code)
        assert "this page is for admin keys" in r.text, (method, path)


def test_admin_pages_send_the_signed_out_to_the_sign_in_page(web: TestClient) -> None:
    for method, path in _admin_routes():
        r = web.request(method, path, follow_redirects=False)
        assert (r.status_code, r.headers.get("location")) == (303, "/login"), (method, path)


def test_admin_actions_need_the_pages_csrf_token(
    web: TestClient, settings: Settings, admin_csrf: str
) -> None:
    for method, path in _admin_routes():
        if method == "POST":
            r = web.post(path, data={"csrf": "forged"})
            assert r.status_code == 403 and "CSRF token" in r.text, path


# --- model versions, activate, roll back -----------------------------------------------


def test_models_page_lists_versions_history_and_says_why_no_rollback(
    web: TestClient, settings: Settings, admin_csrf: str
) -> None:
    page = web.get("/admin").text
    assert _active(settings) in page and "resnet18" in page
    assert re.search(r'id="activation-1" class="kind-register', page)
    assert "nothing to roll back to" in html.unescape(page)
    r = web.get("/admin/rollback")
    assert r.status_code == 409 and "nothing to roll back to" in _alert(r.text)
    assert web.get("/admin/models/99").status_code == 404


def test_activate_and_roll_back_through_their_confirmation_pages(
    web: TestClient, settings: Settings, admin_csrf: str, tmp_path: Path
) -> None:
    first = _active(settings)
    with session_scope(settings.database_url) as session:
        other = register_checkpoint(
            session, tiny_checkpoint(tmp_path / "other.safetensors"), activate=False
        )
        other_id, other_name = other.id, other.name
    confirm = web.get(f"/admin/models/{other_id}/activate").text
    assert f"Activate {other_name}?" in confirm and f"instead of <b>{first}</b>" in confirm
    assert _active(settings) == first  # looking at the confirmation changes nothing

    r = web.post(f"/admin/models/{other_id}/activate", data={"csrf": admin_csrf})
    assert r.status_code == 200 and r.url.path == "/admin"  # followed the 303
    assert _active(settings) == other_name
    history = r.text.split('id="history"', 1)[1]
    assert re.search(r'class="kind-explicit">\s*<td>[^<]*</td>\s*<td>explicit', history)
    assert "Ada" in history

    confirm = web.get("/admin/rollback").text
    assert f"Roll back to {first}?" in confirm and f"<b>{other_name}</b> is replaced" in confirm
    r = web.post("/admin/rollback", data={"csrf": admin_csrf})
    assert r.status_code == 200 and _active(settings) == first
    history = r.text.split('id="history"', 1)[1]
    assert "kind-rollback" in history and "kind-explicit undone" in history


def test_a_changed_checkpoint_is_not_activated_and_the_page_says_why(
    web: TestClient, settings: Settings, admin_csrf: str, tmp_path: Path
) -> None:
    first = _active(settings)
    path = tiny_checkpoint(tmp_path / "other.safetensors")
    with session_scope(settings.database_url) as session:
        other_id = register_checkpoint(session, path, activate=False).id
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    r = web.post(f"/admin/models/{other_id}/activate", data={"csrf": admin_csrf})
    assert r.status_code == 409 and "SHA-256 differs" in _alert(r.text)
    assert _active(settings) == first


# --- the training-job form -------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"source": "dataset", "path": "../elsewhere"}, 422),
        ({"source": "dataset", "path": "datasets/nope"}, 422),
        ({"source": "reviews"}, 422),
        ({"source": "dataset", "path": "datasets/tiny", "epochs": "many"}, 422),
        ({"source": "dataset", "path": "datasets/tiny", "epochs": "0"}, 422),
        ({"source": "dataset", "path": "datasets/tiny", "arch": "resnet18_se"}, 422),
        ({"source": "dataset", "path": "datasets/tiny", "patch": "128", "size": "64"}, 422),
        (
            {
                "source": "dataset",
                "path": "datasets/tiny",
                "from_scratch": "1",
                "base_version_id": "1",
            },
            422,
        ),
        ({"source": "dataset", "path": "datasets/tiny", "base_version_id": "42"}, 422),
    ],
)
def test_the_job_form_shows_the_apis_message_and_keeps_the_values(
    web: TestClient,
    settings: Settings,
    admin_csrf: str,
    dataset: str,
    fields: dict[str, str],
    code: int,
) -> None:
    r = web.post("/admin/jobs", data={"csrf": admin_csrf, **fields})
    assert r.status_code == code, r.text
    shown = _alert(r.text)
    # the API answers the same request with the same status and message
    from app.web.admin_views import job_request

    api = web.post(
        "/api/v1/training-jobs",
        json=job_request(fields),
        headers=auth(new_key(settings, "admin")),
    )
    assert (api.status_code, api.json()["detail"]) == (code, shown)
    if "path" in fields:
        assert f'value="{html.escape(fields["path"])}"' in r.text
    with session_scope(settings.database_url) as session:
        assert session.query(TrainingJob).count() == 0


def test_more_settings_open_when_one_of_them_was_given(
    web: TestClient, admin_csrf: str, dataset: str
) -> None:
    assert "<details >" in web.get("/admin/jobs/new").text  # nothing set: folded away
    form = {"csrf": admin_csrf, "source": "dataset", "path": dataset, "guided_crops": "2"}
    r = web.post("/admin/jobs", data=form)
    assert r.status_code == 422 and "guided_crops" in _alert(r.text)
    assert "<details open>" in r.text and 'name="guided_crops" id="guided_crops"' in r.text
    assert 'value="2"' in r.text  # the value is kept where the user can see and mend it


def test_the_job_form_suggests_dataset_folders_and_lists_versions(
    web: TestClient, settings: Settings, admin_csrf: str, dataset: str
) -> None:
    page = web.get("/admin/jobs/new").text
    assert '<option value="datasets/tiny">' in page
    assert '<option value="cosine" >' in page and '<option value="last" >' in page
    assert f"{_active(settings)} (#1, resnet18) · active" in page


def test_a_job_started_from_the_form_is_queued_and_can_be_cancelled(
    web: TestClient, settings: Settings, admin_csrf: str, dataset: str
) -> None:
    form = {"csrf": admin_csrf, "source": "dataset", "path": dataset, "seed": "7", **TINY_FORM}
    form |= {"lr_schedule": "cosine", "keep": "last", "guided_crops": "0.5", "patch_floor": "0.05"}
    r = web.post("/admin/jobs", data={**form, "auto_activate": "1"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    job_id = int(r.headers["location"].rsplit("/", 1)[1])
    with session_scope(settings.database_url) as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None and job.status == "queued"
        assert job.source == {"kind": "dataset", "path": "datasets/tiny"}
        assert (job.params["epochs"], job.params["seed"], job.params["patch"]) == (1, 7, 64)
        assert job.params["auto_activate"] is True and job.base_version_id == 1
        assert (job.params["lr_schedule"], job.params["keep"]) == ("cosine", "last")
        assert job.params["guided_crops"] == 0.5 and job.params["patch_floor"] == 0.05
    page = web.get(f"/admin/jobs/{job_id}").text
    assert 'class="status status-queued"' in page and 'id="cancel-form"' in page
    assert re.search(r'<form[^>]*id="cancel-form"[^>]*>', page).group(0).count("hidden") == 0  # type: ignore[union-attr]

    r = web.post(f"/admin/jobs/{job_id}/cancel", data={"csrf": admin_csrf})
    assert r.status_code == 200 and 'class="status status-cancelled"' in r.text
    assert "cancelled before it started" in r.text
    r = web.post(f"/admin/jobs/{job_id}/cancel", data={"csrf": admin_csrf})
    assert r.status_code == 409 and "already cancelled" in _alert(r.text)
    assert f'id="job-{job_id}"' in web.get("/admin/jobs").text


# --- a trained version -----------------------------------------------------------------


@pytest.mark.slow
def test_a_trained_versions_page_shows_its_numbers_beside_the_active_and_its_roc(
    web: TestClient, settings: Settings, admin_csrf: str, dataset: str
) -> None:
    form = {"csrf": admin_csrf, "source": "dataset", "path": dataset, **TINY_FORM}
    job_id = int(
        web.post("/admin/jobs", data=form, follow_redirects=False)
        .headers["location"]
        .split("/")[-1]
    )
    assert run_training_job(settings, job_id) == "succeeded"
    page = web.get(f"/admin/jobs/{job_id}").text
    assert 'class="status status-succeeded"' in page and 'value="100"' in page
    version_id = int(re.search(r'href="/admin/models/(\d+)">version', page).group(1))  # type: ignore[union-attr]
    with session_scope(settings.database_url) as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None
        curve, epochs = job.progress["loss_curve"], job.progress["epoch_history"]
    assert [p[0] for p in curve] == [0.5, 1.0] and epochs[0]["epoch"] == 1  # 2 steps, 1 epoch

    page = web.get(f"/admin/models/{version_id}").text
    comparison = page.split('id="comparison"', 1)[1].split("</table>", 1)[0]
    assert f"job-{job_id}" in comparison and _active(settings) in comparison
    assert re.search(
        r"<td>F1</td><td class=\"num\">\d\.\d{3}</td><td class=\"num\">\d\.\d{3}", comparison
    )
    assert "4 slices (2 clean" in page  # the fixed validation set
    roc = re.search(r'<img class="roc" id="roc" src="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    r = web.get(roc)  # the session cookie is enough to read it
    assert r.status_code == 200 and r.content.startswith(b"\x89PNG")


# --- progress figures ------------------------------------------------------------------


def test_fraction_done_counts_steps_across_epochs() -> None:
    assert fraction_done("queued", {"epochs": 4}) == 0.0
    assert fraction_done("running", {"epochs": 4, "epoch": 1, "step": 1, "steps": 2}) == 1 / 8
    # after an epoch's last step the epoch counts whole
    assert fraction_done("running", {"epochs": 4, "epoch": 2, "step": 2, "steps": 2}) == 0.5
    assert fraction_done("succeeded", {"epochs": 4, "epoch": 2, "step": 2, "steps": 2}) == 1.0


def test_the_loss_curve_stays_short_however_long_the_job(settings: Settings) -> None:
    reporter = Reporter(settings, 1, {"epochs": 50})
    for epoch in range(50):
        for step in range(1, 101):
            reporter._curve_point(epoch, step, 100, 1.0 / (1 + epoch))
    curve = reporter.progress["loss_curve"]
    assert len(curve) <= CURVE_POINTS and len(curve) > CURVE_POINTS // 4
    xs = [p[0] for p in curve]
    assert xs == sorted(xs) and xs[-1] == 50.0 and xs[0] < 1.0


def test_shadow_from_the_model_page_and_its_report_table(
    web: TestClient, settings: Settings, admin_csrf: str, tmp_path: Path
) -> None:
    from app.worker.inference import analyse
    from tests.utils.service import series_files

    path = tiny_checkpoint(tmp_path / "candidate.safetensors")
    with session_scope(settings.database_url) as session:
        candidate = register_checkpoint(session, path, activate=False).id
        active_id = repo.active_model_version(session).id  # type: ignore[union-attr]
    page = web.get(f"/admin/models/{candidate}").text
    assert 'id="shadow">Shadow</button>' in page and "shadow-report" not in page
    r = web.post(
        f"/admin/models/{candidate}/shadow", data={"csrf": admin_csrf}, follow_redirects=False
    )
    assert (r.status_code, r.headers["location"]) == (303, f"/admin/models/{candidate}")
    assert 'id="shadow-badge"' in web.get(f"/admin/models/{candidate}").text

    scanner = auth(new_key(settings, "scanner"))
    sid = web.post("/api/v1/series", files=series_files(2), headers=scanner).json()["series_id"]
    assert analyse(settings, sid) == "done"
    page = web.get(f"/admin/models/{candidate}").text
    report = web.get(f"/api/v1/models/{candidate}/shadow-report", headers=scanner)
    assert report.status_code == 403  # the API report is for admin keys
    table = page.split('id="shadow-report"', 1)[1]
    assert f'<a href="/series/{sid}">{sid}</a>' in table and "series <b>1</b>" in table

    r = web.post(f"/admin/models/{active_id}/shadow", data={"csrf": admin_csrf})
    assert r.status_code == 409 and "is the active version" in _alert(r.text)
    web.post(f"/admin/models/{candidate}/shadow/stop", data={"csrf": admin_csrf})
    page = web.get(f"/admin/models/{candidate}").text
    assert 'id="shadow">Shadow</button>' in page and 'id="shadow-badge"' not in page
