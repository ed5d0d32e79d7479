"""Start and stop the official Google Firestore and Pub/Sub emulators reliably.

Each emulator is a process tree (gcloud -> bash -> java). Killing only the
gcloud process leaves java listening on the port, so every emulator runs in
its own process group and is stopped by signalling the whole group. The
groups are started with ``devstack.lifecycle.spawn``, so they also go away
when the process that started them dies without stopping them.

``python -m devstack.emulators check`` lists missing prerequisites (exit 1 if any).
``python -m devstack.emulators run [--project P]`` starts both and prints their env.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import IO, Iterable, Self, Sequence

from devstack.lifecycle import live_group_members, spawn, stop_groups

HOST = "127.0.0.1"
COMPONENTS_HINT = (
    "install them with `gcloud components install cloud-firestore-emulator pubsub-emulator beta`, "
    "or, when the Google Cloud CLI came from apt, "
    "`sudo apt-get install google-cloud-cli-firestore-emulator google-cloud-cli-pubsub-emulator`"
)
# Files each component puts under <sdk root>/platform; cheaper than `gcloud components list`.
COMPONENT_FILES = {
    "cloud-firestore-emulator": ("cloud-firestore-emulator/cloud-firestore-emulator.jar",),
    "pubsub-emulator": ("pubsub-emulator/bin/cloud-pubsub-emulator",),
}
MIN_JAVA = 11
MIN_PYTHON = (3, 11)
# Text in an emulator log meaning its port was taken between free_port() and bind.
PORT_TAKEN = re.compile(r"Address already in use|BindException|port .* in use", re.IGNORECASE)
LOG_TAIL_LINES = 30


class EmulatorError(RuntimeError):
    """An emulator could not be started; the message carries its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _sdk_root(gcloud: str) -> Path | None:
    """The Cloud SDK root, from the gcloud symlink first and ``gcloud info`` only if needed."""
    guess = Path(os.path.realpath(gcloud)).parent.parent
    if (guess / "platform").is_dir():
        return guess
    try:
        out = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    root = out.stdout.strip()
    return Path(root) if out.returncode == 0 and root else None


def java_major_version(java: str) -> int | None:
    """The major version of ``java``, reading both "1.8.0_x" and "17.0.2" styles."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        major = int(match.group(2))
    return major


def check_prerequisites() -> list[str]:
    """Human-readable problems that would stop the emulators from starting; empty when fine."""
    problems: list[str] = []
    if sys.version_info < MIN_PYTHON:
        problems.append(
            f"Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]}+ is required, this is {sys.version.split()[0]}."
        )
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        problems.append(
            "gcloud is not on PATH: install the Google Cloud CLI "
            "(https://cloud.google.com/sdk/docs/install, or the apt package google-cloud-cli), "
            "then the emulators: " + COMPONENTS_HINT + "."
        )
    else:
        root = _sdk_root(gcloud)
        if root is None:
            problems.append("Could not find the Google Cloud CLI installation directory (`gcloud info` failed).")
        else:
            missing = [
                name
                for name, files in COMPONENT_FILES.items()
                if not all((root / "platform" / f).exists() for f in files)
            ]
            manifests = root / ".install"
            if manifests.is_dir() and not (manifests / "beta.manifest").exists():
                missing.append("beta")
            if missing:
                problems.append(f"Missing gcloud components {', '.join(missing)}: {COMPONENTS_HINT}.")
    java = shutil.which("java")
    if java is None:
        problems.append("java is not on PATH: the emulators need Java 11+; install Java 17 (e.g. openjdk-17-jre-headless).")
    else:
        major = java_major_version(java)
        if major is None:
            problems.append("Could not read the Java version from `java -version`; install Java 17.")
        elif major < MIN_JAVA:
            problems.append(f"Java {major} is too old: the emulators need Java 11+; install Java 17.")
    return problems


class Emulator:
    """One emulator process group, bound to 127.0.0.1 on its own port."""

    name = "emulator"

    def __init__(self, project: str, port: int | None = None, log_path: str | Path | None = None) -> None:
        self.project = project
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self._log_path_given = log_path is not None
        self.log_path: Path | None = Path(log_path) if log_path is not None else None
        self._log_file: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._hurry = threading.Event()

    @property
    def host(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pgid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        raise NotImplementedError

    def start(self, timeout: float = 60) -> Self:
        """Start and wait until the emulator answers "Ok"; retry on a new port if the port was taken."""
        deadline = time.monotonic() + timeout
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            try:
                self._launch()
                self._wait_ready(deadline)
                return self
            except EmulatorError as exc:
                tail = self.log_tail()
                self._stop(grace_seconds=2.0, keep_log=True)
                if attempt + 1 < attempts and PORT_TAKEN.search(tail) and time.monotonic() < deadline:
                    self.port = free_port()
                    continue
                raise EmulatorError(f"{exc}\n--- last lines of {self.log_path} ---\n{tail}") from None
        raise EmulatorError(f"{self.name} emulator did not start")

    def _launch(self) -> None:
        with self._lock:
            if self._process is not None:
                raise EmulatorError(f"{self.name} emulator already started")
            if self.log_path is None:
                handle, path = tempfile.mkstemp(prefix=f"{self.name}-emulator-", suffix=".log")
                os.close(handle)
                self.log_path = Path(path)
            self._log_file = open(self.log_path, "wb")
            env = {**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
            self._process = spawn(
                self.command(), env=env, stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT
            )

    def _wait_ready(self, deadline: float) -> None:
        url = f"http://{self.host}/"
        while True:
            process = self._process
            if process is None:
                raise EmulatorError(f"{self.name} emulator was stopped while starting")
            code = process.poll()
            if code is not None:
                raise EmulatorError(f"{self.name} emulator exited with code {code} before it was ready")
            # The Pub/Sub JVM keeps running after a failed bind, so the log is the only signal.
            if PORT_TAKEN.search(self.log_tail()):
                raise EmulatorError(f"{self.name} emulator could not bind {self.host}: port already in use")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200 and response.read().strip().startswith(b"Ok"):
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() >= deadline:
                raise EmulatorError(f"{self.name} emulator not ready on {self.host} in time")
            time.sleep(0.1)

    def is_running(self) -> bool:
        pgid = self.pgid
        return pgid is not None and bool(live_group_members(pgid))

    def stop(self, grace_seconds: float = 5.0) -> None:
        """SIGTERM the whole group, wait, then SIGKILL what is left; safe to call twice."""
        self._stop(grace_seconds, keep_log=False)

    def hurry(self) -> None:
        """Make a stop in progress (or the next one) skip the grace period and SIGKILL."""
        self._hurry.set()

    def _stop(self, grace_seconds: float, keep_log: bool) -> None:
        with self._lock:
            process, self._process = self._process, None
            log_file, self._log_file = self._log_file, None
        if process is not None:
            stop_groups([process], grace_seconds, self._hurry)
        if log_file is not None:
            log_file.close()
        if not keep_log and not self._log_path_given and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        if self.log_path is None:
            return ""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        if self._process is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class FirestoreEmulator(Emulator):
    """The Firestore emulator in native mode; ``reset()`` empties it between tests."""

    name = "firestore"

    def command(self) -> list[str]:
        return ["gcloud", "beta", "emulators", "firestore", "start", f"--host-port={self.host}"]

    def env(self) -> dict[str, str]:
        return {"FIRESTORE_EMULATOR_HOST": self.host}

    def reset(self, database: str = "(default)", timeout: float = 10) -> None:
        """Delete every document of ``project``/``database`` through the emulator's own endpoint."""
        url = f"http://{self.host}/emulator/v1/projects/{self.project}/databases/{database}/documents"
        request = urllib.request.Request(url, method="DELETE")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status != 200:
                raise EmulatorError(f"Firestore reset answered HTTP {response.status}")


class PubSubEmulator(Emulator):
    """The Pub/Sub emulator for one project."""

    name = "pubsub"

    def command(self) -> list[str]:
        return [
            "gcloud", "beta", "emulators", "pubsub", "start",
            f"--host-port={self.host}", f"--project={self.project}",
        ]

    def env(self) -> dict[str, str]:
        return {"PUBSUB_EMULATOR_HOST": self.host, "PUBSUB_PROJECT_ID": self.project}


def start_all(emulators: Iterable[Emulator], timeout: float = 60) -> list[Emulator]:
    """Start emulators in parallel (their JVMs boot concurrently); on any failure stop them all."""
    items = list(emulators)
    if not items:
        return []
    pool = ThreadPoolExecutor(max_workers=len(items))
    try:
        futures = [pool.submit(e.start, timeout) for e in items]
        errors = [f.exception() for f in futures]
    except BaseException:
        # Interrupted (Ctrl-C) while they boot: stopping them ends the starts waiting for them.
        for emulator in items:
            emulator.hurry()
        stop_all(items)
        raise
    finally:
        pool.shutdown(wait=True)
    failures = [e for e in errors if e is not None]
    if failures:
        for emulator in items:
            emulator.stop()
        raise failures[0]
    return items


def stop_all(emulators: Iterable[Emulator]) -> None:
    """Stop emulators in parallel; each stop is idempotent."""
    items = list(emulators)
    if not items:
        return
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        list(pool.map(lambda e: e.stop(), items))


def _run(project: str, timeout: float) -> int:
    emulators: Sequence[Emulator] = [FirestoreEmulator(project), PubSubEmulator(project)]
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        start_all(emulators, timeout)
        for emulator in emulators:
            for name, value in emulator.env().items():
                print(f"export {name}={value}", flush=True)
        print("READY", flush=True)
        while not done.wait(0.5):
            if not all(e.is_running() for e in emulators):
                print("an emulator exited", file=sys.stderr)
                return 1
        return 0
    finally:
        stop_all(emulators)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Google Firestore and Pub/Sub emulators for local work.")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("check", help="list missing prerequisites; exit 1 if any")
    run = sub.add_parser("run", help="start both emulators until interrupted")
    run.add_argument("--project", default="local-project")
    run.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args(argv)
    if args.action == "check":
        problems = check_prerequisites()
        for problem in problems:
            print(f"- {problem}")
        return 1 if problems else 0
    return _run(args.project, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
