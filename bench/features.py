"""Figure 8: what each channel feature costs per message, and the latency a burst window adds.

Decision 0011 worked the per-feature costs out from the code; this measures
them on the running stack with the same usage lines as figure 4, one batch of
sequential messages from distinct users per feature, each next to a plain text
message. Features the rest of the bench keeps off (status callbacks, typing,
bursts) are switched on by restarting only the functions that read the setting,
and switched back before the figure ends, so later figures see the usual stack.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench import cost
from bench.driver import Driver
from devstack.twilio_stub import STATUS_SEQUENCE, SentMessage

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
VOICE = b"OggS\x00\x02" + bytes(range(200))
REPLY_TIMEOUT_SECONDS = 30.0
BURST_WINDOW_SECONDS = 1.0
BURST_MESSAGES = 3
BURST_GAP_SECONDS = 0.2
START_DELAY_SECONDS = 0.3
CHOICES_KEYWORD = "f8menu"
# Counters compared with figure 4's text message: the profile cache and Secret Manager are not per message.
SAME_AS_TEXT = ("firestore_reads", "firestore_writes", "pubsub_publishes", "tasks_created", "openai_calls",
                "twilio_calls", "twilio_media_downloads", "twilio_typing_calls")


@dataclass
class FeatureRun:
    """Per-feature cost sections (as figure 4's) and the burst latencies (s)."""

    costs: dict[str, dict[str, Any]] = field(default_factory=dict)
    callbacks_posted: int = 0
    single: list[float] = field(default_factory=list)
    burst: list[float] = field(default_factory=list)
    burst_replies: list[int] = field(default_factory=list)


def _replies_to(driver: Driver, user: str) -> list[SentMessage]:
    return [m for m in driver.twilio.messages if m.to == user]


def _wait_replies(driver: Driver, user: str, count: int, timeout: float = REPLY_TIMEOUT_SECONDS) -> SentMessage:
    """The ``count``-th message the stand-in sent to ``user``; commands and media answers carry no marker."""
    deadline = time.monotonic() + timeout
    while True:
        got = _replies_to(driver, user)
        if len(got) >= count:
            return got[count - 1]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RuntimeError(f"figure 8: no reply {count} to {user} within {timeout:g}s")
        driver.twilio.wait_for(len(driver.twilio.messages) + 1, timeout=min(remaining, 0.5))


def _post(driver: Driver, user: str, text: str, sid: str | None = None, **extra: str) -> float:
    """One signed inbound message, not booked (figure 6 counts marker replies only); its POST start."""
    prepared = driver.prepare(user, text, sid=sid, **extra)
    outcome = driver.send(prepared, book=False)
    if outcome.status != 200:
        raise RuntimeError(f"figure 8: the webhook answered {outcome.status}")
    return outcome.started


def _media(driver: Driver, data: bytes, content_type: str) -> dict[str, str]:
    stored = driver.twilio.add_media(data, content_type)
    return {"sid": stored.message_sid, "NumMedia": "1", "MediaUrl0": stored.url, "MediaContentType0": content_type,
            "MessageType": content_type.split("/")[0]}


def _wait_processed(log_dir: Path, before: cost.Mark, requests: int, timeout: float = REPLY_TIMEOUT_SECONDS) -> None:
    """Until the processor logged ``requests`` more usage lines: ignored messages have no reply to wait for."""
    deadline = time.monotonic() + timeout
    while cost.mark(log_dir).lines["processor"] - before.lines["processor"] < requests:
        if time.monotonic() > deadline:
            raise RuntimeError("figure 8: the processor did not handle the ignored messages in time")
        time.sleep(0.05)


def _batch(driver: Driver, log_dir: Path, n: int, tag: str, one: Callable[[str, int], None],
           settle: Callable[[cost.Mark], None] | None = None) -> dict[str, Any]:
    """``n`` messages, one per new user and one at a time, between two settled marks."""
    before = cost.settled_mark(log_dir)
    for i in range(n):
        one(driver.new_user(), i)
    if settle is not None:
        settle(before)
    return cost.cost_between(log_dir, before, cost.settled_mark(log_dir), n) | {"feature": tag}


def _texts(driver: Driver, tag: str) -> Callable[[str, int], None]:
    def one(user: str, i: int) -> None:
        _post(driver, user, f"{tag}-{i}")
        _wait_replies(driver, user, 1)
    return one


def _restart(driver: Driver, names: tuple[str, ...], env: dict[str, str] | None, tag: str) -> None:
    """Restart functions (with ``env``, or as the stack set them) and warm them up outside any mark.

    A restarted process counts from zero, so the next mark must follow one of its own usage lines.
    """
    for name in names:
        driver.stack.start_function(name, extra_env=env)
    _texts(driver, f"{tag}-warm")(driver.new_user(), 0)


def costs(driver: Driver, log_dir: Path, n: int) -> tuple[dict[str, dict[str, Any]], int]:
    """Each feature's cost section; the status-callback and typing runs restore the functions after."""
    out: dict[str, dict[str, Any]] = {}
    out["text"] = _batch(driver, log_dir, n, "text", _texts(driver, "f8-text"))

    def image(user: str, i: int) -> None:
        _post(driver, user, f"f8-image-{i}", **_media(driver, PNG, "image/png"))
        _wait_replies(driver, user, 1)

    def voice(user: str, i: int) -> None:
        _post(driver, user, "", **_media(driver, VOICE, "audio/ogg"))
        _wait_replies(driver, user, 1)

    def command(user: str, i: int) -> None:
        _post(driver, user, "/help")
        _wait_replies(driver, user, 1)

    out["image"] = _batch(driver, log_dir, n, "image", image)
    out["voice"] = _batch(driver, log_dir, n, "voice", voice)
    out["command"] = _batch(driver, log_dir, n, "command", command)

    opted = [driver.new_user() for _ in range(n)]
    for user in opted:
        _post(driver, user, "Stop")
        _wait_replies(driver, user, 1)
    users = iter(opted)
    out["opted_out"] = _batch(
        driver, log_dir, n, "opted_out", lambda _user, i: _post(driver, next(users), f"f8-ignored-{i}"),
        settle=lambda before: _wait_processed(log_dir, before, n),
    )

    _restart(driver, ("processor",), {"TYPING_INDICATOR": "true"}, "f8-typing")
    try:
        out["typing"] = _batch(driver, log_dir, n, "typing", _texts(driver, "f8-typing"))
    finally:
        _restart(driver, ("processor",), None, "f8-typing-off")

    twilio = driver.twilio
    was_sending = twilio.send_callbacks
    twilio.send_callbacks = True
    callbacks = 0
    try:
        warm_from = len(twilio.callbacks)
        _restart(driver, ("webhook", "sender"), {"DELIVERY_STATUS_CALLBACKS": "true"}, "f8-status")
        _wait_callbacks(driver, warm_from + len(STATUS_SEQUENCE), warm_from)
        first = len(twilio.callbacks)
        out["status_callbacks"] = _batch(
            driver, log_dir, n, "status_callbacks", _texts(driver, "f8-status"),
            settle=lambda _before: _wait_callbacks(driver, first + n * len(STATUS_SEQUENCE), first),
        )
        callbacks = len(twilio.callbacks) - first
    finally:
        twilio.send_callbacks = was_sending
        _restart(driver, ("webhook", "sender"), None, "f8-status-off")
    out["choices"] = _choices(driver, log_dir, n)
    out["text_window_0"] = _batch(driver, log_dir, n, "text_window_0", _texts(driver, "f8-text0"))
    return out, callbacks


def _choices(driver: Driver, log_dir: Path, n: int) -> dict[str, Any]:
    """A menu keyword answered with buttons, by ``n`` new users: the Content resource is made by the first only.

    The business's profile gets a menu (its keyword touches no other message) and the processor is
    restarted so it reads it now; the sender starts cold, so its one records read is in the batch.
    """
    from datetime import datetime, timezone

    from google.cloud import firestore

    from shared.adapters.profile_store import FirestoreProfiles
    from shared.domain.profiles import BusinessProfile

    client = firestore.Client(project=driver.stack.options.project)
    try:
        FirestoreProfiles(lambda: client, "business_profiles", BusinessProfile(), 0).put(
            driver.stack.options.twilio_whatsapp_from, {"menus": [{"id": "f8", "keywords": [CHOICES_KEYWORD],
                "text": "What would you like?", "items": [{"id": f"o{i}", "title": f"Option {i}", "reply": f"o{i}"}
                                                           for i in range(1, 4)]}]}, datetime.now(timezone.utc))
    finally:
        client.close()
    _restart(driver, ("processor", "sender"), None, "f8-choices")

    def one(user: str, i: int) -> None:
        _post(driver, user, CHOICES_KEYWORD)
        _wait_replies(driver, user, 1)

    return _batch(driver, log_dir, n, "choices", one)


def _wait_callbacks(driver: Driver, count: int, since: int, timeout: float = REPLY_TIMEOUT_SECONDS) -> None:
    """Until ``count`` callbacks were posted; the webhook publishes each, the processor applies it."""
    deadline = time.monotonic() + timeout
    while len(driver.twilio.callbacks) < count:
        if time.monotonic() > deadline:
            got = len(driver.twilio.callbacks) - since
            raise RuntimeError(f"figure 8: {got} status callbacks posted, {count - since} expected")
        time.sleep(0.05)


def _together(users: list[str], plan: Callable[[str, float], float]) -> dict[str, float]:
    """Every user's ``plan`` on its own thread from one start line; each returns its last POST start."""
    last: dict[str, float] = {}
    lock = threading.Lock()
    start = time.perf_counter() + START_DELAY_SECONDS

    def run(user: str) -> None:
        started = plan(user, start)
        with lock:
            last[user] = started

    threads = [threading.Thread(target=run, args=(user,), daemon=True) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=REPLY_TIMEOUT_SECONDS)
    return last


def burst_latency(driver: Driver, users_count: int) -> tuple[list[float], list[float], list[int]]:
    """The same users, one message each without bursts, then 3 messages each with a 1 s window.

    Latency runs from the last message's POST to the one reply; the processor is
    restored (no window) before returning.
    """
    users = [driver.new_user() for _ in range(users_count)]

    def sleep_until(at: float) -> None:
        delay = at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)

    def single(user: str, start: float) -> float:
        sleep_until(start)
        return _post(driver, user, f"f8-single-{user[-4:]}")

    posted = _together(users, single)
    single_latencies = [_wait_replies(driver, u, 1).received_at - posted[u] for u in users]

    burst_latencies: list[float] = []
    replies: list[int] = []
    _restart(driver, ("processor",), {"BURST_WINDOW_SECONDS": f"{BURST_WINDOW_SECONDS:g}"}, "f8-burst")
    try:
        before = {u: len(_replies_to(driver, u)) for u in users}

        def burst(user: str, start: float) -> float:
            started = 0.0
            for i in range(BURST_MESSAGES):
                sleep_until(start + i * BURST_GAP_SECONDS)
                started = _post(driver, user, f"f8-burst-{user[-4:]}-{i}")
            return started

        posted = _together(users, burst)
        for user in users:
            burst_latencies.append(_wait_replies(driver, user, before[user] + 1).received_at - posted[user])
        # A second reply would come within the window of the first: wait one window, then count.
        time.sleep(BURST_WINDOW_SECONDS + 0.5)
        replies = [len(_replies_to(driver, u)) - before[u] for u in users]
    finally:
        _restart(driver, ("processor",), None, "f8-burst-off")
    return single_latencies, burst_latencies, replies


def run(driver: Driver, log_dir: Path, messages: int, burst_users: int) -> FeatureRun:
    """Costs first (sequential), then the burst latencies, on a drained pipeline."""
    result = FeatureRun()
    result.costs, result.callbacks_posted = costs(driver, log_dir, messages)
    result.single, result.burst, result.burst_replies = burst_latency(driver, burst_users)
    return result
