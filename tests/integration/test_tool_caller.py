"""The tool caller over real HTTP against the example business's server: signed, deduplicated, bounded, never redirected."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.cloud.secretmanager_v1 import SecretManagerServiceClient
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import SecretManagerServiceGrpcTransport

from devstack.httpserver import DROP, Drop, Request, Response, StubHandler, StubServer
from devstack.secret_manager_stub import SecretManagerStub
from devstack.tool_server import ExampleToolServer
from shared.adapters.secret_manager import EnvSecrets, build_secrets
from shared.adapters.tool_caller import ToolCaller
from shared.config import Settings
from shared.domain.profiles import BusinessProfile, profile_from_mapping
from shared.domain.tool_ledger import DONE, FAILED, UNKNOWN, idempotency_key
from shared.domain.tools import ToolSpec, local_secret_variable
from tests.unit.test_tool_profiles import BOOK_TABLE, ORDER_STATUS, with_

SECRET = "shop-tools-secret-value"
SID = "SM" + "1" * 32


def spec(raw: dict[str, Any], url: str) -> ToolSpec:
    return profile_from_mapping("whatsapp:+1", {"tools": [with_(raw, url=url)]}, BusinessProfile()).tools[0]


@pytest.fixture()
def server() -> Iterator[ExampleToolServer]:
    with ExampleToolServer(SECRET) as running:
        yield running


def caller(secret: str = SECRET, max_bytes: int = 16 * 1024) -> ToolCaller:
    settings = Settings(env_secrets={local_secret_variable("shop-tools"): secret})
    return ToolCaller(EnvSecrets(settings), max_response_bytes=max_bytes)


def read_tool(server: ExampleToolServer) -> ToolSpec:
    return spec(ORDER_STATUS, f"{server.base_url}/orders/status")


def write_tool(server: ExampleToolServer) -> ToolSpec:
    return spec(BOOK_TABLE, f"{server.base_url}/tables/book")


BOOKING = json.dumps({"day": "friday", "people": 2, "time": "20:00"}, separators=(",", ":"))


def test_a_read_is_a_signed_json_post_and_its_answer_comes_back(server: ExampleToolServer) -> None:
    answer = caller().call(read_tool(server), '{"order_id":"1234"}', idempotency_key(SID, 0, 0), 5.0)
    assert answer.status == DONE and answer.http_status == 200
    assert json.loads(answer.content)["status"] == "ready for pickup"
    (request,) = server.calls
    assert request.verified and request.key == idempotency_key(SID, 0, 0) and request.body == {"order_id": "1234"}


def test_a_booking_sent_twice_with_one_key_is_made_once(server: ExampleToolServer) -> None:
    tools = caller()
    key = idempotency_key(SID, 0, 0)
    first = tools.call(write_tool(server), BOOKING, key, 5.0)
    again = tools.call(write_tool(server), BOOKING, key, 5.0)
    assert first.status == again.status == DONE
    assert json.loads(again.content) == {**json.loads(first.content), "replayed": True}
    assert len(server.bookings()) == 1 and [c.executed for c in server.calls] == [True, False]
    other = tools.call(write_tool(server), BOOKING, idempotency_key(SID, 0, 1), 5.0)
    assert other.status == DONE and len(server.bookings()) == 2, "another call is another booking"


def test_a_wrong_secret_is_refused_and_nothing_is_done(server: ExampleToolServer) -> None:
    answer = caller(secret="not-the-secret").call(write_tool(server), BOOKING, idempotency_key(SID, 0, 0), 5.0)
    assert answer.status == FAILED and answer.http_status == 401 and answer.reason == "refused"
    assert server.bookings() == [] and server.calls[0].reason == "signature does not match"


def test_errors_and_garbage_are_answers_for_the_model(server: ExampleToolServer) -> None:
    tools = caller()
    missing = tools.call(read_tool(server), '{"order_id":"9999"}', "k1", 5.0)
    assert (missing.status, missing.http_status) == (FAILED, 404)
    assert json.loads(missing.content)["detail"] == "no order '9999'"
    server.configure(**{"fail_next": 1, "fail_status": 503})
    down = tools.call(write_tool(server), BOOKING, "k2", 5.0)
    assert (down.status, down.reason) == (FAILED, "http_error") and server.bookings() == []
    server.configure(**{"garbage_next": 2})
    assert tools.call(read_tool(server), '{"order_id":"1234"}', "k3", 5.0).status == FAILED
    garbled = tools.call(write_tool(server), BOOKING, "k4", 5.0)
    assert (garbled.status, garbled.reason) == (UNKNOWN, "not_json"), "a 2xx we cannot read may have booked"


def test_a_slow_tool_times_out_within_its_time(server: ExampleToolServer) -> None:
    server.delay_seconds = 3.0
    started = time.monotonic()
    read = caller().call(read_tool(server), '{"order_id":"1234"}', "k1", 0.6)
    write = caller().call(write_tool(server), BOOKING, "k2", 0.6)
    assert time.monotonic() - started < 2.5
    assert (read.status, read.reason) == (FAILED, "timeout")
    assert (write.status, write.reason) == (UNKNOWN, "timeout")
    assert "may or may not have happened" in json.loads(write.content)["error"]


def test_a_booking_whose_answer_was_lost_is_found_again_under_its_key(server: ExampleToolServer) -> None:
    server.configure(**{"drop_after_booking_next": 1})
    tools = caller()
    key = idempotency_key(SID, 0, 0)
    lost = tools.call(write_tool(server), BOOKING, key, 5.0)
    assert (lost.status, lost.reason) == (UNKNOWN, "connection_broken")
    found = tools.call(write_tool(server), BOOKING, key, 5.0)
    assert found.status == DONE and json.loads(found.content)["replayed"] is True
    assert len(server.bookings()) == 1


def test_nothing_listening_is_a_failure_that_did_nothing() -> None:
    with StubServer() as gone:
        url = gone.base_url
    answer = caller().call(spec(BOOK_TABLE, url + "/tables/book"), BOOKING, "k", 2.0)
    assert (answer.status, answer.reason) == (FAILED, "unreachable")


class Misbehaving(StubServer):
    """A tool that redirects, answers too much, or trickles its answer out."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.requests: list[Request] = []

    def handle(self, request: Request, handler: StubHandler) -> Response | Drop:
        self.requests.append(request)
        if self.mode == "redirect":
            return Response(302, b"", {"Location": "http://127.0.0.1:9/steal"})
        if self.mode == "huge":
            return Response.json(200, {"rows": ["x" * 1000] * 100})
        if self.mode == "trickle":
            handler.send_response(200)
            handler.send_header("Content-Length", "5000")
            handler.end_headers()
            for _ in range(200):
                if self.stopping.is_set():
                    break
                try:
                    handler.wfile.write(b" " * 100)
                    handler.wfile.flush()
                except OSError:
                    break
                time.sleep(0.1)
            return DROP
        return Response.json(200, {"ok": True})


@pytest.mark.parametrize(("mode", "status", "reason"), [
    ("redirect", FAILED, "redirect"), ("huge", FAILED, "too_large"), ("trickle", FAILED, "timeout"),
])
def test_redirects_size_and_time_are_bounded(mode: str, status: str, reason: str) -> None:
    with Misbehaving(mode) as bad:
        started = time.monotonic()
        answer = caller(max_bytes=8 * 1024).call(spec(ORDER_STATUS, bad.base_url + "/x"), '{"order_id":"1234"}', "k", 1.0)
        assert time.monotonic() - started < 3.0
        assert (answer.status, answer.reason) == (status, reason)
        assert len(bad.requests) == 1, "a redirect is never followed"


def test_proxies_from_the_environment_are_not_used(server: ExampleToolServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert caller().call(read_tool(server), '{"order_id":"1234"}', "k", 5.0).status == DONE


def test_the_call_logs_name_effect_status_and_key_but_never_the_secret_or_arguments(
    server: ExampleToolServer, caplog: pytest.LogCaptureFixture,
) -> None:
    call = caller().for_message("whatsapp:+14155238886", SID)
    with caplog.at_level("INFO", logger="shared.adapters.tool_caller"):
        call(write_tool(server), BOOKING, "wa_key", 5.0)
    (line,) = [r for r in caplog.records if getattr(r, "event", "") == "tool_called"]
    assert (line.tool, line.effect, line.status, line.key, line.business) == (
        "book_table", "write", DONE, "wa_key", "whatsapp:+14155238886")
    assert line.tool_ms > 0 and not hasattr(line, "arguments")
    assert SECRET not in caplog.text and "20:00" not in caplog.text


# ------------------------------------------------ the secret from Secret Manager, rotated


@pytest.fixture(scope="module")
def secret_manager() -> Iterator[SecretManagerStub]:
    with SecretManagerStub({}, project="test-project") as stub:
        yield stub


def test_a_rotated_secret_is_read_again_when_the_business_refuses_the_old_one(
    secret_manager: SecretManagerStub, server: ExampleToolServer,
) -> None:
    secret_id = f"tools-{uuid.uuid4().hex[:8]}"
    secret_manager.set_secret(secret_id, "old-value")
    channels: list[grpc.Channel] = []

    def factory() -> SecretManagerServiceClient:
        channels.append(grpc.insecure_channel(secret_manager.address))
        return SecretManagerServiceClient(transport=SecretManagerServiceGrpcTransport(channel=channels[-1]))

    secrets = build_secrets(Settings(project_id="test-project", secret_source="secretmanager",
                                     secret_refresh_interval_seconds=0.0), client_factory=factory)
    tools = ToolCaller(secrets, max_response_bytes=16 * 1024)
    tool = spec(with_(ORDER_STATUS, secret=secret_id), f"{server.base_url}/orders/status")
    server.use_secret("old-value")
    assert tools.call(tool, '{"order_id":"1234"}', "k1", 5.0).status == DONE
    # Ops rotate: the business holds the new value, this process still the old one.
    secret_manager.set_secret(secret_id, "new-value")
    server.use_secret("new-value")
    answer = tools.call(tool, '{"order_id":"1234"}', "k2", 5.0)
    assert answer.status == DONE, answer
    assert [c.verified for c in server.calls] == [True, False, True]
    for channel in channels:
        channel.close()


def test_during_the_overlap_both_secrets_sign(secret_manager: SecretManagerStub, server: ExampleToolServer) -> None:
    """The business may still hold the old secret for a while: the old signature rides along."""
    secret_id = f"tools-{uuid.uuid4().hex[:8]}"
    secret_manager.set_secret(secret_id, "first")
    secrets = build_secrets(Settings(project_id="test-project", secret_source="secretmanager",
                                     secret_refresh_interval_seconds=0.0),
                            client_factory=lambda: SecretManagerServiceClient(
                                transport=SecretManagerServiceGrpcTransport(
                                    channel=grpc.insecure_channel(secret_manager.address))))
    assert secrets.tool_secret(secret_id) == "first"
    secret_manager.set_secret(secret_id, "second")
    assert secrets.refresh_tool_secret(secret_id)
    server.use_secret("first")
    tool = spec(with_(ORDER_STATUS, secret=secret_id), f"{server.base_url}/orders/status")
    assert ToolCaller(secrets, 16 * 1024).call(tool, '{"order_id":"1234"}', "k", 5.0).status == DONE
    assert server.calls[-1].verified

