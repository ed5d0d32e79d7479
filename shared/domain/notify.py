"""Telling a business's staff that a conversation needs them: once per handoff, never per message.

When a customer asks for a person (the profile's handoff keyword), the
answer path creates one named Cloud Task, ``<conversation>-<message>-notify``,
for the inbox's ``/tasks/notify``; the inbox posts this notice to the
profile's ``notify_webhook`` (a Google Chat, Slack or any JSON webhook: they
all take ``{"text": ...}``). The name makes a redelivered or re-claimed
handoff message create no second task. The notice carries no customer data:
the business, a link into the inbox and why; the person opens the inbox to
read the conversation (docs/decisions/0021-inbox-sign-in.md). Pure: no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

NOTIFY_KIND = "notify"
# Attempts after which a webhook that keeps failing is given up on (logged): a notice is a nudge,
# not a message to the customer, and the inbox shows the conversation at the top regardless.
MAX_NOTIFY_ATTEMPTS = 5


@dataclass(frozen=True)
class HandoffNotice:
    business: str
    conversation_id: str
    sid: str

    @property
    def task_id(self) -> str:
        # Hash-like prefix first, as the send tasks (Cloud Tasks spreads load on the name's prefix).
        return f"{self.conversation_id[:20]}-{self.sid}-{NOTIFY_KIND}"

    def to_json(self) -> bytes:
        return json.dumps({"business": self.business, "conversation": self.conversation_id, "sid": self.sid}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "HandoffNotice":
        raw: Any = json.loads(data)
        if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) and raw.get(k) for k in
                                                 ("business", "conversation", "sid")):
            raise ValueError("a notice needs business, conversation and sid")
        return cls(raw["business"], raw["conversation"], raw["sid"])


def inbox_link(inbox_url: str, business: str, conversation_id: str) -> str:
    """Opens the inbox on that business and conversation (after sign-in, if the person may see it)."""
    return f"{inbox_url}/#" + urlencode({"b": business, "c": conversation_id})


def handoff_message(notice: HandoffNotice, business_name: str, inbox_url: str) -> dict[str, str]:
    """The webhook's JSON: ``text`` for chat webhooks, and the same facts as fields for any other receiver."""
    link = inbox_link(inbox_url, notice.business, notice.conversation_id)
    who = business_name or notice.business
    return {
        "text": f"A customer of {who} asked for a person on WhatsApp. Answer them in the inbox: {link}",
        "event": "handoff",
        "business": notice.business,
        "conversation": notice.conversation_id,
        "link": link,
    }
