"""The send rate's settings: part of the one ``Settings`` object (shared/config.py), declared here.

``Settings`` inherits these fields, as it does the inbox's (shared/inbox_settings.py),
to keep shared/config.py short (docs/decisions/0022-send-queue-per-number.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from shared.domain.send_rate import MAX_LANES, MAX_QUEUE_RATE, QUEUE_PREFIX
from shared.env_values import ConfigError, _float, _int, _text


@dataclass(frozen=True)
class SendSettings:
    """How many send lanes (queues of one business number each, Terraform's send_queue_count; 0: every business
    shares the one queue), the rate of a business whose profile sets none, Twilio's per-sender throughput that no
    business's rate may exceed, and the prefix of the lanes' queue ids (Terraform's send_queue_prefix)."""

    send_queue_count: int = 10
    send_rate_per_second: float = 20.0
    sender_mps_limit: float = 80.0
    send_queue_prefix: str = QUEUE_PREFIX


def send_values(env: Mapping[str, str]) -> dict[str, Any]:
    """The fields above from the environment, checked: a bad value fails at start-up with its reason."""
    d = SendSettings()
    values: dict[str, Any] = dict(
        send_queue_count=_int(env, "SEND_QUEUE_COUNT", d.send_queue_count, 0, MAX_LANES),
        send_rate_per_second=_float(env, "SEND_RATE_PER_SECOND", d.send_rate_per_second, 0.001, MAX_QUEUE_RATE),
        sender_mps_limit=_float(env, "SENDER_MPS_LIMIT", d.sender_mps_limit, 0.001, MAX_QUEUE_RATE),
        send_queue_prefix=_text(env, "SEND_QUEUE_PREFIX", d.send_queue_prefix),
    )
    if values["send_rate_per_second"] > values["sender_mps_limit"]:
        raise ConfigError("SEND_RATE_PER_SECOND must not exceed SENDER_MPS_LIMIT (Twilio's throughput per sender)")
    prefix = values["send_queue_prefix"]
    if not prefix or len(prefix) > 98 or not all(c.isalnum() or c == "-" for c in prefix):
        raise ConfigError(f"SEND_QUEUE_PREFIX must be letters, digits and hyphens (at most 98), got {prefix!r}")
    return values
