"""What the functions ask of their secrets, how a secret is named, and the local source of their values.

The :class:`Secrets` protocol hides where values come from: Secret Manager in
the cloud (shared/adapters/secret_manager.py), the environment locally
(:class:`EnvSecrets`, ``SECRET_SOURCE=env``). Values are never logged and never
appear in an exception message; resource names and variable names do.
"""

from __future__ import annotations

import re
from typing import Protocol

from shared.config import ConfigError, Settings
from shared.domain.tools import local_secret_variable

TWILIO_AUTH_TOKEN = "TWILIO_AUTH_TOKEN"
OPENAI_API_KEY = "OPENAI_API_KEY"
ADDRESS_HASH_KEY = "ADDRESS_HASH_KEY"
CALLER_KEY = "CALLER_KEY"
# Signs the inbox's session cookies (docs/decisions/0021-inbox-sign-in.md).
INBOX_SESSION_KEY = "INBOX_SESSION_KEY"

_SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
_SECRET_NAME = re.compile(r"projects/[^/]+/secrets/[A-Za-z0-9_-]{1,255}")
_VERSION_NAME = re.compile(r"projects/[^/]+/secrets/[A-Za-z0-9_-]{1,255}/versions/(latest|[1-9][0-9]*)")


class SecretUnavailable(RuntimeError):
    """A secret cannot be obtained; the message says what to set, never the value."""


class Secrets(Protocol):
    """What the functions need; the source (env or Secret Manager) is hidden."""

    def twilio_auth_token(self) -> str: ...

    def openai_api_key(self) -> str: ...

    def address_hash_key(self) -> str: ...

    def caller_key(self) -> str:
        """The key Pub/Sub, Cloud Tasks and Cloud Scheduler carry to our private services."""
        ...

    def inbox_session_key(self) -> str:
        """The key that signs the inbox's session cookies."""
        ...

    def refresh(self, name: str) -> bool:
        """Re-read secret ``name`` (TWILIO_AUTH_TOKEN, ...) if allowed now; True if its value changed."""
        ...

    def previous(self, name: str) -> str | None:
        """The value ``name`` had before its last change, while the overlap lasts."""
        ...

    def tool_secret(self, secret_id: str) -> str:
        """A business tool's signing secret, named by its profile (shared/domain/tool_signature.py)."""
        ...

    def refresh_tool_secret(self, secret_id: str) -> bool:
        """Re-read a tool secret the business refused, if allowed now; True if its value changed."""
        ...

    def previous_tool_secret(self, secret_id: str) -> str | None:
        """The tool secret's value before its last change, while the overlap lasts."""
        ...

def secret_version_name(reference: str, project_id: str) -> str:
    """Turn a configured secret reference into a full version resource name.

    Accepts a short id (``openai-api-key``, resolved to ``latest`` in
    ``project_id``), a secret name (``projects/p/secrets/s``) or a full version
    name (``projects/p/secrets/s/versions/3``). Anything else is a config error
    at start-up rather than a NOT_FOUND on the first message.
    """
    ref = reference.strip()
    if _VERSION_NAME.fullmatch(ref):
        return ref
    if _SECRET_NAME.fullmatch(ref):
        return f"{ref}/versions/latest"
    if _SECRET_ID.fullmatch(ref):
        return f"projects/{project_id}/secrets/{ref}/versions/latest"
    raise ConfigError(
        f"secret reference {ref!r} is neither a secret id nor projects/PROJECT/secrets/SECRET[/versions/VERSION]"
    )

class EnvSecrets:
    """Local fallback: values from ``Settings.env_secrets`` (the process environment)."""

    def __init__(self, settings: Settings) -> None:
        self._values = dict(settings.env_secrets)

    def _get(self, name: str) -> str:
        value = self._values.get(name, "").strip()
        if not value:
            raise SecretUnavailable(
                f"{name} is not set; export it or put it in .env for local runs "
                "(SECRET_SOURCE=env), or use SECRET_SOURCE=secretmanager"
            )
        return value

    def twilio_auth_token(self) -> str:
        return self._get(TWILIO_AUTH_TOKEN)

    def openai_api_key(self) -> str:
        return self._get(OPENAI_API_KEY)

    def address_hash_key(self) -> str:
        return self._get(ADDRESS_HASH_KEY)

    def caller_key(self) -> str:
        return self._get(CALLER_KEY)

    def inbox_session_key(self) -> str:
        return self._get(INBOX_SESSION_KEY)

    def refresh(self, name: str) -> bool:
        """The environment does not change under a running process."""
        return False

    def previous(self, name: str) -> str | None:
        return None

    def tool_secret(self, secret_id: str) -> str:
        return self._get(local_secret_variable(secret_id))

    def refresh_tool_secret(self, secret_id: str) -> bool:
        return False

    def previous_tool_secret(self, secret_id: str) -> str | None:
        return None
