"""What the inbox's handlers need, as one value: built by the composition root, faked in unit tests."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Mapping, Protocol
from urllib.parse import urlsplit

from werkzeug.exceptions import Forbidden

from shared.adapters.compare_and_set import ConversationStore
from shared.adapters.google_signin import GoogleSignIn
from shared.adapters.inbox_store import StoredConversation
from shared.config import Settings
from shared.domain.conversation import utcnow
from shared.domain.profiles import BusinessProfile
from shared.domain.pseudonyms import Pseudonyms
from shared.domain.staff import Access, Business, access_for
from shared.faults import FaultPoints
from shared.handlers.deps import Queue

audit_log = logging.getLogger("shared.inbox.audit")


class Notifier(Protocol):
    def post(self, url: str, payload: Mapping[str, Any]) -> int: ...


def refuse_tasks(request: Any) -> str | None:
    """Without a caller check configured, nothing may post tasks to the inbox."""
    raise Forbidden("task endpoints are closed: no caller verification is configured")


class Reader(Protocol):
    def recent(self, business: str, limit: int) -> list[StoredConversation]: ...

    def changed(self, business: str, since: datetime, limit: int) -> list[StoredConversation]: ...

    def paused(self, business: str, now: datetime, limit: int) -> list[StoredConversation]: ...

    def get(self, conversation_id: str) -> StoredConversation | None: ...

    def directory(self) -> tuple[Business, ...]: ...


@dataclass(frozen=True)
class InboxDeps:
    settings: Settings
    reader: Reader
    signin: GoogleSignIn
    # The session-signing keys, oldest first (the last one signs), and a re-read after a rotation.
    session_keys: Callable[[], list[str]]
    refresh_session_key: Callable[[], bool] = lambda: False
    clock: Callable[[], datetime] = utcnow
    # The operators' view: the failure records, and ``make replay`` for the chosen dead letters.
    failures: Callable[[int], list[dict[str, Any]]] = field(default=lambda limit: [])
    replay: Callable[[list[str]], list[str]] = field(default=lambda sids: [])
    # The handoff notices: who may post the tasks (Cloud Tasks, checked like any private service), and the webhook.
    authorize_task: Callable[[Any], str | None] = refuse_tasks
    notifier: Notifier | None = None
    # The person's side: replies, taking over, handing back (shared/handlers/person.py).
    store: ConversationStore | None = None
    queue: Callable[[], Queue] | None = None
    ids: Pseudonyms | None = None
    profile: Callable[[str], BusinessProfile] | None = None
    faults: FaultPoints | None = None  # tests only (TEST_FAULT_POINTS)

    def template(self, business: str) -> str:
        """The approved re-engagement template of the business, else the deployment's; "" when there is none."""
        own = self.profile(business).reengagement_content_sid if self.profile is not None else ""
        return own or self.settings.reengagement_content_sid

    def access(self, email: str, fresh: bool = False) -> Access:
        """What ``email`` may see, from the cached directory or (``fresh``) the profiles as they are now."""
        return access_for(email, self.reader.directory(fresh), self.settings.inbox_operators)

    @property
    def origin(self) -> str:
        """scheme://host[:port] of the inbox, from INBOX_URL."""
        parts = urlsplit(self.settings.inbox_url)
        return f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""

    @property
    def secure(self) -> bool:
        return self.settings.inbox_url.startswith("https://")

    @property
    def login_uri(self) -> str:
        """Where Google posts the sign-in: registered on the OAuth client as an authorized redirect URI."""
        return f"{self.settings.inbox_url}/auth/google"


def audit(event: str, staff: str, message: str, **fields: Any) -> None:
    """Every action in the inbox, with who did it: their e-mail, never the customer's number."""
    audit_log.info(message, extra={"event": event, "staff": staff, **fields})
