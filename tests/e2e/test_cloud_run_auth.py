"""Both ways through the running stack: Google's callers get through Cloud Run's front ends, nobody else does.

The message path (webhook, Pub/Sub push through the relay, Cloud Tasks,
Cloud Scheduler) reaches every function through its front end with the
token the real service would send. A forged token, a token for the wrong
audience or account, or a token whose signature part is
``SIGNATURE_REMOVED_BY_GOOGLE`` sent by someone who bypasses the front end,
is refused, by the front end or by the function, with the reason logged.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.cloud_run import SIGNATURE_REMOVED, forwarded_token
from tests.plugin import unique_user, wait_until


# A Pub/Sub push envelope: functions-framework turns the processor's body into a CloudEvent before our code runs.
ENVELOPE = json.dumps({"message": {"data": base64.b64encode(b"{}").decode(), "messageId": "forged-1"},
                       "subscription": "projects/test-project/subscriptions/inbound-messages-processor"}).encode()


def _post(url: str, headers: dict[str, str], body: bytes = ENVELOPE) -> int:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        with error:
            error.read()
            return error.code


def _rejections(stack: Any, name: str) -> list[str]:
    """The reasons the function logged for the callers it refused (one JSON line each)."""
    reasons = []
    for line in Path(stack.options.log_dir / f"{name}_fn.log").read_text(errors="replace").splitlines():
        if line.startswith("{") and '"caller_rejected"' in line:
            reasons.append(json.loads(line)["reason"])
    return reasons


def _wait_rejection(stack: Any, name: str, before: int) -> str:
    reasons = wait_until(lambda: _rejections(stack, name)[before:], timeout=10)
    return reasons[-1]  # type: ignore[index]


def _forged(audience: str, email: str) -> str:
    """Our claims, signed by a key that is not Google's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {"iss": "https://accounts.google.com", "aud": audience, "azp": "1", "sub": "1", "email": email,
              "email_verified": True, "iat": now, "exp": now + 3600}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "forged"})


def test_the_whole_message_path_runs_through_the_front_ends(pipeline) -> None:
    stack = pipeline.stack
    fronts = stack.cloud.front_ends
    before = {name: front.forwarded for name, front in fronts.items()}
    runs = stack.scheduler.runs
    user = unique_user()
    status, _, _ = pipeline.post(user, "through cloud run")
    assert status == 200
    assert pipeline.wait_replies(user, 1) == ["[offline model] You said: «through cloud run». (turn 1)"]
    wait_until(lambda: fronts["sender"].forwarded > before["sender"], timeout=10)
    for name in ("webhook", "processor", "sender"):
        assert fronts[name].forwarded > before[name], f"{name} was reached around its front end"
    wait_until(lambda: stack.scheduler.runs > runs, timeout=10)
    assert fronts["reconciler"].forwarded > before["reconciler"]
    assert not fronts["reconciler"].refusals, "the reconcile job's runs were refused by Cloud Run"
    assert not [r for f in fronts.values() for r in f.refusals if r.reason.startswith("no identity")], (
        "one of Google's callers came without a token"
    )


@pytest.mark.parametrize("name, caller", [("processor", "pubsub_push"), ("sender", "tasks_invoker"),
                                          ("reconciler", "scheduler")])
def test_a_forged_token_sent_straight_to_a_function_is_refused(pipeline, name: str, caller: str) -> None:
    stack = pipeline.stack
    token = _forged(stack.url(name), stack.identity(caller))
    seen = len(_rejections(stack, name))
    assert _post(stack.container_url(name), {"Authorization": f"Bearer {token}"}) == 403
    assert _wait_rejection(stack, name, seen) == "request carries no caller key"
    # Even with the key (an insider's), the signature is not Google's.
    assert _post(stack.container_url(name), {"Authorization": f"Bearer {token}",
                                             "X-Caller-Key": stack.cloud.caller_key}) == 403
    assert _wait_rejection(stack, name, seen + 1) == "token signature does not match Google's keys"


def test_a_token_with_its_signature_removed_proves_nothing_without_the_key(pipeline) -> None:
    """What Cloud Run hands the container, written by someone who reaches the container directly."""
    stack = pipeline.stack
    token = forwarded_token(_forged(stack.url("sender"), stack.identity("tasks_invoker")))
    assert token.endswith("." + SIGNATURE_REMOVED)
    seen = len(_rejections(stack, "sender"))
    assert _post(stack.container_url("sender"), {"Authorization": f"Bearer {token}"}) == 403
    assert _wait_rejection(stack, "sender", seen) == "request carries no caller key"
    assert _post(stack.container_url("sender"), {"Authorization": f"Bearer {token}", "X-Caller-Key": "guess"}) == 403
    assert _wait_rejection(stack, "sender", seen + 1) == "caller key does not match"
    # With the key, the claims must still be right: another audience or account is refused.
    for audience, email, reason in (
        (stack.url("processor"), stack.identity("tasks_invoker"), "token audience does not match this service"),
        (stack.url("sender"), stack.identity("pubsub_push"), "caller is not an allowed service account"),
    ):
        forged = forwarded_token(_forged(audience, email))
        seen = len(_rejections(stack, "sender"))
        headers = {"Authorization": f"Bearer {forged}", "X-Caller-Key": stack.cloud.caller_key}
        assert _post(stack.container_url("sender"), headers) == 403
        assert _wait_rejection(stack, "sender", seen) == reason


def test_the_front_end_refuses_the_wrong_audience_account_or_source_before_the_function(pipeline) -> None:
    stack = pipeline.stack
    sender = stack.cloud.front_ends["sender"]
    internal = stack.cloud.origin.headers()
    forwarded = sender.forwarded
    cases = [
        (stack.id_token(stack.identity("tasks_invoker"), stack.url("processor")), internal, 401, "audience"),
        (stack.id_token(stack.identity("pubsub_push"), stack.url("sender")), internal, 403, "lacks roles/run.invoker"),
        (_forged(stack.url("sender"), stack.identity("tasks_invoker")), internal, 401, "not signed by Google"),
        (stack.id_token(stack.identity("tasks_invoker"), stack.url("sender")), {}, 404, "ingress is internal only"),
    ]
    for token, origin, status, reason in cases:
        headers = {"Authorization": f"Bearer {token}", "X-Caller-Key": stack.cloud.caller_key, **origin}
        assert _post(stack.url("sender"), headers) == status
        assert reason in sender.refusals[-1].reason
    assert sender.forwarded == forwarded, "a refused request reached the sender"


@pytest.fixture
def made_public(pipeline) -> Iterator[Any]:
    """The processor as if someone added allUsers and widened ingress; restored afterwards."""
    front = pipeline.stack.cloud.front_ends["processor"]
    declared = front.service
    front.service = replace(declared, ingress="INGRESS_TRAFFIC_ALL", invokers=declared.invokers | {"allUsers"})
    yield front
    front.service = declared


def test_a_private_service_made_public_by_mistake_is_still_not_drivable(pipeline, made_public) -> None:
    stack = pipeline.stack
    user = unique_user()
    message = {"sid": "SM" + "f" * 32, "from": user, "to": stack.options.twilio_whatsapp_from, "body": "drive me"}
    envelope = {"message": {"data": base64.b64encode(json.dumps(message).encode()).decode(), "messageId": "x1"},
                "subscription": f"projects/{stack.options.project}/subscriptions/{stack.options.subscription}"}
    token = forwarded_token(_forged(stack.url("processor"), stack.identity("pubsub_push")))
    seen = len(_rejections(stack, "processor"))
    assert _post(stack.url("processor"), {"Authorization": f"Bearer {token}"}, json.dumps(envelope).encode()) == 403
    assert _wait_rejection(stack, "processor", seen) == "request carries no caller key"
    assert not pipeline.model_requests_for("drive me")


def test_outbound_callers_must_send_their_token_where_cloud_run_leaves_its_signature(pipeline) -> None:
    stack = pipeline.stack
    body = json.dumps({"to": unique_user(), "body": "hi", "idempotency_key": "k"}).encode()
    both = stack.outbound_headers()
    # Only in Authorization: Cloud Run checks it and strips the signature, so the function cannot check it.
    seen = len(_rejections(stack, "outbound"))
    assert _post(stack.outbound_url, {"Authorization": both["Authorization"]}, body) == 403
    assert _wait_rejection(stack, "outbound", seen).startswith("token signature was removed by Cloud Run")
    # A business system that holds no roles/run.invoker never reaches the function.
    stranger = stack.outbound_headers(f"stranger@{stack.options.project}.iam.gserviceaccount.com")
    assert _post(stack.outbound_url, stranger, body) == 403
    assert "lacks roles/run.invoker" in stack.cloud.front_ends["outbound"].refusals[-1].reason
    # Straight to the container with a forged signed token: Google's keys decide.
    forged = _forged(stack.url("outbound"), stack.cloud.business_system)
    seen = len(_rejections(stack, "outbound"))
    assert _post(stack.container_url("outbound"), {"Authorization": f"Bearer {forged}"}, body) == 403
    assert _wait_rejection(stack, "outbound", seen) == "token signature does not match Google's keys"
