"""processor_fn: Pub/Sub pushes each inbound message here, in order per sender.

The same code also serves the reconciler (FUNCTION_TARGET=reconcile), which
Cloud Scheduler calls every minute to finish messages that stalled.
"""

import gc

import flask
import functions_framework
from cloudevents.http import CloudEvent

# No cyclic-GC passes while our modules and their client libraries load (they only add
# long-lived objects), and none over those objects afterwards: frozen before gunicorn forks
# the worker, as the gc module's documentation advises (docs/decisions/0026-cold-start.md).
gc.disable()
from shared import bootstrap  # noqa: E402
from shared.handlers.processor import handle_push  # noqa: E402
from shared.handlers.reconciler import reconcile as reconcile_stalled  # noqa: E402
from shared.log import set_trace, trace_from_headers  # noqa: E402

gc.freeze()
gc.enable()


@functions_framework.cloud_event
def process(cloud_event: CloudEvent) -> None:
    deps = bootstrap.processor_deps()
    set_trace(trace_from_headers(flask.request.headers), deps.settings.project_id)
    bootstrap.authorize(flask.request)
    envelope = flask.request.get_json(silent=True) or {}
    subscription = cloud_event.data.get("subscription") or envelope.get("subscription", "")
    try:
        handle_push(cloud_event.data.get("message") or {}, subscription, deps)
    finally:
        bootstrap.log_usage()


@functions_framework.http
def reconcile(request: flask.Request) -> flask.Response:
    deps = bootstrap.reconciler_deps()
    set_trace(trace_from_headers(request.headers), deps.settings.project_id)
    bootstrap.authorize(request)
    return flask.jsonify(reconcile_stalled(deps))
