from __future__ import annotations

from fastapi.testclient import TestClient

from app.config import Settings
from app.worker.inference import analyse
from tests.utils.service import series_files


def test_list_is_keyset_paginated_newest_first(client: TestClient, scanner: dict[str, str]) -> None:
    ids = [
        client.post("/api/v1/series", files=series_files(1, f"1.2.5.{n}"), headers=scanner).json()[
            "series_id"
        ]
        for n in range(3)
    ]
    first = client.get("/api/v1/series?limit=2", headers=scanner).json()
    assert [s["id"] for s in first["items"]] == ids[::-1][:2]
    rest = client.get(
        f"/api/v1/series?limit=2&cursor={first['next_cursor']}", headers=scanner
    ).json()
    assert [s["id"] for s in rest["items"]] == [ids[0]] and rest["next_cursor"] is None


def test_flagged_filter_returns_only_artifact_verdicts(
    client: TestClient, settings: Settings, scanner: dict[str, str]
) -> None:
    series_id = client.post("/api/v1/series", files=series_files(1), headers=scanner).json()[
        "series_id"
    ]
    analyse(settings, series_id)
    label = client.get(f"/api/v1/series/{series_id}", headers=scanner).json()["verdict"]["label"]
    flagged = client.get("/api/v1/series?flagged=true", headers=scanner).json()["items"]
    assert [s["id"] for s in flagged] == ([series_id] if label == "artifact" else [])


def test_instance_image_is_a_png(client: TestClient, scanner: dict[str, str]) -> None:
    series_id = client.post("/api/v1/series", files=series_files(1), headers=scanner).json()[
        "series_id"
    ]
    url = client.get(f"/api/v1/series/{series_id}", headers=scanner).json()["instances"][0][
        "image_url"
    ]
    r = client.get(url, headers=scanner)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"


def test_unknown_series_is_404_naming_it(client: TestClient, scanner: dict[str, str]) -> None:
    r = client.get("/api/v1/series/999", headers=scanner)
    assert r.status_code == 404 and r.json() == {"detail": "series 999 not found"}


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_database_broker_and_model(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"] == {
        "database": "ok",
        "model": "ok",
        "broker": "ok",
    }


def test_metrics_expose_requests_and_verdict_counts(client: TestClient) -> None:
    client.get("/healthz")
    text = client.get("/metrics").text
    assert 'amaqc_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert "amaqc_verdicts_total" in text and "amaqc_queue_depth" in text


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert "/api/v1/series" in client.get("/openapi.json").json()["paths"]
