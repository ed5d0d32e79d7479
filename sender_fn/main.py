"""sender_fn: Cloud Tasks calls this once per reply to deliver it through Twilio."""

import gc

import flask
import functions_framework

# No cyclic-GC passes while our modules and their client libraries load (they only add
# long-lived objects), and none over those objects afterwards: frozen before gunicorn forks
# the worker, as the gc module's documentation advises (docs/decisions/0026-cold-start.md).
gc.disable()
from shared import bootstrap  # noqa: E402
from shared.handlers.sender import handle_send_request  # noqa: E402
from shared.log import set_trace, trace_from_headers  # noqa: E402

gc.freeze()
gc.enable()


@functions_framework.http
def send(request: flask.Request) -> flask.Response:
    deps = bootstrap.sender_deps()
    set_trace(trace_from_headers(request.headers), deps.settings.project_id)
    bootstrap.authorize(request)
    try:
        status, body = handle_send_request(request.get_data(), deps)
    finally:
        bootstrap.log_usage()
    return flask.Response(body, status=status, content_type="text/plain")
