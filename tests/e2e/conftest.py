"""Helpers to drive the running stack the way Twilio and a WhatsApp user would."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import pytest
from google.cloud import firestore

from devstack.stack import Stack
from devstack.twilio_stub import inbound_message, new_sid, sign_and_post
from shared.adapters.conversation_document import from_document
from shared.domain.conversation import Conversation
from shared.domain.entry import MessageEntry
from shared.domain.pseudonyms import Pseudonyms
from tests.plugin import wait_until


@dataclass
class Pipeline:
    stack: Stack
    db: firestore.Client

    @property
    def twilio(self):  # noqa: ANN201 - the stand-in's own type
        assert self.stack.twilio is not None
        return self.stack.twilio

    @property
    def model(self):  # noqa: ANN201
        assert self.stack.openai is not None
        return self.stack.openai

    def post(self, user: str, body: str, sid: str | None = None, to: str = "", **extra: str) -> tuple[int, str, dict[str, str]]:
        """Sign and post an inbound message exactly as Twilio does (to ``to``, default the stack's
        business number); returns status, sid, form."""
        o = self.stack.options
        params = inbound_message(user, body, to=to or o.twilio_whatsapp_from, sid=sid or new_sid("SM"),
                                 account_sid=o.twilio_account_sid, **extra)
        status, _, _ = sign_and_post(self.stack.webhook_url, params, o.twilio_auth_token)
        return status, params["MessageSid"], params

    def twilio_messages_to(self, user: str) -> list:
        return [m for m in self.twilio.messages if m.to == user]

    def replies(self, user: str) -> list[str]:
        return [m.body for m in self.twilio_messages_to(user)]

    def wait_replies(self, user: str, count: int, timeout: float = 30) -> list[str]:
        wait_until(lambda: len(self.replies(user)) >= count, timeout)
        return self.replies(user)

    def model_requests_for(self, text: str) -> list[list[dict[str, Any]]]:
        """The message lists of every model call whose last user turn is ``text``."""
        return [r.messages for r in self.model.requests if r.messages and r.messages[-1].get("content") == text]

    def conversation_id(self, user: str, business: str = "") -> str:
        """The document id the functions use: keyed with the stack's address hash key."""
        o = self.stack.options
        return Pseudonyms(o.address_hash_key).conversation_id(user, business or o.twilio_whatsapp_from)

    def conversation(self, user: str, business: str = "") -> Conversation:
        snap = self.db.collection("conversations").document(self.conversation_id(user, business)).get()
        return from_document(snap.to_dict() if snap.exists else None)

    def document(self, user: str, business: str = "") -> dict[str, Any]:
        """The conversation document as stored (what the chat page and the ops tools read)."""
        snap = self.db.collection("conversations").document(self.conversation_id(user, business)).get()
        return snap.to_dict() or {}

    def entry(self, user: str, sid: str, business: str = "") -> MessageEntry:
        """The message's entry as stored (an empty one, with no status, until it is written)."""
        return self.conversation(user, business).entry(sid) or MessageEntry()

    def failure(self, sid: str) -> dict[str, Any]:
        return self.db.collection("failed_messages").document(sid).get().to_dict() or {}


@pytest.fixture(scope="session")
def pipeline(stack: Stack) -> Iterator[Pipeline]:
    db = firestore.Client(project=stack.options.project)
    yield Pipeline(stack, db)
    db.close()


@pytest.fixture(autouse=True)
def _clean_stand_ins(stack: Stack) -> Iterator[None]:
    """Each test starts with no programmed faults and the default offline model."""
    yield
    if stack.twilio is not None:
        stack.twilio.clear_faults()
    if stack.openai is not None:
        stack.openai.reset()
