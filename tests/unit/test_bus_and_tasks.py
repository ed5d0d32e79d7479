"""Publisher (Pub/Sub) and TaskQueue (Cloud Tasks) with fake clients: what they send, how they fail."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import tasks_v2

from shared.adapters.cloud_tasks import SendTask, TaskQueue
from shared.adapters.pubsub_publisher import Publisher, PublishFailed
from shared.domain.inbound import InboundMessage

SENDER = "whatsapp:+34600111222"
TOPIC_PATH = "projects/p1/topics/inbound"


def message(n: int = 1, sender: str = SENDER) -> InboundMessage:
    return InboundMessage(sid=f"SM{n:032x}", sender=sender, recipient="whatsapp:+14155238886", body=f"hi {n}")


class FakePublisherClient:
    """Records publish calls; each returns a Future the test completes (or not)."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []
        self.futures: list[Future[str]] = []
        self.resumed: list[tuple[str, str]] = []
        self.outcome: str | Exception | None = "msg-id-1"

    def publish(self, topic: str, data: bytes, **attrs: str) -> Future[str]:
        self.calls.append((topic, data, attrs))
        future: Future[str] = Future()
        if isinstance(self.outcome, Exception):
            future.set_exception(self.outcome)
        elif self.outcome is not None:
            future.set_result(self.outcome)
        self.futures.append(future)
        return future

    def resume_publish(self, topic: str, ordering_key: str) -> None:
        self.resumed.append((topic, ordering_key))


class Factory:
    def __init__(self) -> None:
        self.clients: list[FakePublisherClient] = []

    def __call__(self, **kwargs: Any) -> FakePublisherClient:
        client = FakePublisherClient(**kwargs)
        self.clients.append(client)
        return client


def make_publisher(timeout: float = 5.0) -> tuple[Publisher, Factory]:
    factory = Factory()
    publisher = Publisher("p1", "inbound", 0.002, client_factory=factory, confirm_timeout_seconds=timeout)  # type: ignore[arg-type]
    return publisher, factory


def test_publish_uses_the_sender_as_ordering_key_and_returns_the_server_id() -> None:
    publisher, factory = make_publisher()
    msg = message()
    assert publisher.publish(msg) == "msg-id-1"
    [client] = factory.clients
    [(topic, data, attrs)] = client.calls
    assert topic == TOPIC_PATH
    assert InboundMessage.from_json(data) == msg
    assert attrs == {"ordering_key": SENDER, "message_sid": msg.sid}
    assert publisher.published == 1
    assert client.resumed == []


def test_client_is_built_once_with_ordering_and_short_batching() -> None:
    publisher, factory = make_publisher()
    assert factory.clients == []
    publisher.publish(message(1))
    publisher.publish(message(2, sender="whatsapp:bsuid.AB12cd34"))
    [client] = factory.clients
    assert client.kwargs["publisher_options"].enable_message_ordering is True
    assert client.kwargs["batch_settings"].max_latency == 0.002
    assert [attrs["ordering_key"] for _, _, attrs in client.calls] == [SENDER, "whatsapp:bsuid.AB12cd34"]


def test_publish_waits_for_the_confirmation() -> None:
    publisher, factory = make_publisher()
    publisher.client.outcome = None  # type: ignore[attr-defined]
    client = factory.clients[0]
    timer = threading.Timer(0.05, lambda: client.futures[0].set_result("late-id"))
    timer.start()
    try:
        assert publisher.publish(message()) == "late-id"
    finally:
        timer.cancel()
    assert client.futures[0].done()


def test_failed_confirmation_raises_and_resumes_the_ordering_key() -> None:
    publisher, factory = make_publisher()
    publisher.client.outcome = gexc.ServiceUnavailable("pubsub down")  # type: ignore[attr-defined]
    with pytest.raises(PublishFailed) as caught:
        publisher.publish(message())
    client = factory.clients[0]
    assert client.resumed == [(TOPIC_PATH, SENDER)]
    assert isinstance(caught.value.__cause__, gexc.ServiceUnavailable)
    assert publisher.published == 0


def test_unconfirmed_publish_times_out_as_a_failure() -> None:
    publisher, factory = make_publisher(timeout=0.05)
    publisher.client.outcome = None  # type: ignore[attr-defined]
    with pytest.raises(PublishFailed):
        publisher.publish(message())
    assert factory.clients[0].resumed == [(TOPIC_PATH, SENDER)]


def test_a_later_publish_goes_through_after_a_failure() -> None:
    publisher, factory = make_publisher()
    client = publisher.client
    client.outcome = RuntimeError("batch failed")  # type: ignore[attr-defined]
    with pytest.raises(PublishFailed):
        publisher.publish(message(1))
    client.outcome = "msg-id-2"  # type: ignore[attr-defined]
    assert publisher.publish(message(1)) == "msg-id-2"
    assert publisher.published == 1


# --- Cloud Tasks ---------------------------------------------------------------------


QUEUE_PATH = "projects/p1/locations/europe-west1/queues/outbound"
TARGET = "https://sender-abc.a.run.app/"


class FakeTasksClient:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.requests: list[dict[str, Any]] = []
        self.options: list[dict[str, Any]] = []

    def create_task(self, request: dict[str, Any], **options: Any) -> dict[str, Any]:
        self.requests.append(request)
        self.options.append(options)
        if self.error is not None:
            raise self.error
        return request["task"]


def make_queue(client: FakeTasksClient, service_account: str = "") -> TaskQueue:
    return TaskQueue("p1", "europe-west1", "outbound", TARGET, service_account, client_factory=lambda: client)  # type: ignore[arg-type,return-value]


TASK = SendTask(conversation_id="a" * 64, sid="SM" + "1" * 32, seq=7)


def test_send_task_json_round_trip() -> None:
    assert SendTask.from_json(TASK.to_json()) == TASK


@pytest.mark.parametrize("data", [b"{}", b'{"conversation": "c", "sid": "s"}', b'{"conversation": "c", "sid": "s", "seq": "x"}', b"nope"])
def test_send_task_from_bad_json_raises(data: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        SendTask.from_json(data)


def test_task_id_starts_with_the_hashed_conversation_and_ends_with_the_sid() -> None:
    assert TASK.task_id == "a" * 20 + "-" + "SM" + "1" * 32


def test_enqueue_creates_a_named_task_for_the_sender() -> None:
    client = FakeTasksClient()
    queue = make_queue(client)
    assert queue.queue_path == QUEUE_PATH
    assert queue.enqueue(TASK) is True
    [request] = client.requests
    assert request["parent"] == QUEUE_PATH
    task = request["task"]
    assert task["name"] == f"{QUEUE_PATH}/tasks/{TASK.task_id}"
    http = task["http_request"]
    assert http["http_method"] == tasks_v2.HttpMethod.POST
    assert http["url"] == TARGET
    assert http["headers"] == {"Content-Type": "application/json"}
    assert SendTask.from_json(http["body"]) == TASK
    assert "oidc_token" not in http
    assert client.options[0]["timeout"] > 0 and client.options[0]["retry"] is not None
    assert queue.created == 1


def test_enqueue_adds_an_oidc_token_when_a_service_account_is_configured() -> None:
    client = FakeTasksClient()
    make_queue(client, service_account="tasks@p1.iam.gserviceaccount.com").enqueue(TASK)
    oidc = client.requests[0]["task"]["http_request"]["oidc_token"]
    assert oidc == {"service_account_email": "tasks@p1.iam.gserviceaccount.com", "audience": TARGET}


def test_the_request_is_a_valid_create_task_request() -> None:
    client = FakeTasksClient()
    make_queue(client, service_account="tasks@p1.iam.gserviceaccount.com").enqueue(TASK)
    proto = tasks_v2.CreateTaskRequest(client.requests[0])
    assert proto.task.http_request.oidc_token.audience == TARGET
    assert proto.task.name.endswith(TASK.task_id)


def test_an_existing_task_means_a_duplicate() -> None:
    client = FakeTasksClient(error=gexc.AlreadyExists("task exists"))
    queue = make_queue(client)
    assert queue.enqueue(TASK) is False
    assert queue.created == 0


def test_other_errors_propagate() -> None:
    queue = make_queue(FakeTasksClient(error=gexc.PermissionDenied("no")))
    with pytest.raises(gexc.PermissionDenied):
        queue.enqueue(TASK)


def test_tasks_client_is_built_lazily_once() -> None:
    built: list[FakeTasksClient] = []

    def factory() -> FakeTasksClient:
        built.append(FakeTasksClient())
        return built[-1]

    queue = TaskQueue("p1", "europe-west1", "outbound", TARGET, "", client_factory=factory)  # type: ignore[arg-type]
    assert built == []
    queue.enqueue(TASK)
    queue.enqueue(SendTask("b" * 64, "SM" + "2" * 32, 8))
    assert len(built) == 1 and len(built[0].requests) == 2


def test_a_publish_refused_at_once_also_resumes_the_ordering_key() -> None:
    publisher, factory = make_publisher()
    client = publisher.client

    def refuse(topic: str, data: bytes, **attrs: str) -> Future[str]:
        raise RuntimeError("ordering key is paused")

    client.publish = refuse  # type: ignore[method-assign]
    with pytest.raises(PublishFailed):
        publisher.publish(message())
    assert factory.clients[0].resumed == [(TOPIC_PATH, SENDER)]
