"""The client's HTTP calls against servers that misbehave at the socket level: one that never
answers, one that is not there."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from amaqc_client.api import ApiError, Client, SeriesState


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A socket that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_an_upload_without_an_answer_is_a_transient_error_that_says_so(
    silent_server: str, tmp_path: Path
) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    late = pytest.raises(ApiError, match="did not answer in time")
    with Client(silent_server, "amaqc_k", upload_timeout=0.5) as client, late as caught:
        client.upload([image], kinds=["png"])
    assert caught.value.transient and caught.value.status is None


def test_no_server_is_a_transient_error_naming_the_url() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refused
        with Client(url, "amaqc_k") as client, pytest.raises(ApiError) as caught:
            client.series(1)
    assert caught.value.transient and f"cannot reach the amaqc server at {url}" in str(caught.value)


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://host"])
def test_a_url_without_http_is_refused_at_once(url: str) -> None:
    with pytest.raises(ApiError, match="expected http://host:port") as caught:
        Client(url, "amaqc_k")
    assert not caught.value.transient


def test_a_done_series_with_unscored_slices_is_not_finished() -> None:
    # a worker that scored the first part of a series sent in parts writes "done" for it
    assert not SeriesState(1, "done", label="clean", unscored=2).finished
    assert SeriesState(1, "done", label="clean").finished
    assert SeriesState(1, "failed", error="bad", unscored=2).finished
    assert not SeriesState(1, "queued").finished
