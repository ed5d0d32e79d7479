"""Screenshots of the business's inbox for the docs, taken in headless chromium against a stack of its own.

    python -m devstack.inbox_screenshots [--out docs/images]

Starts the local stack with profiles.example.yaml, has five customers write
to the bakery (one asks for a person and gets an answer from Ana, one asks
and waits, one message gets the fallback reply, one question is not in the
bakery's documents), then signs in as the
bakery's staff member and as the local operator through the local Sign in
with Google, as the browser test does, and saves ``inbox.png`` and
``inbox-operations.png``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from devstack.simulator_screenshots import CHROMIUM, CHROMIUM_ARGS, REPLY_TIMEOUT_MS
from devstack.stack import LOCAL_OPERATOR, ROOT, Stack, StackOptions
from devstack.twilio_stub import inbound_message, sign_and_post

STAFF = "ana@panaderia-sol.example"
CUSTOMERS = {
    "Lucía": "whatsapp:+34600111222",
    "Tomás": "whatsapp:+34611222333",
    "Carmen": "whatsapp:+34622333444",
    "Javier": "whatsapp:+34633444555",
    "Elena": "whatsapp:+34644555666",
}


def _say(stack: Stack, name: str, text: str, replies: int) -> None:
    """One signed message from a customer, then until the bakery has sent them ``replies`` messages."""
    o = stack.options
    params = inbound_message(CUSTOMERS[name], text, to=o.twilio_whatsapp_from, account_sid=o.twilio_account_sid,
                             ProfileName=name)
    assert sign_and_post(stack.webhook_url, params, o.twilio_auth_token)[0] == 200
    assert stack.twilio is not None
    deadline = time.monotonic() + 60
    while len([m for m in stack.twilio.messages if m.to == CUSTOMERS[name]]) < replies:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no reply to {name} within a minute")
        time.sleep(0.1)


def _sign_in(page: Page, stack: Stack, email: str) -> None:
    page.goto(stack.inbox_url)
    page.get_by_test_id("google-signin").click()
    page.locator(f'[data-testid=account][data-email="{email}"]').click()
    expect(page.get_by_test_id("me")).to_have_text(email)


def take(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    options = StackOptions(webhook_port=0, log_dir=Path(tempfile.mkdtemp(prefix="inbox-shots-")), simulator=False,
                           profiles_file=str(ROOT / "profiles.example.yaml"), progress=lambda line: None)
    with Stack(options) as stack:
        assert stack.openai is not None
        _say(stack, "Lucía", "Hola! Do you have sourdough today?", 2)  # the welcome, then the answer
        _say(stack, "Tomás", "hours?", 1)
        _say(stack, "Lucía", "agent", 3)
        stack.openai.fail_next(3, status=500)
        _say(stack, "Carmen", "Can I order a birthday cake for Friday?", 2)
        _say(stack, "Javier", "agent", 1)
        _say(stack, "Elena", "Do you repair bicycles?", 1)  # nothing in the bakery's documents: its unknown_reply
        shots: list[Path] = []
        with sync_playwright() as driver:
            browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1360, "height": 780})
                _sign_in(page, stack, STAFF)
                lucia = page.get_by_test_id("conversation-item").filter(has_text="Lucía")
                lucia.click()
                page.get_by_test_id("reply-text").fill("Hola Lucía, yes: I've kept two loaves for you until 18:00. Ana")
                page.get_by_test_id("reply-send").click()
                person = page.get_by_test_id("history").locator("[data-who=person]")
                expect(person.get_by_test_id("ticks")).to_have_attribute("data-status", "read", timeout=REPLY_TIMEOUT_MS)
                page.wait_for_timeout(1500)
                shots.append(out / "inbox.png")
                page.screenshot(path=str(shots[-1]))
                operator = browser.new_page(viewport={"width": 1360, "height": 780})
                _sign_in(operator, stack, LOCAL_OPERATOR)
                operator.get_by_test_id("business-picker").select_option(stack.options.twilio_whatsapp_from)
                operator.get_by_test_id("open-ops").click()
                expect(operator.get_by_test_id("failures").locator("tbody tr").first).to_be_visible()
                operator.wait_for_timeout(500)
                shots.append(out / "inbox-operations.png")
                operator.screenshot(path=str(shots[-1]))
            finally:
                browser.close()
        return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.inbox_screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args(argv)
    for path in take(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
