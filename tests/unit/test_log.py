"""JSON log lines for Cloud Logging, request traces, and masked sender addresses."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone
from typing import Any, Iterator

import pytest

from shared.log import JsonFormatter, configure, mask_address, scrub, set_trace, trace_from_headers

TRACE_KEY = "logging.googleapis.com/trace"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture(autouse=True)
def no_trace() -> Iterator[None]:
    set_trace(None, "p")
    yield
    set_trace(None, "p")


def emit(caplog: pytest.LogCaptureFixture, level: int, message: str, *args: object, **kwargs: Any) -> dict[str, Any]:
    """Log through a real logger and return the formatted line, parsed."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="test.log"):
        logging.getLogger("test.log").log(level, message, *args, **kwargs)
    [record] = caplog.records
    line = JsonFormatter().format(record)
    assert "\n" not in line, "one entry per line"
    return json.loads(line)


def test_basic_fields(caplog: pytest.LogCaptureFixture) -> None:
    before = datetime.now(timezone.utc)
    entry = emit(caplog, logging.WARNING, "hello %s", "world")
    assert entry["severity"] == "WARNING"
    assert entry["message"] == "hello world"
    assert entry["logger"] == "test.log"
    when = datetime.fromisoformat(entry["time"])
    assert when.tzinfo is not None
    assert abs((when - before).total_seconds()) < 60
    assert TRACE_KEY not in entry
    assert "stack_trace" not in entry
    for internal in ("msg", "args", "levelname", "pathname", "exc_info", "created", "thread"):
        assert internal not in entry


@pytest.mark.parametrize(
    ("level", "severity"),
    [(logging.DEBUG, "DEBUG"), (logging.INFO, "INFO"), (logging.ERROR, "ERROR"), (logging.CRITICAL, "CRITICAL")],
)
def test_severity_names(caplog: pytest.LogCaptureFixture, level: int, severity: str) -> None:
    assert emit(caplog, level, "x")["severity"] == severity


def test_extra_fields_are_kept(caplog: pytest.LogCaptureFixture) -> None:
    when = datetime(2026, 11, 23, tzinfo=timezone.utc)
    entry = emit(
        caplog, logging.INFO, "sent", extra={"event": "sent", "seq": 3, "parts": ["a"], "at": when, "fallback": False}
    )
    assert entry["event"] == "sent"
    assert entry["seq"] == 3
    assert entry["parts"] == ["a"]
    assert entry["at"] == str(when)
    assert entry["fallback"] is False


def test_non_ascii_is_written_as_is(caplog: pytest.LogCaptureFixture) -> None:
    entry = emit(caplog, logging.INFO, "¿qué tal? 👋")
    assert entry["message"] == "¿qué tal? 👋"


def test_trace_from_cloud_trace_context(caplog: pytest.LogCaptureFixture) -> None:
    set_trace(f"{TRACE_ID}/1;o=1", "my-project")
    assert emit(caplog, logging.INFO, "x")[TRACE_KEY] == f"projects/my-project/traces/{TRACE_ID}"


def test_trace_from_traceparent(caplog: pytest.LogCaptureFixture) -> None:
    set_trace(f"00-{TRACE_ID}-00f067aa0ba902b7-01", "my-project")
    assert emit(caplog, logging.INFO, "x")[TRACE_KEY] == f"projects/my-project/traces/{TRACE_ID}"


@pytest.mark.parametrize("header", [None, "", "garbage", "a-b"])
def test_no_or_unreadable_trace_header_clears_the_trace(caplog: pytest.LogCaptureFixture, header: str | None) -> None:
    set_trace(f"{TRACE_ID}/1;o=1", "my-project")
    set_trace(header, "my-project")
    assert TRACE_KEY not in emit(caplog, logging.INFO, "x")


def test_trace_from_headers_prefers_the_cloud_header() -> None:
    assert trace_from_headers({"X-Cloud-Trace-Context": "a/1", "traceparent": "00-b-c-01"}) == "a/1"
    assert trace_from_headers({"traceparent": "00-b-c-01"}) == "00-b-c-01"
    assert trace_from_headers({}) is None


def test_exceptions_get_a_stack_trace(caplog: pytest.LogCaptureFixture) -> None:
    try:
        raise KeyError("missing-thing")
    except KeyError:
        entry = emit(caplog, logging.ERROR, "failed", exc_info=True)
    assert "Traceback" in entry["stack_trace"]
    assert "KeyError: 'missing-thing'" in entry["stack_trace"]
    assert entry["severity"] == "ERROR"


def test_configure_routes_the_root_logger_to_stdout_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    noisy = logging.getLogger("urllib3")
    saved_noisy = noisy.level
    try:
        configure("DEBUG")
        configure("WARNING")
        json_handlers = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]
        assert len(json_handlers) == 1, "configure is idempotent"
        assert root.level == logging.WARNING
        assert getattr(json_handlers[0], "stream", None) is sys.stdout
        assert noisy.level == logging.WARNING
        logging.getLogger("test.configure").warning("to stdout", extra={"event": "check"})
        line = capsys.readouterr().out.strip().splitlines()[-1]
        assert json.loads(line)["event"] == "check"
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        noisy.setLevel(saved_noisy)


ADDRESSES = [
    "whatsapp:+34600111222",
    "whatsapp:+34600111223",
    "whatsapp:+14155238886",
    "whatsapp:+447700900123",
    "+34600111222",
    "whatsapp:bsuid.AB12cd34",
]


@pytest.mark.parametrize("address", ADDRESSES)
def test_mask_address_shows_no_digit_of_the_number(address: str) -> None:
    masked = mask_address(address)
    visible, _, digest = masked.partition("#")
    assert re.fullmatch(r"[0-9a-f]{10}", digest)
    assert not re.search(r"\d", visible)
    assert masked == mask_address(address), "stable"


def test_mask_address_keeps_the_channel() -> None:
    assert mask_address("whatsapp:+34600111222").startswith("whatsapp:#")
    assert mask_address("+34600111222").startswith("#")


def test_mask_address_differs_per_address() -> None:
    masks = {mask_address(a) for a in ADDRESSES}
    assert len(masks) == len(ADDRESSES)
    # Same last three digits, different people: the digest tells them apart.
    assert mask_address("whatsapp:+34600111222") != mask_address("whatsapp:+34699999222")


def test_scrub_replaces_the_address_and_its_bare_number() -> None:
    address = "whatsapp:+34600111222"
    text = f"The 'To' number {address} is invalid; +34600111222 / 34600111222 too"
    cleaned = scrub(text, address)
    assert "600111" not in cleaned
    assert cleaned.count(mask_address(address)) == 3
    assert scrub("nothing to hide", address) == "nothing to hide"
    assert scrub("text", "") == "text"
