"""Keyed, one-way names for a user's address: conversation ids and log masks.

Phone numbers are a small space: an unkeyed hash of one is reversed by trying
every number in well under a second. These names are HMAC-SHA256 under a
secret key (Secret Manager in the cloud, ADDRESS_HASH_KEY locally), so nothing
in Firestore ids, failure records or logs leads back to a number without it.
Two purposes, two derivations: a log mask and a document id of the same
address cannot be matched to each other either.

The key is not rotated like the others: a new key gives every user a new
conversation id (their history and dedupe markers are then not found).
"""

from __future__ import annotations

import hashlib
import hmac

MIN_KEY_BYTES = 16


class Pseudonyms:
    def __init__(self, key: str | bytes) -> None:
        raw = key.encode() if isinstance(key, str) else key
        if len(raw) < MIN_KEY_BYTES:
            raise ValueError(f"the address hash key must be at least {MIN_KEY_BYTES} bytes")
        self._key = raw

    def _digest(self, purpose: bytes, address: str) -> str:
        return hmac.new(self._key, purpose + b"\x00" + address.encode(), hashlib.sha256).hexdigest()

    def conversation_id(self, address: str, business: str = "") -> str:
        """Document id of the conversation between ``address`` (as given: it may be a
        username) and ``business`` (the WhatsApp address the user wrote to): a user
        who writes to two businesses has two conversations."""
        return self._digest(b"conversation", f"{business}\x00{address}" if business else address)

    def user_id(self, address: str) -> str:
        """A user's id across businesses, stored on each of their conversations (``userId``).

        It lets erase and show find every conversation of a user with one
        indexed query, whatever number it was with; it links a user's
        conversations to each other, never to the number, without the key.
        """
        return self._digest(b"user", address)[:32]

    def outbound_id(self, business: str, idempotency_key: str) -> str:
        """The id of a business-initiated message: the same for a repeated request, so it
        dedupes, and keyed, so a caller cannot aim one at another business's entries."""
        return "OB" + self._digest(b"outbound", f"{business}\x00{idempotency_key}")[:32]

    def inbox_reply_id(self, conversation_id: str, key: str) -> str:
        """The id of a person's reply from the inbox: the same for a repeated request (its key), so it
        is sent once, and keyed, so nobody can aim one at another conversation's entries."""
        return "IN" + self._digest(b"inbox-reply", f"{conversation_id}\x00{key}")[:32]

    def mask(self, address: str) -> str:
        """What logs and failure records show for ``address``: ``whatsapp:#3f9c0a71d2``.

        Stable, so one user's lines can be followed; no digit of the number.
        """
        if not address:
            return ""
        channel, _, _ = address.rpartition(":")
        prefix = f"{channel}:" if channel else ""
        return f"{prefix}#{self._digest(b'mask', address)[:10]}"
