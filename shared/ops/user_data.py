"""A user's data for ``make admin``: find every conversation of a user, show it, erase it.

A user may have written to several of the deployment's numbers, or been
written to from one (the outbound API, a person's reply), and a number may
have no business profile (routed to the webhook without one, or its profile
deleted since). So a user's conversations are found by what each document
says about itself, not by the profiles that exist today: every conversation
carries ``userId``, a keyed id of the user alone (shared/domain/pseudonyms.py),
written by whichever write creates the document, and Firestore's automatic
single-field index answers ``userId == ...`` with one read per conversation
found. Older documents written before ``userId`` are still looked up by the
ids the default number and every profiled number give.

What erase keeps and promises is in docs/decisions/0012-business-controls.md
("Erase").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable

from shared.adapters.compare_and_set import ConversationStore
from shared.config import Settings
from shared.domain.conversation import Conversation
from shared.domain.pseudonyms import Pseudonyms
from shared.handlers.deps import Queue
from shared.ops.replay import DeadLetters

# Held dead letters looked at per erase; the hold subscription is normally empty.
HOLD_PULL_LIMIT = 1000


class AdminError(Exception):
    """The command cannot be done as asked; the message says why."""


@dataclass(frozen=True)
class AdminDeps:
    settings: Settings
    store: ConversationStore
    ids: Pseudonyms
    queue: Callable[[], Queue]
    clock: Callable[[], datetime]
    # The numbers with a profile (older conversations carry no userId and are found by these).
    businesses: Callable[[], Iterable[str]] = lambda: ()
    # The dead-letter hold subscription, whose copies of an erased user's messages go too.
    dead_letters: Callable[[], DeadLetters] | None = None


def when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else "-"


def conversations_of(deps: AdminDeps, user: str, business: str | None = None) -> dict[str, str]:
    """Conversation id → number for every conversation ``user`` may have (only ``business``'s when given).

    Ids that merely could exist (a profiled number the user never wrote to)
    are included; the caller reads each and skips what is absent.
    """
    if business is not None:
        return {deps.ids.conversation_id(user, business): business}
    found = deps.store.conversations_of(deps.ids.user_id(user))
    for candidate in sorted({deps.settings.twilio_whatsapp_from, *deps.businesses()}):
        found.setdefault(deps.ids.conversation_id(user, candidate), candidate)
    return found


def _label(business: str) -> str:
    return business or "an unknown number"


def show_conversation(deps: AdminDeps, user: str, cid: str, business: str, conv: Conversation) -> str:
    """One conversation: state, history and every tracked message, without the number."""
    now = deps.clock()
    rate = conv.rate
    lines = [
        f"conversation of {deps.ids.mask(user)} with {_label(business)} (id {cid[:16]}…)",
        f"  opted out: {'yes, since ' + when(conv.opted_out_at) if conv.opted_out else 'no'}",
        f"  paused for a person: {'until ' + when(conv.paused_until) if conv.paused(now) else 'no'}",
        f"  rate window: {rate.count if rate else 0} message(s) since {when(rate.start if rate else None)}"
        f"{', notice sent' if rate and rate.noticed else ''}",
        f"  expires: {when(conv.expire_at) if conv.expire_at else 'never (opted out)'}"
        f"{' (expired)' if conv.is_expired(now) else ''}",
        f"  order: lastSeq {conv.last_seq}, doneSeq {conv.done_seq}",
    ]
    history = conv.turns(now)
    lines.append(f"  history ({len(history)} turns):")
    for turn in history:
        who = "person" if turn.get("by") == "person" else turn.get("role", "?")
        lines.append(f"    {who:9}  {turn.get('content', '')}")
    lines.append(f"  messages ({len(conv.messages)}):")
    ordered = sorted(conv.messages.items(), key=lambda item: item[1].received_at or now)
    for sid, entry in ordered:
        decided = (entry.decided.reason or entry.decided.kind) if entry.decided else ""
        extra = [f"seq {entry.seq}"] if entry.seq is not None else []
        extra += [f"by {entry.by}"] if entry.by else []
        extra += [decided] if decided else []
        extra += [entry.reason] if entry.reason else []
        if entry.knowledge_version:
            extra += ["knowledge: unknown reply, nothing close enough" if entry.knowledge_unknown else
                      f"knowledge: {', '.join(entry.knowledge_chunks) or 'nothing close enough'}"]
        lines.append(f"    {sid:34}  {when(entry.received_at)}  {entry.status or '?':13}  {'; '.join(extra)}")
    return "\n".join(lines)


def show(deps: AdminDeps, user: str, business: str | None = None) -> str:
    """Every conversation of ``user`` (with ``business`` only, when given)."""
    blocks = []
    for cid, number in sorted(conversations_of(deps, user, business).items(), key=lambda item: item[1]):
        conv = deps.store.load(cid).conversation
        if conv.exists:
            blocks.append(show_conversation(deps, user, cid, number or conv.business, conv))
    if not blocks:
        return f"{deps.ids.mask(user)} has no conversation" + (f" with {business}" if business is not None else "")
    return "\n\n".join(blocks)


def keep_only_opt_out(conv: Conversation, business: str, user_id: str, now: datetime) -> None:
    """The conversation reduced to its opt-out, in one write: every other field goes in the same commit.

    Deleting the document and creating the opt-out again would be two
    writes: a crash, or a message claimed between them, would leave a fresh
    conversation that is answered, and the opt-out would be gone for good.
    What stays (``optedOut``, ``optedOutAt``, ``business``, ``userId``) is
    enough to never message the user again.
    """
    kept = Conversation(opted_out=True, opted_out_at=conv.opted_out_at or now, business=conv.business or business,
                        user_id=conv.user_id or user_id)
    for name in conv.__dataclass_fields__:
        if name not in ("exists", "new_markers", "erased"):
            setattr(conv, name, getattr(kept, name))


def _erase_conversation(deps: AdminDeps, user: str, cid: str, business: str) -> tuple[bool, bool]:
    """Erase one conversation (compare-and-set); returns (it existed, its opt-out was kept)."""
    def change(conv: Conversation) -> tuple[bool, bool]:
        if not conv.exists:
            return False, False
        if conv.open_entries():
            raise AdminError(f"{len(conv.open_entries())} message(s) of the conversation with {_label(business)} "
                             "are in flight; try again in a minute")
        if not conv.opted_out:
            conv.erased = True
            return True, False
        keep_only_opt_out(conv, business, deps.ids.user_id(user), deps.clock())
        return True, True

    return deps.store.update(cid, change, what="erasing it").result


def _erase_held(deps: AdminDeps, user: str, business: str | None) -> tuple[int, bool]:
    """Acknowledge the user's copies in the dead-letter hold subscription; (how many, whether it was full)."""
    if deps.dead_letters is None:
        return 0, False
    hold = deps.dead_letters()
    # No waiting: the hold is normally empty. May raise: the caller says what was erased before it.
    held = hold.pull(HOLD_PULL_LIMIT, wait=False)
    mine = [h.ack_id for h in held if h.message.sender == user and business in (None, h.message.recipient)]
    taken = set(mine)
    others = [h.ack_id for h in held if h.ack_id not in taken]
    if others:
        hold.release(others)
    if mine:
        hold.ack(mine)
    return len(mine), len(held) >= HOLD_PULL_LIMIT


def erase(deps: AdminDeps, user: str, business: str | None = None) -> str:
    """A user's data, on request: every conversation (with ``business`` only, when given), its failure
    records and the user's held dead letters; one report line per conversation.

    An opt-out is kept as a document with only ``optedOut``, ``optedOutAt``,
    ``business`` and ``userId``, so the user is still not messaged. A
    conversation with a message in flight is refused before anything is
    erased: its reply would lose the record that makes it exactly once.
    """
    mask = deps.ids.mask(user)
    targets = conversations_of(deps, user, business)
    for cid, number in targets.items():
        open_entries = deps.store.load(cid).conversation.open_entries()
        if open_entries:
            raise AdminError(f"{len(open_entries)} message(s) of the conversation with {_label(number)} are in flight; "
                             "nothing was erased; try again in a minute")
    lines, erased_failures = [], set()
    for cid, number in sorted(targets.items(), key=lambda item: item[1]):
        existed, kept = _erase_conversation(deps, user, cid, number)
        failures = deps.store.failures_of(cid)
        for sid in failures:
            deps.store.delete_failure(sid)
        erased_failures.update(failures)
        if existed or failures or business is not None:
            note = "; the opt-out is kept (no address, no history)" if kept else ""
            lines.append(f"erased {mask} at {_label(number)}: {'conversation' if existed else 'no conversation'}, "
                         f"{len(failures)} failure record(s){note}")
    if business is None:
        # Failure records outlive conversations: those of conversations gone already are found by their sender.
        rest = [sid for sid in deps.store.failures_of_sender(mask) if sid not in erased_failures]
        for sid in rest:
            deps.store.delete_failure(sid)
        if rest:
            lines.append(f"also deleted {len(rest)} failure record(s) of {mask} whose conversation is gone already")
    try:
        held, full = _erase_held(deps, user, business)
    except Exception as exc:
        raise AdminError("\n".join([*lines, f"could not reach the dead-letter hold subscription ({exc!r:.200}): "
                                    "the user's held messages stay until they expire; run erase again"])) from exc
    if held:
        lines.append(f"also removed {held} held copy(ies) of {mask}'s messages from the dead-letter hold subscription")
    if full:
        lines.append(f"the dead-letter hold subscription has {HOLD_PULL_LIMIT} or more messages: run erase again")
    return "\n".join(lines) or f"nothing of {mask} was found"
