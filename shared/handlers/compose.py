"""The answer path's middle steps: gather the context, call the model, split the reply into parts.

Between the claim (shared/handlers/claim.py, bursts.py) and the answer
write (shared/handlers/answer.py), each a named step a later feature can
extend or put one more next to (retrieval before the model call, tools
during it):

    gather_context  the history and the user's turn the model sees
    ask_model       the business's prompt and model, grounded in its documents
                    when it has any (shared/handlers/knowledge_turn.py); typing shown meanwhile;
                    media read first (shared/handlers/media_turn.py); the
                    fallback reply when the model fails, never a redelivery
    to_parts        capped, split into WhatsApp-sized parts (the welcome first)

A canned reply (a command, a keyword rule, an opt-out) skips the model and
goes through the same split and the same answer write.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from shared.adapters.firestore_store import failure_record
from shared.domain.choice_answers import MENU_PREFIX, menu_offer, offer_parts, route_for, turn_text
from shared.domain.controls import MODEL, Decision
from shared.domain.conversation import Answer, Conversation
from shared.domain.turns import Turn, cap_text
from shared.domain.entry import Decided
from shared.domain.inbound import InboundMessage
from shared.domain.profiles import BusinessProfile, profile_value
from shared.domain.splitting import split_reply
from shared.handlers.channel import start_typing
from shared.handlers.deps import ProcessorDeps
from shared.handlers.knowledge_turn import GroundedModel, Grounding
from shared.handlers.media_turn import MediaOptions, answer_with_media
from shared.log import mask_address

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    """What the model is asked with."""

    history: list[Turn]
    user_text: str
    profile: BusinessProfile


@dataclass(frozen=True)
class Reply:
    text: str
    user_text: str  # the user's turn as it enters the history (a voice note's transcript, "[image] ...")
    failure: str = ""  # why the fallback went instead of the model's reply
    model_ms: float = 0.0
    grounding: Grounding | None = None  # the business's documents the model was given


def gather_context(profile: BusinessProfile, history: list[Turn], user_text: str) -> Context:
    """The history and the user's turn the model sees, with the business it answers for."""
    return Context(history=history, user_text=user_text, profile=profile)


def ask_model(deps: ProcessorDeps, context: Context, log_fields: dict[str, Any],
              call: Callable[[], tuple[str, str]]) -> Reply:
    """Run the model ``call`` (returns the user's turn and the reply) within the fallback.

    A failed model answers with the business's fallback reply; the time is the
    model's own, retries included, for the dashboard's model latency.
    """
    started = time.monotonic()
    failure, user_text = "", context.user_text
    try:
        user_text, text = call()
    except Exception as exc:
        failure = f"model unavailable: {exc}"[:300]
        text = context.profile.fallback_reply
        log.error("model unavailable, sending the fallback reply",
                  extra={**log_fields, "event": "ai_failed", "reason": failure})
    return Reply(text, user_text, failure, round((time.monotonic() - started) * 1000, 1))


def to_parts(deps: ProcessorDeps, profile: BusinessProfile, text: str, welcome: str = "") -> list[str]:
    parts = split_reply(cap_text(text, deps.settings.max_reply_chars)) or [profile.fallback_reply]
    return [welcome, *parts] if welcome else parts


def compose_message(msg: InboundMessage, deps: ProcessorDeps, profile: BusinessProfile, decision: Decision,
                    history: list[Turn], conversation: Conversation | None = None) -> tuple[Answer, Reply]:
    """The answer to one claimed message: the model's (text, media) or the decision's canned reply.

    The customer's turn says what a tap chose and what a quoted message said
    (``conversation``: the record it is looked up in); a menu ends the parts.
    """
    conv = conversation if conversation is not None else Conversation(history=history)
    said = turn_text(msg, route_for(msg, profile, conv), conv)
    context = gather_context(profile, history, cap_text(said, deps.settings.max_inbound_chars))
    fields = {"sid": msg.sid, "sender": mask_address(msg.sender)}
    start_typing(deps.typing, msg.sid, profile_value(profile, "typing_indicator", deps.settings.typing_indicator))
    grounded = GroundedModel(deps, profile, fields)
    reply = ask_model(deps, context, fields, lambda: _call(msg, deps, decision, context, grounded))
    reply = replace(reply, grounding=grounded.grounding)
    deps.faults.hit("after_ai")
    parts = to_parts(deps, profile, reply.text, decision.welcome)
    offer = menu_offer(decision, profile)
    shown = offer is not None and decision.reason.startswith(MENU_PREFIX)  # the menu's text is the reply: once
    if grounded.offer is not None and not reply.failure:  # the model's choices answer it, before a welcome menu
        offer, shown = replace(grounded.offer, body=cap_text(grounded.offer.body, deps.settings.max_reply_chars)), True
    parts, choices = offer_parts([decision.welcome] if shown else parts, offer)
    answer = Answer(parts=parts, asked=reply.user_text, in_history=decision.kind == MODEL or decision.in_history,
                    failure=reply.failure, decided=_decided(decision), choices=choices)
    return answer, reply


def _call(msg: InboundMessage, deps: ProcessorDeps, decision: Decision, context: Context,
          grounded: GroundedModel) -> tuple[str, str]:
    profile, settings = context.profile, deps.settings
    if decision.kind != MODEL:
        return context.user_text, decision.reply
    if not msg.media:
        return context.user_text, grounded.reply(context.history, context.user_text)
    options = MediaOptions(
        system_prompt=profile.system_prompt or None,
        vision_model=profile_value(profile, "vision_model", settings.openai_vision_model),
        model=profile.model or None, transcribe_model=profile.transcribe_model or settings.openai_transcribe_model,
        max_inbound_chars=settings.max_inbound_chars,
    )
    user_text, text, failure = answer_with_media(msg, deps.media, grounded, context.history, options)
    if failure is not None:
        now = deps.clock()
        deps.store.record_failure(msg.sid, failure_record(
            conversation_id=deps.ids.conversation_id(msg.sender, msg.recipient), masked_sender=mask_address(msg.sender),
            status="media_failed", stage=failure.stage, reason=str(failure), now=now,
        ))
    return user_text, text


def _decided(decision: Decision) -> Decided | None:
    """The reply is in the parts now: the entry keeps what decided it, not its text twice."""
    return Decided(kind=decision.kind, reason=decision.reason) if decision.record() is not None else None
