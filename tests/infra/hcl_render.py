"""Evaluate one expression of terraform/ with the real Terraform binary, offline.

The dashboard's JSON is an HCL expression (``jsonencode({...})`` over locals,
``for`` expressions and template strings); re-implementing HCL in Python to
see the JSON Google receives would test our reimplementation, not Terraform.
Instead a scratch root is made from terraform/'s variables and locals, with
every reference to a resource or data source replaced by a placeholder string
(nothing that needs a provider is left, so ``terraform init`` downloads
nothing), and ``terraform apply`` of that root prints the expression's value.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

# Top-level blocks that need a provider or name resources; dropped from the scratch root.
_DROPPED_BLOCKS = ("resource", "data", "terraform", "provider", "moved", "output", "import", "check", "removed")
_REFERENCE = re.compile(
    r"\b(?:data\.)?(?:google|terraform|random)_[a-z0-9_]+\.[a-z0-9_]+(?:\[[^\]\[]+\])?(?:\.[a-z0-9_]+)*"
)


_HEREDOC = re.compile(r"<<-?([A-Za-z_]+)\n")


def _segments(text: str) -> Iterator[tuple[str, str]]:
    """Split HCL into ``("code", ...)`` and ``("literal", ...)`` pieces.

    Literal pieces are string text and heredoc text outside ``${...}``;
    everything else (including the inside of each interpolation) is code.
    Comments are returned as literals so nothing in them is rewritten.
    """
    stack = ["code"]  # "code", "string", or "interp" (code inside ${ } with its own brace depth)
    depths = [0]
    start = 0
    index = 0

    def emit(upto: int, as_kind: str) -> Iterator[tuple[str, str]]:
        nonlocal start
        if upto > start:
            yield as_kind, text[start:upto]
        start = upto

    while index < len(text):
        top = stack[-1]
        char = text[index]
        if top in ("code", "interp"):
            if char == "#" or text.startswith("//", index):
                end = text.find("\n", index)
                end = len(text) if end == -1 else end
                yield from emit(index, "code")
                yield from emit(end, "literal")
                index = end
                continue
            if text.startswith("/*", index):
                end = text.index("*/", index) + 2
                yield from emit(index, "code")
                yield from emit(end, "literal")
                index = end
                continue
            heredoc = _HEREDOC.match(text, index) if char == "<" else None
            if heredoc:
                marker = heredoc.group(1)
                body = heredoc.end()
                closing = re.compile(rf"^[ \t]*{marker}[ \t]*$", re.MULTILINE).search(text, body)
                assert closing, f"heredoc {marker} is not closed"
                yield from emit(body, "code")
                # Interpolations inside a heredoc are not rewritten; terraform/ has none in locals.
                yield from emit(closing.start(), "literal")
                index = closing.start()
                continue
            if char == '"':
                yield from emit(index + 1, "code")
                stack.append("string")
                depths.append(0)
            elif char == "{":
                depths[-1] += 1
            elif char == "}":
                if top == "interp" and depths[-1] == 0:
                    yield from emit(index, "code")
                    stack.pop()
                    depths.pop()
                else:
                    depths[-1] -= 1
            index += 1
            continue
        # inside a string literal
        if char == "\\":
            index += 2
            continue
        if text.startswith("$${", index):
            index += 3
            continue
        if text.startswith("${", index) or text.startswith("%{", index):
            yield from emit(index + 2, "literal")
            stack.append("interp")
            depths.append(0)
            index += 2
            continue
        if char == '"':
            yield from emit(index, "literal")
            stack.pop()
            depths.pop()
        index += 1
    yield from emit(len(text), "code")


def _placeholder(match: re.Match[str]) -> str:
    name = re.sub(r'[\["\]]', "", match.group(0))
    return f'"tf:{name}"'


def rewrite_references(text: str) -> str:
    """Replace every resource or data source reference in code by a placeholder string.

    A reference starts in code but may run through a quoted index
    (``identity["processor"].email``), so matches are found on the whole text
    and kept only where they start in code.
    """
    code_starts = []
    offset = 0
    for kind, piece in _segments(text):
        if kind == "code":
            code_starts.append((offset, offset + len(piece)))
        offset += len(piece)

    def in_code(position: int) -> bool:
        return any(start <= position < end for start, end in code_starts)

    return _REFERENCE.sub(lambda m: _placeholder(m) if in_code(m.start()) else m.group(0), text)


def top_level_blocks(text: str) -> list[tuple[str, int, int]]:
    """(block type, start, end) of each top-level block: ``resource "x" "y" { ... }``."""
    blocks = []
    depth = 0
    block_start = None
    block_type = ""
    offset = 0
    for kind, piece in _segments(text):
        if kind == "code":
            for position, char in enumerate(piece):
                absolute = offset + position
                if char == "{":
                    if depth == 0:
                        line_start = text.rfind("\n", 0, absolute) + 1
                        header = text[line_start:absolute]
                        block_type = header.split()[0] if header.split() else ""
                        block_start = line_start
                    depth += 1
                elif char == "}":
                    depth -= 1
                    if depth == 0 and block_start is not None:
                        blocks.append((block_type, block_start, absolute + 1))
                        block_start = None
        offset += len(piece)
    return blocks


def attribute_expression(text: str, attribute: str) -> str:
    """The text of ``attribute = <expression>``'s expression (balanced brackets), e.g. dashboard_json."""
    match = re.search(rf"^\s*{re.escape(attribute)}\s*=\s*", text, re.MULTILINE)
    assert match, f"no {attribute} = ... found"
    start = match.end()
    depth = 0
    offset = 0
    for kind, piece in _segments(text[start:]):
        if kind == "code":
            for position, char in enumerate(piece):
                if char in "([{":
                    depth += 1
                elif char in ")]}":
                    depth -= 1
                elif char == "\n" and depth == 0 and offset + position > 0:
                    return text[start : start + offset + position]
                if depth == 0 and char in ")]}":
                    return text[start : start + offset + position + 1]
        offset += len(piece)
    raise AssertionError(f"{attribute}: expression not closed")


def scratch_root(directory: Path, target: Path, outputs: dict[str, str]) -> Path:
    """Write a provider-free root with ``directory``'s variables and locals plus ``outputs`` (name: HCL expression)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(directory.glob("*.tf")):
        text = path.read_text()
        kept = []
        cursor = 0
        for block_type, start, end in top_level_blocks(text):
            if block_type in _DROPPED_BLOCKS:
                kept.append(text[cursor:start])
                cursor = end
        kept.append(text[cursor:])
        (target / path.name).write_text(rewrite_references("".join(kept)))
    body = "".join(
        f'output "{name}" {{\n  value = {rewrite_references(expression)}\n}}\n' for name, expression in outputs.items()
    )
    (target / "zz_rendered_outputs.tf").write_text(body)
    return target


def terraform_binary() -> str:
    found = shutil.which("terraform")
    assert found, "terraform is not installed (scripts/check-infra.sh says how to install it)"
    return found


def render(directory: Path, workdir: Path, outputs: dict[str, str], variables: dict[str, str],
           var_file: Path | None = None) -> dict[str, str]:
    """Apply the scratch root (no resources, no provider) and return each output's raw string value."""
    root = scratch_root(directory, workdir / "root", outputs)
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_CLI_CONFIG_FILE": "/dev/null",
           "TF_DATA_DIR": str(workdir / ".terraform")}
    env.pop("TF_CLI_ARGS", None)
    binary = terraform_binary()

    def run(*args: str) -> str:
        result = subprocess.run([binary, *args], cwd=root, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"terraform {args[0]} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    run("init", "-input=false", "-backend=false", "-no-color")
    arguments = ["apply", "-input=false", "-auto-approve", "-no-color"]
    if var_file is not None:
        arguments.append(f"-var-file={var_file}")
    arguments += [f"-var={name}={value}" for name, value in variables.items()]
    run(*arguments)
    return {
        name: run("output", "-no-color", "-raw", name) for name in outputs
    }
