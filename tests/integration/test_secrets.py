"""shared.adapters.secret_manager through the real SecretManagerServiceClient against the local stand-in."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import grpc
import pytest
from google.api_core import exceptions as gexc
from google.cloud.secretmanager_v1 import SecretManagerServiceClient
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import SecretManagerServiceGrpcTransport

from devstack.secret_manager_stub import SecretManagerStub
from shared.adapters.secret_manager import SecretManagerSecrets, SecretUnavailable, build_secrets, crc32c
from shared.config import Settings
from tests.integration.helpers import start_module, stop_module

PROJECT = "test-project"


@pytest.fixture(scope="module")
def stub() -> Iterator[SecretManagerStub]:
    with SecretManagerStub(
        {"twilio-auth-token": "tw-secret", "openai-api-key": "sk-secret"}, project=PROJECT
    ) as server:
        yield server


@pytest.fixture(scope="module")
def client_factory(stub: SecretManagerStub) -> Iterator[Callable[[], SecretManagerServiceClient]]:
    clients: list[SecretManagerServiceClient] = []

    def factory() -> SecretManagerServiceClient:
        client = SecretManagerServiceClient(
            transport=SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel(stub.address))
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.transport.close()


def settings(**overrides: object) -> Settings:
    return Settings(project_id=PROJECT, secret_source="secretmanager", **overrides)


def fresh_secret(stub: SecretManagerStub, *values: str) -> str:
    """A secret of this test's own, so the module-wide stand-in is never shared state."""
    secret_id = f"s-{uuid.uuid4().hex[:10]}"
    for value in values:
        stub.set_secret(secret_id, value)
    return secret_id


def test_values_come_from_secret_manager_and_are_cached(
    stub: SecretManagerStub, client_factory: Callable[[], SecretManagerServiceClient]
) -> None:
    secrets = build_secrets(settings(), client_factory=client_factory)
    assert isinstance(secrets, SecretManagerSecrets)
    before = stub.access_count
    assert secrets.twilio_auth_token() == "tw-secret"
    assert stub.access_count == before + 1
    for _ in range(50):
        assert secrets.twilio_auth_token() == "tw-secret"
    assert stub.access_count == before + 1, "no Secret Manager call after warm-up"
    assert secrets.openai_api_key() == "sk-secret"
    assert secrets.openai_api_key() == "sk-secret"
    assert stub.access_count == before + 2
    assert secrets.access_count == 2


def test_unknown_secret_raises_secret_unavailable_naming_the_resource(
    stub: SecretManagerStub, client_factory: Callable[[], SecretManagerServiceClient]
) -> None:
    secrets = build_secrets(settings(openai_api_key_secret="does-not-exist"), client_factory=client_factory)
    with pytest.raises(SecretUnavailable) as err:
        secrets.openai_api_key()
    assert f"projects/{PROJECT}/secrets/does-not-exist/versions/latest" in str(err.value)
    assert "NOT_FOUND" in str(err.value)


def test_full_resource_names_and_pinned_versions(
    stub: SecretManagerStub, client_factory: Callable[[], SecretManagerServiceClient]
) -> None:
    secret_id = fresh_secret(stub, "sk-v1", "sk-v2")
    name = f"projects/{PROJECT}/secrets/{secret_id}"
    pinned = build_secrets(settings(openai_api_key_secret=f"{name}/versions/1"), client_factory=client_factory)
    latest = build_secrets(settings(openai_api_key_secret=f"{name}/versions/latest"), client_factory=client_factory)
    bare = build_secrets(settings(openai_api_key_secret=name), client_factory=client_factory)
    assert pinned.openai_api_key() == "sk-v1"
    assert latest.openai_api_key() == "sk-v2"
    assert bare.openai_api_key() == "sk-v2"
    missing = build_secrets(settings(openai_api_key_secret=f"{name}/versions/9"), client_factory=client_factory)
    with pytest.raises(SecretUnavailable, match="versions/9"):
        missing.openai_api_key()


def test_transient_errors_are_retried_by_the_client(
    stub: SecretManagerStub, client_factory: Callable[[], SecretManagerServiceClient]
) -> None:
    secret_id = fresh_secret(stub, "tw-after-outage")
    secrets = build_secrets(settings(twilio_auth_token_secret=secret_id), client_factory=client_factory)
    before = stub.access_count
    stub.fail_next(grpc.StatusCode.UNAVAILABLE, times=2)
    assert secrets.twilio_auth_token() == "tw-after-outage"
    assert stub.access_count == before + 3


def test_permission_denied_is_not_retried(
    stub: SecretManagerStub, client_factory: Callable[[], SecretManagerServiceClient]
) -> None:
    secret_id = fresh_secret(stub, "unused")
    secrets = build_secrets(settings(twilio_auth_token_secret=secret_id), client_factory=client_factory)
    before = stub.access_count
    stub.fail_next(grpc.StatusCode.PERMISSION_DENIED)
    with pytest.raises(SecretUnavailable, match="PERMISSION_DENIED"):
        secrets.twilio_auth_token()
    assert stub.access_count == before + 1
    assert secrets.twilio_auth_token() == "unused", "a failure is not cached"


def test_stub_serves_the_admin_calls_the_dev_stack_uses(
    stub: SecretManagerStub, client_factory: Callable[[], SecretManagerServiceClient]
) -> None:
    client = client_factory()
    secret_id = f"admin-{uuid.uuid4().hex[:8]}"
    created = client.create_secret(
        parent=f"projects/{PROJECT}", secret_id=secret_id, secret={"replication": {"automatic": {}}}
    )
    assert created.name == f"projects/{PROJECT}/secrets/{secret_id}"
    with pytest.raises(gexc.AlreadyExists):
        client.create_secret(parent=f"projects/{PROJECT}", secret_id=secret_id, secret={})
    version = client.add_secret_version(parent=created.name, payload={"data": b"v1", "data_crc32c": crc32c(b"v1")})
    assert version.name == f"{created.name}/versions/1"
    with pytest.raises(gexc.InvalidArgument):
        client.add_secret_version(parent=created.name, payload={"data": b"v2", "data_crc32c": 1})
    assert client.get_secret(name=created.name).name == created.name
    response = client.access_secret_version(name=f"{created.name}/versions/latest")
    assert response.name == f"{created.name}/versions/1"
    assert response.payload.data == b"v1"
    assert response.payload.data_crc32c == crc32c(b"v1")
    with pytest.raises(gexc.NotFound):
        client.get_secret(name=f"projects/{PROJECT}/secrets/nope-{uuid.uuid4().hex[:8]}")


def test_stub_runs_as_a_process_and_stops_on_sigterm() -> None:
    process, address = start_module(
        "devstack.secret_manager_stub",
        "--project",
        PROJECT,
        "--secret-env",
        "cli-secret=STUB_VALUE",
        env={"STUB_VALUE": "from-env"},
    )
    try:
        assert re.fullmatch(r"127\.0\.0\.1:\d+", address)
        client = SecretManagerServiceClient(
            transport=SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel(address))
        )
        try:
            response = client.access_secret_version(name=f"projects/{PROJECT}/secrets/cli-secret/versions/latest")
            assert response.payload.data == b"from-env"
        finally:
            client.transport.close()
    finally:
        code = stop_module(process)
    assert code == 0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_new_version_added_mid_run_is_picked_up_and_no_webhook_is_lost(
    stub: SecretManagerStub, client_factory: Callable[[], SecretManagerServiceClient]
) -> None:
    """Rotation with the real client: webhooks signed before, during and after all pass."""
    from twilio.request_validator import RequestValidator

    from shared.adapters.secret_manager import TWILIO_AUTH_TOKEN
    from shared.adapters.twilio_signature import RotatingValidator

    secret_id = fresh_secret(stub, "token-one")
    clock = Clock()
    secrets = SecretManagerSecrets(
        settings(twilio_auth_token_secret=secret_id, secret_refresh_interval_seconds=60.0, secret_overlap_seconds=3600.0),
        client_factory, clock=clock,
    )
    validator = RotatingValidator(secrets)
    url = "https://example.test/webhook"

    def webhook(n: int, token: str) -> bool:
        form = {"From": "whatsapp:+34600111222", "MessageSid": f"SM{n:032x}", "Body": f"message {n}"}
        return validator.validate(url, form, RequestValidator(token).compute_signature(url, form))

    accepted = [webhook(n, "token-one") for n in range(5)]
    stub.set_secret(secret_id, "token-two")  # ops add a version; Twilio now signs with it
    clock.now += 1
    accepted += [webhook(n, "token-two") for n in range(5, 10)]
    accepted += [webhook(n, "token-one") for n in range(10, 12)]  # signed just before the switch
    assert accepted == [True] * 12
    before = stub.access_count
    # Forged signatures cost at most one Secret Manager read per interval.
    assert not any(webhook(n, "forged") for n in range(12, 40))
    assert stub.access_count - before <= 1
    clock.now += 3601
    assert not webhook(99, "token-one"), "the old token is refused once the overlap is over"
    assert secrets.previous(TWILIO_AUTH_TOKEN) is None
