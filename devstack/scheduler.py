"""Cloud Scheduler's part locally: call the reconciler on a fixed interval.

In the cloud a Cloud Scheduler job POSTs to the reconciler every minute
(terraform/scheduler.tf); the local stack does the same from a daemon thread,
so a stalled message is finished locally exactly as it would be there.
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, url: str, interval_seconds: float) -> None:
        self._url = url
        self._interval = interval_seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reconcile-scheduler", daemon=True)
        self.runs = 0

    def start(self) -> "Scheduler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            request = urllib.request.Request(self._url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=max(5.0, self._interval)) as response:
                    response.read()
                self.runs += 1
            except (urllib.error.URLError, OSError) as exc:
                # Like a Scheduler job whose target is down: logged, tried again next time.
                log.warning("reconciler call failed: %s", exc)
