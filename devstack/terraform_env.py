"""What terraform/ declares for the running services, rendered for the local stack.

The local stack must start each function with the environment Terraform
gives its Cloud Run service, put the Cloud Run front end before it with the
ingress, invokers and time-out Terraform declares, and point Pub/Sub push and
Cloud Scheduler where Terraform points them. This module reads those from the
HCL (python-hcl2, as tests/infra does) and evaluates them for a set of
variables (an environment's tfvars), substituting only what cannot exist
locally: the services' run.app URLs (``local.run_urls``), the project
number and the generated caller key. A variable Terraform forgets, misspells
or sets to a value the code refuses therefore fails locally too.

Resource attributes known only after apply are computed the way Google
forms them: a service account's ``email`` and ``member``, a secret's ``id``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import hcl2

from devstack.hcl_expr import HclError, Path as RefPath, evaluate, unquote

TERRAFORM = Path(__file__).resolve().parents[1] / "terraform"
RUN_SERVICE = "google_cloud_run_v2_service"
INVOKER_TYPES = ("google_cloud_run_v2_service_iam_member", "google_cloud_run_v2_service_iam_binding")


class TerraformError(RuntimeError):
    """terraform/ cannot be rendered for these variables: what Terraform itself would refuse, or what we cannot read."""


@dataclass(frozen=True)
class Service:
    """One Cloud Run service as Terraform declares it."""

    key: str
    name: str
    url: str
    env: Mapping[str, str]
    ingress: str
    timeout_seconds: float
    invokers: frozenset[str]


@dataclass(frozen=True)
class Push:
    """A push subscription's delivery: where, and the OIDC token it carries."""

    subscription: str
    endpoint: str
    service_account: str
    audience: str


@dataclass(frozen=True)
class Job:
    """The Cloud Scheduler job's HTTP target."""

    uri: str
    method: str
    headers: Mapping[str, str]
    service_account: str
    audience: str
    attempt_deadline_seconds: float


@dataclass(frozen=True)
class Deployment:
    services: Mapping[str, Service]
    pushes: Mapping[str, Push]
    job: Job
    secret_ids: Mapping[str, str]
    identities: Mapping[str, str]  # terraform/identities.tf's keys to their e-mails


@dataclass
class _Source:
    variables: dict[str, Any]
    locals: dict[str, Any]
    resources: dict[tuple[str, str], dict[str, Any]]


@functools.lru_cache(maxsize=4)
def _read(directory: Path) -> _Source:
    source = _Source({}, {}, {})
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle)
        for entry in parsed.get("variable", []):
            for name, body in entry.items():
                source.variables[unquote(name)] = body
        for entry in parsed.get("locals", []):
            source.locals.update({unquote(k): v for k, v in entry.items() if not k.startswith("__")})
        for entry in parsed.get("resource", []):
            for rtype, named in entry.items():
                for name, body in named.items():
                    source.resources[(unquote(rtype), unquote(name))] = body
    return source


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", duration)
    if not match:
        raise TerraformError(f"{duration!r} is not a duration like '60s'")
    return float(match.group(1))


class _Scope:
    """Resolves references for one evaluation; ``each`` is bound inside a for_each instance."""

    def __init__(self, source: _Source, variables: Mapping[str, Any], substitutions: Mapping[RefPath, Any],
                 each: tuple[str, Any] | None = None) -> None:
        self.source, self.variables, self.substitutions, self.each = source, variables, substitutions, each
        self._locals: dict[str, Any] = {}

    def bound(self, key: str, value: Any) -> _Scope:
        scope = _Scope(self.source, self.variables, self.substitutions, (key, value))
        scope._locals = self._locals
        return scope

    def resolve(self, path: RefPath) -> Any:
        for length in range(len(path), 1, -1):
            if path[:length] in self.substitutions:
                return _index(self.substitutions[path[:length]], path[length:])
        root = path[0]
        if root == "var":
            if path[1] not in self.variables:
                raise TerraformError(f"variable {path[1]} has no value (no default, not in the tfvars)")
            return _index(self.variables[path[1]], path[2:])
        if root == "local":
            return _index(self.local(path[1]), path[2:])
        if root == "each":
            if self.each is None:
                raise TerraformError("each. used outside a for_each")
            return _index(self.each[0] if path[1] == "key" else self.each[1], path[2:])
        if root == "data":
            raise TerraformError(f"data source {'.'.join(map(str, path[:3]))} is not available locally")
        return self._attribute(path)

    def local(self, name: str) -> Any:
        if ("local", name) in self.substitutions:
            return self.substitutions[("local", name)]
        if name not in self._locals:
            if name not in self.source.locals:
                raise TerraformError(f"undeclared local {name}")
            self._locals[name] = evaluate(self.source.locals[name], self)
        return self._locals[name]

    def instances(self, rtype: str, name: str) -> dict[str, tuple[dict[str, Any], _Scope]]:
        """Each instance of a resource (one, or one per for_each key) with the scope to evaluate it in."""
        body = self.source.resources.get((rtype, name))
        if body is None:
            raise TerraformError(f"resource {rtype}.{name} is not declared")
        if "for_each" not in body:
            return {"": (body, self)}
        spec = body["for_each"]
        if isinstance(spec, dict):  # a literal map: its values are still expressions
            items = {unquote(k): evaluate(v, self) for k, v in spec.items() if not k.startswith("__")}
        else:
            items = evaluate(spec, self)
        if isinstance(items, list):
            items = {item: item for item in items}
        return {str(key): (body, self.bound(str(key), value)) for key, value in items.items()}

    def _attribute(self, path: RefPath) -> Any:
        rtype, name, rest = path[0], path[1], path[2:]
        instances = self.instances(rtype, name)
        key = "" if "" in instances else str(rest[0])
        if key not in instances:
            raise TerraformError(f"{rtype}.{name} has no instance {key!r}")
        body, scope = instances[key]
        attrs = rest if key == "" else rest[1:]
        attribute, more = attrs[0], attrs[1:]
        computed = _computed(rtype, attribute, body, scope)
        if computed is not None:
            return _index(computed, more)
        if attribute not in body:
            raise TerraformError(f"{rtype}.{name}.{attribute} is only known after apply; the local stack cannot use it")
        return _index(evaluate(body[attribute], scope), more)


def _computed(rtype: str, attribute: str, body: dict[str, Any], scope: _Scope) -> Any:
    """Attributes Google assigns, in the form it assigns them."""
    if rtype == "google_service_account" and attribute in ("email", "member", "name"):
        email = f"{evaluate(body['account_id'], scope)}@{evaluate(body['project'], scope)}.iam.gserviceaccount.com"
        return {"email": email, "member": f"serviceAccount:{email}",
                "name": f"projects/{evaluate(body['project'], scope)}/serviceAccounts/{email}"}[attribute]
    if rtype == "google_secret_manager_secret" and attribute in ("id", "name"):
        return f"projects/{evaluate(body['project'], scope)}/secrets/{evaluate(body['secret_id'], scope)}"
    return None


def _index(value: Any, steps: RefPath) -> Any:
    for step in steps:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            raise TerraformError(f"cannot read [{step!r}] of {value!r}") from None
    return value


def _defaults(source: _Source) -> dict[str, Any]:
    scope = _Scope(source, {}, {})
    return {name: evaluate(body["default"], scope) for name, body in source.variables.items() if "default" in body}


def _check_preconditions(body: dict[str, Any], scope: _Scope, what: str) -> None:
    """The resource's lifecycle preconditions, as `terraform plan` checks them."""
    for lifecycle in body.get("lifecycle", []):
        for precondition in lifecycle.get("precondition", []):
            if not evaluate(precondition["condition"], scope):
                raise TerraformError(f"{what}: {evaluate(precondition['error_message'], scope)}")


def render(
    variables: Mapping[str, Any],
    urls: Mapping[str, str],
    caller_key: str,
    project_number: str = "000000000000",
    directory: Path = TERRAFORM,
) -> Deployment:
    """The services, push subscriptions and scheduler job for these tfvars, with local URLs."""
    source = _read(directory)
    unknown = set(variables) - set(source.variables)
    if unknown:
        raise TerraformError(f"the tfvars set undeclared variables: {sorted(unknown)}")
    values = {**_defaults(source), **variables}
    substitutions: dict[RefPath, Any] = {
        ("local", "run_urls"): dict(urls),
        ("data", "google_project", "this", "number"): project_number,
        ("random_password", "caller_key", "result"): caller_key,
    }
    scope = _Scope(source, values, substitutions)
    try:
        return Deployment(
            services=_services(scope),
            pushes=_pushes(scope),
            job=_job(scope),
            secret_ids={key: evaluate(body["secret_id"], s)
                        for key, (body, s) in scope.instances("google_secret_manager_secret", "secret").items()},
            identities={key: _computed("google_service_account", "email", body, s)
                        for key, (body, s) in scope.instances("google_service_account", "identity").items()},
        )
    except HclError as exc:
        raise TerraformError(f"terraform/ has an expression the local stack cannot evaluate: {exc}") from None


def _services(scope: _Scope) -> dict[str, Service]:
    invokers: dict[str, set[str]] = {}
    for rtype in INVOKER_TYPES:
        for (kind, name) in [k for k in scope.source.resources if k[0] == rtype]:
            for body, s in scope.instances(kind, name).values():
                service = evaluate(body["name"], s)
                members = evaluate(body["members"], s) if "members" in body else [evaluate(body["member"], s)]
                invokers.setdefault(service, set()).update(members)
    services: dict[str, Service] = {}
    for key, (body, s) in scope.instances(RUN_SERVICE, "service").items():
        _check_preconditions(body, s, f"service {key}")
        settings = scope.local("services")[key]
        name = evaluate(body["name"], s)
        env = scope.local("env")[key]
        bad = {k: v for k, v in env.items() if not isinstance(v, str)}
        if bad:
            raise TerraformError(f"service {key}: environment values must be strings, got {bad}")
        services[key] = Service(
            key=key, name=name, url=scope.local("run_urls")[key],
            env={k: v for k, v in env.items() if v != ""},  # run.tf leaves empty values out
            ingress=settings["ingress"], timeout_seconds=_seconds(settings["timeout"]),
            invokers=frozenset(invokers.get(name, set())),
        )
    return services


def _pushes(scope: _Scope) -> dict[str, Push]:
    pushes: dict[str, Push] = {}
    for (rtype, name) in [k for k in scope.source.resources if k[0] == "google_pubsub_subscription"]:
        for body, s in scope.instances(rtype, name).values():
            _check_preconditions(body, s, f"subscription {name}")
            for push in body.get("push_config", []):
                oidc = push["oidc_token"][0]
                subscription = evaluate(body["name"], s)
                endpoint = evaluate(push["push_endpoint"], s)
                pushes[subscription] = Push(
                    subscription, endpoint, evaluate(oidc["service_account_email"], s),
                    evaluate(oidc["audience"], s) if "audience" in oidc else endpoint,
                )
    return pushes


def _job(scope: _Scope) -> Job:
    (body, s), = scope.instances("google_cloud_scheduler_job", "reconcile").values()
    _check_preconditions(body, s, "scheduler job reconcile")
    target = body["http_target"][0]
    oidc = target["oidc_token"][0]
    uri = evaluate(target["uri"], s)
    return Job(
        uri=uri, method=evaluate(target.get("http_method", '"POST"'), s),
        headers=evaluate(target.get("headers", {}), s),
        service_account=evaluate(oidc["service_account_email"], s),
        audience=evaluate(oidc["audience"], s) if "audience" in oidc else uri,
        attempt_deadline_seconds=_seconds(evaluate(body["attempt_deadline"], s)),
    )
