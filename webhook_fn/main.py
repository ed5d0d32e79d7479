"""webhook_fn: Twilio posts each inbound WhatsApp message here.

The same code also serves the outbound API (FUNCTION_TARGET=outbound), through
which the business's own systems send a message to a user.
"""

import flask
import functions_framework

from shared import bootstrap
from shared.handlers.webhook import handle_webhook
from shared.log import set_trace, trace_from_headers


@functions_framework.http
def webhook(request: flask.Request) -> flask.Response:
    deps = bootstrap.webhook_deps()
    set_trace(trace_from_headers(request.headers), deps.settings.project_id)
    try:
        return handle_webhook(request, deps)
    finally:
        bootstrap.log_usage()


@functions_framework.http
def outbound(request: flask.Request) -> flask.Response:
    # Imported here: the webhook's cold start must not pay for Firestore and Cloud Tasks.
    from shared.handlers.outbound import handle_outbound

    deps = bootstrap.outbound_deps()
    set_trace(trace_from_headers(request.headers), deps.settings.project_id)
    caller = bootstrap.authorize(request)
    if request.method != "POST":
        return flask.jsonify({"error": "use POST"}), 405
    try:
        outcome = handle_outbound(request.get_data(cache=False), deps, caller)
    finally:
        bootstrap.log_usage()
    return flask.jsonify(outcome.body), outcome.status
