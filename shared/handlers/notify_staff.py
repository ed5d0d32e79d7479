"""The answer path's step after a handoff: one notice task, so the business's staff are told.

When the message a customer asked for a person with (the profile's handoff
keyword) has its answer recorded, the processor creates one Cloud Task for
the inbox's ``/tasks/notify`` (shared/inbox/notifications.py), named after
the conversation and that message, so a redelivery, a re-claim or a retried
hand-off makes no second one (docs/decisions/0021-inbox-sign-in.md). Only
for a business whose profile has a ``notify_webhook`` and a deployment with
an inbox (``INBOX_TASKS_URL``): every other message, and every other
business, costs nothing.
"""

from __future__ import annotations

import logging

from shared.adapters.cloud_tasks import NotifyTask
from shared.domain.controls import HANDOFF
from shared.domain.entry import MessageEntry
from shared.domain.notify import HandoffNotice
from shared.domain.profiles import BusinessProfile
from shared.handlers.deps import ProcessorDeps

log = logging.getLogger(__name__)


def notify_on_handoff(deps: ProcessorDeps, profile: BusinessProfile, conversation_id: str, sid: str,
                      entry: MessageEntry | None) -> bool:
    """Create the handoff's notice task if ``entry`` is a handoff's answer; True when it was created now."""
    if entry is None or entry.decided is None or entry.decided.reason != HANDOFF:
        return False
    if not profile.notify_webhook or not deps.settings.inbox_tasks_url:
        return False
    notice = HandoffNotice(profile.address or deps.settings.twilio_whatsapp_from, conversation_id, sid)
    created = deps.queue.enqueue(NotifyTask(notice))
    log.info("staff notice queued", extra={"event": "notify_queued", "sid": sid, "conversation": conversation_id[:12],
                                           "task_created": created})
    return created
