"""Figure 5: a fresh process's first answer, for each function and for the bare floor function.

Time runs from Popen to the first 200. Each request is the cheapest real one
that function can get: a signed webhook, a Pub/Sub push of a real message, a
send task for a conversation that does not exist, and a webhook to the floor;
the private functions' requests carry what their Cloud Run front end would
hand on (the token without its signature, the caller key), since the fresh
process is reached directly.
The functions are started one after another, in rotating order, never side
by side, so two candidates never share the two cores.
"""

from __future__ import annotations

import base64
import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.cpu import group_cpu_seconds
from bench.driver import Driver
from bench.procs import Processes, function_command, process_env
from bench.stats import summarize
from devstack.emulators import free_port
from devstack.stack import HOST
from devstack.twilio_stub import new_sid
from shared.adapters.google_auth import CALLER_KEY_HEADER, CALLER_KEY_PARAMETER
from shared.domain.inbound import InboundMessage

NAMES = ("webhook", "processor", "sender", "floor")
FIRST_ANSWER_TIMEOUT_SECONDS = 60.0
# A request, and the (user, marker) it will make the stack reply to, if any.
Built = tuple[urllib.request.Request, tuple[str, str] | None]
RequestFactory = Callable[[str], Built]


@dataclass
class ColdStarts:
    listening: dict[str, list[float]] = field(default_factory=lambda: {n: [] for n in NAMES})
    first_ok: dict[str, list[float]] = field(default_factory=lambda: {n: [] for n in NAMES})
    # CPU seconds of the process group from Popen to the first 200: the machine's neighbours barely move it.
    cpu: dict[str, list[float]] = field(default_factory=lambda: {n: [] for n in NAMES})
    failures: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            name: {
                "first_response_ms": summarize(self.first_ok[name]).scaled(1000).to_json(1),
                "listening_ms": summarize(self.listening[name]).scaled(1000).to_json(1),
                "cpu_ms": summarize(self.cpu[name]).scaled(1000).to_json(1),
            }
            for name in NAMES
        } | {"failures": dict(self.failures)}


def _requests(driver: Driver, tag: str) -> dict[str, RequestFactory]:
    """For each function, a request builder taking the fresh process's base URL."""
    stack = driver.stack
    o = stack.options

    def webhook(url: str) -> Built:
        user = driver.new_user()
        # Signed for the public URL the function checks against, posted to the fresh process.
        prepared = driver.prepare(user, f"{tag}-w-{user[-6:]}", url=url, signed_url=stack.webhook_url)
        request = urllib.request.Request(url, data=prepared.data, method="POST", headers=prepared.headers)
        return request, (user, prepared.marker)

    def processor(url: str) -> Built:
        user = driver.new_user()
        marker = f"{tag}-p-{user[-6:]}"
        message = InboundMessage(
            sid=new_sid("SM"), sender=user, recipient=o.twilio_whatsapp_from, body=marker, received_at=time.time()
        )
        envelope = {
            "message": {"data": base64.b64encode(message.to_json()).decode(), "messageId": "1", "attributes": {}},
            "subscription": f"projects/{o.project}/subscriptions/{o.subscription}",
        }
        # As the processor's front end hands on a push: the token without its signature, the key in the query.
        forwarded = stack.as_forwarded("pubsub_push", "processor")
        key = forwarded.pop(CALLER_KEY_HEADER)
        request = urllib.request.Request(
            f"{url}?{CALLER_KEY_PARAMETER}={key}", data=json.dumps(envelope).encode(), method="POST",
            headers={"Content-Type": "application/json", **forwarded},
        )
        return request, (user, marker)

    def sender(url: str) -> Built:
        body = {"conversation": f"bench-unknown-{new_sid('XX')}", "sid": new_sid("SM"), "seq": 1}
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", **stack.as_forwarded("tasks_invoker", "sender")},
        )
        return request, None

    def floor(url: str) -> Built:
        user = driver.new_user()
        prepared = driver.prepare(user, f"{tag}-f-{user[-6:]}", url=url)
        return urllib.request.Request(url, data=prepared.data, method="POST", headers=prepared.headers), None

    return {"webhook": webhook, "processor": processor, "sender": sender, "floor": floor}


def _wait_port(port: int, deadline: float) -> float | None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return time.monotonic()
        except OSError:
            time.sleep(0.005)
    return None


def _first_ok(url: str, build: RequestFactory, deadline: float) -> tuple[float, tuple[str, str] | None] | None:
    """When the first 200 came back (monotonic), and whom it will make the stack answer."""
    while time.monotonic() < deadline:
        request, expects = build(url)
        try:
            with urllib.request.urlopen(request, timeout=max(deadline - time.monotonic(), 0.1)) as response:
                response.read()
                if response.status == 200:
                    return time.monotonic(), expects
        except urllib.error.HTTPError as error:
            error.close()
        except OSError:
            pass
        time.sleep(0.01)
    return None


def run(
    driver: Driver,
    processes: Processes,
    floor_env: dict[str, str],
    log_dir: Path,
    repeats: int,
    tag: str,
) -> ColdStarts:
    result = ColdStarts()
    builders = _requests(driver, tag)
    for r in range(repeats):
        order = NAMES[r % len(NAMES):] + NAMES[: r % len(NAMES)]
        for name in order:
            port = free_port()
            env = process_env(driver.stack, name, port, floor_env if name == "floor" else None)
            started = time.monotonic()
            process = processes.start(function_command(), env, log_dir / f"cold-{name}.log")
            try:
                deadline = started + FIRST_ANSWER_TIMEOUT_SECONDS
                listening = _wait_port(port, deadline)
                answered = _first_ok(f"http://{HOST}:{port}/", builders[name], deadline) if listening else None
                used = group_cpu_seconds(process.pid)  # its own session: the group is the shell, server and worker
            finally:
                processes.stop(process)
            if listening is None or answered is None:
                result.failures[name] = result.failures.get(name, 0) + 1
                continue
            ok, expects = answered
            if expects is not None:
                driver.book.add(*expects)
            result.listening[name].append(listening - started)
            result.first_ok[name].append(ok - started)
            result.cpu[name].append(used)
    return result
