"""The composition root: the one place that wires real adapters into the core.

Each ``*_deps()`` is built once per process on the first request and reused, and every Google, Twilio or
OpenAI client inside is itself created on first use: importing this module does no I/O, which keeps cold
starts short and lets tests import everything without emulators (unit tests build the ``*Deps`` with fakes).
"""

from __future__ import annotations

import functools
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from werkzeug.exceptions import Forbidden, ServiceUnavailable

from shared import log
from shared.adapters.google_auth import (CALLER_KEY_HEADER, CALLER_KEY_PARAMETER, CallerRejected, CallerVerifier,
                                         SigningKeysUnavailable, build_verifier)
from shared.adapters.secret_manager import OPENAI_API_KEY, TWILIO_AUTH_TOKEN, Secrets, build_secrets
from shared.adapters.twilio_signature import RotatingValidator
from shared.config import Settings, get_settings
from shared.domain.conversation import utcnow
from shared.domain.pseudonyms import Pseudonyms
from shared.faults import FaultPoints
from shared.handlers.webhook import WebhookDeps

# Each function imports only the client libraries it uses: the factories below
# import theirs on first call. openai, firestore, tasks and twilio.rest add
# ~400 ms to a cold start and ~80k objects to every full GC pass in
# webhook_fn, which needs none of them (bench/README.md).
if TYPE_CHECKING:
    import flask

    from shared.adapters.cloud_tasks import TaskQueue
    from shared.adapters.content_records import ContentTemplates
    from shared.adapters.firestore_store import FirestoreStore
    from shared.adapters.knowledge_search import KnowledgeSearch
    from shared.adapters.openai_model import ChatModel
    from shared.adapters.profile_store import FirestoreProfiles
    from shared.adapters.tool_caller import ToolCaller
    from shared.adapters.twilio_api import TwilioGateway
    from shared.adapters.twilio_media import TwilioMedia
    from shared.adapters.twilio_typing import TypingIndicator
    from shared.handlers.outbound import OutboundDeps
    from shared.handlers.deps import ProcessorDeps, SenderDeps
    from shared.handlers.reconciler import ReconcilerDeps


@functools.cache
def settings() -> Settings:
    current = get_settings()
    log.configure(current.log_level)
    return current


@functools.cache
def secrets() -> Secrets:
    return build_secrets(settings())


@functools.cache
def store() -> FirestoreStore:
    from google.cloud import firestore

    from shared.adapters.firestore_store import FirestoreStore

    s = settings()
    return FirestoreStore(
        client_factory=lambda: firestore.Client(project=s.project_id, database=s.firestore_database),
        conversations=s.conversations_collection, failures=s.failures_collection, dedupe=s.dedupe_collection,
        usage=s.usage_collection,
    )


@functools.cache
def faults() -> FaultPoints:
    return FaultPoints(settings().test_fault_points)


@functools.cache
def verifier() -> CallerVerifier | None:
    return build_verifier(settings(), secrets)


def authorize(request: flask.Request) -> str | None:
    """Refuse a request that did not come through Google from our caller (403), when verification is on.

    The caller key travels in a header (Cloud Tasks, Cloud Scheduler) or in
    the push endpoint's query string (Pub/Sub push cannot send headers).
    Returns the caller's verified e-mail, or None when verification is off (local).
    """
    check = verifier()
    if check is None:
        return None
    key = request.headers.get(CALLER_KEY_HEADER) or request.args.get(CALLER_KEY_PARAMETER)
    try:
        return check.verify(request.headers.get("Authorization"), key)
    except CallerRejected as exc:
        logging.getLogger(__name__).warning("caller rejected", extra={"event": "caller_rejected", "reason": exc.reason})
        if isinstance(exc, SigningKeysUnavailable):
            raise ServiceUnavailable(exc.reason) from None
        raise Forbidden(exc.reason) from None


@functools.cache
def pseudonyms() -> Pseudonyms:
    """The deployment's keyed names for addresses; also installed for log masks."""
    keyed = Pseudonyms(secrets().address_hash_key())
    log.use_pseudonyms(keyed)
    return keyed


@functools.cache
def _validator() -> RotatingValidator:
    return RotatingValidator(secrets())


@functools.cache
def webhook_deps() -> WebhookDeps:
    from shared.adapters.pubsub_publisher import Publisher  # the webhook's alone: processor and sender never publish
    s = settings()
    pseudonyms()
    return WebhookDeps(settings=s, validator=_validator,
                       publisher=Publisher(s.project_id, s.inbound_topic, s.publish_max_latency_seconds))


@functools.cache
def queue() -> TaskQueue:
    from google.cloud import tasks_v2

    from shared.adapters.cloud_tasks import TaskQueue, emulator_client

    s = settings()
    if s.tasks_emulator_host:
        factory = functools.partial(emulator_client, s.tasks_emulator_host)
    else:
        factory = tasks_v2.CloudTasksClient
    return TaskQueue(
        s.project_id, s.tasks_location, s.tasks_queue, s.sender_url, s.tasks_service_account, factory, s.processor_url,
        caller_key=secrets().caller_key if s.tasks_service_account else None, inbox_url=s.inbox_tasks_url,
        route=lambda business: profiles().get(business).send_queue,  # cached: the processor has read it already
    )


@functools.cache
def model() -> ChatModel:
    from shared.adapters.openai_model import ChatModel

    s = settings()
    return ChatModel(
        model=s.openai_model, system_prompt=s.system_prompt, api_key=secrets().openai_api_key,
        base_url=s.openai_base_url, timeout_seconds=s.openai_timeout_seconds, max_retries=s.openai_max_retries,
        budget_seconds=s.model_budget_seconds, max_tokens=s.openai_max_tokens,
        refresh_key=lambda: secrets().refresh(OPENAI_API_KEY),
    )


@functools.cache
def profiles() -> FirestoreProfiles:
    """Business profiles from Firestore, each read at most once per PROFILE_CACHE_SECONDS by this process."""
    from shared.adapters.profile_store import FirestoreProfiles, defaults_from_settings

    s = settings()
    return FirestoreProfiles(
        client_factory=lambda: store().client, collection=s.profiles_collection,
        defaults=defaults_from_settings(s), ttl_seconds=s.profile_cache_seconds,
    )


@functools.cache
def processor_deps() -> ProcessorDeps:
    from shared.adapters.usage_store import UsageCounters
    from shared.handlers.deps import ProcessorDeps
    return ProcessorDeps(
        settings=settings(), store=store(), model=model(), queue=queue(), faults=faults(), clock=utcnow,
        ids=pseudonyms(), media=media(), typing=typing(), profiles=profiles(), tools=tools(), knowledge=knowledge(),
        usage=UsageCounters.of(settings(), store()),
    )


@functools.cache
def tools() -> ToolCaller:
    """Business tools' requests; the HTTP session is created on the first call, by a business that has tools."""
    from shared.adapters.tool_caller import ToolCaller

    return ToolCaller(secrets(), max_response_bytes=settings().tool_response_max_bytes)


@functools.cache
def knowledge() -> KnowledgeSearch:
    """The knowledge base's search; its clients are built on a first search only."""
    from shared.adapters.knowledge_search import build_search

    return build_search(settings(), secrets().openai_api_key, lambda: secrets().refresh(OPENAI_API_KEY),
                        lambda: store().client)


@functools.cache
def media() -> TwilioMedia:
    """Inbound media downloads; the client is created on the first image or voice note."""
    from shared.adapters.twilio_media import TwilioMedia

    s = settings()
    return TwilioMedia(api_base_url=s.twilio_api_base_url, account_sid=s.twilio_account_sid,
                       auth_token=secrets().twilio_auth_token, max_bytes=s.media_max_bytes,
                       timeout_seconds=s.media_timeout_seconds, redirect_hosts=s.twilio_media_redirect_hosts)


@functools.cache
def typing() -> TypingIndicator:
    """Locally the typing indicator goes to TWILIO_API_BASE_URL like every other Twilio call."""
    from shared.adapters.twilio_typing import TypingIndicator

    s = settings()
    return TypingIndicator(
        base_url=s.twilio_messaging_base_url or s.twilio_api_base_url, account_sid=s.twilio_account_sid,
        auth_token=secrets().twilio_auth_token,
    )


@functools.cache
def twilio() -> TwilioGateway:
    from shared.adapters.twilio_api import TwilioGateway

    s = settings()
    return TwilioGateway(
        account_sid=s.twilio_account_sid, from_address=s.twilio_whatsapp_from, auth_token=secrets().twilio_auth_token,
        api_base_url=s.twilio_api_base_url, timeout_seconds=s.twilio_timeout_seconds,
        refresh_token=lambda: secrets().refresh(TWILIO_AUTH_TOKEN),
        status_callback=s.public_webhook_url if s.delivery_status_callbacks else "",
    )


@functools.cache
def sender_deps() -> SenderDeps:
    from shared.handlers.deps import SenderDeps

    pseudonyms()
    s = settings()
    offset = timedelta(seconds=s.test_clock_offset_seconds)
    clock = (lambda: utcnow() + offset) if offset else utcnow
    return SenderDeps(settings=s, store=store(), twilio=twilio(), queue=queue(), faults=faults(), clock=clock,
                      profiles=profiles(), content=content())


@functools.cache
def content() -> ContentTemplates:
    """Choices' Content resources: created through Twilio's Content API once, remembered in Firestore."""
    from shared.adapters.content_records import content_templates

    return content_templates(settings(), secrets().twilio_auth_token, lambda: store().client, utcnow)


@functools.cache
def reconciler_deps() -> ReconcilerDeps:
    from shared.handlers.reconciler import ReconcilerDeps

    pseudonyms()
    return ReconcilerDeps(settings=settings(), store=store(), queue=queue(), clock=utcnow)


@functools.cache
def outbound_deps() -> OutboundDeps:
    """The outbound API: Firestore and the send queue, no model and no Twilio (the sender sends)."""
    from shared.handlers.outbound import OutboundDeps

    return OutboundDeps(settings=settings(), store=store(), queue=queue(), clock=utcnow, ids=pseudonyms(),
                        profiles=profiles())


def usage() -> dict[str, int]:
    """This process's external calls so far, counted in the adapters it has built."""
    counts: dict[str, int] = {}
    built = {f.__name__ for f in (store, webhook_deps, queue, model, twilio, secrets, media, typing, tools)
             if f.cache_info().currsize}
    if "store" in built:
        counts["firestore_reads"] = store().ops.reads
        counts["firestore_writes"] = store().ops.writes
        counts.update(firestore_dedupe_writes=store().ops.markers, firestore_usage_writes=store().ops.counts)
    if "webhook_deps" in built:
        counts["pubsub_publishes"] = getattr(webhook_deps().publisher, "published", 0)
    if "queue" in built:
        counts["tasks_created"] = queue().created
    if "model" in built:
        counts["openai_calls"] = model().calls
    if knowledge.cache_info().currsize:
        counts.update(knowledge().usage())
    if "twilio" in built:
        counts["twilio_calls"] = twilio().calls
    if "media" in built:
        counts["twilio_media_downloads"] = media().calls
    if "typing" in built:
        counts["twilio_typing_calls"] = typing().calls
    if "tools" in built:
        counts["tool_calls"] = tools().calls
    if profiles.cache_info().currsize:
        # Not per message: at most one per business per PROFILE_CACHE_SECONDS (decision 0012).
        counts["firestore_profile_reads"] = profiles().reads
    if content.cache_info().currsize:  # choices' Content resources: created once, read once per process
        counts.update(content().usage())
    if "secrets" in built:
        counts["secret_manager_accesses"] = getattr(secrets(), "access_count", 0)
    return counts


def log_usage() -> None:
    """With LOG_USAGE on, one line per request with the cumulative counts (read by bench/)."""
    if settings().log_usage:
        logging.getLogger("shared.usage").info("usage", extra={"event": "usage", "usage": usage()})
