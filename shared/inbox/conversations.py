"""The read side: a business's conversations, what changed since the last poll, one conversation.

Authorization comes first on every request: the business asked for must be
one the person may see (else 403, before anything is read), and a
conversation is shown only if its document says it belongs to such a
business (else 404, the same answer as for one that does not exist, so its
existence is not given away). Queries are always on one business
(shared/adapters/inbox_store.py).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask import Flask, Response, jsonify, request

from shared.adapters.inbox_store import StoredConversation
from shared.domain import inbox as view
from shared.domain.conversation import Conversation
from shared.domain.staff import Access
from shared.inbox.deps import InboxDeps, audit
from shared.inbox.signin import NotAllowed, current

PAGE = 50
# Conversation ids are keyed hashes (shared/domain/pseudonyms.py); anything else is not looked up.
CONVERSATION_ID = re.compile(r"[0-9a-f]{64}")
SEARCH_PAGE = 200


def _business(access: Access) -> str:
    business = request.args.get("business", "").strip()
    if not business:
        raise NotAllowed("name the business (?business=whatsapp:+...)")
    if not access.may_see(business):
        audit("forbidden", access.email, "asked for another business's conversations", business=business)
        raise NotAllowed("you are not staff of this business")
    return business


def _since(raw: str) -> datetime | None:
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise NotAllowed("since must be the cursor of an earlier answer") from None
    return moment if moment.tzinfo is not None else None


def _visible(found: StoredConversation | None, access: Access) -> bool:
    return found is not None and access.may_see(found.conversation.business)


def _showable(conv: Conversation, now: datetime) -> bool:
    """Expired conversations are history the model no longer sees; an opted-out one stays, as a record."""
    return not conv.is_expired(now) or conv.opted_out


def register(app: Flask, deps: InboxDeps) -> None:
    @app.get("/api/conversations")
    def conversations() -> Response:
        access = current(deps)
        business = _business(access)
        now = deps.clock()
        since = _since(request.args.get("since", ""))
        query = request.args.get("q", "")
        if since is not None:
            found = deps.reader.changed(business, since, PAGE)
        else:
            recent = deps.reader.recent(business, SEARCH_PAGE if query else PAGE)
            known = {c.id for c in recent}
            found = recent + [c for c in deps.reader.paused(business, now, PAGE) if c.id not in known]
        shown = [(c, view.summary(c.id, c.conversation, now)) for c in found if _showable(c.conversation, now)]
        if query:
            shown = [(c, s) for c, s in shown if view.matches(s, c.conversation, query)]
            audit("search", access.email, "searched the conversations", business=business, results=len(shown))
        versions = {c.id: c.version for c, _ in shown}
        body: dict[str, Any] = {
            "conversations": [{**s.to_json(), "version": versions[s.id]} for s in view.ordered([s for _, s in shown])],
            "cursor": now.isoformat(), "now": now.isoformat(), "full": since is None,
        }
        opened = request.args.get("open", "")
        match = next((c for c, _ in shown if c.id == opened), None)
        if match is not None:
            body["open"] = {**view.detail(match.id, match.conversation, now), "version": match.version,
                            "template": bool(deps.template(business))}
        return jsonify(body)

    @app.get("/api/conversations/<cid>")
    def conversation(cid: str) -> Response | tuple[Response, int]:
        access = current(deps)
        found = deps.reader.get(cid) if CONVERSATION_ID.fullmatch(cid) else None
        if not _visible(found, access):
            audit("forbidden", access.email, "asked for a conversation it may not see", conversation=cid[:12])
            return jsonify({"error": "no such conversation"}), 404
        assert found is not None
        now = deps.clock()
        audit("conversation_viewed", access.email, "opened a conversation", conversation=cid[:12],
              business=found.conversation.business)
        return jsonify({**view.detail(found.id, found.conversation, now), "version": found.version,
                        "template": bool(deps.template(found.conversation.business))})

