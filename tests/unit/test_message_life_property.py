"""Random interleavings of the whole message path against the in-memory store, invariants after every step.

Hypothesis's stateful testing drives two users' messages through the real
handlers (processor, sender, reconciler, delivery ticks, dead letters,
replay) with the fakes of tests/fakes.py: deliveries in Pub/Sub's order per
user, duplicates of messages and of send tasks, crashes at each fault point
of the processor and the sender, Twilio refusing, failing or taking a part
without answering, time passing, reconciler runs and replays. After every
step it checks what the product promises:

* each message reaches a terminal status once (only a replayed dead letter
  leaves one, to end again), and never moves from one terminal status to another;
* each user's replies are finished in seq order (``doneSeq`` only grows, all
  below it are finished, a seq belongs to one message) and reach Twilio in
  that order;
* no reply is sent twice;
* no user is blocked beyond T: after a reconciler run, nothing is open past
  the liveness bound unless an attempt may still be in flight;

and, once the run stops and everything is drained, every message written
ended answered exactly once or recorded as failed with its reason.
Bounded in examples and steps, so it fits the suite's time budget
(MESSAGE_LIFE_EXAMPLES raises the bound for a deeper run).
"""

from __future__ import annotations

import base64
import os
from collections import Counter
from dataclasses import replace
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shared.adapters.cloud_tasks import SendTask
from shared.adapters.twilio_api import SendPermanent, SendRetryable, SendUncertain
from shared.config import Settings
from shared.domain.inbound import InboundMessage, StatusCallback
from shared.domain.lifecycle import DEAD_LETTERED, FINISHED, SENT
from shared.faults import FaultPoints, InjectedFault
from shared.handlers.delivery_status import PartNotRecordedYet, apply_status
from shared.handlers.deps import ProcessorDeps, SenderDeps
from shared.handlers.processor import handle_push
from shared.handlers.reconciler import ReconcilerDeps, reconcile
from shared.handlers.sender import handle_send_request
from shared.ops.replay import replay
from tests.fakes import BUSINESS, IDS, Clock, FakeModel, FakeQueue, FakeStore, FakeTwilio
from tests.unit.test_replay import FakeDeadLetters

USERS = ("whatsapp:+34600000001", "whatsapp:+34600000002")
SETTINGS = Settings(rate_limit_messages=10_000, send_max_attempts=4, max_open_messages=20)
MAIN = "projects/p/subscriptions/inbound-messages-processor"
DEAD = f"projects/p/subscriptions/{SETTINGS.dead_letter_subscription}"
PROCESSOR_FAULTS = ("after_claim", "after_ai", "after_save", "after_enqueue", "answer_commit_lost")
SENDER_FAULTS = ("before_send", "after_send")
TWILIO_TROUBLE = ("retryable", "uncertain, not taken", "uncertain, taken", "permanent")
LIVENESS = timedelta(seconds=SETTINGS.liveness_seconds)
GRACE = timedelta(seconds=SETTINGS.in_flight_grace_seconds)


def reply_to(text: str) -> str:
    return f"re: {text}"


class RecordingQueue(FakeQueue):
    """Cloud Tasks as the tests see it: every new task is pending until an attempt answers 2xx."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[SendTask] = []

    def enqueue(self, task):  # noqa: ANN001, ANN201
        created = super().enqueue(task)
        if created:
            self.pending.append(task)
        return created


class TroubledTwilio(FakeTwilio):
    """Twilio that may take a part and lose its answer (the sender must ask before sending again)."""

    def __init__(self) -> None:
        super().__init__()
        self.take_and_lose = 0

    def send(self, to: str, body: str, from_: str = "") -> str:
        sid = super().send(to, body, from_)
        if self.take_and_lose:
            self.take_and_lose -= 1
            raise SendUncertain("no answer from Twilio: ReadTimeout")
        return sid


def push(message: InboundMessage) -> dict:
    return {"data": base64.b64encode(message.to_json()).decode(), "messageId": message.sid}


class MessageLife(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.store, self.queue, self.twilio = FakeStore(), RecordingQueue(), TroubledTwilio()
        self.model = FakeModel(lambda history, text: reply_to(text))
        self.pdeps = ProcessorDeps(settings=SETTINGS, store=self.store, model=self.model, queue=self.queue,
                                   faults=FaultPoints(), clock=self.clock, ids=IDS)
        self.sdeps = SenderDeps(settings=SETTINGS, store=self.store, twilio=self.twilio, queue=self.queue,
                                faults=FaultPoints(), clock=self.clock)
        self.rdeps = ReconcilerDeps(settings=SETTINGS, store=self.store, queue=self.queue, clock=self.clock)
        self.inbox: dict[str, list[InboundMessage]] = {user: [] for user in USERS}  # Pub/Sub, in order per user
        self.acked: list[InboundMessage] = []
        self.held: list[InboundMessage] = []  # the dead-letter hold subscription
        self.done_tasks: list[SendTask] = []
        self.written: dict[str, InboundMessage] = {}
        # What the invariants remember between steps.
        self.terminal: dict[str, str] = {}
        self.ends: Counter[str] = Counter()
        self.reopens: Counter[str] = Counter()
        self.done_seq: dict[str, int] = {}
        self.seq_owner: dict[tuple[str, int], str] = {}
        self.sent_seqs: dict[str, list[int]] = {user: [] for user in USERS}

    # --- what happens -----------------------------------------------------------

    @rule(user=st.sampled_from(USERS))
    def user_writes(self, user: str) -> None:
        n = len(self.written) + 1
        message = InboundMessage(sid=f"SM{n:032x}", sender=user, recipient=BUSINESS, body=f"m{n}",
                                 received_at=self.clock().timestamp())
        self.written[message.sid] = message
        self.inbox[user].append(message)

    def _deliver(self, user: str, faults: FaultPoints) -> None:
        head = self.inbox[user][0]
        deps = replace(self.pdeps, faults=faults)
        try:
            handle_push(push(head), MAIN, deps)
        except Exception:
            return  # not acknowledged: Pub/Sub delivers it again, and nothing after it before that
        self.inbox[user].pop(0)
        self.acked.append(head)

    @precondition(lambda self: any(self.inbox.values()))
    @rule(user=st.sampled_from(USERS))
    def pubsub_delivers(self, user: str) -> None:
        if self.inbox[user]:
            self._deliver(user, FaultPoints())

    @precondition(lambda self: any(self.inbox.values()))
    @rule(user=st.sampled_from(USERS), point=st.sampled_from(PROCESSOR_FAULTS))
    def processor_crashes(self, user: str, point: str) -> None:
        if self.inbox[user]:
            self._deliver(user, FaultPoints((point,)))

    @precondition(lambda self: bool(self.acked))
    @rule(index=st.integers(min_value=0))
    def pubsub_delivers_a_duplicate(self, index: int) -> None:
        message = self.acked[index % len(self.acked)]
        try:
            handle_push(push(message), MAIN, self.pdeps)
        except Exception:
            pass

    @precondition(lambda self: any(self.inbox.values()))
    @rule(user=st.sampled_from(USERS))
    def pubsub_gives_up(self, user: str) -> None:
        if self.inbox[user]:
            head = self.inbox[user].pop(0)
            self.held.append(head)
            handle_push(push(head), DEAD, self.pdeps)

    @precondition(lambda self: bool(self.held))
    @rule()
    def operator_replays(self) -> None:
        hold = FakeDeadLetters(self.clock, *self.held)
        replay(self.store, IDS, hold, self.clock, SETTINGS.conversation_ttl_seconds,
               watch_after_seconds=SETTINGS.reconcile_after_seconds)
        self.held = []
        for message in hold.published:
            self.inbox[message.sender].append(message)

    def _run(self, task: SendTask, faults: FaultPoints) -> None:
        try:
            status, _ = handle_send_request(task.to_json(), replace(self.sdeps, faults=faults))
        except InjectedFault:
            return  # the sender died: Cloud Tasks tries the task again
        if status == 200 and task in self.queue.pending:
            self.queue.pending.remove(task)
            self.done_tasks.append(task)

    @precondition(lambda self: bool(self.queue.pending))
    @rule(index=st.integers(min_value=0))
    def cloud_tasks_runs_a_task(self, index: int) -> None:
        self._run(self.queue.pending[index % len(self.queue.pending)], FaultPoints())

    @precondition(lambda self: bool(self.queue.pending))
    @rule(index=st.integers(min_value=0), point=st.sampled_from(SENDER_FAULTS))
    def sender_crashes(self, index: int, point: str) -> None:
        self._run(self.queue.pending[index % len(self.queue.pending)], FaultPoints((point,)))

    @precondition(lambda self: bool(self.done_tasks))
    @rule(index=st.integers(min_value=0))
    def cloud_tasks_runs_a_task_again(self, index: int) -> None:
        handle_send_request(self.done_tasks[index % len(self.done_tasks)].to_json(), self.sdeps)

    @rule(trouble=st.sampled_from(TWILIO_TROUBLE))
    def twilio_has_trouble_with_the_next_send(self, trouble: str) -> None:
        if trouble == "uncertain, taken":
            self.twilio.take_and_lose = 1
        else:
            self.twilio.script.append({
                "retryable": SendRetryable("429 too many requests"),
                "uncertain, not taken": SendUncertain("connection reset"),
                "permanent": SendPermanent(21211, "invalid 'To' number"),
            }[trouble])

    @precondition(lambda self: bool(self.twilio.sent))
    @rule(index=st.integers(min_value=0), status=st.sampled_from(("sent", "delivered", "read", "undelivered")))
    def twilio_calls_back(self, index: int, status: str) -> None:
        to, _, twilio_sid = self.twilio.sent[index % len(self.twilio.sent)]
        try:
            apply_status(StatusCallback(sid=twilio_sid, status=status, recipient=to, sender=BUSINESS,
                                        error_code="30008" if status == "undelivered" else ""), self.pdeps)
        except PartNotRecordedYet:
            pass

    @rule(seconds=st.sampled_from((1, 30, 130, 200, 1000)))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def reconciler_runs(self) -> None:
        reconcile(self.rdeps)
        now = self.clock()
        for cid in self.store.docs:
            for sid, entry in self.store.conversation(cid).open_entries().items():
                in_flight = (entry.sending is not None and now - entry.sending.since < GRACE) or entry.lease_live(now)
                assert in_flight or now - (entry.received_at or now) < LIVENESS, f"{sid} left open past the bound"

    # --- what must hold ---------------------------------------------------------

    @invariant()
    def each_message_ends_once(self) -> None:
        for cid in self.store.docs:
            for sid, entry in self.store.conversation(cid).messages.items():
                if sid in self.terminal and entry.status != self.terminal[sid]:
                    assert self.terminal[sid] == DEAD_LETTERED and not entry.finished, (
                        f"{sid} went from {self.terminal[sid]} to {entry.status}")
                    del self.terminal[sid]
                    self.reopens[sid] += 1
                if entry.finished and sid not in self.terminal:
                    self.terminal[sid] = entry.status
                    self.ends[sid] += 1
                assert self.ends[sid] <= 1 + self.reopens[sid]

    @invariant()
    def replies_finish_in_order(self) -> None:
        for cid in self.store.docs:
            conv = self.store.conversation(cid)
            assert conv.done_seq >= self.done_seq.get(cid, 0), "doneSeq went back"
            self.done_seq[cid] = conv.done_seq
            for sid, entry in conv.messages.items():
                if entry.seq is None:
                    continue
                assert self.seq_owner.setdefault((cid, entry.seq), sid) == sid, "two messages with one seq"
                if entry.seq <= conv.done_seq:
                    assert entry.finished, f"{sid} is below doneSeq and not finished"
                if entry.seq == conv.done_seq + 1:
                    assert not entry.finished, f"doneSeq lags behind {sid}, which is finished"

    @invariant()
    def no_reply_is_sent_twice_and_none_out_of_order(self) -> None:
        bodies = Counter(body for _, body, _ in self.twilio.sent)
        assert all(count == 1 for count in bodies.values()), bodies
        for user in USERS:
            seqs = []
            conv_id = IDS.conversation_id(user, BUSINESS)
            if conv_id not in self.store.docs:
                continue
            by_body = {reply_to(m.body): m.sid for m in self.written.values() if m.sender == user}
            conv = self.store.conversation(conv_id)
            for to, body, _ in self.twilio.sent:
                entry = conv.entry(by_body.get(body, ""))
                if to == user and entry is not None and entry.seq is not None:
                    seqs.append(entry.seq)
            assert seqs == sorted(seqs), f"{user}'s replies reached Twilio out of order: {seqs}"

    # --- and in the end ---------------------------------------------------------

    def teardown(self) -> None:
        """Drain: no more faults, time passes, everything runs until nothing is left."""
        self.twilio.script.clear()
        self.twilio.take_and_lose = 0
        for _ in range(40):
            for user in USERS:
                while self.inbox[user] and self._drained_one(user):
                    pass
            for task in list(self.queue.pending):
                self._run(task, FaultPoints())
            self.clock.advance(200)
            reconcile(self.rdeps)
        assert not any(self.inbox.values()) and not self.queue.pending
        for cid in self.store.docs:
            conv = self.store.conversation(cid)
            assert conv.done_seq == conv.last_seq and not conv.open_entries() and conv.watch is None
        for sid, message in self.written.items():
            conv = self.store.conversation(IDS.conversation_id(message.sender, BUSINESS)) \
                if IDS.conversation_id(message.sender, BUSINESS) in self.store.docs else None
            entry = conv.entry(sid) if conv is not None else None
            if entry is None:
                assert self.store.failures.get(sid, {}).get("status") == DEAD_LETTERED, f"{sid} was lost"
                continue
            assert entry.status in FINISHED, f"{sid} never ended ({entry.status})"
            sends = [body for _, body, _ in self.twilio.sent if body == reply_to(message.body)]
            if entry.status == SENT:
                assert len(sends) == 1, f"{sid} is sent but Twilio has {len(sends)} of it"
            else:
                assert entry.reason, f"{sid} ended {entry.status} without a reason"
                assert len(sends) <= 1

    def _drained_one(self, user: str) -> bool:
        before = len(self.inbox[user])
        self._deliver(user, FaultPoints())
        return len(self.inbox[user]) < before


TestMessageLife = MessageLife.TestCase
TestMessageLife.settings = settings(
    max_examples=int(os.environ.get("MESSAGE_LIFE_EXAMPLES", "200")),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
