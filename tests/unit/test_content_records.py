"""Content resources are created once per distinct content and reused: memory first, the records next."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

import pytest

from shared.adapters.content_records import ContentTemplates, MemoryContentRecords
from shared.adapters.twilio_content import ContentApiError
from shared.domain.choices import Choice, Offer, content_hash, content_types

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


class FakeApi:
    def __init__(self, fail: bool = False) -> None:
        self.created: list[tuple[Mapping[str, Any], str]] = []
        self.fail = fail

    def create(self, types: Mapping[str, Any], friendly_name: str, language: str = "en") -> str:
        if self.fail:
            raise ContentApiError("Twilio refused the Content resource (503)")
        self.created.append((types, friendly_name))
        return f"HX{len(self.created):032x}"


TYPES = content_types(Offer("Pick", (Choice("a", "A"), Choice("b", "B"))))


def test_created_once_then_from_memory_with_no_read() -> None:
    api, records = FakeApi(), MemoryContentRecords()
    templates = ContentTemplates(api, records, lambda: NOW)
    sid = templates.sid_for(TYPES)
    assert [templates.sid_for(TYPES) for _ in range(5)] == [sid] * 5
    assert len(api.created) == 1 and api.created[0][1] == f"wa-choices-{content_hash(TYPES)[:24]}"
    assert (records.ops.reads, records.ops.writes) == (1, 1)


def test_another_process_reads_the_record_once_and_creates_nothing() -> None:
    records = MemoryContentRecords()
    first = ContentTemplates(FakeApi(), records, lambda: NOW).sid_for(TYPES)
    other_api = FakeApi()
    other = ContentTemplates(other_api, records, lambda: NOW)
    assert other.sid_for(TYPES) == other.sid_for(TYPES) == first
    assert other_api.created == []


def test_different_content_gets_its_own_resource() -> None:
    api = FakeApi()
    templates = ContentTemplates(api, MemoryContentRecords(), lambda: NOW)
    other = content_types(Offer("Pick", (Choice("a", "A"), Choice("c", "C"))))
    assert templates.sid_for(TYPES) != templates.sid_for(other)
    assert len(api.created) == 2


def test_a_failure_is_raised_and_nothing_is_remembered() -> None:
    records = MemoryContentRecords()
    templates = ContentTemplates(FakeApi(fail=True), records, lambda: NOW)
    with pytest.raises(ContentApiError):
        templates.sid_for(TYPES)
    assert records.records == {}
