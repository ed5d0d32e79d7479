"""shared.adapters.secret_manager without any I/O: env source, name resolution, caching against a fake client."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud.secretmanager_v1 import types as sm

from shared.adapters.secret_manager import (
    ACCESS_RETRY,
    ACCESS_TIMEOUT_SECONDS,
    EnvSecrets,
    SecretManagerSecrets,
    SecretUnavailable,
    build_secrets,
    crc32c,
    secret_version_name,
)
from shared.config import ConfigError, Settings

PROJECT = "unit-project"
VALUES = {
    f"projects/{PROJECT}/secrets/twilio-auth-token/versions/latest": "tw-token-value",
    f"projects/{PROJECT}/secrets/openai-api-key/versions/latest": "sk-openai-value",
}


class FakeClient:
    """Answers like SecretManagerServiceClient.access_secret_version, from a dict."""

    def __init__(self, values: dict[str, str], delay: float = 0.0, error: Exception | None = None) -> None:
        self.values = values
        self.delay = delay
        self.error = error
        self.calls: list[dict[str, Any]] = []
        self.corrupt = False

    def access_secret_version(
        self, request: dict[str, str], retry: Any = None, timeout: Any = None
    ) -> sm.AccessSecretVersionResponse:
        self.calls.append({"name": request["name"], "retry": retry, "timeout": timeout})
        if self.delay:
            time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        data = self.values[request["name"]].encode()
        checksum = crc32c(data) ^ (1 if self.corrupt else 0)
        return sm.AccessSecretVersionResponse(
            name=request["name"].replace("latest", "1"),
            payload=sm.SecretPayload(data=data, data_crc32c=checksum),
        )


class Factory:
    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.created = 0

    def __call__(self) -> FakeClient:
        self.created += 1
        return self.client


def cloud_settings(**overrides: Any) -> Settings:
    return Settings(project_id=PROJECT, secret_source="secretmanager", **overrides)


def test_env_source_returns_values_from_settings() -> None:
    settings = Settings(env_secrets={"TWILIO_AUTH_TOKEN": "tw-local", "OPENAI_API_KEY": "sk-local"})
    secrets = build_secrets(settings)
    assert isinstance(secrets, EnvSecrets)
    assert secrets.twilio_auth_token() == "tw-local"
    assert secrets.openai_api_key() == "sk-local"


def test_env_source_names_the_missing_variable_without_leaking_others() -> None:
    secrets = build_secrets(Settings(env_secrets={"OPENAI_API_KEY": "sk-do-not-print"}))
    with pytest.raises(SecretUnavailable) as err:
        secrets.twilio_auth_token()
    message = str(err.value)
    assert "TWILIO_AUTH_TOKEN is not set" in message
    assert "SECRET_SOURCE=env" in message
    assert "sk-do-not-print" not in message


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("openai-api-key", f"projects/{PROJECT}/secrets/openai-api-key/versions/latest"),
        ("projects/other/secrets/openai-api-key", "projects/other/secrets/openai-api-key/versions/latest"),
        ("projects/other/secrets/openai-api-key/versions/7", "projects/other/secrets/openai-api-key/versions/7"),
        ("projects/other/secrets/k/versions/latest", "projects/other/secrets/k/versions/latest"),
    ],
)
def test_secret_references_resolve_to_version_names(reference: str, expected: str) -> None:
    assert secret_version_name(reference, PROJECT) == expected


@pytest.mark.parametrize(
    "reference",
    ["", "has space", "projects/p/secrets/s/versions/0", "projects/p/secrets/s/versions/", "secrets/s", "a/b"],
)
def test_malformed_secret_references_fail_at_build_time(reference: str) -> None:
    with pytest.raises(ConfigError):
        build_secrets(cloud_settings(openai_api_key_secret=reference), client_factory=Factory(FakeClient({})))


def test_secret_manager_source_is_lazy_and_caches_each_secret_once() -> None:
    factory = Factory(FakeClient(VALUES))
    secrets = build_secrets(cloud_settings(), client_factory=factory)
    assert isinstance(secrets, SecretManagerSecrets)
    assert factory.created == 0, "no client before the first secret is needed"

    assert [secrets.twilio_auth_token() for _ in range(20)] == ["tw-token-value"] * 20
    assert [secrets.openai_api_key() for _ in range(20)] == ["sk-openai-value"] * 20

    assert factory.created == 1
    assert secrets.access_count == 2
    assert [c["name"] for c in factory.client.calls] == list(VALUES)
    assert all(c["retry"] is ACCESS_RETRY and c["timeout"] == ACCESS_TIMEOUT_SECONDS for c in factory.client.calls)


def test_concurrent_first_use_makes_a_single_call() -> None:
    factory = Factory(FakeClient(VALUES, delay=0.05))
    secrets = build_secrets(cloud_settings(), client_factory=factory)
    results: list[str] = []
    lock = threading.Lock()

    def read() -> None:
        value = secrets.openai_api_key()
        with lock:
            results.append(value)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert results == ["sk-openai-value"] * 8
    assert len(factory.client.calls) == 1
    assert factory.created == 1


@pytest.mark.parametrize(
    "error", [gexc.NotFound("gone"), gexc.PermissionDenied("no"), gexc.FailedPrecondition("disabled")]
)
def test_permanent_errors_name_the_resource_and_are_not_cached(error: Exception) -> None:
    client = FakeClient(VALUES, error=error)
    secrets = build_secrets(cloud_settings(), client_factory=Factory(client))
    with pytest.raises(SecretUnavailable) as err:
        secrets.twilio_auth_token()
    assert f"projects/{PROJECT}/secrets/twilio-auth-token/versions/latest" in str(err.value)
    client.error = None
    assert secrets.twilio_auth_token() == "tw-token-value"
    assert len(client.calls) == 2


def test_transient_errors_surviving_the_client_retry_propagate_unchanged() -> None:
    secrets = build_secrets(
        cloud_settings(), client_factory=Factory(FakeClient(VALUES, error=gexc.ServiceUnavailable("busy")))
    )
    with pytest.raises(gexc.ServiceUnavailable):
        secrets.openai_api_key()


def test_access_retry_covers_transient_codes_only() -> None:
    assert ACCESS_RETRY._predicate(gexc.ServiceUnavailable("x"))
    assert ACCESS_RETRY._predicate(gexc.DeadlineExceeded("x"))
    assert not ACCESS_RETRY._predicate(gexc.NotFound("x"))
    assert not ACCESS_RETRY._predicate(gexc.PermissionDenied("x"))
    assert ACCESS_RETRY.timeout is not None and ACCESS_RETRY.timeout <= 30


def test_payload_is_trimmed_and_checked() -> None:
    client = FakeClient({**VALUES, f"projects/{PROJECT}/secrets/twilio-auth-token/versions/latest": "tw-token\n"})
    secrets = build_secrets(cloud_settings(), client_factory=Factory(client))
    assert secrets.twilio_auth_token() == "tw-token", (
        "a trailing newline from `echo | gcloud` must not break signatures"
    )

    corrupt = FakeClient(VALUES)
    corrupt.corrupt = True
    with pytest.raises(SecretUnavailable, match="CRC32C"):
        build_secrets(cloud_settings(), client_factory=Factory(corrupt)).openai_api_key()


def test_empty_payload_is_unavailable_without_echoing_anything() -> None:
    client = FakeClient({**VALUES, f"projects/{PROJECT}/secrets/openai-api-key/versions/latest": "  "})
    with pytest.raises(SecretUnavailable, match="is empty"):
        build_secrets(cloud_settings(), client_factory=Factory(client)).openai_api_key()


def test_crc32c_matches_the_standard_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
