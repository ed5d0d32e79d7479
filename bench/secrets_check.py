"""Figure 4, Secret Manager: accesses per message after warm-up, measured for real.

The stack runs with SECRET_SOURCE=env, where the count is zero by
construction. Here the real SecretManagerServiceClient talks to the Secret
Manager stand-in over gRPC, through shared.adapters.secret_manager exactly as the functions
build it, and the stand-in counts every AccessSecretVersion it serves.
"""

from __future__ import annotations

import secrets as random_secrets
import time
from typing import Any

import grpc
from google.cloud.secretmanager_v1 import SecretManagerServiceClient
from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
    SecretManagerServiceGrpcTransport,
)

from bench.stats import summarize
from devstack.secret_manager_stub import SecretManagerStub
from shared.config import Settings
from shared.adapters.secret_manager import build_secrets


def measure(messages: int, project: str = "local-project") -> dict[str, Any]:
    """One secrets source per function, as each process has its own; each asked per message."""
    settings = Settings(project_id=project, secret_source="secretmanager")
    values = {
        settings.twilio_auth_token_secret: random_secrets.token_hex(16),
        settings.openai_api_key_secret: "sk-" + random_secrets.token_hex(16),
    }
    stub = SecretManagerStub(values, project=project)
    address = stub.start()
    channels: list[grpc.Channel] = []

    def factory() -> SecretManagerServiceClient:
        channel = grpc.insecure_channel(address)
        channels.append(channel)
        return SecretManagerServiceClient(transport=SecretManagerServiceGrpcTransport(channel=channel))

    try:
        webhook, processor, sender = (build_secrets(settings, client_factory=factory) for _ in range(3))
        # Per message: webhook_fn checks the signature with the Twilio token,
        # processor_fn calls the model with the OpenAI key, sender_fn calls Twilio.
        calls = (webhook.twilio_auth_token, processor.openai_api_key, sender.twilio_auth_token)
        wanted = (
            values[settings.twilio_auth_token_secret],
            values[settings.openai_api_key_secret],
            values[settings.twilio_auth_token_secret],
        )
        for call, value in zip(calls, wanted):
            if call() != value:
                raise RuntimeError("the Secret Manager stand-in returned a different value")
        warm = stub.access_count
        durations: list[float] = []
        for _ in range(messages):
            started = time.perf_counter()
            for call in calls:
                call()
            durations.append(time.perf_counter() - started)
        after = stub.access_count
    finally:
        for channel in channels:
            channel.close()
        stub.stop()
    return {
        "n": messages,
        "warm_up_accesses": warm,
        "accesses_after_warm_up": after - warm,
        "per_message": (after - warm) / messages if messages else 0.0,
        "lookup_us_per_message": summarize(durations).scaled(1e6).to_json(2),
    }
