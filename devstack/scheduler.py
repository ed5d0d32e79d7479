"""Cloud Scheduler's part locally: call the reconciler on a fixed interval, as the job Terraform declares.

In the cloud a Cloud Scheduler job POSTs to the reconciler every minute
(terraform/scheduler.tf) with an OIDC token of the scheduler identity, the
job's own headers (the caller key) and Cloud Scheduler's ``User-Agent:
Google-Cloud-Scheduler``, ``X-CloudScheduler: true``,
``X-CloudScheduler-JobName`` and ``X-CloudScheduler-ScheduleTime``; an attempt
that takes longer than the job's attempt deadline is abandoned. The local
stack does the same from a daemon thread, with the job rendered from the HCL
(devstack/terraform_env.py), so a stalled message is finished locally
exactly as it would be there. The interval is shorter in tests.
"""

from __future__ import annotations

import datetime as dt
import http.client
import logging
import threading
from urllib.parse import urlsplit

from devstack.cloud_run import Origin
from devstack.terraform_env import Job
from devstack.token_issuer import TokenIssuer

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, job: Job, interval_seconds: float, issuer: TokenIssuer, origin: Origin,
                 job_name: str = "reconcile") -> None:
        self._job = job
        self._interval = interval_seconds
        self._issuer = issuer
        self._origin = origin
        self._job_name = job_name
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reconcile-scheduler", daemon=True)
        self.runs = 0
        self.failures = 0

    def start(self) -> "Scheduler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def headers(self) -> dict[str, str]:
        """One attempt's headers, as Cloud Scheduler sends them (no body, so no Content-Type)."""
        job = self._job
        return {
            **job.headers,
            "User-Agent": "Google-Cloud-Scheduler",
            "X-CloudScheduler": "true",
            "X-CloudScheduler-JobName": self._job_name,
            "X-CloudScheduler-ScheduleTime": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Authorization": f"Bearer {self._issuer.mint(job.service_account, job.audience)}",
            **self._origin.headers(),
        }

    def _attempt(self) -> int:
        target = urlsplit(self._job.uri)
        connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port,
                                                timeout=self._job.attempt_deadline_seconds)
        try:
            body = b"" if self._job.method in ("POST", "PUT", "PATCH") else None
            connection.request(self._job.method, target.path or "/", body=body, headers=self.headers())
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                status = self._attempt()
            except (OSError, http.client.HTTPException) as exc:
                # Like a Scheduler job whose target is down: logged, tried again next time.
                self.failures += 1
                log.warning("reconcile job attempt failed: %s", exc)
                continue
            if 200 <= status < 300:
                self.runs += 1
            else:
                self.failures += 1
                log.warning("reconcile job attempt failed with %s", status)
