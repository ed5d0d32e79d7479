"""A budgeted business through the whole pipeline: its answers' usage as the OpenAI stand-in reported it, its
counters read by ``make admin ARGS="usage"``, its budget reply once spent (no model call), its opt-out heard."""

from __future__ import annotations

import time

from shared.domain.usage import Usage
from tests.e2e.test_controls import admin, new_business, put_profile, replies_from, wait_finished, wait_replies
from tests.plugin import unique_user


def test_a_budgeted_business_is_counted_then_answered_with_its_budget_reply(pipeline) -> None:  # noqa: ANN001
    business, user = new_business(), unique_user()
    put_profile(pipeline, business, name="Budgeted", daily_token_budget=1, budget_reply="Our assistant rests today.")
    _, first, _ = pipeline.post(user, "how much is a loaf?", to=business)
    [first_reply] = wait_replies(pipeline, user, business, 1)
    assert "«how much is a loaf?»" in first_reply, first_reply
    usage = Usage.from_data(pipeline.entry(user, first, business).usage)
    # The stand-in reports usage as OpenAI does; the answer's prompt includes the system prompt.
    assert usage.model and usage.prompt_tokens > 0 and usage.completion_tokens > 0 and usage.cost_usd > 0
    time.sleep(1.2)  # the spend's cache (BUDGET_CACHE_SECONDS=1 here)
    calls = len(pipeline.model_requests_for("and a croissant?"))
    _, second, _ = pipeline.post(user, "and a croissant?", to=business)
    assert wait_replies(pipeline, user, business, 2)[1] == "Our assistant rests today."
    assert len(pipeline.model_requests_for("and a croissant?")) == calls == 0
    entry = pipeline.entry(user, second, business)
    assert entry.decided is not None and entry.decided.reason == "budget" and entry.usage == {}
    pipeline.post(user, "STOP", to=business)
    wait_finished(pipeline, user, business, 3)
    assert pipeline.conversation(user, business).opted_out
    assert len(replies_from(pipeline, user, business)) == 3
    report = admin(pipeline, "usage", "--business", business, "--days", "1").stdout
    row = next(line.split() for line in report.splitlines() if line.startswith(business) and "total" not in line)
    assert row[2:4] == ["1", str(usage.tokens)], report


def test_a_business_without_a_budget_is_not_counted(pipeline) -> None:  # noqa: ANN001
    business, user = new_business(), unique_user()
    put_profile(pipeline, business, name="Unlimited")
    _, sid, _ = pipeline.post(user, "no budget here", to=business)
    wait_replies(pipeline, user, business, 1)
    assert Usage.from_data(pipeline.entry(user, sid, business).usage).tokens > 0
    report = admin(pipeline, "usage", "--business", business, "--days", "1").stdout
    assert report.startswith("no usage counted"), report
