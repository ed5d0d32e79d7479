"""Reading one environment variable as a typed value, or failing at start-up with a clear reason.

The helpers of shared/config.py, which is the only reader of the environment.
"""

from __future__ import annotations

import json
from typing import Mapping


class ConfigError(ValueError):
    """A variable is present but unusable; raised at start-up, not mid-request."""


def _text(env: Mapping[str, str], name: str, default: str = "") -> str:
    return env.get(name, default).strip() or default


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in env.get(name, "").split(",") if item.strip())


def _callers(env: Mapping[str, str], name: str) -> Mapping[str, tuple[str, ...]]:
    """A JSON object: caller e-mail → the business addresses it may send for ("*": all of them)."""
    raw = env.get(name, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a JSON object of e-mail to a list of WhatsApp addresses") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(a, str) for a in v) for k, v in value.items()
    ):
        raise ConfigError(f"{name} must map each caller e-mail to a list of WhatsApp addresses or \"*\"")
    return {k.strip().lower(): tuple(a.strip() for a in v) for k, v in value.items()}
