"""``make admin ARGS="usage [--business B] [--days N]"``: tokens, estimated cost and messages per business per day.

Read from the usage counters (shared/adapters/usage_store.py): a business with
a budget is always counted; every business with ``USAGE_COUNTERS=all``. The
cost is the estimate of the price table in settings (``MODEL_PRICES``), as it
was when each answer was recorded. Days are UTC, newest first.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any, Callable

from shared.adapters.usage_store import report_rows
from shared.domain.conversation import utcnow

NOT_COUNTED = (
    "Businesses without a budget are not counted here (USAGE_COUNTERS=budgeted): their usage is on the dashboard "
    "and in the analytics dataset (docs/analytics.md). USAGE_COUNTERS=all counts every business, for one more "
    "document write per model answer."
)

HEADER = ("business", "day", "messages", "tokens", "prompt", "completion", "embedding", "audio_s", "cost_usd")


def render(rows: list[dict[str, Any]], counted: str) -> str:
    """The report as an aligned table, with a total line per business."""
    if not rows:
        return f"no usage counted in these days (counted: {counted} businesses, USAGE_COUNTERS)"
    table = [HEADER]
    for row in rows:
        table.append((row["business"], row["day"], str(row["messages"]), str(row["tokens"]), str(row["prompt_tokens"]),
                      str(row["completion_tokens"]), str(row["embedding_tokens"]), f"{row['transcription_seconds']:g}",
                      f"{row['cost_usd']:.6f}"))
    for business in sorted({r["business"] for r in rows}):
        mine = [r for r in rows if r["business"] == business]
        table.append((business, "total", str(sum(r["messages"] for r in mine)), str(sum(r["tokens"] for r in mine)),
                      "", "", "", "", f"{sum(r['cost_usd'] for r in mine):.6f}"))
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADER))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table)


def main(argv: list[str] | None = None, clock: Callable[[], datetime] = utcnow) -> int:
    parser = argparse.ArgumentParser(prog='make admin ARGS="usage"', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--business", help="one business's WhatsApp number (default: every counted business)")
    parser.add_argument("--days", type=int, default=7, help="how many UTC days back, today included (default 7)")
    args = parser.parse_args(argv)
    if not 1 <= args.days <= 400:
        parser.error("--days must be between 1 and 400")

    from shared import bootstrap
    from shared.adapters.usage_store import UsageCounters

    settings = bootstrap.settings()
    counters = UsageCounters.of(settings, bootstrap.store())
    print(render(report_rows(counters, args.business, args.days, clock()), settings.usage_counters))
    if settings.usage_counters != "all":
        print(NOT_COUNTED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
