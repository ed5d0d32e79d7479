"""The local chat page refuses cross-site posts and foreign Host names (no sockets: Flask's test client)."""

from __future__ import annotations

import flask
import pytest

from devstack.local_only import guard

PORT = 8765


@pytest.fixture
def client() -> flask.testing.FlaskClient:
    app = flask.Flask("page")
    guard(app, lambda: PORT)
    app.add_url_rule("/api/ops/replay", "replay", lambda: "replayed", methods=["POST"])
    app.add_url_rule("/api/chat", "chat", lambda: "chat", methods=["GET"])
    return app.test_client()


def post(client, **headers: str):  # noqa: ANN001, ANN201
    host = headers.pop("Host", f"127.0.0.1:{PORT}")
    return client.post("/api/ops/replay", data={"x": "1"}, headers={"Host": host, **headers})


def test_a_form_posted_by_another_site_is_refused(client) -> None:  # noqa: ANN001
    assert post(client, Origin="https://evil.example").status_code == 403
    assert post(client, **{"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert post(client, Origin="null").status_code == 403


def test_a_rebound_host_name_is_refused_even_for_reads(client) -> None:  # noqa: ANN001
    assert client.get("/api/chat", headers={"Host": f"evil.example:{PORT}"}).status_code == 403
    assert post(client, Host=f"evil.example:{PORT}", Origin=f"http://evil.example:{PORT}").status_code == 403


def test_the_page_itself_and_local_tools_are_served(client) -> None:  # noqa: ANN001
    assert post(client, Origin=f"http://127.0.0.1:{PORT}", **{"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert post(client, Host=f"localhost:{PORT}", Origin=f"http://localhost:{PORT}").status_code == 200
    assert post(client).status_code == 200  # curl: no Origin
    assert client.get("/api/chat", headers={"Host": f"127.0.0.1:{PORT}"}).status_code == 200
