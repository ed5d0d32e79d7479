"""Pub/Sub: hand an inbound message to the processor, in order per sender."""

from __future__ import annotations

from typing import Callable

from google.cloud import pubsub_v1

from shared.adapters.lazy import Lazy
from shared.domain.inbound import STATUS_KIND, InboundMessage, StatusCallback


class PublishFailed(Exception):
    """The message was not confirmed by Pub/Sub; the webhook answers 5xx so Twilio retries."""


class Publisher:
    """Publishes with ordering key = sender and waits for the server's confirmation.

    Ordering makes one user's messages reach the processor one at a time and in
    the order Twilio delivered them. Batching waits at most
    ``max_latency_seconds`` (the default 10 ms would be most of our ack time).
    """

    def __init__(
        self,
        project_id: str,
        topic: str,
        max_latency_seconds: float,
        client_factory: Callable[..., pubsub_v1.PublisherClient] = pubsub_v1.PublisherClient,
        confirm_timeout_seconds: float = 10.0,
    ) -> None:
        self._topic_path = f"projects/{project_id}/topics/{topic}"
        self._client = Lazy(lambda: client_factory(
            batch_settings=pubsub_v1.types.BatchSettings(max_latency=max_latency_seconds),
            publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
        ))
        self._timeout = confirm_timeout_seconds
        self.published = 0

    @property
    def client(self) -> pubsub_v1.PublisherClient:
        return self._client.get()

    def publish(self, message: InboundMessage) -> str:
        """Return the Pub/Sub message id once the server has stored the message."""
        return self._publish(message.to_json(), message.sender, message_sid=message.sid)

    def publish_status(self, callback: StatusCallback) -> str:
        """A delivery report, ordered with the user's messages: the processor applies it to the conversation."""
        return self._publish(callback.to_json(), callback.recipient, message_sid=callback.sid, kind=STATUS_KIND)

    def _publish(self, data: bytes, ordering_key: str, **attributes: str) -> str:
        try:
            future = self.client.publish(self._topic_path, data, ordering_key=ordering_key, **attributes)
            message_id = future.result(timeout=self._timeout)
        except Exception as exc:
            # A failed publish pauses its ordering key; resume it so the next
            # retry from Twilio can go through.
            self.client.resume_publish(self._topic_path, ordering_key)
            raise PublishFailed(str(exc)) from exc
        self.published += 1
        return message_id
