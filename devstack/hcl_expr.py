"""Evaluate the HCL expressions of terraform/ that the local stack reads, as Terraform would.

python-hcl2 parses the files but leaves every expression as text: ``"..."``
for a string template, ``${...}`` for an expression. This module evaluates
that text: literals, templates, references (``var.x``, ``local.y["k"]``,
``google_service_account.identity["sender"].email``), the operators and the
few functions terraform/ uses (``tostring``, ``join``, ``jsonencode``, ...).
References are resolved by the caller's :class:`Scope`, so what a resource
attribute means stays in devstack/terraform_env.py.

Anything else (for expressions, splats, template directives, an unknown
function) raises :class:`HclError` naming it: the local stack then refuses to
start rather than guess what Terraform would do.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, Callable, Protocol, Sequence

Path = tuple[Any, ...]
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_-]*)|(?P<str>\")"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||=>|[-+*/%<>!?:.,()\[\]{}=]))"
)
_BINARY = [("||",), ("&&",), ("==", "!="), ("<", ">", "<=", ">="), ("+", "-"), ("*", "/", "%")]


class HclError(ValueError):
    """An expression the local stack cannot evaluate the way Terraform would."""


class Scope(Protocol):
    def resolve(self, path: Path) -> Any:
        """The value of a reference such as ``("var", "region")``."""
        ...


def tf_string(value: Any) -> str:
    """Terraform's ``tostring`` and template interpolation: ``true``, ``120``, ``0.001``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = format(Decimal(repr(value)), "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, str):
        return value
    raise HclError(f"cannot turn {value!r} into a string")


def _join(separator: str, items: Sequence[Any]) -> str:
    return separator.join(tf_string(item) for item in items)


def _replace(text: str, find: str, replacement: str) -> str:
    if len(find) > 1 and find.startswith("/") and find.endswith("/"):
        return re.sub(find[1:-1], replacement.replace("$", "\\"), text)
    return text.replace(find, replacement)


def _jsonencode(value: Any) -> str:
    """Terraform's ``jsonencode``: compact, map keys sorted, and ``<``, ``>``, ``&`` escaped as Terraform does."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "tostring": tf_string,
    "jsonencode": _jsonencode,
    "join": _join,
    "replace": _replace,
    "lower": lambda text: text.lower(),
    "upper": lambda text: text.upper(),
    "toset": lambda items: list(dict.fromkeys(items)),
    "length": len,
    "concat": lambda *lists: [item for items in lists for item in items],
    "merge": lambda *maps: {k: v for m in maps for k, v in m.items()},
    "coalesce": lambda *values: next(v for v in values if v not in (None, "")),
}


def _template(text: str, scope: Scope) -> str:
    """A quoted template's inside: literal parts and ``${...}`` interpolations."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("%{", i):
            raise HclError(f"template directives are not supported: {text!r}")
        if text.startswith("${", i):
            end = _closing(text, i + 2)
            out.append(tf_string(evaluate_expression(text[i + 2 : end], scope)))
            i = end + 1
        elif text[i] == "\\" and i + 1 < len(text):
            out.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(text[i + 1], text[i : i + 2]))
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _closing(text: str, start: int) -> int:
    """Index of the ``}`` closing an interpolation that starts at ``start``, strings and nesting skipped."""
    depth, i, quoted = 0, start, False
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise HclError(f"unclosed interpolation in {text!r}")


class _Parser:
    """A precedence-climbing parser that evaluates as it goes (every expression here is pure)."""

    def __init__(self, text: str, scope: Scope) -> None:
        self.text, self.scope, self.pos = text, scope, 0

    def peek(self) -> str:
        match = _TOKEN.match(self.text, self.pos)
        return "" if match is None else (match.group("op") or match.group("name") or match.group("num") or '"')

    def take(self, expected: str | None = None) -> str:
        match = _TOKEN.match(self.text, self.pos)
        if match is None:
            raise HclError(f"cannot read {self.text[self.pos:]!r} in {self.text!r}")
        token = match.group("op") or match.group("name") or match.group("num") or '"'
        if expected is not None and token != expected:
            raise HclError(f"expected {expected!r} at {self.text[self.pos:]!r} in {self.text!r}")
        self.pos = match.end()
        return token

    def done(self) -> bool:
        return not self.text[self.pos :].strip()

    def expression(self) -> Any:
        condition = self.binary(0)
        if self.peek() != "?":
            return condition
        self.take("?")
        yes = self.expression()
        self.take(":")
        no = self.expression()
        return yes if condition else no

    def binary(self, level: int) -> Any:
        if level == len(_BINARY):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek() in _BINARY[level]:
            op = self.take()
            right = self.binary(level + 1)
            left = _apply(op, left, right)
        return left

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not self.unary()
        if self.peek() == "-":
            self.take()
            return -self.unary()
        return self.postfix()

    def postfix(self) -> Any:
        value, path = self.primary()
        while self.peek() in (".", "["):
            if self.take() == ".":
                step: Any = self.take()
                if step == "*":
                    raise HclError(f"splat expressions are not supported: {self.text!r}")
            else:
                step = self.expression()
                self.take("]")
            if path is not None:
                path = (*path, step)
            else:
                value = value[step]
        return self.scope.resolve(path) if path is not None else value

    def primary(self) -> tuple[Any, Path | None]:
        token = self.take()
        if token == "(":
            value = self.expression()
            self.take(")")
            return value, None
        if token == '"':
            return self.string(), None
        if token == "[":
            items = []
            while self.peek() != "]":
                if self.peek() == "for":
                    raise HclError(f"for expressions are not supported: {self.text!r}")
                items.append(self.expression())
                if self.peek() == ",":
                    self.take()
            self.take("]")
            return items, None
        if token == "{":
            return self.object(), None
        if token[0].isdigit():
            number = Decimal(token)
            return (int(number) if number == number.to_integral_value() and "." not in token else float(number)), None
        if token in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[token], None
        if self.peek() == "(":
            return self.call(token), None
        return None, (token,)

    def string(self) -> str:
        start = self.pos - 1
        i = self.pos
        while i < len(self.text):
            if self.text[i] == "\\":
                i += 2
                continue
            if self.text.startswith("${", i):
                i = _closing(self.text, i + 2) + 1
                continue
            if self.text[i] == '"':
                self.pos = i + 1
                return _template(self.text[start + 1 : i], self.scope)
            i += 1
        raise HclError(f"unclosed string in {self.text!r}")

    def object(self) -> dict[Any, Any]:
        if self.peek() == "for":
            raise HclError(f"for expressions are not supported: {self.text!r}")
        result: dict[Any, Any] = {}
        while self.peek() != "}":
            token = self.take()
            key = self.string() if token == '"' else token
            if self.peek() not in ("=", ":"):
                raise HclError(f"expected = after the key {key!r} in {self.text!r}")
            self.take()
            result[key] = self.expression()
            if self.peek() == ",":
                self.take()
        self.take("}")
        return result

    def call(self, name: str) -> Any:
        function = FUNCTIONS.get(name)
        if function is None:
            raise HclError(f"function {name}() is not supported")
        self.take("(")
        args = []
        while self.peek() != ")":
            args.append(self.expression())
            if self.peek() == ",":
                self.take()
        self.take(")")
        return function(*args)


def _apply(op: str, left: Any, right: Any) -> Any:
    operations: dict[str, Callable[[Any, Any], Any]] = {
        "||": lambda a, b: a or b, "&&": lambda a, b: a and b,
        "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b, ">": lambda a, b: a > b, "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
        "+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
        "/": lambda a, b: a / b, "%": lambda a, b: a % b,
    }
    return operations[op](left, right)


def evaluate_expression(text: str, scope: Scope) -> Any:
    parser = _Parser(text, scope)
    value = parser.expression()
    if not parser.done():
        raise HclError(f"unexpected {text[parser.pos:]!r} in {text!r}")
    return value


def evaluate(value: Any, scope: Scope) -> Any:
    """A value as python-hcl2 gives it: ``"template"``, ``${expression}``, a bare expression, or a structure."""
    if isinstance(value, dict):
        return {_key(k): evaluate(v, scope) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [evaluate(item, scope) for item in value]
    if not isinstance(value, str):
        return value
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        return _template(value[1:-1], scope)
    if value.startswith("${") and value.endswith("}"):
        return evaluate_expression(value[2:-1], scope)
    return evaluate_expression(value, scope)


def _key(key: str) -> str:
    return key[1:-1] if len(key) >= 2 and key.startswith('"') and key.endswith('"') else key


def unquote(key: str) -> str:
    """A block label or map key as python-hcl2 quotes it: ``"google_x"`` -> ``google_x``."""
    return _key(key)
