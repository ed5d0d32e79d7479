"""The sender's step for a reply that ends in choices: buttons or a list when WhatsApp allows, else text.

The last part of such a reply is its choices as numbered text (recorded with
the answer, shared/domain/choice_answers.py). When that part is next, inside
the 24-hour window and the choices fit buttons or a list, :func:`rich_content`
finds the Content resource for them (created once, reused by hash:
shared/adapters/content_records.py); the part is then marked with that
ContentSid in the same write that marks it ``sending``, so a retry sends it
the same way and asks Twilio about it as a template part. Outside the
window, or when the Content API fails, the numbered text goes like any text
part: the customer is answered now, never after a retry of the Content API.
"""

from __future__ import annotations

import logging

from shared.adapters.cloud_tasks import SendTask
from shared.domain.choices import Offer, content_types, layout, numbered_text
from shared.domain.conversation import Conversation
from shared.domain.window import window_open
from shared.handlers.deps import SenderDeps

log = logging.getLogger(__name__)


def rich_content(conv: Conversation, task: SendTask, deps: SenderDeps) -> str:
    """The ContentSid the reply's next part goes as, or "" (no choices there, or numbered text)."""
    entry = conv.entry(task.sid)
    if entry is None or not entry.choices or entry.content_sid or entry.finished or not entry.parts:
        return ""
    if entry.sent_parts != len(entry.parts) - 1:
        return ""
    offer = Offer.from_json(entry.choices)
    fields = {"sid": task.sid, "conversation": task.conversation_id[:12], "layout": layout(offer)}
    types = content_types(offer)
    if not types or entry.parts[-1] != numbered_text(offer):
        log.info("choices go as numbered text", extra={**fields, "event": "choices_as_text", "reason": "layout"})
        return ""
    if not window_open(conv, deps.clock(), unknown_is_open=True):
        log.info("choices go as numbered text", extra={**fields, "event": "choices_as_text", "reason": "window"})
        return ""
    if deps.content is None:
        return ""
    try:
        return deps.content.sid_for(types)
    except Exception as exc:
        log.warning("choices go as numbered text: no Content resource", extra={
            **fields, "event": "choices_as_text", "reason": f"content api: {exc}"[:300]})
        return ""
