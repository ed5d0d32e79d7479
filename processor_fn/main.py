"""processor_fn: Pub/Sub pushes each inbound message here, in order per sender."""

import flask
import functions_framework
from cloudevents.http import CloudEvent

from shared import bootstrap
from shared.log import set_trace, trace_from_headers
from shared.processor import handle_push


@functions_framework.cloud_event
def process(cloud_event: CloudEvent) -> None:
    deps = bootstrap.processor_deps()
    set_trace(trace_from_headers(flask.request.headers), deps.settings.project_id)
    bootstrap.authorize(flask.request.headers.get("Authorization"))
    envelope = flask.request.get_json(silent=True) or {}
    subscription = cloud_event.data.get("subscription") or envelope.get("subscription", "")
    try:
        handle_push(cloud_event.data.get("message") or {}, subscription, deps)
    finally:
        bootstrap.log_usage()
