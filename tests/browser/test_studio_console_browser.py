"""The studio as a seller watches it (issue 16, point 4), in real Chromium against a real server process, Redis and
PostgreSQL: the live orders feed, the show's likes and numbers counted from 0 each show, moderation by tap, the sale
form above the fold with "Start now", "Restock" and "Extend" reaching a viewer's phone, and the phone's console that
fits one screen, at a desktop's 1280x800 and a phone's 390x844."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from loadtests.support.server import ServerProcess
from tests.browser import axe
from tests.browser.helpers import (
    PHONE,
    Pages,
    api_member,
    demo_shop,
    login_link,
    ms,
    new_email,
    room_url,
    screenshot,
)
from tests.browser.test_pages import browser, camera_scene  # noqa: F401 (the camera films a product scene)
from tests.conftest import Shop
from tests.sale_helpers import GOOD_CARD, auth, buy, create_sale
from tests.timing import seconds

pytestmark = pytest.mark.browser

LAPTOP = {"viewport": {"width": 1280, "height": 800}}
SHIPPING = {"name": "Ana Lima", "address": "12 Harbour Lane, Portsmouth PO1 3AX"}


# --- the steps -------------------------------------------------------------------------------------------


def open_studio(pages: Pages, shop: Shop, size: dict[str, Any]) -> Page:
    studio = pages.open(login_link(shop), **size)
    expect(studio.locator("#studio")).to_have_attribute("data-connection", "open")
    expect(studio.locator("#preview-box")).to_have_attribute("data-camera", "on")
    return studio


def open_viewer(pages: Pages, shop: Shop) -> Page:
    viewer = pages.open(room_url(shop), **PHONE)
    expect(viewer.locator("#stage")).to_have_attribute("data-connection", "open")
    return viewer


def go_live(studio: Page) -> None:
    studio.click("#go-live")
    expect(studio.locator("#status-pill")).to_have_attribute("data-state", "live", timeout=ms(20))


def end_show(studio: Page) -> None:
    studio.click("#end-show")
    studio.click("#end-show")  # the second press confirms
    expect(studio.locator("#status-pill")).to_have_attribute("data-state", "ended")


def say(page: Page, text: str) -> None:
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")
    expect(page.locator("#chat li .text", has_text=text)).to_be_visible()


def pay(base_url: str, token: str, order_id: str) -> None:
    """The buyer pays with the sandbox's test card, shipping to an address (asked once, remembered)."""
    paid = httpx.post(
        f"{base_url}/api/orders/{order_id}/payment",
        json={"card_number": GOOD_CARD, "shipping": SHIPPING},
        headers={**auth(token), "Idempotency-Key": secrets.token_hex(8)},
        timeout=seconds(10),
    )
    assert paid.status_code == 200, paid.text


def in_viewport(page: Page, locator: Locator) -> None:
    """The element is shown whole within the window, without scrolling."""
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    size = page.viewport_size
    assert box is not None and size is not None
    assert box["x"] >= 0 and box["y"] >= 0, box
    assert box["x"] + box["width"] <= size["width"] + 1 and box["y"] + box["height"] <= size["height"] + 1, box


def swipe(page: Page, from_x: float, to_x: float, y: float) -> None:
    """A finger's sideways swipe (touch events, as a phone sends them) over a third of a second; the finger rests
    before it lifts, so no fling is left running (a tap that stops a fling is not a click)."""
    cdp = page.context.new_cdp_session(page)
    start = time.time()

    def touch(kind: str, points: list[dict[str, float]], at: float) -> None:
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points, "timestamp": start + at})

    touch("touchStart", [{"x": from_x, "y": y}], 0)
    for step in range(1, 7):
        touch("touchMove", [{"x": from_x + (to_x - from_x) * step / 6, "y": y}], step * 0.03)
    touch("touchMove", [{"x": to_x, "y": y}], 0.3)
    touch("touchEnd", [], 0.32)
    cdp.detach()


def keep(page: Page, name: str) -> None:
    """A screenshot of the page at the top, once its toasts have gone, in test-artifacts/; the page as
    shown breaks no WCAG 2 A or AA rule (axe-core)."""
    page.evaluate("scrollTo(0, 0)")
    expect(page.locator("#toasts .toast")).to_have_count(0)
    screenshot(page, name)
    axe.check(page, name)


# --- the tests ---------------------------------------------------------------------------------------------


def test_orders_feed_likes_and_numbers_start_at_zero_each_show(
    pages: Pages, server: ServerProcess, redis_url: str
) -> None:
    """At 1280x800: the viewer count leaves the host out; a viewer's hearts raise the studio's likes; a buyer's order
    appears in the live orders feed as held, then as paid, with the amount, and the header's line counts them; a
    second show starts at 0 likes, 0 orders and an empty orders feed and chat, while the first show keeps its numbers
    in Past shows. The studio with its feed passes axe-core's WCAG 2 A and AA rules."""
    shop = demo_shop(server.base_url, server.ws_url, redis_url, "Orders night")
    studio = open_studio(pages, shop, LAPTOP)
    studio.click("#bag-all")
    go_live(studio)
    studio.click("li.product-row[data-product-id=sneaker] .present-button")
    viewer = open_viewer(pages, shop)
    expect(studio.locator("#stat-viewers")).to_have_text("1")  # the viewer; the host is staff

    for _ in range(5):
        viewer.click("#like")
    expect(viewer.locator("#likes")).to_have_text("5")
    expect(studio.locator("#stat-likes")).to_have_text("5")
    say(viewer, "Is there a size 42?")
    expect(studio.locator("#chat li .text")).to_have_text(["Is there a size 42?"])

    # A buyer holds a unit: the feed shows it at once, held, then paid.
    sale = create_sale(shop, product_id="sneaker", price=3900, quantity=10, per_user_limit=2)
    expect(studio.locator("#orders-empty")).to_have_text("No orders yet in this show.")
    email = new_email("ana")
    ana = api_member(server.base_url, email)
    held = buy(server.base_url, ana, sale["id"])
    assert held.status_code == 201, held.text
    order_id = held.json()["order_id"]
    row = studio.locator(f"#orders-feed li[data-order-id='{order_id}']")
    expect(row).to_have_attribute("data-status", "held")
    expect(row.locator(".order-buyer")).to_have_text(email.partition("@")[0])
    expect(row.locator(".order-product")).to_have_text("Cloudrunner sneakers")
    expect(row.locator(".order-amount")).to_have_text("$39.00")
    expect(row.locator(".order-status")).to_have_text("Held")
    expect(row.locator(".order-time")).to_have_text(re.compile(r"\d:\d\d:\d\d"))
    expect(studio.locator("#orders-summary")).to_have_text("0 paid · 1 held")
    pay(server.base_url, ana, order_id)
    expect(row.locator(".order-status")).to_have_text("Paid")
    expect(studio.locator("#orders-summary")).to_have_text("1 paid · 0 held")
    expect(studio.locator("#stat-orders")).to_have_text("1")
    expect(studio.locator("#stat-gmv")).to_have_text("$39.00")
    expect(studio.locator("#top-numbers")).to_have_text("1 viewer · 5 likes · 1 order")  # the header: always in view
    assert studio.locator("#top-numbers").bounding_box()["y"] < 80  # type: ignore[index]
    say(studio, "Thank you Ana!")
    keep(studio, "studio.png")

    # The show ends; the next one starts from nothing.
    end_show(studio)
    expect(studio.locator("#shows-body tr")).to_have_count(1)
    first = studio.locator("#shows-body tr").first
    expect(first.locator("td")).to_have_text(
        [re.compile("."), re.compile(r"\d:\d\d"), "1", "5", "1", "$39.00", "100.0%"]
    )
    go_live(studio)
    for stat, value in [("likes", "0"), ("orders", "0"), ("units", "0"), ("gmv", "$0.00"), ("viewers", "1")]:
        expect(studio.locator(f"#stat-{stat}")).to_have_text(value)
    expect(studio.locator("#orders-feed li")).to_have_count(0)
    expect(studio.locator("#orders-empty")).to_have_text("No orders yet in this show.")
    expect(studio.locator("#chat li")).to_have_count(0)
    for _ in range(2):
        viewer.click("#like")
    expect(studio.locator("#stat-likes")).to_have_text("2")


def test_sale_form_above_the_fold_and_start_now_restock_extend_reach_a_viewers_phone(
    pages: Pages, server: ServerProcess, redis_url: str
) -> None:
    """At 1280x800 the sale form's button is within the first 800 px. A sale set to start in a minute starts at once
    with "Start now"; "Restock" adds units and "Extend" adds minutes: each time the viewer's phone shows the new
    countdown and stock, and the studio the sale's new numbers."""
    shop = demo_shop(server.base_url, server.ws_url, redis_url, "Restock night")
    studio = open_studio(pages, shop, LAPTOP)
    assert studio.evaluate("scrollY") == 0
    in_viewport(studio, studio.locator("#sale-start"))
    studio.click("li.product-row[data-product-id=sneaker] .present-button")
    viewer = open_viewer(pages, shop)
    expect(viewer.locator("#card-title")).to_have_text("Cloudrunner sneakers")

    studio.select_option("#sale-product", "sneaker")
    studio.fill("#sale-price", "39")
    studio.fill("#sale-quantity", "10")
    studio.select_option("#sale-countdown", "60")
    studio.click("#sale-start")
    item = studio.locator("#sales li.sale-item").first
    expect(item).to_have_attribute("data-status", "scheduled")
    expect(viewer.locator("#card")).to_have_attribute("data-sale", "scheduled")
    expect(viewer.locator("#card-timer")).to_contain_text(re.compile(r"Starts in (1:00|0:[0-5]\d)"))

    item.get_by_role("button", name="Start now").click()
    expect(item).to_have_attribute("data-status", "live")
    expect(item.get_by_role("button", name="Start now")).to_be_hidden()
    expect(studio.locator("#toasts")).to_contain_text("Cloudrunner sneakers is on sale now")
    expect(viewer.locator("#card")).to_have_attribute("data-sale", "live")
    expect(viewer.locator("#card-timer")).to_contain_text(re.compile(r"(5:00|4:[45]\d)"))
    expect(viewer.locator("#buy")).to_be_enabled()

    item.get_by_role("button", name="Restock").click()
    item.get_by_label("Units to add").fill("5")
    item.get_by_role("button", name="Add units").click()
    expect(item.locator("[data-testid=sale-quantity]")).to_have_text("15")
    expect(item.locator("[data-testid=sale-available]")).to_have_text("15")
    expect(studio.locator("#toasts")).to_contain_text("Restocked: 15 units in all, 15 left")
    expect(viewer.locator("#card-stock")).to_have_attribute("data-available", "15")
    expect(viewer.locator("#card-stock-text")).to_contain_text("15")

    item.get_by_role("button", name="Extend").click()
    item.get_by_label("Minutes to add").fill("10")
    item.get_by_role("button", name="Add time").click()
    expect(item.locator("[data-testid=sale-timer]")).to_contain_text(re.compile(r"Ends in 1[45]:"))
    expect(studio.locator("#toasts")).to_contain_text("Extended: ends at")
    expect(viewer.locator("#card-timer")).to_contain_text(re.compile(r"1[45]:\d\d"))
    in_viewport(studio, studio.locator("#sale-start"))


def test_moderation_by_tap_on_a_phone(pages: Pages, server: ServerProcess, redis_url: str) -> None:
    """On a phone (no hover) a chat line's moderation is hidden until a tap on the line or its ⋯ opens it: the host
    deletes one message and bans its author by taps, and the viewer is told; by keyboard, Enter on ⋯ opens the
    actions with the focus on them and Escape closes them."""
    shop = demo_shop(server.base_url, server.ws_url, redis_url, "Tap night")
    studio = open_studio(pages, shop, PHONE)
    viewer = open_viewer(pages, shop)
    say(viewer, "first!")
    say(viewer, "buy followers at spam.example")
    expect(studio.locator("#chat li .text")).to_have_text(["first!", "buy followers at spam.example"])

    spam = studio.locator("#chat li", has_text="spam.example")
    delete = spam.get_by_role("button", name="Delete")
    expect(delete).to_be_hidden()
    spam.locator(".text").tap()
    expect(delete).to_be_visible()
    in_viewport(studio, delete)
    delete.tap()
    expect(viewer.locator("#chat li .text")).to_have_text(["first!"])
    expect(studio.locator("#chat li .text")).to_have_text(["first!"])

    first = studio.locator("#chat li", has_text="first!")
    toggle = first.get_by_role("button", name=re.compile("^Moderate"))
    expect(toggle).to_be_visible()
    expect(first.get_by_role("button", name="Ban")).to_be_hidden()
    toggle.tap()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    first.get_by_role("button", name="Ban").tap()
    expect(first.get_by_role("button", name="Ban")).to_be_hidden()
    studio.get_by_role("button", name="Blocked words & bans").tap()
    expect(studio.locator("#restricted")).to_contain_text("banned")
    viewer.fill("#chat-input", "am I banned?")
    viewer.press("#chat-input", "Enter")
    expect(viewer.locator("#chat li.notice").last).to_have_text("You can't chat in this room.")
    studio.get_by_role("button", name="Blocked words & bans").tap()
    expect(studio.locator("#chat")).to_be_visible()

    # By keyboard.
    toggle.focus()
    studio.keyboard.press("Enter")
    expect(first.get_by_role("button", name="Delete")).to_be_focused()
    studio.keyboard.press("Escape")
    expect(first.get_by_role("button", name="Delete")).to_be_hidden()
    expect(toggle).to_be_focused()


def test_phone_console_fits_one_screen(pages: Pages, server: ServerProcess, redis_url: str) -> None:
    """At 390x844 the studio is one screen, live too: the camera, what's on screen, the sale controls and the chat,
    no page scroll; the host presents a product from the Bag tab, sets a sale from the Sell tab, lands back on the
    console and starts it there ("Start now" reaches the viewer's phone); the orders, selling, bag, messages and
    more are each a tab or a swipe away. The console passes axe-core's WCAG 2 A and AA rules."""
    shop = demo_shop(server.base_url, server.ws_url, redis_url, "Phone night")
    studio = open_studio(pages, shop, PHONE)
    viewer = open_viewer(pages, shop)
    tab = {name: studio.locator(f"#console-tabs [data-tab={name}]") for name in ("live", "orders", "sell", "bag")}

    def one_screen() -> None:
        assert studio.evaluate("document.documentElement.scrollHeight") <= 844 + 2
        for part in ("#preview-box", "#console-pin", "#console-sale", "#chat", "#chat-input", "#go-live, #end-show"):
            in_viewport(studio, studio.locator(part).locator("visible=true").first)

    one_screen()
    expect(studio.locator("#console-pin")).to_contain_text("No product")
    studio.get_by_role("button", name="Present one").tap()
    expect(tab["bag"]).to_have_attribute("aria-selected", "true")
    studio.locator("li.product-row[data-product-id=sneaker] .present-button").tap()
    expect(studio.locator("li.product-row.pinned")).to_have_attribute("data-product-id", "sneaker")
    tab["live"].tap()
    expect(studio.locator("#console-pin")).to_contain_text("Cloudrunner sneakers")
    expect(viewer.locator("#card-title")).to_have_text("Cloudrunner sneakers")

    studio.get_by_role("button", name="New sale").tap()
    expect(tab["sell"]).to_have_attribute("aria-selected", "true")
    expect(studio.locator("#sale-price")).to_be_focused()
    studio.fill("#sale-price", "39")
    studio.fill("#sale-quantity", "12")
    studio.select_option("#sale-countdown", "60")
    studio.locator("#sale-start").tap()
    expect(tab["live"]).to_have_attribute("aria-selected", "true")
    card = studio.locator("#console-sale")
    expect(card).to_have_attribute("data-status", "scheduled")
    expect(card.locator("[data-testid=console-timer]")).to_contain_text("Starts in")
    expect(card.locator("[data-testid=console-stock]")).to_have_text("12 left · 0 held · 0 sold of 12")
    one_screen()
    card.get_by_role("button", name="Start now").tap()
    expect(card).to_have_attribute("data-status", "live")
    expect(card.locator("[data-testid=console-timer]")).to_contain_text("Ends in")
    expect(viewer.locator("#card")).to_have_attribute("data-sale", "live")
    expect(viewer.locator("#buy")).to_be_enabled()

    go_live(studio)
    say(viewer, "Love the colour")
    say(viewer, "Do they run true to size?")
    say(studio, "They do, take your usual size")
    one_screen()
    keep(studio, "studio-phone.png")

    # A swipe to the left is the next tab, to the right the one before.
    swipe(studio, 330, 60, 600)
    expect(tab["orders"]).to_have_attribute("aria-selected", "true")
    expect(studio.locator("#orders")).to_be_visible()
    expect(studio.locator("#chat")).to_be_hidden()
    swipe(studio, 60, 330, 400)
    expect(tab["live"]).to_have_attribute("aria-selected", "true")
    expect(studio.locator("#chat")).to_be_visible()

    # Every other panel is a tab away; each tab is its own screen's worth, scrolled inside.
    shown = {
        "orders": ["#orders", ".stats-panel"],
        "sell": ["#sale-form", "#giveaways", "#auctions"],
        "bag": ["#products"],
        "messages": ["#messages"],
        "more": [".shows-panel", "#preview-box"],
    }
    for name, parts in shown.items():
        studio.locator(f"#console-tabs [data-tab={name}]").tap()
        for part in parts:
            expect(studio.locator(part)).to_be_visible()
        expect(studio.locator("#chat")).to_be_hidden()
        assert studio.evaluate("document.documentElement.scrollHeight") <= 844 + 2
    tab["live"].tap()
    one_screen()
