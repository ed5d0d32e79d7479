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
import logging
import threading
import urllib.error
import urllib.request

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

    def request(self) -> urllib.request.Request:
        """One attempt of the job, as Cloud Scheduler sends it."""
        job = self._job
        headers = {
            **job.headers,
            "User-Agent": "Google-Cloud-Scheduler",
            "X-CloudScheduler": "true",
            "X-CloudScheduler-JobName": self._job_name,
            "X-CloudScheduler-ScheduleTime": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "Authorization": f"Bearer {self._issuer.mint(job.service_account, job.audience)}",
            **self._origin.headers(),
        }
        return urllib.request.Request(job.uri, data=b"" if job.method in ("POST", "PUT", "PATCH") else None,
                                      method=job.method, headers=headers)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                with urllib.request.urlopen(self.request(), timeout=self._job.attempt_deadline_seconds) as response:
                    response.read()
                self.runs += 1
            except urllib.error.HTTPError as exc:
                self.failures += 1
                log.warning("reconcile job attempt failed with %s", exc.code)
            except (urllib.error.URLError, OSError) as exc:
                # Like a Scheduler job whose target is down: logged, tried again next time.
                self.failures += 1
                log.warning("reconcile job attempt failed: %s", exc)
