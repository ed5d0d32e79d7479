"""What the image runs, read from the Dockerfile: the entry point command and the image's environment.

The local stack starts each function with the Dockerfile's ``CMD`` (through
``/bin/sh -c``, as the image does) and its ``ENV``, in the repository
instead of /app, with Cloud Run's own variables (``PORT``, ``K_SERVICE``,
``K_REVISION``, ``K_CONFIGURATION``) and the service's Terraform environment
on top. So the command and the variables the tests run are the image's: a
Dockerfile that names the wrong entry point, or a service that forgets
FUNCTION_SOURCE, fails locally.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Mapping

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_WORKDIR = "/app"


class DockerfileError(RuntimeError):
    """The Dockerfile says something the local stack cannot reproduce."""


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    found = []
    for line in joined.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2:
            found.append((parts[0].upper(), parts[1]))
    return found


def command(dockerfile: Path = DOCKERFILE) -> list[str]:
    """The image's CMD in exec form, with the image's working directory read as the repository."""
    cmds = [args for instruction, args in _instructions(dockerfile.read_text()) if instruction == "CMD"]
    if not cmds:
        raise DockerfileError(f"{dockerfile} has no CMD")
    try:
        argv = json.loads(cmds[-1])
    except json.JSONDecodeError:
        raise DockerfileError("the Dockerfile's CMD must be in exec form (a JSON array)") from None
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise DockerfileError("the Dockerfile's CMD must be a JSON array of strings")
    return argv


def image_env(dockerfile: Path = DOCKERFILE) -> dict[str, str]:
    """The image's ENV, with /app read as the repository."""
    env: dict[str, str] = {}
    for instruction, args in _instructions(dockerfile.read_text()):
        if instruction != "ENV":
            continue
        for pair in shlex.split(args):
            name, sep, value = pair.partition("=")
            if not sep:
                raise DockerfileError(f"ENV {args!r}: use the NAME=value form")
            env[name] = value.replace(IMAGE_WORKDIR, str(ROOT))
    return env


def process_env(service_name: str, port: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The image's environment as Cloud Run starts it: ENV, then PORT and the K_* variables.

    ``PATH`` leads to this interpreter's scripts, where ``functions-framework`` is
    installed (in the image it is on the system PATH).
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.endswith("_EMULATOR_HOST")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(image_env())
    env.update({
        "PORT": str(port),
        "K_SERVICE": service_name,
        "K_REVISION": f"{service_name}-00001-loc",
        "K_CONFIGURATION": service_name,
    })
    return env
