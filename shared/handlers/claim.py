"""The answer path's first step for an inbound message: decide, and claim it, in one write.

One compare-and-set on the conversation (shared/adapters/compare_and_set.py)
that says what becomes of this delivery:

* a message seen before is not taken on again: a finished one is a
  duplicate, an answered one only has its send task made sure of, a burst
  member its burst's task; one claimed elsewhere under a live lease waits
  (MessageBusy: Pub/Sub delivers it again later);
* otherwise the business controls decide (shared/domain/controls.py) and the
  same write records it: ``ignored`` at once, a burst started or joined
  (shared/domain/bursts.py), or ``processing`` under a lease, to be answered.

The first claim also creates the dedupe marker in the same commit, so a
redelivery is recognised however late it comes (docs/decisions/0008-liveness.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from shared.adapters.compare_and_set import Snapshot
from shared.domain import bursts, claims, tool_events
from shared.domain.choice_answers import route_for, with_choices
from shared.domain.controls import IGNORE, MODEL, Decision, decide, within_budget
from shared.domain.conversation import Conversation
from shared.domain.turns import cap_text
from shared.domain.inbound import InboundMessage, describe_for_model
from shared.domain.lifecycle import JOINED, PROCESSING, WAITING_BURST
from shared.domain.profiles import BusinessProfile, profile_value
from shared.domain.proposals import CONFIRM, NO_PROPOSAL, answer_to_proposal
from shared.handlers.deps import ProcessorDeps

# What the claim found or did.
CLAIMED = "claimed"  # ours to answer: the answer path goes on
IGNORED = "ignored"  # recorded, not answered
BURST = "burst"  # waiting for its burst's window (head), or joined it
DUPLICATE = "duplicate"  # finished already
LATE_DUPLICATE = "late duplicate"  # taken on long ago: its entry is gone, its dedupe marker is not
ANSWERED = "answered"  # answered already: its send task is made sure of
IN_BURST = "in burst"  # a member of an open burst seen again


class MessageBusy(Exception):
    """Another delivery of this message holds a live lease, or an earlier one must finish first; Pub/Sub retries."""


@dataclass(frozen=True)
class Claim:
    outcome: str
    snapshot: Snapshot  # the document as the claim left it: the answer write starts from it, no read added
    decision: Decision | None = None
    now: datetime | None = None
    head: str = ""  # the burst head (BURST, IN_BURST)
    status: str = ""  # the entry's status when the message was seen before

    @property
    def conversation(self) -> Conversation:
        return self.snapshot.conversation


def has_content(msg: InboundMessage) -> bool:
    """Something besides text arrived (media, a location, a button): never an empty message or a command."""
    return bool(msg.media or (msg.latitude and msg.longitude) or msg.tap_payload)


def claim_message(msg: InboundMessage, deps: ProcessorDeps, profile: BusinessProfile, conversation_id: str,
                  spent: bool = False) -> Claim:
    """Decide and claim ``msg`` (its body already cleaned), or say why it is not ours to answer now.

    ``spent``: the business's model budget is (shared/handlers/usage_turn.py): a model turn gets its budget reply,
    except the yes to a proposed write, which runs what the user approved."""
    settings, store, limits = deps.settings, deps.store, deps.limits
    window = float(profile_value(profile, "burst_window_seconds", settings.burst_window_seconds))
    user_id = deps.ids.user_id(msg.sender)
    text = cap_text(describe_for_model(msg), settings.max_inbound_chars)
    marked = False

    def change(conv: Conversation) -> tuple[str, Decision | None, datetime | None, str, str]:
        nonlocal marked
        entry = conv.entry(msg.sid)
        if entry is None and marked and store.seen(msg.sid):
            # Our marker's commit lost a race with an earlier claim: taken on long ago, entry pruned or expired.
            return LATE_DUPLICATE, None, None, "", "seen"
        if entry is not None:
            if entry.finished:
                return DUPLICATE, None, None, "", entry.status
            if entry.to_send:
                return ANSWERED, None, None, "", entry.status
            if entry.status in (WAITING_BURST, JOINED) or (entry.status == PROCESSING and entry.is_burst_head):
                return IN_BURST, None, None, entry.burst if entry.status == JOINED else msg.sid, entry.status
        now = deps.clock()
        if entry is not None and entry.status == PROCESSING and entry.lease_live(now):
            raise MessageBusy(f"message {msg.sid} is being processed by another delivery")
        if entry is None and len(conv.open_entries()) >= settings.max_open_messages:
            raise MessageBusy(f"{settings.max_open_messages} earlier messages of this conversation are still unfinished")
        # A re-claim (the lease of an earlier delivery ran out) keeps the first claim's decision.
        first_claim = entry is None or entry.status != PROCESSING
        decision = (decide(msg.body, has_content(msg), profile, conv, now, msg.sender, settings.conversation_ttl_seconds)
                    if first_claim else Decision.recorded(entry))  # type: ignore[arg-type]
        if first_claim:  # a tap, a typed "2" or a menu's keyword (shared/domain/choice_answers.py)
            decision = with_choices(decision, route_for(msg, profile, conv), profile, now)
            confirming = answer_to_proposal(conv.pending_tool, msg.body, now, profile.confirm_keywords) == CONFIRM
            decision = within_budget(decision, profile.budget, spent and not confirming)
        if entry is None:
            conv.new_markers[msg.sid] = now + timedelta(seconds=settings.dedupe_horizon_seconds)
            marked = True
        claims.note_inbound(conv, datetime.fromtimestamp(msg.received_at, timezone.utc) if msg.received_at > 0 else now)
        claims.note_profile_name(conv, msg.profile_name)
        claims.take_on(conv, msg.sid, decision, now, limits, address=msg.sender, business=msg.recipient,
                       user_id=user_id, user_text=text, first_claim=first_claim)
        # The next message after a proposed write confirms or drops it, in this write (a yes never joins a burst).
        settled = tool_events.settle_proposal(conv, msg.sid, msg.body, now, profile.confirm_keywords) \
            if first_claim else NO_PROPOSAL
        if decision.kind == IGNORE:
            return IGNORED, decision, now, "", ""
        joinable = (window > 0 and first_claim and decision.kind == MODEL and not decision.welcome and not msg.media
                    and settled != CONFIRM)
        plan = bursts.plan(conv, joinable, now)
        if plan == bursts.WAIT:
            raise MessageBusy("an earlier burst of this conversation is not answered yet")
        if plan == bursts.START:
            bursts.start(conv, msg.sid, now, window, text, msg.recipient)
            return BURST, decision, now, msg.sid, ""
        if plan == bursts.JOIN:
            head, _ = bursts.join(conv, msg.sid, now, window, text)
            return BURST, decision, now, head, ""
        return CLAIMED, decision, now, "", ""

    saved = store.update(conversation_id, change, what=f"claiming {msg.sid}")
    outcome, decision, now, head, status = saved.result
    return Claim(outcome, saved.snapshot, decision, now, head, status)
