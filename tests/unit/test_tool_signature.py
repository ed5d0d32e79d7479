"""The tool request's signature: what we send verifies with the few lines docs/features.md gives a business, and
nothing else does (another body, another key, an old timestamp, another secret)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from shared.domain.tool_signature import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signing_headers, verify

FEATURES = Path(__file__).resolve().parents[2] / "docs" / "features.md"
BODY = b'{"day":"friday","people":2,"time":"20:00"}'
KEY = "wa_" + "ab" * 20


def documented_check() -> Callable[[bytes, dict[str, str], bytes], bool]:
    """The business's verification exactly as the docs print it, executed."""
    section = FEATURES.read_text().split("#### Verifying a tool request", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code, "docs/features.md has no Python block under 'Verifying a tool request'"
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), "features.md", "exec"), namespace)  # the documentation's own code, from the repository
    return namespace["verified"]


def sent(secrets: list[str], body: bytes = BODY, key: str = KEY, at: float | None = None) -> dict[str, str]:
    return signing_headers(secrets, int(time.time() if at is None else at), key, body)


def test_the_documented_check_accepts_what_we_send() -> None:
    headers = sent(["s3cret"])
    assert set(headers) == {KEY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER}
    assert re.fullmatch(r"v1=[0-9a-f]{64}", headers[SIGNATURE_HEADER])
    assert documented_check()(b"s3cret", headers, BODY)
    assert verify("s3cret", {k.lower(): v for k, v in headers.items()}, BODY, time.time()) == ""


@pytest.mark.parametrize(("secret", "headers", "body", "why"), [
    (b"s3cret", lambda: sent(["s3cret"]), BODY.replace(b"2", b"9"), "signature does not match"),
    (b"s3cret", lambda: {**sent(["s3cret"]), KEY_HEADER: "wa_other"}, BODY, "signature does not match"),
    (b"other", lambda: sent(["s3cret"]), BODY, "signature does not match"),
    (b"s3cret", lambda: sent(["s3cret"], at=time.time() - 301), BODY, "more than 300s from now"),
    (b"s3cret", lambda: {**sent(["s3cret"]), SIGNATURE_HEADER: ""}, BODY, "signature does not match"),
])
def test_anything_changed_is_refused(secret: bytes, headers: Callable[[], dict[str, str]], body: bytes, why: str) -> None:
    given = headers()
    assert not documented_check()(secret, given, body)
    assert why in verify(secret.decode(), {k.lower(): v for k, v in given.items()}, body, time.time())


def test_during_a_rotation_either_secret_verifies() -> None:
    headers = sent(["new", "old"])
    assert headers[SIGNATURE_HEADER].count("v1=") == 2
    check = documented_check()
    assert check(b"new", headers, BODY) and check(b"old", headers, BODY) and not check(b"third", headers, BODY)
    assert sent(["same", "same"])[SIGNATURE_HEADER].count("v1=") == 1
    assert sent(["only", ""])[SIGNATURE_HEADER].count("v1=") == 1
