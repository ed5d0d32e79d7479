"""One typed settings object, read from the environment once.

Every variable is documented in docs/configuration.md and .env.example. Nothing else in
the code reads ``os.environ``; the Google clients themselves still read
``PUBSUB_EMULATOR_HOST`` and ``FIRESTORE_EMULATOR_HOST``, as they always do.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Mapping

from shared.env_values import ConfigError, _bool, _callers, _float, _int, _list, _text
from shared.inbox_settings import InboxSettings, inbox_values
from shared.usage_settings import UsageSettings, usage_values
from shared.send_settings import SendSettings, send_values

__all__ = ["CALLER_PROOFS", "ConfigError", "DEFAULT_FALLBACK_REPLY", "DEFAULT_SYSTEM_PROMPT", "GOOGLE_CERTS_URL",
           "Settings", "get_settings"]

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
LOCAL_TOOL_SECRET_PREFIX = "TOOL_SECRET_"  # + a business tool's secret id, locally (shared/domain/tools.py)
CALLER_PROOFS = ("caller-key", "signed-token")

DEFAULT_SYSTEM_PROMPT = ("You are the WhatsApp assistant of a small business. Answer briefly and "
                         "kindly, in the language the customer writes in. If you do not know, say so.")
DEFAULT_FALLBACK_REPLY = "Sorry, I can't answer right now. Please try again in a few minutes."


@dataclass(frozen=True)
class Settings(InboxSettings, UsageSettings, SendSettings):
    """Everything the functions need to know about their environment (parts declared apart: shared/*_settings.py)."""

    project_id: str = "local-project"
    log_level: str = "INFO"

    # Inbound: webhook_fn
    public_webhook_url: str = ""
    trust_forwarded_headers: bool = False
    webhook_max_body_bytes: int = 64 * 1024

    # Pub/Sub
    inbound_topic: str = "inbound-messages"
    dead_letter_subscription: str = "inbound-messages-dead-letter"
    publish_max_latency_seconds: float = 0.001

    # Firestore
    firestore_database: str = "(default)"
    conversations_collection: str = "conversations"
    failures_collection: str = "failed_messages"
    conversation_ttl_seconds: int = 24 * 3600
    max_context_messages: int = 20
    # Every field of the conversation document is bounded, so it stays far
    # below Firestore's 1 MiB document limit (docs/decisions/0008-liveness.md).
    max_history_chars: int = 16000
    max_inbound_chars: int = 4000
    max_reply_chars: int = 3200
    max_open_messages: int = 20
    processing_lease_seconds: int = 120
    # Late redeliveries (Pub/Sub keeps 7 days, Twilio retries) are recognised
    # for this long, whatever happened to the conversation document.
    dedupe_collection: str = "seen_messages"
    dedupe_horizon_seconds: int = 8 * 24 * 3600

    # Liveness: every accepted message is terminal within liveness_seconds of
    # its receipt; the reconciler nudges anything idle for reconcile_after_seconds.
    liveness_seconds: int = 900
    reconcile_after_seconds: int = 180

    # Cloud Tasks: sender_fn is the target
    tasks_emulator_host: str = ""
    tasks_location: str = "us-central1"
    tasks_queue: str = "outbound-messages"
    sender_url: str = "http://127.0.0.1:8082/"
    tasks_service_account: str = ""
    send_max_attempts: int = 8

    # Twilio
    twilio_account_sid: str = "AC00000000000000000000000000000000"
    twilio_whatsapp_from: str = "whatsapp:+14155238886"
    twilio_api_base_url: str = ""
    twilio_timeout_seconds: float = 10.0

    # OpenAI
    openai_base_url: str = ""
    openai_model: str = "gpt-4o-mini"
    openai_timeout_seconds: float = 20.0
    openai_max_retries: int = 2
    # The whole model call, retries and Retry-After waits included; below the
    # processing lease so a slow model ends in the fallback reply, not a redelivery.
    model_budget_seconds: float = 60.0
    openai_max_tokens: int = 600
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    fallback_reply: str = DEFAULT_FALLBACK_REPLY

    # Business controls (docs/decisions/0012-business-controls.md): the defaults of every business
    # profile, and where profiles live and how long a process keeps one before reading it again.
    rate_limit_messages: int = 20
    rate_limit_window_seconds: int = 60
    handoff_pause_seconds: int = 3600
    profiles_collection: str = "business_profiles"
    profile_cache_seconds: float = 60.0

    # Knowledge base (docs/decisions/0015-knowledge-base.md): documents per business,
    # embedded through the OpenAI-compatible API and searched in Firestore. The
    # dimensions are also the vector index's (terraform/firestore.tf); the chunk
    # and size limits bound what profiles-apply writes, the others each answer.
    openai_embedding_model: str = "text-embedding-3-small"
    openai_embedding_dimensions: int = 1536
    knowledge_collection: str = "knowledge_chunks"
    knowledge_top_k: int = 4
    knowledge_max_distance: float = 0.7
    knowledge_prompt_tokens: int = 1500
    knowledge_chunk_chars: int = 1200
    knowledge_max_chunks: int = 2000
    knowledge_max_document_bytes: int = 5 * 1024 * 1024

    # Secrets: "env" locally, "secretmanager" in the cloud
    secret_source: str = "env"
    twilio_auth_token_secret: str = "twilio-auth-token"
    openai_api_key_secret: str = "openai-api-key"
    address_hash_key_secret: str = "address-hash-key"
    # The caller key Pub/Sub, Cloud Tasks and Cloud Scheduler carry (docs/decisions/0003-caller-verification.md).
    caller_key_secret: str = "caller-key"
    # Rotation: a rejected credential makes the process re-read its secret, at
    # most this often; the previous value stays accepted for the overlap.
    secret_refresh_interval_seconds: float = 60.0
    secret_overlap_seconds: float = 3600.0
    # Only read when secret_source == "env" (the local fallback).
    env_secrets: Mapping[str, str] = field(default_factory=dict, repr=False)

    # The WhatsApp channel (docs/decisions/0011-whatsapp-channel.md)
    delivery_status_callbacks: bool = True
    media_max_bytes: int = 5 * 1024 * 1024
    media_timeout_seconds: float = 10.0
    # Where Twilio's media URLs may redirect (its media storage); credentials never go there.
    twilio_media_redirect_hosts: tuple[str, ...] = ("media.twiliocdn.com", "mms.twiliocdn.com", "s3-external-1.amazonaws.com")
    openai_vision_model: str = "gpt-4o-mini"
    openai_transcribe_model: str = "gpt-4o-mini-transcribe"
    typing_indicator: bool = True
    twilio_messaging_base_url: str = ""
    reengagement_content_sid: str = ""
    burst_window_seconds: float = 0.0
    # Where a burst's answer task goes: the processor's own push endpoint (docs/decisions/0014-bursts.md).
    processor_url: str = ""
    # Tests only: the sender's clock runs this far ahead (the 24-hour window end to end)
    test_clock_offset_seconds: float = 0.0

    # Speaking WhatsApp natively (docs/decisions/0023-whatsapp-native.md): where Twilio's
    # Content API is (else TWILIO_API_BASE_URL, else https://content.twilio.com) and
    # which collection remembers the Content resource made for each set of choices.
    twilio_content_base_url: str = ""
    content_collection: str = "content_templates"

    # Caller verification behind Cloud Run (docs/decisions/0003-caller-verification.md):
    # the token's audience and accounts, and what proves the request came through
    # Google: the caller key ("caller-key") or the token's own signature ("signed-token").
    auth_audience: str = ""
    auth_allowed_service_accounts: tuple[str, ...] = ()
    # The outbound API: which businesses each verified caller may send for (docs/decisions/0013-outbound-api.md).
    outbound_callers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    caller_proof: str = ""
    # Where Google's token signing certificates are; a local issuer's in the local stack.
    auth_certs_url: str = GOOGLE_CERTS_URL
    # host:port of a Secret Manager stand-in (plaintext gRPC); unset in the cloud.
    secret_manager_emulator_host: str = ""
    # Business tools (decision 0016): model rounds per message (a profile may change it), largest tool answer.
    max_tool_rounds: int = 3
    tool_response_max_bytes: int = 16 * 1024

    # Fault injection for tests only; empty in every real deployment
    test_fault_points: tuple[str, ...] = ()
    # Log this process's cumulative external calls after each request (benchmarks)
    log_usage: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        secret_source = _text(env, "SECRET_SOURCE", "env").lower()
        if secret_source not in {"env", "secretmanager"}:
            raise ConfigError(f"SECRET_SOURCE must be env or secretmanager, got {secret_source!r}")
        project = _text(env, "GOOGLE_CLOUD_PROJECT", "") or _text(env, "GCP_PROJECT", "local-project")
        d = cls()
        return cls(
            project_id=project,
            log_level=_text(env, "LOG_LEVEL", d.log_level).upper(),
            public_webhook_url=_text(env, "PUBLIC_WEBHOOK_URL"),
            trust_forwarded_headers=_bool(env, "TRUST_FORWARDED_HEADERS", d.trust_forwarded_headers),
            webhook_max_body_bytes=_int(env, "WEBHOOK_MAX_BODY_BYTES", d.webhook_max_body_bytes, 1024, 10 * 1024 * 1024),
            inbound_topic=_text(env, "PUBSUB_TOPIC", d.inbound_topic),
            dead_letter_subscription=_text(env, "PUBSUB_DEAD_LETTER_SUBSCRIPTION", d.dead_letter_subscription),
            publish_max_latency_seconds=_float(env, "PUBLISH_MAX_LATENCY_SECONDS", d.publish_max_latency_seconds, 0.0, 1.0),
            firestore_database=_text(env, "FIRESTORE_DATABASE", d.firestore_database),
            conversations_collection=_text(env, "CONVERSATIONS_COLLECTION", d.conversations_collection),
            failures_collection=_text(env, "FAILURES_COLLECTION", d.failures_collection),
            conversation_ttl_seconds=_int(env, "CONVERSATION_TTL_SECONDS", d.conversation_ttl_seconds, 60, 400 * 24 * 3600),
            max_context_messages=_int(env, "MAX_CONTEXT_MESSAGES", d.max_context_messages, 2, 200),
            max_history_chars=_int(env, "MAX_HISTORY_CHARS", d.max_history_chars, 100, 200_000),
            max_inbound_chars=_int(env, "MAX_INBOUND_CHARS", d.max_inbound_chars, 100, 50_000),
            max_reply_chars=_int(env, "MAX_REPLY_CHARS", d.max_reply_chars, 100, 20_000),
            max_open_messages=_int(env, "MAX_OPEN_MESSAGES", d.max_open_messages, 1, 100),
            processing_lease_seconds=_int(env, "PROCESSING_LEASE_SECONDS", d.processing_lease_seconds, 5, 3600),
            dedupe_collection=_text(env, "DEDUPE_COLLECTION", d.dedupe_collection),
            dedupe_horizon_seconds=_int(env, "DEDUPE_HORIZON_SECONDS", d.dedupe_horizon_seconds, 3600, 60 * 24 * 3600),
            liveness_seconds=_int(env, "LIVENESS_SECONDS", d.liveness_seconds, 30, 7 * 24 * 3600),
            reconcile_after_seconds=_int(env, "RECONCILE_AFTER_SECONDS", d.reconcile_after_seconds, 1, 24 * 3600),
            tasks_emulator_host=_text(env, "CLOUD_TASKS_EMULATOR_HOST"),
            tasks_location=_text(env, "TASKS_LOCATION", d.tasks_location),
            tasks_queue=_text(env, "TASKS_QUEUE", d.tasks_queue),
            sender_url=_text(env, "SENDER_URL", d.sender_url),
            tasks_service_account=_text(env, "TASKS_SERVICE_ACCOUNT"),
            send_max_attempts=_int(env, "SEND_MAX_ATTEMPTS", d.send_max_attempts, 1, 100),
            twilio_account_sid=_text(env, "TWILIO_ACCOUNT_SID", d.twilio_account_sid),
            twilio_whatsapp_from=_text(env, "TWILIO_WHATSAPP_FROM", d.twilio_whatsapp_from),
            twilio_api_base_url=_text(env, "TWILIO_API_BASE_URL").rstrip("/"),
            twilio_timeout_seconds=_float(env, "TWILIO_TIMEOUT_SECONDS", d.twilio_timeout_seconds, 0.1, 120.0),
            openai_base_url=_text(env, "OPENAI_BASE_URL"),
            openai_model=_text(env, "OPENAI_MODEL", d.openai_model),
            openai_timeout_seconds=_float(env, "OPENAI_TIMEOUT_SECONDS", d.openai_timeout_seconds, 0.1, 600.0),
            openai_max_retries=_int(env, "OPENAI_MAX_RETRIES", d.openai_max_retries, 0, 10),
            model_budget_seconds=_float(env, "MODEL_BUDGET_SECONDS", d.model_budget_seconds, 0.5, 3600.0),
            openai_max_tokens=_int(env, "OPENAI_MAX_TOKENS", d.openai_max_tokens, 16, 16_000),
            system_prompt=_text(env, "SYSTEM_PROMPT", d.system_prompt),
            fallback_reply=_text(env, "FALLBACK_REPLY", d.fallback_reply),
            rate_limit_messages=_int(env, "RATE_LIMIT_MESSAGES", d.rate_limit_messages, 1, 10_000),
            rate_limit_window_seconds=_int(env, "RATE_LIMIT_WINDOW_SECONDS", d.rate_limit_window_seconds, 1, 7 * 24 * 3600),
            handoff_pause_seconds=_int(env, "HANDOFF_PAUSE_SECONDS", d.handoff_pause_seconds, 60, 30 * 24 * 3600),
            profiles_collection=_text(env, "PROFILES_COLLECTION", d.profiles_collection),
            profile_cache_seconds=_float(env, "PROFILE_CACHE_SECONDS", d.profile_cache_seconds, 0.0, 3600.0),
            openai_embedding_model=_text(env, "OPENAI_EMBEDDING_MODEL", d.openai_embedding_model),
            openai_embedding_dimensions=_int(env, "OPENAI_EMBEDDING_DIMENSIONS", d.openai_embedding_dimensions,
                                             1, 2048),
            knowledge_collection=_text(env, "KNOWLEDGE_COLLECTION", d.knowledge_collection),
            knowledge_top_k=_int(env, "KNOWLEDGE_TOP_K", d.knowledge_top_k, 1, 20),
            knowledge_max_distance=_float(env, "KNOWLEDGE_MAX_DISTANCE", d.knowledge_max_distance, 0.0, 2.0),
            knowledge_prompt_tokens=_int(env, "KNOWLEDGE_PROMPT_TOKENS", d.knowledge_prompt_tokens, 300, 50_000),
            knowledge_chunk_chars=_int(env, "KNOWLEDGE_CHUNK_CHARS", d.knowledge_chunk_chars, 200, 4000),
            knowledge_max_chunks=_int(env, "KNOWLEDGE_MAX_CHUNKS", d.knowledge_max_chunks, 1, 10_000),
            knowledge_max_document_bytes=_int(env, "KNOWLEDGE_MAX_DOCUMENT_BYTES", d.knowledge_max_document_bytes,
                                              1024, 50 * 1024 * 1024),
            secret_source=secret_source,
            twilio_auth_token_secret=_text(env, "TWILIO_AUTH_TOKEN_SECRET", d.twilio_auth_token_secret),
            openai_api_key_secret=_text(env, "OPENAI_API_KEY_SECRET", d.openai_api_key_secret),
            address_hash_key_secret=_text(env, "ADDRESS_HASH_KEY_SECRET", d.address_hash_key_secret),
            caller_key_secret=_text(env, "CALLER_KEY_SECRET", d.caller_key_secret),
            secret_refresh_interval_seconds=_float(env, "SECRET_REFRESH_INTERVAL_SECONDS", d.secret_refresh_interval_seconds, 0.0, 3600.0),
            secret_overlap_seconds=_float(env, "SECRET_OVERLAP_SECONDS", d.secret_overlap_seconds, 0.0, 7 * 24 * 3600.0),
            env_secrets={name: value for name, value in env.items() if value and (
                name in ("TWILIO_AUTH_TOKEN", "OPENAI_API_KEY", "ADDRESS_HASH_KEY", "CALLER_KEY", "INBOX_SESSION_KEY")
                or name.startswith(LOCAL_TOOL_SECRET_PREFIX))},
            delivery_status_callbacks=_bool(env, "DELIVERY_STATUS_CALLBACKS", d.delivery_status_callbacks),
            media_max_bytes=_int(env, "MEDIA_MAX_BYTES", d.media_max_bytes, 1024, 25 * 1024 * 1024),
            media_timeout_seconds=_float(env, "MEDIA_TIMEOUT_SECONDS", d.media_timeout_seconds, 0.1, 60.0),
            twilio_media_redirect_hosts=_list(env, "TWILIO_MEDIA_REDIRECT_HOSTS") or d.twilio_media_redirect_hosts,
            openai_vision_model=_text(env, "OPENAI_VISION_MODEL", d.openai_vision_model),
            openai_transcribe_model=_text(env, "OPENAI_TRANSCRIBE_MODEL", d.openai_transcribe_model),
            typing_indicator=_bool(env, "TYPING_INDICATOR", d.typing_indicator),
            twilio_messaging_base_url=_text(env, "TWILIO_MESSAGING_BASE_URL").rstrip("/"),
            reengagement_content_sid=_text(env, "REENGAGEMENT_CONTENT_SID"),
            burst_window_seconds=_float(env, "BURST_WINDOW_SECONDS", d.burst_window_seconds, 0.0, 30.0),
            processor_url=_text(env, "PROCESSOR_URL", d.processor_url),
            twilio_content_base_url=_text(env, "TWILIO_CONTENT_BASE_URL").rstrip("/"),
            content_collection=_text(env, "CONTENT_COLLECTION", d.content_collection),
            test_clock_offset_seconds=_float(env, "TEST_CLOCK_OFFSET_SECONDS", 0.0, -10_000_000, 10_000_000),
            auth_audience=_text(env, "AUTH_AUDIENCE"),
            auth_allowed_service_accounts=_list(env, "AUTH_ALLOWED_SERVICE_ACCOUNTS"),
            outbound_callers=_callers(env, "OUTBOUND_CALLERS"),
            caller_proof=_text(env, "CALLER_PROOF").lower(),
            auth_certs_url=_text(env, "AUTH_CERTS_URL", d.auth_certs_url),
            secret_manager_emulator_host=_text(env, "SECRET_MANAGER_EMULATOR_HOST"),
            **inbox_values(env), **send_values(env),
            max_tool_rounds=_int(env, "MAX_TOOL_ROUNDS", d.max_tool_rounds, 1, 10),
            tool_response_max_bytes=_int(env, "TOOL_RESPONSE_MAX_BYTES", d.tool_response_max_bytes, 1024, 1024 * 1024),
            test_fault_points=_list(env, "TEST_FAULT_POINTS"),
            log_usage=_bool(env, "LOG_USAGE", False), **usage_values(env),
        )._checked()

    def _checked(self) -> "Settings":
        """Refuse combinations that would break the liveness bound (docs/decisions/0008-liveness.md)."""
        if self.model_budget_seconds >= self.processing_lease_seconds:
            raise ConfigError(f"MODEL_BUDGET_SECONDS ({self.model_budget_seconds:g}) must be below PROCESSING_LEASE_"
                              f"SECONDS ({self.processing_lease_seconds}), or a slow model outlives its claim")
        if self.liveness_seconds <= self.processing_lease_seconds + self.in_flight_grace_seconds:
            raise ConfigError(
                f"LIVENESS_SECONDS ({self.liveness_seconds}) must exceed PROCESSING_LEASE_SECONDS plus the "
                f"Twilio in-flight grace ({self.processing_lease_seconds + self.in_flight_grace_seconds:g})"
            )
        if self.auth_audience and self.caller_proof not in CALLER_PROOFS:
            raise ConfigError(
                f"CALLER_PROOF must be one of {', '.join(CALLER_PROOFS)} when AUTH_AUDIENCE is set, "
                f"got {self.caller_proof!r}: Cloud Run removes the token's signature, so something else must prove "
                "the request came through Google"
            )
        if self.burst_window_seconds > 0 and not self.processor_url:
            raise ConfigError("BURST_WINDOW_SECONDS > 0 needs PROCESSOR_URL, where a burst's answer task is delivered")
        return self

    @property
    def in_flight_grace_seconds(self) -> float:
        """Worst case of one Twilio call: connect and read time-outs add up, plus a margin."""
        return 2 * self.twilio_timeout_seconds + 5


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once on first use."""
    return Settings.from_env()
