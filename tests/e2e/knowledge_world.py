"""Businesses with documents on the running stack, applied as ops apply them (``make profiles-apply``)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from devstack.stack import ROOT


def new_business() -> str:
    return f"whatsapp:+1777{uuid.uuid4().int % 10**7:07d}"


def apply_knowledge(pipeline: Any, folder: Path, businesses: dict[str, dict[str, Any]],
                    documents: dict[str, str]) -> str:
    """Write the documents and a profiles file naming them into ``folder``, then profiles-apply it.

    Returns the command's output (one "applied" line and one knowledge line per business).
    """
    for name, text in documents.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    profiles = folder / "profiles.yaml"
    profiles.write_text(yaml.safe_dump({"businesses": businesses}, allow_unicode=True))
    env = {**os.environ, **pipeline.stack.function_env()}
    done = subprocess.run([sys.executable, "-m", "shared.ops.admin", "profiles-apply", str(profiles)], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def requests_of(pipeline: Any, text: str, marker: str) -> list[list[dict[str, Any]]]:
    """The model calls for ``text`` whose system prompt names ``marker`` (the business's own prompt)."""
    return [m for m in pipeline.model_requests_for(text) if marker in m[0].get("content", "")]


def embedded(pipeline: Any, text: str) -> int:
    """How many embedding requests carried ``text`` as an input."""
    return sum(1 for r in pipeline.model.embedding_requests if text in r["inputs"])
