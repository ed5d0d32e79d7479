"""The inbox's part of the composition root: real adapters into ``InboxDeps``, once per process.

Like shared/bootstrap.py (whose clients it reuses), importing this does no
I/O; every client is made on first use.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from werkzeug.exceptions import Forbidden

from shared import bootstrap
from shared.adapters.google_signin import GoogleSignIn
from shared.adapters.inbox_store import InboxReader
from shared.adapters.secret_manager import INBOX_SESSION_KEY
from shared.adapters.webhook_notifier import WebhookNotifier
from shared.domain.conversation import utcnow
from shared.inbox.deps import InboxDeps

if TYPE_CHECKING:
    import flask

    from shared.ops.replay import PubSubDeadLetters


@functools.cache
def _dead_letters() -> PubSubDeadLetters:
    from shared.ops.replay import PubSubDeadLetters

    s = bootstrap.settings()
    return PubSubDeadLetters(s.project_id, s.dead_letter_hold_subscription, s.inbound_topic)


def _replay(sids: list[str]) -> list[str]:
    from shared.ops.replay import replay

    s = bootstrap.settings()
    return replay(bootstrap.store(), bootstrap.pseudonyms(), _dead_letters(), utcnow, s.conversation_ttl_seconds,
                  sids, 100, s.reconcile_after_seconds)


def _authorize_task(request: flask.Request) -> str | None:
    """Cloud Tasks' caller key and token, as the private services check them; refused when unconfigured.

    The inbox is public, so unlike a private service it must not fall back
    to "verification off" when AUTH_AUDIENCE is missing.
    """
    if bootstrap.verifier() is None:
        raise Forbidden("task endpoints are closed: AUTH_AUDIENCE is not set")
    return bootstrap.authorize(request)


def _session_keys() -> list[str]:
    secrets = bootstrap.secrets()
    previous = secrets.previous(INBOX_SESSION_KEY)
    return ([previous] if previous else []) + [secrets.inbox_session_key()]


@functools.cache
def inbox_deps() -> InboxDeps:
    s = bootstrap.settings()
    store = bootstrap.store()
    return InboxDeps(
        settings=s,
        reader=InboxReader(lambda: store.client, s.conversations_collection, s.profiles_collection,
                           s.twilio_whatsapp_from, s.profile_cache_seconds),
        signin=GoogleSignIn(s.inbox_oauth_client_id, s.auth_certs_url),
        session_keys=_session_keys,
        refresh_session_key=lambda: bootstrap.secrets().refresh(INBOX_SESSION_KEY),
        clock=utcnow,
        failures=lambda limit: store.list_failures(limit=limit),
        replay=_replay,
        authorize_task=_authorize_task,
        notifier=WebhookNotifier(),
        store=store,
        queue=bootstrap.queue,
        ids=bootstrap.pseudonyms(),
        profile=lambda business: bootstrap.profiles().get(business),
        faults=bootstrap.faults(),
    )


def log_usage() -> None:
    """With LOG_USAGE on, one line per request with this process's cumulative calls (read by bench/),
    the inbox's own reads included: they are what an open inbox costs."""
    if not bootstrap.settings().log_usage:
        return
    counts = bootstrap.usage()
    reader = inbox_deps().reader
    if isinstance(reader, InboxReader):
        counts["firestore_reads"] = counts.get("firestore_reads", 0) + reader.ops.reads
    logging.getLogger("shared.usage").info("usage", extra={"event": "usage", "usage": counts})


@functools.cache
def inbox_app() -> flask.Flask:
    from shared.inbox.app import create_app

    return create_app(inbox_deps())
