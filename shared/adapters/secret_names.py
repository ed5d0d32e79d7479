"""Secret Manager's names and checksums, as pure helpers of shared/adapters/secret_manager.py."""

from __future__ import annotations

import re

import google_crc32c

from shared.config import ConfigError

_SECRET_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
_SECRET_NAME = re.compile(r"projects/[^/]+/secrets/[A-Za-z0-9_-]{1,255}")
_VERSION_NAME = re.compile(r"projects/[^/]+/secrets/[A-Za-z0-9_-]{1,255}/versions/(latest|[1-9][0-9]*)")


def crc32c(data: bytes) -> int:
    """CRC-32C, the checksum Secret Manager sends with each payload (google-crc32c, as Google's samples do)."""
    return google_crc32c.value(data)


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
