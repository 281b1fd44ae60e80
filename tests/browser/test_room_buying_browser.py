"""Buying in the viewer room (docs/sales.md, "The viewer room") in real Chromium at the three phone sizes and once at a
desktop's, against a real server process, Redis and PostgreSQL.

Anything in the bag is bought at its regular price, the shipping address asked once; the card shows the buyer's own
state (Purchased ✓, then Limit reached), and nobody is told that "someone" bought what they bought themselves; a
sold-out deal offers the regular-price item or "Notify me", and the toast when it is back; on a 320 x 568 phone
nothing on the card covers anything else.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import FloatRect, Page, expect
from websockets.sync.client import ClientConnection, connect

from loadtests.support.server import ServerProcess
from tests.browser.helpers import (
    DESKTOP,
    PHONE,
    SHIP_TO,
    Pages,
    demo_shop,
    fill_shipping,
    ms,
    new_email,
    room_command,
    room_url,
    screenshot,
    sign_in,
    uncovered,
)
from tests.conftest import Shop, host_starts, member
from tests.sale_helpers import GOOD_CARD, auth, buy, wait_recorded
from tests.timing import seconds

pytestmark = pytest.mark.browser

MEDIUM = {**PHONE, "viewport": {"width": 375, "height": 667}}
SMALL = {**PHONE, "viewport": {"width": 320, "height": 568}}
TIMES, MINUS = "\u00d7", "\u2212"  # the multiplication and minus signs the page writes
LONG_NAME = "Cloudrunner ultralight knit running sneakers, limited edition colourway"


# --- the shop, through the REST API and the host's room socket ----------------------------------------------


def stock_shelf(shop: Shop, product_id: str, units: int, per_user_limit: int | None = None) -> dict[str, Any]:
    """Units of the product on its shelf, at its regular price (as the host)."""
    body: dict[str, int] = {"units": units}
    if per_user_limit is not None:
        body["per_user_limit"] = per_user_limit
    response = httpx.post(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/products/{product_id}/shelf",
        json=body,
        headers=auth(shop.host),
        timeout=seconds(10),
    )
    assert response.status_code == 200, response.text
    shelf: dict[str, Any] = response.json()["shelf"]
    return shelf


def start_deal(shop: Shop, product_id: str, price: int, quantity: int, per_user_limit: int, **terms: Any) -> Any:
    """A flash deal of the product, live now for ten minutes (as the host)."""
    body = {"product_id": product_id, "price": price, "quantity": quantity, "per_user_limit": per_user_limit}
    body |= {"starts_at": int(time.time() * 1000), "duration_seconds": 600, **terms}
    response = host_starts(shop, "sales", body)
    assert response.status_code == 201, response.text
    return response.json()


def adjust(shop: Shop, sale_id: str, what: str, **body: int) -> None:
    """The host starts, restocks or extends a running sale."""
    response = httpx.post(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/sales/{sale_id}/{what}",
        json=body,
        headers=auth(shop.host),
        timeout=seconds(10),
    )
    assert response.status_code == 200, response.text


def bought_by_another(shop: Shop, sale_id: str, quantity: int = 1) -> None:
    """Another shopper buys in the sale and pays (through the REST API, with their address)."""
    token = member(name="Another")
    held = buy(shop.base_url, token, sale_id, quantity)
    assert held.status_code == 201, held.text
    paid = httpx.post(
        f"{shop.base_url}/api/orders/{held.json()['order_id']}/payment",
        json={"card_number": GOOD_CARD, "shipping": {"name": "Bo", "address": "2 Harbour Road, Portsmouth"}},
        headers={**auth(token), "Idempotency-Key": secrets.token_hex(8)},
        timeout=seconds(10),
    )
    assert paid.status_code == 200, paid.text


class RoomListener:
    """A guest's room socket that reads what every viewer hears (sale toasts among it)."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket

    def next_toast(self, sale_id: str) -> dict[str, Any]:
        """The next `sale.toast` of this sale."""
        while True:
            frame = orjson.loads(self.socket.recv(timeout=seconds(15)))
            for item in frame.get("events", [frame]):
                if item.get("type") == "sale.toast" and item.get("sale_id") == sale_id:
                    return dict(item)


@contextmanager
def listening(shop: Shop) -> Iterator[RoomListener]:
    """A guest in the room for the block's length."""
    with connect(f"{shop.ws_url}/ws/rooms/{shop.room_id}") as socket:
        socket.send(orjson.dumps({"type": "auth", "token": shop.guest()}).decode())
        socket.recv(timeout=seconds(5))  # the snapshot
        yield RoomListener(socket)


# --- pages ------------------------------------------------------------------------------------------------------


def viewer(pages: Pages, shop: Shop, size: dict[str, Any]) -> Page:
    """A shopper on the room, connected; every toast it shows is kept in `window.__toasts`."""
    page = pages.open(room_url(shop), **size)
    expect(page.locator("#stage")).to_have_attribute("data-connection", "open")
    page.evaluate(
        """() => {
          window.__toasts = [];
          new MutationObserver((changes) => {
            for (const change of changes) for (const node of change.addedNodes) window.__toasts.push(node.textContent);
          }).observe(document.getElementById('toasts'), {childList: true});
        }"""
    )
    return page


def toasts_seen(page: Page, word: str) -> list[str]:
    return [seen for seen in page.evaluate("window.__toasts") if word in seen]


def page_token(page: Page) -> str:
    return str(page.evaluate("window.livecart.session.token()"))


def pay(page: Page, amount: str, *, fill: bool = True) -> str:
    """At the payment step: the address when asked (unless `fill` is false: as the test left it), the sandbox's good
    card, paid; back to the show. The order's id."""
    if fill:
        fill_shipping(page)
    page.fill("#card-number", GOOD_CARD)
    page.click("#pay")
    expect(page.locator("#checkout")).to_have_attribute("data-step", "done")
    expect(page.locator("#done-text")).to_contain_text(f"{amount} paid")
    order_id = page.locator("#checkout").get_attribute("data-order-id")
    assert order_id
    page.click("#checkout .step-done [data-close]")
    expect(page.locator("#checkout")).to_be_hidden()
    return order_id


def shipped_to(page: Page, order_id: str) -> Any:
    """Where the order ships, as its buyer reads it (REST API)."""
    response = httpx.get(f"{page.url.split('/room.html')[0]}/api/orders/{order_id}", headers=auth(page_token(page)))
    assert response.status_code == 200, response.text
    return response.json()["shipping"]


def bag_item(page: Page, product_id: str) -> Any:
    return page.locator(f"#bag-list li[data-product-id='{product_id}']")


def box(page: Page, selector: str) -> FloatRect:
    found = page.locator(selector).bounding_box()
    assert found is not None and found["width"] > 0 and found["height"] > 0, selector
    return found


def apart(first: FloatRect, second: FloatRect) -> bool:
    """True when two boxes share no pixel."""
    return (
        first["x"] + first["width"] <= second["x"]
        or second["x"] + second["width"] <= first["x"]
        or first["y"] + first["height"] <= second["y"]
        or second["y"] + second["height"] <= first["y"]
    )


# --- the tests ---------------------------------------------------------------------------------------------------


def test_a_bag_item_is_bought_at_its_regular_price_and_the_address_is_asked_once(
    pages: Pages, server: ServerProcess, redis_url: str
) -> None:
    """The card presents a product with no deal at its regular price, Buy and its stock. A signed-in shopper opens the
    bag: each product with its price, Buy where its shelf has units ("N left"), "Sold out" with "Notify me when it's
    back" where it has none. She buys the hoodie at its regular price: the checkout asks
    her name and address once and the order ships there; her next purchase shows the saved address with Change, and a
    changed one is what the order after it ships to and shows. The hoodie's row says "Purchased ✓", then "Limit
    reached" at its per-buyer limit; "My orders" leads to her orders."""
    shop = demo_shop(server.base_url, server.ws_url, redis_url, "Regular price night")
    stock_shelf(shop, "sneaker", 10)
    stock_shelf(shop, "hoodie", 5, per_user_limit=2)
    stock_shelf(shop, "mug", 3)
    room_command(shop, shop.host, "bag.set", product_ids=["sneaker", "hoodie", "mug", "lipstick"])
    room_command(shop, shop.host, "product.pin", product_id="sneaker")

    # The card presents the sneakers, no deal on: at the regular price, from the shelf.
    page = viewer(pages, shop, PHONE)
    expect(page.locator("#card-price")).to_have_text("$59.00")
    expect(page.locator("#card-stock-text")).to_have_text("10 left")
    expect(page.locator("#buy")).to_have_text("Buy")
    expect(page.locator("#deal-chip")).to_be_hidden()
    sign_in(page, server.base_url, new_email("ana"))
    expect(page.locator("#bag-count")).to_have_text("4")
    page.click("#bag-button")
    expect(page.locator("#bag-sheet")).to_be_visible()
    hoodie, mug, lipstick = (bag_item(page, name) for name in ("hoodie", "mug", "lipstick"))
    expect(hoodie).to_have_attribute("data-state", "shelf")
    expect(hoodie.locator(".meta")).to_have_text(re.compile(r"^\$39\.00\s*5 left$"))
    expect(hoodie.locator("[data-testid=bag-buy]")).to_have_text("Buy")
    expect(mug.locator(".meta")).to_contain_text("3 left")
    expect(lipstick).to_have_attribute("data-state", "sold_out")
    expect(lipstick.locator(".meta")).to_contain_text("Sold out")
    expect(lipstick.locator("[data-testid=notify]")).to_have_text("Notify me when it's back")
    expect(page.locator("[data-testid=bag-orders]")).to_have_attribute("href", re.compile(r"^/messages\.html"))
    screenshot(page, "viewer-bag.png", animations="disabled")

    # The hoodie at its regular price: the address asked (nothing saved yet), the order ships there.
    hoodie.locator("[data-testid=bag-buy]").click()
    expect(page.locator("#checkout")).to_have_attribute("data-step", "hold")
    expect(page.locator("#order-title")).to_have_text("Everyday hoodie")
    expect(page.locator("#order-detail")).to_have_text(f"1 {TIMES} $39.00 · regular price")
    expect(page.locator("#ship")).to_have_attribute("data-state", "ask")
    page.fill("#ship-name", SHIP_TO["name"])
    page.fill("#ship-address", SHIP_TO["address"])
    page.fill("#card-number", GOOD_CARD)
    page.click("#pay")
    expect(page.locator("#checkout")).to_have_attribute("data-step", "done")
    expect(page.locator("#done-text")).to_contain_text("$39.00 paid")
    expect(page.locator("[data-testid=done-orders]")).to_have_attribute("href", re.compile(r"^/messages\.html"))
    first = page.locator("#checkout").get_attribute("data-order-id")
    assert first and shipped_to(page, first) == {**SHIP_TO, "phone": None}
    page.click("#checkout .step-done [data-close]")

    # The bag again: one hoodie fewer, and hers.
    page.click("#bag-button")
    expect(hoodie.locator(".meta")).to_contain_text("4 left")
    expect(hoodie.locator("[data-testid=bag-buy]")).to_have_text("Purchased ✓")

    # The mug: the saved address as a summary; she changes it, and the order ships to the new one.
    mug.locator("[data-testid=bag-buy]").click()
    expect(page.locator("#checkout")).to_have_attribute("data-step", "hold")
    expect(page.locator("#ship")).to_have_attribute("data-state", "known")
    expect(page.locator("#ship-summary")).to_contain_text(SHIP_TO["name"])
    expect(page.locator("#ship-summary")).to_contain_text(SHIP_TO["address"])
    page.click("#ship-change")
    expect(page.locator("#ship")).to_have_attribute("data-state", "ask")
    expect(page.locator("#ship-name")).to_have_value(SHIP_TO["name"])
    moved = {"name": SHIP_TO["name"], "address": "2 Harbour Road, Portsmouth"}
    page.fill("#ship-address", moved["address"])
    second = pay(page, "$12.00", fill=False)
    assert shipped_to(page, second) == {**moved, "phone": None}

    # A second hoodie (a tap on "Purchased ✓" buys one more): the new address is the one shown, and sent.
    page.click("#bag-button")
    hoodie.locator("[data-testid=bag-buy]").click()
    expect(page.locator("#ship")).to_have_attribute("data-state", "known")
    expect(page.locator("#ship-summary")).to_contain_text(moved["address"])
    third = pay(page, "$39.00")
    assert shipped_to(page, third) == {**moved, "phone": None}
    page.click("#bag-button")
    expect(hoodie.locator("[data-testid=bag-buy]")).to_have_text("Limit reached")
    expect(hoodie.locator("[data-testid=bag-buy]")).to_be_disabled()
    expect(hoodie.locator(".meta")).to_contain_text("3 left")


def test_the_buyers_card_says_purchased_then_limit_reached_and_no_toast_of_their_own_order(
    pages: Pages, server_factory: object, redis_url: str, database_url: str
) -> None:
    """A buyer pays for one of a deal's two units per buyer: the card says "Purchased ✓" (a tap buys one more) and she
    is not told "someone just bought" it; another shopper's purchase does toast ("Someone just bought …"). She buys
    her second while another shopper buys too: "1 other also bought …", and the card says "Limit reached", also after
    a reload (her orders read from the server)."""
    every = round(ms(4))  # toasts of a sale at most this often: both last purchases land in one
    server: ServerProcess = server_factory(TOAST_INTERVAL_MS=str(every))  # type: ignore[operator]
    shop = demo_shop(server.base_url, server.ws_url, redis_url, "My own orders")
    room_command(shop, shop.host, "product.pin", product_id="sneaker")
    sale = start_deal(shop, "sneaker", price=3900, quantity=10, per_user_limit=2)
    with listening(shop) as listener:
        page = viewer(pages, shop, MEDIUM)
        sign_in(page, server.base_url, new_email("ana"))
        buy_button = page.locator("#buy")
        expect(buy_button).to_have_text("Buy")
        buy_button.click()
        first = pay(page, "$39.00")
        expect(buy_button).to_have_text("Purchased ✓")
        expect(buy_button).to_be_enabled()

        # Her purchase's toast reaches the room, and her page keeps it to itself.
        assert listener.next_toast(sale["id"])["orders"] == 1
        page.wait_for_function(
            "(id) => !window.livecart.mine.untoasted.has(id) && !window.livecart.mine.sending.has(id)",
            arg=sale["id"],
            timeout=ms(10),
        )
        assert toasts_seen(page, "bought") == []

        # Another shopper's purchase is news.
        bought_by_another(shop, sale["id"])
        assert listener.next_toast(sale["id"])["orders"] == 1
        expect(page.locator("#toasts")).to_contain_text("Someone just bought Cloudrunner sneakers")

        # Her second unit and another shopper's, in one toast: the others are counted, not her.
        buy_button.click()
        second = pay(page, "$39.00")
        bought_by_another(shop, sale["id"])
        assert listener.next_toast(sale["id"])["orders"] == 2
        expect(page.locator("#toasts")).to_contain_text("1 other also bought Cloudrunner sneakers")
        assert toasts_seen(page, "bought") == [
            "Someone just bought Cloudrunner sneakers",
            "1 other also bought Cloudrunner sneakers",
        ]
        expect(buy_button).to_have_text("Limit reached")
        expect(buy_button).to_be_disabled()
        expect(page.locator("#card-quantity")).to_be_hidden()

        # After a reload the card reads her orders: still "Limit reached".
        wait_recorded(database_url, {first: "paid", second: "paid"})
        page.reload()
        expect(page.locator("#stage")).to_have_attribute("data-connection", "open")
        expect(buy_button).to_have_text("Limit reached")
        expect(buy_button).to_be_disabled()


def test_a_sold_out_deal_offers_the_regular_price_or_notify_me_and_tells_when_its_back(
    pages: Pages, server: ServerProcess, redis_url: str
) -> None:
    """On a 320 x 568 phone: a sold-out deal on the lipstick (no shelf) offers "Notify me when it's back"; a guest is
    asked to sign in first, then it says "We'll tell you ✓" (a tap again stops it, another asks again). The host
    stocks the shelf: a toast "Velvet lipstick is back" with Buy takes her to the checkout at the regular price. A
    sold-out deal on the mug offers "Buy at regular price $12.00", bought; the host restocks the deal (it is live
    again with its new stock) and extends it (its countdown grows)."""
    shop = demo_shop(server.base_url, server.ws_url, redis_url, "Back in stock")
    room_command(shop, shop.host, "bag.set", product_ids=["sneaker", "hoodie", "mug", "lipstick"])
    room_command(shop, shop.host, "product.pin", product_id="lipstick")
    lipstick = start_deal(shop, "lipstick", price=900, quantity=1, per_user_limit=1)
    bought_by_another(shop, lipstick["id"])

    page = viewer(pages, shop, SMALL)
    expect(page.locator("#card")).to_have_attribute("data-sale", "sold_out")
    expect(page.locator("#card-stock-text")).to_have_text("Sold out")
    notify = page.locator("#card-fallback [data-testid=notify]")
    expect(notify).to_have_text("Notify me when it's back")
    expect(page.locator("#buy")).to_be_hidden()
    expect(page.locator("#deal-chip")).to_be_hidden()  # no live deal
    notify.click()
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#signin-reason")).to_contain_text("we'll tell you when it's back")
    page.keyboard.press("Escape")
    sign_in(page, server.base_url, new_email("ana"))
    notify.click()
    expect(notify).to_have_text("We'll tell you ✓")
    expect(notify).to_have_attribute("aria-pressed", "true")
    notify.click()  # she changes her mind, then asks again
    expect(notify).to_have_text("Notify me when it's back")
    notify.click()
    expect(notify).to_have_text("We'll tell you ✓")

    # The host puts lipsticks on the shelf: she is told at once, and Buy takes her to the checkout.
    stock_shelf(shop, "lipstick", 4)
    back = page.locator("[data-testid=back-toast]")
    expect(back).to_contain_text("Velvet lipstick is back")
    expect(page.locator("#card-fallback [data-testid=regular-buy]")).to_have_text("Buy at regular price $18.00")
    back.locator(".toast-action").click()
    expect(page.locator("#checkout")).to_have_attribute("data-step", "hold")
    expect(page.locator("#order-title")).to_have_text("Velvet lipstick")
    expect(page.locator("#order-detail")).to_have_text(f"1 {TIMES} $18.00 · regular price")
    pay(page, "$18.00")

    # The mug's deal sells out; its shelf has units: the card offers the regular price.
    stock_shelf(shop, "mug", 3)
    room_command(shop, shop.host, "product.pin", product_id="mug")
    mug = start_deal(shop, "mug", price=600, quantity=1, per_user_limit=1)
    bought_by_another(shop, mug["id"])
    expect(page.locator("#card")).to_have_attribute("data-sale", "sold_out")
    regular = page.locator("#card-fallback [data-testid=regular-buy]")
    expect(regular).to_have_text("Buy at regular price $12.00")
    regular.click()
    expect(page.locator("#order-detail")).to_have_text(f"1 {TIMES} $12.00 · regular price")
    pay(page, "$12.00")

    # The host restocks the deal: live again, its new stock on the card and its countdown on the video.
    adjust(shop, mug["id"], "restock", units=5)
    expect(page.locator("#card")).to_have_attribute("data-sale", "live")
    expect(page.locator("#card-stock-text")).to_have_text("5 left")
    expect(page.locator("#buy")).to_have_text("Buy")
    expect(page.locator("#card-fallback")).to_be_hidden()
    expect(page.locator("#deal-chip")).to_be_visible()
    expect(page.locator("#card-timer")).to_have_text(re.compile(r"^Ends in [0-9]:\d\d$"))
    adjust(shop, mug["id"], "extend", seconds=900)
    expect(page.locator("#card-timer")).to_have_text(re.compile(r"^Ends in (1[0-9]|2[0-5]):\d\d$"))
    expect(page.locator("#deal-chip-clock")).to_have_text(re.compile(r"^(1[0-9]|2[0-5]):\d\d$"))


@pytest.mark.parametrize(
    "size", [PHONE, MEDIUM, SMALL, DESKTOP], ids=["390x844", "375x667", "320x568", "desktop-1440x900"]
)
def test_nothing_on_the_card_covers_anything_else(
    pages: Pages, server: ServerProcess, redis_url: str, size: dict[str, Any]
) -> None:
    """A live deal of a product with a long name: on each screen no two of the card's parts overlap (the quantity
    stepper and "Ends in", Buy and the old price and the stock among them), all inside the card, nor the waiting
    poster's words and the side rail; stock and countdown
    are at least 14 px; the name wraps to two lines and a tap shows it whole; a countdown chip on the video; Buy can
    be tapped."""
    shop = demo_shop(server.base_url, server.ws_url, redis_url, "Small screens")
    product = {"id": "long", "title": LONG_NAME, "price": 8900, "image_url": "/img/sneaker.svg", "currency": "USD"}
    created = httpx.post(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/products", json=product, headers=auth(shop.admin)
    )
    assert created.status_code in (200, 201), created.text
    room_command(shop, shop.host, "product.pin", product_id="long")
    start_deal(shop, "long", price=4900, quantity=20, per_user_limit=3, buyers="anyone")

    page = viewer(pages, shop, size)
    card = page.locator("#card")
    expect(card).to_have_attribute("data-sale", "live")
    expect(page.locator("#card-quantity")).to_be_visible()
    expect(page.locator("#buy")).to_have_text("Buy")
    expect(page.locator("#card-off")).to_have_text(f"{MINUS}45%")
    expect(page.locator("#deal-chip")).to_be_visible()
    expect(page.locator("#deal-chip-clock")).to_have_text(re.compile(r"^\d+:\d\d$"))

    parts = {
        "picture": "#card-image",
        "tag": "#card-deal",
        "ends in": "#card-timer",
        "name": "#card-title",
        "price": "#card-price",
        "old price": "#card-regular",
        "discount": "#card-off",
        "stock bar": "#card-stock .stock-bar",
        "stock": "#card-stock-text",
        "ask": "#card-ask",
        "stepper": "#card-quantity",
        "buy": "#buy",
    }
    page.evaluate("document.getAnimations().forEach((running) => running.cancel())")  # the card's entrance, Buy's nudge
    boxes = {name: box(page, selector) for name, selector in parts.items()}
    outline = box(page, "#card")
    for name, found in boxes.items():
        assert outline["x"] <= found["x"] and found["x"] + found["width"] <= outline["x"] + outline["width"] + 0.5, name
        assert outline["y"] <= found["y"] and found["y"] + found["height"] <= outline["y"] + outline["height"] + 0.5, (
            name
        )
    names = list(boxes)
    for index, first in enumerate(names):
        for second in names[index + 1 :]:
            assert apart(boxes[first], boxes[second]), f"{first} overlaps {second}: {boxes[first]} {boxes[second]}"
    assert uncovered(page, "#buy") and uncovered(page, "#quantity-more")
    # The waiting poster's words (the show has not started) are clear of the side rail's buttons.
    for words in ("#poster-title", "#poster-note"):
        assert apart(box(page, words), box(page, ".rail")), words

    # Readable: stock and countdown at 14 px at least; the name on two lines, whole on a tap.
    for selector in ("#card-stock-text", "#card-timer", "#deal-chip-clock"):
        size_px = page.eval_on_selector(selector, "(node) => parseFloat(getComputedStyle(node).fontSize)")
        assert size_px >= 14, (selector, size_px)
    title = page.locator("#card-title")
    line = page.eval_on_selector("#card-title", "(node) => parseFloat(getComputedStyle(node).lineHeight)")
    clamped = box(page, "#card-title")["height"]
    assert clamped <= 2 * line + 1, (clamped, line)
    if page.eval_on_selector("#card-title", "(node) => node.scrollHeight > node.clientHeight + 1"):
        title.click()
        expect(title).to_have_attribute("aria-expanded", "true")
        assert page.eval_on_selector("#card-title", "(node) => node.scrollHeight <= node.clientHeight + 1")
        assert box(page, "#card-title")["height"] > clamped
        title.click()
        expect(title).to_have_attribute("aria-expanded", "false")
    if size is SMALL:
        screenshot(page, "viewer-small-phone.png", animations="disabled")
