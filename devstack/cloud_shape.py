"""The part of Google Cloud that stands around our functions, assembled for the local stack.

Everything here comes from terraform/ (devstack/terraform_env.py): the
environment each function starts with, the Cloud Run front end before it
(ingress, invokers, time-out), where Pub/Sub pushes and with which token,
what the scheduler job sends, and which secrets exist. Only what cannot
exist locally is substituted: the run.app URLs become the front ends'
loopback URLs, emulator hosts are added, and the secrets' values are local
ones (the caller key is generated here, as Terraform generates it).
"""

from __future__ import annotations

import secrets
import string
from typing import Any, Mapping

from devstack.cloud_run import CloudRunFrontEnd, Origin
from devstack.google_signin import GoogleSignInStandIn
from devstack.push_relay import PushRelay
from devstack.scheduler import Scheduler
from devstack.secret_manager_stub import SecretManagerStub
from devstack.terraform_env import Deployment, TerraformError, render
from devstack.token_issuer import TokenIssuer

# Read by the code but never set by Terraform: test hooks (docs/configuration.md).
TEST_ONLY_ENV = {"TEST_FAULT_POINTS", "TEST_CLOCK_OFFSET_SECONDS"}
# The local business system allowed to call the outbound API, as an environment's tfvars would allow one.
BUSINESS_SYSTEM = "business-system@{project}.iam.gserviceaccount.com"
# The inbox's OAuth client in the local stack (a real one is made in the Cloud console, docs/deploy.md).
LOCAL_INBOX_CLIENT_ID = "000000000000-local-inbox.apps.googleusercontent.com"


def generated_key(length: int = 43) -> str:
    """Letters and digits, as terraform/secrets.tf's random_password makes the caller key."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


class CloudShape:
    """Token issuer, Sign in with Google, Secret Manager, Pub/Sub relay, Cloud Run front ends and Cloud
    Scheduler, as Terraform says."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.issuer = TokenIssuer()
        self.origin = Origin()
        self.relay = PushRelay(self.issuer, self.origin)
        self.signin = GoogleSignInStandIn(self.issuer, LOCAL_INBOX_CLIENT_ID)
        self.caller_key = generated_key()
        self.secret_manager: SecretManagerStub | None = None
        self.deployment: Deployment | None = None
        self.front_ends: dict[str, CloudRunFrontEnd] = {}
        self.scheduler: Scheduler | None = None

    @property
    def business_system(self) -> str:
        return BUSINESS_SYSTEM.format(project=self.project)

    def start(self) -> None:
        self.issuer.start()
        self.relay.start()
        self.signin.start()

    def render(self, variables: Mapping[str, Any], urls: Mapping[str, str]) -> Deployment:
        self.deployment = render(variables, urls, self.caller_key)
        return self.deployment

    @property
    def rendered(self) -> Deployment:
        assert self.deployment is not None, "render() first"
        return self.deployment

    def start_secret_manager(self, values: Mapping[str, str]) -> str:
        """Each secret Terraform declares, with its local value (keys as in secrets.tf)."""
        ids = self.rendered.secret_ids
        missing = set(ids) - set(values) - {"caller_key"}
        if missing:
            raise TerraformError(f"no local value for the secrets {sorted(missing)}")
        contents = {ids[key]: value for key, value in values.items() if key in ids}
        contents[ids["caller_key"]] = self.caller_key
        self.secret_manager = SecretManagerStub(contents, project=self.project)
        return self.secret_manager.start()

    def environment(self, name: str, hosts: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
        """The service's Terraform environment, emulator hosts added, then the test knobs it has.

        An override applies to a service whose Terraform environment sets that
        name (or is a test hook); one that no service has is a misspelling.
        """
        env = dict(self.rendered.services[name].env)
        unknown = set(overrides) - TEST_ONLY_ENV - {k for s in self.rendered.services.values() for k in s.env}
        if unknown:
            raise TerraformError(f"overrides that Terraform gives no service: {sorted(unknown)}")
        env.update({k: v for k, v in overrides.items() if k in env or k in TEST_ONLY_ENV})
        env.update(hosts)
        assert self.secret_manager is not None
        env["SECRET_MANAGER_EMULATOR_HOST"] = self.secret_manager.address
        env["AUTH_CERTS_URL"] = self.issuer.certs_url
        env["HOST"] = "127.0.0.1"  # the image binds 0.0.0.0; nothing here listens beyond loopback
        return env

    def start_front_end(self, name: str, port: int, container_port: int) -> CloudRunFrontEnd:
        front = CloudRunFrontEnd(self.rendered.services[name], container_port, self.issuer, self.origin, port)
        self.front_ends[name] = front.start()
        return front

    def route_push(self, subscription: str, ack_deadline_seconds: float) -> str:
        """The relay endpoint the emulator pushes to for a subscription Terraform declares."""
        push = self.rendered.pushes.get(subscription)
        if push is None:
            raise TerraformError(f"terraform/ declares no push subscription {subscription!r}")
        return self.relay.route(push, ack_deadline_seconds)

    def start_scheduler(self, interval_seconds: float) -> Scheduler:
        self.scheduler = Scheduler(self.rendered.job, interval_seconds, self.issuer, self.origin).start()
        return self.scheduler

    def outbound_headers(self, email: str = "") -> dict[str, str]:
        """What a business system sends the outbound API: its ID token, in both headers (docs/features.md)."""
        token = self.issuer.mint(email or self.business_system, self.rendered.services["outbound"].url)
        return {"Authorization": f"Bearer {token}", "X-Serverless-Authorization": f"Bearer {token}"}

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        for front in self.front_ends.values():
            front.stop()
        for server in (self.relay, self.signin, self.issuer):
            server.stop()
        if self.secret_manager is not None:
            self.secret_manager.stop()
