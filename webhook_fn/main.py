"""webhook_fn: Twilio posts each inbound WhatsApp message here."""

import flask
import functions_framework

from shared import bootstrap
from shared.log import set_trace, trace_from_headers
from shared.handlers.webhook import handle_webhook


@functions_framework.http
def webhook(request: flask.Request) -> flask.Response:
    deps = bootstrap.webhook_deps()
    set_trace(trace_from_headers(request.headers), deps.settings.project_id)
    try:
        return handle_webhook(request, deps)
    finally:
        bootstrap.log_usage()
