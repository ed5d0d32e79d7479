"""The send rate's settings: part of the one ``Settings`` object (shared/config.py), declared here.

``Settings`` inherits these fields, as it does the inbox's (shared/inbox_settings.py),
to keep shared/config.py short (docs/decisions/0022-send-queue-per-number.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from shared.domain.send_rate import DEFAULT_LANES, MAX_LANES, lane_ids, valid_queue_id
from shared.env_values import ConfigError, _float, _text


@dataclass(frozen=True)
class SendSettings:
    """The send lanes, queues of one business number each (Terraform's send_lanes; none: every business shares
    the one queue), the rate of a business whose profile sets none, and Twilio's per-sender throughput, which
    no business's rate may exceed."""

    send_lanes: tuple[str, ...] = tuple(lane_ids("outbound-", DEFAULT_LANES))
    send_rate_per_second: float = 20.0
    sender_mps_limit: float = 80.0


def send_values(env: Mapping[str, str]) -> dict[str, Any]:
    """The fields above from the environment, checked: a bad value fails at start-up with its reason."""
    d = SendSettings()
    # Commas or semicolons: the profiles build gets it through comma-separated substitutions.
    listed = _text(env, "SEND_LANES").replace(";", ",")
    lanes = tuple(lane.strip() for lane in listed.split(",") if lane.strip()) or d.send_lanes
    if lanes == ("none",):
        lanes = ()
    values: dict[str, Any] = dict(
        send_lanes=lanes,
        send_rate_per_second=_float(env, "SEND_RATE_PER_SECOND", d.send_rate_per_second, 0.01, 500.0),
        sender_mps_limit=_float(env, "SENDER_MPS_LIMIT", d.sender_mps_limit, 1.0, 1000.0),
    )
    if len(lanes) > MAX_LANES or len(set(lanes)) != len(lanes) or not all(map(valid_queue_id, lanes)):
        raise ConfigError(f"SEND_LANES must be at most {MAX_LANES} distinct Cloud Tasks queue ids, or none")
    if values["send_rate_per_second"] > values["sender_mps_limit"]:
        raise ConfigError("SEND_RATE_PER_SECOND must not exceed SENDER_MPS_LIMIT (Twilio's throughput per sender)")
    return values
