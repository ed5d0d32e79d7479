"""``make eval`` on this machine: the golden questions against a Firestore emulator and the offline model.

    python -m devstack.eval [PROFILES_FILE] [--golden FILE]     (default: profiles.example.yaml)

Starts a Firestore emulator on a free loopback port and, unless
``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` is set (then that model answers and
embeds), the offline model with its embeddings; then runs
shared/ops/knowledge_eval.py exactly as the profiles build does, and exits
with its status. Everything it started is stopped when it ends.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from devstack.__main__ import ROOT, load_dotenv
from devstack.emulators import FirestoreEmulator, check_prerequisites, start_all, stop_all
from devstack.offline_knowledge import OFFLINE_MAX_DISTANCE
from devstack.openai_stub import OpenAIStub

PROJECT = "local-project"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profiles_file", type=Path, nargs="?", default=ROOT / "profiles.example.yaml")
    parser.add_argument("--golden", type=Path)
    args = parser.parse_args(argv)
    load_dotenv(ROOT / ".env")
    problems = check_prerequisites()
    if problems:
        print("cannot run the evaluation:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        return 2

    from google.cloud import firestore

    from shared.config import Settings
    from shared.domain.knowledge_eval import GoldenError
    from shared.domain.profiles import ProfileError
    from shared.ops.knowledge_eval import evaluate, golden_path

    golden = args.golden or golden_path(args.profiles_file)
    emulator = FirestoreEmulator(PROJECT)
    stub: OpenAIStub | None = None
    env = {k: v for k, v in os.environ.items() if k != "FIRESTORE_EMULATOR_HOST"}
    try:
        start_all([emulator], timeout=120)
        env.update(emulator.env())
        os.environ.update(emulator.env())
        key = env.get("OPENAI_API_KEY", "")
        if not key and not env.get("OPENAI_BASE_URL"):
            stub = OpenAIStub().start()
            env["OPENAI_BASE_URL"] = stub.base_url
            env.setdefault("KNOWLEDGE_MAX_DISTANCE", str(OFFLINE_MAX_DISTANCE))
            print(f"eval: offline model and embeddings on {stub.base_url} (set OPENAI_API_KEY for a real model)")
        settings = Settings.from_env({**env, "GOOGLE_CLOUD_PROJECT": PROJECT, "SECRET_SOURCE": "env"})
        client = firestore.Client(project=PROJECT)
        try:
            ok = evaluate(settings, args.profiles_file, golden, lambda: client, lambda: key or "offline-model")
        except (ProfileError, GoldenError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        finally:
            client.close()
        return 0 if ok else 1
    finally:
        if stub is not None:
            stub.stop()
        stop_all([emulator])


if __name__ == "__main__":
    sys.exit(main())
