"""Each business answered from its own documents, end to end: profiles-apply, the webhook, the processor
with the offline model and embeddings, Firestore's vector search on the emulator, the sender.

The assertions are on what the model received (its system prompt carries the
excerpts), on what the user got, and on what the message entry keeps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from devstack.stack import ROOT
from tests.e2e.knowledge_world import apply_knowledge, embedded, new_business, requests_of
from tests.plugin import unique_user, wait_until

SOL_PRICES = "# Prices\n\n## Bread\n\nSourdough loaf: 4.50 €. Baguette: 1.20 €.\n\n## Opening hours\n\nWe open at 7:00.\n"
LUNA_PRICES = "# Prices\n\n## Bread\n\nSourdough loaf: 5.20 €. Rye bread: 3.10 €.\n\n## Opening hours\n\nWe open at 9:00.\n"


def businesses(sol: str, luna: str, **sol_extra: object) -> dict[str, dict[str, object]]:
    return {
        sol: {"name": "Sol", "system_prompt": "You are Sol's assistant.", "knowledge": ["sol/prices.md"],
              "handoff_keyword": "agent", **sol_extra},
        luna: {"name": "Luna", "system_prompt": "You are Luna's assistant.", "knowledge": ["luna/prices.md"]},
    }


def replies_from(pipeline, user: str, business: str) -> list[str]:  # noqa: ANN001
    return [m.body for m in pipeline.twilio_messages_to(user) if m.from_ == business]


def ask(pipeline, user: str, business: str, text: str) -> tuple[str, str]:  # noqa: ANN001
    count = len(replies_from(pipeline, user, business))
    _, sid, _ = pipeline.post(user, text, to=business)
    wait_until(lambda: len(replies_from(pipeline, user, business)) > count, timeout=30)
    return sid, replies_from(pipeline, user, business)[-1]


def test_two_businesses_with_the_same_words_are_each_answered_from_their_own_documents(pipeline, tmp_path: Path) -> None:
    sol, luna = new_business(), new_business()
    output = apply_knowledge(pipeline, tmp_path, businesses(sol, luna),
                             {"sol/prices.md": SOL_PRICES, "luna/prices.md": LUNA_PRICES})
    assert output.count("knowledge version") == 2 and "sol/prices.md added (2 chunks)" in output
    user = unique_user()
    question = "how much is the sourdough?"
    sol_sid, sol_reply = ask(pipeline, user, sol, question)
    luna_sid, luna_reply = ask(pipeline, user, luna, question)
    assert "4.50" in sol_reply and sol_reply.endswith("— from Prices") and "5.20" not in sol_reply
    assert "5.20" in luna_reply and "4.50" not in luna_reply
    [sol_call] = requests_of(pipeline, question, "You are Sol's assistant.")
    [luna_call] = requests_of(pipeline, question, "You are Luna's assistant.")
    assert "Sourdough loaf: 4.50 €" in sol_call[0]["content"] and "5.20" not in sol_call[0]["content"]
    assert "Sourdough loaf: 5.20 €" in luna_call[0]["content"] and "4.50" not in luna_call[0]["content"]
    entry = pipeline.entry(user, sol_sid, sol)
    assert entry.knowledge_chunks and all(c.startswith("sol/prices.md#") for c in entry.knowledge_chunks)
    assert all(c.startswith("luna/") for c in pipeline.entry(user, luna_sid, luna).knowledge_chunks)
    assert embedded(pipeline, question) == 2, "each answer embedded its question once"


def test_knowledge_only_answers_unknown_without_the_model_and_offers_the_handoff(pipeline, tmp_path: Path) -> None:
    sol, luna = new_business(), new_business()
    apply_knowledge(pipeline, tmp_path, businesses(sol, luna, knowledge_only=True,
                                                   unknown_reply="Sorry, that is not in our documents."),
                    {"sol/prices.md": SOL_PRICES, "luna/prices.md": LUNA_PRICES})
    user = unique_user()
    question = "can I pay with bitcoin?"
    sid, reply = ask(pipeline, user, sol, question)
    assert reply == "Sorry, that is not in our documents. Send AGENT to talk to a person."
    assert pipeline.model_requests_for(question) == [], "no model call"
    assert embedded(pipeline, question) == 1
    entry = pipeline.entry(user, sid, sol)
    wait_until(lambda: pipeline.entry(user, sid, sol).status == "sent", timeout=30)
    assert entry.knowledge_unknown and entry.knowledge_chunks == []
    # The handoff it offers works as always: the bot pauses for a person.
    _, handoff = ask(pipeline, user, sol, "agent")
    assert "person" in handoff.lower() or "shortly" in handoff.lower()


def test_an_edited_document_reapplied_replaces_its_old_chunks(pipeline, tmp_path: Path) -> None:
    sol, luna = new_business(), new_business()
    docs = {"sol/prices.md": SOL_PRICES, "luna/prices.md": LUNA_PRICES}
    apply_knowledge(pipeline, tmp_path, businesses(sol, luna), docs)
    user = unique_user()
    first_sid, first = ask(pipeline, user, sol, "sourdough price?")
    assert "4.50" in first
    edited = {**docs, "sol/prices.md": SOL_PRICES.replace("4.50", "4.90")}
    output = apply_knowledge(pipeline, tmp_path, businesses(sol, luna), edited)
    assert "sol/prices.md changed (2 chunks)" in output and "1 embedded, 1 reused" in output
    assert "knowledge unchanged" in output, "the other business's documents did not change: nothing written"

    def new_answer() -> str | None:
        _, reply = ask(pipeline, user, sol, "sourdough price?")
        return reply if "4.90" in reply else None

    assert "4.50" not in wait_until(new_answer, timeout=30)  # the profile cache (1 s here) lets it through
    last = pipeline.conversation(user, sol)
    versions = {e.knowledge_version for e in last.messages.values()}
    assert len(versions) == 2 and pipeline.entry(user, first_sid, sol).knowledge_version in versions


def test_admin_show_and_the_trip_view_name_the_chunks_the_model_was_given(pipeline, tmp_path: Path) -> None:
    sol, luna = new_business(), new_business()
    apply_knowledge(pipeline, tmp_path, businesses(sol, luna),
                    {"sol/prices.md": SOL_PRICES, "luna/prices.md": LUNA_PRICES})
    user = unique_user()
    sid, _ = ask(pipeline, user, sol, "what does a baguette cost?")
    chunk = pipeline.entry(user, sid, sol).knowledge_chunks[0]
    env = {**os.environ, **pipeline.stack.function_env()}
    shown = subprocess.run([sys.executable, "-m", "shared.ops.admin", "show", user, "--business", sol], env=env,
                           cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
    assert f"knowledge: {chunk}" in shown
    simulator = pipeline.stack.simulator
    assert simulator is not None
    query = urllib.parse.urlencode({"user": user, "business": sol})
    with urllib.request.urlopen(f"{simulator.url.rstrip('/')}/api/trip/{sid}?{query}", timeout=10) as response:
        trip = json.load(response)
    assert trip["firestore"]["entry"]["knowledgeChunks"] == [chunk]
    assert any(e["event"] == "knowledge" for e in trip["events"])
