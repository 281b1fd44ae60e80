"""Ask the seller (docs/customer-service.md) in real Chromium, against a real server process, Redis and PostgreSQL:
a viewer asks a private question at a phone's viewport, the host answers it from the studio, the viewer sees the
answer without a reload, and another viewer in the room sees neither."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from loadtests.support.server import ServerProcess
from tests.browser.helpers import (
    DESKTOP,
    PHONE,
    Pages,
    demo_shop,
    login_link,
    new_email,
    pin,
    room_url,
    screenshot,
    sign_in,
)

pytestmark = pytest.mark.browser

QUESTION = "Does the hoodie run small? I'm usually an M."
ANSWER = "It runs true to size: take your usual M."
PUBLIC_ANSWER = "Our hoodies run true to size."


def test_a_private_question_from_a_phone_is_answered_from_the_studio_and_nobody_else_sees_it(
    pages: Pages, server: ServerProcess, redis_url: str
) -> None:
    """A signed-in viewer on a phone opens "Ask the seller" and writes; the host's studio lists the thread with one
    unread message live, opens it and answers; the answer appears in the viewer's panel without a reload, with the
    viewer's message marked Seen; a second viewer in the same room, whose page keeps up with the room, shows
    neither message. Asked to answer in public, the viewer allows it: only then does the room's chat show the
    answer, quoting the question without the viewer's name."""
    shop = demo_shop(server.base_url, server.ws_url, redis_url)
    studio = pages.open(login_link(shop, "Maya", "host"), **DESKTOP)
    expect(studio.locator("#studio")).to_be_visible()
    expect(studio.locator("#messages")).to_be_attached()

    asker = pages.open(room_url(shop), **PHONE)
    expect(asker.locator("#stage")).to_have_attribute("data-connection", "open")
    sign_in(asker, shop.base_url, new_email("mia"))
    other = pages.open(room_url(shop), **PHONE)
    expect(other.locator("#stage")).to_have_attribute("data-connection", "open")

    asker.click("#ask-button")
    panel = asker.locator("#ask-panel")
    expect(panel).to_be_visible()
    expect(asker.locator("#ask-thread")).to_have_attribute("data-state", "ready")
    asker.fill("#ask-panel .thread-input", QUESTION)
    asker.click("#ask-panel .thread-send")
    expect(panel.locator(".thread-messages > li[data-side=buyer]")).to_contain_text(QUESTION)

    row = studio.locator("#inbox-threads .inbox-row").first
    expect(row).to_contain_text(QUESTION)
    expect(row).to_have_attribute("data-unread", "1")
    row.locator("button").first.click()
    expect(studio.locator("#inbox-messages .inbox-message[data-side=buyer]")).to_contain_text(QUESTION)
    studio.fill("#inbox-text", ANSWER)
    studio.click("#inbox-send")
    expect(studio.locator("#inbox-messages .inbox-message[data-side=staff]")).to_contain_text(ANSWER)
    expect(studio.locator(".inbox-tabs [data-count=pending]")).to_have_text("1")  # answered: pending on the buyer
    expect(studio.locator(".inbox-tabs [data-count=open]")).to_have_text("0")

    expect(panel.locator(".thread-messages > li[data-side=staff]")).to_contain_text(ANSWER)
    expect(panel.locator(".thread-seen")).to_be_visible()
    screenshot(asker, "service-answered-phone.png")

    pin(shop, shop.products[0])  # the other viewer's page is live: it shows what the room does next
    expect(other.locator("#card")).to_be_visible()
    expect(other.locator("body")).not_to_contain_text(QUESTION)
    expect(other.locator("body")).not_to_contain_text(ANSWER)
    expect(other.locator("#ask-badge")).to_be_hidden()

    # with the buyer's consent, and only then, the answer goes to the room's chat, the question quoted unnamed
    question = studio.locator("#inbox-messages .inbox-message[data-side=buyer]").first
    question.get_by_role("button", name="Answer in public").click()
    studio.get_by_label("Answer for the room").fill(PUBLIC_ANSWER)
    studio.get_by_role("button", name="Ask to post it").click()
    expect(studio.locator(".inbox-public[data-state=asked]")).to_be_visible()
    consent = panel.locator('[data-consent="allow"]')
    expect(consent).to_be_visible()
    expect(other.locator("body")).not_to_contain_text(PUBLIC_ANSWER)
    consent.click()
    answer_line = other.locator("#chat li.answer")
    expect(answer_line).to_contain_text(PUBLIC_ANSWER)
    expect(answer_line.locator(".question")).to_have_text(f"Q: {QUESTION}")
    expect(answer_line).not_to_contain_text("mia")
    expect(studio.locator(".inbox-public[data-state=posted]")).to_be_visible()
    screenshot(studio, "service-inbox-desktop.png")
