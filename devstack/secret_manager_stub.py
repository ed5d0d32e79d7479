"""A Secret Manager stand-in for local runs and tests.

Google ships no Secret Manager emulator. This serves the real
``google.cloud.secretmanager.v1.SecretManagerService`` gRPC API on 127.0.0.1,
so the official ``SecretManagerServiceClient`` (with an insecure channel)
talks to it unchanged and ``shared.adapters.secret_manager`` is exercised end to end.

Covered: CreateSecret, GetSecret, AddSecretVersion, AccessSecretVersion
(``latest`` and numeric versions, CRC32C in the payload), NOT_FOUND /
ALREADY_EXISTS / INVALID_ARGUMENT as the real service returns them, and a
count of AccessSecretVersion calls so tests and benchmarks can prove caching.
``fail_next`` makes the next calls fail with a chosen code, to test retries.

Not covered: IAM (every caller may read everything), disabling/destroying
versions, replication, rotation, labels/annotations, etags, listing, and
project numbers (names must use the project id given at construction).
State is in memory and lost on stop.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc
from google.cloud.secretmanager_v1 import types as sm

from devstack._grpc import GrpcStandIn, Unary, fail, run_until_signalled
from shared.adapters.secret_manager import crc32c

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
MAX_PAYLOAD_BYTES = 64 * 1024

_ID = r"[A-Za-z0-9_-]{1,255}"
_PROJECT = re.compile(r"projects/(?P<project>[^/]+)")
_SECRET = re.compile(rf"projects/(?P<project>[^/]+)/secrets/(?P<secret>{_ID})")
_VERSION = re.compile(rf"projects/(?P<project>[^/]+)/secrets/(?P<secret>{_ID})/versions/(?P<version>[^/]+)")


@dataclass
class _Secret:
    created: datetime
    versions: list[tuple[bytes, datetime]] = field(default_factory=list)


def _now() -> datetime:
    return datetime.now(UTC)


class SecretManagerStub(GrpcStandIn):
    """In-memory Secret Manager reachable through the real client.

    ``secrets`` maps secret ids to values; each becomes version 1 of
    ``projects/{project}/secrets/{id}``. ``start()`` returns ``127.0.0.1:PORT``.
    """

    service = SERVICE
    max_workers = 4

    def __init__(self, secrets: dict[str, str] | None = None, project: str = "local-project", port: int = 0) -> None:
        super().__init__(port)
        self.project = project
        self._lock = threading.Lock()
        self._secrets: dict[str, _Secret] = {}
        self._access_count = 0
        self._faults: list[grpc.StatusCode] = []
        for name, value in (secrets or {}).items():
            self.set_secret(name, value)

    @property
    def access_count(self) -> int:
        """AccessSecretVersion calls received, failed ones included."""
        with self._lock:
            return self._access_count

    def _methods(self) -> Mapping[str, Unary]:
        return {
            "AccessSecretVersion": Unary(self._access, sm.AccessSecretVersionRequest, sm.AccessSecretVersionResponse),
            "CreateSecret": Unary(self._create_secret, sm.CreateSecretRequest, sm.Secret),
            "AddSecretVersion": Unary(self._add_version, sm.AddSecretVersionRequest, sm.SecretVersion),
            "GetSecret": Unary(self._get_secret, sm.GetSecretRequest, sm.Secret),
        }

    def set_secret(self, name: str, value: str) -> str:
        """Add a version with ``value``, creating the secret if needed; returns the version name.

        ``name`` is a secret id or ``projects/{project}/secrets/{id}``.
        """
        secret_id = self._secret_id(name)
        with self._lock:
            secret = self._secrets.setdefault(secret_id, _Secret(created=_now()))
            secret.versions.append((value.encode("utf-8"), _now()))
            return f"{self._secret_name(secret_id)}/versions/{len(secret.versions)}"

    def fail_next(self, code: grpc.StatusCode, times: int = 1) -> None:
        """Fail the next ``times`` AccessSecretVersion calls with ``code`` (to test retries)."""
        with self._lock:
            self._faults.extend([code] * times)

    def _secret_id(self, name: str) -> str:
        match = _SECRET.fullmatch(name)
        if match:
            if match["project"] != self.project:
                raise ValueError(f"{name} is not in project {self.project}")
            return match["secret"]
        if re.fullmatch(_ID, name):
            return name
        raise ValueError(f"invalid secret name {name!r}")

    def _secret_name(self, secret_id: str) -> str:
        return f"projects/{self.project}/secrets/{secret_id}"

    def _lookup(self, name: str, pattern: re.Pattern[str]) -> tuple[re.Match[str], _Secret]:
        """Parse ``name`` and find its secret; caller holds the lock."""
        match = pattern.fullmatch(name)
        if not match:
            fail(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid resource field value in the request: {name!r}")
        secret = self._secrets.get(match["secret"]) if match["project"] == self.project else None
        if secret is None:
            fail(
                grpc.StatusCode.NOT_FOUND,
                f"Secret [{self._secret_name(match['secret'])}] not found or has no versions.",
            )
        return match, secret

    def _access(self, request: sm.AccessSecretVersionRequest) -> sm.AccessSecretVersionResponse:
        with self._lock:
            self._access_count += 1
            if self._faults:
                code = self._faults.pop(0)
                fail(code, f"injected {code.name}")
            match, secret = self._lookup(request.name, _VERSION)
            version = match["version"]
            if version == "latest":
                number = len(secret.versions)
            elif version.isdigit() and int(version) > 0:
                number = int(version)
            else:
                fail(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid version id {version!r}")
            if not 1 <= number <= len(secret.versions):
                fail(grpc.StatusCode.NOT_FOUND, f"Secret Version [{request.name}] not found.")
            data = secret.versions[number - 1][0]
        return sm.AccessSecretVersionResponse(
            name=f"{self._secret_name(match['secret'])}/versions/{number}",
            payload=sm.SecretPayload(data=data, data_crc32c=crc32c(data)),
        )

    def _create_secret(self, request: sm.CreateSecretRequest) -> sm.Secret:
        parent = _PROJECT.fullmatch(request.parent)
        if not parent or not re.fullmatch(_ID, request.secret_id):
            fail(grpc.StatusCode.INVALID_ARGUMENT, "parent must be projects/PROJECT and secret_id [A-Za-z0-9_-]{1,255}")
        if parent["project"] != self.project:
            fail(grpc.StatusCode.NOT_FOUND, f"Project {parent['project']} not found.")
        with self._lock:
            if request.secret_id in self._secrets:
                fail(grpc.StatusCode.ALREADY_EXISTS, f"Secret [{self._secret_name(request.secret_id)}] already exists.")
            secret = self._secrets[request.secret_id] = _Secret(created=_now())
        return self._secret_message(request.secret_id, secret, request.secret)

    def _add_version(self, request: sm.AddSecretVersionRequest) -> sm.SecretVersion:
        data = request.payload.data
        if len(data) > MAX_PAYLOAD_BYTES:
            fail(grpc.StatusCode.INVALID_ARGUMENT, "Secret payload exceeds 64 KiB.")
        if "data_crc32c" in request.payload and request.payload.data_crc32c != crc32c(data):
            fail(grpc.StatusCode.INVALID_ARGUMENT, "Checksum mismatch for the secret payload.")
        with self._lock:
            match, secret = self._lookup(request.parent, _SECRET)
            created = _now()
            secret.versions.append((data, created))
            number = len(secret.versions)
        return sm.SecretVersion(
            name=f"{self._secret_name(match['secret'])}/versions/{number}",
            create_time=created,
            state=sm.SecretVersion.State.ENABLED,
            client_specified_payload_checksum="data_crc32c" in request.payload,
        )

    def _get_secret(self, request: sm.GetSecretRequest) -> sm.Secret:
        with self._lock:
            match, secret = self._lookup(request.name, _SECRET)
        return self._secret_message(match["secret"], secret, None)

    def _secret_message(self, secret_id: str, secret: _Secret, template: sm.Secret | None) -> sm.Secret:
        message = sm.Secret(template) if template is not None else sm.Secret()
        message.name = self._secret_name(secret_id)
        message.create_time = secret.created
        if "replication" not in message:
            message.replication = sm.Replication(automatic=sm.Replication.Automatic())
        return message


def main(argv: list[str] | None = None) -> int:
    """``python -m devstack.secret_manager_stub``: prints ``READY 127.0.0.1:PORT`` once serving."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--project", default="local-project")
    parser.add_argument(
        "--secret-env",
        action="append",
        default=[],
        metavar="ID=VAR",
        help="preload secret ID with the value of environment variable VAR (repeatable); "
        "values are never passed on the command line",
    )
    args = parser.parse_args(argv)
    secrets: dict[str, str] = {}
    for item in args.secret_env:
        secret_id, _, var = item.partition("=")
        if not var or not os.environ.get(var):
            parser.error(f"--secret-env {item!r}: expected ID=VAR with VAR set in the environment")
        secrets[secret_id] = os.environ[var]
    return run_until_signalled(SecretManagerStub(secrets, project=args.project, port=args.port))


if __name__ == "__main__":
    sys.exit(main())
