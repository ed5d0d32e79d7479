"""A tool's parameters: a JSON Schema object, checked against its meta-schema, matched in linear time.

The schema is the business's (its profile); the arguments checked against it
come from the model, so from the user: every ``pattern`` is matched by RE2
(no backtracking, whatever the pattern), and one RE2 cannot compile is
refused when the profile is loaded. ``patternProperties`` would be matched by
Python's ``re`` inside jsonschema, so it is refused too. Pure: no I/O.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import re2

# jsonschema (and its referencing stack) is imported by the functions below, on a
# business's first tool: every function loads this module, few profiles have tools.
if TYPE_CHECKING:
    from jsonschema import ValidationError
    from jsonschema.protocols import Validator

MAX_SCHEMA_CHARS = 8000
Fail = Callable[[str, str], Exception]


def argument_errors(parameters: Mapping[str, Any], arguments: Any) -> list[str]:
    """What is wrong with ``arguments`` for a tool with these ``parameters`` (empty: they fit)."""
    from jsonschema import Draft202012Validator
    from jsonschema.validators import validator_for

    validator = _linear_validator(validator_for(parameters, default=Draft202012Validator))(parameters)
    return [f"{'/'.join(str(p) for p in error.absolute_path) or '(arguments)'}: {error.message}"[:200]
            for error in sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))[:5]]


@functools.lru_cache(maxsize=256)
def _re2(pattern: str) -> Any:
    return re2.compile(pattern)


def _re2_pattern(validator: Validator, pattern: str, instance: Any, schema: Mapping[str, Any]) -> Iterator[ValidationError]:
    """``pattern`` in RE2: the arguments come from the model, so from the user, and must not make a pattern backtrack."""
    from jsonschema import ValidationError

    if validator.is_type(instance, "string") and not _re2(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.lru_cache(maxsize=8)
def _linear_validator(base: type[Validator]) -> type[Validator]:
    from jsonschema.validators import extend

    return extend(base, {"pattern": _re2_pattern})


def _keywords(schema: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair of every mapping anywhere in a schema."""
    if isinstance(schema, Mapping):
        for key, value in schema.items():
            yield str(key), value
            yield from _keywords(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _keywords(value)


def checked_parameters(raw: Any, where: str, fail: Fail) -> dict[str, Any]:
    """A JSON Schema for an object, valid against its meta-schema (Draft 2020-12 unless ``$schema`` names another)."""
    if not isinstance(raw, Mapping):
        raise fail(where, "must be a JSON Schema object such as {type: object, properties: {...}}")
    from jsonschema import Draft202012Validator, SchemaError
    from jsonschema.validators import validator_for

    schema = json.loads(json.dumps(raw))
    if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
        raise fail(where, f"is over {MAX_SCHEMA_CHARS} characters as JSON")
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        path = "/".join(str(p) for p in exc.absolute_path)
        raise fail(where, f"is not a valid JSON Schema{f' at {path}' if path else ''}: {exc.message}"[:300]) from None
    for key, value in _keywords(schema):
        if key == "patternProperties":
            raise fail(where, "patternProperties is not supported (Python's re would match it); list the properties")
        if key != "pattern" or not isinstance(value, str):
            continue
        try:
            _re2(value)
        except re2.error:
            raise fail(where, f"pattern {value[:100]!r} is not a regular expression RE2 can match in linear time "
                              "(no backreferences or lookaround)") from None
    if schema.get("type") != "object":
        raise fail(f"{where}.type", "must be 'object': function arguments are a JSON object")
    if not isinstance(schema.get("properties", {}), Mapping):
        raise fail(f"{where}.properties", "must map argument names to their schemas")
    return schema


