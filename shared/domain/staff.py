"""Who may use a business's inbox: the ``staff:`` and ``notify_webhook:`` profile keys, and the rule.

A profile lists the Google accounts of the people who answer its customers:

    staff: [ana@panaderia-sol.example, luis@gmail.com]
    notify_webhook: https://chat.googleapis.com/v1/spaces/.../messages?key=...

The rule (docs/decisions/0021-inbox-sign-in.md): a signed-in person sees,
searches and answers the conversations of exactly the businesses whose
``staff:`` lists their e-mail; an operator (the deployment's
``INBOX_OPERATORS``) sees every business and the operations view as well.
Nobody else gets anything, not even the list of businesses. E-mails compare
case-insensitively, as Google's do. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

STAFF = "staff"
NOTIFY_WEBHOOK = "notify_webhook"
INBOX_KEYS = frozenset({STAFF, NOTIFY_WEBHOOK})
MAX_STAFF = 100
MAX_EMAIL_CHARS = 254
MAX_URL_CHARS = 2000
# The local stack's receivers are on loopback; anything else must be HTTPS.
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_EMAIL = re.compile(r"[^@\s,;<>\"']+@[^@\s,;<>\"']+\.[^@\s,;<>\"'.]+")


class InboxKeyError(ValueError):
    """One inbox key of a profile is unusable; shared/domain/profiles.py names the business."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def normal_email(value: str) -> str:
    return value.strip().lower()


def valid_email(value: str) -> bool:
    return len(value) <= MAX_EMAIL_CHARS and bool(_EMAIL.fullmatch(value))


def staff_list(raw: Any) -> tuple[str, ...]:
    """The e-mails of a ``staff:`` value: a list of addresses, lower-cased, each once, in the file's order."""
    if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
        raise InboxKeyError(STAFF, "must be a list of e-mail addresses")
    if len(raw) > MAX_STAFF:
        raise InboxKeyError(STAFF, f"lists {len(raw)} people, at most {MAX_STAFF}")
    emails: list[str] = []
    for item in raw:
        email = normal_email(item)
        if not valid_email(email):
            raise InboxKeyError(STAFF, f"{item!r} is not an e-mail address")
        if email not in emails:
            emails.append(email)
    return tuple(emails)


def notify_url(raw: Any) -> str:
    """A ``notify_webhook:`` value: an https URL (http only on loopback, for the local stack); empty turns it off."""
    if not isinstance(raw, str):
        raise InboxKeyError(NOTIFY_WEBHOOK, f"must be a URL, got {type(raw).__name__}")
    url = raw.strip()
    if not url:
        return ""
    if len(url) > MAX_URL_CHARS:
        raise InboxKeyError(NOTIFY_WEBHOOK, f"is {len(url)} characters long, at most {MAX_URL_CHARS}")
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password:
        raise InboxKeyError(NOTIFY_WEBHOOK, "must be a URL such as https://chat.googleapis.com/v1/spaces/...")
    if parts.scheme != "https" and not (parts.scheme == "http" and host in _LOOPBACK):
        raise InboxKeyError(NOTIFY_WEBHOOK, "must be an https URL (it carries the business's staff notifications)")
    return url


def inbox_keys(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The BusinessProfile fields the inbox keys of ``raw`` give; raises :class:`InboxKeyError`."""
    values: dict[str, Any] = {}
    if STAFF in raw:
        values[STAFF] = staff_list(raw[STAFF])
    if NOTIFY_WEBHOOK in raw:
        values[NOTIFY_WEBHOOK] = notify_url(raw[NOTIFY_WEBHOOK])
    return values


@dataclass(frozen=True)
class Business:
    """What the inbox knows of one business: its number, its name, its people."""

    address: str
    name: str = ""
    staff: tuple[str, ...] = ()
    notify_webhook: str = ""

    @property
    def label(self) -> str:
        return self.name or self.address


@dataclass(frozen=True)
class Access:
    """What one signed-in person may see; computed on every request from the current profiles."""

    email: str
    businesses: tuple[Business, ...]
    operator: bool = False

    @property
    def allowed(self) -> bool:
        """Signed in for something: staff of a business, or an operator."""
        return bool(self.businesses) or self.operator

    def may_see(self, business: str) -> bool:
        return any(b.address == business for b in self.businesses)

    def business(self, address: str) -> Business | None:
        return next((b for b in self.businesses if b.address == address), None)


def access_for(email: str, directory: Iterable[Business], operators: Iterable[str]) -> Access:
    """The businesses ``email`` may see: those whose staff lists it, or all of them for an operator."""
    who = normal_email(email)
    is_operator = who in {normal_email(o) for o in operators}
    known = sorted(directory, key=lambda b: (b.label.casefold(), b.address))
    mine = tuple(b for b in known if is_operator or who in b.staff)
    return Access(email=who, businesses=mine, operator=is_operator)
