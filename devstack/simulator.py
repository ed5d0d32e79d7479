"""A WhatsApp-like chat page for the local stack, served on loopback (``make dev``, ``make stack``).

The page is a client of the running stack, never of a function's internals:
it posts signed webhooks to webhook_fn exactly as Twilio does (media uploaded
to the Twilio stand-in first, which serves it back under a Twilio media URL),
and it reads only what the stack exposes: what the Twilio stand-in received
and the status callbacks it sent (the ticks), the conversation documents and
failure records in the Firestore emulator, the Cloud Tasks stand-in's task
records, and the functions' JSON logs. The operator tools (failures, replay,
hand-off) run as the same commands an operator types.

Nothing of it is deployed: it lives in the dev tooling with Flask and plain
HTML, CSS and JavaScript (``devstack/simulator/``), no build step.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml
from flask import Flask, Response, jsonify, request, send_from_directory
from google.cloud import firestore
from werkzeug.serving import BaseWSGIServer, make_server

from devstack.local_only import guard
from devstack.twilio_content import tap_fields
from devstack.twilio_stub import TwilioStubAdmin, inbound_message, new_sid, sign_and_post
from shared.domain import conversation as conversation_rules
from shared.domain.lifecycle import FINISHED

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
STATIC = Path(__file__).resolve().parent / "simulator"
# Log file name → the pipeline step whose JSON lines it holds.
LOG_STEPS = {"webhook_fn": "webhook", "processor_fn": "processor", "reconciler_fn": "reconciler", "sender_fn": "sender"}
# How long a message the webhook accepted counts as "being worked on" when its
# conversation entry cannot be found (not yet claimed, or pruned long after).
UNCLAIMED_TYPING_SECONDS = 60.0
OPS_TIMEOUT_SECONDS = 60.0
# make admin's verbs behind the Hand-off drawer: the same handler steps as the inbox (shared/handlers/person.py).
HANDOFF_VERBS = ("show", "pause", "reply", "resume")
TICKS = {"sent": 1, "delivered": 2, "read": 3}

log = logging.getLogger("devstack.simulator")
# One line per poll would bury the stack's own progress.
logging.getLogger("werkzeug").setLevel(logging.WARNING)


# What the trip view shows of a tool call's log line (shared/adapters/tool_caller.py).
TOOL_LOG_FIELDS = ("tool", "effect", "status", "tool_ms", "http_status", "key", "reason")


@dataclass(frozen=True)
class Business:
    """A WhatsApp sender the page can chat with."""

    address: str
    name: str


@dataclass
class SimulatorConfig:
    """What the page needs to know about the running stack: addresses, credentials, where to read."""

    webhook_url: str
    account_sid: str
    auth_token: str
    businesses: list[Business]
    twilio_url: str
    log_dir: Path
    project: str
    conversations_collection: str = "conversations"
    failures_collection: str = "failed_messages"
    ops_env: Mapping[str, str] = field(default_factory=dict)
    task_records: Callable[[], Mapping[str, Any]] | None = None
    offline_model: bool = False


@dataclass
class Inbound:
    """A message the page posted to the webhook as a user, and the webhook's answer."""

    sid: str
    user: str
    business: str
    body: str
    posted_at: float
    webhook_status: int
    media_url: str = ""
    content_type: str = ""
    # A tap or a swipe-reply: the message it answers (its Twilio SID), and what kind of answer it is.
    replied_sid: str = ""
    tap: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "direction": "in",
            "sid": self.sid,
            "body": self.body,
            "at": self.posted_at,
            "webhook_status": self.webhook_status,
            "content_type": self.content_type,
            "media": f"/api/media/{self.sid}" if self.media_url else "",
            "replied_sid": self.replied_sid,
            "tap": self.tap,
        }


def businesses_from_env(env: Mapping[str, str], default_from: str) -> list[Business]:
    """The configured WhatsApp senders: BUSINESS_PROFILES_FILE's profiles when readable, then TWILIO_WHATSAPP_FROM."""
    found: list[Business] = []
    path = env.get("BUSINESS_PROFILES_FILE", "")
    if path:
        found = _profiles(Path(path))
    if default_from and all(b.address != default_from for b in found):
        found.append(Business(default_from, "Default business"))
    return found


def _profiles(path: Path) -> list[Business]:
    """The businesses of a profiles file (docs/features.md: ``businesses:`` maps a WhatsApp address to its profile).

    The stack has validated the file before the page starts; an unreadable one
    only leaves the page with the default business.
    """
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    businesses = document.get("businesses") if isinstance(document, Mapping) else None
    if not isinstance(businesses, Mapping):
        return []
    return [
        Business(str(address), str((profile or {}).get("name") or address) if isinstance(profile, Mapping) else str(address))
        for address, profile in businesses.items()
    ]


def _plain(value: Any) -> Any:
    """Firestore values as JSON: timestamps become ISO strings."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _iso_seconds(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


def conversation_ids(env: Mapping[str, str]) -> Callable[[str, str], str]:
    """The processor's rule for conversation document ids, (user, business) → id: keyed with the
    stack's ADDRESS_HASH_KEY where the shared code keys them, per business where it splits them."""
    try:
        from shared.domain.pseudonyms import Pseudonyms
    except ImportError:
        rule: Callable[..., str] = getattr(conversation_rules, "conversation_id")
    else:
        rule = Pseudonyms(env.get("ADDRESS_HASH_KEY", "")).conversation_id
    per_business = len(inspect.signature(rule).parameters) >= 2

    def conversation_id(user: str, business: str) -> str:
        return rule(user, business) if per_business else rule(user)

    return conversation_id


class Simulator:
    """The chat page's server: a Flask app on a free loopback port, in a thread of the stack's process."""

    def __init__(self, config: SimulatorConfig, port: int = 0) -> None:
        self.config = config
        self._requested_port = port
        self._twilio = TwilioStubAdmin(config.twilio_url)
        self._inbound: list[Inbound] = []
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        # The client reads FIRESTORE_EMULATOR_HOST when it is built: the stack builds us inside that setting.
        self._firestore = firestore.Client(project=config.project)
        self._conversation_id = conversation_ids(config.ops_env)
        self.app = self._build_app()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        return f"http://{HOST}:{self._server.server_port}/"

    def start(self) -> "Simulator":
        if self._server is None:
            self._server = make_server(HOST, self._requested_port, self.app, threaded=True)
            self._thread = threading.Thread(target=self._server.serve_forever, name="simulator", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._firestore.close()

    # Actions

    def send(self, user: str, business: str, body: str, media: tuple[bytes, str] | None = None,
             replied_sid: str = "") -> Inbound:
        """Post one inbound message to the webhook as Twilio would: media first goes to the Twilio stand-in.

        ``replied_sid``: the message the user swipe-replied to (ours or their own), as Twilio names it.
        """
        extra: dict[str, str] = {}
        media_url, content_type = "", ""
        if media is not None:
            stored = self._twilio.add_media(media[0], media[1])
            sid, media_url, content_type = stored["message_sid"], stored["url"], stored["content_type"]
            kind = content_type.split("/", 1)[0]
            extra = {
                "NumMedia": "1",
                "MediaUrl0": media_url,
                "MediaContentType0": content_type,
                "MessageType": kind if kind in ("image", "audio", "video") else "document",
            }
        else:
            sid = new_sid("SM")
        if replied_sid:
            extra.update(OriginalRepliedMessageSid=replied_sid,
                         OriginalRepliedMessageSender=self._sender_of(replied_sid, user) or business)
        params = self._inbound_fields(user, body, to=business, sid=sid, **extra)
        return self._post(Inbound(sid, user, business, body, time.time(), 0, media_url, content_type,
                                  replied_sid=replied_sid), params)

    def tap(self, user: str, business: str, message_sid: str, choice_id: str) -> Inbound:
        """Tap a button or pick a list row of a message the bot sent: the webhook Twilio posts for it.

        ``ValueError`` when that message offered no such choice (a phone cannot tap it either).
        """
        sent = next((m for m in self._twilio.messages()
                     if m.sid == message_sid and m.to == user and m.from_ == business), None)
        if sent is None or not sent.types:
            raise ValueError("that message has no buttons or list")
        sid = new_sid("SM")
        params = tap_fields(sent.types, choice_id, message_sid, business, self._inbound_fields, user, sid)
        kind = "list" if "ListId" in params else "button"
        return self._post(Inbound(sid, user, business, params["Body"], time.time(), 0, replied_sid=message_sid,
                                  tap=kind), params)

    def _inbound_fields(self, user: str, body: str, to: str, sid: str, **extra: str) -> dict[str, str]:
        return inbound_message(user, body, to=to, sid=sid, account_sid=self.config.account_sid,
                               **{"ProfileName": "Simulator", **extra})

    def _sender_of(self, replied_sid: str, user: str) -> str:
        """Who sent the quoted message: the user, if it is one the page posted as them, else the bot's number."""
        with self._lock:
            mine = next((m for m in self._inbound if m.sid == replied_sid), None)
        if mine is not None:
            return user
        sent = next((m for m in self._twilio.messages() if m.sid == replied_sid), None)
        return sent.from_ if sent is not None else ""

    def _post(self, inbound: Inbound, params: Mapping[str, str]) -> Inbound:
        status, _, _ = sign_and_post(self.config.webhook_url, params, self.config.auth_token)
        inbound.webhook_status = status
        with self._lock:
            self._inbound.append(inbound)
        log.info("simulated message posted", extra={"event": "simulator_posted", "sid": inbound.sid,
                                                    "http_status": status})
        return inbound

    def chat(self, user: str, business: str) -> dict[str, Any]:
        """One user's chat with one business: both sides in time order, ticks, and whether the bot is typing."""
        with self._lock:
            mine = [m for m in self._inbound if m.user == user and m.business == business]
        entries = self._conversation(user, business).get("messages", {})
        reply_to = {
            str(twilio_sid): sid for sid, entry in entries.items() for twilio_sid in entry.get("twilioSids", [])
        }
        ticks = self._ticks()
        items = [m.to_json() for m in mine]
        for sent in self._twilio.messages():
            if sent.to == user and sent.from_ == business:
                items.append({
                    "direction": "out",
                    "sid": sent.sid,
                    "body": sent.body,
                    "at": sent.received_at,
                    "ticks": ticks.get(sent.sid, 0),
                    "in_reply_to": reply_to.get(sent.sid, ""),
                    "types": dict(sent.types),
                })
        items.sort(key=lambda item: item["at"])
        return {"messages": items, "typing": self._typing(mine, entries)}

    @staticmethod
    def _typing(mine: list[Inbound], entries: Mapping[str, Mapping[str, Any]]) -> bool:
        now = time.time()
        for message in mine:
            if message.webhook_status != 200:
                continue
            entry = entries.get(message.sid)
            if entry is None:
                if now - message.posted_at < UNCLAIMED_TYPING_SECONDS:
                    return True
            elif entry.get("status") not in FINISHED:
                return True
        return False

    def _ticks(self) -> dict[str, int]:
        """The furthest status each sent message reached, from the callbacks the stand-in posted and had accepted."""
        ticks: dict[str, int] = {}
        for callback in self._twilio.callbacks():
            if callback.get("http_status") == 200:
                sid = str(callback["message_sid"])
                ticks[sid] = max(ticks.get(sid, 0), TICKS.get(str(callback["status"]), 0))
        return ticks

    def _conversation(self, user: str, business: str) -> dict[str, Any]:
        document = self._conversation_id(user, business)
        snap = self._firestore.collection(self.config.conversations_collection).document(document).get()
        return dict(snap.to_dict() or {}) if snap.exists else {}

    def trip(self, sid: str, user: str, business: str) -> dict[str, Any]:
        """Everything the stack recorded about one inbound message, from webhook to Twilio."""
        events = self._log_events(sid)
        doc = self._conversation(user, business) if user else {}
        entry = dict(doc.get("messages", {}).get(sid, {}))
        failure = self._firestore.collection(self.config.failures_collection).document(sid).get()
        tasks = self._tasks(sid)
        twilio_sids = [str(s) for s in entry.get("twilioSids", [])]
        callbacks = self._twilio.callbacks()
        sends = [
            {
                "sid": m.sid,
                "body": m.body,
                "at": m.received_at,
                "callbacks": [c for c in callbacks if c["message_sid"] == m.sid],
            }
            for m in self._twilio.messages()
            if m.sid in twilio_sids
        ]
        return {
            "sid": sid,
            "stages": self._stages(sid, events, tasks, sends),
            "events": events,
            "firestore": {
                "conversation": self._conversation_id(user, business)[:12] if user else "",
                "entry": _plain(entry),
                "lastSeq": doc.get("lastSeq"),
                "doneSeq": doc.get("doneSeq"),
            },
            "failure": _plain(failure.to_dict()) if failure.exists else None,
            "tasks": tasks,
            "twilio": sends,
            # Each request to a business tool, as the processor logged it: never the secret, arguments only by policy.
            "tools": [e["tool"] for e in events if e.get("tool")],
        }

    def _log_events(self, sid: str) -> list[dict[str, Any]]:
        """The JSON log lines of every function that name this message, in time order."""
        events: list[dict[str, Any]] = []
        for path in sorted(self.config.log_dir.glob("*_fn.log")):
            step = LOG_STEPS.get(path.stem)
            if step is None:
                continue
            with open(path, encoding="utf-8", errors="replace") as lines:
                for line in lines:
                    if sid not in line:
                        continue
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if record.get("sid") != sid:
                        continue
                    at = _iso_seconds(str(record.get("time", "")))
                    events.append({
                        "step": step,
                        "event": record.get("event", ""),
                        "status": record.get("status", ""),
                        "reason": record.get("reason", ""),
                        "message": record.get("message", ""),
                        "at": at,
                        **({"tool": {k: record.get(k) for k in TOOL_LOG_FIELDS}}
                           if record.get("event") in ("tool_called", "tool_failed") and record.get("key") else {}),
                    })
        events.sort(key=lambda e: e["at"] or 0.0)
        return events

    def _tasks(self, sid: str) -> list[dict[str, Any]]:
        """The send tasks of this message (named ``<conversation>-<sid>[-kind]``) and their attempts."""
        if self.config.task_records is None:
            return []
        offset = time.time() - time.monotonic()
        found = []
        for name, record in self.config.task_records().items():
            short = name.rsplit("/", 1)[-1]
            if f"-{sid}" not in short:
                continue
            found.append({
                "name": short,
                "attempts": record.attempts,
                "statuses": list(record.statuses),
                "attempt_times": [offset + t for t in record.attempt_times],
                "outcome": record.outcome,
            })
        return found

    @staticmethod
    def _stages(
        sid: str, events: list[dict[str, Any]], tasks: list[dict[str, Any]], sends: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The trip as milestones: when each step first did its part, and the time since the previous one."""

        def first(step: str, *names: str) -> float | None:
            return next((e["at"] for e in events if e["step"] == step and e["event"] in names), None)

        task_times = [t for task in tasks for t in task["attempt_times"]]
        callbacks = [c for s in sends for c in s["callbacks"]]
        milestones = [
            ("webhook", "signature checked, published to Pub/Sub", first("webhook", "received")),
            ("Pub/Sub → processor", "push delivered, message claimed", first("processor", "processing")),
            ("model", "reply written to the conversation", first("processor", "answered", "ai_failed")),
            ("task", "Cloud Tasks dispatched to sender_fn", min(task_times) if task_times else None),
            ("Twilio", "the Twilio stand-in accepted the send", min((s["at"] for s in sends), default=None)),
            ("sender", "the send recorded as done", first("sender", "sent", "send_failed")),
            ("status callbacks", "delivered and read reported", max((c["sent_at"] for c in callbacks), default=None)),
        ]
        stages: list[dict[str, Any]] = []
        previous: float | None = None
        for name, what, at in milestones:
            stages.append({
                "stage": name,
                "what": what,
                "at": at,
                "ms": round((at - previous) * 1000, 1) if at is not None and previous is not None else None,
            })
            if at is not None:
                previous = at
        return stages

    def failures(self, limit: int = 50) -> list[dict[str, Any]]:
        """The failure records, newest first: what ``make failures`` lists."""
        query = (
            self._firestore.collection(self.config.failures_collection)
            .order_by("at", direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        return [_plain(dict(snap.to_dict() or {}, sid=snap.id)) for snap in query.stream()]

    def media(self, sid: str) -> tuple[bytes, str] | None:
        """The media of a message the page sent, fetched from its Twilio URL with the account's credentials."""
        with self._lock:
            message = next((m for m in self._inbound if m.sid == sid and m.media_url), None)
        if message is None:
            return None
        credentials = base64.b64encode(f"{self.config.account_sid}:{self.config.auth_token}".encode()).decode()
        req = urllib.request.Request(message.media_url, headers={"Authorization": f"Basic {credentials}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as response:
                return response.read(), response.headers.get("Content-Type", message.content_type)
        except (urllib.error.URLError, OSError):
            return None

    def run_ops(self, command: str, args: list[str]) -> dict[str, Any]:
        """Run an operator command (``make failures``/``replay``, or ``make admin``'s hand-off verbs) on this stack."""
        module = {"failures": "shared.ops.failures", "replay": "shared.ops.replay", "handoff": "shared.ops.admin"}[command]
        if command == "handoff" and (not args or args[0] not in HANDOFF_VERBS):
            return {"code": None, "output": f"the hand-off controls run {', '.join(HANDOFF_VERBS)} only"}
        done = subprocess.run(
            [sys.executable, "-m", module, *args],
            env=dict(self.config.ops_env),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=OPS_TIMEOUT_SECONDS,
        )
        return {"code": done.returncode, "output": (done.stdout + done.stderr).strip()}

    # HTTP

    def _build_app(self) -> Flask:
        app = Flask("simulator", static_folder=None)
        app.config["MAX_CONTENT_LENGTH"] = 6 * 1024 * 1024
        guard(app, lambda: self._server.server_port if self._server is not None else self._requested_port)

        @app.get("/")
        def index() -> Response:
            return send_from_directory(STATIC, "index.html")

        @app.get("/favicon.ico")
        def favicon() -> Response:
            return Response(status=204)

        @app.get("/static/<path:name>")
        def static_file(name: str) -> Response:
            return send_from_directory(STATIC, name)

        @app.get("/api/config")
        def config() -> Response:
            return jsonify({
                "businesses": [{"address": b.address, "name": b.name} for b in self.config.businesses],
                "offline_model": self.config.offline_model,
                "webhook_url": self.config.webhook_url,
            })

        @app.post("/api/send")
        def send() -> tuple[Response, int]:
            user = request.form.get("user", "").strip()
            business = request.form.get("business", "").strip()
            body = request.form.get("body", "")
            upload = request.files.get("file")
            if not user or not business or (not body.strip() and upload is None):
                return jsonify({"error": "user, business and a text or a file are required"}), 400
            media = (upload.read(), upload.mimetype or "application/octet-stream") if upload is not None else None
            sent = self.send(user, business, body, media, replied_sid=request.form.get("replied_sid", "").strip())
            return jsonify(sent.to_json()), 200

        @app.post("/api/tap")
        def tap() -> tuple[Response, int]:
            form = request.form
            fields = [form.get(k, "").strip() for k in ("user", "business", "message_sid", "choice_id")]
            if not all(fields):
                return jsonify({"error": "user, business, message_sid and choice_id are required"}), 400
            try:
                tapped = self.tap(*fields)
            except ValueError as exc:
                return jsonify({"error": str(exc)}), 404
            return jsonify(tapped.to_json()), 200

        @app.get("/api/chat")
        def chat() -> Response:
            return jsonify(self.chat(request.args.get("user", ""), request.args.get("business", "")))

        @app.get("/api/trip/<sid>")
        def trip(sid: str) -> Response:
            args = request.args
            return jsonify(self.trip(sid, args.get("user", ""), args.get("business", "")))

        @app.get("/api/media/<sid>")
        def media(sid: str) -> Response | tuple[Response, int]:
            found = self.media(sid)
            if found is None:
                return jsonify({"error": "no such media"}), 404
            return Response(found[0], mimetype=found[1])

        @app.get("/api/failures")
        def failures() -> Response:
            return jsonify(self.failures())

        @app.post("/api/ops/<command>")
        def ops(command: str) -> tuple[Response, int]:
            if command not in ("failures", "replay", "handoff"):
                return jsonify({"error": f"unknown command {command}"}), 404
            if not request.is_json:
                # A form cannot send JSON without a CORS preflight, which this page never answers.
                return jsonify({"error": "send the arguments as application/json"}), 415
            payload = request.get_json(silent=True) or {}
            args = [str(a) for a in payload.get("args", []) if isinstance(a, (str, int))]
            return jsonify(self.run_ops(command, args)), 200

        return app
