"""Structured JSON logs that Cloud Logging understands.

Cloud Run forwards each stdout line; a JSON line with ``severity`` and
``message`` becomes a structured entry, and ``logging.googleapis.com/trace``
ties it to the request's trace. Phone numbers and WhatsApp ids never appear in
a log: callers log :func:`mask_address` or the conversation id instead.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import sys
from datetime import datetime, timezone
from typing import Any, Mapping

from shared.domain.pseudonyms import Pseudonyms

_trace: contextvars.ContextVar[str] = contextvars.ContextVar("trace", default="")
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def set_trace(trace_header: str | None, project_id: str) -> None:
    """Remember the request's trace id (from X-Cloud-Trace-Context or traceparent)."""
    trace_id = ""
    if trace_header:
        if "/" in trace_header:  # X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1
            trace_id = trace_header.split("/", 1)[0]
        elif trace_header.count("-") == 3:  # W3C traceparent: 00-TRACE_ID-SPAN_ID-FLAGS
            trace_id = trace_header.split("-")[1]
    _trace.set(f"projects/{project_id}/traces/{trace_id}" if trace_id else "")


def trace_from_headers(headers: Mapping[str, str]) -> str | None:
    return headers.get("X-Cloud-Trace-Context") or headers.get("traceparent")


# Until the composition root installs the deployment's key, masks are keyed
# with a random key of this process: still one-way, just not comparable
# across processes.
_pseudonyms = Pseudonyms(secrets.token_bytes(32))


def use_pseudonyms(pseudonyms: Pseudonyms) -> None:
    """Mask addresses with the deployment's key (shared/bootstrap.py, once per process)."""
    global _pseudonyms
    _pseudonyms = pseudonyms


def mask_address(address: str) -> str:
    """A stable, keyed, one-way label for a sender: ``whatsapp:#3f9c0a71d2``.

    Enough to tell users apart in logs and support tickets, never the number
    (shared/domain/pseudonyms.py).
    """
    return _pseudonyms.mask(address)


def scrub(text: str, address: str) -> str:
    """``text`` with ``address`` (and its bare number) replaced by its mask.

    For text we do not control, such as an error message from an SDK or an
    API, which may quote the address it was given.
    """
    if not address:
        return text
    masked = mask_address(address)
    bare = address.rpartition(":")[2]
    variants = {address, bare, bare.lstrip("+")}
    for variant in sorted((v for v in variants if len(v) > 3), key=len, reverse=True):
        text = text.replace(variant, masked)
    return text


# API keys as providers quote them back in errors ("Incorrect API key
# provided: sk-proj-****abcd"), even partly masked; Twilio auth tokens are 32 hex.
_CREDENTIALS = re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_*\-]{3,}|\b[0-9a-f]{32}\b")


def redact_credentials(text: str) -> str:
    """``text`` with anything shaped like an API key or an auth token replaced."""
    return _CREDENTIALS.sub("[redacted]", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields passed with ``extra=`` are kept."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname if record.levelname != "WARN" else "WARNING",
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "logger": record.name,
        }
        trace = _trace.get()
        if trace:
            entry["logging.googleapis.com/trace"] = trace
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str = "INFO") -> None:
    """Route all logging to stdout as JSON; idempotent, called by each entry point."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "httpx", "httpx2", "httpcore", "httpcore2", "openai", "twilio.http_client", "google.auth"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
