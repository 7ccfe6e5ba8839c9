"""What the schemathesis run (test_openapi_fuzz.py) found the API answering off its schema or
with a 500, one case each: the 422 body as documented, /metrics' content type, an id past
64-bit integers."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_the_schema_documents_a_422_as_one_sentence(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["HTTPValidationError"]
    assert schema["properties"]["detail"]["type"] == "string"
    r = client.get("/api/v1/series?since=AAA", headers=_admin(client))
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)


def test_metrics_are_documented_as_text(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_an_id_past_64_bit_integers_is_a_422_not_a_500(client: TestClient) -> None:
    r = client.get(f"/api/v1/series/{2**63}", headers=_admin(client))
    assert r.status_code == 422 and "out of range" in r.json()["detail"]


def _admin(client: TestClient) -> dict[str, str]:
    from app.config import get_settings
    from tests.app.conftest import auth, new_key

    settings = client.app.dependency_overrides[get_settings]()  # type: ignore[attr-defined]
    return auth(new_key(settings, "admin", "contract"))
