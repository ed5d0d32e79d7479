"""A terminal chat with the bot, through the whole local pipeline.

You type as a WhatsApp user; each line is signed and posted to webhook_fn
exactly as Twilio would post it, and the reply is read where the bot sends it:
the Twilio stand-in.
"""

from __future__ import annotations

import secrets
import time

from devstack.stack import Stack
from devstack.twilio_stub import SentMessage, inbound_message, sign_and_post

REPLY_TIMEOUT_SECONDS = 90.0
HELP = (
    "Type a message and press Enter. /new starts a new conversation as another user, /as ADDRESS chats as that "
    "user, /to ADDRESS writes to that business's WhatsApp number (BUSINESS_PROFILES_FILE), /quit or Ctrl-C stops. "
    "Anything else, /reset and /help included, goes to the bot."
)


def _new_user() -> str:
    return f"whatsapp:+1555{secrets.randbelow(10**7):07d}"


def chat(stack: Stack, user: str | None = None) -> None:
    if stack.twilio is None:
        print("TWILIO_API_BASE_URL points elsewhere: replies go there, so the chat cannot show them.")
        print(f"Post webhooks to {stack.webhook_url} (signed with TWILIO_AUTH_TOKEN). Ctrl-C stops.")
        while True:
            time.sleep(3600)
    user = user or _new_user()
    business = stack.options.twilio_whatsapp_from
    label = " (offline model)" if stack.offline_model else ""
    print(f"\nChatting with the bot{label} as {user}. {HELP}")
    print(f"Logs: {stack.options.log_dir}\n")
    while True:
        text = input("you> ").strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            return
        if text == "/new":
            user = _new_user()
            print(f"(new conversation as {user})")
            continue
        if text.startswith(("/as ", "/to ")):
            address = text[4:].strip()
            if not address.startswith("whatsapp:"):
                address = f"whatsapp:{address}"
            if text.startswith("/as "):
                user = address
            else:
                business = address
            print(f"(now {user} writing to {business})")
            continue
        seen = sum(1 for m in stack.twilio.messages if m.to == user)
        started = time.time()
        params = inbound_message(user, text, to=business, account_sid=stack.options.twilio_account_sid)
        status, _, body = sign_and_post(stack.webhook_url, params, stack.options.twilio_auth_token)
        if status != 200:
            print(f"(the webhook answered {status}: {body.decode(errors='replace').strip()})")
            continue
        replies = _wait_for_replies(stack, user, seen)
        if not replies:
            print(f"(no reply within {REPLY_TIMEOUT_SECONDS:.0f}s; see the logs in {stack.options.log_dir})")
            continue
        for reply in replies:
            print(f"bot> {reply.body}")
        print(f"     ({replies[-1].received_at - started:.2f}s from webhook to Twilio)")


def _wait_for_replies(stack: Stack, user: str, seen: int) -> list[SentMessage]:
    """Replies to ``user`` beyond the first ``seen``; a split reply is waited for whole."""
    assert stack.twilio is not None
    deadline = time.monotonic() + REPLY_TIMEOUT_SECONDS
    replies: list[SentMessage] = []
    while time.monotonic() < deadline:
        mine = [m for m in stack.twilio.messages if m.to == user][seen:]
        if mine and mine == replies:
            return replies
        replies = mine
        time.sleep(0.3 if mine else 0.05)
    return replies
