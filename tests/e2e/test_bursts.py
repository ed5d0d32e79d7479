"""Bursts end to end: quick messages from one user get one model call and one reply (docs/decisions/0014-bursts.md)."""

from __future__ import annotations

import time

from tests.e2e.test_exactly_once import restart, settle  # noqa: F401 - the fixture
from tests.plugin import unique_user, wait_until


def test_three_quick_messages_get_one_reply_from_one_model_call(pipeline, restart) -> None:  # noqa: F811
    restart("processor", BURST_WINDOW_SECONDS="1.5")
    user = unique_user()
    texts = ["burst hello", "burst I need", "burst a table for two"]
    started = len(pipeline.model.requests)
    sids = []
    for text in texts:
        status, sid, _ = pipeline.post(user, text)
        assert status == 200
        sids.append(sid)
        time.sleep(0.2)
    replies = pipeline.wait_replies(user, 1, timeout=60)
    settle(3)
    assert pipeline.replies(user) == replies and len(replies) == 1
    calls = [r.messages for r in pipeline.model.requests[started:]
             if r.messages and all(t in str(r.messages[-1].get("content")) for t in texts)]
    assert len(calls) == 1
    content = str(calls[0][-1]["content"])
    assert content.index(texts[0]) < content.index(texts[1]) < content.index(texts[2])
    wait_until(lambda: pipeline.entry(user, sids[0]).status == "sent", timeout=30)
    conv = pipeline.conversation(user)
    assert [conv.entry(s).status for s in sids[1:]] == ["merged", "merged"]
    assert {conv.entry(s).answered_by for s in sids[1:]} == {sids[0]}
    assert conv.open_entries() == {}
