"""The deployment's security and delivery properties, read from terraform/ and the Dockerfile.

terraform init/validate need provider downloads this CI cannot make, so the
HCL is parsed with python-hcl2 and the properties are asserted on the parsed
configuration, each ``for_each`` resource expanded into its instances
(``service["webhook"]``) as Terraform would plan them. Each property is a
``check_*`` function; the mutation tests at the bottom run the same functions
on a copy of terraform/ with one thing removed or widened, and expect them to
fail, so a check that asserts nothing cannot go unnoticed.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import hcl2
import pytest

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"

TWILIO_WHATSAPP_DEFAULT_MPS = 80
WHATSAPP_WINDOW_SECONDS = 24 * 3600
# Read by functions-framework itself, not by shared/config.py.
FRAMEWORK_ENV = {"FUNCTION_SOURCE", "FUNCTION_TARGET", "FUNCTION_SIGNATURE_TYPE", "THREADS"}
# Settings announced for the reconciler work (issue 8) that shared/config.py
# may not read yet; Terraform already sets them. test_announced_settings_are_read
# turns strict as soon as config.py reads any of them.
ANNOUNCED_ENV = {
    "MODEL_BUDGET_SECONDS",
    "OPENAI_MAX_TOKENS",
    "MAX_INBOUND_CHARS",
    "MAX_HISTORY_CHARS",
    "LIVENESS_SECONDS",
    "RECONCILE_AFTER_SECONDS",
    "DEDUPE_HORIZON_SECONDS",
    "DEDUPE_COLLECTION",
    "MAX_REPLY_CHARS",
    "MAX_OPEN_MESSAGES",
}
# Read by shared/config.py but never set in the cloud: emulator and test hooks,
# and GCP_PROJECT, an alias of GOOGLE_CLOUD_PROJECT.
# AUTH_CERTS_URL points the signature check at the local stack's token issuer; Google's is the default.
NOT_IN_CLOUD_ENV = {
    "CLOUD_TASKS_EMULATOR_HOST",
    "SECRET_MANAGER_EMULATOR_HOST",
    "AUTH_CERTS_URL",
    "TEST_FAULT_POINTS",
    "TEST_CLOCK_OFFSET_SECONDS",
    "GCP_PROJECT",
}
# Values that are wiring (resource names, URLs, identities, collection names),
# not a per-environment choice; every other setting must come from a variable.
WIRED_ENV = {
    "SECRET_SOURCE",
    "TWILIO_AUTH_TOKEN_SECRET",
    "OPENAI_API_KEY_SECRET",
    "ADDRESS_HASH_KEY_SECRET",
    "FIRESTORE_DATABASE",
    "CONVERSATIONS_COLLECTION",
    "FAILURES_COLLECTION",
    "DEDUPE_COLLECTION",
    "USAGE_COLLECTION",
    "BUDGET_ALERTS_COLLECTION",
    "PUBSUB_TOPIC",
    "PUBLIC_WEBHOOK_URL",
    "SENDER_URL",
    "PROCESSOR_URL",
    "TASKS_QUEUE",
    "TASKS_LOCATION",
    "TASKS_SERVICE_ACCOUNT",
    "AUTH_AUDIENCE",
    "AUTH_ALLOWED_SERVICE_ACCOUNTS",
    "CALLER_PROOF",
    "CALLER_KEY_SECRET",
    # The inbox: its own URL (the sign-in's redirect URI), its session key and the dead letters it replays.
    "INBOX_URL",
    "INBOX_TASKS_URL",
    "INBOX_SESSION_KEY_SECRET",
    "PUBSUB_DEAD_LETTER_HOLD_SUBSCRIPTION",
}
SERVICES = ("webhook", "processor", "sender", "reconciler", "outbound", "inbox")
# The for_each resources the checks look into, by instance: RUN_SERVICE["webhook"], IDENTITY["pubsub_push"], ...
RUN_SERVICE = "google_cloud_run_v2_service.service"
IDENTITY = "google_service_account.identity"
SECRET = "google_secret_manager_secret.secret"
TOOL_SECRET = "google_secret_manager_secret.tool"
INVOKER_TYPES = (
    "google_cloud_run_v2_service_iam_member",
    "google_cloud_run_v2_service_iam_binding",
    "google_cloud_run_service_iam_member",
    "google_cloud_run_service_iam_binding",
)


# ------------------------------------------------------------------ parsing


class Expr(str):
    """An HCL expression as written (``var.x``, ``google_x.y.name``), as opposed to a string literal."""


def _unescape(text: str) -> str:
    return text.replace('\\"', '"').replace("\\\\", "\\")


def normalise(value: Any) -> Any:
    """python-hcl2 keeps quotes around strings and ``${}`` around expressions; drop both."""
    if isinstance(value, dict):
        return {
            normalise(key): normalise(item)
            for key, item in value.items()
            if key not in ("__is_block__", "__comments__")
        }
    if isinstance(value, list):
        return [normalise(item) for item in value]
    if isinstance(value, str):
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            return _unescape(value[1:-1])
        if value.startswith("${") and value.endswith("}"):
            return Expr(_unescape(value[2:-1]))
        return Expr(value)
    return value


# Attribute and constant-key steps after a name: .a, ["b"].
_PATH = r'(?:\.[A-Za-z0-9_]+|\["[^"]+"\])*'


def _path_parts(path: str) -> list[str]:
    return [attr or key for attr, key in re.findall(r'\.([A-Za-z0-9_]+)|\["([^"]+)"\]', path)]


def instance(name: str, key: str) -> str:
    """The name of one instance of a ``for_each`` resource, as in its address: ``service["webhook"]``."""
    return f'{name}["{key}"]'


@dataclass
class TfConfig:
    directory: Path
    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    tfvars: dict[str, dict[str, Any]] = field(default_factory=dict)

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        body = self.resources.get(rtype, {}).get(name)
        assert body is not None, f"resource {rtype}.{name} is missing"
        return body

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return self.resources.get(rtype, {})

    def resolve(self, value: Any) -> Any:
        """Follow ``var.X`` to its default and ``local.a.b`` / ``local.a["b"]`` into locals; keep anything else."""
        if isinstance(value, Expr):
            match = re.fullmatch(rf"var\.([A-Za-z0-9_]+)({_PATH})", value)
            if match:
                variable = self.variables.get(match.group(1))
                assert variable is not None, f"undeclared variable {match.group(1)}"
                resolved = variable.get("default")
                for part in _path_parts(match.group(2)):
                    resolved = resolved[part]
                return resolved
            match = re.fullmatch(rf"local({_PATH})", value)
            if match:
                resolved = self.locals
                for part in _path_parts(match.group(1)):
                    assert isinstance(resolved, dict) and part in resolved, f"undeclared local {value}"
                    resolved = resolved[part]
                return self.resolve(resolved)
            return value
        if isinstance(value, str):
            # Templates: "${var.x}s", "${local.x}s" and the one arithmetic form used here, "${var.x * N}s".
            value = re.sub(
                r"\$\{var\.([A-Za-z0-9_]+)(?:\s*\*\s*(\d+))?\}",
                lambda m: str(self.resolve(Expr(f"var.{m.group(1)}")) * int(m.group(2) or 1)),
                value,
            )
            return re.sub(
                rf"\$\{{(local{_PATH})\}}",
                lambda m: str(self.resolve(Expr(m.group(1)))),
                value,
            )
        return value


def _block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The single nested block ``name`` of a resource body."""
    blocks = body.get(name)
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected exactly one {name} block"
    return blocks[0]


def _single(rtype: str, bodies: dict[str, dict[str, Any]], what: str) -> tuple[str, dict[str, Any]]:
    assert len(bodies) == 1, f"expected exactly one {rtype} for {what}, found {sorted(bodies)}"
    return next(iter(bodies.items()))


def _for_each_items(config: TfConfig, rtype: str, name: str, spec: Any) -> dict[str, Any]:
    """The keys and values a ``for_each`` iterates: an inline map, a map in locals or variables, or toset([...])."""
    if isinstance(spec, Expr):
        listed = re.fullmatch(r"toset\((\[.*\])\)", spec, re.DOTALL)
        if listed:
            return {key: key for key in json.loads(listed.group(1))}
        of_variable = re.fullmatch(r"toset\((var\.\w+)\)", spec)
        if of_variable:
            members = config.resolve(Expr(of_variable.group(1)))
            assert isinstance(members, list), f"{rtype}.{name}: {of_variable.group(1)} is not a list"
            return {key: key for key in members}
        spec = config.resolve(spec)
    assert isinstance(spec, dict), f"{rtype}.{name}: cannot read the keys of its for_each {spec!r}"
    return spec


# each.key, each.value, each.value.attr
_EACH = re.compile(r"\beach\.(key|value)((?:\.[A-Za-z0-9_]+)*)")


def _render(value: Any) -> str:
    """``value`` written back as HCL, to stand where ``each.key`` / ``each.value`` stood in an expression."""
    if isinstance(value, Expr):
        return str(value)
    assert isinstance(value, (str, int, float)), f"cannot substitute {value!r} into an expression"
    return json.dumps(value)


def _substitute(body: Any, key: str, value: Any) -> Any:
    """Replace ``each.key`` and ``each.value[.attr]`` in a resource body with one instance's key and value."""
    if isinstance(body, dict):
        return {k: _substitute(v, key, value) for k, v in body.items()}
    if isinstance(body, list):
        return [_substitute(item, key, value) for item in body]
    if not isinstance(body, str):
        return body

    def lookup(match: re.Match[str]) -> Any:
        if match.group(1) == "key":
            return key
        found = value
        for part in filter(None, match.group(2).split(".")):
            found = found[part]
        return found

    if isinstance(body, Expr):
        whole = _EACH.fullmatch(body)
        if whole:
            return lookup(whole)
        return Expr(_EACH.sub(lambda m: _render(lookup(m)), body))

    def interpolated(match: re.Match[str]) -> str:
        found = lookup(match)
        return f"${{{found}}}" if isinstance(found, Expr) else str(found)

    # A string template: "${each.key}" becomes the key's text; each.key inside a longer ${...} a quoted string.
    body = re.sub(rf"\$\{{{_EACH.pattern}\}}", interpolated, body)
    return _EACH.sub(lambda m: _render(lookup(m)), body)


def _instances(config: TfConfig, rtype: str, name: str, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A resource's instances by name: itself, or one ``name["key"]`` per key of its ``for_each``."""
    if "for_each" not in body:
        return {name: body}
    items = _for_each_items(config, rtype, name, body["for_each"])
    # An empty variable (nobody granted by default) is a valid for_each; a literal map is not.
    assert items or re.fullmatch(r"toset\(var\.\w+\)", str(body["for_each"])), f"{rtype}.{name}: for_each has no keys"
    rest = {k: v for k, v in body.items() if k != "for_each"}
    # str(): map keys parse as bare words (Expr), but each.key is text.
    return {instance(name, str(key)): _substitute(rest, str(key), value) for key, value in items.items()}


def load_config(directory: Path = TERRAFORM) -> TfConfig:
    config = TfConfig(directory=directory)
    files = sorted(directory.glob("*.tf"))
    assert files, f"no .tf files in {directory}"
    declared: dict[tuple[str, str], dict[str, Any]] = {}
    for path in files:
        with path.open() as handle:
            parsed = normalise(hcl2.load(handle))
        for entry in parsed.get("resource", []):
            for rtype, named in entry.items():
                for name, body in named.items():
                    assert (rtype, name) not in declared, f"duplicate {rtype}.{name}"
                    declared[(rtype, name)] = body
        for entry in parsed.get("data", []):
            for rtype, named in entry.items():
                config.data.setdefault(rtype, {}).update(named)
        for entry in parsed.get("variable", []):
            config.variables.update(entry)
        for entry in parsed.get("locals", []):
            config.locals.update(entry)
        for entry in parsed.get("output", []):
            config.outputs.update(entry)
        config.terraform.extend(parsed.get("terraform", []))
    # Expanded once every file is read: a for_each may iterate a local declared in any file.
    for (rtype, name), body in declared.items():
        config.resources.setdefault(rtype, {}).update(_instances(config, rtype, name, body))
    for path in sorted((directory / "environments").glob("*.tfvars")):
        with path.open() as handle:
            config.tfvars[path.stem] = normalise(hcl2.load(handle))
    return config


def _duration_seconds(value: Any) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(value))
    assert match, f"{value!r} is not a duration like '86400s'"
    return float(match.group(1))


def _settings_source() -> str:
    """shared/config.py and the parts of the same Settings declared apart (the inbox's, usage's, the send rate's)."""
    return "\n".join((REPO / "shared" / name).read_text()
                     for name in ("config.py", "inbox_settings.py", "usage_settings.py", "send_settings.py"))


def _config_env_names() -> set[str]:
    source = _settings_source()
    names = set(re.findall(r'_(?:text|int|float|bool|list|callers)\(\s*env,\s*"([A-Z0-9_]+)"', source))
    assert "PUBSUB_TOPIC" in names, "could not read the variable names from shared/config.py"
    return names


def _service_env(config: TfConfig, service: str) -> dict[str, Any]:
    body = config.resource("google_cloud_run_v2_service", instance("service", service))
    container = _block(_block(body, "template"), "containers")
    env: dict[str, Any] = {}
    for item in container.get("env", []):
        env[item["name"]] = item.get("value")
    for dynamic in container.get("dynamic", []):
        for label, spec in dynamic.items():
            if label != "env":
                continue
            source = spec["for_each"]
            # { for name, value in local.env["x"] : name => value if value != "" }: empty values left out.
            filtered = re.fullmatch(
                r'\{\s*for (\w+), (\w+) in (local\.[^:]+?)\s*:\s*\1\s*=>\s*\2\s+if\s+\2\s*!=\s*""\s*\}', str(source)
            )
            if filtered:
                source = Expr(filtered.group(3))
            source = config.resolve(source)
            assert isinstance(source, dict), f"{service}: dynamic env must iterate over a map in locals"
            env.update(source)
    assert env, f"{service} has no environment"
    return env


# ------------------------------------------------------------------- checks


def check_providers_pinned(config: TfConfig) -> None:
    blocks = [b for b in config.terraform if "required_providers" in b]
    assert len(blocks) == 1, "exactly one terraform block must declare required_providers"
    block = blocks[0]
    assert block.get("required_version"), "terraform.required_version is not set"
    providers = block["required_providers"][0]
    assert "google" in providers, "the google provider is not declared"
    for name, spec in providers.items():
        version = str(spec.get("version", ""))
        assert re.fullmatch(r"~>\s*\d+\.\d+(\.\d+)?", version), (
            f"provider {name} is not pinned with ~> X.Y: {version!r}"
        )
    google = providers["google"]
    assert google.get("source") == "hashicorp/google"
    assert re.match(r"~>\s*[67]\.", google["version"]), "google provider must be a 6.x or 7.x release"


def check_variables_documented(config: TfConfig) -> None:
    assert config.variables, "no variables found"
    for name, spec in config.variables.items():
        assert str(spec.get("description", "")).strip(), f"variable {name} has no description"
        assert spec.get("type"), f"variable {name} has no type"


def check_ttl_fields(config: TfConfig) -> None:
    ttl = {
        (body.get("collection"), body.get("field"))
        for body in config.of_type("google_firestore_field").values()
        if body.get("ttl_config")
    }
    for collection in ("conversations", "failed_messages", "seen_messages"):
        assert (collection, "expireAt") in ttl, f"no TTL policy on {collection}.expireAt"
    databases = config.of_type("google_firestore_database")
    _, database = _single("google_firestore_database", databases, "Firestore")
    assert database.get("type") == "FIRESTORE_NATIVE"
    # The collections the services write are the ones with a TTL policy.
    collections = config.locals.get("collections", {})
    assert set(collections.values()) == {c for c, _ in ttl}, f"collections {collections} vs TTL fields {sorted(ttl)}"
    names = {"CONVERSATIONS_COLLECTION": "conversations", "FAILURES_COLLECTION": "failures", "DEDUPE_COLLECTION": "dedupe"}
    for service in SERVICES:
        env = _service_env(config, service)
        for name, key in names.items():
            if name in env:
                assert config.resolve(env[name]) == collections[key], f"{service}: {name} is not local.collections.{key}"
    assert _service_env(config, "processor").get("DEDUPE_COLLECTION") == Expr("local.collections.dedupe"), (
        "the processor's DEDUPE_COLLECTION is not the collection with the seen_messages TTL"
    )


def _processor_subscription(config: TfConfig) -> dict[str, Any]:
    subscriptions = {
        name: body
        for name, body in config.of_type("google_pubsub_subscription").items()
        if "google_pubsub_topic.inbound." in str(body.get("topic"))
    }
    return _single("google_pubsub_subscription", subscriptions, "the inbound topic")[1]


def check_processor_subscription(config: TfConfig) -> None:
    sub = _processor_subscription(config)
    assert sub.get("enable_message_ordering") is True, "message ordering must be on"

    dead_letter = _block(sub, "dead_letter_policy")
    assert "google_pubsub_topic.dead_letter." in dead_letter.get("dead_letter_topic", "")
    attempts = config.resolve(dead_letter.get("max_delivery_attempts"))
    assert isinstance(attempts, int) and 5 <= attempts <= 100, f"max_delivery_attempts {attempts!r} outside 5..100"
    variable = config.variables["max_delivery_attempts"]
    assert variable.get("validation"), "max_delivery_attempts must be validated"

    retry = _block(sub, "retry_policy")
    low = _duration_seconds(config.resolve(retry.get("minimum_backoff")))
    high = _duration_seconds(config.resolve(retry.get("maximum_backoff")))
    assert 0 < low <= high <= 600, f"retry backoff {low}..{high} s is not a sane range"

    push = _block(sub, "push_config")
    oidc = _block(push, "oidc_token")
    assert instance(IDENTITY, "pubsub_push") + "." in oidc.get("service_account_email", "")
    assert oidc.get("audience"), "the push token must carry an explicit audience"

    ack = config.resolve(sub.get("ack_deadline_seconds"))
    assert isinstance(ack, int) and ack >= 60, f"ack deadline {ack!r} s is too short for an AI reply"
    env = _service_env(config, "processor")
    assert env.get("PROCESSING_LEASE_SECONDS") == Expr("tostring(var.processor_ack_deadline_seconds)"), (
        "the processing lease is not the ack deadline"
    )
    assert env.get("MODEL_BUDGET_SECONDS") == Expr("tostring(var.model_budget_seconds)"), (
        "MODEL_BUDGET_SECONDS is not var.model_budget_seconds"
    )
    # The whole model call (SDK retries included) ends before the lease does, by default and in every environment.
    for where, values in {"defaults": {}, **config.tfvars}.items():
        budget = values.get("model_budget_seconds", config.resolve(Expr("var.model_budget_seconds")))
        lease = values.get("processor_ack_deadline_seconds", ack)
        assert budget < lease, f"{where}: model budget {budget} s does not end before the {lease} s lease"
    preconditions = [str(p.get("condition")) for p in _block(sub, "lifecycle").get("precondition", [])]
    assert any(
        re.fullmatch(r"var\.model_budget_seconds\s*<\s*var\.processor_ack_deadline_seconds", c) for c in preconditions
    ), f"no precondition keeps model_budget_seconds below the lease: {preconditions}"
    # shared/config.py's start-up check, at plan time: liveness > lease + 2 * Twilio timeout + 5.
    assert any(
        re.fullmatch(
            r"var\.liveness_seconds\s*>\s*var\.processor_ack_deadline_seconds\s*\+\s*2\s*\*\s*var\.twilio_timeout_seconds\s*\+\s*5",
            c,
        )
        for c in preconditions
    ), f"no precondition mirrors the services' liveness check: {preconditions}"
    liveness, twilio = (config.resolve(Expr(f"var.{n}")) for n in ("liveness_seconds", "twilio_timeout_seconds"))
    assert liveness > ack + 2 * twilio + 5, f"default liveness {liveness} s fails the services' start-up check"
    # Every service that gets one of the four values the start-up check compares gets all of them.
    checked = {"LIVENESS_SECONDS", "PROCESSING_LEASE_SECONDS", "MODEL_BUDGET_SECONDS", "TWILIO_TIMEOUT_SECONDS"}
    for service in SERVICES:
        present = checked & set(_service_env(config, service))
        assert not present or present == checked, f"{service} gets only {sorted(present)} of {sorted(checked)}"

    # A redelivery can come as late as the subscription keeps the message; the dedupe horizon covers it.
    retention_expr = str(sub.get("message_retention_duration"))
    assert "local.inbound_retention_seconds" in retention_expr, "the subscription's retention is not the named local"
    retention = _duration_seconds(config.resolve(retention_expr))
    horizon = config.resolve(Expr("var.dedupe_horizon_seconds"))
    assert horizon >= retention, f"dedupe horizon {horizon} s is shorter than the {retention} s retention"
    assert any(
        re.fullmatch(r"var\.dedupe_horizon_seconds\s*>=\s*local\.inbound_retention_seconds", c) for c in preconditions
    ), f"no precondition keeps the dedupe horizon at least the retention: {preconditions}"
    assert env.get("DEDUPE_HORIZON_SECONDS") == Expr("tostring(var.dedupe_horizon_seconds)")


def check_dead_letter_subscriptions(config: TfConfig) -> None:
    on_dead_letter = {
        name: body
        for name, body in config.of_type("google_pubsub_subscription").items()
        if "google_pubsub_topic.dead_letter." in str(body.get("topic"))
    }
    pushes = {n: b for n, b in on_dead_letter.items() if b.get("push_config")}
    pulls = {n: b for n, b in on_dead_letter.items() if not b.get("push_config")}

    _, push = _single("push subscription", pushes, "the dead-letter topic")
    assert push.get("name") == Expr("var.dead_letter_subscription"), (
        "the push subscription must be named by PUBSUB_DEAD_LETTER_SUBSCRIPTION"
    )
    assert config.resolve(push["name"]) == "inbound-messages-dead-letter"
    assert instance(IDENTITY, "pubsub_push") + "." in _block(_block(push, "push_config"), "oidc_token").get(
        "service_account_email", ""
    )

    pull_name, pull = _single("pull subscription", pulls, "the dead-letter topic")
    retention = _duration_seconds(config.resolve(pull.get("message_retention_duration")))
    assert retention == 7 * 86400, f"dead-letter hold keeps messages {retention} s, not 7 days"

    watched = [
        body
        for body in config.of_type("google_monitoring_alert_policy").values()
        for condition in body.get("conditions", [])
        for threshold in condition.get("condition_threshold", [])
        if "pubsub.googleapis.com/subscription/num_undelivered_messages" in str(threshold.get("filter"))
        and f"google_pubsub_subscription.{pull_name}.name" in str(threshold.get("filter"))
    ]
    assert watched, f"no alert policy watches num_undelivered_messages of {pull_name}"


def check_pubsub_service_agent(config: TfConfig) -> None:
    agent = str(config.locals.get("pubsub_service_agent", ""))
    assert re.search(
        r"serviceAccount:service-\$\{data\.google_project\.this\.number\}@gcp-sa-pubsub\.iam\.gserviceaccount\.com",
        agent,
    )
    publishers = [
        b
        for b in config.of_type("google_pubsub_topic_iam_member").values()
        if b.get("member") == Expr("local.pubsub_service_agent") and b.get("role") == "roles/pubsub.publisher"
    ]
    assert any("google_pubsub_topic.dead_letter." in str(b.get("topic")) for b in publishers), (
        "service agent cannot publish dead letters"
    )
    subscribers = [
        b
        for b in config.of_type("google_pubsub_subscription_iam_member").values()
        if b.get("member") == Expr("local.pubsub_service_agent") and b.get("role") == "roles/pubsub.subscriber"
    ]
    processor_sub = [
        n for n, b in config.of_type("google_pubsub_subscription").items() if b is _processor_subscription(config)
    ]
    assert any(f"google_pubsub_subscription.{processor_sub[0]}." in str(b.get("subscription")) for b in subscribers), (
        "service agent cannot ack forwarded dead letters"
    )


def _invokers(config: TfConfig) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for rtype in INVOKER_TYPES:
        for body in config.of_type(rtype).values():
            assert body.get("role") == "roles/run.invoker", f"unexpected Cloud Run role {body.get('role')}"
            match = re.search(rf'{re.escape(RUN_SERVICE)}\["([a-z_]+)"\]\.', str(body.get("name")))
            assert match, f"invoker binding on an unknown service: {body.get('name')}"
            members = body.get("members") or [body.get("member")]
            found.setdefault(match.group(1), set()).update(str(m) for m in members)
    return found


def check_invokers(config: TfConfig) -> None:
    invokers = _invokers(config)
    assert invokers.get("webhook") == {"allUsers"}, f"webhook invokers: {invokers.get('webhook')}"
    # Browsers cannot present a Google identity to Cloud Run: the inbox signs staff in itself.
    assert invokers.get("inbox") == {"allUsers"}, f"inbox invokers: {invokers.get('inbox')}"
    # Pub/Sub pushes messages, Cloud Tasks delivers bursts' answer tasks (docs/decisions/0014-bursts.md).
    assert invokers.get("processor") == {instance(IDENTITY, "pubsub_push") + ".member", instance(IDENTITY, "tasks_invoker") + ".member"}, (
        f"processor invokers: {invokers.get('processor')}"
    )
    assert invokers.get("sender") == {instance(IDENTITY, "tasks_invoker") + ".member"}, (
        f"sender invokers: {invokers.get('sender')}"
    )
    assert invokers.get("reconciler") == {instance(IDENTITY, "scheduler") + ".member"}, (
        f"reconciler invokers: {invokers.get('reconciler')}"
    )
    for rtype in ("google_project_iam_member", "google_project_iam_binding"):
        for name, body in config.of_type(rtype).items():
            assert body.get("role") != "roles/run.invoker", f"{rtype}.{name} grants run.invoker on the whole project"
    ingress = {name: body.get("ingress") for name, body in config.of_type("google_cloud_run_v2_service").items()}
    # Pub/Sub, Cloud Tasks and Cloud Scheduler of the same project calling the run.app URL are internal traffic.
    assert ingress == {
        instance("service", "webhook"): "INGRESS_TRAFFIC_ALL",
        instance("service", "processor"): "INGRESS_TRAFFIC_INTERNAL_ONLY",
        instance("service", "sender"): "INGRESS_TRAFFIC_INTERNAL_ONLY",
        instance("service", "reconciler"): "INGRESS_TRAFFIC_INTERNAL_ONLY",
        # The business's systems may call from anywhere; IAM and the OIDC check let only outbound_invokers in.
        instance("service", "outbound"): "INGRESS_TRAFFIC_ALL",
        # Staff's browsers are anywhere.
        instance("service", "inbox"): "INGRESS_TRAFFIC_ALL",
    }, f"ingress settings: {ingress}"


def check_secret_access(config: TfConfig) -> None:
    access: dict[str, set[str]] = {}
    for rtype in ("google_secret_manager_secret_iam_member", "google_secret_manager_secret_iam_binding"):
        for body in config.of_type(rtype).values():
            tool = re.search(rf'{re.escape(TOOL_SECRET)}\["([^"]+)"\]\.', str(body.get("secret_id")))
            if tool:
                # A business tool's signing secret: processor_fn alone calls tools (tests/infra/test_tool_infra.py).
                members = {str(m) for m in body.get("members") or [body.get("member")]}
                assert members == {f'{IDENTITY}["processor"].member'}, f"tool secret {tool.group(1)} granted to {members}"
                continue
            secret = re.search(rf'{re.escape(SECRET)}\["([a-z_]+)"\]\.', str(body.get("secret_id")))
            assert secret, f"accessor binding on an unknown secret: {body.get('secret_id')}"
            for member in body.get("members") or [body.get("member")]:
                # Ours: a runtime identity, or the profiles build's account (terraform/bootstrap).
                account = re.fullmatch(rf'{re.escape(IDENTITY)}\["([a-z_]+)"\]\.member'
                                       r"|data\.google_service_account\.(profiles)\.member", str(member))
                assert account, f"secret {secret.group(1)} is granted to {member}, not to one of our service accounts"
                access.setdefault(secret.group(1), set()).add(account.group(1) or account.group(2))
    assert access == {
        "twilio_auth_token": {"webhook", "sender", "processor"},
        # The profiles build embeds the knowledge documents (knowledge.tf).
        "openai_api_key": {"processor", "profiles"},
        "address_hash_key": {"webhook", "processor", "sender", "reconciler", "outbound", "inbox"},
        # Checked by the private services, written into every task by those that create tasks.
        "caller_key": {"processor", "sender", "reconciler", "outbound", "inbox"},
        # Signs the inbox's sessions; nobody else needs it.
        "inbox_session_key": {"inbox"},
    }, f"secret accessors: {access}"
    assert not config.of_type("google_secret_manager_secret_iam_policy"), (
        "secrets must not use authoritative IAM policies"
    )
    for rtype in ("google_project_iam_member", "google_project_iam_binding"):
        for name, body in config.of_type(rtype).items():
            assert "secretmanager" not in str(body.get("role")), (
                f"{rtype}.{name} grants Secret Manager on the whole project"
            )
    # No credential's value reaches the state. The caller key is generated by
    # Terraform, which must know it anyway (push endpoints, scheduler header).
    for name, body in config.of_type("google_secret_manager_secret_version").items():
        generated = body.get("secret") == Expr(f"{instance(SECRET, 'caller_key')}.id") and body.get(
            "secret_data"
        ) == Expr("random_password.caller_key.result")
        assert "secret_data" not in body or generated, f"secret version {name} would put a secret value in the state"


def check_queue(config: TfConfig) -> None:
    queues = config.of_type("google_cloud_tasks_queue")
    _, queue = _single("google_cloud_tasks_queue", {k: v for k, v in queues.items() if not k.startswith("lane[")},
                       "outbound replies")
    rate = _block(queue, "rate_limits")
    dispatch = config.resolve(rate.get("max_dispatches_per_second"))
    concurrent = config.resolve(rate.get("max_concurrent_dispatches"))
    assert isinstance(dispatch, (int, float)) and 0 < dispatch < TWILIO_WHATSAPP_DEFAULT_MPS, (
        f"dispatch rate {dispatch!r} not under Twilio's {TWILIO_WHATSAPP_DEFAULT_MPS} MPS"
    )
    assert isinstance(concurrent, int) and concurrent >= 1
    for env, values in config.tfvars.items():
        rate_override = values.get("tasks_max_dispatches_per_second", dispatch)
        assert rate_override < TWILIO_WHATSAPP_DEFAULT_MPS, (
            f"{env}.tfvars dispatches {rate_override}/s, over Twilio's default limit"
        )
    preconditions = _block(queue, "lifecycle").get("precondition", [])
    assert any("twilio_sender_mps_limit" in str(p.get("condition")) for p in preconditions), (
        "no precondition caps the rate at Twilio's limit"
    )

    retry = _block(queue, "retry_config")
    attempts = config.resolve(retry.get("max_attempts"))
    assert isinstance(attempts, int) and attempts >= 10, (
        f"max_attempts {attempts!r}: -1 (unlimited) or too few for 503 deferrals"
    )
    duration = _duration_seconds(config.resolve(retry.get("max_retry_duration")))
    assert 0 < duration <= WHATSAPP_WINDOW_SECONDS, f"max_retry_duration {duration} s exceeds WhatsApp's 24-hour window"
    for key in ("min_backoff", "max_backoff", "max_doublings"):
        assert key in retry, f"retry_config.{key} is not set"
    assert _duration_seconds(retry["min_backoff"]) <= _duration_seconds(retry["max_backoff"])


def check_service_env(config: TfConfig) -> None:
    known = _config_env_names() | FRAMEWORK_ENV | ANNOUNCED_ENV
    common = {"GOOGLE_CLOUD_PROJECT", "LOG_LEVEL", "FUNCTION_SOURCE", "FUNCTION_TARGET", "FUNCTION_SIGNATURE_TYPE", "THREADS"}
    required = {
        "webhook": common
        | {
            "PUBLIC_WEBHOOK_URL",
            "TRUST_FORWARDED_HEADERS",
            "PUBSUB_TOPIC",
            "SECRET_SOURCE",
            "TWILIO_AUTH_TOKEN_SECRET",
        },
        "processor": common
        | {
            "SENDER_URL",
            "TASKS_QUEUE",
            "TASKS_LOCATION",
            "TASKS_SERVICE_ACCOUNT",
            "OPENAI_MODEL",
            "CONVERSATION_TTL_SECONDS",
            "MAX_CONTEXT_MESSAGES",
            "AUTH_AUDIENCE",
            "AUTH_ALLOWED_SERVICE_ACCOUNTS",
            "CALLER_PROOF",
            "CALLER_KEY_SECRET",
            "PROCESSOR_URL",
            "SECRET_SOURCE",
            "OPENAI_API_KEY_SECRET",
            "PUBSUB_DEAD_LETTER_SUBSCRIPTION",
            "PROCESSING_LEASE_SECONDS",
            "MODEL_BUDGET_SECONDS",
            "OPENAI_MAX_TOKENS",
            "MAX_INBOUND_CHARS",
            "MAX_HISTORY_CHARS",
            "MAX_REPLY_CHARS",
            "MAX_OPEN_MESSAGES",
            "DEDUPE_HORIZON_SECONDS",
            "DEDUPE_COLLECTION",
            "LIVENESS_SECONDS",
            "RECONCILE_AFTER_SECONDS",
            "SYSTEM_PROMPT",
            "FALLBACK_REPLY",
            "OPENAI_BASE_URL",
        },
        "sender": common
        | {
            "TWILIO_ACCOUNT_SID",
            "TWILIO_WHATSAPP_FROM",
            "AUTH_AUDIENCE",
            "AUTH_ALLOWED_SERVICE_ACCOUNTS",
            "CALLER_PROOF",
            "CALLER_KEY_SECRET",
            "SECRET_SOURCE",
            "TWILIO_AUTH_TOKEN_SECRET",
            "LIVENESS_SECONDS",
            "RECONCILE_AFTER_SECONDS",
            "TWILIO_TIMEOUT_SECONDS",
            "SEND_MAX_ATTEMPTS",
        },
        "reconciler": common
        | {
            "FIRESTORE_DATABASE",
            "SENDER_URL",
            "TASKS_QUEUE",
            "TASKS_LOCATION",
            "TASKS_SERVICE_ACCOUNT",
            "AUTH_AUDIENCE",
            "AUTH_ALLOWED_SERVICE_ACCOUNTS",
            "CALLER_PROOF",
            "CALLER_KEY_SECRET",
            "LIVENESS_SECONDS",
            "RECONCILE_AFTER_SECONDS",
            "TWILIO_TIMEOUT_SECONDS",
            "SEND_MAX_ATTEMPTS",
        },
        "outbound": common
        | {
            "SECRET_SOURCE",
            "ADDRESS_HASH_KEY_SECRET",
            "FIRESTORE_DATABASE",
            "DEDUPE_COLLECTION",
            "SENDER_URL",
            "TASKS_QUEUE",
            "TASKS_LOCATION",
            "TASKS_SERVICE_ACCOUNT",
            "AUTH_AUDIENCE",
            "AUTH_ALLOWED_SERVICE_ACCOUNTS",
            "OUTBOUND_CALLERS",
            "CALLER_PROOF",
            "CALLER_KEY_SECRET",
            "TWILIO_WHATSAPP_FROM",
        },
        "inbox": common
        | {
            "SECRET_SOURCE",
            "ADDRESS_HASH_KEY_SECRET",
            "CALLER_KEY_SECRET",
            "INBOX_SESSION_KEY_SECRET",
            "FIRESTORE_DATABASE",
            "CONVERSATIONS_COLLECTION",
            "FAILURES_COLLECTION",
            "PROFILES_COLLECTION",
            "SENDER_URL",
            "TASKS_QUEUE",
            "TASKS_LOCATION",
            "TASKS_SERVICE_ACCOUNT",
            "PUBSUB_TOPIC",
            "PUBSUB_DEAD_LETTER_HOLD_SUBSCRIPTION",
            "TWILIO_WHATSAPP_FROM",
            "INBOX_URL",
            "INBOX_OAUTH_CLIENT_ID",
            "INBOX_OPERATORS",
            "INBOX_SESSION_SECONDS",
            "AUTH_AUDIENCE",
            "AUTH_ALLOWED_SERVICE_ACCOUNTS",
            "CALLER_PROOF",
        },
    }
    envs = {service: _service_env(config, service) for service in required}
    assert set(envs) == {key for key in config.locals.get("env", {})}, "a service's environment is not checked"
    for service, env in envs.items():
        unknown = set(env) - known
        assert not unknown, f"{service} sets variables nothing reads: {sorted(unknown)}"
        missing = required[service] - set(env)
        assert not missing, f"{service} lacks {sorted(missing)}"
    # Every service reads its secrets from Secret Manager; each names users by the keyed
    # address hash, and the reconciler reads nothing else.
    for service in ("webhook", "processor", "sender", "reconciler", "inbox"):
        assert envs[service]["SECRET_SOURCE"] == "secretmanager"
        assert "ADDRESS_HASH_KEY_SECRET" in envs[service], f"{service} cannot name users without the hash key"
    assert {n for n in envs["reconciler"] if n.endswith("_SECRET")} == {"ADDRESS_HASH_KEY_SECRET", "CALLER_KEY_SECRET"}, (
        "the reconciler reads no secret but the address hash key and the caller key"
    )
    assert envs["processor"]["AUTH_ALLOWED_SERVICE_ACCOUNTS"] == Expr(
        f'join(",", [{instance(IDENTITY, "pubsub_push")}.email, {instance(IDENTITY, "tasks_invoker")}.email])'
    )
    assert envs["processor"]["PROCESSOR_URL"] == envs["processor"]["AUTH_AUDIENCE"] == envs["reconciler"]["PROCESSOR_URL"]
    assert envs["sender"]["AUTH_ALLOWED_SERVICE_ACCOUNTS"] == Expr(instance(IDENTITY, "tasks_invoker") + ".email")
    assert envs["reconciler"]["AUTH_ALLOWED_SERVICE_ACCOUNTS"] == Expr(instance(IDENTITY, "scheduler") + ".email")
    reconciler = envs["reconciler"]
    assert (reconciler["FUNCTION_SOURCE"], reconciler["FUNCTION_TARGET"], reconciler["FUNCTION_SIGNATURE_TYPE"]) == (
        "processor_fn/main.py",
        "reconcile",
        "http",
    ), "the reconciler must run processor_fn/main.py:reconcile as an http function"
    # The reconciler enqueues exactly what the processor enqueues: same queue, target and token identity.
    for name in ("SENDER_URL", "TASKS_QUEUE", "TASKS_LOCATION", "TASKS_SERVICE_ACCOUNT"):
        assert reconciler[name] == envs["processor"][name], f"reconciler {name} differs from the processor's"
    # The audience the processor checks is the one both push subscriptions put in their tokens.
    for body in config.of_type("google_pubsub_subscription").values():
        for push in body.get("push_config", []):
            assert _block(push, "oidc_token").get("audience") == envs["processor"]["AUTH_AUDIENCE"]
    # Cloud Tasks' token audience is the task URL unless set: the sender checks exactly SENDER_URL.
    assert envs["sender"]["AUTH_AUDIENCE"] == envs["processor"]["SENDER_URL"]
    # No service reads a service's `uri` (a cycle: the services are one resource): URLs come from the run.app form.
    for service, env in envs.items():
        assert "google_cloud_run_v2_service." not in " ".join(map(str, env.values())), f"{service} env names a service"


def check_settings_settable(config: TfConfig) -> None:
    """Every setting shared/config.py reads is set in the cloud, and each one that changes behaviour from a variable."""
    envs = {service: _service_env(config, service) for service in SERVICES}
    wanted = (_config_env_names() | ANNOUNCED_ENV) - NOT_IN_CLOUD_ENV
    set_anywhere = set().union(*map(set, envs.values()))
    missing = wanted - set_anywhere
    assert not missing, f"settings no service gets, so no tfvars can change them: {sorted(missing)}"
    for service, env in envs.items():
        for name in NOT_IN_CLOUD_ENV:
            assert name not in env, f"{service} sets {name}, a local or test-only setting"
        for name, value in env.items():
            if name in WIRED_ENV or name in FRAMEWORK_ENV - {"THREADS"}:
                continue
            match = re.search(r"\bvar\.([a-z0-9_]+)", str(value))
            assert match, f"{service}: {name} = {value!r} is fixed; it must come from a variable"
            assert match.group(1) in config.variables, f"{service}: {name} reads undeclared var.{match.group(1)}"


def check_function_sources(config: TfConfig, services: tuple[str, ...] = ("webhook", "processor", "sender")) -> None:
    for service in services:
        env = _service_env(config, service)
        source = REPO / str(env["FUNCTION_SOURCE"])
        assert source.is_file(), f"{service}: {source.relative_to(REPO)} does not exist"
        target = str(env["FUNCTION_TARGET"])
        assert re.search(rf"^def {re.escape(target)}\(", source.read_text(), re.MULTILINE), (
            f"{source.relative_to(REPO)} defines no {target}()"
        )


def check_send_failed_alert(config: TfConfig) -> None:
    # No alert may read a user metric: created in the same apply, it fails with
    # "Cannot find metric(s)" and the provider does not retry (terraform-provider-google#11102).
    metric_names = set(config.of_type("google_logging_metric"))
    for name, body in config.of_type("google_monitoring_alert_policy").items():
        text = json.dumps(body)
        assert "logging.googleapis.com/user/" not in text and not any(
            f"google_logging_metric.{metric}." in text for metric in metric_names
        ), f"alert {name} reads a log-based metric (fails on the first apply, terraform-provider-google#11102)"
    matched = {
        name: body
        for name, body in config.of_type("google_monitoring_alert_policy").items()
        for condition in body.get("conditions", [])
        for log in condition.get("condition_matched_log", [])
        if 'jsonPayload.event="send_failed"' in str(config.resolve(log.get("filter")))
    }
    name, policy = _single("google_monitoring_alert_policy", matched, "send_failed log lines")
    log_filter = str(config.resolve(_block(_block(policy, "conditions"), "condition_matched_log")["filter"]))
    assert 'resource.type="cloud_run_revision"' in log_filter
    assert "local.service_names.sender" in log_filter, "the send_failed alert does not watch the sender"
    assert len(policy["conditions"]) == 1, "a log-match condition must be the policy's only condition"
    strategy = _block(policy, "alert_strategy")
    assert strategy.get("notification_rate_limit"), f"alert {name}: log-match policies need notification_rate_limit"
    for name, body in config.of_type("google_monitoring_alert_policy").items():
        assert body.get("notification_channels") == Expr("var.notification_channels"), (
            f"alert {name} ignores notification_channels"
        )


# ------------------------------------------------- identities and grants


def _grants(config: TfConfig) -> list[tuple[str, str, str, str]]:
    """Every IAM grant as (member, role, resource type, what it is on); a condition is part of the target."""
    grants = []
    for rtype, bodies in config.resources.items():
        if not re.search(r"_iam_(member|binding|policy)$", rtype):
            continue
        for name, body in bodies.items():
            assert not rtype.endswith("_iam_policy"), f"{rtype}.{name}: authoritative IAM policies are not used"
            target = " ".join(
                str(body.get(key))
                for key in ("name", "secret_id", "service_account_id", "topic", "subscription", "project")
                if key in body and (key != "project" or rtype.startswith("google_project_"))
            )
            for condition in body.get("condition", []):
                target += f" if {condition.get('expression')}"
            for member in body.get("members") or [body.get("member")]:
                grants.append((str(member), str(body.get("role")), rtype, target))
    return grants


def _grants_of(config: TfConfig, account: str) -> set[tuple[str, str, str]]:
    member = instance(IDENTITY, account) + ".member"
    return {(role, rtype, target) for m, role, rtype, target in _grants(config) if m == member}


def _lane_enqueuer_grants(config: TfConfig) -> set[tuple[str, str, str]]:
    """May add tasks to every send lane (terraform/tasks.tf), as to the shared queue."""
    lanes = config.resolve(Expr("var.send_lanes"))
    return {("roles/cloudtasks.enqueuer", "google_cloud_tasks_queue_iam_binding",
             f'google_cloud_tasks_queue.lane["{lane}"].name') for lane in lanes}


def check_send_lanes(config: TfConfig) -> None:
    """One lane queue per listed id, retried as the shared queue, its rate left to profiles-apply and under
    Twilio's limit; the profiles build administers the lanes and nothing else of Cloud Tasks."""
    lanes = config.resolve(Expr("var.send_lanes"))
    assert isinstance(lanes, list) and lanes, "var.send_lanes has no default lanes"
    queues = config.of_type("google_cloud_tasks_queue")
    shared = queues["outbound"]
    for lane in lanes:
        body = queues.get(f'lane["{lane}"]')
        assert body is not None, f"send lane {lane} is not a queue"
        assert body.get("retry_config") == shared.get("retry_config"), f"lane {lane} retries unlike the shared queue"
        lifecycle = _block(body, "lifecycle")
        assert "rate_limits" in str(lifecycle.get("ignore_changes")), f"terraform would reset lane {lane}'s rate"
        assert any("twilio_sender_mps_limit" in str(p.get("condition")) for p in lifecycle.get("precondition", [])), (
            f"no precondition caps lane {lane}'s rate at Twilio's limit"
        )
    profiles = "data.google_service_account.profiles.member"
    admin = {(role, rtype, target) for m, role, rtype, target in _grants(config) if m == profiles and "cloudtasks" in role}
    assert admin == {("roles/cloudtasks.queueAdmin", "google_cloud_tasks_queue_iam_member",
                      f'google_cloud_tasks_queue.lane["{lane}"].name') for lane in lanes}, (
        f"the profiles build's Cloud Tasks grants: {sorted(admin)}"
    )
    for rtype in ("google_project_iam_member", "google_project_iam_binding"):
        for name, body in config.of_type(rtype).items():
            assert "cloudtasks" not in str(body.get("role")), f"{rtype}.{name} grants Cloud Tasks project-wide"


def check_scheduler_identity(config: TfConfig) -> None:
    grants = _grants_of(config, "scheduler")
    reconciler = f"{instance(RUN_SERVICE, 'reconciler')}.name"
    assert grants == {("roles/run.invoker", "google_cloud_run_v2_service_iam_member", reconciler)}, (
        f"the scheduler identity may only invoke the reconciler; it has {sorted(grants)}"
    )


def check_reconciler_roles(config: TfConfig) -> None:
    grants = _grants_of(config, "reconciler")
    processor = {g for g in _grants_of(config, "processor") if g[0] == "roles/datastore.user"}
    assert len(processor) == 1, "the processor's Firestore grant is not found"
    (_, _, database_target), = processor
    assert " if " in database_target, "the Firestore grant has no IAM condition"
    expected = {
        ("roles/datastore.user", "google_project_iam_member", database_target),
        ("roles/cloudtasks.enqueuer", "google_cloud_tasks_queue_iam_member", "google_cloud_tasks_queue.outbound.name"),
        *_lane_enqueuer_grants(config),
        ("roles/iam.serviceAccountUser", "google_service_account_iam_member", instance(IDENTITY, "tasks_invoker") + ".name"),
        ("roles/secretmanager.secretAccessor", "google_secret_manager_secret_iam_member",
         'google_secret_manager_secret.secret["address_hash_key"].secret_id'),
        # It checks the scheduler's caller key and writes it into the tasks it re-creates.
        ("roles/secretmanager.secretAccessor", "google_secret_manager_secret_iam_member",
         'google_secret_manager_secret.secret["caller_key"].secret_id'),
    }
    assert grants == expected, f"reconciler grants: {sorted(grants)}"
    service = config.resource("google_cloud_run_v2_service", instance("service", "reconciler"))
    assert _block(service, "template").get("service_account") == instance(IDENTITY, "reconciler") + ".email"
    assert config.resolve(Expr("var.max_instances.reconciler")) == 1, "one reconciler instance by default"
    assert config.resolve(Expr("var.min_instances.reconciler")) == 0, "no warm reconciler by default"


def check_outbound_service(config: TfConfig) -> None:
    """The outbound API: the processor's way into Firestore and the queue, callable only by outbound_invokers."""
    grants = _grants_of(config, "outbound")
    expected = {g for g in _grants_of(config, "reconciler")}
    assert grants == expected, f"outbound grants: {sorted(grants)}"
    # Empty by default, so its instances are not in the config: the block itself says who.
    assert not _invokers(config).get("outbound"), "the outbound API is invoked by someone by default"
    assert re.search(
        r'"outbound_invoker" \{\s*for_each = toset\(var\.outbound_invokers\)', (config.directory / "run.tf").read_text()
    ), "the outbound API's invokers are not var.outbound_invokers"
    assert config.resolve(Expr("var.outbound_invokers")) == [], "nobody may call the outbound API by default"
    env = _service_env(config, "outbound")
    assert (env["FUNCTION_SOURCE"], env["FUNCTION_TARGET"]) == ("webhook_fn/main.py", "outbound")
    assert env["AUTH_AUDIENCE"] == Expr("local.outbound_audience") and config.locals.get("outbound_audience") == Expr(
        "local.run_urls.outbound"
    ), "the outbound API's AUTH_AUDIENCE is not its own run.app URL"
    assert env["AUTH_ALLOWED_SERVICE_ACCOUNTS"] == Expr('join(",", var.outbound_allowed_service_accounts)')


def check_inbox_service(config: TfConfig) -> None:
    """The inbox: public (it signs staff in itself), the outbound API's way into Firestore and the
    queue, its own session key, and exactly the two Pub/Sub grants replay needs."""
    grants = _grants_of(config, "inbox")
    expected = _grants_of(config, "reconciler") | {
        ("roles/secretmanager.secretAccessor", "google_secret_manager_secret_iam_member",
         f'{instance(SECRET, "inbox_session_key")}.secret_id'),
        ("roles/pubsub.subscriber", "google_pubsub_subscription_iam_member",
         "google_pubsub_subscription.dead_letter_hold.name"),
        ("roles/pubsub.publisher", "google_pubsub_topic_iam_member", "google_pubsub_topic.inbound.name"),
    }
    assert grants == expected, f"inbox grants: {sorted(grants ^ expected)}"
    env = _service_env(config, "inbox")
    assert (env["FUNCTION_SOURCE"], env["FUNCTION_TARGET"]) == ("inbox_fn/main.py", "inbox")
    assert env["INBOX_URL"] == Expr("local.inbox_public_url") and "local.run_urls.inbox" in str(
        config.locals.get("inbox_public_url")), "the inbox's INBOX_URL is not its own URL"
    assert env["PUBSUB_DEAD_LETTER_HOLD_SUBSCRIPTION"] == Expr("google_pubsub_subscription.dead_letter_hold.name")
    # Its task endpoint: only Cloud Tasks' identity, for the inbox's own run.app URL (the tasks' audience).
    assert env["AUTH_AUDIENCE"] == Expr("local.run_urls.inbox")
    assert _service_env(config, "processor").get("INBOX_TASKS_URL") == env["AUTH_AUDIENCE"], (
        "the processor's handoff notices do not go to the inbox's URL, the audience it checks"
    )
    assert env["AUTH_ALLOWED_SERVICE_ACCOUNTS"] == Expr(instance(IDENTITY, "tasks_invoker") + ".email")
    assert config.resolve(Expr("var.inbox_operators")) == [], "nobody operates the inbox by default"
    # The composite indexes its queries need (the emulator answers without them; Firestore does not).
    from shared.adapters.inbox_store import INDEXES

    declared = set()
    for body in config.of_type("google_firestore_index").values():
        if body.get("collection") != Expr("local.collections.conversations"):
            continue
        declared.add(tuple((f["field_path"], f["order"]) for f in body.get("fields", [])))
    missing = set(INDEXES.values()) - declared
    assert not missing, f"the inbox's queries need composite indexes terraform/ does not declare: {sorted(missing)}"


def check_scheduler_job(config: TfConfig) -> None:
    _, job = _single("google_cloud_scheduler_job", config.of_type("google_cloud_scheduler_job"), "the reconciler")
    assert job.get("schedule") == "* * * * *", f"the reconciler must run every minute, not {job.get('schedule')!r}"
    target = _block(job, "http_target")
    assert target.get("http_method") == "POST"
    reconciler_env = _service_env(config, "reconciler")
    audience = reconciler_env["AUTH_AUDIENCE"]
    assert audience == Expr("local.reconciler_audience") and config.locals.get("reconciler_audience") == Expr(
        "local.run_urls.reconciler"
    ), "the reconciler's AUTH_AUDIENCE is not its own run.app URL"
    assert target.get("uri") == audience, f"the job calls {target.get('uri')}, not the reconciler"
    oidc = _block(target, "oidc_token")
    assert oidc.get("service_account_email") == instance(IDENTITY, "scheduler") + ".email", (
        f"the job's token is not the scheduler identity's: {oidc.get('service_account_email')}"
    )
    assert oidc.get("audience") == audience, "the job's token audience is not the reconciler's AUTH_AUDIENCE"
    assert not target.get("oauth_token"), "Cloud Run takes an OIDC token, not an OAuth one"
    deadline = _duration_seconds(config.resolve(job.get("attempt_deadline")))
    timeout = _duration_seconds(config.resolve(config.locals["services"]["reconciler"]["timeout"]))
    assert 15 <= deadline <= timeout <= 60, f"a run ({deadline} s, timeout {timeout} s) must fit in the minute"
    apis = config.resource("google_project_service", 'enabled["cloudscheduler.googleapis.com"]')
    assert apis, "the Cloud Scheduler API is not enabled"


def check_caller_key(config: TfConfig) -> None:
    """Cloud Run forwards tokens without their signature: each private service gets a proof it can check.

    docs/decisions/0003-caller-verification.md. The processor, sender and
    reconciler check the caller key, which every Google caller of theirs
    carries; the outbound API checks the business system's token signature.
    """
    key = Expr("random_password.caller_key.result")
    password = config.resource("random_password", "caller_key")
    assert int(password.get("length", 0)) >= 32 and password.get("special") is False, (
        f"the caller key must be at least 32 letters and digits (it travels in a query string): {password}"
    )
    versions = [b for b in config.of_type("google_secret_manager_secret_version").values() if b.get("secret_data") == key]
    assert [v.get("secret") for v in versions] == [Expr(f"{instance(SECRET, 'caller_key')}.id")], (
        "the generated caller key is not stored in the caller_key secret"
    )
    envs = {service: _service_env(config, service) for service in SERVICES}
    proofs = {service: env.get("CALLER_PROOF") for service, env in envs.items()}
    assert proofs == {
        "webhook": None, "processor": "caller-key", "sender": "caller-key", "reconciler": "caller-key",
        "outbound": "signed-token", "inbox": "caller-key",
    }, f"caller proofs: {proofs}"
    secret_id = Expr(f"{instance(SECRET, 'caller_key')}.secret_id")
    for service, env in envs.items():
        # Whoever checks the key or writes tasks (which carry it) reads it.
        if env.get("CALLER_PROOF") == "caller-key" or "TASKS_SERVICE_ACCOUNT" in env:
            assert env.get("CALLER_KEY_SECRET") == secret_id, f"{service} cannot read the caller key"
    # Pub/Sub push: the key in the endpoint's query string, the audience the bare URL the processor checks.
    endpoint = str(config.locals.get("processor_push_endpoint"))
    assert endpoint == "${local.processor_audience}/?caller_key=${random_password.caller_key.result}", (
        f"the push endpoint does not carry the caller key: {endpoint}"
    )
    for name, body in config.of_type("google_pubsub_subscription").items():
        for push in body.get("push_config", []):
            assert push.get("push_endpoint") == Expr("local.processor_push_endpoint"), (
                f"push subscription {name} does not carry the caller key"
            )
            assert _block(push, "oidc_token").get("audience") == envs["processor"]["AUTH_AUDIENCE"]
    # Cloud Scheduler: the key in the job's header.
    _, job = _single("google_cloud_scheduler_job", config.of_type("google_cloud_scheduler_job"), "the reconciler")
    headers = _block(job, "http_target").get("headers") or {}
    assert headers.get("X-Caller-Key") == key, f"the reconcile job does not carry the caller key: {headers}"
    # Cloud Tasks: the code writes the header into every task; the name must be the one the services read.
    tasks = (REPO / "shared" / "adapters" / "cloud_tasks.py").read_text()
    auth = (REPO / "shared" / "adapters" / "google_auth.py").read_text()
    assert 'CALLER_KEY_HEADER = "X-Caller-Key"' in auth and "[CALLER_KEY_HEADER]" in tasks
    assert 'CALLER_KEY_PARAMETER = "caller_key"' in auth
    # The first revision of each service can read the key.
    depends = " ".join(map(str, config.resource("google_cloud_run_v2_service", instance("service", "processor")).get("depends_on", [])))
    assert "google_secret_manager_secret_version.caller_key" in depends, "services may start before the caller key exists"
    assert "google_secret_manager_secret_iam_member.caller_key_accessor" in depends


# ----------------------------------------------------- first-apply rules


def check_plan_time_data_sources(config: TfConfig) -> None:
    # A data source with depends_on is read during apply whenever a dependency
    # changes, and every value derived from it (service URLs) becomes unknown.
    for rtype, named in config.data.items():
        if rtype == "terraform_remote_state":
            continue
        for name, body in named.items():
            assert "depends_on" not in body, f"data.{rtype}.{name} has depends_on: its values turn unknown at plan time"


def _validation(config: TfConfig, variable: str) -> dict[str, Any]:
    validations = config.variables[variable].get("validation", [])
    assert len(validations) == 1, f"variable {variable} needs one validation"
    return validations[0]


def check_variable_limits(config: TfConfig) -> None:
    pattern = re.search(r'regex\("([^"]+)", var\.region\)', _validation(config, "region")["condition"])
    assert pattern, "region validation is not a regex"
    regex = pattern.group(1).replace("\\\\", "\\")
    for region in ("us-central1", "europe-west1", "europe-west10", "me-central2", "northamerica-northeast2"):
        assert re.fullmatch(regex, region), f"region validation rejects {region}"
    for region in ("us-central", "US-CENTRAL1", "uscentral1"):
        assert not re.fullmatch(regex, region), f"region validation accepts {region}"
    retention = _validation(config, "dead_letter_retention_days")
    upper = re.search(r"var\.dead_letter_retention_days\s*<=\s*(\d+)", retention["condition"])
    assert upper and int(upper.group(1)) == 31, "a subscription keeps messages up to 31 days; the validation must allow that"
    assert "31" in retention["error_message"] and " 7 " not in retention["error_message"] + " ", (
        f"retention error text: {retention['error_message']!r}"
    )


def _config_bounds() -> dict[str, tuple[float, float]]:
    """The lo..hi range shared/config.py accepts for each numeric setting."""
    source = _settings_source()
    bounds = {}
    for name, lo, hi in re.findall(r'_(?:int|float)\(\s*env,\s*"([A-Z0-9_]+)",\s*[^,]+,\s*([^,]+?),\s*([^)]+?)\)', source):
        values = []
        for expr in (lo, hi):
            assert re.fullmatch(r"[\d_.\s*+-]+", expr), f"cannot read the bound {expr!r} of {name}"
            values.append(eval(expr))  # digits and arithmetic only, checked above
        bounds[name] = (values[0], values[1])
    return bounds


def _validation_bounds(config: TfConfig, variable: str) -> tuple[float, float]:
    condition = " ".join(str(v.get("condition")) for v in config.variables[variable].get("validation", []))
    low = re.search(rf"var\.{variable}\s*>=?\s*([\d.]+)", condition)
    high = re.search(rf"var\.{variable}\s*<=?\s*([\d.]+)", condition)
    assert low and high, f"variable {variable} has no numeric range in its validation"
    return float(low.group(1)), float(high.group(1))


def check_limits_match_config(config: TfConfig) -> None:
    """No tfvars value passes validation only to be refused by shared/config.py at start-up (a crash loop)."""
    bounds = _config_bounds()
    compared = 0
    for service in SERVICES:
        for name, value in _service_env(config, service).items():
            match = re.fullmatch(r"tostring\(var\.([a-z0-9_]+)\)", str(value))
            if not match or name not in bounds or not isinstance(config.variables[match.group(1)].get("default"), (int, float)):
                continue
            low, high = _validation_bounds(config, match.group(1))
            assert bounds[name][0] <= low and high <= bounds[name][1], (
                f"var.{match.group(1)} allows {low:g}..{high:g}, but shared/config.py accepts {name} only in "
                f"{bounds[name][0]:g}..{bounds[name][1]:g}"
            )
            compared += 1
    assert compared >= 10, f"only {compared} numeric settings compared with shared/config.py"


def check_image_cleanup(config: TfConfig) -> None:
    repo = config.resource("google_artifact_registry_repository", "images")
    assert repo.get("cleanup_policy_dry_run") is False, "cleanup policies must run, not dry-run"
    policies = list(repo.get("cleanup_policies", []))
    for dynamic in repo.get("dynamic", []):
        for content in dynamic.get("cleanup_policies", {}).get("content", []):
            policies.append({**content, "_dynamic_for_each": dynamic["cleanup_policies"]["for_each"]})
    deletes_tagged = [
        p
        for p in policies
        if p.get("action") == "DELETE"
        for c in p.get("condition", [])
        if c.get("tag_state", "ANY") in ("TAGGED", "ANY") and c.get("older_than")
    ]
    assert deletes_tagged, "no cleanup policy ever deletes tagged images (every release is tagged)"
    # Under immutable tags Artifact Registry deletes no tagged version: the DELETE policy would do nothing.
    immutable = [c.get("immutable_tags") for c in repo.get("docker_config", [])]
    assert True not in immutable, "immutable tags: the cleanup policies can never delete a tagged image"
    keep_recent = [
        config.resolve(m.get("keep_count"))
        for p in policies
        if p.get("action") == "KEEP"
        for m in p.get("most_recent_versions", [])
    ]
    assert keep_recent and all(isinstance(n, int) and n >= 5 for n in keep_recent), (
        f"the newest releases must be kept: {keep_recent}"
    )
    keeps_deployed = [
        p
        for p in policies
        if p.get("action") == "KEEP"
        and "var.image_tag" in str(p.get("_dynamic_for_each", ""))
        for c in p.get("condition", [])
        if c.get("tag_prefixes")
    ]
    assert keeps_deployed, "the deployed tag is not kept (a rollback may deploy an older image)"


def check_release_ordering(config: TfConfig) -> None:
    states = config.data.get("terraform_remote_state", {})
    name, state = _single("terraform_remote_state", states, "this configuration's own state")
    assert state.get("backend") == "gcs"
    assert state.get("config") == {"bucket": Expr("var.state_bucket"), "prefix": Expr("var.state_prefix")}
    assert state.get("defaults", {}).get("release_sequence") == 0, "the first apply finds no release_sequence"
    guard = rf"var\.release_sequence\s*>=\s*data\.terraform_remote_state\.{name}\.outputs\.release_sequence"
    guarded = [
        p
        for bodies in config.resources.values()
        for body in bodies.values()
        for lifecycle in body.get("lifecycle", [])
        for p in lifecycle.get("precondition", [])
        if re.fullmatch(guard, str(p.get("condition")))
    ]
    assert guarded, "no precondition refuses an older release_sequence than the one applied"
    output = config.outputs.get("release_sequence")
    assert output and output.get("value") == Expr("var.release_sequence"), (
        "output release_sequence (read back by the next apply) is missing"
    )
    assert "state_bucket" in config.variables and "default" not in config.variables["state_bucket"], (
        "state_bucket must be given, or the ordering check reads nothing"
    )


TERRAFORM_CHECKS: list[Callable[[TfConfig], None]] = [
    check_providers_pinned,
    check_variables_documented,
    check_ttl_fields,
    check_processor_subscription,
    check_dead_letter_subscriptions,
    check_pubsub_service_agent,
    check_invokers,
    check_secret_access,
    check_queue,
    check_send_lanes,
    check_service_env,
    check_settings_settable,
    check_send_failed_alert,
    check_scheduler_identity,
    check_reconciler_roles,
    check_outbound_service,
    check_inbox_service,
    check_scheduler_job,
    check_caller_key,
    check_plan_time_data_sources,
    check_variable_limits,
    check_limits_match_config,
    check_image_cleanup,
    check_release_ordering,
]


@functools.lru_cache(maxsize=1)
def _real_config() -> TfConfig:
    return load_config()


@pytest.fixture(scope="module")
def config() -> TfConfig:
    return _real_config()


@pytest.mark.parametrize("check", TERRAFORM_CHECKS, ids=lambda c: c.__name__)
def test_terraform_property(config: TfConfig, check: Callable[[TfConfig], None]) -> None:
    check(config)


def test_every_function_source_exists(config: TfConfig) -> None:
    check_function_sources(config)


def test_reconciler_entry_point_exists(config: TfConfig) -> None:
    source = (REPO / "processor_fn" / "main.py").read_text()
    if not re.search(r"^def reconcile\(", source, re.MULTILINE):
        pytest.skip("processor_fn/main.py does not define reconcile() yet (issue 8)")
    check_function_sources(config, ("reconciler",))


def test_announced_settings_are_read() -> None:
    """Terraform sets ANNOUNCED_ENV ahead of shared/config.py; once config.py reads one, it must read them all."""
    read = _config_env_names() & ANNOUNCED_ENV
    if not read:
        pytest.skip("shared/config.py reads none of the settings announced for issue 8 yet")
    assert read == ANNOUNCED_ENV, f"set by Terraform, read by nothing: {sorted(ANNOUNCED_ENV - read)}"


def test_environment_tfvars_exist_and_name_known_variables(config: TfConfig) -> None:
    assert {"dev", "prod"} <= set(config.tfvars)
    for env, values in config.tfvars.items():
        unknown = set(values) - set(config.variables)
        assert not unknown, f"{env}.tfvars sets undeclared variables {sorted(unknown)}"
        assert "project_id" not in values and "image_tag" not in values, (
            "project_id and image_tag come from the command line"
        )
        # An object variable set in a tfvars must name every service, or the plan fails on a missing attribute.
        for name in ("max_instances", "min_instances", "concurrency"):
            if name in values:
                # The outbound and inbox keys are optional (tfvars from before them stay valid).
                assert set(SERVICES) - {"outbound", "inbox"} <= set(values[name]) <= set(SERVICES), (
                    f"{env}.tfvars: {name} must set {sorted(SERVICES)}"
                )


# --------------------------------------------------------------- Dockerfile


def check_dockerfile(text: str) -> None:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    froms = [line for line in lines if line.upper().startswith("FROM ")]
    assert len(froms) == 1, "expected one FROM"
    assert re.fullmatch(r"FROM python:3\.(1[1-9])\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", froms[0]), (
        f"base image not pinned to an exact slim tag: {froms[0]}"
    )
    users = [line.split(None, 1)[1] for line in lines if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "the image must run as a non-root USER"
    pip = [line for line in lines if "pip install" in line]
    assert pip and all("--no-cache-dir" in line for line in pip), "pip install must use --no-cache-dir"
    assert any("-r requirements.txt" in line for line in pip), "requirements.txt is not installed"
    assert "PYTHONUNBUFFERED=1" in text
    cmd = [line for line in lines if line.upper().startswith(("CMD ", "ENTRYPOINT "))]
    assert cmd and all(flag in cmd[-1] for flag in ("functions-framework", "--target=", "--source=", "--port=")), (
        "the image must start functions-framework with target, source and port"
    )
    for folder in ("shared/", "webhook_fn/", "processor_fn/", "sender_fn/", "inbox_fn/"):
        assert any(line.startswith("COPY ") and folder in line for line in lines), (
            f"{folder} is not copied into the image"
        )


def test_dockerfile() -> None:
    check_dockerfile((REPO / "Dockerfile").read_text())


def test_dockerignore_keeps_the_context_small() -> None:
    entries = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (".git", ".venv", ".venv-*", "tests", "terraform", "bench", "devstack", "docs"):
        assert required in entries, f".dockerignore lacks {required}"
    for kept in ("shared", "requirements.txt", "webhook_fn", "processor_fn", "sender_fn", "inbox_fn"):
        assert kept not in entries, f".dockerignore drops {kept}, which the image needs"


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda t: t.replace("python:3.11.14-slim-bookworm", "python:3.11-slim"), id="floating-tag"),
        pytest.param(lambda t: t.replace("USER 10001:10001", "USER root"), id="root-user"),
        pytest.param(lambda t: re.sub(r"(?m)^USER .*$", "", t), id="no-user"),
        pytest.param(lambda t: t.replace("pip install --no-cache-dir", "pip install"), id="pip-cache"),
        pytest.param(lambda t: t.replace("--target=", "--tgt="), id="no-target"),
    ],
)
def test_dockerfile_check_fails_on_a_broken_dockerfile(broken: Callable[[str], str]) -> None:
    original = (REPO / "Dockerfile").read_text()
    mutated = broken(original)
    assert mutated != original, "the mutation did not change the Dockerfile"
    with pytest.raises(AssertionError):
        check_dockerfile(mutated)


# ------------------------------------------------------ mutation: can fail


def remove_block(text: str, header: str) -> str:
    """Drop the block whose first line matches ``header`` (a regex), up to its closing brace."""
    match = re.search(header, text, re.MULTILINE)
    assert match, f"block {header!r} not found"
    start = text.rfind("\n", 0, match.start()) + 1
    depth = 0
    for index in range(text.index("{", match.start()), len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return text[:start] + text[index + 1 :]
    raise AssertionError(f"block {header!r} is not closed")


def _sub(pattern: str, replacement: str) -> Callable[[str], str]:
    def apply(text: str) -> str:
        changed, count = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
        assert count == 1, f"pattern {pattern!r} not found"
        return changed

    return apply


def _append(extra: str) -> Callable[[str], str]:
    return lambda text: text + "\n" + extra + "\n"


@dataclass(frozen=True)
class Mutation:
    file: str
    change: Callable[[str], str]
    check: Callable[[TfConfig], None]
    expect: str  # a regex the failure message must match, so it fails for the intended reason


MUTATIONS = {
    "no-conversations-ttl": Mutation(
        "firestore.tf",
        _sub(r'toset\(\["conversations", "failed_messages", "seen_messages"', 'toset(["failed_messages", "seen_messages"'),
        check_ttl_fields,
        r"conversations.expireAt",
    ),
    "no-seen-messages-ttl": Mutation(
        "firestore.tf",
        _sub(r'toset\(\["conversations", "failed_messages", "seen_messages"', 'toset(["conversations", "failed_messages"'),
        check_ttl_fields,
        r"seen_messages.expireAt",
    ),
    "dedupe-collection-without-ttl": Mutation(
        "locals.tf",
        _sub(r'^    dedupe        = "seen_messages"', '    dedupe        = "seen"'),
        check_ttl_fields,
        r"vs TTL fields",
    ),
    "ttl-config-removed": Mutation(
        "firestore.tf", lambda t: remove_block(t, r"^  ttl_config \{\}"), check_ttl_fields, r"conversations.expireAt"
    ),
    "no-dead-letter-policy": Mutation(
        "pubsub.tf",
        lambda t: remove_block(t, r"^  dead_letter_policy \{"),
        check_processor_subscription,
        r"dead_letter_policy",
    ),
    "ordering-off": Mutation(
        "pubsub.tf",
        _sub(r"enable_message_ordering = true", "enable_message_ordering = false"),
        check_processor_subscription,
        r"message ordering",
    ),
    "no-push-oidc": Mutation(
        "pubsub.tf", lambda t: remove_block(t, r"^    oidc_token \{"), check_processor_subscription, r"oidc_token"
    ),
    "short-ack-deadline": Mutation(
        "variables.tf",
        _sub(r"default     = 120", "default     = 30"),
        check_processor_subscription,
        r"ack deadline 30 s",
    ),
    "no-dead-letter-hold": Mutation(
        "pubsub.tf",
        lambda t: remove_block(t, r'^resource "google_pubsub_subscription" "dead_letter_hold"'),
        check_dead_letter_subscriptions,
        r"pull subscription for the dead-letter topic",
    ),
    "short-dead-letter-hold": Mutation(
        "variables.tf",
        _sub(r"^  default     = 7$", "  default     = 3"),
        check_dead_letter_subscriptions,
        r"not 7 days",
    ),
    "no-dead-letter-alert": Mutation(
        "monitoring.tf",
        lambda t: remove_block(t, r'^resource "google_monitoring_alert_policy" "dead_letter_waiting"'),
        check_dead_letter_subscriptions,
        r"no alert policy watches num_undelivered_messages",
    ),
    "agent-cannot-publish": Mutation(
        "pubsub.tf",
        lambda t: remove_block(t, r'^resource "google_pubsub_topic_iam_member" "dead_letter_publisher"'),
        check_pubsub_service_agent,
        r"cannot publish dead letters",
    ),
    "processor-public": Mutation(
        "run.tf",
        _sub(r'processor  = google_service_account\.identity\["pubsub_push"\]\.member', 'processor  = "allUsers"'),
        check_invokers,
        r"processor invokers",
    ),
    "sender-extra-invoker": Mutation(
        "run.tf",
        _append(
            'resource "google_cloud_run_v2_service_iam_member" "sender_extra" {\n'
            '  name   = google_cloud_run_v2_service.service["sender"].name\n'
            '  role   = "roles/run.invoker"\n'
            '  member = google_service_account.identity["webhook"].member\n'
            "}"
        ),
        check_invokers,
        r"sender invokers",
    ),
    "webhook-private": Mutation(
        "run.tf",
        lambda t: remove_block(t, r'^resource "google_cloud_run_v2_service_iam_member" "webhook_public"'),
        check_invokers,
        r"webhook invokers",
    ),
    "sender-public-ingress": Mutation(
        "run.tf",
        _sub(
            r'(?s)(^    sender = \{.*?ingress\s+= )"INGRESS_TRAFFIC_INTERNAL_ONLY"',
            r'\1"INGRESS_TRAFFIC_ALL"',
        ),
        check_invokers,
        r"ingress settings",
    ),
    "reconciler-reads-twilio-token": Mutation(
        "secrets.tf",
        _append(
            'resource "google_secret_manager_secret_iam_member" "twilio_token_reconciler" {\n'
            '  secret_id = google_secret_manager_secret.secret["twilio_auth_token"].secret_id\n'
            '  role      = "roles/secretmanager.secretAccessor"\n'
            '  member    = google_service_account.identity["reconciler"].member\n'
            "}"
        ),
        check_secret_access,
        r"secret accessors",
    ),
    "webhook-reads-openai-key": Mutation(
        "secrets.tf",
        _sub(r'webhook   = "twilio_auth_token"', 'webhook   = "openai_api_key"'),
        check_secret_access,
        r"secret accessors",
    ),
    "secret-value-in-state": Mutation(
        "secrets.tf",
        _append(
            'resource "google_secret_manager_secret_version" "openai" {\n'
            '  secret      = google_secret_manager_secret.secret["openai_api_key"].id\n'
            "  secret_data = var.openai_model\n"
            "}"
        ),
        check_secret_access,
        r"secret value in the state",
    ),
    "caller-key-not-in-push-endpoint": Mutation(
        "locals.tf",
        _sub(r'processor_push_endpoint = "\$\{local\.processor_audience\}/\?caller_key=\$\{random_password\.caller_key\.result\}"',
             'processor_push_endpoint = local.processor_audience'),
        check_caller_key,
        r"push endpoint does not carry the caller key",
    ),
    "dead-letter-push-without-key": Mutation(
        "pubsub.tf",
        lambda t: t[::-1].replace("push_endpoint = local.processor_push_endpoint"[::-1],
                                  "push_endpoint = local.processor_audience"[::-1], 1)[::-1],
        check_caller_key,
        r"dead_letter_push does not carry the caller key",
    ),
    "scheduler-without-key": Mutation(
        "scheduler.tf",
        _sub(r'"X-Caller-Key" = random_password\.caller_key\.result', '"X-Caller-Key" = "fixed"'),
        check_caller_key,
        r"reconcile job does not carry the caller key",
    ),
    "sender-trusts-the-stripped-token": Mutation(
        "locals.tf",
        _sub(r'(AUTH_ALLOWED_SERVICE_ACCOUNTS   = google_service_account\.identity\["tasks_invoker"\]\.email\n\s+CALLER_PROOF\s+= )"caller-key"',
             r'\1"signed-token"'),
        check_caller_key,
        r"caller proofs",
    ),
    "outbound-cannot-stamp-tasks": Mutation(
        "secrets.tf",
        _sub(r'    outbound   = google_service_account\.identity\["outbound"\]\.member\n  \}\n\n  project   = var\.project_id\n  secret_id = google_secret_manager_secret\.secret\["caller_key"\]',
             '  }\n\n  project   = var.project_id\n  secret_id = google_secret_manager_secret.secret["caller_key"]'),
        check_secret_access,
        r"secret accessors",
    ),
    "short-caller-key": Mutation(
        "secrets.tf", _sub(r"length  = 43", "length  = 12"), check_caller_key, r"at least 32 letters"
    ),
    "services-start-before-the-key": Mutation(
        "run.tf",
        _sub(r"    google_secret_manager_secret_version\.caller_key,\n", ""),
        check_caller_key,
        r"before the caller key exists",
    ),
    "queue-over-twilio-limit": Mutation(
        "tasks.tf",
        _sub(r"max_dispatches_per_second = var\.tasks_max_dispatches_per_second", "max_dispatches_per_second = 100"),
        check_queue,
        r"not under Twilio",
    ),
    "queue-unlimited-attempts": Mutation(
        "tasks.tf",
        _sub(r"max_attempts       = var\.tasks_max_attempts", "max_attempts       = -1"),
        check_queue,
        r"unlimited",
    ),
    "lane-rate-reset-by-terraform": Mutation(
        "tasks.tf", _sub(r"    ignore_changes = \[rate_limits\]\n", ""), check_send_lanes, r"reset lane"
    ),
    "lane-admin-on-the-shared-queue": Mutation(
        "tasks.tf",
        _sub(r'name     = google_cloud_tasks_queue\.lane\[each\.key\]\.name\n  role     = "roles/cloudtasks\.queueAdmin"',
             'name     = google_cloud_tasks_queue.outbound.name\n  role     = "roles/cloudtasks.queueAdmin"'),
        check_send_lanes,
        r"Cloud Tasks grants",
    ),
    "queue-no-retry-config": Mutation(
        "tasks.tf", lambda t: remove_block(t, r"^  retry_config \{"), check_queue, r"retry_config"
    ),
    "provider-unpinned": Mutation(
        "versions.tf", _sub(r'version = "~> 7\.0"', 'version = ">= 5.0"'), check_providers_pinned, r"not pinned"
    ),
    "variable-undocumented": Mutation(
        "variables.tf",
        _sub(r'^  description = "Region for Cloud Run.*$', ""),
        check_variables_documented,
        r"variable region has no description",
    ),
    "env-name-typo": Mutation(
        "locals.tf",
        _sub(r"^      SENDER_URL ", "      SENDER_ULR "),
        check_service_env,
        r"nothing reads: \['SENDER_ULR'\]",
    ),
    "send-failed-alert-other-event": Mutation(
        "monitoring.tf",
        _sub(r'jsonPayload\.event=\\"send_failed\\"', r'jsonPayload.event=\\"sent\\"'),
        check_send_failed_alert,
        r"send_failed log lines",
    ),
    "send-failed-alert-on-new-metric": Mutation(
        "monitoring.tf",
        _sub(
            r"condition_matched_log \{\n      filter = local\.send_failed_filter\n    \}",
            "condition_threshold {\n"
            '      filter     = "metric.type = \\"logging.googleapis.com/user/${google_logging_metric.send_failed.name}\\""\n'
            '      comparison = "COMPARISON_GT"\n'
            '      duration   = "0s"\n'
            "    }",
        ),
        check_send_failed_alert,
        r"11102",
    ),
    "send-failed-alert-no-rate-limit": Mutation(
        "monitoring.tf",
        lambda t: remove_block(t, r"^    notification_rate_limit \{"),
        check_send_failed_alert,
        r"notification_rate_limit",
    ),
    "budget-precondition-reverted": Mutation(
        "pubsub.tf",
        _sub(
            r"condition     = var\.model_budget_seconds < var\.processor_ack_deadline_seconds",
            "condition     = var.processor_ack_deadline_seconds > var.openai_timeout_seconds * (var.openai_max_retries + 1)",
        ),
        check_processor_subscription,
        r"model_budget_seconds below the lease",
    ),
    "budget-over-lease": Mutation(
        "variables.tf",
        _sub(r'(?s)(variable "model_budget_seconds" \{.*?default\s+= )60', r"\g<1>150"),
        check_processor_subscription,
        r"model budget 150 s does not end before",
    ),
    "dedupe-shorter-than-retention": Mutation(
        "variables.tf",
        _sub(r"default     = 691200", "default     = 86400"),
        check_processor_subscription,
        r"shorter than the 604800",
    ),
    "no-dedupe-precondition": Mutation(
        "pubsub.tf",
        lambda t: remove_block(t, r"^    precondition \{\n      condition     = var\.dedupe_horizon_seconds"),
        check_processor_subscription,
        r"dedupe horizon at least the retention",
    ),
    "no-liveness-precondition": Mutation(
        "pubsub.tf",
        lambda t: remove_block(t, r"^    precondition \{\n      condition     = var\.liveness_seconds"),
        check_processor_subscription,
        r"liveness check",
    ),
    "liveness-settings-split": Mutation(
        "locals.tf",
        _sub(r"^      PROCESSING_LEASE_SECONDS      = tostring\(var\.processor_ack_deadline_seconds\)\n", ""),
        check_processor_subscription,
        r"gets only",
    ),
    "reconciler-invoked-by-push-identity": Mutation(
        "run.tf",
        _sub(r'reconciler = google_service_account\.identity\["scheduler"\]\.member', 'reconciler = google_service_account.identity["pubsub_push"].member'),
        check_invokers,
        r"reconciler invokers",
    ),
    "reconciler-public-ingress": Mutation(
        "run.tf",
        _sub(r'(?s)(^    reconciler = \{.*?ingress\s+= )"INGRESS_TRAFFIC_INTERNAL_ONLY"', r'\1"INGRESS_TRAFFIC_ALL"'),
        check_invokers,
        r"ingress settings",
    ),
    "scheduler-reads-firestore": Mutation(
        "identities.tf",
        _append(
            'resource "google_project_iam_member" "scheduler_firestore" {\n'
            "  project = var.project_id\n"
            '  role    = "roles/datastore.user"\n'
            '  member  = google_service_account.identity["scheduler"].member\n'
            "}"
        ),
        check_scheduler_identity,
        r"may only invoke the reconciler",
    ),
    "scheduler-invokes-sender": Mutation(
        "run.tf",
        _append(
            'resource "google_cloud_run_v2_service_iam_member" "sender_by_scheduler" {\n'
            '  name   = google_cloud_run_v2_service.service["sender"].name\n'
            '  role   = "roles/run.invoker"\n'
            '  member = google_service_account.identity["scheduler"].member\n'
            "}"
        ),
        check_scheduler_identity,
        r"may only invoke the reconciler",
    ),
    "job-targets-sender": Mutation(
        "scheduler.tf",
        _sub(r"uri         = local\.reconciler_audience", "uri         = local.sender_url"),
        check_scheduler_job,
        r"not the reconciler",
    ),
    "job-token-of-tasks-invoker": Mutation(
        "scheduler.tf",
        _sub(r'identity\["scheduler"\]\.email', 'identity["tasks_invoker"].email'),
        check_scheduler_job,
        r"not the scheduler identity",
    ),
    "job-without-oidc": Mutation(
        "scheduler.tf", lambda t: remove_block(t, r"^    oidc_token \{"), check_scheduler_job, r"oidc_token"
    ),
    "job-audience-is-sender": Mutation(
        "scheduler.tf",
        _sub(r"audience              = local\.reconciler_audience", "audience              = local.sender_url"),
        check_scheduler_job,
        r"audience is not the reconciler",
    ),
    "job-hourly": Mutation(
        "scheduler.tf", _sub(r'schedule    = "\* \* \* \* \*"', 'schedule    = "0 * * * *"'), check_scheduler_job, r"every minute"
    ),
    "reconciler-enqueues-project-wide": Mutation(
        "tasks.tf",
        _append(
            'resource "google_project_iam_member" "reconciler_tasks" {\n'
            "  project = var.project_id\n"
            '  role    = "roles/cloudtasks.enqueuer"\n'
            '  member  = google_service_account.identity["reconciler"].member\n'
            "}"
        ),
        check_reconciler_roles,
        r"reconciler grants",
    ),
    "reconciler-firestore-unconditioned": Mutation(
        "identities.tf",
        _append(
            'resource "google_project_iam_member" "reconciler_firestore" {\n'
            "  project = var.project_id\n"
            '  role    = "roles/datastore.user"\n'
            '  member  = google_service_account.identity["reconciler"].member\n'
            "}"
        ),
        check_reconciler_roles,
        r"reconciler grants",
    ),
    "outbound-cannot-enqueue": Mutation(
        "tasks.tf",
        _sub(r'\n    outbound = google_service_account\.identity\["outbound"\]\.member', ""),
        check_outbound_service,
        r"outbound grants",
    ),
    "inbox-private": Mutation(
        "run.tf",
        lambda t: remove_block(t, r'^resource "google_cloud_run_v2_service_iam_member" "inbox_public"'),
        check_invokers,
        r"inbox invokers",
    ),
    "inbox-reads-the-twilio-token": Mutation(
        "secrets.tf",
        _sub(r'    inbox     = "inbox_session_key"', '    inbox     = "twilio_auth_token"'),
        check_inbox_service,
        r"inbox grants",
    ),
    "inbox-subscribes-to-the-inbound-messages": Mutation(
        "pubsub.tf",
        _sub(r"subscription = google_pubsub_subscription\.dead_letter_hold\.name",
             "subscription = google_pubsub_subscription.processor.name"),
        check_inbox_service,
        r"inbox grants",
    ),
    "inbox-index-missing": Mutation(
        "firestore.tf",
        _sub(r'    paused = \{ field = "pausedUntil", order = "ASCENDING" \}\n', ""),
        check_inbox_service,
        r"composite indexes",
    ),
    "inbox-index-wrong-order": Mutation(
        "firestore.tf",
        _sub(r'recent = \{ field = "updatedAt", order = "DESCENDING" \}', 'recent = { field = "updatedAt", order = "ASCENDING" }'),
        check_inbox_service,
        r"composite indexes",
    ),
    "reconciler-cannot-act-as-invoker": Mutation(
        "identities.tf",
        _sub(r'(?s)("acts_as_tasks_invoker" \{.*?)\n    reconciler = google_service_account\.identity\["reconciler"\]\.member', r"\1"),
        check_reconciler_roles,
        r"reconciler grants",
    ),
    "persona-not-deployable": Mutation(
        "locals.tf",
        _sub(r"^      SYSTEM_PROMPT .*\n", ""),
        check_settings_settable,
        r"settings no service gets.*SYSTEM_PROMPT",
    ),
    "setting-fixed-in-terraform": Mutation(
        "locals.tf",
        _sub(r"(OPENAI_MAX_TOKENS\s+=) tostring\(var\.openai_max_tokens\)", r'\1 "600"'),
        check_settings_settable,
        r"OPENAI_MAX_TOKENS = '600' is fixed",
    ),
    "validation-wider-than-config": Mutation(
        "variables.tf",
        _sub(r"var\.openai_max_tokens <= 16000", "var.openai_max_tokens <= 32000"),
        check_limits_match_config,
        r"accepts OPENAI_MAX_TOKENS only in 16..16000",
    ),
    "data-source-depends-on": Mutation(
        "providers.tf",
        _sub(r'(data "google_project" "this" \{\n  project_id = var\.project_id\n)', r"\1\n  depends_on = [google_project_service.enabled]\n"),
        check_plan_time_data_sources,
        r"has depends_on",
    ),
    "region-one-digit": Mutation(
        "variables.tf", _sub(r'\[0-9\]\+\$", var\.region', '[0-9]$", var.region'), check_variable_limits, r"rejects europe-west10"
    ),
    "retention-limit-seven-days": Mutation(
        "variables.tf",
        _sub(r"var\.dead_letter_retention_days <= 31", "var.dead_letter_retention_days <= 7"),
        check_variable_limits,
        r"up to 31 days",
    ),
    "tagged-images-never-deleted": Mutation(
        "registry.tf",
        lambda t: remove_block(t, r'^  cleanup_policies \{\n    id     = "delete-old-releases"'),
        check_image_cleanup,
        r"ever deletes tagged",
    ),
    "immutable-tags-keep-every-image": Mutation(
        "registry.tf",
        _sub(r"immutable_tags = false", "immutable_tags = true"),
        check_image_cleanup,
        r"never delete a tagged image",
    ),
    "deployed-tag-not-kept": Mutation(
        "registry.tf",
        lambda t: remove_block(t, r'^  dynamic "cleanup_policies" \{'),
        check_image_cleanup,
        r"deployed tag is not kept",
    ),
    "no-release-guard": Mutation(
        "release.tf", lambda t: remove_block(t, r"^  lifecycle \{"), check_release_ordering, r"no precondition refuses"
    ),
    "release-output-renamed": Mutation(
        "outputs.tf",
        _sub(r'^output "release_sequence"', 'output "last_release"'),
        check_release_ordering,
        r"output release_sequence",
    ),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_check_fails_when_the_property_is_removed(name: str, tmp_path: Path) -> None:
    mutation = MUTATIONS[name]
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*"))
    target = copy / mutation.file
    original = target.read_text()
    changed = mutation.change(original)
    assert changed != original, "the mutation did not change the file"
    target.write_text(changed)

    mutation.check(_real_config())  # the real configuration still passes
    with pytest.raises(AssertionError, match=mutation.expect):
        mutation.check(load_config(copy))


def test_every_terraform_check_has_a_mutation() -> None:
    checks = {check.__name__ for check in TERRAFORM_CHECKS}
    mutated = {mutation.check.__name__ for mutation in MUTATIONS.values()}
    assert checks <= mutated, f"checks never shown to fail: {sorted(checks - mutated)}"


# -------------------------------------------------------------- Cloud Build

CLOUD_BUILD_BUILTINS = {
    "PROJECT_ID",
    "PROJECT_NUMBER",
    "BUILD_ID",
    "LOCATION",
    "COMMIT_SHA",
    "SHORT_SHA",
    "REVISION_ID",
    "BRANCH_NAME",
    "TAG_NAME",
    "REPO_NAME",
}


def _check_substitutions(text: str, required: set[str]) -> None:
    declared = set(re.findall(r"^  (_[A-Z0-9_]+):", text, re.MULTILINE))
    assert required <= declared, f"substitutions: {sorted(declared)}"
    # Cloud Build replaces every $NAME / ${NAME} it knows and rejects the rest;
    # shell variables must be written $$NAME.
    used = set(re.findall(r"(?<!\$)\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))
    unknown = used - CLOUD_BUILD_BUILTINS - declared
    assert not unknown, f"unknown substitutions (write shell variables as $$NAME): {sorted(unknown)}"


def _steps(text: str) -> dict[str, str]:
    """Each step's text by id."""
    parts = re.split(r"^  - id: ([a-z-]+)$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


RUNS_REPOSITORY_TESTS = re.compile(r"make test|pytest|pip install|python3? -m")


def _code(text: str) -> str:
    """The config without its comment lines."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def check_cloudbuild_tests(text: str) -> None:
    """cloudbuild-test.yaml: the tests, and nothing that needs or could use deploy rights."""
    steps = _steps(text)
    assert "test" in steps, f"no test step: {sorted(steps)}"
    assert "google-cloud-cli:emulators" in steps["test"] and "make test" in steps["test"], (
        "the test step must run make test with emulators"
    )
    assert re.search(r"^tags: \[[^\]]*\"wa-tests\"", text, re.MULTILINE), "the tests build must be tagged wa-tests"
    for forbidden in ("terraform apply", "terraform init", "docker push", "gcloud ", "secretEnv", "availableSecrets"):
        assert forbidden not in _code(text), f"the tests build must not use {forbidden!r}: it runs without deploy rights"
    _check_substitutions(text, set())


def check_cloudbuild(text: str) -> None:
    """cloudbuild.yaml: no repository tests with deploy rights; gated on them; ordered, lock-tolerant apply."""
    steps = _steps(text)
    ids = list(steps)
    assert [i for i in ids if i in {"gate", "build", "push", "deploy"}] == ["gate", "build", "push", "deploy"], (
        f"steps gate, build, push, deploy expected in that order, found {ids}"
    )
    _check_substitutions(text, {"_REGION", "_REPOSITORY", "_ENV", "_TF_STATE_BUCKET", "_TESTS_TAG", "_LOCK_TIMEOUT"})
    assert not RUNS_REPOSITORY_TESTS.search(_code(text)), "the deploy build must not run the repository's tests or installs"
    assert re.search(r"^  _TESTS_TAG: wa-tests$", text, re.MULTILINE), "the gate must wait for the wa-tests build"
    gate = steps["gate"]
    assert "gcloud builds list" in gate and "tags=${_TESTS_TAG}" in gate and "substitutions.SHORT_SHA=$SHORT_SHA" in gate, (
        "the gate must look up the tests build of this SHORT_SHA"
    )
    assert re.search(r"SUCCESS\)\s*\n\s*echo[^\n]*\n\s*exit 0", gate), "the gate passes only on SUCCESS"
    assert re.search(r'waitFor: \[[^\]]*"gate"', steps["push"]), "push must wait for the gate (tests passed)"
    image = "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}/whatsapp-assistant:$SHORT_SHA"
    assert text.count(image) >= 2, "build and push must use the same SHORT_SHA-tagged image"
    deploy = steps["deploy"]
    assert re.search(r'-var="image_tag=\$SHORT_SHA"', deploy), "deploy must apply the image tag that was pushed"
    assert "-lock-timeout=${_LOCK_TIMEOUT}" in deploy, "a second build must wait for the state lock, not fail on it"
    assert re.search(r"^  _LOCK_TIMEOUT: \d+m$", text, re.MULTILINE), "_LOCK_TIMEOUT must be minutes"
    assert '-var="release_sequence=$$sequence"' in deploy and ".release-sequence" in gate, (
        "deploy must pass this build's release_sequence (terraform/release.tf)"
    )
    assert "terraform output -raw release_sequence" in deploy and "SKIPPED" in deploy, (
        "deploy must say so when it skips an older build"
    )
    assert "TF_VAR_state_bucket=${_TF_STATE_BUCKET}" in deploy and "TF_VAR_state_prefix=whatsapp-assistant/${_ENV}" in deploy
    assert 'prefix=whatsapp-assistant/${_ENV}"' in deploy, "the state read back must be the state applied"


def test_cloudbuild() -> None:
    check_cloudbuild((REPO / "cloudbuild.yaml").read_text())


def test_cloudbuild_tests() -> None:
    check_cloudbuild_tests((REPO / "cloudbuild-test.yaml").read_text())


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda t: t.replace("  - id: push\n", "  - id: upload\n"), id="no-push-step"),
        pytest.param(lambda t: t.replace('-var="image_tag=$SHORT_SHA"', '-var="image_tag=latest"'), id="no-tag"),
        pytest.param(lambda t: t.replace('case "$$status" in', 'case "$status" in'), id="shell-var"),
        pytest.param(lambda t: t.replace("terraform apply -input", "make test && terraform apply -input"), id="tests-with-deploy-rights"),
        pytest.param(lambda t: t.replace('waitFor: ["gate", "build"]', 'waitFor: ["build"]'), id="push-not-gated"),
        pytest.param(lambda t: t.replace(" -lock-timeout=${_LOCK_TIMEOUT}", ""), id="fails-on-lock"),
        pytest.param(lambda t: t.replace(' \\\n          -var="release_sequence=$$sequence"', ""), id="no-release-order"),
        pytest.param(lambda t: t.replace("            SUCCESS)", "            SUCCESS|WORKING)"), id="gate-passes-running-tests"),
    ],
)
def test_cloudbuild_check_fails_on_a_broken_config(broken: Callable[[str], str]) -> None:
    original = (REPO / "cloudbuild.yaml").read_text()
    mutated = broken(original)
    assert mutated != original, "the mutation did not change cloudbuild.yaml"
    with pytest.raises(AssertionError):
        check_cloudbuild(mutated)


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda t: t.replace('"/workspace/.tools:$$PATH"', '"/workspace/.tools:$PATH"'), id="shell-var"),
        pytest.param(lambda t: t.replace('tags: ["wa-tests"]', "tags: []"), id="untagged"),
        pytest.param(lambda t: t.replace("make test", "make lint"), id="no-tests"),
        pytest.param(lambda t: t + "\n  - id: deploy\n    args: [terraform apply -auto-approve]\n", id="deploys"),
    ],
)
def test_cloudbuild_tests_check_fails_on_a_broken_config(broken: Callable[[str], str]) -> None:
    original = (REPO / "cloudbuild-test.yaml").read_text()
    mutated = broken(original)
    assert mutated != original, "the mutation did not change cloudbuild-test.yaml"
    with pytest.raises(AssertionError):
        check_cloudbuild_tests(mutated)


# ------------------------------------------- dashboard and user-facing alerts


def _alerts_text(config: TfConfig) -> dict[str, str]:
    return {name: json.dumps(body) for name, body in config.of_type("google_monitoring_alert_policy").items()}


def _dashboard_text(config: TfConfig) -> str:
    """The dashboard's JSON expression with its ``local.event_chart.X`` widgets written out."""
    name, dashboard = _single("google_monitoring_dashboard", config.of_type("google_monitoring_dashboard"), "dashboard")
    text = str(dashboard.get("dashboard_json", ""))
    assert text.startswith("jsonencode("), f"dashboard {name}: dashboard_json is not built with jsonencode"
    charts = str(config.locals.get("event_chart", ""))
    return text + "\n" + charts if "local.event_chart." in text else text


def check_dashboard(config: TfConfig) -> None:
    text = _dashboard_text(config)
    wanted = {
        "inbound messages": "local.event_chart.inbound",
        "replies sent": "local.event_chart.replies",
        "failures by reason": "local.event_chart.failures",
        "model errors": "local.event_chart.model",
        "dead letters waiting": "pubsub.googleapis.com/subscription/num_undelivered_messages",
        "the send queue's depth": "cloudtasks.googleapis.com/queue/depth",
        "the send queue's age": "cloudtasks.googleapis.com/queue/task_attempt_delays",
        "webhook latency": "local.service_names.webhook",
        "model latency": "local.service_names.processor",
        "the model call's own time per business": "google_logging_metric.model_latency.name",
    }
    for what, needle in wanted.items():
        assert needle in text, f"the dashboard does not show {what} ({needle})"
    model = config.resource("google_logging_metric", "model_latency")
    assert model.get("value_extractor") == "EXTRACT(jsonPayload.model_ms)", "model latency is not read from model_ms"
    assert "answered" in str(model.get("filter")), "model latency must come from the answered line"
    assert "google_pubsub_subscription.dead_letter_hold.name" in text, "dead letters: not the hold subscription"
    assert "google_cloud_tasks_queue.outbound.name" in text, "queue charts: not the send queue"
    assert text.count("run.googleapis.com/request_latencies") >= 2, "webhook and model latency need request_latencies"
    charts = str(config.locals.get("event_chart", ""))
    for event in ("received", "sent"):
        assert f'["{event}"]' in charts, f"no chart counts {event} events"
    failures = config.locals.get("failure_events", [])
    for event in ("send_failed", "stalled", "ai_failed", "dead_lettered"):
        assert event in failures, f"failures by reason leave out {event}"
    assert "metric.label.reason" in charts, "failures are not split by reason"
    # The charts read the events metric; it must extract what they split by.
    metric = config.resource("google_logging_metric", "events")
    assert "jsonPayload.event" in str(metric.get("filter")), "the events metric does not select structured events"
    extractors = metric.get("label_extractors", {})
    for label in ("event", "reason", "business"):
        assert extractors.get(label) == f"EXTRACT(jsonPayload.{label})", f"the events metric has no {label} label"
    declared = {labels.get("key") for labels in _block(metric, "metric_descriptor").get("labels", [])}
    assert {"event", "reason", "business"} <= declared, f"metric labels declared: {sorted(declared)}"
    assert "google_logging_metric.events.name" in str(config.locals.get("events_metric")), "charts do not read the events metric"


def _matched_log_alerts(config: TfConfig, event: str) -> list[str]:
    """Alerts of their own for ``event``: a log-match on it and on no other event."""
    found = []
    for name, body in config.of_type("google_monitoring_alert_policy").items():
        for condition in body.get("conditions", []):
            for log in condition.get("condition_matched_log", []):
                log_filter = str(config.resolve(log.get("filter")))
                if re.findall(r'jsonPayload\.event="([a-z_]+)"', log_filter) == [event]:
                    found.append(name)
    return found


def check_user_facing_alerts(config: TfConfig) -> None:
    """Alerts that page for what hurts users, each created in the first apply, each with a runbook line."""
    assert _matched_log_alerts(config, "stalled"), "no alert for messages not finished within the liveness bound (stalled)"
    assert _matched_log_alerts(config, "ai_failed"), "no alert for the model failing (ai_failed)"
    alerts = _alerts_text(config)
    assert any("num_undelivered_messages" in text for text in alerts.values()), "no alert for dead letters waiting"
    rate = [
        name
        for name, body in config.of_type("google_monitoring_alert_policy").items()
        for condition in body.get("conditions", [])
        for threshold in condition.get("condition_threshold", [])
        if "logging.googleapis.com/log_entry_count" in str(threshold.get("filter"))
        and 'severity="ERROR"' in str(threshold.get("filter"))
        and _duration_seconds(threshold.get("duration")) >= 60
    ]
    assert rate, "no failure rate alert (ERROR log entries per minute, held for a while)"
    for name, body in config.of_type("google_monitoring_alert_policy").items():
        content = str(_block(body, "documentation").get("content", ""))
        assert re.search(r"^\s*Runbook: \S.{20,}", content, re.MULTILINE), f"alert {name}: no runbook line in its documentation"


TERRAFORM_CHECKS += [check_dashboard, check_user_facing_alerts]

MONITORING_MUTATIONS = {
    "dashboard-without-queue-depth": Mutation(
        "dashboard.tf",
        _sub(r"cloudtasks\.googleapis\.com/queue/depth", "cloudtasks.googleapis.com/api/request_count"),
        check_dashboard,
        r"send queue's depth",
    ),
    "dashboard-without-model-call-time": Mutation(
        "dashboard.tf",
        _sub(r'filter = "metric\.type=\\"logging\.googleapis\.com/user/\$\{google_logging_metric\.model_latency\.name\}\\""',
             'filter = "metric.type=\\"run.googleapis.com/request_count\\""'),
        check_dashboard,
        r"model call's own time",
    ),
    "dashboard-without-model-chart": Mutation(
        "dashboard.tf",
        _sub(r"^        local\.event_chart\.model,\n", ""),
        check_dashboard,
        r"model errors",
    ),
    "events-metric-without-reason": Mutation(
        "dashboard.tf",
        _sub(r'^    reason   = "EXTRACT\(jsonPayload\.reason\)"\n', ""),
        check_dashboard,
        r"no reason label",
    ),
    "no-liveness-alert": Mutation(
        "dashboard.tf",
        lambda t: remove_block(t, r'^resource "google_monitoring_alert_policy" "liveness"'),
        check_user_facing_alerts,
        r"liveness bound",
    ),
    "no-model-alert": Mutation(
        "dashboard.tf",
        lambda t: remove_block(t, r'^resource "google_monitoring_alert_policy" "model_failing"'),
        check_user_facing_alerts,
        r"model failing",
    ),
    "no-failure-rate-alert": Mutation(
        "dashboard.tf",
        lambda t: remove_block(t, r'^resource "google_monitoring_alert_policy" "failure_rate"'),
        check_user_facing_alerts,
        r"failure rate",
    ),
    "alert-without-runbook": Mutation(
        "monitoring.tf",
        _sub(r"^      Runbook: ", "      "),
        check_user_facing_alerts,
        r"no runbook line",
    ),
}
MUTATIONS.update(MONITORING_MUTATIONS)


@pytest.mark.parametrize("name", sorted(MONITORING_MUTATIONS))
def test_monitoring_check_fails_when_the_property_is_removed(name: str, tmp_path: Path) -> None:
    test_check_fails_when_the_property_is_removed(name, tmp_path)
