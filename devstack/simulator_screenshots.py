"""Screenshots of the chat page for the README, taken in headless chromium against a running stack.

    python -m devstack.simulator_screenshots SIMULATOR_URL [--out docs/images]

Uses the browser test's setup (Debian's chromium through Playwright): two users
side by side, a text and an image, the replies with their ticks, and one
message's trip.
"""

from __future__ import annotations

import argparse
import struct
import sys
import zlib
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
]
REPLY_TIMEOUT_MS = 60_000


def _picture(width: int = 160, height: int = 100) -> bytes:
    """A small striped PNG, so the image bubble shows something recognisable."""
    rows = []
    for y in range(height):
        colour = (37, 211, 102) if (y // 20) % 2 == 0 else (0, 128, 105)
        rows.append(b"\x00" + bytes(colour) * width)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")


def _send(page: Page, pane: int, text: str) -> None:
    chat = page.get_by_test_id("chat-pane").nth(pane)
    before = chat.locator("[data-direction=bot]").count()
    chat.get_by_test_id("message-input").fill(text)
    chat.get_by_test_id("send").click()
    expect(chat.locator("[data-direction=bot]")).to_have_count(before + 1, timeout=REPLY_TIMEOUT_MS)
    expect(chat.locator("[data-direction=bot]").last.get_by_test_id("ticks")).to_have_attribute(
        "data-status", "read", timeout=REPLY_TIMEOUT_MS
    )


def take(url: str, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 760})
            page.goto(url)
            _send(page, 0, "Hola! What are your opening hours?")
            chat = page.get_by_test_id("chat-pane").first
            before = chat.locator("[data-direction=bot]").count()
            chat.get_by_test_id("file-input").set_input_files(
                {"name": "menu.png", "mimeType": "image/png", "buffer": _picture()}
            )
            expect(chat.locator("[data-direction=bot]")).to_have_count(before + 1, timeout=REPLY_TIMEOUT_MS)
            _send(page, 0, "And do you deliver on Sundays?")
            page.get_by_test_id("new-user").click()
            _send(page, 1, "Hi, I'd like to book a table for two")
            page.wait_for_timeout(1500)
            chat_shot = out / "simulator-chat.png"
            page.screenshot(path=str(chat_shot))
            chat.locator("[data-direction=user]").first.click()
            expect(page.get_by_test_id("trip-stages").locator("tbody tr")).to_have_count(7)
            page.wait_for_timeout(500)
            trip_shot = out / "simulator-trip.png"
            page.screenshot(path=str(trip_shot))
            return [chat_shot, trip_shot]
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.simulator_screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the SIMULATOR url `make stack` printed")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args(argv)
    for path in take(args.url, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
