"""Validate a value against a schema of a Google API discovery document, offline.

google-api-python-client ships the discovery documents Google publishes for
its APIs (googleapiclient/discovery_cache/documents/NAME.VERSION.json); they
describe every field the API accepts, with its type, format and enum values.
A configuration we send (a dashboard, a Cloud Build file) is checked against
them recursively: an unknown or misspelt field, a wrong type, an enum value the
API does not know, a deprecated enum value, or an output-only field set by us
is an error, whatever our own expectations say.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

_DURATION = re.compile(r"-?\d+(\.\d{1,9})?s")
_INT64 = re.compile(r"-?\d+")


@functools.lru_cache(maxsize=None)
def document(name: str, version: str) -> dict[str, Any]:
    """The discovery document ``name.version`` that google-api-python-client ships."""
    spec = importlib.util.find_spec("googleapiclient")
    assert spec and spec.submodule_search_locations, (
        "google-api-python-client is not installed (pinned in requirements-dev.txt): pip install -r requirements-dev.txt"
    )
    package = Path(next(iter(spec.submodule_search_locations)))
    path = package / "discovery_cache" / "documents" / f"{name}.{version}.json"
    assert path.is_file(), f"no discovery document {path.name} in google-api-python-client"
    return json.loads(path.read_text())


def validate(value: Any, api: tuple[str, str], schema: str) -> list[str]:
    """Every way ``value`` breaks the discovery schema ``schema`` of ``api``; empty when it conforms."""
    schemas = document(*api)["schemas"]
    assert schema in schemas, f"{api[0]} {api[1]} has no schema {schema}"
    errors: list[str] = []
    _check(value, {"$ref": schema}, schemas, schema, errors)
    return errors


def _check(value: Any, spec: dict[str, Any], schemas: dict[str, Any], path: str, errors: list[str]) -> None:
    if "$ref" in spec:
        merged = {**schemas[spec["$ref"]], **{k: v for k, v in spec.items() if k != "$ref"}}
        _check(value, merged, schemas, path, errors)
        return
    kind = spec.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object, got {type(value).__name__} {value!r:.60}")
            return
        properties = spec.get("properties")
        extra = spec.get("additionalProperties")
        for key, item in value.items():
            where = f"{path}.{key}"
            if properties is not None and key in properties:
                field = properties[key]
                if field.get("readOnly"):
                    errors.append(f"{where}: output only; the API sets it, a configuration must not")
                if field.get("deprecated"):
                    errors.append(f"{where}: deprecated in the API")
                _check(item, field, schemas, where, errors)
            elif extra is not None:
                _check(item, extra, schemas, where, errors)
            else:
                known = ", ".join(sorted(properties or {}))
                errors.append(f"{where}: unknown field (the schema {spec.get('id', '?')} has: {known})")
        return
    if kind == "array":
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__} {value!r:.60}")
            return
        for index, item in enumerate(value):
            _check(item, spec.get("items", {}), schemas, f"{path}[{index}]", errors)
        return
    if kind == "string":
        fmt = spec.get("format")
        if fmt in ("int64", "uint64") and isinstance(value, int) and not isinstance(value, bool):
            return  # the JSON mapping of a 64-bit integer accepts a number as well as a string
        if not isinstance(value, str):
            errors.append(f"{path}: expected a string, got {type(value).__name__} {value!r:.60}")
            return
        if fmt == "google-duration" and not _DURATION.fullmatch(value):
            errors.append(f"{path}: {value!r} is not a duration such as '60s'")
        if fmt in ("int64", "uint64") and not _INT64.fullmatch(value):
            errors.append(f"{path}: {value!r} is not an integer")
        if "enum" in spec:
            if value not in spec["enum"]:
                errors.append(f"{path}: {value!r} is not one of {spec['enum']}")
            elif spec.get("enumDeprecated", [False] * len(spec["enum"]))[spec["enum"].index(value)]:
                errors.append(f"{path}: {value!r} is deprecated in the API")
        return
    if kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{path}: expected an integer, got {type(value).__name__} {value!r:.60}")
        return
    if kind == "number":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.append(f"{path}: expected a number, got {type(value).__name__} {value!r:.60}")
        return
    if kind == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{path}: expected true or false, got {type(value).__name__} {value!r:.60}")
        return
    if kind == "any" or kind is None:
        return
    errors.append(f"{path}: schema type {kind!r} is not understood by this validator")
