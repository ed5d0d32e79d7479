"""``make failures``: failed and dead-lettered messages with their reasons.

Reads the failure records from Firestore (the emulator when
FIRESTORE_EMULATOR_HOST is set, else the project's database). Senders appear
masked, as everywhere else: the records never hold a raw number.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from shared import bootstrap


def format_rows(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no failed or dead-lettered messages"
    header = f"{'when (UTC)':19}  {'status':13}  {'stage':9}  {'sender':22}  {'message':34}  reason"
    lines = [header, "-" * len(header)]
    for row in rows:
        at = row.get("at")
        when = at.strftime("%Y-%m-%d %H:%M:%S") if hasattr(at, "strftime") else str(at or "")
        lines.append(
            f"{when:19}  {row.get('status', ''):13}  {row.get('stage', ''):9}  "
            f"{row.get('sender', '') or '-':22}  {row.get('sid', ''):34}  {row.get('reason', '')}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make failures", description=__doc__)
    parser.add_argument("--limit", type=int, default=100, help="newest N records (default 100)")
    args = parser.parse_args(argv)
    print(format_rows(bootstrap.store().list_failures(limit=args.limit)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
