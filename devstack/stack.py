"""The whole pipeline on one machine, in the cloud's shape: emulators, stand-ins and the five services.

Used by ``make stack`` (headless), ``make dev`` (with the chat prompt), the
end-to-end tests and the benchmarks, so all of them run the same thing:

* the official Firestore and Pub/Sub emulators (gcloud), each in its own
  process group;
* the Cloud Tasks stand-in (in this process), with the queue's rate limits and
  retry policy, adding the OIDC token each task's ``oidc_token`` names;
* what Google runs around the functions, as terraform/ declares it
  (devstack/cloud_shape.py): the token issuer, Secret Manager holding the
  deployment's secrets, a relay that gives Pub/Sub pushes their OIDC token,
  a Cloud Run front end before each service, and the scheduler's job;
* the example business's tool server (devstack/tool_server.py, in this
  process) that profiles.example.yaml's tools call, its signing secret in
  Secret Manager under the id the profile names;
* Twilio and OpenAI stand-ins (in this process) unless TWILIO_API_BASE_URL or
  OPENAI_BASE_URL point elsewhere (or OPENAI_API_KEY is set: then the real
  OpenAI is used);
* the five services (webhook, processor, sender, reconciler, outbound) as
  processes started with the Dockerfile's command and environment and the
  environment Terraform gives each Cloud Run service, only emulator hosts,
  ports and URLs substituted. Every request reaches them through their front
  end, so a private one is served only with the token, and the caller key,
  that Google would send.

Every process it starts goes through ``devstack.lifecycle.spawn``: ``stop``
ends them in order, and if this process dies first its watchdog ends them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from google.cloud import pubsub_v1, tasks_v2
from google.protobuf import duration_pb2

from devstack import container
from devstack.cloud_run import forwarded_token
from devstack.cloud_shape import CloudShape, generated_key
from devstack.emulators import FirestoreEmulator, PubSubEmulator, check_prerequisites, free_port, start_all
from devstack.lifecycle import live_members, spawn, stop_groups
from devstack.offline_knowledge import OFFLINE_MAX_DISTANCE
from devstack.openai_stub import OpenAIStub
from devstack.scheduler import Scheduler
from devstack.simulator import Simulator, SimulatorConfig, businesses_from_env
from devstack.tasks_emulator import TasksEmulator
from devstack.terraform_env import TerraformError
from devstack.tool_server import DEFAULT_PORT as TOOL_SERVER_PORT
from devstack.tool_server import EXAMPLE_SECRET_ID, ExampleToolServer
from devstack.twilio_stub import TwilioStub
from shared.adapters.cloud_tasks import TaskQueue, emulator_client
from shared.adapters.google_auth import CALLER_KEY_HEADER

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
# Cloud Tasks keeps a deleted queue's name for up to 3 days (queues.delete); the stand-in does the same here.
QUEUE_TOMBSTONE_SECONDS = 3 * 24 * 3600.0

# Local defaults; each is honoured from the environment when set (README).
DEFAULT_ACCOUNT_SID = "AC00000000000000000000000000000000"
DEFAULT_AUTH_TOKEN = "local-dev-auth-token"
# Keys the conversation ids and log masks locally (Secret Manager in the cloud).
DEFAULT_ADDRESS_HASH_KEY = "local-dev-address-hash-key"
DEFAULT_WHATSAPP_FROM = "whatsapp:+14155238886"
# Signs the example business's tool requests locally (Secret Manager id EXAMPLE_SECRET_ID).
DEFAULT_TOOL_SECRET = "local-dev-tool-secret"

# The Cloud Run services of terraform/run.tf; each runs the function its FUNCTION_SOURCE/TARGET name.
SERVICES = ("webhook", "processor", "sender", "reconciler", "outbound", "inbox")
# The inbox's local operator: sees every business and the operations view.
LOCAL_OPERATOR = "operator@local.test"
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
    # The example tool server's port (profiles.example.yaml's tool URLs); 0: a free one (tests).
    tool_server_port: int = TOOL_SERVER_PORT
    tool_secret: str = DEFAULT_TOOL_SECRET
    # BUSINESS_PROFILES_FILE: validated and written to the Firestore emulator before the functions start.
    profiles_file: str = ""
    # INBOX_STAFF: the Google accounts the local sign-in offers (default: the profiles' staff and the operator).
    inbox_staff: tuple[str, ...] = ()
    log_dir: Path = ROOT / ".stack" / "logs"
    # The chat page on loopback, and the Twilio stand-in's status callbacks to the webhook (its ticks).
    simulator: bool = True
    status_callbacks: bool = True
    # Values over Terraform's environment for every service that has them (short time-outs in tests).
    env: dict[str, str] = field(default_factory=dict)
    function_env: dict[str, dict[str, str]] = field(default_factory=dict)
    # Terraform variables, as an environment's tfvars sets them, over the stack's own.
    tfvars: dict[str, object] = field(default_factory=dict)
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
            inbox_staff=tuple(e.strip() for e in env.get("INBOX_STAFF", "").split(",") if e.strip()),
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
        self.cloud = CloudShape(options.project)
        # A deleted queue's name stays taken, as in Cloud Tasks (up to 3 days): the send lanes are never deleted.
        self.tasks = TasksEmulator(issuer=self.cloud.issuer, origin_headers=self.cloud.origin.headers(),
                                   queue_tombstone_seconds=QUEUE_TOMBSTONE_SECONDS)
        self.twilio: TwilioStub | None = None
        self.openai: OpenAIStub | None = None
        self.tool_server: ExampleToolServer | None = None
        self.simulator: Simulator | None = None
        # Each service's URL (its front end's port) and its container's port.
        self.ports: dict[str, int] = {}
        self.container_ports: dict[str, int] = {}
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
        return self.url("webhook")

    @property
    def inbox_url(self) -> str:
        """Where staff open the inbox (signed in through the local Sign in with Google)."""
        return self.url("inbox")

    @property
    def outbound_url(self) -> str:
        """Where the business's systems post messages to send (docs/features.md, the outbound API)."""
        return self.url("outbound")

    def url(self, name: str) -> str:
        """The service's URL, as Terraform names it (the run.app form has no trailing slash): its front end."""
        return f"http://{HOST}:{self.ports[name]}"

    def container_url(self, name: str) -> str:
        """The function process itself, behind its front end: what someone bypassing Cloud Run would reach."""
        return f"http://{HOST}:{self.container_ports[name]}/"

    @property
    def scheduler(self) -> Scheduler | None:
        return self.cloud.scheduler

    def identity(self, key: str) -> str:
        """The e-mail of one of terraform/identities.tf's accounts (``pubsub_push``, ``tasks_invoker``, ...)."""
        return self.cloud.rendered.identities[key]

    def id_token(self, service_account_email: str, audience: str) -> str:
        """An ID token from the local issuer, as Google would mint it for that account and audience."""
        return self.cloud.issuer.mint(service_account_email, audience)

    def as_forwarded(self, caller: str, name: str) -> dict[str, str]:
        """What the container of a private service gets from its front end when ``caller`` (an identity
        key) calls it: the token without its signature, and the caller key Google's product carries."""
        token = forwarded_token(self.id_token(self.identity(caller), self.url(name)))
        return {"Authorization": f"Bearer {token}", CALLER_KEY_HEADER: self.cloud.caller_key}

    def outbound_headers(self, email: str = "") -> dict[str, str]:
        """A business system's credentials for the outbound API (default: the local one the tfvars allow)."""
        return self.cloud.outbound_headers(email)

    def task_queue(self) -> TaskQueue:
        """The send queue as the processor uses it: OIDC token and caller key on every task."""
        env = self.function_env("processor")
        return TaskQueue(
            self.options.project, env["TASKS_LOCATION"], env["TASKS_QUEUE"], env["SENDER_URL"],
            env["TASKS_SERVICE_ACCOUNT"], lambda: emulator_client(self.tasks.address), env["PROCESSOR_URL"],
            caller_key=lambda: self.cloud.caller_key,
        )

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
            self._render_terraform()
            self._create_topology()
            self._apply_profiles()
            self._start_functions()
            self.cloud.start_scheduler(self.options.reconcile_interval_seconds)
            if self.options.simulator:
                self._start_simulator()
        except TerraformError as exc:
            self.stop()
            raise StackError(f"terraform/ does not render for the local stack: {exc}") from None
        except BaseException:
            self.stop()
            raise
        self._say(
            f"outbound API at {self.outbound_url}: a business system sends its ID token in Authorization and "
            f"X-Serverless-Authorization; a local one: {self.cloud.issuer.base_url}/token?audience={self.outbound_url}"
            f"&email={self.cloud.business_system}"
        )
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
        self._start_tool_server()
        self.cloud.start()
        self._say(f"token issuer on {self.cloud.issuer.base_url}, Pub/Sub push relay on {self.cloud.relay.base_url}")
        for name in SERVICES:
            self.ports[name] = o.webhook_port if name == "webhook" and o.webhook_port else free_port()
            self.container_ports[name] = free_port()
        if self.twilio is not None and o.status_callbacks:
            self.twilio.status_callback_url = self.webhook_url

    def _start_tool_server(self) -> None:
        """The example business's order and booking endpoints; another stack holding the port gets a free one."""
        o = self.options
        try:
            self.tool_server = ExampleToolServer(o.tool_secret, o.tool_server_port).start()
        except OSError:
            self.tool_server = ExampleToolServer(o.tool_secret).start()
            self._say(f"port {o.tool_server_port} is taken: profiles.example.yaml's tools will not reach the example")
        self._say(f"example tool server on {self.tool_server.base_url} (order status, table bookings)")

    def tfvars(self) -> dict[str, object]:
        """The variables of the local environment: the stack's addresses and accounts, then the options' tfvars."""
        o = self.options
        business_system = self.cloud.business_system
        values: dict[str, object] = {
            "project_id": o.project,
            "environment": "dev",
            "region": o.tasks_location,
            "image_tag": "local",
            "inbound_topic": o.topic,
            "dead_letter_subscription": o.dead_letter_subscription,
            "max_delivery_attempts": o.max_delivery_attempts,
            "processor_ack_deadline_seconds": o.ack_deadline_seconds,
            "tasks_queue": o.tasks_queue,
            "twilio_account_sid": o.twilio_account_sid,
            "twilio_whatsapp_from": o.twilio_whatsapp_from,
            "twilio_api_base_url": o.twilio_api_base_url or (self.twilio.base_url if self.twilio else ""),
            "openai_base_url": o.openai_base_url or (self.openai.base_url if self.openai else ""),
            # The outbound API is callable by one local business system (tokens: devstack/token_issuer.py).
            "outbound_invokers": [f"serviceAccount:{business_system}"],
            "outbound_allowed_service_accounts": [business_system],
            # ... and may send for every number of the deployment (OUTBOUND_CALLERS).
            "outbound_caller_businesses": {business_system: ["*"]},
            "tool_secret_ids": [EXAMPLE_SECRET_ID],
            # The inbox: the local OAuth client and sign-in script (devstack/google_signin.py), one local operator.
            "inbox_oauth_client_id": self.cloud.signin.client_id,
            "inbox_signin_script_url": self.cloud.signin.script_url,
            "inbox_operators": [LOCAL_OPERATOR],
        }
        if o.openai_model:
            values["openai_model"] = o.openai_model
        if self.offline_model:
            # The offline embeddings' distances are not a real model's (devstack/offline_knowledge.py).
            values["knowledge_max_distance"] = OFFLINE_MAX_DISTANCE
        values.update(o.tfvars)
        return values

    def _render_terraform(self) -> None:
        """terraform/ for the local environment, then Secret Manager with the secrets it declares."""
        o = self.options
        self.cloud.render(self.tfvars(), {name: self.url(name) for name in SERVICES})
        address = self.cloud.start_secret_manager({
            "twilio_auth_token": o.twilio_auth_token,
            "openai_api_key": o.openai_api_key or "offline-model",
            "address_hash_key": o.address_hash_key,
            "inbox_session_key": generated_key(48),
        })
        assert self.cloud.secret_manager is not None
        self.cloud.secret_manager.set_secret(EXAMPLE_SECRET_ID, o.tool_secret)
        self._say(f"Secret Manager stand-in on {address}, holding the secrets terraform/ declares")
        # As the deploy guide has the operator do in the Cloud console: the sign-in's redirect URI on the client.
        self.cloud.signin.authorize_redirect(self.cloud.rendered.services["inbox"].env["INBOX_URL"] + "/auth/google")
        self.cloud.signin.accounts = self.options.inbox_staff or self._local_accounts()

    def _local_accounts(self) -> tuple[str, ...]:
        """The accounts the local sign-in offers by default: every staff member of the profiles file, the operator."""
        from devstack.google_signin import staff_of

        return (*staff_of(Path(self.options.profiles_file)), LOCAL_OPERATOR) if self.options.profiles_file else (
            LOCAL_OPERATOR,)

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
            # The emulator pushes to the relay, which adds the token Terraform's oidc_token names.
            def push_config(name: str, ack_deadline: float) -> dict[str, object]:
                push = self.cloud.rendered.pushes.get(name)
                if push is None:
                    raise TerraformError(f"terraform/ declares no push subscription {name!r}")
                return {
                    "push_endpoint": self.cloud.route_push(name, ack_deadline),
                    "oidc_token": {"service_account_email": push.service_account, "audience": push.audience},
                }

            subscriber.create_subscription(
                request={
                    "name": f"{project}/subscriptions/{o.subscription}",
                    "topic": topic,
                    "push_config": push_config(o.subscription, o.ack_deadline_seconds),
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
                    "push_config": push_config(o.dead_letter_subscription, 60),
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
        from shared.ops.admin import read_profiles_file
        from shared.ops.knowledge_apply import apply_with_knowledge, lazy_knowledge
        from shared.ops.knowledge_files import read_knowledge
        from shared.ops.send_queues import send_queues, with_send_queues

        settings = Settings.from_env(self.function_env())
        path = Path(self.options.profiles_file)
        try:
            raw, profiles = read_profiles_file(path, defaults_from_settings(settings))
            documents = read_knowledge(profiles, path.parent, settings)
        except ProfileError as exc:
            raise StackError(f"BUSINESS_PROFILES_FILE is not usable: {exc}") from None
        with _emulator_env(self.firestore.env()):
            client = firestore.Client(project=self.options.project)
            store = FirestoreProfiles(lambda: client, settings.profiles_collection, defaults_from_settings(settings), 0)
            key = self.options.openai_api_key or "offline-model"
            chunks, embedder = lazy_knowledge(settings, lambda: client, lambda: key)
            queued: list[str] = []
            try:
                stored = store.stored()
                put = with_send_queues(store.put, raw, stored, lambda: send_queues(settings), settings, queued)
                lines = apply_with_knowledge(put, stored, raw, documents, chunks, embedder, settings,
                                             utcnow) + queued
            except ProfileError as exc:
                raise StackError(f"BUSINESS_PROFILES_FILE could not be applied: {exc}") from None
            finally:
                client.close()
            for line in lines:
                self._say(f"business profile {line.strip()}")

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
            # The operator commands read secrets as the services do; the page keys conversation ids itself.
            ops_env={**{k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}, **env,
                     "ADDRESS_HASH_KEY": o.address_hash_key},
            task_records=lambda: self.tasks.stats().tasks,
            offline_model=self.offline_model,
        )
        with _emulator_env(self.firestore.env()):
            self.simulator = Simulator(config).start()
        self._say(f"chat page (simulator) at {self.simulator.url}")

    def function_env(self, name: str = "processor") -> dict[str, str]:
        """The environment Terraform gives the service, emulator hosts added, then the options' values.

        Without a name: the processor's, which is also what the operator
        commands (``make admin``, ``make replay``) need against this stack.
        """
        hosts = {
            "FIRESTORE_EMULATOR_HOST": self.firestore.host,
            "PUBSUB_EMULATOR_HOST": self.pubsub.host,
            "CLOUD_TASKS_EMULATOR_HOST": self.tasks.address,
        }
        return self.cloud.environment(name, hosts, self.options.env)

    def _start_functions(self) -> None:
        self._say(f"starting {', '.join(SERVICES)} with the Dockerfile's command, each behind its Cloud Run front end")
        for name in SERVICES:
            self.start_function(name, wait=False)
        for name in SERVICES:
            self._wait_listening(name)
            self.cloud.start_front_end(name, self.ports[name], self.container_ports[name])
        self._say("services are listening")

    def start_function(self, name: str, extra_env: Mapping[str, str] | None = None, wait: bool = True) -> None:
        """(Re)start one function process, optionally with extra variables (fault tests); its front end stays."""
        self.stop_function(name)
        service = self.cloud.rendered.services[name]
        env = {
            **container.process_env(service.name, self.container_ports[name]),
            **self.function_env(name),
            **self.options.function_env.get(name, {}),
            **(extra_env or {}),
        }
        with open(self.options.log_dir / f"{name}_fn.log", "ab") as log:
            process = spawn(
                container.command(), env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
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
                with socket.create_connection((HOST, self.container_ports[name]), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise StackError(f"{name}_fn did not listen on port {self.container_ports[name]} within {timeout:.0f}s")

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
        if self.cloud.scheduler is not None:
            self.cloud.scheduler.stop()
        if self.simulator is not None:
            self.simulator.stop()
        functions = [self.processes.pop(name) for name in list(self.processes)]
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="stack-stop") as pool:
            emulators = [pool.submit(e.stop) for e in (self.firestore, self.pubsub) if self._own_emulators]
            stop_groups(functions, FUNCTION_GRACE_SECONDS, self._hurry)
            for stub in (self.twilio, self.openai, self.tool_server, self.tasks, self.cloud):
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

