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

``--business`` names the WhatsApp number the user wrote to (default: every
business with a profile plus TWILIO_WHATSAPP_FROM for show and erase,
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
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import yaml

from shared.adapters.firestore_store import Conflict, ConversationStore
from shared.config import Settings
from shared.domain.controls import opted_out, paused, person_reply_updates
from shared.domain.conversation import REMOVE, Conversation, applied, utcnow
from shared.domain.profiles import BusinessProfile, ProfileError, profiles_from_document
from shared.domain.pseudonyms import Pseudonyms
from shared.domain.splitting import split_reply
from shared.handlers.handoff import Queue, send_when_its_turn
from shared.handlers.processor import MAX_CONFLICT_RETRIES


class AdminError(Exception):
    """The command cannot be done as asked; the message says why."""


@dataclass(frozen=True)
class AdminDeps:
    settings: Settings
    store: ConversationStore
    ids: Pseudonyms
    queue: Callable[[], Queue]
    clock: Callable[[], datetime]


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else "-"


def _load(deps: AdminDeps, user: str, business: str) -> tuple[str, Any, Conversation]:
    cid = deps.ids.conversation_id(user, business)
    snap = deps.store.load(cid)
    return cid, snap.version, snap.conversation


def show(deps: AdminDeps, user: str, business: str) -> str:
    """The conversation of ``user`` with ``business``: state, history and every tracked message."""
    cid, _, conv = _load(deps, user, business)
    if not conv.exists:
        return f"{deps.ids.mask(user)} has no conversation with {business}"
    now = deps.clock()
    rate = conv.data.get("rate") or {}
    lines = [
        f"conversation of {deps.ids.mask(user)} with {business} (id {cid[:16]}…)",
        f"  opted out: {'yes, since ' + _when(conv.data.get('optedOutAt')) if opted_out(conv) else 'no'}",
        f"  paused for a person: {'until ' + _when(conv.data['pausedUntil']) if paused(conv, now) else 'no'}",
        f"  rate window: {rate.get('count', 0)} message(s) since {_when(rate.get('start'))}"
        f"{', notice sent' if rate.get('noticed') else ''}",
        f"  expires: {_when(conv.data.get('expireAt')) if conv.data.get('expireAt') else 'never (opted out)'}"
        f"{' (expired)' if conv.is_expired(now) else ''}",
        f"  order: lastSeq {conv.last_seq}, doneSeq {conv.done_seq}",
    ]
    history = conv.history(now)
    lines.append(f"  history ({len(history)} turns):")
    for turn in history:
        who = "person" if turn.get("by") == "person" else turn.get("role", "?")
        lines.append(f"    {who:9}  {turn.get('content', '')}")
    lines.append(f"  messages ({len(conv.messages)}):")
    ordered = sorted(conv.messages.items(), key=lambda item: item[1].get("receivedAt") or now)
    for sid, entry in ordered:
        decided = (entry.get("decided") or {}).get("reason") or (entry.get("decided") or {}).get("kind") or ""
        extra = [f"seq {entry['seq']}"] if "seq" in entry else []
        extra += [f"by {entry['by']}"] if entry.get("by") else []
        extra += [decided] if decided else []
        extra += [str(entry["reason"])] if entry.get("reason") else []
        lines.append(f"    {sid:34}  {_when(entry.get('receivedAt'))}  {entry.get('status', '?'):13}  {'; '.join(extra)}")
    return "\n".join(lines)


def _write(deps: AdminDeps, user: str, business: str, change: Callable[[Conversation], dict[str, Any]]) -> Conversation:
    """Compare-and-set ``change`` on the conversation, re-reading on a conflict."""
    for _ in range(MAX_CONFLICT_RETRIES):
        cid, version, conv = _load(deps, user, business)
        updates = change(conv)
        try:
            deps.store.apply(cid, updates, version)
        except Conflict:
            continue
        return applied(conv, updates)
    raise Conflict(f"the conversation kept changing; try again ({deps.ids.mask(user)})")


def pause(deps: AdminDeps, user: str, business: str, seconds: int) -> str:
    """A person takes over: the bot records the user's messages and does not answer until the pause ends."""
    until = deps.clock() + timedelta(seconds=seconds)

    def change(conv: Conversation) -> dict[str, Any]:
        if not conv.exists:
            raise AdminError(f"{deps.ids.mask(user)} has no conversation with {business}")
        return {"pausedUntil": until, "updatedAt": deps.clock()}

    _write(deps, user, business, change)
    return f"paused: the bot will not answer {deps.ids.mask(user)} at {business} until {_when(until)} UTC"


def resume(deps: AdminDeps, user: str, business: str) -> str:
    def change(conv: Conversation) -> dict[str, Any]:
        if not conv.exists:
            raise AdminError(f"{deps.ids.mask(user)} has no conversation with {business}")
        return {"pausedUntil": REMOVE, "updatedAt": deps.clock()}

    _write(deps, user, business, change)
    return f"resumed: the bot answers {deps.ids.mask(user)} at {business} again"


def reply(deps: AdminDeps, user: str, business: str, text: str, sid: str = "") -> str:
    """A person's reply: an answered entry next in the user's order, sent by the sender like any reply.

    Refused to an opted-out user: nothing at all is sent to them.
    """
    text = text.strip()
    if not text:
        raise AdminError("the reply is empty")
    s = deps.settings
    sid = sid or f"OP{random.token_hex(16)}"
    parts = split_reply(text[: s.max_reply_chars])
    cid = deps.ids.conversation_id(user, business)

    def change(conv: Conversation) -> dict[str, Any]:
        if opted_out(conv):
            raise AdminError(f"{deps.ids.mask(user)} opted out of {business}: nothing may be sent to them")
        if conv.entry(sid):
            raise AdminError(f"{sid} exists already in this conversation")
        return person_reply_updates(
            conv, sid, parts, deps.clock(), s.conversation_ttl_seconds, s.max_context_messages,
            s.max_history_chars, s.reconcile_after_seconds, user, business,
        )

    conv = _write(deps, user, business, change)
    seq = int(conv.entry(sid)["seq"])
    queued = send_when_its_turn(deps.queue(), cid, conv, sid, seq)
    when = "queued now" if queued else "queued after the replies before it"
    return f"reply {sid} to {deps.ids.mask(user)} from {business}: seq {seq}, {len(parts)} part(s), {when}"


def erase(deps: AdminDeps, user: str, business: str) -> str:
    """A user's data, on request: the conversation and its failure records.

    Kept: an opt-out (a document with only ``optedOut``, no address, history
    or messages), so the user is still not messaged; and the dedupe markers,
    which hold no address or text and expire by themselves within days, so a
    late redelivery of an old message is still not answered twice.
    A conversation with a message still in flight is refused: its reply would
    lose the record that makes it exactly once.
    """
    cid = deps.ids.conversation_id(user, business)
    for _ in range(MAX_CONFLICT_RETRIES):
        snap = deps.store.load(cid)
        conv = snap.conversation
        if conv.open_entries():
            raise AdminError(f"{len(conv.open_entries())} message(s) of this conversation are in flight; try again in a minute")
        kept = opted_out(conv)
        try:
            if conv.exists:
                deps.store.erase(cid, snap.version)
            if kept:
                deps.store.apply(cid, {"optedOut": True, "optedOutAt": conv.data.get("optedOutAt") or deps.clock(),
                                       "business": business}, None)
        except Conflict:
            continue
        break
    else:
        raise Conflict("the conversation kept changing; try again")
    failures = deps.store.failures_of(cid)
    for sid in failures:
        deps.store.delete_failure(sid)
    what = "conversation" if conv.exists else "no conversation"
    note = "; the opt-out is kept (no address, no history)" if kept else ""
    return f"erased {deps.ids.mask(user)} at {business}: {what}, {len(failures)} failure record(s){note}"


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


def _businesses(business: str | None, settings: Settings, stored: Callable[[], Iterable[str]]) -> list[str]:
    if business:
        return [business]
    return sorted({settings.twilio_whatsapp_from, *stored()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make admin ARGS=...", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("show", "erase", "pause", "resume", "reply"):
        sub = commands.add_parser(name)
        sub.add_argument("user", help="the user's WhatsApp address, e.g. whatsapp:+34600111222")
        sub.add_argument("--business", help="the WhatsApp number the user wrote to")
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
    args, rest = parser.parse_known_args(argv)

    from shared import bootstrap
    from shared.adapters.profile_store import defaults_from_settings

    settings = bootstrap.settings()
    if args.command == "failures":
        from shared.ops import failures

        return failures.main(["--limit", str(args.limit)])
    if args.command == "replay":
        from shared.ops import replay

        return replay.main([*args.sids, *rest])
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.command in ("profiles-validate", "profiles-apply"):
            raw, profiles = read_profiles_file(args.file, defaults_from_settings(settings))
            if args.command == "profiles-validate":
                print(f"{args.file}: {len(profiles)} valid profile(s): " + ", ".join(sorted(profiles)))
                return 0
            print("\n".join(apply_profiles(bootstrap.profiles().put, raw, utcnow())))
            return 0
        deps = AdminDeps(settings, bootstrap.store(), bootstrap.pseudonyms(), bootstrap.queue, utcnow)
        default = settings.twilio_whatsapp_from
        if args.command in ("show", "erase"):
            targets = _businesses(args.business, settings, lambda: bootstrap.profiles().stored().keys())
            action = show if args.command == "show" else erase
            print("\n\n".join(action(deps, args.user, b) for b in targets))
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
