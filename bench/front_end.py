"""Figure 9: what the Cloud Run front ends and the token issuer add to the other figures.

Every figure of the benchmark runs through the local Cloud Run front ends,
the Pub/Sub push relay and the token issuer, as the cloud's requests go
through Cloud Run (devstack/cloud_run.py). This figure says how much of the
ack and end-to-end figures is theirs, each side measured interleaved with
its counterpart as in figure 1:

* public hop: a signed webhook to the webhook's service URL (its front end:
  headers, trace, forward) against the same request straight to the container;
* private hop: the sender's cheapest request (an unreadable task, finished
  with 200 and no I/O) with the tasks invoker's ID token through the front
  end (token verified, signature replaced) against straight to the
  container with what the front end would hand on;
* a token minted by the issuer (an RS256 signature), which each push, task
  dispatch and scheduler run costs once.

An inbound message crosses the public hop once and a private hop twice (the
push, through the relay, and the send task), with two tokens minted, so its
end-to-end latency carries about public + 2 x (private + mint) of theirs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from bench.driver import Driver, PreparedPost, post
from bench.report import Goal, dist_row, note_row
from bench.stats import Summary, ratio, summarize

MINTS = 200


@dataclass
class FrontEndRun:
    public_via: list[float] = field(default_factory=list)
    public_direct: list[float] = field(default_factory=list)
    private_via: list[float] = field(default_factory=list)
    private_direct: list[float] = field(default_factory=list)
    mint: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


def run(driver: Driver, pairs: int, tag: str) -> FrontEndRun:
    stack = driver.stack
    result = FrontEndRun()

    def keep(side: str, status: int, seconds: float, into: list[float]) -> None:
        if status == 200:
            into.append(seconds)
        else:
            result.errors[f"{side}:{status}"] = result.errors.get(f"{side}:{status}", 0) + 1

    for i in range(pairs):
        for side in (("via", "direct") if i % 2 == 0 else ("direct", "via")):
            user = driver.new_user()
            url = stack.webhook_url if side == "via" else stack.container_url("webhook")
            prepared: PreparedPost = driver.prepare(user, f"{tag}-{side}-{user[-6:]}", url=url,
                                                    signed_url=stack.webhook_url)
            sent = driver.send(prepared)
            keep(f"public-{side}", sent.status, sent.seconds, result.public_via if side == "via" else result.public_direct)
    sender_token = stack.id_token(stack.identity("tasks_invoker"), stack.url("sender"))
    # As Cloud Tasks sends it: from inside the project (the sender's ingress is internal), with its token and the key.
    via_headers = {"Content-Type": "application/json", "Authorization": f"Bearer {sender_token}",
                   "X-Caller-Key": stack.cloud.caller_key, **stack.cloud.origin.headers()}
    direct_headers = {"Content-Type": "application/json", **stack.as_forwarded("tasks_invoker", "sender")}
    for i in range(pairs):
        for side in (("via", "direct") if i % 2 == 0 else ("direct", "via")):
            url, headers = (stack.url("sender"), via_headers) if side == "via" else (stack.container_url("sender"),
                                                                                    direct_headers)
            sent = post(PreparedPost(url, b"not a task", headers, "", "", ""))
            keep(f"private-{side}", sent.status, sent.seconds,
                 result.private_via if side == "via" else result.private_direct)
    for _ in range(MINTS):
        t0 = time.perf_counter()
        stack.id_token(stack.identity("tasks_invoker"), stack.url("sender"))
        result.mint.append(time.perf_counter() - t0)
    return result


def summary_of(values: list[float]) -> Summary:
    """Seconds measured, in milliseconds."""
    return summarize(values).scaled(1000)


def report(run_: FrontEndRun, e2e_p50_ms: float, ack_goals: list[Goal], e2e_goal: Goal
           ) -> tuple[list[list[str] | str], dict[str, Any]]:
    """Rows and JSON: each hop's cost, the estimate of their share in figure 2, and the goals they ran under."""
    ms = summary_of
    public_via, public_direct = ms(run_.public_via), ms(run_.public_direct)
    private_via, private_direct = ms(run_.private_via), ms(run_.private_direct)
    mint = ms(run_.mint)
    public_added = public_via.p50 - public_direct.p50
    private_added = private_via.p50 - private_direct.p50
    in_e2e = public_added + 2 * (private_added + mint.p50)
    met = [g for g in ack_goals + [e2e_goal] if g.passed]
    rows: list[list[str] | str] = [
        "9. Cloud Run front ends and token issuer (every figure above runs through them), ms",
        dist_row("  webhook ack through its front end (vs straight to the container)", public_via, public_direct,
                 ratio(public_via.p50, public_direct.p50)),
        note_row("    added by the public front end", f"p50 {public_added:+.2f} ms, p99 "
                 f"{public_via.p99 - public_direct.p99:+.2f} ms", public_via.n),
        dist_row("  private hop: sender with a token (vs straight, token already stripped)", private_via,
                 private_direct, ratio(private_via.p50, private_direct.p50)),
        note_row("    added by a private front end", f"p50 {private_added:+.2f} ms, p99 "
                 f"{private_via.p99 - private_direct.p99:+.2f} ms", private_via.n),
        dist_row("  one ID token minted (RS256)", mint),
        note_row("  their share of figure 2", f"~{in_e2e:.1f} ms of the e2e p50 {e2e_p50_ms:.0f} ms "
                 f"(public + 2 x (private + mint))", ""),
        note_row("  goals of figures 1 and 2, measured through them", f"{len(met)} of {len(ack_goals) + 1} met: "
                 + ", ".join(f"{g.name} {'met' if g.passed else 'MISSED'}" for g in ack_goals + [e2e_goal]), ""),
    ]
    section = {
        "n": public_via.n + public_direct.n + private_via.n + private_direct.n + mint.n,
        "public_via_ms": public_via.to_json(2), "public_direct_ms": public_direct.to_json(2),
        "public_added_p50_ms": round(public_added, 2),
        "private_via_ms": private_via.to_json(2), "private_direct_ms": private_direct.to_json(2),
        "private_added_p50_ms": round(private_added, 2),
        "mint_ms": mint.to_json(3),
        "estimated_share_of_e2e_p50_ms": round(in_e2e, 2),
        "errors": dict(run_.errors),
    }
    return rows, section


