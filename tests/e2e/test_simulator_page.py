"""The chat page in a real browser: Debian's chromium, headless, driven by Playwright.

The page is a client of the session's stack: it posts signed webhooks, the
reply travels the whole pipeline, and the ticks come from the status callbacks
the Twilio stand-in sends to the webhook. Each element the page promises
(business picker, several users side by side, text, image, typing indicator,
ticks, a message's trip, failures, dead letters with replay, hand-off) has an
assertion that fails if it breaks. One test starts ``make dev``'s stack of its
own with the example profiles: the knowledge base as a business owner sees it.
"""

from __future__ import annotations

import shutil
import struct
import time
import uuid
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest
from google.cloud import firestore
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from devstack.stack import ROOT, Stack
from shared.adapters.profile_store import FirestoreProfiles
from shared.domain.profiles import BusinessProfile
from tests.e2e.test_stack_cli import StackProcess
from tests.plugin import wait_until

CHROMIUM = "/usr/bin/chromium"
# Debian's chromium, never a downloaded browser build (none can be fetched on our machines).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Bounds for waiting on the pipeline, not claims about its speed (the machine may be busy).
REPLY_TIMEOUT_MS = 60_000
PAGE_TIMEOUT_MS = 30_000


def png(width: int = 24, height: int = 16) -> bytes:
    """A small valid PNG (green), so the browser can decode what the Twilio stand-in serves back."""
    raw = b"".join(b"\x00" + bytes((37, 211, 102)) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is missing: apt-get install chromium (make test installs it as root)")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    assert stack.simulator is not None, "the stack serves no chat page"
    context = browser.new_context(viewport={"width": 1400, "height": 820})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.goto(stack.simulator.url)
    try:
        yield opened
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def _last(page: Page, user_pane: int, direction: str) -> Locator:
    return page.get_by_test_id("chat-pane").nth(user_pane).locator(f"[data-direction={direction}]").last


def test_chat_page_text_image_ticks_trip_and_operations(page: Page, stack: Stack) -> None:
    assert stack.openai is not None and stack.twilio is not None
    business = stack.options.twilio_whatsapp_from

    # The business picker lists the configured WhatsApp sender.
    picker = page.get_by_test_id("business-picker")
    expect(picker.locator(f'option[value="{business}"]')).to_have_count(1)
    expect(picker).to_have_value(business)

    first = page.get_by_test_id("chat-pane").first
    expect(first).to_be_visible()
    user = first.get_attribute("data-user")
    assert user and user.startswith("whatsapp:+1555")

    # A text: the model's first attempt hangs until its timeout, so the bot is
    # "typing" for at least that long before the reply arrives.
    page.evaluate(
        """() => {
            window.sawTyping = false;
            new MutationObserver(() => {
                if (document.querySelector('[data-testid=typing]')) window.sawTyping = true;
            }).observe(document.body, {subtree: true, childList: true});
        }"""
    )
    text = f"Hola from the browser {uuid.uuid4().hex[:8]}"
    stack.openai.hang_next(1)
    first.get_by_test_id("message-input").fill(text)
    first.get_by_test_id("send").click()
    expect(_last(page, 0, "user").get_by_test_id("body")).to_have_text(text)
    text_sid = _last(page, 0, "user").get_attribute("data-sid")
    mine = first.locator(f'[data-sid="{text_sid}"]')
    expect(first.get_by_test_id("typing")).to_be_visible()
    expect(first.get_by_test_id("status-line")).to_have_text("typing…")
    expect(_last(page, 0, "bot").get_by_test_id("body")).to_contain_text(text, timeout=REPLY_TIMEOUT_MS)
    reply_sid = _last(page, 0, "bot").get_attribute("data-sid")
    reply = first.locator(f'[data-sid="{reply_sid}"]')
    # Ticks from the status callbacks the Twilio stand-in sent to the webhook: sent, delivered, read.
    expect(reply.get_by_test_id("ticks")).to_have_attribute("data-status", "read", timeout=REPLY_TIMEOUT_MS)
    expect(first.get_by_test_id("typing")).to_have_count(0, timeout=REPLY_TIMEOUT_MS)
    assert page.evaluate("window.sawTyping") is True
    answered = [c.status for c in stack.twilio.callbacks if c.message_sid == reply_sid]
    assert answered == ["sent", "delivered", "read"]

    # An image, uploaded to the Twilio stand-in and posted as Twilio posts media.
    first.get_by_test_id("file-input").set_input_files(
        {"name": "photo.png", "mimeType": "image/png", "buffer": png()}
    )
    expect(_last(page, 0, "user")).to_have_attribute("data-media", "image/png")
    image_sid = _last(page, 0, "user").get_attribute("data-sid")
    photo = first.locator(f'[data-sid="{image_sid}"]')
    image = photo.get_by_test_id("image")
    expect(image).to_be_visible()
    page.wait_for_function("(img) => img.complete && img.naturalWidth === 24", arg=image.element_handle())
    expect(first.locator("[data-direction=bot]")).to_have_count(2, timeout=REPLY_TIMEOUT_MS)
    assert image_sid and image_sid.startswith("MM")
    model_saw = [r.messages[-1].get("content") for r in stack.openai.requests]
    assert any("image" in str(content).lower() for content in model_saw[-3:])

    # The text's trip: every stage has a time, Firestore says sent, one task succeeded, no failure.
    mine.click()
    drawer = page.get_by_test_id("drawer")
    expect(drawer).to_be_visible()
    stages = drawer.get_by_test_id("trip-stages").locator("tbody tr")
    expect(stages).to_have_count(7)
    for row in range(7):
        expect(stages.nth(row).locator("td").nth(2)).not_to_have_text("—")
    expect(stages.first.locator("td").first).to_have_text("webhook")
    expect(drawer.get_by_test_id("trip-state")).to_have_text("sent")
    expect(drawer.get_by_test_id("trip-firestore")).to_contain_text(str(reply_sid))
    tasks = drawer.get_by_test_id("trip-tasks").locator("tbody tr")
    expect(tasks).to_have_count(1)
    expect(tasks.first.locator("td").nth(3)).to_have_text("succeeded")
    expect(drawer.get_by_test_id("trip-failure")).to_have_text("no failure record")
    expect(drawer.get_by_test_id("trip-tools")).to_have_text("no tool called")  # the default business has none
    # The default business has no knowledge base: the trip says so (with one, it names the chunk ids).
    expect(drawer.get_by_test_id("trip-knowledge")).to_have_text("no knowledge used")
    expect(drawer.get_by_test_id("trip-twilio")).to_contain_text("read (200)")
    expect(drawer.get_by_test_id("trip-events")).to_contain_text("answered")
    page.get_by_test_id("drawer-close").click()
    expect(drawer).to_be_hidden()

    # A second user side by side; the model fails for this one, so the trip shows a failure record.
    page.get_by_test_id("new-user").click()
    panes = page.get_by_test_id("chat-pane")
    expect(panes).to_have_count(2)
    second = panes.nth(1)
    second_user = second.get_attribute("data-user")
    assert second_user and second_user != user
    stack.openai.fail_next(2, status=500)
    second.get_by_test_id("message-input").fill("is anyone there?")
    second.get_by_test_id("send").click()
    expect(_last(page, 1, "bot")).to_be_visible(timeout=REPLY_TIMEOUT_MS)
    expect(first.locator("[data-direction=bot]")).to_have_count(2)
    expect(second.locator("[data-direction=bot]")).to_have_count(1)
    failed_sid = _last(page, 1, "user").get_attribute("data-sid")
    second.locator(f'[data-sid="{failed_sid}"]').click()
    expect(drawer.get_by_test_id("trip-failure")).to_contain_text("fallback", timeout=REPLY_TIMEOUT_MS)
    expect(drawer.get_by_test_id("trip-events")).to_contain_text("ai_failed")
    page.get_by_test_id("drawer-close").click()

    # The failures list shows that message.
    page.get_by_test_id("open-failures").click()
    expect(drawer.get_by_test_id("failures-table")).to_contain_text(str(failed_sid))
    page.get_by_test_id("drawer-close").click()



def test_hand_off_controls_take_over_reply_and_hand_back(page: Page, stack: Stack) -> None:
    """The Hand-off drawer runs make admin's pause, reply and resume: the bot stays quiet while a person has
    the conversation, the person's reply reaches the pane, and after hand-back the bot answers with it in history."""
    assert stack.openai is not None
    pane = page.get_by_test_id("chat-pane").first
    user = pane.get_attribute("data-user")
    tag = uuid.uuid4().hex[:8]
    pane.get_by_test_id("message-input").fill(f"first {tag}")
    pane.get_by_test_id("send").click()
    expect(_last(page, 0, "bot").get_by_test_id("body")).to_contain_text(f"first {tag}", timeout=REPLY_TIMEOUT_MS)

    page.get_by_test_id("open-handoff").click()
    drawer = page.get_by_test_id("drawer")
    expect(drawer.get_by_test_id("handoff-user")).to_have_value(str(user))
    output = drawer.get_by_test_id("ops-output")
    drawer.get_by_test_id("handoff-pause").click()
    expect(output).to_contain_text("paused: the bot will not answer", timeout=PAGE_TIMEOUT_MS)
    page.get_by_test_id("drawer-close").click()
    bot_replies = pane.locator("[data-direction=bot]").count()
    pane.get_by_test_id("message-input").fill(f"anyone there {tag}?")
    pane.get_by_test_id("send").click()
    expect(_last(page, 0, "user").get_by_test_id("body")).to_have_text(f"anyone there {tag}?")
    page.get_by_test_id("open-handoff").click()
    person = f"Hi, Ana from the shop here {tag}"
    drawer.get_by_test_id("handoff-text").fill(person)
    drawer.get_by_test_id("handoff-reply").click()
    expect(output).to_contain_text("queued", timeout=PAGE_TIMEOUT_MS)
    expect(_last(page, 0, "bot").get_by_test_id("body")).to_have_text(person, timeout=REPLY_TIMEOUT_MS)
    # Only the person's reply arrived while they had the conversation.
    expect(pane.locator("[data-direction=bot]")).to_have_count(bot_replies + 1)

    drawer.get_by_test_id("handoff-resume").click()
    expect(output).to_contain_text("resumed: the bot answers", timeout=PAGE_TIMEOUT_MS)
    page.get_by_test_id("drawer-close").click()
    stack.openai.reset()
    pane.get_by_test_id("message-input").fill(f"thanks {tag}")
    pane.get_by_test_id("send").click()
    expect(_last(page, 0, "bot").get_by_test_id("body")).to_contain_text(f"thanks {tag}", timeout=REPLY_TIMEOUT_MS)
    history = [m["content"] for m in stack.openai.requests[-1].messages if isinstance(m.get("content"), str)]
    assert person in history, history


def test_dead_letters_list_and_replay_runs_the_operator_command(page: Page, stack: Stack) -> None:
    """A dead-letter record is listed; its Replay button runs ``make replay SID`` against the stack."""
    sid = "SM" + uuid.uuid4().hex
    db = firestore.Client(project=stack.options.project)
    record = db.collection("failed_messages").document(sid)
    record.set({
        "conversation": "0" * 64, "sender": "whatsapp:#0000000000", "status": "dead_lettered",
        "stage": "processor", "reason": "browser test record", "at": datetime.now(timezone.utc),
    })
    try:
        page.get_by_test_id("open-dead-letters").click()
        drawer = page.get_by_test_id("drawer")
        row = drawer.get_by_test_id("dead-letters-table").locator("tr", has_text=sid)
        expect(row).to_contain_text("browser test record")
        row.get_by_test_id("replay").click()
        # The record is not in the hold subscription: the operator command says so.
        expect(drawer.get_by_test_id("ops-output")).to_contain_text(
            f"{sid}  not in the dead-letter hold subscription", timeout=60_000
        )
    finally:
        record.delete()
        db.close()


def test_the_page_is_served_on_loopback_only(stack: Stack) -> None:
    assert stack.simulator is not None
    assert stack.simulator.url.startswith("http://127.0.0.1:")



MENUS = [
    {"id": "main", "keywords": ["menu"], "text": "How can we help?", "items": [
        {"id": "hours", "title": "Opening hours", "reply": "9 to 18, Monday to Saturday."},
        {"id": "more", "title": "More", "menu": "more"},
    ]},
    {"id": "more", "text": "Which day?", "button": "Pick a day", "items": [
        {"id": f"d{n}", "title": f"Day {n}", "description": f"The day {n}", "reply": f"Day {n} works."}
        for n in range(1, 6)
    ]},
]


@pytest.fixture
def menu_business(stack: Stack) -> Iterator[str]:
    """The page's business with a menu in its profile (the stack reads profiles with a one-second cache)."""
    business = stack.options.twilio_whatsapp_from
    db = firestore.Client(project=stack.options.project)
    profiles = FirestoreProfiles(lambda: db, "business_profiles", BusinessProfile(), 0)
    profiles.put(business, {"menus": MENUS}, datetime.now(timezone.utc))
    time.sleep(1.2)
    try:
        yield business
    finally:
        db.collection("business_profiles").document(business).delete()
        db.close()
        time.sleep(1.2)


def test_buttons_and_lists_render_as_whatsapp_does_and_taps_post_as_twilio_does(
    page: Page, stack: Stack, menu_business: str,
) -> None:
    assert stack.openai is not None
    pane = page.get_by_test_id("chat-pane").first
    calls = len(stack.openai.requests)

    # "menu" is answered with quick-reply buttons (a Content resource), drawn under the text.
    pane.get_by_test_id("message-input").fill("menu")
    pane.get_by_test_id("send").click()
    message = pane.locator("[data-choices=buttons]").last
    expect(message.get_by_test_id("quick-reply")).to_have_text(["Opening hours", "More"], timeout=REPLY_TIMEOUT_MS)
    buttons_sid = message.get_attribute("data-sid")

    # A tap posts ButtonText/ButtonPayload quoting the message; the item's reply comes without the model.
    message.get_by_test_id("quick-reply").first.click()
    tapped = pane.locator("[data-tap=button]").last
    expect(tapped.get_by_test_id("body")).to_have_text("Opening hours")
    expect(tapped.get_by_test_id("quote")).to_have_attribute("data-quoted-sid", str(buttons_sid))
    expect(_last(page, 0, "bot").get_by_test_id("body")).to_have_text("9 to 18, Monday to Saturday.",
                                                                      timeout=REPLY_TIMEOUT_MS)

    # "More" opens a list behind its button; the picked row posts ListId/ListTitle/ListDescription.
    message.get_by_test_id("quick-reply").nth(1).click()
    listed = pane.locator("[data-choices=list]").last
    expect(listed.get_by_test_id("list-open")).to_have_text("☰ Pick a day", timeout=REPLY_TIMEOUT_MS)
    listed.get_by_test_id("list-open").click()
    sheet = pane.get_by_test_id("list-sheet")
    expect(sheet).to_be_visible()
    expect(sheet.get_by_test_id("list-row")).to_have_count(5)
    expect(sheet.get_by_test_id("list-send")).to_be_disabled()
    sheet.locator('[data-choice-id="menu:more:d3"]').click()
    sheet.get_by_test_id("list-send").click()
    expect(sheet).to_be_hidden()
    expect(pane.locator("[data-tap=list]").last.get_by_test_id("body")).to_have_text("Day 3")
    expect(_last(page, 0, "bot").get_by_test_id("body")).to_have_text("Day 3 works.", timeout=REPLY_TIMEOUT_MS)
    assert len(stack.openai.requests) == calls

    # A swipe-reply quotes the bot's message, as WhatsApp shows it; the model is told what it said.
    listed.hover()
    listed.get_by_test_id("reply-to").click()
    expect(pane.get_by_test_id("reply-banner")).to_contain_text("Which day?")
    pane.get_by_test_id("message-input").fill("Is that a holiday?")
    pane.get_by_test_id("send").click()
    expect(pane.get_by_test_id("reply-banner")).to_be_hidden()
    quoting = _last(page, 0, "user")
    expect(quoting.get_by_test_id("body")).to_have_text("Is that a holiday?")
    expect(quoting.get_by_test_id("quote")).to_have_attribute("data-quoted-sid", str(listed.get_attribute("data-sid")))
    wait_until(lambda: any("replying to your earlier message: “Which day?" in str(r.messages[-1].get("content"))
                           for r in stack.openai.requests), REPLY_TIMEOUT_MS / 1000)


def test_make_dev_with_the_example_profiles_answers_the_sourdough_and_the_trip_names_the_chunk(
        browser: Browser, tmp_path: Path) -> None:
    """``BUSINESS_PROFILES_FILE=profiles.example.yaml make dev``, on a stack of its own: both businesses' documents
    applied at start, the offline model and embeddings, the bakery's price quoted with its source in the chat page,
    and the message's trip naming the chunk the model was given."""
    stack = StackProcess(tmp_path, {"BUSINESS_PROFILES_FILE": str(ROOT / "profiles.example.yaml")})
    try:
        stack.ready_line()
        progress = stack.progress()
        assert "OFFLINE MODEL" in progress
        assert "knowledge/bakery/prices.md added" in progress and "knowledge/clinic/services.md added" in progress
        simulator = stack.before_ready[0]
        assert simulator.startswith("SIMULATOR ")
        context = browser.new_context(viewport={"width": 1400, "height": 820})
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        page = context.new_page()
        try:
            page.goto(simulator.split(" ", 1)[1])
            bakery = "whatsapp:+14155238886"
            page.get_by_test_id("business-picker").select_option(bakery)
            pane = page.get_by_test_id("chat-pane").first
            pane.get_by_test_id("message-input").fill("how much is the sourdough?")
            pane.get_by_test_id("send").click()
            answer = pane.locator("[data-direction=bot]").filter(has_text="4.50 €")
            expect(answer).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
            expect(answer.get_by_test_id("body")).to_contain_text("Sourdough loaf")
            expect(answer.get_by_test_id("body")).to_contain_text("— from Prices")
            _last(page, 0, "user").click()
            knowledge = page.get_by_test_id("drawer").get_by_test_id("trip-knowledge")
            expect(knowledge).to_contain_text("knowledge: knowledge/bakery/prices.md#")
            expect(knowledge).to_contain_text("(version ")
        finally:
            context.close()
    finally:
        stack.kill()
