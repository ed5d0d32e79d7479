"""What the steps are given: the collaborators (as protocols) of the processor and the sender, and the
settings' limits in the domain's terms.

Leaf of shared/handlers/: every step imports it and it imports no handler, so
no step needs to import the pipeline that runs it. shared/bootstrap.py builds
these with the real adapters, unit tests with the fakes of tests/fakes.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Mapping, Protocol

from shared.adapters.cloud_tasks import BurstTask, NotifyTask, SendTask
from shared.adapters.compare_and_set import ConversationStore
from shared.adapters.profile_store import ProfileSource, StaticProfiles, defaults_from_settings
from shared.config import Settings
from shared.domain.choices import Offer
from shared.domain.budgets import Spend
from shared.domain.conversation import Limits
from shared.domain.knowledge import KnowledgeSet
from shared.domain.knowledge_prompt import Retrieved
from shared.domain.profiles import BusinessProfile
from shared.domain.pseudonyms import Pseudonyms
from shared.domain.tool_rounds import CallTool
from shared.faults import FaultPoints


class Model(Protocol):
    def reply(
        self, history: list[dict[str, str]], user_text: str, system_prompt: str | None = None, model: str | None = None,
        budget_seconds: float | None = None,
    ) -> str: ...

    def reply_or_choices(
        self, history: list[dict[str, str]], user_text: str, system_prompt: str | None = None, model: str | None = None,
        budget_seconds: float | None = None,
    ) -> tuple[str, Offer | None]: ...


class Knowledge(Protocol):
    """A business's documents, searched for one message (shared/adapters/knowledge_search.py)."""

    def search(self, business: str, knowledge: KnowledgeSet, text: str, budget_seconds: float) -> list[Retrieved]: ...


class UsageBook(Protocol):
    """The per-business usage counters (shared/adapters/usage_store.py): a budget's spend, and its alert."""

    def spend(self, business: str, now: datetime) -> Spend: ...

    def alert_once(self, business: str, now: datetime) -> bool: ...


class Queue(Protocol):
    def enqueue(self, task: SendTask | BurstTask | NotifyTask) -> bool: ...


class MediaSource(Protocol):
    def fetch(self, url: str) -> tuple[bytes, str]: ...


class Typing(Protocol):
    def start(self, message_sid: str) -> None: ...


class ToolCallers(Protocol):
    """The business tools' HTTP caller (shared/adapters/tool_caller.py), one per process."""

    def for_message(self, business: str, sid: str) -> CallTool: ...


def limits(settings: Settings) -> Limits:
    """The settings the conversation's rules use, in the domain's terms."""
    return Limits(
        ttl_seconds=settings.conversation_ttl_seconds,
        max_messages=settings.max_context_messages,
        max_history_chars=settings.max_history_chars,
        watch_after_seconds=settings.reconcile_after_seconds,
        lease_seconds=settings.processing_lease_seconds,
    )


@dataclass(frozen=True)
class ProcessorDeps:
    settings: Settings
    store: ConversationStore
    model: Model
    queue: Queue
    faults: FaultPoints
    clock: Callable[[], datetime]
    ids: Pseudonyms
    # The WhatsApp channel: media downloads and the typing indicator (None: off).
    media: MediaSource | None = None
    typing: Typing | None = None
    # Business profiles by WhatsApp address; None: every business gets the settings' defaults.
    profiles: ProfileSource | None = None
    # Business tools' requests (None: no business of this deployment has tools).
    tools: ToolCallers | None = None
    # The knowledge base's search (None: no business is grounded in documents).
    knowledge: Knowledge | None = None
    # The usage counters a budget is read from (None: no budgets are enforced).
    usage: UsageBook | None = None

    def profile(self, business: str) -> BusinessProfile:
        source = self.profiles or StaticProfiles(defaults_from_settings(self.settings))
        return source.get(business)

    @property
    def limits(self) -> Limits:
        return limits(self.settings)


class ContentSource(Protocol):
    def sid_for(self, types: Mapping[str, Any]) -> str: ...


class Gateway(Protocol):
    def send(self, to: str, body: str, from_: str = "") -> str: ...

    def send_template(self, to: str, content_sid: str, content_variables: str = "", from_: str = "") -> str: ...

    def find_sent(
        self, to: str, body: str, since: datetime, exclude: frozenset[str] = frozenset(), from_: str = "",
        template: str = "",
    ) -> str | None: ...


@dataclass(frozen=True)
class SenderDeps:
    settings: Settings
    store: ConversationStore
    twilio: Gateway
    queue: Queue
    faults: FaultPoints
    clock: Callable[[], datetime]
    # Business profiles (None: the settings for everyone); read only for a reply past the 24-hour window.
    profiles: ProfileSource | None = None
    # The Content resources choices go as (shared/adapters/content_records.py); None: numbered text.
    content: ContentSource | None = None

    def reengagement_template(self, business: str) -> str:
        """The business's re-engagement template, else the deployment's (REENGAGEMENT_CONTENT_SID)."""
        if self.profiles is None:
            return self.settings.reengagement_content_sid
        profile = self.profiles.get(business or self.settings.twilio_whatsapp_from)
        return profile.reengagement_content_sid or self.settings.reengagement_content_sid

    @property
    def in_flight_grace(self) -> timedelta:
        """How long a ``sending`` mark may belong to an attempt that is still waiting on Twilio."""
        return timedelta(seconds=self.settings.in_flight_grace_seconds)
