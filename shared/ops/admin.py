"""``make admin``: one operator command for conversations, handoff and business profiles.

    make admin ARGS="show whatsapp:+34600111222"                  history, each message's state, opt-out, pause
    make admin ARGS="pause whatsapp:+34600111222 --minutes 30"    a person takes over this conversation
    make admin ARGS="reply whatsapp:+34600111222 We open at 7."   a person's reply, sent in order, exactly once
    make admin ARGS="resume whatsapp:+34600111222"                the bot answers again
    make admin ARGS="erase whatsapp:+34600111222"                 a user's data, on request
    make admin ARGS="profiles-validate profiles.example.yaml"     check a profiles file, write nothing
    make admin ARGS="profiles-apply profiles.example.yaml"        validate, then write every profile
    make admin ARGS="failures"                                    failed and dead-lettered messages
    make admin ARGS="replay [SID ...]"                            answer dead-lettered messages after all
    make admin ARGS="usage [--business B] [--days N]"            tokens, estimated cost, messages per business per day

``--business`` names the WhatsApp number the user wrote to (default for show
and erase: every conversation of the user, whatever number it is with;
TWILIO_WHATSAPP_FROM for the others). Works against the emulators
(FIRESTORE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST, CLOUD_TASKS_EMULATOR_HOST, as
``make stack`` prints them) and the cloud alike. Every change to a
conversation is a compare-and-set, like every writer's
(docs/decisions/0012-business-controls.md).
"""

from __future__ import annotations

import argparse
import secrets as random
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from shared.domain.conversation import utcnow
from shared.domain.profiles import BusinessProfile, ProfileError, profiles_from_document
from shared.handlers.answer import ALREADY, ANSWERED, FOREIGN, REFUSED
from shared.handlers.person import OPTED_OUT, PersonReply, pause_until, reply_as_person, set_paused
from shared.ops.user_data import AdminDeps, AdminError, erase, show
from shared.ops.user_data import when as _when

__all__ = ["AdminDeps", "AdminError", "apply_profiles", "erase", "pause", "read_profiles_file", "reply", "resume", "show"]


def pause(deps: AdminDeps, user: str, business: str, seconds: int) -> str:
    """A person takes over: the bot records the user's messages and does not answer until the pause ends."""
    until = pause_until(deps.clock, seconds)
    _exists(set_paused(deps.store, deps.ids.conversation_id(user, business), until, deps.clock), deps, user, business)
    return f"paused: the bot will not answer {deps.ids.mask(user)} at {business} until {_when(until)} UTC"


def resume(deps: AdminDeps, user: str, business: str) -> str:
    _exists(set_paused(deps.store, deps.ids.conversation_id(user, business), None, deps.clock), deps, user, business)
    return f"resumed: the bot answers {deps.ids.mask(user)} at {business} again"


def _exists(found: bool, deps: AdminDeps, user: str, business: str) -> None:
    if not found:
        raise AdminError(f"{deps.ids.mask(user)} has no conversation with {business}")


def reply(deps: AdminDeps, user: str, business: str, text: str, sid: str = "") -> str:
    """A person's reply: answered through the one answer path, next in the user's order, sent like any reply
    (shared/handlers/person.py, as the inbox's). Refused to an opted-out user: nothing at all is sent to them."""
    if not text.strip():
        raise AdminError("the reply is empty")
    sid = sid or f"OP{random.token_hex(16)}"
    cid = deps.ids.conversation_id(user, business)
    done = reply_as_person(deps.store, deps.queue(), deps.settings, deps.clock, cid, PersonReply(
        sid=sid, text=text, business=business, to=user, user_id=deps.ids.user_id(user)))
    if done.outcome == REFUSED:
        reason = (f"{deps.ids.mask(user)} opted out of {business}: nothing may be sent to them"
                  if done.refusal == OPTED_OUT else done.refusal)
        raise AdminError(reason)
    if done.outcome == FOREIGN:
        raise AdminError(f"{sid} exists already in this conversation")
    if done.outcome not in (ANSWERED, ALREADY):
        return f"reply {sid} to {deps.ids.mask(user)} from {business}: already written and {done.status}"
    when = "queued now" if done.queued else "queued after the replies before it"
    return f"reply {sid} to {deps.ids.mask(user)} from {business}: seq {done.seq}, {done.parts} part(s), {when}"


def read_profiles_file(path: Path, defaults: BusinessProfile) -> tuple[dict[str, Any], dict[str, BusinessProfile]]:
    """The raw mappings and the validated profiles of a profiles file; nothing is written here."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read it: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from None
    try:
        profiles = profiles_from_document(document, defaults)
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None
    return {str(k): dict(v or {}) for k, v in document["businesses"].items()}, profiles


def apply_profiles(put: Callable[[str, Mapping[str, Any], datetime], None], raw: Mapping[str, Mapping[str, Any]],
                   now: datetime) -> list[str]:
    """Write every profile of an already validated file; one report line each."""
    lines = []
    for address, profile in raw.items():
        put(address, profile, now)
        lines.append(f"applied {address}  {profile.get('name', '')}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make admin ARGS=...", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("show", "erase", "pause", "resume", "reply"):
        sub = commands.add_parser(name)
        sub.add_argument("user", help="the user's WhatsApp address, e.g. whatsapp:+34600111222")
        sub.add_argument("--business", help="the WhatsApp number the user wrote to")
        if name == "erase":
            sub.add_argument("--hold-subscription", default="inbound-messages-dead-letter-hold",
                             help="the dead-letter hold subscription, whose copies of the user's messages go too")
        if name == "pause":
            sub.add_argument("--minutes", type=int, help="default: the business's handoff_pause_seconds")
        if name == "reply":
            sub.add_argument("text", nargs="+")
            sub.add_argument("--sid", default="", help="the reply's id (default OP + random hex)")
    for name in ("profiles-validate", "profiles-apply"):
        commands.add_parser(name).add_argument("file", type=Path)
    commands.add_parser("failures").add_argument("--limit", type=int, default=100)
    replay_parser = commands.add_parser("replay")
    replay_parser.add_argument("sids", nargs="*")
    commands.add_parser("usage", add_help=False)  # shared/ops/usage_report.py reads its own arguments
    args, rest = parser.parse_known_args(argv)

    from shared import bootstrap
    from shared.adapters.profile_store import defaults_from_settings
    from shared.ops.replay import PubSubDeadLetters

    settings = bootstrap.settings()
    if args.command == "failures":
        from shared.ops import failures

        return failures.main(["--limit", str(args.limit)])
    if args.command == "replay":
        from shared.ops import replay

        return replay.main([*args.sids, *rest])
    if args.command == "usage":
        from shared.ops import usage_report

        return usage_report.main(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.command in ("profiles-validate", "profiles-apply"):
            from shared.ops.knowledge_apply import apply_with_knowledge, lazy_knowledge
            from shared.ops.knowledge_files import knowledge_summary, read_knowledge

            from shared.ops.send_queues import send_queues, send_rates, with_send_queues

            raw, profiles = read_profiles_file(args.file, defaults_from_settings(settings))
            documents = read_knowledge(profiles, args.file.parent, settings)
            send_rates(raw, settings)
            if args.command == "profiles-validate":
                print(f"{args.file}: {len(profiles)} valid profile(s): " + ", ".join(sorted(profiles))
                      + knowledge_summary(documents))
                return 0
            store, embedder = lazy_knowledge(settings, lambda: bootstrap.store().client,
                                             bootstrap.secrets().openai_api_key)
            profiles_store = bootstrap.profiles()
            stored, queued = profiles_store.stored(), []
            put = with_send_queues(profiles_store.put, raw, stored, lambda: send_queues(settings), settings, queued)
            print("\n".join(apply_with_knowledge(put, stored, raw, documents, store, embedder, settings, utcnow)
                            + queued))
            return 0
        hold = getattr(args, "hold_subscription", "")
        deps = AdminDeps(settings, bootstrap.store(), bootstrap.pseudonyms(), bootstrap.queue, utcnow,
                         businesses=lambda: bootstrap.profiles().stored().keys(),
                         dead_letters=lambda: PubSubDeadLetters(settings.project_id, hold, settings.inbound_topic))
        default = settings.twilio_whatsapp_from
        if args.command == "show":
            print(show(deps, args.user, args.business))
        elif args.command == "erase":
            print(erase(deps, args.user, args.business))
        elif args.command == "pause":
            business = args.business or default
            seconds = args.minutes * 60 if args.minutes else bootstrap.profiles().get(business).handoff_pause_seconds
            print(pause(deps, args.user, business, seconds))
        elif args.command == "resume":
            print(resume(deps, args.user, args.business or default))
        else:
            print(reply(deps, args.user, args.business or default, " ".join(args.text), args.sid))
    except (AdminError, ProfileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
