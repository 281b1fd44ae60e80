"""Share and earn (docs/referrals.md) in real Chromium, against a real server process, Redis and PostgreSQL.

A sharer makes a link in the room, a friend on a phone opens it and buys, and the sharer's numbers
change in the room by themselves; the sharer withdraws from "My earnings"; the merchant runs the
programme from the studio.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from loadtests.support.server import ServerProcess
from tests.browser.helpers import (
    DESKTOP,
    PHONE,
    Pages,
    api_member,
    demo_shop,
    enter_code,
    fill_shipping,
    inbox_code,
    login_link,
    ms,
    new_email,
    pin,
    room_url,
    screenshot,
    send_code,
    sign_in,
)
from tests.conftest import Shop
from tests.sale_helpers import auth
from tests.timing import seconds

pytestmark = pytest.mark.browser

GOOD_CARD = "4242424242424242"
SALE_PRICE = 3900  # the sneakers' live price: a 10% commission is $3.90


# --- the browser (no camera: these shows have no video) -------------------------------------------------


def another_tab(pages: Pages, page: Page, url: str) -> Page:
    """A second page in the same browser context (the same person, the same localStorage), its errors reported."""
    tab = page.context.new_page()
    tab.on("pageerror", lambda error: pages.errors.append(f"{url}: {error}"))
    tab.goto(url)
    return tab


# --- the shop, its programme and its people, through the REST API ---------------------------------------------


def set_programme(shop: Shop, **settings: Any) -> dict[str, Any]:
    """PUT the merchant's share-and-earn programme as its admin."""
    response = httpx.put(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/referrals", json=settings, headers=auth(shop.admin)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def start_sale(shop: Shop, product_id: str = "sneaker", price: int = SALE_PRICE) -> dict[str, Any]:
    """A flash sale of the product that is open now, for signed-in shoppers (as the host)."""
    response = httpx.post(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/rooms/{shop.room_id}/sales",
        json={
            "product_id": product_id,
            "price": price,
            "quantity": 10,
            "per_user_limit": 1,
            "starts_at": int(time.time() * 1000),
            "duration_seconds": 600,
        },
        headers=auth(shop.host),
        timeout=seconds(10),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def visit(base_url: str, token: str, code: str) -> dict[str, Any]:
    response = httpx.post(f"{base_url}/api/shares/{code}/visits", json={}, headers=auth(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def buy_and_pay(base_url: str, token: str, sale_id: str) -> str:
    """Buy one unit and pay for it with the sandbox's good card; the order id."""
    bought = httpx.post(
        f"{base_url}/api/sales/{sale_id}/purchases",
        json={"quantity": 1},
        headers={**auth(token), "Idempotency-Key": secrets.token_hex(8)},
    )
    assert bought.status_code == 201, bought.text
    order = bought.json().get("order", bought.json())
    paid = httpx.post(
        f"{base_url}/api/orders/{order['order_id']}/payment",
        json={"card_number": GOOD_CARD},
        headers={**auth(token), "Idempotency-Key": secrets.token_hex(8)},
        timeout=seconds(10),
    )
    assert paid.status_code == 200, paid.text
    return str(order["order_id"])


def commissions(shop: Shop) -> list[dict[str, Any]]:
    """The merchant's commission rows (as its admin reads them)."""
    response = httpx.get(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/referrals/commissions", headers=auth(shop.admin)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    rows: list[dict[str, Any]] = body if isinstance(body, list) else body["commissions"]
    return rows


def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    """Return once `predicate()` is true; fail after `timeout` nominal seconds (scaled)."""
    deadline = time.monotonic() + seconds(timeout)
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {seconds(timeout):g} s"
        time.sleep(0.1)


# --- pages ---------------------------------------------------------------------------------------------------


def make_link(page: Page, what: str = "room") -> str:
    """Open the share dialog, choose the show or the presented product, and read the link it made."""
    page.click("#share")
    dialog = page.locator("#share-dialog")
    expect(dialog).to_be_visible()
    page.check(f"input[name=share-what][value={what}]")
    expect(dialog).to_have_attribute("data-state", "ready")
    expect(page.locator("#share-url")).to_have_value(re.compile(r"[?&]ref=" if what == "room" else r"product="))
    url = page.locator("#share-url").input_value()
    assert "ref=" in url, url
    return url


def uncovered(page: Page, selector: str) -> list[str]:
    """What covers the element at its centre and near its edges (nothing, when it can be tapped everywhere)."""
    covered: list[str] = page.evaluate(
        """(selector) => {
            const node = document.querySelector(selector);
            const box = node.getBoundingClientRect();
            const points = [[0.5, 0.5], [0.12, 0.5], [0.88, 0.5], [0.5, 0.15], [0.5, 0.85]];
            return points
              .map(([x, y]) => document.elementFromPoint(box.left + box.width * x, box.top + box.height * y))
              .filter((hit) => !node.contains(hit))
              .map((hit) => (hit ? hit.id || hit.className || hit.tagName : "outside the screen"));
        }""",
        selector,
    )
    return covered


def panels_leave_buy_free(page: Page) -> None:
    """Open each share-and-earn panel over the video in turn (one opens at a time): none covers the Buy button."""
    page.evaluate("() => document.querySelectorAll('#extras details').forEach((panel) => { panel.open = false; })")
    for panel in page.locator("#extras details:visible").all():
        panel.locator("summary").click()
        expect(panel).to_have_attribute("open", "")
        assert uncovered(page, "#buy") == [], (page.url, panel.get_attribute("id"))
        assert page.locator("#extras details[open]").count() == 1


# --- the live earnings ----------------------------------------------------------------------------------------


def test_a_sharer_sees_a_friends_purchase_earn_live(pages: Pages, server_factory: object, redis_url: str) -> None:
    """A member shares the show; a friend on a phone opens the link, signs in and buys in a flash sale: the sharer's
    earnings panel in the room shows the buyer and the commission without a reload, the room's top sharers board
    names the sharer, and on phones nothing covers the Buy button."""
    server: ServerProcess = server_factory()  # type: ignore[operator]
    shop = demo_shop(server.base_url, server.ws_url, redis_url, "Share night")

    # The merchant runs the programme (a shop that doesn't makes no share links): 10% for the sharer, paid out as
    # soon as the order is paid (no refund window).
    set_programme(shop, enabled=True, refund_days=0, default={"level1": {"rate_bp": 1000}})

    # The sharer signs in in the room, and makes a link to the show: a QR code and a Copy button.
    sharer = pages.open(room_url(shop), **PHONE)
    sharer.context.grant_permissions(["clipboard-read", "clipboard-write"])
    expect(sharer.locator("#stage")).to_have_attribute("data-connection", "open")
    sharer_email = new_email("ana")
    sharer_name = sharer_email.partition("@")[0]
    sign_in(sharer, server.base_url, sharer_email)
    link = make_link(sharer)
    assert link.startswith(f"{server.base_url}/room.html?") and f"room={shop.room_id}" in link, link
    expect(sharer.locator("#share-qr")).to_be_visible()
    expect(sharer.locator("#share-qr")).to_have_attribute("src", re.compile(r"^/api/shares/[^/]+/qr\.svg$"))
    sharer.wait_for_function("() => document.getElementById('share-qr').naturalWidth > 0")  # the server's SVG
    sharer.click("#share-copy")
    expect(sharer.locator("#share-status")).to_contain_text("Link copied")
    assert sharer.evaluate("navigator.clipboard.readText()") == link
    screenshot(sharer, "share-dialog.png")
    sharer.click("#share-close")
    expect(sharer.locator("#share-dialog")).to_be_hidden()
    # Having made a link, the sharer sees their numbers: nobody yet.
    expect(sharer.locator("#earnings")).to_be_visible()
    expect(sharer.locator("#earn-buyers")).to_have_text("0")

    # A friend opens the link on a phone: they are bound to the sharer, and the page says so discreetly.
    friend = pages.open("about:blank", **PHONE)
    visits: list[str] = []
    friend.on("request", lambda request: visits.append(request.url) if request.url.endswith("/visits") else None)
    friend.goto(link)
    expect(friend.locator("#stage")).to_have_attribute("data-connection", "open")
    expect(friend.locator("#shared-by")).to_have_text(f"Shared by {sharer_name}")
    expect(sharer.locator("#earn-visitors")).to_have_text("1", timeout=ms(15))

    # As a guest the friend can share the show's plain link (earning needs an account).
    friend.context.grant_permissions(["clipboard-read", "clipboard-write"])
    friend.click("#share")
    expect(friend.locator("#toasts")).to_contain_text("Link copied")
    expect(friend.locator("#share-dialog")).to_be_hidden()
    assert friend.evaluate("navigator.clipboard.readText()") == room_url(shop)

    # A flash sale; the friend taps Buy, signs in (the guest's binding is the member's) and pays.
    sharer.evaluate("window.__stillThisPage = true")
    start_sale(shop)
    expect(friend.locator("#card")).to_have_attribute("data-sale", "live", timeout=ms(15))
    expect(friend.locator("#buy")).to_have_text("Sign in to buy")
    assert uncovered(friend, "#buy") == []
    friend.click("#buy")
    expect(friend.locator("#signin")).to_be_visible()
    friend_email = new_email("sam")
    send_code(friend, friend_email)
    enter_code(friend, inbox_code(server.base_url, friend_email))
    expect(friend.locator("#checkout")).to_have_attribute("data-step", "hold")
    fill_shipping(friend)
    friend.fill("#card-number", GOOD_CARD)
    friend.click("#pay")
    expect(friend.locator("#checkout")).to_have_attribute("data-step", "done")
    expect(friend.locator("#done-text")).to_contain_text("$39.00 paid")
    friend.click("#checkout .step-done [data-close]")

    # The sharer's panel changes by itself: one buyer, one order, $3.90 (withdrawable at once: no refund window).
    expect(sharer.locator("#earn-buyers")).to_have_text("1", timeout=ms(20))
    expect(sharer.locator("#earn-orders")).to_have_text("1")
    expect(sharer.locator("#earnings")).to_have_attribute("data-earned", "390")
    expect(sharer.locator("#earn-total")).to_have_text("$3.90")
    expect(sharer.locator("#earn-withdrawable")).to_have_text("$3.90")
    assert sharer.evaluate("window.__stillThisPage === true"), "the sharer's page was reloaded"

    # Everybody's board names the sharer: one buyer, one order.
    for page in (sharer, friend):
        expect(page.locator("#sharers")).to_be_visible(timeout=ms(15))
        expect(page.locator("#sharers-list li")).to_have_text([f"{sharer_name}1 buyer · 1 order"])

    # Phones: with every panel open, the Buy button of the card (the sale still runs) can be tapped everywhere.
    for page in (sharer, friend):
        expect(page.locator("#buy")).to_be_visible()
        panels_leave_buy_free(page)
    sharer.locator("#earnings summary").click()
    screenshot(sharer, "sharer-earnings.png")
    for page in (sharer, friend):
        page.set_viewport_size({"width": 320, "height": 568})
        panels_leave_buy_free(page)
    screenshot(sharer, "sharer-earnings-320.png")

    # Reloaded, the friend's page doesn't record the visit again (kept for the tab) and still says who shared; its
    # board comes with the room's snapshot.
    friend.reload()
    expect(friend.locator("#stage")).to_have_attribute("data-connection", "open")
    expect(friend.locator("#shared-by")).to_have_text(f"Shared by {sharer_name}")
    expect(friend.locator("#sharers-list li")).to_have_text([f"{sharer_name}1 buyer · 1 order"])
    assert len(visits) == 1, visits
    expect(sharer.locator("#earn-visitors")).to_have_text("1")


# --- "My earnings" and the studio ---------------------------------------------------------------------------


def test_sharer_withdraws_and_merchant_runs_the_programme(
    pages: Pages, server_factory: object, redis_url: str, tmp_path: Path
) -> None:
    """From "My earnings" a sharer sees their links, commissions and balances and asks for a payout (once per
    submission); in the studio the admin sees the programme and its sharers, approves a commission flagged for a
    shared device and the payout, changes the default rate, and exports the commissions as CSV."""
    server: ServerProcess = server_factory()  # type: ignore[operator]
    shop = demo_shop(server.base_url, server.ws_url, redis_url, "Payout night")
    set_programme(shop, enabled=True, refund_days=0, min_withdrawal=100, default={"level1": {"rate_bp": 1000}})
    pin(shop, "sneaker")

    # Signed out, the page sends the shopper to the show to sign in.
    earnings_url = f"{server.base_url}/earnings.html?room={shop.room_id}"
    sharer = pages.open(earnings_url, **PHONE)
    expect(sharer.locator("#earnings")).to_have_attribute("data-state", "signed-out")
    expect(sharer.locator(".earnings-signin")).to_be_visible()
    expect(sharer.locator("#signin-link")).to_have_attribute("href", f"/room.html?room={shop.room_id}")

    # The sharer signs in in the room and shares the presented product.
    sharer.goto(room_url(shop))
    sharer_email = new_email("ana")
    sharer_name = sharer_email.partition("@")[0]
    sign_in(sharer, server.base_url, sharer_email)
    expect(sharer.locator("#card-title")).to_have_text("Cloudrunner sneakers")
    link = make_link(sharer, "product")
    expect(sharer.locator("#share-product-title")).to_have_text("Cloudrunner sneakers")
    assert "product=sneaker" in link, link
    code = link.rpartition("ref=")[2].partition("&")[0]
    device = sharer.evaluate("localStorage.getItem('livecart.device')")

    # Two friends buy through it: one on a browser of their own, one on the sharer's (a shared device: flagged).
    sale = start_sale(shop)
    honest = api_member(server.base_url, new_email("sam"))
    same_device = api_member(server.base_url, new_email("kim"), device=device)
    for token in (honest, same_device):
        assert visit(server.base_url, token, code)["bound"] is True
        buy_and_pay(server.base_url, token, sale["id"])

    # "My earnings": the link, both commissions (one waits for the merchant), the balances.
    wait_until(lambda: len(commissions(shop)) == 2, timeout=20)  # the commission pass runs every second
    mine = another_tab(pages, sharer, earnings_url)
    expect(mine.locator("#earnings")).to_have_attribute("data-state", "ready")
    expect(mine.locator(".earnings-signin")).to_be_hidden()
    section = mine.locator(f"section.merchant[data-merchant-id={shop.merchant_id}]")
    states = section.locator("[data-block=commissions] .state")
    expect(states).to_have_count(2)
    assert sorted(states.all_text_contents()) == ["In review", "Withdrawable"], states.all_text_contents()
    expect(section.locator("[data-balance=withdrawable] strong")).to_have_text("$3.90")
    expect(section.locator("[data-balance=review] strong")).to_have_text("$3.90")
    links = section.locator("[data-block=links] tbody tr")
    expect(links).to_have_count(2)  # the show's (the dialog opens on it) and the product's
    product_link = links.filter(has=mine.locator(f"a[href*='ref={code}']"))
    expect(product_link.locator("a")).to_have_text("Product sneaker")
    expect(product_link.locator("td").nth(1)).to_have_text("2")  # clicks
    expect(product_link.locator("td").nth(2)).to_have_text("2")  # buyers
    screenshot(mine, "my-earnings.png")

    # A payout of everything withdrawable: one request, even though the form may be sent twice by an impatient tap.
    mine.fill(f"section.merchant[data-merchant-id={shop.merchant_id}] input[name=amount]", "3.90")
    mine.fill(f"section.merchant[data-merchant-id={shop.merchant_id}] input[name=recipient]", "ana@payouts.example")
    keys: list[str] = []
    mine.on(
        "request",
        lambda request: (
            keys.append(request.headers.get("idempotency-key", ""))
            if request.url.endswith("/withdrawals") and request.method == "POST"
            else None
        ),
    )
    mine.dblclick(f"section.merchant[data-merchant-id={shop.merchant_id}] .withdraw-form button[type=submit]")
    expect(mine.locator("#toasts")).to_contain_text("Withdrawal of $3.90 requested")
    section = mine.locator(f"section.merchant[data-merchant-id={shop.merchant_id}]")
    expect(section.locator("[data-block=withdrawals] .state")).to_have_text(["Requested"])
    expect(section.locator("[data-balance=withdrawable] strong")).to_have_text("$0.00")
    assert len(keys) == 1 and re.fullmatch(r"[0-9a-f-]{36}", keys[0]), keys

    # The studio: the programme as set, its sharer, the flagged commission, the payout.
    studio = pages.open(login_link(shop, "Ada", "admin"), **DESKTOP)
    panel = studio.locator("#referrals")
    expect(panel).to_be_visible()
    expect(studio.locator("#ref-enabled")).to_be_checked()
    expect(studio.locator("#ref-rate1")).to_have_value("10")
    expect(studio.locator("#ref-refund-days")).to_have_value("0")
    expect(studio.locator("#ref-min-withdrawal")).to_have_value("1")
    row = studio.locator("#ref-sharers-body tr")
    expect(row).to_have_count(1)
    expect(row.locator("td").first).to_have_text(sharer_name)
    expect(row.locator("td").nth(2)).to_have_text("2")  # buyers
    flagged = studio.locator("#ref-review li")
    expect(flagged).to_have_count(1)
    expect(flagged).to_contain_text("Same device as the buyer")
    expect(flagged.get_by_role("button", name="Approve")).to_be_visible()  # no hover needed (touch screens)
    flagged.get_by_role("button", name="Approve").click()
    expect(studio.locator("#ref-review li")).to_have_count(0)
    payout = studio.locator("#ref-withdrawals li")
    expect(payout).to_have_count(1)
    expect(payout).to_contain_text("ana@payouts.example")
    payout.get_by_role("button", name="Approve").click()
    expect(studio.locator("#ref-withdrawals li .ref-state")).to_have_text("Paid", timeout=ms(20))
    screenshot(studio, "studio-referrals.png")

    # The default rate, changed in the form, is the programme's.
    studio.fill("#ref-rate1", "12.5")
    studio.click("#ref-save")
    expect(studio.locator("#toasts")).to_contain_text("Share & earn saved")
    programme = httpx.get(
        f"{server.base_url}/api/merchants/{shop.merchant_id}/referrals", headers=auth(shop.admin)
    ).json()
    assert programme["default"]["level1"] == {"rate_bp": 1250} and programme["enabled"] is True, programme

    # A product's own rate, set and removed in the studio.
    studio.select_option("#ref-rule-for", f"product/{shop.products[0]}")
    studio.fill("#ref-rule-rate1", "20")
    studio.click("#ref-rule-save")
    rule = studio.locator(f"#ref-rules li[data-rule='product/{shop.products[0]}']")
    expect(rule).to_contain_text("level 1: 20%")
    programme = httpx.get(
        f"{server.base_url}/api/merchants/{shop.merchant_id}/referrals", headers=auth(shop.admin)
    ).json()
    assert programme["rules"] == [{"scope": "product", "id": shop.products[0], "level1": {"rate_bp": 2000}}]
    rule.get_by_role("button", name="Remove").click()
    expect(studio.locator("#ref-rules-empty")).to_be_visible()

    # The CSV export, fetched with the staff token and saved as a file.
    with studio.expect_download() as download:
        studio.click("#ref-export")
    saved = tmp_path / "commissions.csv"
    download.value.save_as(saved)
    lines = saved.read_text().strip().splitlines()
    assert len(lines) == 3, lines  # a header and the two commissions
    assert download.value.suggested_filename == f"commissions-{shop.merchant_id}.csv"

    # Back on "My earnings": the payout paid, the approved commission withdrawable.
    mine.evaluate("window.livecart.reload()")
    section = mine.locator(f"section.merchant[data-merchant-id={shop.merchant_id}]")
    expect(section.locator("[data-block=withdrawals] .state")).to_have_text(["Paid"])
    expect(section.locator("[data-balance=withdrawable] strong")).to_have_text("$3.90")
    expect(section.locator("[data-balance=withdrawn] strong")).to_have_text("$3.90")
