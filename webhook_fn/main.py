"""webhook_fn: Twilio posts each inbound WhatsApp message here.

The same code also serves the outbound API (FUNCTION_TARGET=outbound), through
which the business's own systems send a message to a user.
"""

import gc

import flask
import functions_framework

# No cyclic-GC passes while our modules and their client libraries load (they only add
# long-lived objects), and none over those objects afterwards: frozen before gunicorn forks
# the worker, as the gc module's documentation advises (docs/decisions/0026-cold-start.md).
gc.disable()
from shared import bootstrap  # noqa: E402
from shared.handlers.webhook import handle_webhook  # noqa: E402
from shared.log import set_trace, trace_from_headers  # noqa: E402

gc.freeze()
gc.enable()


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
