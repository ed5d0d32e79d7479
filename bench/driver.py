"""Drives the stack as Twilio and many WhatsApp users would, and books what should come back.

Every inbound text carries a unique marker; the offline model quotes it
(``You said: «marker»``), so each reply at the Twilio stand-in is tied to the
message that caused it. The book of expected markers per user is what the
lost / duplicated / reordered counts are computed from.
"""

from __future__ import annotations

import itertools
import re
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field

from twilio.request_validator import RequestValidator

from devstack.delivery import count_damage
from devstack.stack import Stack
from devstack.twilio_stub import SentMessage, inbound_message, new_sid

POST_TIMEOUT_SECONDS = 15.0
_MARKER = re.compile(r"You said: «([^»]*)»")


@dataclass(frozen=True)
class PreparedPost:
    """A signed form POST, built before the clock starts so only the exchange is timed."""

    url: str
    data: bytes
    headers: dict[str, str]
    user: str
    marker: str
    sid: str


@dataclass(frozen=True)
class PostResult:
    status: int
    started: float  # time.time() just before the request
    seconds: float  # perf_counter() duration of the exchange


def post(prepared: PreparedPost, timeout: float = POST_TIMEOUT_SECONDS) -> PostResult:
    """One POST on a fresh connection, as Twilio makes them; the same client for targets and floors."""
    request = urllib.request.Request(prepared.url, data=prepared.data, method="POST", headers=prepared.headers)
    started = time.time()
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        with error:
            error.read()
            status = error.code
    except OSError:
        status = 0
    return PostResult(status, started, time.perf_counter() - t0)


def reply_marker(body: str) -> str | None:
    """The marker of the message a reply answers (its first quote), or None for any other text."""
    match = _MARKER.search(body)
    return match.group(1) if match else None


@dataclass
class Delivery:
    """Lost / duplicated / reordered replies, counted per user against the expected order."""

    users: int = 0
    messages: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    unexpected: int = 0

    def to_json(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass
class Book:
    """Markers each user sent and the webhook accepted, in sending order."""

    expected: dict[str, list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, user: str, marker: str) -> None:
        with self._lock:
            self.expected.setdefault(user, []).append(marker)

    def count(self) -> int:
        with self._lock:
            return sum(len(markers) for markers in self.expected.values())

    def snapshot(self) -> dict[str, list[str]]:
        with self._lock:
            return {user: list(markers) for user, markers in self.expected.items()}


def check_delivery(expected: dict[str, list[str]], sent: list[SentMessage]) -> Delivery:
    """Each expected marker must come back exactly once, in the order its user sent them."""
    replies: dict[str, list[str]] = {}
    result = Delivery()
    for message in sent:
        if message.to not in expected:
            continue
        marker = reply_marker(message.body)
        if marker is None:
            result.unexpected += 1
            continue
        replies.setdefault(message.to, []).append(marker)
    for user, markers in expected.items():
        got = replies.get(user, [])
        wanted = set(markers)
        damage = count_damage(markers, got)
        result.users += 1
        result.messages += len(markers)
        result.unexpected += sum(1 for m in got if m not in wanted)
        result.delivered += len(wanted) - damage.lost
        result.lost += damage.lost
        result.duplicated += damage.duplicated
        result.reordered += damage.reordered
    return result


class Driver:
    """Posts signed inbound messages to the stack (or any URL) and waits for their replies."""

    def __init__(self, stack: Stack) -> None:
        assert stack.twilio is not None, "the benchmarks need the Twilio stand-in"
        self.stack = stack
        self.twilio = stack.twilio
        self.book = Book()
        self._validator = RequestValidator(stack.options.twilio_auth_token)
        # Distinct senders for every message unless a phase reuses one on purpose,
        # so ordering keys never serialize unrelated messages.
        self._numbers = itertools.count(secrets.randbelow(10**6) * 10)

    def new_user(self) -> str:
        return f"whatsapp:+1{555_000_000_000 + next(self._numbers) % 10**9:012d}"

    def prepare(self, user: str, marker: str, url: str | None = None, signed_url: str | None = None,
                sid: str | None = None, to: str = "", **extra: str) -> PreparedPost:
        """A message from ``user`` whose text is ``marker``; signed for ``signed_url`` (the public URL).

        ``sid`` and ``extra`` (form fields) make media messages: their sid is the stored media's; ``to`` another
        business's number (default the stack's).
        """
        o = self.stack.options
        target = url or self.stack.webhook_url
        sign_for = signed_url or target
        sid = sid or new_sid("SM")
        params = inbound_message(user, marker, to=to or o.twilio_whatsapp_from, sid=sid, account_sid=o.twilio_account_sid,
                                 **extra)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            "Accept": "*/*",
            "X-Twilio-Signature": self._validator.compute_signature(sign_for, dict(params)),
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        }
        data = urllib.parse.urlencode(list(params.items())).encode("utf-8")
        return PreparedPost(target, data, headers, user, marker, sid)

    def send(self, prepared: PreparedPost, book: bool = True) -> PostResult:
        """Post; an accepted message to the stack is booked as expecting exactly one reply."""
        result = post(prepared)
        if book and result.status == 200:
            self.book.add(prepared.user, prepared.marker)
        return result

    def wait_reply(self, user: str, marker: str, timeout: float) -> SentMessage | None:
        """Block (on the stand-in's condition, not by polling) until the reply to ``marker`` arrives."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            messages = self.twilio.messages
            for message in messages[seen:]:
                if message.to == user and reply_marker(message.body) == marker:
                    return message
            seen = len(messages)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.twilio.wait_for(seen + 1, timeout=remaining)

    def wait_drained(self, timeout: float, expected: dict[str, list[str]] | None = None) -> bool:
        """True once every booked message has its reply: the pipeline is quiet again."""
        wanted = {(user, m) for user, markers in (expected or self.book.snapshot()).items() for m in markers}
        deadline = time.monotonic() + timeout
        while True:
            got = {(m.to, reply_marker(m.body)) for m in self.twilio.messages}
            if wanted <= got:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.twilio.wait_for(len(self.twilio.messages) + 1, timeout=min(remaining, 0.5))
