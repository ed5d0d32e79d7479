"""In-memory stand-ins for the adapters, for unit tests of the core (no I/O)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping

from shared.adapters import usage_meter
from shared.adapters.cloud_tasks import BurstTask, SendTask
from shared.adapters.compare_and_set import CompareAndSetStore, Conflict, DedupeMarker, OpCounter, Write
from shared.adapters.conversation_document import DELETE, apply_field_updates, from_document
from shared.domain.choices import Offer
from shared.domain.conversation import Conversation
from shared.domain.budgets import Spend
from shared.domain.pseudonyms import Pseudonyms
from shared.domain.usage import CHAT, day_key, month_key

# The unit tests' address key; ids and masks are keyed as in production.
IDS = Pseudonyms("unit-test-address-hash-key")
BUSINESS = "whatsapp:+14155238886"


def conversation_id(address: str, business: str = BUSINESS) -> str:
    """The conversation of ``address`` with the business the unit tests write to."""
    return IDS.conversation_id(address, business)


def nested(updates: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted field paths as a nested document (a test writing a document as another writer would)."""
    return apply_field_updates({}, {path: value for path, value in updates.items() if value is not DELETE})


class FakeStore(CompareAndSetStore):
    """FirestoreStore's two primitives in memory, with integer versions: the same compare-and-set helper
    runs on top, and documents are kept and changed in Firestore's shape (field paths applied to dicts)."""

    def __init__(self) -> None:
        self.docs: dict[str, tuple[dict[str, Any], int]] = {}
        self.failures: dict[str, dict[str, Any]] = {}
        self.markers: dict[str, DedupeMarker] = {}
        self.counts: list[Any] = []  # usage counts committed (shared/domain/usage.py's Count)
        self.ops = OpCounter()
        self._lock = threading.Lock()
        self._clock = 0
        self.before_apply: Callable[[str], None] | None = None
        # Commits whose answer is lost: written, then reported as a conflict,
        # as Firestore does when the client retries a commit that went through.
        self.lose_answers = 0

    def _read(self, conversation_id: str) -> tuple[dict[str, Any] | None, Any]:
        self.ops.add(reads=1)
        with self._lock:
            if conversation_id not in self.docs:
                return None, None
            data, version = self.docs[conversation_id]
            return apply_field_updates(data, {}), version

    def _commit(self, conversation_id: str, write: Write, version: Any) -> Any:
        if self.before_apply:
            self.before_apply(conversation_id)
        markers = write.markers
        self.ops.add(writes=1 + len(markers) + len(write.counts), markers=len(markers), counts=len(write.counts))
        with self._lock:
            if any(marker.sid in self.markers for marker in markers):
                raise Conflict("marker exists")
            current = self.docs.get(conversation_id)
            if write.create is not None:
                if current is not None:
                    raise Conflict("exists")
                data: dict[str, Any] | None = apply_field_updates(write.create, {})
            else:
                if current is None or current[1] != version:
                    raise Conflict("changed")
                data = None if write.delete else apply_field_updates(current[0], write.updates or {})
            self._clock += 1
            if data is None:
                del self.docs[conversation_id]
            else:
                self.docs[conversation_id] = (data, self._clock)
            for marker in markers:
                self.markers[marker.sid] = marker
            for count in write.counts:
                self.counts.append(count)
            if self.lose_answers:
                self.lose_answers -= 1
                raise Conflict("FAILED_PRECONDITION on the retried commit")
            return self._clock

    def apply(self, conversation_id: str, updates: Mapping[str, Any], version: Any) -> Any:
        """A raw write of field paths, as another writer (or an older version) would make it."""
        write = Write(create=nested(updates)) if version is None else Write(updates=dict(updates))
        return self._commit(conversation_id, write, version)

    def seen(self, sid: str) -> bool:
        self.ops.add(reads=1)
        return sid in self.markers

    def due_conversations(self, now: datetime, limit: int) -> list[str]:
        with self._lock:
            due = sorted((data["watch"], cid) for cid, (data, _) in self.docs.items() if data.get("watch") and data["watch"] <= now)
        self.ops.add(reads=max(1, len(due[:limit])))
        return [cid for _, cid in due[:limit]]

    def delete(self, conversation_id: str) -> None:
        """What Firestore's TTL policy does to an expired conversation."""
        with self._lock:
            self.docs.pop(conversation_id, None)

    def record_failure(self, sid: str, record: Mapping[str, Any]) -> None:
        self.ops.add(writes=1)
        self.failures[sid] = dict(record)

    def failure(self, sid: str) -> dict[str, Any] | None:
        self.ops.add(reads=1)
        return dict(self.failures[sid]) if sid in self.failures else None

    def failures_of(self, conversation_id: str) -> list[str]:
        return [sid for sid, r in self.failures.items() if r.get("conversation") == conversation_id]

    def failures_of_sender(self, masked_sender: str) -> list[str]:
        return [sid for sid, r in self.failures.items() if masked_sender and r.get("sender") == masked_sender]

    def conversations_of(self, user_id: str) -> dict[str, str]:
        found = {cid: str(data.get("business", "")) for cid, (data, _) in self.docs.items() if data.get("userId") == user_id}
        self.ops.add(reads=max(1, len(found)))
        return found

    def delete_failure(self, sid: str) -> None:
        self.failures.pop(sid, None)

    def list_failures(self, limit: int = 100) -> list[dict[str, Any]]:
        return [dict(r, sid=sid) for sid, r in list(self.failures.items())[:limit]]

    def conversation(self, conversation_id: str) -> Conversation:
        return from_document(self.docs[conversation_id][0])

    def document(self, conversation_id: str) -> dict[str, Any]:
        """The stored document, as Firestore would hold it (what the chat page and ops tools read)."""
        return apply_field_updates(self.docs[conversation_id][0], {})


class FakeUsageBook:
    """The usage counters over a FakeStore's committed counts, read (and counted) on every call: no cache."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.reads = 0
        self.alerts: set[tuple[str, str]] = set()
        self.alerted: list[tuple[str, str]] = []

    def spend(self, business: str, now: datetime) -> Spend:
        self.reads += 1
        month = [c for c in self.store.counts if c.business == business and c.month == month_key(now)]
        day = [c for c in month if c.day == day_key(now)[-2:]]
        return Spend(sum(c.usage.tokens for c in day), sum(c.usage.cost_usd for c in month))

    def alert_once(self, business: str, now: datetime) -> bool:
        key = (business, day_key(now))
        self.alerted.append(key)
        if key in self.alerts:
            return False
        self.alerts.add(key)
        return True


class FakeModel:
    def __init__(self, reply: str | Callable[[list[dict[str, str]], str], str] = "Hello!") -> None:
        self._reply = reply
        self.calls: list[tuple[list[dict[str, str]], str]] = []
        # The business's system prompt and model name of each call.
        self.options: list[dict[str, str | None]] = []
        # The time budget each call was given (None: the model's whole budget).
        self.budgets: list[float | None] = []
        self.error: Exception | None = None
        self.offer: Offer | None = None
        self.choice_calls = 0
        # (prompt, completion) tokens each call reports, as the API's ``usage`` (None: it reports none).
        self.usage: tuple[int, int] | None = None

    def reply(
        self, history: list[dict[str, str]], user_text: str, system_prompt: str | None = None, model: str | None = None,
        budget_seconds: float | None = None,
    ) -> str:
        self.calls.append((history, user_text))
        self.options.append({"system_prompt": system_prompt, "model": model})
        self.budgets.append(budget_seconds)
        if self.error is not None:
            raise self.error
        if self.usage is not None:
            usage_meter.note(CHAT, model or "gpt-4o-mini", {"prompt_tokens": self.usage[0],
                                                            "completion_tokens": self.usage[1]})
        return self._reply(history, user_text) if callable(self._reply) else self._reply

    def reply_or_choices(
        self, history: list[dict[str, str]], user_text: str, system_prompt: str | None = None, model: str | None = None,
        budget_seconds: float | None = None,
    ) -> tuple[str, Offer | None]:
        """As :meth:`reply`, with ``offer`` (set by a test) as the model's reply_with_choices call."""
        self.choice_calls += 1
        text = self.reply(history, user_text, system_prompt, model, budget_seconds)
        return (self.offer.body, self.offer) if self.offer is not None else (text, None)


class FakeQueue:
    def __init__(self) -> None:
        self.tasks: dict[str, SendTask | BurstTask] = {}
        self.attempts = 0
        self.error: Exception | None = None

    def enqueue(self, task: SendTask | BurstTask) -> bool:
        self.attempts += 1
        if self.error is not None:
            raise self.error
        if task.task_id in self.tasks:
            return False
        self.tasks[task.task_id] = task
        return True


class FakeTwilio:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.froms: list[str] = []
        self.script: list[Exception | None] = []
        self.lookups = 0
        self.templates: list[tuple[str, str, str]] = []
        # Twilio's SIDs of the templates, in order; the next ``lost_answers`` template sends are
        # taken by Twilio but their answer is lost (SendUncertain), as after a read time-out.
        self.template_sids: list[str] = []
        self.lost_answers = 0

    def send(self, to: str, body: str, from_: str = "") -> str:
        self.froms.append(from_)
        if self.script:
            outcome = self.script.pop(0)
            if outcome is not None:
                raise outcome
        sid = f"SM{len(self.sent):032x}"
        self.sent.append((to, body, sid))
        return sid

    def send_template(self, to: str, content_sid: str, content_variables: str = "", from_: str = "") -> str:
        self.froms.append(from_)
        sid = f"SM{len(self.sent) + len(self.templates) + 100:032x}"
        self.templates.append((to, content_sid, content_variables))
        self.template_sids.append(sid)
        if self.lost_answers:
            self.lost_answers -= 1
            from shared.adapters.twilio_api import SendUncertain

            raise SendUncertain("no answer from Twilio: ReadTimeout")
        return sid

    def find_sent(
        self, to: str, body: str, since: datetime, exclude: frozenset[str] = frozenset(), from_: str = "",
        template: str = "",
    ) -> str | None:
        """Like Twilio's list: a template's rendered body is unknown to the caller, so it matches by recipient."""
        self.lookups += 1
        if template:
            for (sent_to, _, _), sid in zip(reversed(self.templates), reversed(self.template_sids)):
                if sent_to == to and sid not in exclude:
                    return sid
            return None
        for sent_to, sent_body, sid in reversed(self.sent):
            if sent_to == to and sent_body == body and sid not in exclude:
                return sid
        return None


class Clock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
