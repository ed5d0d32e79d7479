"""How a business knows a tool request came from its assistant, unchanged and recently: an HMAC of the request.

Every request to a business tool carries three headers::

    Idempotency-Key: wa_3f9c...            same for every send of one call (shared/domain/tool_ledger.py)
    X-Assistant-Timestamp: 1796324021      Unix seconds when this send was signed
    X-Assistant-Signature: v1=5d41...      hex HMAC-SHA256 under the tool's secret of
                                           "<timestamp>.<Idempotency-Key>.<body>"

The key is inside the signed text, so a captured request cannot be replayed
under a fresh key, and the timestamp lets the business refuse one older than
:data:`TOLERANCE_SECONDS`. While a rotated secret's overlap lasts, the
header carries one ``v1=`` per secret, separated by commas (as Stripe does):
the business accepts the request if any of them verifies under the secret it
holds. A business checks it in a few lines (docs/features.md, "Verifying a
tool request"); :func:`verify` is the same check, used by the example server
and the tests. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Iterable, Mapping

KEY_HEADER = "Idempotency-Key"
TIMESTAMP_HEADER = "X-Assistant-Timestamp"
SIGNATURE_HEADER = "X-Assistant-Signature"
SCHEME = "v1"
TOLERANCE_SECONDS = 300


def signed_text(timestamp: int, key: str, body: bytes) -> bytes:
    return f"{timestamp}.{key}.".encode() + body


def signature(secret: str, timestamp: int, key: str, body: bytes) -> str:
    return hmac.new(secret.encode(), signed_text(timestamp, key, body), hashlib.sha256).hexdigest()


def signature_header(secrets: Iterable[str], timestamp: int, key: str, body: bytes) -> str:
    """``v1=<hex>`` for each secret (the current one first, a rotated one while its overlap lasts)."""
    return ",".join(f"{SCHEME}={signature(s, timestamp, key, body)}" for s in dict.fromkeys(secrets) if s)


def signing_headers(secrets: Iterable[str], timestamp: int, key: str, body: bytes) -> dict[str, str]:
    return {
        KEY_HEADER: key,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature_header(secrets, timestamp, key, body),
    }


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float,
           tolerance: float = TOLERANCE_SECONDS) -> str:
    """Why the request must be refused ("" when it verifies); ``headers`` with lower-case names."""
    key = headers.get(KEY_HEADER.lower(), "")
    raw_time = headers.get(TIMESTAMP_HEADER.lower(), "")
    if not key or not raw_time.isdigit():
        return "missing Idempotency-Key or timestamp"
    timestamp = int(raw_time)
    if abs(now - timestamp) > tolerance:
        return f"timestamp {timestamp} is more than {tolerance:g}s from now"
    expected = signature(secret, timestamp, key, body)
    given = [part.strip()[len(SCHEME) + 1:] for part in headers.get(SIGNATURE_HEADER.lower(), "").split(",")
             if part.strip().startswith(f"{SCHEME}=")]
    if not any(hmac.compare_digest(expected, g) for g in given):
        return "signature does not match"
    return ""
