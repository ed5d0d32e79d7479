"""The inbox's settings: part of the one ``Settings`` object (shared/config.py), declared here.

``Settings`` inherits these fields, so every reader still has one typed object
read once; they live apart only to keep shared/config.py short, as the inbox
is one service among six (docs/decisions/0021-inbox-sign-in.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from shared.env_values import ConfigError, _float, _int, _list, _text


@dataclass(frozen=True)
class InboxSettings:
    """Its public URL (Google posts the sign-in there; Secure cookies when https), the Sign in with Google
    client whose ID tokens it accepts and the script that draws the button, who operates it, how long a
    session lasts, the secret that signs sessions, how often an open inbox asks for news, and the hold
    subscription its operators replay dead letters from; the processor's ``inbox_tasks_url`` is where a
    handoff's notice task goes (the inbox's run.app URL; empty: no notices)."""

    inbox_url: str = ""
    inbox_oauth_client_id: str = ""
    inbox_signin_script_url: str = "https://accounts.google.com/gsi/client"
    inbox_operators: tuple[str, ...] = ()
    inbox_session_seconds: int = 8 * 3600
    inbox_session_key_secret: str = "inbox-session-key"
    inbox_poll_seconds: float = 3.0
    dead_letter_hold_subscription: str = "inbound-messages-dead-letter-hold"
    inbox_tasks_url: str = ""


def inbox_values(env: Mapping[str, str]) -> dict[str, Any]:
    """The fields above from the environment, checked: a bad value fails at start-up with its reason."""
    d = InboxSettings()
    values: dict[str, Any] = dict(
        inbox_url=_text(env, "INBOX_URL").rstrip("/"),
        inbox_oauth_client_id=_text(env, "INBOX_OAUTH_CLIENT_ID"),
        inbox_signin_script_url=_text(env, "INBOX_SIGNIN_SCRIPT_URL", d.inbox_signin_script_url),
        inbox_operators=tuple(e.lower() for e in _list(env, "INBOX_OPERATORS")),
        inbox_session_seconds=_int(env, "INBOX_SESSION_SECONDS", d.inbox_session_seconds, 300, 7 * 24 * 3600),
        inbox_session_key_secret=_text(env, "INBOX_SESSION_KEY_SECRET", d.inbox_session_key_secret),
        inbox_poll_seconds=_float(env, "INBOX_POLL_SECONDS", d.inbox_poll_seconds, 1.0, 60.0),
        dead_letter_hold_subscription=_text(env, "PUBSUB_DEAD_LETTER_HOLD_SUBSCRIPTION", d.dead_letter_hold_subscription),
        inbox_tasks_url=_text(env, "INBOX_TASKS_URL").rstrip("/"),
    )
    for url in (values["inbox_url"], values["inbox_signin_script_url"]):
        if url and not url.startswith(("https://", "http://")):
            raise ConfigError(f"INBOX_URL and INBOX_SIGNIN_SCRIPT_URL must be http(s) URLs, got {url!r}")
    if any("@" not in email for email in values["inbox_operators"]):
        raise ConfigError(f"INBOX_OPERATORS must be e-mail addresses, got {', '.join(values['inbox_operators'])}")
    return values
