"""``POST /tasks/notify``: the handoff's Cloud Task, turned into one notice to the business's staff.

Only Cloud Tasks may call it: the request must carry the caller key and the
tasks invoker's ID token, checked like every private service's
(shared/adapters/google_auth.py); the inbox itself is public for browsers,
so this check is the whole of the protection. The business's webhook comes
from its current profile; a business without one is skipped (logged). A
webhook that fails is retried by Cloud Tasks (503) up to
``MAX_NOTIFY_ATTEMPTS`` deliveries, then given up on and logged.
"""

from __future__ import annotations

import logging
from typing import Callable

from flask import Flask, Request, Response, jsonify, request

from shared.adapters.webhook_notifier import NotifyRefused, NotifyRetry
from shared.domain.staff import Business
from shared.domain.notify import MAX_NOTIFY_ATTEMPTS, HandoffNotice, handoff_message
from shared.inbox.deps import InboxDeps
from shared.log import mask_address

log = logging.getLogger(__name__)
RETRY_COUNT_HEADER = "X-CloudTasks-TaskRetryCount"


def register(app: Flask, deps: InboxDeps, authorize: Callable[[Request], str | None]) -> None:
    @app.post("/tasks/notify")
    def notify() -> tuple[Response, int]:
        authorize(request)
        try:
            notice = HandoffNotice.from_json(request.get_data(cache=False))
        except ValueError as exc:
            log.error("malformed notify task dropped", extra={"event": "notify_failed", "reason": str(exc)[:200]})
            return jsonify({"outcome": "malformed"}), 200
        fields = {"conversation": notice.conversation_id[:12], "sid": notice.sid,
                  "business": mask_address(notice.business)}
        def find(fresh: bool) -> Business | None:
            return next((b for b in deps.reader.directory(fresh) if b.address == notice.business), None)

        business = find(False)
        if business is None or not business.notify_webhook:
            business = find(True)  # one read per handoff at most: the webhook may be newer than the cached list
        if business is None or not business.notify_webhook:
            log.info("no notify_webhook: staff not notified", extra={"event": "notify_skipped", **fields})
            return jsonify({"outcome": "skipped"}), 200
        attempt = int(request.headers.get(RETRY_COUNT_HEADER, "0") or 0) + 1
        assert deps.notifier is not None
        try:
            deps.notifier.post(business.notify_webhook,
                               handoff_message(notice, business.name, deps.settings.inbox_url))
        except NotifyRetry as exc:
            if attempt < MAX_NOTIFY_ATTEMPTS:
                log.warning("staff notification failed, will retry",
                            extra={"event": "notify_retry", "reason": str(exc), "attempt": attempt, **fields})
                return jsonify({"outcome": "retry"}), 503
            log.error("staff notification given up", extra={"event": "notify_failed", "reason": str(exc),
                                                             "attempt": attempt, **fields})
            return jsonify({"outcome": "failed"}), 200
        except NotifyRefused as exc:
            log.error("staff notification refused", extra={"event": "notify_failed", "reason": str(exc), **fields})
            return jsonify({"outcome": "refused"}), 200
        log.info("staff notified of a handoff", extra={"event": "staff_notified", "attempt": attempt, **fields})
        return jsonify({"outcome": "sent"}), 200
