"""What a person does in a conversation: reply, take over (pause the bot), hand back (resume it).

Each is a state-changing request: the session's CSRF token and the inbox's
origin (shared/inbox/signin.py), then the conversation must be one the
person may see (else 404, as for one that does not exist). The work is
shared/handlers/person.py, the same as ``make admin``'s: a reply goes
through the one answer path, so it is sent by the same queue, in the same
order, exactly once; the request's ``key`` names it, so a double click or a
retried request sends it once. Every action is logged with the person's
e-mail, never the customer's number nor what was written.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, Response, jsonify, request

from shared.adapters.inbox_store import StoredConversation
from shared.domain.staff import Access
from shared.handlers import person
from shared.handlers.answer import FOREIGN, REFUSED
from shared.inbox.conversations import CONVERSATION_ID
from shared.inbox.deps import InboxDeps, audit
from shared.inbox.signin import check_origin_and_token, current

# The browser's name for one reply it means to send once (a UUID, or any such token).
REPLY_KEY = re.compile(r"[A-Za-z0-9_-]{8,100}")
MAX_TAKE_OVER_MINUTES = 7 * 24 * 60
_REFUSALS = {
    person.OPTED_OUT: 403, person.OUTSIDE_WINDOW: 409, person.TOO_MANY_OPEN: 429,
    person.NO_CONVERSATION: 404, person.NOT_THEIRS: 404,
}


def register(app: Flask, deps: InboxDeps) -> None:
    def conversation(cid: str) -> tuple[Access, StoredConversation | None]:
        """The signed-in person, after the change's checks, and the conversation if they may act on it."""
        access = current(deps)
        check_origin_and_token(deps)
        found = deps.reader.get(cid) if CONVERSATION_ID.fullmatch(cid) else None
        if found is None or not access.may_see(found.conversation.business):
            audit("forbidden", access.email, "acted on a conversation it may not see", conversation=cid[:12])
            return access, None
        return access, found

    def body() -> dict[str, Any]:
        payload = request.get_json(silent=True)
        return payload if isinstance(payload, dict) else {}

    @app.post("/api/conversations/<cid>/reply")
    def reply(cid: str) -> tuple[Response, int]:
        access, found = conversation(cid)
        if found is None:
            return jsonify({"error": "no such conversation"}), 404
        assert deps.store is not None and deps.queue is not None and deps.ids is not None
        payload = body()
        key, text, wants_template = payload.get("key"), payload.get("text", ""), payload.get("template") is True
        if not isinstance(key, str) or not REPLY_KEY.fullmatch(key) or not isinstance(text, str):
            return jsonify({"error": "send {\"key\": a token of 8 to 100 letters, digits, - or _, \"text\": ...}"}), 400
        business = found.conversation.business
        template = deps.template(business) if wants_template else ""
        if wants_template and not template:
            return jsonify({"error": "this business has no approved template (reengagement_content_sid)"}), 409
        sid = deps.ids.inbox_reply_id(cid, key)
        done = person.reply_as_person(deps.store, deps.queue(), deps.settings, deps.clock, cid, person.PersonReply(
            sid=sid, text="" if template else text, template=template, business=business, window_rule=True,
            must_exist=True, mark=True), deps.faults)
        audit("reply", access.email, "replied as a person", conversation=cid[:12], business=business, sid=sid,
              outcome=done.outcome, refusal=done.refusal or None, parts=done.parts, template=bool(template))
        if done.outcome == REFUSED:
            return jsonify({"id": sid, "error": done.refusal}), _REFUSALS.get(done.refusal, 400)
        if done.outcome == FOREIGN:
            return jsonify({"id": sid, "error": "that key names another message"}), 409
        return jsonify({"id": sid, "status": done.status, "seq": done.seq, "queued": done.queued}), 202

    @app.post("/api/conversations/<cid>/take-over")
    def take_over(cid: str) -> tuple[Response, int]:
        access, found = conversation(cid)
        if found is None:
            return jsonify({"error": "no such conversation"}), 404
        assert deps.store is not None
        business = found.conversation.business
        minutes = body().get("minutes")
        if minutes is None:
            seconds = deps.profile(business).handoff_pause_seconds if deps.profile else deps.settings.handoff_pause_seconds
        elif isinstance(minutes, int) and not isinstance(minutes, bool) and 1 <= minutes <= MAX_TAKE_OVER_MINUTES:
            seconds = minutes * 60
        else:
            return jsonify({"error": f"minutes must be a whole number from 1 to {MAX_TAKE_OVER_MINUTES}"}), 400
        until = person.pause_until(deps.clock, seconds)
        if not person.set_paused(deps.store, cid, until, deps.clock, business):
            return jsonify({"error": "no such conversation"}), 404
        audit("take_over", access.email, "took the conversation over", conversation=cid[:12], business=business,
              until=until.isoformat())
        return jsonify({"pausedUntil": until.isoformat()}), 200

    @app.post("/api/conversations/<cid>/hand-back")
    def hand_back(cid: str) -> tuple[Response, int]:
        access, found = conversation(cid)
        if found is None:
            return jsonify({"error": "no such conversation"}), 404
        assert deps.store is not None
        business = found.conversation.business
        if not person.set_paused(deps.store, cid, None, deps.clock, business):
            return jsonify({"error": "no such conversation"}), 404
        audit("hand_back", access.email, "handed the conversation back to the bot", conversation=cid[:12],
              business=business)
        return jsonify({"pausedUntil": None}), 200
