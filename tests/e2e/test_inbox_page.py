"""The business's inbox in a real browser (Debian's chromium, headless), against the whole local stack.

Staff sign in through the local Sign in with Google (devstack/google_signin.py:
a signed ID token posted to the inbox's login URI, checked by the inbox as
Google's are), then read what the pipeline wrote: the conversation that
asked for a person at the top with its waiting time, the masked number, the
history with who said what and its ticks, the 24-hour window, new messages
without a reload. A member of another business's staff sees none of it, by
the page or by asking the API directly.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, expect

from devstack.httpserver import Request, Response, StubHandler, StubServer
from devstack.stack import LOCAL_OPERATOR, Stack
from tests.e2e.test_controls import new_business, put_profile, wait_replies
# The chat page's browser fixture: Debian's chromium, headless.
from tests.e2e.test_simulator_page import PAGE_TIMEOUT_MS, REPLY_TIMEOUT_MS, browser  # noqa: F401
from tests.plugin import unique_user, wait_until

HANDOFF_REPLY = "Someone from the bakery will answer you here shortly."


@pytest.fixture(scope="module")
def shop(pipeline) -> dict[str, str]:  # noqa: ANN001
    """Two businesses with one staff member each, and conversations the pipeline answered."""
    tag = uuid.uuid4().hex[:6]
    names = {"bakery": new_business(), "clinic": new_business(), "ana": f"ana-{tag}@panaderia.example",
             "desk": f"desk-{tag}@clinica.example", "customer": unique_user(), "regular": unique_user(),
             "patient": unique_user()}
    put_profile(pipeline, names["bakery"], name=f"Panadería {tag}", staff=[names["ana"]], handoff_keyword="agent",
                handoff_reply=HANDOFF_REPLY)
    put_profile(pipeline, names["clinic"], name=f"Clínica {tag}", staff=[names["desk"]])
    pipeline.post(names["regular"], "Do you bake rye bread?", to=names["bakery"])
    pipeline.post(names["patient"], "Is the clinic open on Saturday?", to=names["clinic"])
    pipeline.post(names["customer"], "Hola, I ordered a cake", to=names["bakery"], ProfileName="María")
    wait_replies(pipeline, names["customer"], names["bakery"], 1)
    pipeline.post(names["customer"], "agent", to=names["bakery"], ProfileName="María")
    assert wait_replies(pipeline, names["customer"], names["bakery"], 2)[-1] == HANDOFF_REPLY
    wait_replies(pipeline, names["regular"], names["bakery"], 1)
    wait_replies(pipeline, names["patient"], names["clinic"], 1)
    names["cid"] = pipeline.conversation_id(names["customer"], names["bakery"])
    names["clinic_cid"] = pipeline.conversation_id(names["patient"], names["clinic"])
    return names


def _context(browser: Browser) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1300, "height": 800})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    return context


def sign_in(context: BrowserContext, stack: Stack, email: str, lands: bool = True) -> Page:
    """Through the page's Sign in with Google button and the account chooser, as a person would."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(stack.inbox_url)
    expect(page.get_by_test_id("signin")).to_be_visible()
    page.get_by_test_id("google-signin").click()
    page.get_by_test_id("other-email").fill(email)
    page.get_by_test_id("other-continue").click()
    page.wait_for_url(re.compile(re.escape(stack.inbox_url) + (r"/?(#.*)?$" if lands else r"/auth/google$")))
    setattr(page, "js_errors", errors)
    return page


def test_staff_see_the_handoff_at_the_top_with_its_history_and_new_messages_live(
    browser: Browser, stack: Stack, pipeline, shop: dict[str, str]  # noqa: ANN001
) -> None:
    context = _context(browser)
    try:
        page = sign_in(context, stack, shop["ana"])
        expect(page.get_by_test_id("me")).to_have_text(shop["ana"])
        picker = page.get_by_test_id("business-picker")
        expect(picker.locator("option")).to_have_count(1)
        expect(picker).to_have_value(shop["bakery"])
        expect(page.get_by_test_id("open-ops")).to_be_hidden()

        # The conversation that asked for a person is at the top, masked, with its reason and wait.
        top = page.get_by_test_id("needs-person").get_by_test_id("conversation-item").first
        expect(top).to_have_attribute("data-id", shop["cid"])
        number = shop["customer"].rpartition("+")[2]
        expect(top.get_by_test_id("item-name")).to_have_text("María")  # the customer's WhatsApp profile name
        expect(top.get_by_test_id("item-number")).to_have_text(re.compile(rf"^\+{number[:2]} •+ {number[-3:]}$"))
        expect(top.locator("[data-reason=handoff]")).to_have_text("asked for a person")
        expect(top.get_by_test_id("waiting")).to_have_text(re.compile(r"^waiting \d+ (s|min)"))
        recent = page.get_by_test_id("recent").get_by_test_id("conversation-item")
        expect(recent).to_have_count(1)
        expect(recent.first.get_by_test_id("item-preview")).to_contain_text("rye bread")
        assert number not in page.content(), "the whole number reached the page"

        # Its history: who said what, the bot's ticks, the window.
        top.click()
        history = page.get_by_test_id("history").get_by_test_id("message")
        expect(history).to_have_count(4)
        assert history.evaluate_all("nodes => nodes.map(n => n.dataset.who)") == ["customer", "bot", "customer", "bot"]
        expect(history.nth(2).get_by_test_id("text")).to_have_text("agent")
        expect(history.nth(3).get_by_test_id("text")).to_have_text(HANDOFF_REPLY)
        expect(history.nth(3).get_by_test_id("ticks")).to_have_attribute("data-status", "read", timeout=REPLY_TIMEOUT_MS)
        expect(history.nth(0).get_by_test_id("state")).to_contain_text("answered")
        expect(page.get_by_test_id("window-open")).to_contain_text("24-hour window open")
        expect(page.get_by_test_id("conv-waiting")).to_contain_text("customer waiting")

        # A new message from the customer appears without a reload (the bot is paused: not answered).
        page.evaluate("window.loadedOnce = true")
        pipeline.post(shop["customer"], "Is anyone there?", to=shop["bakery"])
        expect(history).to_have_count(5, timeout=REPLY_TIMEOUT_MS)
        expect(history.nth(4).get_by_test_id("text")).to_have_text("Is anyone there?")
        expect(history.nth(4).get_by_test_id("state")).to_contain_text("not answered", timeout=REPLY_TIMEOUT_MS)
        assert page.evaluate("window.loadedOnce") is True, "the page reloaded"

        # Search stays within the business.
        page.get_by_test_id("search").fill("rye")
        expect(page.get_by_test_id("conversation-item")).to_have_count(1)
        expect(page.get_by_test_id("recent").get_by_test_id("item-preview")).to_contain_text("rye bread")
        assert page.js_errors == []  # type: ignore[attr-defined]
    finally:
        context.close()


def test_another_business_s_staff_sees_none_of_it(browser: Browser, stack: Stack, shop: dict[str, str]) -> None:
    context = _context(browser)
    try:
        page = sign_in(context, stack, shop["desk"])
        expect(page.get_by_test_id("business-picker")).to_have_value(shop["clinic"])
        expect(page.get_by_test_id("business-picker").locator("option")).to_have_count(1)
        expect(page.get_by_test_id("conversation-item")).to_have_count(1)
        expect(page.get_by_test_id("conversation-item").first).to_have_attribute("data-id", shop["clinic_cid"])
        page.get_by_test_id("search").fill("cake")
        expect(page.get_by_test_id("conversation-item")).to_have_count(0)
        # Asked directly, with the session's own cookie, the API gives nothing of the bakery's.
        statuses = page.evaluate(
            """async ([bakery, cid]) => {
                const list = await fetch(`/api/conversations?business=${encodeURIComponent(bakery)}&q=cake`);
                const one = await fetch(`/api/conversations/${cid}`);
                return [list.status, one.status];
            }""",
            [shop["bakery"], shop["cid"]],
        )
        assert statuses == [403, 404]
        # A link to the bakery's conversation (as a notification would carry) opens nothing of it.
        linked = context.new_page()
        linked.goto(f"{stack.inbox_url}/#b={quote(shop['bakery'])}&c={shop['cid']}")
        expect(linked.get_by_test_id("business-picker")).to_have_value(shop["clinic"])
        expect(linked.locator("#empty")).to_have_text("no such conversation")
        expect(linked.get_by_test_id("history").get_by_test_id("message")).to_have_count(0)
    finally:
        context.close()


def test_sign_in_is_as_strict_as_google(browser: Browser, stack: Stack, shop: dict[str, str]) -> None:
    """Not staff: no session. A token for another client, an expired one, a forged one, or no CSRF
    cookie: refused. A login URI the client does not know: refused by the sign-in itself."""
    context = _context(browser)
    try:
        page = sign_in(context, stack, "stranger@gmail.com", lands=False)
        expect(page.get_by_test_id("signin-error")).to_contain_text("not staff of any business")
    finally:
        context.close()
    login = f"{stack.inbox_url}/auth/google"
    issuer, client = stack.cloud.issuer, stack.cloud.signin.client_id
    now = datetime.now(timezone.utc).timestamp()
    cases = {
        "another client": issuer.mint_user(shop["ana"], "1-other.apps.googleusercontent.com"),
        "expired": issuer.mint_user(shop["ana"], client, lifetime_seconds=60, now=now - 3600),
        "forged": stack.cloud.issuer.mint_user(shop["ana"], client)[:-8] + "AAAAAAAA",
    }
    for case, token in cases.items():
        answer = requests.post(login, data={"credential": token, "g_csrf_token": "x"}, cookies={"g_csrf_token": "x"},
                               allow_redirects=False, timeout=10)
        assert answer.status_code == 403, case
        assert "inbox-session" not in answer.headers.get("Set-Cookie", ""), case
    good = issuer.mint_user(shop["ana"], client)
    no_cookie = requests.post(login, data={"credential": good, "g_csrf_token": "x"}, allow_redirects=False, timeout=10)
    assert no_cookie.status_code == 403 and "CSRF" in no_cookie.text
    signed = requests.post(login, data={"credential": good, "g_csrf_token": "x"}, cookies={"g_csrf_token": "x"},
                           allow_redirects=False, timeout=10)
    assert signed.status_code == 303 and "HttpOnly" in signed.headers["Set-Cookie"]
    chooser = requests.get(f"{stack.cloud.signin.base_url}/gsi/select", timeout=10, params={
        "client_id": client, "login_uri": "http://127.0.0.1:1/auth/google", "g_csrf_token": "x"})
    assert chooser.status_code == 400 and "redirect_uri_mismatch" in chooser.text


def test_operators_see_every_business_and_the_failures(browser: Browser, stack: Stack, shop: dict[str, str]) -> None:
    context = _context(browser)
    try:
        page = sign_in(context, stack, LOCAL_OPERATOR)
        picker = page.get_by_test_id("business-picker")
        for business in (shop["bakery"], shop["clinic"]):
            expect(picker.locator(f'option[value="{business}"]')).to_have_count(1)
        page.get_by_test_id("open-ops").click()
        expect(page.get_by_test_id("ops")).to_be_visible()
        expect(page.get_by_test_id("failures").locator("thead")).to_contain_text("reason")
    finally:
        context.close()


class Hook(StubServer):
    """The business's chat webhook: records each notice posted to it."""

    def __init__(self) -> None:
        super().__init__(0)
        self.posts: list[dict] = []

    def handle(self, request: Request, handler: StubHandler) -> Response:
        self.posts.append(json.loads(request.body))
        return Response(200, b"{}", {"Content-Type": "application/json"})


def test_a_person_takes_a_conversation_over_and_hands_it_back(
    browser: Browser, stack: Stack, pipeline, shop: dict[str, str]  # noqa: ANN001
) -> None:
    """The issue's whole story: a customer asks for an agent; the bakery's staff member sees it at the
    top (and is notified once), replies (a double click and a retried request send it once), the
    customer gets it after the bot's handoff reply; handed back, the bot answers the next message
    with the person's reply in its history; the clinic's staff sees none of it."""
    hook = Hook().start()
    tag = uuid.uuid4().hex[:6]
    business, staff, customer = new_business(), f"marta-{tag}@panaderia.example", unique_user()
    put_profile(pipeline, business, name=f"Horno {tag}", staff=[staff], handoff_keyword="agent",
                handoff_reply=HANDOFF_REPLY, notify_webhook=f"{hook.base_url}/hook")
    context = _context(browser)
    try:
        pipeline.post(customer, "Do you have croissants?", to=business, ProfileName="Lucía")
        first = wait_replies(pipeline, customer, business, 1)[0]
        pipeline.post(customer, "agent", to=business, ProfileName="Lucía")
        assert wait_replies(pipeline, customer, business, 2)[-1] == HANDOFF_REPLY
        cid = pipeline.conversation_id(customer, business)
        wait_until(lambda: hook.posts, 30)

        page = sign_in(context, stack, staff)
        top = page.get_by_test_id("needs-person").get_by_test_id("conversation-item").first
        expect(top).to_have_attribute("data-id", cid)
        expect(top.get_by_test_id("item-name")).to_have_text("Lucía")
        top.click()
        expect(page.get_by_test_id("hand-back")).to_be_visible()  # the handoff paused the bot
        expect(page.get_by_test_id("take-over")).to_be_hidden()

        # A double click on Send: one reply.
        page.get_by_test_id("reply-text").fill("Hola Lucía, we have them fresh at 8. I'm Marta.")
        page.get_by_test_id("reply-send").dblclick()
        history = page.get_by_test_id("history").get_by_test_id("message")
        person_turn = page.get_by_test_id("history").locator("[data-who=person]")
        expect(person_turn).to_have_count(1, timeout=REPLY_TIMEOUT_MS)
        expect(person_turn.get_by_test_id("ticks")).to_have_attribute("data-status", "read", timeout=REPLY_TIMEOUT_MS)
        expect(page.get_by_test_id("reply-text")).to_have_value("")

        # A retried request (the same key twice, at once): one reply.
        answers = page.evaluate(
            """async (cid) => {
                const me = await (await fetch('/api/me')).json();
                const post = () => fetch(`/api/conversations/${cid}/reply`, {method: 'POST',
                    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf},
                    body: JSON.stringify({key: 'retried-request-1', text: 'See you tomorrow!'})});
                const [a, b] = await Promise.all([post(), post()]);
                return [a.status, b.status, (await a.json()).id, (await b.json()).id];
            }""",
            cid,
        )
        assert answers[:2] == [202, 202] and answers[2] == answers[3]
        expect(person_turn).to_have_count(2, timeout=REPLY_TIMEOUT_MS)
        replies = wait_replies(pipeline, customer, business, 4)
        assert replies == [first, HANDOFF_REPLY, "Hola Lucía, we have them fresh at 8. I'm Marta.", "See you tomorrow!"]

        # Handed back: the bot answers the next message, with the person's words in its history.
        page.get_by_test_id("hand-back").click()
        expect(page.get_by_test_id("take-over")).to_be_visible()
        pipeline.post(customer, "Great, thanks", to=business, ProfileName="Lucía")
        assert "Great, thanks" in wait_replies(pipeline, customer, business, 5)[-1]
        [asked] = pipeline.model_requests_for("Great, thanks")
        said = [m["content"] for m in asked]
        assert "Hola Lucía, we have them fresh at 8. I'm Marta." in said and "See you tomorrow!" in said
        expect(history).to_have_count(8, timeout=REPLY_TIMEOUT_MS)
        assert page.js_errors == []  # type: ignore[attr-defined]

        # The staff was told once, with a link into the inbox and no customer data.
        assert len(hook.posts) == 1
        notice = hook.posts[0]
        assert notice["conversation"] == cid and f"Horno {tag}" in notice["text"]
        assert notice["link"].startswith(stack.inbox_url) and customer.rpartition("+")[2] not in json.dumps(notice)
    finally:
        context.close()
        hook.stop()

    other = _context(browser)
    try:
        page = sign_in(other, stack, shop["desk"])
        expect(page.get_by_test_id("conversation-item")).to_have_count(1)
        assert page.evaluate("async (cid) => (await fetch(`/api/conversations/${cid}`)).status", cid) == 404
        statuses = page.evaluate(
            """async (cid) => {
                const me = await (await fetch('/api/me')).json();
                const post = (action, body) => fetch(`/api/conversations/${cid}/${action}`, {method: 'POST',
                    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf}, body: JSON.stringify(body)});
                return [(await post('reply', {key: 'not-yours-0001', text: 'hi'})).status,
                        (await post('take-over', {})).status];
            }""",
            cid,
        )
        assert statuses == [404, 404]
        assert len(pipeline.replies(customer)) == 5
    finally:
        other.close()


def api_session(stack: Stack, email: str) -> tuple[requests.Session, str]:
    """A signed-in inbox session without a browser (the token the local sign-in would post), and its CSRF token."""
    session = requests.Session()
    session.cookies.set("g_csrf_token", "t")
    token = stack.cloud.issuer.mint_user(email, stack.cloud.signin.client_id)
    answer = session.post(f"{stack.inbox_url}/auth/google", data={"credential": token, "g_csrf_token": "t"},
                          allow_redirects=False, timeout=10)
    assert answer.status_code == 303, answer.text
    return session, session.get(f"{stack.inbox_url}/api/me", timeout=10).json()["csrf"]


def test_outside_the_24_hour_window_the_box_offers_only_the_template(
    browser: Browser, stack: Stack, pipeline  # noqa: ANN001
) -> None:
    """A customer who last wrote 25 hours ago: the box says only a template can go, free text is disabled
    in the page and refused by the API, and the business's approved template is offered."""
    tag = uuid.uuid4().hex[:6]
    business, staff, customer = new_business(), f"luis-{tag}@panaderia.example", unique_user()
    put_profile(pipeline, business, name=f"Obrador {tag}", staff=[staff], reengagement_content_sid="HX" + "ab" * 16)
    pipeline.post(customer, "Are you open on Sunday?", to=business, ProfileName="Pablo")
    wait_replies(pipeline, customer, business, 1)
    cid = pipeline.conversation_id(customer, business)
    pipeline.db.collection("conversations").document(cid).update(
        {"lastInboundAt": datetime.now(timezone.utc) - timedelta(hours=25)})
    context = _context(browser)
    try:
        page = sign_in(context, stack, staff)
        page.get_by_test_id("conversation-item").filter(has_text="Pablo").click()
        expect(page.get_by_test_id("window-closed")).to_contain_text("only a template can be sent")
        expect(page.get_by_test_id("composer-note")).to_contain_text("Outside the 24-hour window")
        expect(page.get_by_test_id("reply-text")).to_be_disabled()
        expect(page.get_by_test_id("reply-send")).to_be_disabled()
        expect(page.get_by_test_id("reply-template")).to_be_visible()
        status = page.evaluate(
            """async (cid) => {
                const me = await (await fetch('/api/me')).json();
                return (await fetch(`/api/conversations/${cid}/reply`, {method: 'POST',
                    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf},
                    body: JSON.stringify({key: 'outside-window-1', text: 'Hello again'})})).status;
            }""",
            cid,
        )
        assert status == 409
        assert len(pipeline.replies(customer)) == 1
    finally:
        context.close()
