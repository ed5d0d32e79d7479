"""The ack floor: the least any webhook must do before answering Twilio.

One Pub/Sub publish to the same emulator, with the webhook's own batch
settings and ordering, waited for, then 200. No signature check, no parsing
beyond the sender (the ordering key), no logging: whatever webhook_fn costs
above this is ours. Started with the image's command (the Dockerfile's CMD)
as the real functions are, so the server, the client and the emulator are
held equal; reached directly, without a Cloud Run front end (figure 9).
"""

from __future__ import annotations

import os
import threading

import flask
import functions_framework
from google.cloud import pubsub_v1

from shared.config import Settings

_lock = threading.Lock()
_publisher: pubsub_v1.PublisherClient | None = None
CONFIRM_TIMEOUT_SECONDS = 10.0


def _client() -> pubsub_v1.PublisherClient:
    """Built on the first request, as webhook_fn builds its publisher."""
    global _publisher
    if _publisher is None:
        with _lock:
            if _publisher is None:
                _publisher = pubsub_v1.PublisherClient(
                    batch_settings=pubsub_v1.types.BatchSettings(
                        max_latency=Settings.from_env().publish_max_latency_seconds
                    ),
                    publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True),
                )
    return _publisher


@functions_framework.http
def floor(request: flask.Request) -> flask.Response:
    data = request.get_data()
    sender = request.form.get("From", "")
    topic = os.environ["BENCH_FLOOR_TOPIC"]
    future = _client().publish(topic, data, ordering_key=sender, message_sid=request.form.get("MessageSid", ""))
    future.result(timeout=CONFIRM_TIMEOUT_SECONDS)
    return flask.Response("", status=200, content_type="text/plain")
