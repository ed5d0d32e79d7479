"""The operators' view: failed and dead-lettered messages, and replay with the rules of ``make replay``.

Only for the deployment's operators (INBOX_OPERATORS): the failure records are
of every business and name no business, so a business's staff never gets
them. Replay is shared/ops/replay.py itself (the composition root hands it
in), so a replay from the browser answers exactly what ``make replay SID``
would, once and in order, and leaves alone what it would leave alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Flask, Response, jsonify, request

from shared.inbox.deps import InboxDeps, audit
from shared.inbox.signin import NotAllowed, check_origin_and_token, current

FAILURES_LIMIT = 100
MAX_REPLAY = 100
_ROW_FIELDS = ("sid", "status", "stage", "sender", "reason")


def _row(record: dict[str, Any]) -> dict[str, Any]:
    """What an operator sees of a failure record: masked sender, a short conversation id, no text."""
    at = record.get("at")
    row = {key: str(record.get(key, "")) for key in _ROW_FIELDS}
    row["at"] = at.isoformat() if isinstance(at, datetime) else str(at or "")
    row["conversation"] = str(record.get("conversation", ""))[:12]
    return row


def register(app: Flask, deps: InboxDeps) -> None:
    def operator() -> str:
        access = current(deps)
        if not access.operator:
            audit("forbidden", access.email, "asked for the operators' view")
            raise NotAllowed("only the deployment's operators see failures and dead letters")
        return access.email

    @app.get("/api/ops/failures")
    def failures() -> Response:
        email = operator()
        rows = [_row(r) for r in deps.failures(FAILURES_LIMIT)]
        audit("failures_viewed", email, "listed the failure records", count=len(rows))
        return jsonify({"failures": rows})

    @app.post("/api/ops/replay")
    def replay() -> Response | tuple[Response, int]:
        email = operator()
        check_origin_and_token(deps)
        payload = request.get_json(silent=True)
        sids = payload.get("sids") if isinstance(payload, dict) else None
        if not isinstance(sids, list) or not all(isinstance(s, str) and s.isalnum() for s in sids):
            return jsonify({"error": "send {\"sids\": [MessageSid, ...]} ([] replays every held message)"}), 400
        if len(sids) > MAX_REPLAY:
            return jsonify({"error": f"at most {MAX_REPLAY} messages at once"}), 400
        lines = deps.replay(list(sids))
        audit("replay", email, "replayed dead letters", sids=sids, outcome=lines)
        return jsonify({"lines": lines or ["no dead-lettered messages waiting"]})
