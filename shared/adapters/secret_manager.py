"""The one place the Twilio auth token, the OpenAI key and the business tools' signing secrets come from.

In the cloud they live in Secret Manager and are read once per instance, then
kept in memory: after warm-up a message costs no Secret Manager call. Locally
(``SECRET_SOURCE=env``) they come from the environment through
:class:`shared.config.Settings`. Values are never logged and never appear in
an exception message; resource names and variable names do.

Rotation needs no redeploy: when a credential is refused (a webhook signature
that does not match, a 401 from Twilio or OpenAI), the caller asks
:meth:`refresh`, which re-reads the secret at most once per
SECRET_REFRESH_INTERVAL_SECONDS; the value it replaces stays available from
:meth:`previous` for SECRET_OVERLAP_SECONDS, so webhooks signed with the old
token during the switch still pass. docs/deploy.md, "Rotating a secret".
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import google_crc32c
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry

from shared.adapters.secret_names import (  # re-exported: importable from here as before
    ADDRESS_HASH_KEY as ADDRESS_HASH_KEY,
    CALLER_KEY as CALLER_KEY,
    INBOX_SESSION_KEY as INBOX_SESSION_KEY,
    OPENAI_API_KEY as OPENAI_API_KEY,
    TWILIO_AUTH_TOKEN as TWILIO_AUTH_TOKEN,
    EnvSecrets as EnvSecrets,
    Secrets as Secrets,
    SecretUnavailable as SecretUnavailable,
    secret_version_name as secret_version_name,
)
from shared.config import ConfigError, Settings

if TYPE_CHECKING:
    from google.cloud.secretmanager_v1 import SecretManagerServiceClient

_log = logging.getLogger(__name__)

# Transient failures only; everything else is a configuration problem that a
# retry cannot fix. The whole budget stays well inside a request's lifetime.
ACCESS_RETRY = gretry.Retry(
    predicate=gretry.if_exception_type(
        gexc.ServiceUnavailable,
        gexc.DeadlineExceeded,
        gexc.InternalServerError,
        gexc.ResourceExhausted,
        gexc.Aborted,
    ),
    initial=0.1,
    maximum=2.0,
    multiplier=2.0,
    timeout=15.0,
)
ACCESS_TIMEOUT_SECONDS = 5.0

_PERMANENT = (gexc.NotFound, gexc.PermissionDenied, gexc.FailedPrecondition, gexc.InvalidArgument)


def crc32c(data: bytes) -> int:
    """CRC-32C, the checksum Secret Manager sends with each payload (google-crc32c, as Google's samples do)."""
    return google_crc32c.value(data)


class SecretManagerSecrets:
    """Secret Manager source, read once per secret and then served from memory.

    The client is created on first use (not at import) so a cold start that
    never needs a secret pays nothing, and reused afterwards. One lock guards
    the first read so concurrent requests on a new instance cause exactly one
    Secret Manager call per secret. Failures are not cached: a secret created
    or granted later is picked up on the next call.

    Permanent failures (missing secret, missing permission, disabled version)
    raise :class:`SecretUnavailable`. Transient ones are retried by the client
    with :data:`ACCESS_RETRY`; if they persist, the ``google.api_core``
    exception propagates so callers treat it like any other transient outage.
    """

    def __init__(
        self,
        settings: Settings,
        client_factory: Callable[[], SecretManagerServiceClient],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._twilio_name = secret_version_name(settings.twilio_auth_token_secret, settings.project_id)
        self._openai_name = secret_version_name(settings.openai_api_key_secret, settings.project_id)
        self._names = {
            TWILIO_AUTH_TOKEN: self._twilio_name,
            OPENAI_API_KEY: self._openai_name,
            ADDRESS_HASH_KEY: secret_version_name(settings.address_hash_key_secret, settings.project_id),
            CALLER_KEY: secret_version_name(settings.caller_key_secret, settings.project_id),
            INBOX_SESSION_KEY: secret_version_name(settings.inbox_session_key_secret, settings.project_id),
        }
        self._project_id = settings.project_id
        self._client_factory = client_factory
        self._client: SecretManagerServiceClient | None = None
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._refresh_interval = settings.secret_refresh_interval_seconds
        self._overlap = settings.secret_overlap_seconds
        self._refreshed_at: dict[str, float] = {}
        self._previous: dict[str, tuple[str, float]] = {}
        self.access_count = 0

    @property
    def resource_names(self) -> tuple[str, str]:
        """The version names in use (Twilio, OpenAI); handy for start-up logs."""
        return self._twilio_name, self._openai_name

    def twilio_auth_token(self) -> str:
        return self._get(self._twilio_name)

    def openai_api_key(self) -> str:
        return self._get(self._openai_name)

    def address_hash_key(self) -> str:
        return self._get(self._names[ADDRESS_HASH_KEY])

    def caller_key(self) -> str:
        return self._get(self._names[CALLER_KEY])

    def inbox_session_key(self) -> str:
        return self._get(self._names[INBOX_SESSION_KEY])

    def refresh(self, name: str) -> bool:
        return self._refresh(self._names[name])

    def previous(self, name: str) -> str | None:
        return self._previous_of(self._names[name])

    def tool_secret(self, secret_id: str) -> str:
        return self._get(self._tool_resource(secret_id))

    def refresh_tool_secret(self, secret_id: str) -> bool:
        return self._refresh(self._tool_resource(secret_id))

    def previous_tool_secret(self, secret_id: str) -> str | None:
        return self._previous_of(self._tool_resource(secret_id))

    def _tool_resource(self, secret_id: str) -> str:
        """The latest version of the tool's secret, in this deployment's project."""
        return secret_version_name(secret_id, self._project_id)

    def _refresh(self, resource: str) -> bool:
        with self._lock:
            now = self._clock()
            last = self._refreshed_at.get(resource)
            if last is not None and now - last < self._refresh_interval:
                return False
            self._refreshed_at[resource] = now
            value = self._access(resource)
            old = self._cache.get(resource)
            self._cache[resource] = value
            if old is None or old == value:
                return old is None
            self._previous[resource] = (old, now)
        _log.warning("secret changed; the previous value stays accepted for the overlap",
                     extra={"event": "secret_rotated", "secret": resource, "overlap_seconds": self._overlap})
        return True

    def _previous_of(self, resource: str) -> str | None:
        kept = self._previous.get(resource)
        if kept is None or self._clock() - kept[1] > self._overlap:
            return None
        return kept[0]

    def _get(self, resource: str) -> str:
        cached = self._cache.get(resource)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._cache.get(resource)
            if cached is not None:
                return cached
            value = self._access(resource)
            self._cache[resource] = value
            return value

    def _access(self, resource: str) -> str:
        if self._client is None:
            self._client = self._client_factory()
        self.access_count += 1
        try:
            response = self._client.access_secret_version(
                request={"name": resource},
                retry=ACCESS_RETRY,
                timeout=ACCESS_TIMEOUT_SECONDS,
            )
        except _PERMANENT as err:
            code = err.grpc_status_code.name if err.grpc_status_code is not None else type(err).__name__
            raise SecretUnavailable(
                f"Secret Manager refused {resource} ({code}); "
                "create the secret with a version, or grant roles/secretmanager.secretAccessor "
                "to the runtime service account"
            ) from None
        data: bytes = response.payload.data
        if "data_crc32c" in response.payload and crc32c(data) != response.payload.data_crc32c:
            raise SecretUnavailable(f"Secret Manager payload for {resource} failed its CRC32C check")
        try:
            value = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise SecretUnavailable(f"the payload of {resource} is not UTF-8 text") from None
        if not value:
            raise SecretUnavailable(f"the payload of {resource} is empty; add a version with the real value")
        _log.info("secret loaded", extra={"secret": resource, "version": response.name})
        return value


def _default_client_factory() -> SecretManagerServiceClient:
    from google.cloud.secretmanager_v1 import SecretManagerServiceClient

    return SecretManagerServiceClient()


def emulator_client(address: str) -> SecretManagerServiceClient:
    """A real client over a plaintext channel to a local Secret Manager stand-in (SECRET_MANAGER_EMULATOR_HOST)."""
    import grpc
    from google.cloud.secretmanager_v1 import SecretManagerServiceClient
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
        SecretManagerServiceGrpcTransport,
    )

    return SecretManagerServiceClient(transport=SecretManagerServiceGrpcTransport(channel=grpc.insecure_channel(address)))


def build_secrets(
    settings: Settings,
    client_factory: Callable[[], SecretManagerServiceClient] | None = None,
) -> Secrets:
    """The secrets source ``settings.secret_source`` asks for.

    Secret names are validated here, so a malformed reference fails at
    start-up. ``client_factory`` lets tests and the dev stack point the real
    client at a stand-in.
    """
    if settings.secret_source == "env":
        return EnvSecrets(settings)
    if settings.secret_source == "secretmanager":
        if client_factory is None and settings.secret_manager_emulator_host:
            client_factory = functools.partial(emulator_client, settings.secret_manager_emulator_host)
        return SecretManagerSecrets(settings, client_factory or _default_client_factory)
    raise ConfigError(f"SECRET_SOURCE must be env or secretmanager, got {settings.secret_source!r}")
