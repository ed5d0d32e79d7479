"""A small queueing simulation of a pipeline of stages, for bench/capacity.py (figure 17).

Each message goes through every stage in order. A stage may have a rate limit
(a token bucket, shared or one per key, such as one per business number or
per user) and a number of servers (concurrent slots: Cloud Run instances ×
concurrency, or vCPUs); a stage with neither is a pure delay. Messages wait
first-come first-served. Stages are simulated one after another over all
messages (each message's departure from one stage is its arrival at the
next), which is exact for first-come first-served servers and token buckets
and needs no event list: a pipeline of ten stages and tens of thousands of
messages takes about a second, seeded, with no I/O.

Why not an analytic formula alone: rate limits per key, pure delays with
heavy tails and several stages near saturation do not compose into one
closed form; the utilisation of each stage is computed as well, so the
simulation's answer can be checked against it (tests/unit/test_capacity.py
checks a single M/M/1 stage against 1/(mu - lambda)).
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field
from typing import Callable

# z of the 99th percentile of the standard normal: a lognormal from its median and p99.
Z99 = 2.3263


@dataclass(frozen=True)
class Service:
    """A service time in seconds: lognormal from a median and a p99, or exponential with a mean."""

    p50: float
    p99: float = 0.0
    exponential: bool = False

    @property
    def mean(self) -> float:
        if self.exponential or self.p50 <= 0:
            return self.p50
        sigma = self._sigma()
        return self.p50 * math.exp(sigma * sigma / 2)

    def _sigma(self) -> float:
        return math.log(self.p99 / self.p50) / Z99 if self.p99 > self.p50 > 0 else 0.0

    def sampler(self, rng: random.Random) -> Callable[[], float]:
        if self.p50 <= 0:
            return lambda: 0.0
        if self.exponential:
            return lambda: rng.expovariate(1 / self.p50)
        mu, sigma = math.log(self.p50), self._sigma()
        return lambda: rng.lognormvariate(mu, sigma)


@dataclass(frozen=True)
class Stage:
    """One step on a message's way, with the limits that apply to it.

    ``rate``: tokens per second of a token bucket holding ``burst`` tokens (None: no rate limit);
    ``cost``: tokens one message takes (five Firestore writes, the parts of a reply);
    ``key``: "" for one bucket shared by all, else the message attribute it is kept per ("business", "user");
    ``servers``: concurrent slots (None: as many as needed); ``service``: the time a slot is held.
    ``setting`` names what sets the limit (a Terraform variable, a quota).
    """

    name: str
    service: Service = Service(0.0)
    servers: int | None = None
    rate: float | None = None
    burst: float = 1.0
    cost: float = 1.0
    key: str = ""
    setting: str = ""


@dataclass
class Message:
    arrival: float
    business: int
    user: int
    at: float = 0.0  # when it left the last stage simulated
    waited: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Load:
    rate: float  # messages per second, Poisson
    shares: tuple[float, ...]  # each business number's share of the messages
    users: int  # how many users write (each message from one at random)


def utilisation(stage: Stage, load: Load) -> float:
    """Offered work over capacity: above 1 the stage cannot keep up and its queue grows without bound."""
    worst = 0.0
    if stage.rate is not None:
        if stage.key == "business":
            offered = load.rate * max(load.shares)
        elif stage.key == "user":
            offered = load.rate / load.users
        else:
            offered = load.rate
        worst = offered * stage.cost / stage.rate
    if stage.servers is not None:
        worst = max(worst, load.rate * stage.service.mean / stage.servers)
    return worst


def arrivals(load: Load, seconds: float, rng: random.Random) -> list[Message]:
    """A Poisson stream of ``load.rate`` messages a second for ``seconds``, each to a number and from a user."""
    messages: list[Message] = []
    numbers = range(len(load.shares))
    t = rng.expovariate(load.rate)
    while t < seconds:
        business = rng.choices(numbers, weights=load.shares)[0]
        messages.append(Message(t, business, rng.randrange(load.users), at=t))
        t += rng.expovariate(load.rate)
    return messages


def _through(stage: Stage, messages: list[Message], rng: random.Random) -> None:
    """Move every message through ``stage`` in the order it arrives there (first come, first served)."""
    sample = stage.service.sampler(rng)
    buckets: dict[int, tuple[float, float]] = {}  # key -> (tokens, as of when)
    free: list[float] = [0.0] * stage.servers if stage.servers is not None else []
    for msg in sorted(messages, key=lambda m: m.at):
        ready = msg.at
        if stage.rate is not None:
            key = getattr(msg, stage.key) if stage.key else 0
            tokens, since = buckets.get(key, (stage.burst, 0.0))
            ready = max(ready, since)  # first come, first served within a bucket
            tokens = min(stage.burst, tokens + (ready - since) * stage.rate)
            if tokens < stage.cost:
                ready += (stage.cost - tokens) / stage.rate
                tokens = stage.cost
            buckets[key] = (tokens - stage.cost, ready)
        start = ready
        if free:
            start = max(ready, heapq.heappop(free))
        done = start + sample()
        if stage.servers is not None:
            heapq.heappush(free, done)
        msg.waited[stage.name] = start - msg.at
        msg.at = done


def simulate(stages: list[Stage], load: Load, seconds: float, seed: int) -> list[Message]:
    """Every message of ``seconds`` of ``load`` through ``stages``; ``Message.at`` is when it left the last."""
    rng = random.Random(seed)
    messages = arrivals(load, seconds, rng)
    for stage in stages:
        _through(stage, messages, rng)
    return messages


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]
