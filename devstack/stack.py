"""The whole pipeline on one machine: emulators, stand-ins and the three functions.

Used by ``make stack`` (headless), ``make dev`` (with the chat prompt), the
end-to-end tests and the benchmarks, so all of them run the same thing:

* the official Firestore and Pub/Sub emulators (gcloud), each in its own
  process group;
* the Cloud Tasks stand-in (in this process), with the queue's rate limits and
  retry policy;
* Twilio and OpenAI stand-ins (in this process) unless TWILIO_API_BASE_URL or
  OPENAI_BASE_URL point elsewhere (or OPENAI_API_KEY is set: then the real
  OpenAI is used);
* webhook_fn, processor_fn and sender_fn as functions-framework processes,
  exactly as Cloud Run runs them.

Every process it starts goes through ``devstack.lifecycle.spawn``: ``stop``
ends them in order, and if this process dies first its watchdog ends them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from google.cloud import pubsub_v1, tasks_v2
from google.protobuf import duration_pb2

from devstack.emulators import FirestoreEmulator, PubSubEmulator, check_prerequisites, free_port, start_all
from devstack.lifecycle import live_members, spawn, stop_groups
from devstack.openai_stub import OpenAIStub
from devstack.scheduler import Scheduler
from devstack.simulator import Simulator, SimulatorConfig, businesses_from_env
from devstack.tasks_emulator import TasksEmulator
from devstack.twilio_stub import TwilioStub
from shared.adapters.cloud_tasks import emulator_client

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"

# Local defaults; each is honoured from the environment when set (README).
DEFAULT_ACCOUNT_SID = "AC00000000000000000000000000000000"
DEFAULT_AUTH_TOKEN = "local-dev-auth-token"
# Keys the conversation ids and log masks locally (Secret Manager in the cloud).
DEFAULT_ADDRESS_HASH_KEY = "local-dev-address-hash-key"
DEFAULT_WHATSAPP_FROM = "whatsapp:+14155238886"

FUNCTIONS = {
    "webhook": ("webhook_fn/main.py", "webhook"),
    "processor": ("processor_fn/main.py", "process"),
    "sender": ("sender_fn/main.py", "send"),
    # Cloud Scheduler's target in the cloud; devstack/scheduler.py calls it here.
    "reconciler": ("processor_fn/main.py", "reconcile"),
    # The outbound API (business-initiated messages); no token needed locally.
    "outbound": ("webhook_fn/main.py", "outbound"),
}
# A function gets this long to finish its requests after SIGTERM, then SIGKILL.
FUNCTION_GRACE_SECONDS = 5.0


class StackError(RuntimeError):
    """The stack could not start; the message says what to do."""


@dataclass
class StackOptions:
    project: str = "local-project"
    webhook_port: int = 8080
    topic: str = "inbound-messages"
    subscription: str = "inbound-messages-processor"
    dead_letter_topic: str = "inbound-messages-dead-letter"
    dead_letter_subscription: str = "inbound-messages-dead-letter"
    dead_letter_hold_subscription: str = "inbound-messages-dead-letter-hold"
    max_delivery_attempts: int = 10
    ack_deadline_seconds: int = 120
    tasks_location: str = "us-central1"
    tasks_queue: str = "outbound-messages"
    tasks_max_dispatches_per_second: float = 20.0
    tasks_max_concurrent_dispatches: int = 20
    tasks_min_backoff_seconds: float = 0.2
    tasks_max_backoff_seconds: float = 10.0
    tasks_max_doublings: int = 5
    tasks_max_attempts: int = 100
    # How often the reconciler runs (Cloud Scheduler: every minute).
    reconcile_interval_seconds: float = 60.0
    twilio_account_sid: str = DEFAULT_ACCOUNT_SID
    twilio_auth_token: str = DEFAULT_AUTH_TOKEN
    address_hash_key: str = DEFAULT_ADDRESS_HASH_KEY
    twilio_whatsapp_from: str = DEFAULT_WHATSAPP_FROM
    twilio_api_base_url: str = ""
    openai_base_url: str = ""
    openai_api_key: str = ""
    openai_model: str = ""
    # BUSINESS_PROFILES_FILE: validated and written to the Firestore emulator before the functions start.
    profiles_file: str = ""
    log_dir: Path = ROOT / ".stack" / "logs"
    # The chat page on loopback, and the Twilio stand-in's status callbacks to the webhook (its ticks).
    simulator: bool = True
    status_callbacks: bool = True
    env: dict[str, str] = field(default_factory=dict)
    function_env: dict[str, dict[str, str]] = field(default_factory=dict)
    progress: Callable[[str], None] = lambda line: None

    def queue(self, name: str) -> tasks_v2.Queue:
        """A queue with the rate limits and retry policy Terraform gives the real one."""
        return tasks_v2.Queue(
            name=name,
            rate_limits=tasks_v2.RateLimits(
                max_dispatches_per_second=self.tasks_max_dispatches_per_second,
                max_concurrent_dispatches=self.tasks_max_concurrent_dispatches,
            ),
            retry_config=tasks_v2.RetryConfig(
                max_attempts=self.tasks_max_attempts,
                min_backoff=duration_pb2.Duration(nanos=int(self.tasks_min_backoff_seconds * 1e9)),
                max_backoff=duration_pb2.Duration(seconds=int(self.tasks_max_backoff_seconds)),
                max_doublings=self.tasks_max_doublings,
            ),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: object) -> "StackOptions":
        """The README's variables for the local stack."""
        options = cls(
            webhook_port=int(env.get("WEBHOOK_PORT") or 8080),
            twilio_account_sid=env.get("TWILIO_ACCOUNT_SID") or DEFAULT_ACCOUNT_SID,
            twilio_auth_token=env.get("TWILIO_AUTH_TOKEN") or DEFAULT_AUTH_TOKEN,
            address_hash_key=env.get("ADDRESS_HASH_KEY") or DEFAULT_ADDRESS_HASH_KEY,
            twilio_whatsapp_from=env.get("TWILIO_WHATSAPP_FROM") or DEFAULT_WHATSAPP_FROM,
            twilio_api_base_url=env.get("TWILIO_API_BASE_URL", ""),
            openai_base_url=env.get("OPENAI_BASE_URL", ""),
            openai_api_key=env.get("OPENAI_API_KEY", ""),
            openai_model=env.get("OPENAI_MODEL", ""),
            profiles_file=env.get("BUSINESS_PROFILES_FILE", ""),
        )
        for key, value in overrides.items():
            setattr(options, key, value)
        return options


class Stack:
    """``emulators`` lets a test session share running emulators; the stack then leaves them running."""

    def __init__(
        self, options: StackOptions, emulators: tuple[FirestoreEmulator, PubSubEmulator] | None = None
    ) -> None:
        self.options = options
        self._own_emulators = emulators is None
        self.firestore, self.pubsub = emulators or (
            FirestoreEmulator(options.project, log_path=options.log_dir / "firestore-emulator.log"),
            PubSubEmulator(options.project, log_path=options.log_dir / "pubsub-emulator.log"),
        )
        self.tasks = TasksEmulator()
        self.twilio: TwilioStub | None = None
        self.openai: OpenAIStub | None = None
        self.scheduler: Scheduler | None = None
        self.simulator: Simulator | None = None
        self.ports: dict[str, int] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._started = time.monotonic()
        self._function_env: dict[str, dict[str, str]] = {}
        # Every process group this stack started, for ``leftovers``.
        self._groups: set[int] = set()
        self._hurry = threading.Event()
        self._stop_lock = threading.Lock()
        self._stopper: threading.Thread | None = None
        self._stop_error: BaseException | None = None

    # Addresses

    @property
    def webhook_url(self) -> str:
        """The URL the webhook checks signatures against: where a Twilio stand-in posts."""
        return f"http://{HOST}:{self.ports['webhook']}/"

    @property
    def outbound_url(self) -> str:
        """Where the business's systems post messages to send (docs/features.md, the outbound API)."""
        return self.url("outbound")

    def url(self, name: str) -> str:
        return f"http://{HOST}:{self.ports[name]}/"

    @property
    def queue_path(self) -> str:
        o = self.options
        return f"projects/{o.project}/locations/{o.tasks_location}/queues/{o.tasks_queue}"

    @property
    def offline_model(self) -> bool:
        return self.openai is not None

    def _say(self, message: str) -> None:
        self.options.progress(f"[{time.monotonic() - self._started:5.1f}s] {message}")

    # Lifecycle

    def start(self) -> "Stack":
        self._started = time.monotonic()
        problems = check_prerequisites()
        if problems:
            raise StackError("cannot start the local stack:\n  - " + "\n  - ".join(problems))
        self.options.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_backing_services()
            self._create_topology()
            self._apply_profiles()
            self._start_functions()
            self.scheduler = Scheduler(self.url("reconciler"), self.options.reconcile_interval_seconds).start()
            if self.options.simulator:
                self._start_simulator()
        except BaseException:
            self.stop()
            raise
        self._say(f"ready: webhook at {self.webhook_url}")
        return self

    def _start_backing_services(self) -> None:
        o = self.options
        if self._own_emulators:
            self._say("starting the Firestore and Pub/Sub emulators (a few seconds)")
            try:
                start_all([self.firestore, self.pubsub], timeout=90)
            finally:
                self._groups.update(g for g in (self.firestore.pgid, self.pubsub.pgid) if g is not None)
        self._say(f"Firestore emulator on {self.firestore.host}, Pub/Sub emulator on {self.pubsub.host}")
        self.tasks.start()
        self._say(f"Cloud Tasks stand-in on {self.tasks.address}")
        if not o.twilio_api_base_url:
            self.twilio = TwilioStub(o.twilio_account_sid, o.twilio_auth_token)
            self.twilio.start()
            reengagement = o.env.get("REENGAGEMENT_CONTENT_SID", "")
            if reengagement:
                # Twilio refuses a Content SID the account does not have; the stand-in knows this one.
                self.twilio.add_content(reengagement, "Hi! We have a reply for you: answer this message to see it.")
            self._say(f"Twilio stand-in on {self.twilio.base_url}")
        else:
            self._say(f"Twilio API at {o.twilio_api_base_url} (TWILIO_API_BASE_URL)")
        if not o.openai_base_url and not o.openai_api_key:
            self.openai = OpenAIStub()
            self.openai.start()
            self._say(f"OFFLINE MODEL on {self.openai.base_url}: replies are canned, set OPENAI_API_KEY for a real model")
        elif o.openai_base_url:
            self._say(f"chat completions at {o.openai_base_url} (OPENAI_BASE_URL)")
        else:
            self._say("using OpenAI with OPENAI_API_KEY")
        for name in FUNCTIONS:
            self.ports[name] = o.webhook_port if name == "webhook" and o.webhook_port else free_port()
        if self.twilio is not None and o.status_callbacks:
            self.twilio.status_callback_url = self.webhook_url

    def _create_topology(self) -> None:
        o = self.options
        self._say("creating the topic, subscriptions and queue")
        with _emulator_env(self.pubsub.env()):
            publisher = pubsub_v1.PublisherClient()
            subscriber = pubsub_v1.SubscriberClient()
            project = f"projects/{o.project}"
            topic = f"{project}/topics/{o.topic}"
            dead_letter_topic = f"{project}/topics/{o.dead_letter_topic}"
            for name in (topic, dead_letter_topic):
                publisher.create_topic(name=name)
            processor = self.url("processor")
            subscriber.create_subscription(
                request={
                    "name": f"{project}/subscriptions/{o.subscription}",
                    "topic": topic,
                    "push_config": {"push_endpoint": processor},
                    "ack_deadline_seconds": o.ack_deadline_seconds,
                    "enable_message_ordering": True,
                    "dead_letter_policy": {
                        "dead_letter_topic": dead_letter_topic,
                        "max_delivery_attempts": o.max_delivery_attempts,
                    },
                    "retry_policy": {
                        "minimum_backoff": duration_pb2.Duration(seconds=1),
                        "maximum_backoff": duration_pb2.Duration(seconds=60),
                    },
                }
            )
            subscriber.create_subscription(
                request={
                    "name": f"{project}/subscriptions/{o.dead_letter_subscription}",
                    "topic": dead_letter_topic,
                    "push_config": {"push_endpoint": processor},
                    "ack_deadline_seconds": 60,
                }
            )
            subscriber.create_subscription(
                request={"name": f"{project}/subscriptions/{o.dead_letter_hold_subscription}", "topic": dead_letter_topic}
            )
            subscriber.close()
        client = emulator_client(self.tasks.address)
        client.create_queue(parent=f"projects/{o.project}/locations/{o.tasks_location}", queue=o.queue(self.queue_path))

    def _apply_profiles(self) -> None:
        """The business profiles file, as ``make profiles-apply`` writes it in the cloud; a bad file stops the start."""
        if not self.options.profiles_file:
            return
        from google.cloud import firestore

        from shared.adapters.profile_store import FirestoreProfiles, defaults_from_settings
        from shared.config import Settings
        from shared.domain.conversation import utcnow
        from shared.domain.profiles import ProfileError
        from shared.ops.admin import apply_profiles, read_profiles_file

        settings = Settings.from_env(self.function_env())
        try:
            raw, _ = read_profiles_file(Path(self.options.profiles_file), defaults_from_settings(settings))
        except ProfileError as exc:
            raise StackError(f"BUSINESS_PROFILES_FILE is not usable: {exc}") from None
        with _emulator_env(self.firestore.env()):
            client = firestore.Client(project=self.options.project)
            store = FirestoreProfiles(lambda: client, settings.profiles_collection, defaults_from_settings(settings), 0)
            for line in apply_profiles(store.put, raw, utcnow()):
                self._say(f"business profile {line}")
            client.close()

    def _start_simulator(self) -> None:
        """The chat page: a client of this stack's webhook, Twilio stand-in, emulators and logs."""
        o = self.options
        env = self.function_env()
        twilio_url = self.twilio.base_url if self.twilio else o.twilio_api_base_url
        config = SimulatorConfig(
            webhook_url=self.webhook_url,
            account_sid=o.twilio_account_sid,
            auth_token=o.twilio_auth_token,
            businesses=businesses_from_env({**os.environ, **env}, o.twilio_whatsapp_from),
            twilio_url=twilio_url,
            log_dir=o.log_dir,
            project=o.project,
            conversations_collection=env.get("CONVERSATIONS_COLLECTION", "conversations"),
            failures_collection=env.get("FAILURES_COLLECTION", "failed_messages"),
            ops_env={**{k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}, **env},
            task_records=lambda: self.tasks.stats().tasks,
            offline_model=self.offline_model,
        )
        with _emulator_env(self.firestore.env()):
            self.simulator = Simulator(config).start()
        self._say(f"chat page (simulator) at {self.simulator.url}")

    def function_env(self) -> dict[str, str]:
        """What every function process gets, as Cloud Run would set it (docs/configuration.md lists each)."""
        o = self.options
        env = {
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "GOOGLE_CLOUD_PROJECT": o.project,
            "FIRESTORE_EMULATOR_HOST": self.firestore.host,
            "PUBSUB_EMULATOR_HOST": self.pubsub.host,
            "CLOUD_TASKS_EMULATOR_HOST": self.tasks.address,
            "PUBSUB_TOPIC": o.topic,
            "PUBSUB_DEAD_LETTER_SUBSCRIPTION": o.dead_letter_subscription,
            "TASKS_LOCATION": o.tasks_location,
            "TASKS_QUEUE": o.tasks_queue,
            "SENDER_URL": self.url("sender"),
            # Where a burst's answer task goes (BURST_WINDOW_SECONDS > 0).
            "PROCESSOR_URL": self.url("processor"),
            "PUBLIC_WEBHOOK_URL": self.webhook_url,
            "SECRET_SOURCE": "env",
            "TWILIO_ACCOUNT_SID": o.twilio_account_sid,
            "TWILIO_AUTH_TOKEN": o.twilio_auth_token,
            "ADDRESS_HASH_KEY": o.address_hash_key,
            "TWILIO_WHATSAPP_FROM": o.twilio_whatsapp_from,
            "TWILIO_API_BASE_URL": o.twilio_api_base_url or (self.twilio.base_url if self.twilio else ""),
            "OPENAI_BASE_URL": o.openai_base_url or (self.openai.base_url if self.openai else ""),
            "OPENAI_API_KEY": o.openai_api_key or "offline-model",
        }
        if o.openai_model:
            env["OPENAI_MODEL"] = o.openai_model
        env.update(o.env)
        return env

    def _start_functions(self) -> None:
        self._say("starting webhook_fn, processor_fn and sender_fn")
        for name in FUNCTIONS:
            self.start_function(name, wait=False)
        for name in FUNCTIONS:
            self._wait_listening(name)
        self._say("functions are listening")

    def start_function(self, name: str, extra_env: Mapping[str, str] | None = None, wait: bool = True) -> None:
        """(Re)start one function process, optionally with extra variables (fault tests)."""
        self.stop_function(name)
        source, target = FUNCTIONS[name]
        env = {
            **{k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")},
            **self.function_env(),
            **self.options.function_env.get(name, {}),
            **(extra_env or {}),
        }
        with open(self.options.log_dir / f"{name}_fn.log", "ab") as log:
            process = spawn(
                [
                    sys.executable, "-m", "functions_framework",
                    f"--source={ROOT / source}", f"--target={target}",
                    f"--host={HOST}", f"--port={self.ports[name]}",
                ],
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes[name] = process
        self._groups.add(process.pid)
        if wait:
            self._wait_listening(name)

    def _wait_listening(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        process = self.processes[name]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StackError(f"{name}_fn exited with {process.returncode}; see {self.options.log_dir / (name + '_fn.log')}")
            try:
                with socket.create_connection((HOST, self.ports[name]), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise StackError(f"{name}_fn did not listen on port {self.ports[name]} within {timeout:.0f}s")

    def stop_function(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            stop_groups([process], FUNCTION_GRACE_SECONDS, self._hurry)

    def stop(self) -> None:
        """Stop everything this stack started; safe to call twice, after a failed start, and
        concurrently. The work runs on its own non-daemon thread, so an exception that
        interrupts the caller (a second Ctrl-C) cannot leave it half done: the interpreter
        waits for that thread before it exits."""
        with self._stop_lock:
            stopper = self._stopper
            if stopper is None or not stopper.is_alive():
                self._stop_error = None
                stopper = threading.Thread(target=self._stop_recording_errors, name="stack-stop")
                self._stopper = stopper
                stopper.start()
        try:
            stopper.join()
        except BaseException:
            self.hurry()
            raise
        if self._stop_error is not None:
            raise self._stop_error

    def hurry(self) -> None:
        """Make a stop in progress skip the grace periods: SIGKILL instead of waiting."""
        self._hurry.set()
        if self._own_emulators:
            self.firestore.hurry()
            self.pubsub.hurry()

    def _stop_recording_errors(self) -> None:
        """The caller of ``stop`` gets the error, not the thread's excepthook."""
        try:
            self._stop_everything()
        except BaseException as exc:
            self._stop_error = exc

    def _stop_everything(self) -> None:
        """Functions and emulators are signalled together so their grace periods overlap."""
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.simulator is not None:
            self.simulator.stop()
        functions = [self.processes.pop(name) for name in list(self.processes)]
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="stack-stop") as pool:
            emulators = [pool.submit(e.stop) for e in (self.firestore, self.pubsub) if self._own_emulators]
            stop_groups(functions, FUNCTION_GRACE_SECONDS, self._hurry)
            for stub in (self.twilio, self.openai, self.tasks):
                if stub is not None:
                    stub.stop()
            for future in emulators:
                future.result()

    def leftovers(self) -> list[int]:
        """PIDs still running in any process group this stack started; empty after ``stop``."""
        return sorted(pid for pids in live_members(sorted(self._groups)).values() for pid in pids)

    def __enter__(self) -> "Stack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _emulator_env:
    """Point the Google clients created in this block at the emulators, then restore."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self._saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        for key, value in self._values.items():
            self._saved[key] = os.environ.get(key)
            os.environ[key] = value

    def __exit__(self, *exc: object) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

