"""Twilio webhook signatures, checked against the auth token as it is now, or was a moment ago.

Twilio signs with the account's current auth token. After ops rotate it, this
instance still holds the old one: a mismatch makes it re-read the secret (at
most once per refresh interval) and check again, and the token it replaced
stays accepted for the overlap, for webhooks signed just before the switch.
Without this every webhook would get 403 until a redeploy, and Twilio does
not retry a 4xx: those messages would be lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from twilio.request_validator import RequestValidator

from shared.adapters.secret_manager import TWILIO_AUTH_TOKEN, Secrets


class RotatingValidator:
    """Drop-in for twilio's RequestValidator (same ``validate``), over rotating tokens."""

    def __init__(self, secrets: Secrets) -> None:
        self._secrets = secrets

    def _tokens(self) -> list[str]:
        tokens = [self._secrets.twilio_auth_token()]
        previous = self._secrets.previous(TWILIO_AUTH_TOKEN)
        if previous and previous not in tokens:
            tokens.append(previous)
        return tokens

    def validate(self, uri: str, params: Mapping[str, Any], signature: str) -> bool:
        if any(RequestValidator(token).validate(uri, params, signature) for token in self._tokens()):
            return True
        if self._secrets.refresh(TWILIO_AUTH_TOKEN):
            return RequestValidator(self._secrets.twilio_auth_token()).validate(uri, params, signature)
        return False
