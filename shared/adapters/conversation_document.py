"""The conversation document's shape in Firestore: the one place its field names are written.

:func:`from_document` reads a document into the typed records of
shared/domain/ (Conversation, MessageEntry), :func:`to_document` writes them
back, and :func:`field_updates` is the write that turns the document as read
into the document as changed: dotted field paths, so one compare-and-set
``update`` changes only what changed (``messages.{sid}.status``, ``doneSeq``,
...). The shape is unchanged from the dict-based code before (the chat page,
``make admin`` and ``make failures`` read it): docs/decisions/0004.

Empty values are absent fields. Fields this version does not know are kept
as they were, so an older and a newer version can share a document.
"""

from __future__ import annotations

from datetime import datetime
from collections.abc import Mapping
from typing import Any

from shared.domain.conversation import Conversation, RateWindow
from shared.domain.entry import Decided, MessageEntry, SendingMark
from shared.domain.proposals import PendingConfirmation
from shared.domain.tool_ledger import Ledger


class _Delete:
    """Marker value of :func:`field_updates`: delete this field (Firestore's DELETE_FIELD)."""

    def __repr__(self) -> str:
        return "DELETE"


DELETE = _Delete()

# Python attribute -> document field, in the order a document lists them.
CONVERSATION_FIELDS = {
    "address": "address", "business": "business", "user_id": "userId", "history": "history",
    "expire_at": "expireAt", "last_seq": "lastSeq", "done_seq": "doneSeq", "watch": "watch",
    "opted_out": "optedOut", "opted_out_at": "optedOutAt", "rate": "rate", "paused_until": "pausedUntil",
    "last_inbound_at": "lastInboundAt", "updated_at": "updatedAt", "pending_tool": "pendingTool",
    "offer": "offer", "profile_name": "profileName",
}
MESSAGES = "messages"
ENTRY_FIELDS = {
    "status": "status", "received_at": "receivedAt", "updated_at": "updatedAt", "lease_until": "leaseUntil",
    "attempts": "attempts", "decided": "decided", "last_error": "lastError", "reason": "reason", "seq": "seq",
    "parts": "parts", "sent_parts": "sentParts", "part_count": "partCount", "fallback": "fallback", "by": "by",
    "content_sid": "contentSid", "content_variables": "contentVariables", "sending": "sending",
    "send_attempts": "sendAttempts", "twilio_sids": "twilioSids", "late_twilio_sids": "lateTwilioSids",
    "deliveries": "deliveries", "delivery_errors": "deliveryErrors", "nudges": "nudges", "text": "text",
    "burst_due": "burstDue", "burst_version": "burstVersion", "burst_members": "burstMembers",
    "business": "business", "burst": "burst", "answered_by": "answeredBy", "replays": "replays",
    "tool_ledger": "toolLedger",
    "choices": "choices",
    "knowledge_version": "knowledgeVersion", "knowledge_chunks": "knowledgeChunks",
    "knowledge_unknown": "knowledgeUnknown",
    "usage": "usage",
}
_DATES = {"expire_at", "watch", "opted_out_at", "paused_until", "last_inbound_at", "updated_at", "received_at",
          "lease_until", "burst_due"}
_INTS = {"last_seq", "done_seq", "attempts", "sent_parts", "part_count", "send_attempts", "nudges",
         "burst_version", "replays"}
_BOOLS = {"opted_out", "fallback", "knowledge_unknown"}
_LISTS = {"parts", "twilio_sids", "late_twilio_sids", "burst_members", "knowledge_chunks"}
_MAPS = {"deliveries", "delivery_errors"}
_JSON = {"choices", "offer", "usage"}  # stored as given (an offer: texts, lists of choices)


def _date(value: Any) -> datetime | None:
    return value if isinstance(value, datetime) else None


def _read(attribute: str, value: Any) -> Any:
    if attribute in _DATES:
        return _date(value)
    if attribute in _INTS:
        return int(value or 0)
    if attribute in _BOOLS:
        return bool(value)
    if attribute in _LISTS:
        return [str(v) for v in value or []]
    if attribute in _MAPS:
        return {str(k): str(v) for k, v in (value or {}).items()}
    if attribute in _JSON:
        return _copy(dict(value)) if isinstance(value, Mapping) else {}
    return "" if value is None else str(value)


def _entry(raw: Mapping[str, Any]) -> MessageEntry:
    known = {field: raw[name] for field, name in ENTRY_FIELDS.items() if name in raw}
    values: dict[str, Any] = {}
    for field, value in known.items():
        if field == "seq":
            values[field] = None if value is None else int(value)
        elif field == "decided":
            values[field] = _decided(value)
        elif field == "sending":
            values[field] = _sending(value)
        elif field == "tool_ledger":
            values[field] = Ledger.from_data(value) if isinstance(value, Mapping) and value else None
        else:
            values[field] = _read(field, value)
    extra = {k: _copy(v) for k, v in raw.items() if k not in ENTRY_FIELDS.values()}
    return MessageEntry(**values, extra=extra)


def _decided(value: Any) -> Decided | None:
    if not isinstance(value, Mapping) or not value:
        return None
    return Decided(kind=str(value.get("kind", "")), reason=str(value.get("reason", "")), reply=str(value.get("reply", "")),
                   history=bool(value.get("history", False)), welcome=str(value.get("welcome", "")))


def _sending(value: Any) -> SendingMark | None:
    if not isinstance(value, Mapping) or "part" not in value or _date(value.get("since")) is None:
        return None
    return SendingMark(part=int(value["part"]), since=value["since"], task=str(value.get("task", "")))


def from_document(data: Mapping[str, Any] | None) -> Conversation:
    """The typed conversation of a document (None: no document)."""
    if data is None:
        return Conversation()
    values: dict[str, Any] = {}
    for field, name in CONVERSATION_FIELDS.items():
        if name not in data:
            continue
        value = data[name]
        if field == "history":
            values[field] = [dict(turn) for turn in value or []]
        elif field == "rate":
            values[field] = _rate(value)
        elif field == "pending_tool":
            values[field] = PendingConfirmation.from_data(value) if isinstance(value, Mapping) else None
        else:
            values[field] = _read(field, value)
    messages = {str(sid): _entry(raw) for sid, raw in (data.get(MESSAGES) or {}).items() if isinstance(raw, Mapping)}
    extra = {k: _copy(v) for k, v in data.items() if k not in CONVERSATION_FIELDS.values() and k != MESSAGES}
    return Conversation(**values, messages=messages, extra=extra, exists=True)


def _rate(value: Any) -> RateWindow | None:
    if not isinstance(value, Mapping):
        return None
    return RateWindow(start=_date(value.get("start")), count=int(value.get("count", 0) or 0),
                      noticed=bool(value.get("noticed", False)))


def _write(field: str, value: Any) -> Any:
    """The stored form of one attribute; None for an absent field."""
    if isinstance(value, RateWindow):
        return {"start": value.start, "count": value.count, "noticed": value.noticed}
    if isinstance(value, Decided):
        out: dict[str, Any] = {"kind": value.kind, "reason": value.reason}
        if value.reply:
            out["reply"] = value.reply
        if value.history:
            out["history"] = True
        if value.welcome:
            out["welcome"] = value.welcome
        return out
    if isinstance(value, SendingMark):
        return {"part": value.part, "since": value.since, "task": value.task}
    if isinstance(value, (Ledger, PendingConfirmation)):
        return value.to_data() if not isinstance(value, Ledger) or value.rounds or value.note else None
    if field == "history":
        return None if value is None else [dict(turn) for turn in value]
    if value is None or value is False or value == "" or value == [] or value == {}:
        return None
    if field in _INTS and value == 0:
        return None
    return list(value) if isinstance(value, list) else dict(value) if isinstance(value, dict) else value


def entry_document(entry: MessageEntry) -> dict[str, Any]:
    out: dict[str, Any] = {k: _copy(v) for k, v in entry.extra.items()}
    for field, name in ENTRY_FIELDS.items():
        value = getattr(entry, field)
        if field == "sent_parts":
            # Written with the answer, 0 included, and kept while the entry has its seq.
            stored = value if entry.seq is not None else None
        else:
            stored = _write(field, value)
        if stored is not None:
            out[name] = stored
    return out


def to_document(conv: Conversation) -> dict[str, Any]:
    """The document of a typed conversation: the inverse of :func:`from_document`."""
    out: dict[str, Any] = {k: _copy(v) for k, v in conv.extra.items()}
    for field, name in CONVERSATION_FIELDS.items():
        stored = _write(field, getattr(conv, field))
        if stored is not None:
            out[name] = stored
    if conv.messages:
        out[MESSAGES] = {sid: entry_document(entry) for sid, entry in conv.messages.items()}
    return out


def field_updates(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The dotted field paths (value, or DELETE) that turn document ``before`` into ``after``.

    Entries are compared field by field (``messages.{sid}.{field}``); a new
    entry is written whole, a pruned one deleted whole.
    """
    updates: dict[str, Any] = {}
    for key in sorted((before.keys() | after.keys()) - {MESSAGES}):
        if key not in after:
            updates[key] = DELETE
        elif key not in before or before[key] != after[key]:
            updates[key] = after[key]
    old: Mapping[str, Any] = before.get(MESSAGES) or {}
    new: Mapping[str, Any] | None = after.get(MESSAGES)
    if new is None:
        if MESSAGES in before:
            updates[MESSAGES] = DELETE
        return updates
    for sid in sorted(old.keys() | new.keys()):
        path = f"{MESSAGES}.{sid}"
        if sid not in new:
            updates[path] = DELETE
        elif sid not in old or not isinstance(old[sid], Mapping):
            updates[path] = new[sid]
        else:
            was, now = old[sid], new[sid]
            for name in sorted(was.keys() | now.keys()):
                if name not in now:
                    updates[f"{path}.{name}"] = DELETE
                elif name not in was or was[name] != now[name]:
                    updates[f"{path}.{name}"] = now[name]
    return updates


def apply_field_updates(document: Mapping[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` as Firestore leaves it after ``updates`` (a copy; the original is untouched)."""
    data: dict[str, Any] = _copy(dict(document))
    for path, value in updates.items():
        *parents, leaf = path.split(".")
        if value is DELETE:
            # Like DELETE_FIELD: deleting under a missing map is a no-op and creates no map.
            parent: Any = data
            for key in parents:
                parent = parent.get(key) if isinstance(parent, dict) else None
            if isinstance(parent, dict):
                parent.pop(leaf, None)
            continue
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = _copy(value)
    return data


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
