"""inbox_fn: the business's inbox in a browser, its own Cloud Run service (public; it signs people in itself)."""

import flask
import functions_framework

from shared.inbox.wiring import inbox_app, inbox_deps, log_usage
from shared.log import set_trace, trace_from_headers


@functions_framework.http
def inbox(request: flask.Request) -> flask.Response:
    set_trace(trace_from_headers(request.headers), inbox_deps().settings.project_id)
    app = inbox_app()
    # The inbox's own Flask app (routes, sessions, headers) answers the request functions-framework received.
    try:
        with app.request_context(request.environ):
            return app.full_dispatch_request()
    finally:
        log_usage()
