"""sender_fn: Cloud Tasks calls this once per reply to deliver it through Twilio."""

import flask
import functions_framework

from shared import bootstrap
from shared.handlers.sender import handle_send_request
from shared.log import set_trace, trace_from_headers


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
