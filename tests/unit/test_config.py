"""Settings.from_env: defaults, every invalid value named, secrets and lists."""

from __future__ import annotations

from typing import Iterator

import pytest

from shared.config import DEFAULT_FALLBACK_REPLY, DEFAULT_SYSTEM_PROMPT, ConfigError, Settings, get_settings


def test_empty_environment_gives_the_defaults() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.project_id == "local-project"
    assert settings.log_level == "INFO"
    assert settings.webhook_max_body_bytes == 64 * 1024
    assert settings.inbound_topic == "inbound-messages"
    assert settings.conversation_ttl_seconds == 24 * 3600
    assert settings.max_context_messages == 20
    assert settings.secret_source == "env"
    assert settings.env_secrets == {}
    assert settings.system_prompt == DEFAULT_SYSTEM_PROMPT
    assert settings.fallback_reply == DEFAULT_FALLBACK_REPLY
    assert settings.auth_allowed_service_accounts == ()
    assert settings.test_fault_points == ()
    assert settings.public_webhook_url == "" and not settings.trust_forwarded_headers
    assert settings.tasks_emulator_host == ""


def test_blank_values_fall_back_to_the_defaults() -> None:
    env = {
        "PUBSUB_TOPIC": "   ",
        "WEBHOOK_MAX_BODY_BYTES": "",
        "TRUST_FORWARDED_HEADERS": " ",
        "PUBLISH_MAX_LATENCY_SECONDS": "",
        "SYSTEM_PROMPT": "\n",
        "SECRET_SOURCE": "",
    }
    assert Settings.from_env(env) == Settings()


def test_values_are_read_and_trimmed() -> None:
    settings = Settings.from_env(
        {
            "GOOGLE_CLOUD_PROJECT": " prod-project ",
            "LOG_LEVEL": "debug",
            "WEBHOOK_MAX_BODY_BYTES": " 2048 ",
            "PUBLISH_MAX_LATENCY_SECONDS": "0.05",
            "TRUST_FORWARDED_HEADERS": "Yes",
            "TWILIO_API_BASE_URL": "http://127.0.0.1:9000//",
            "CLOUD_TASKS_EMULATOR_HOST": "127.0.0.1:8123",
            "OPENAI_MAX_RETRIES": "0",
        }
    )
    assert settings.project_id == "prod-project"
    assert settings.log_level == "DEBUG"
    assert settings.webhook_max_body_bytes == 2048
    assert settings.publish_max_latency_seconds == 0.05
    assert settings.trust_forwarded_headers is True
    assert settings.twilio_api_base_url == "http://127.0.0.1:9000"
    assert settings.tasks_emulator_host != ""
    assert settings.openai_max_retries == 0


def test_project_comes_from_google_cloud_project_then_gcp_project() -> None:
    assert Settings.from_env({"GCP_PROJECT": "old"}).project_id == "old"
    assert Settings.from_env({"GCP_PROJECT": "old", "GOOGLE_CLOUD_PROJECT": "new"}).project_id == "new"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WEBHOOK_MAX_BODY_BYTES", "lots"),
        ("WEBHOOK_MAX_BODY_BYTES", "1023"),
        ("WEBHOOK_MAX_BODY_BYTES", str(10 * 1024 * 1024 + 1)),
        ("WEBHOOK_MAX_BODY_BYTES", "2e4"),
        ("CONVERSATION_TTL_SECONDS", "59"),
        ("CONVERSATION_TTL_SECONDS", str(400 * 24 * 3600 + 1)),
        ("CONVERSATION_TTL_SECONDS", "1.5"),
        ("MAX_CONTEXT_MESSAGES", "1"),
        ("MAX_CONTEXT_MESSAGES", "201"),
        ("PROCESSING_LEASE_SECONDS", "4"),
        ("PROCESSING_LEASE_SECONDS", "3601"),
        ("SEND_MAX_ATTEMPTS", "0"),
        ("SEND_MAX_ATTEMPTS", "101"),
        ("OPENAI_MAX_RETRIES", "-1"),
        ("OPENAI_MAX_RETRIES", "11"),
        ("PUBLISH_MAX_LATENCY_SECONDS", "fast"),
        ("PUBLISH_MAX_LATENCY_SECONDS", "-0.1"),
        ("PUBLISH_MAX_LATENCY_SECONDS", "1.5"),
        ("PUBLISH_MAX_LATENCY_SECONDS", "nan"),
        ("TWILIO_TIMEOUT_SECONDS", "0"),
        ("TWILIO_TIMEOUT_SECONDS", "121"),
        ("TWILIO_TIMEOUT_SECONDS", "inf"),
        ("OPENAI_TIMEOUT_SECONDS", "0.05"),
        ("OPENAI_TIMEOUT_SECONDS", "601"),
        ("OPENAI_TIMEOUT_SECONDS", "ten"),
        ("TRUST_FORWARDED_HEADERS", "maybe"),
        ("TRUST_FORWARDED_HEADERS", "2"),
        ("LOG_USAGE", "sometimes"),
        ("SECRET_SOURCE", "vault"),
        ("SECRET_SOURCE", "env,secretmanager"),
    ],
)
def test_invalid_values_raise_a_config_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value})
    assert name in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(("name", "lo", "hi"), [("MAX_CONTEXT_MESSAGES", 2, 200), ("SEND_MAX_ATTEMPTS", 1, 100)])
def test_range_ends_are_inclusive(name: str, lo: int, hi: int) -> None:
    field = name.lower()
    assert getattr(Settings.from_env({name: str(lo)}), field) == lo
    assert getattr(Settings.from_env({name: str(hi)}), field) == hi


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("TRUE", True), ("on", True), ("0", False), ("No", False), ("off", False)])
def test_boolean_spellings(raw: str, expected: bool) -> None:
    assert Settings.from_env({"TRUST_FORWARDED_HEADERS": raw}).trust_forwarded_headers is expected


@pytest.mark.parametrize("raw", ["env", "secretmanager", "SecretManager", " ENV "])
def test_secret_source_accepts_env_and_secretmanager_in_any_case(raw: str) -> None:
    assert Settings.from_env({"SECRET_SOURCE": raw}).secret_source == raw.strip().lower()


def test_env_secrets_only_picks_the_two_secret_variables() -> None:
    env = {
        "TWILIO_AUTH_TOKEN": "twilio-secret",
        "OPENAI_API_KEY": "sk-secret",
        "TWILIO_ACCOUNT_SID": "AC123",
        "OPENAI_API_KEY_SECRET": "openai-api-key",
        "TWILIO_AUTH_TOKEN_SECRET": "twilio-auth-token",
        "GOOGLE_APPLICATION_CREDENTIALS": "/tmp/key.json",
        "AWS_SECRET_ACCESS_KEY": "x",
    }
    settings = Settings.from_env(env)
    assert dict(settings.env_secrets) == {"TWILIO_AUTH_TOKEN": "twilio-secret", "OPENAI_API_KEY": "sk-secret"}
    assert settings.twilio_auth_token_secret == "twilio-auth-token"
    assert settings.openai_api_key_secret == "openai-api-key"


def test_empty_secret_variables_are_left_out() -> None:
    assert dict(Settings.from_env({"TWILIO_AUTH_TOKEN": "", "OPENAI_API_KEY": "k"}).env_secrets) == {"OPENAI_API_KEY": "k"}


def test_secrets_are_not_in_the_repr() -> None:
    settings = Settings.from_env({"TWILIO_AUTH_TOKEN": "twilio-secret", "OPENAI_API_KEY": "sk-secret"})
    text = repr(settings)
    assert "twilio-secret" not in text and "sk-secret" not in text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ()),
        (" , ,", ()),
        ("a@x.iam.gserviceaccount.com", ("a@x.iam.gserviceaccount.com",)),
        (" a@x , ,b@y,, c@z ", ("a@x", "b@y", "c@z")),
    ],
)
def test_list_parsing(raw: str, expected: tuple[str, ...]) -> None:
    assert Settings.from_env({"AUTH_ALLOWED_SERVICE_ACCOUNTS": raw}).auth_allowed_service_accounts == expected
    assert Settings.from_env({"TEST_FAULT_POINTS": raw}).test_fault_points == expected


def test_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.project_id = "other"  # type: ignore[misc]


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_get_settings_reads_the_process_environment_once(monkeypatch: pytest.MonkeyPatch, fresh_settings: None) -> None:
    monkeypatch.setenv("PUBSUB_TOPIC", "topic-one")
    first = get_settings()
    monkeypatch.setenv("PUBSUB_TOPIC", "topic-two")
    assert get_settings() is first
    assert first.inbound_topic == "topic-one"


def test_get_settings_surfaces_a_bad_variable(monkeypatch: pytest.MonkeyPatch, fresh_settings: None) -> None:
    monkeypatch.setenv("MAX_CONTEXT_MESSAGES", "many")
    with pytest.raises(ConfigError, match="MAX_CONTEXT_MESSAGES"):
        get_settings()
