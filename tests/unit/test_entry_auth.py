"""The entry points' caller check with the environment Terraform gives them, before any I/O.

Each test builds the real functions-framework app from the function's source
with a fresh composition root, so the wiring (which header, which query
parameter, which status) is what runs in Cloud Run. Requests that pass the
check hit paths that need no Google client: an unreadable send task is
finished with 200, an outbound request is refused before Firestore.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Iterator

import functions_framework
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared import bootstrap, config

SIGNATURE_REMOVED = "SIGNATURE_REMOVED_BY_GOOGLE"  # what Cloud Run writes in place of the signature
SENDER = "https://wa-sender-123456789012.us-central1.run.app"
OUTBOUND = "https://wa-outbound-123456789012.us-central1.run.app"
TASKS_SA = "wa-tasks-invoker@demo.iam.gserviceaccount.com"
KEY = "the-caller-key"


def _clear_root() -> None:
    config.get_settings.cache_clear()
    for value in vars(bootstrap).values():
        if callable(getattr(value, "cache_clear", None)):
            value.cache_clear()


@pytest.fixture
def app_for(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    def build(source: str, target: str, env: dict[str, str]) -> Any:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        _clear_root()
        return functions_framework.create_app(target=target, source=source).test_client()

    yield build
    _clear_root()
    root.handlers[:] = handlers  # the composition root installs its JSON log handler
    root.setLevel(level)


def _common(**extra: str) -> dict[str, str]:
    return {
        "GOOGLE_CLOUD_PROJECT": "demo",
        "SECRET_SOURCE": "env",
        "ADDRESS_HASH_KEY": "an-address-hash-key-of-enough-bytes",
        "TWILIO_AUTH_TOKEN": "twilio-token",
        "CALLER_KEY": KEY,
        **extra,
    }


def _token(audience: str, email: str = TASKS_SA) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {
        "iss": "https://accounts.google.com", "aud": audience, "azp": "1", "sub": "1",
        "email": email, "email_verified": True, "iat": now, "exp": now + 3600,
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k"})


def _as_cloud_run_forwards(token: str) -> str:
    header, payload, _ = token.split(".")
    return f"Bearer {header}.{payload}.{SIGNATURE_REMOVED}"


def _sender(app_for: Any) -> Any:
    return app_for("sender_fn/main.py", "send", _common(
        AUTH_AUDIENCE=SENDER, AUTH_ALLOWED_SERVICE_ACCOUNTS=TASKS_SA, CALLER_PROOF="caller-key",
        SENDER_URL=SENDER, TASKS_SERVICE_ACCOUNT=TASKS_SA,
    ))


def test_sender_serves_a_task_as_cloud_run_forwards_it(app_for: Any) -> None:
    """Issue 16, item 1: the token reaches the container without its signature; the key proves the rest."""
    client = _sender(app_for)
    response = client.post("/", data=b"not a task", headers={
        "Authorization": _as_cloud_run_forwards(_token(SENDER)), "X-Caller-Key": KEY,
    })
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_data(as_text=True) == "unreadable task dropped\n"


def test_sender_refuses_a_forwarded_token_sent_by_someone_without_the_key(
    app_for: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    client = _sender(app_for)
    response = client.post("/", data=b"{}", headers={"Authorization": _as_cloud_run_forwards(_token(SENDER))})
    assert response.status_code == 403
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [e["reason"] for e in logged if e.get("event") == "caller_rejected"] == ["request carries no caller key"]


def test_the_push_endpoint_query_carries_the_key(app_for: Any) -> None:
    """Pub/Sub push cannot send headers: the key is a query parameter of the push endpoint."""
    client = _sender(app_for)
    headers = {"Authorization": _as_cloud_run_forwards(_token(SENDER))}
    assert client.post(f"/?caller_key={KEY}", data=b"x", headers=headers).status_code == 200
    assert client.post("/?caller_key=guess", data=b"x", headers=headers).status_code == 403


def test_outbound_refuses_with_403_when_nobody_is_allowed(app_for: Any) -> None:
    """Issue 16, item 7: outbound_allowed_service_accounts is empty by default; that is a refusal, not a 500."""
    client = app_for("webhook_fn/main.py", "outbound", _common(
        AUTH_AUDIENCE=OUTBOUND, AUTH_ALLOWED_SERVICE_ACCOUNTS="", CALLER_PROOF="signed-token",
        TASKS_SERVICE_ACCOUNT=TASKS_SA,
    ))
    response = client.post("/", json={"to": "whatsapp:+34600111222", "body": "hi"},
                           headers={"Authorization": f"Bearer {_token(OUTBOUND)}"})
    assert response.status_code == 403
    assert "no caller is allowed" in response.get_data(as_text=True)
