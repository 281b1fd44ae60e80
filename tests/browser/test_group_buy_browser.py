"""Group buys (docs/group-buys.md) in real Chromium at a phone's viewport, against a real server process, Redis and
PostgreSQL.

Three friends fill a group through a member's share link and all see it complete; a group that nobody joins fails
when its window passes and its member sees the refund; the studio sets up an offer and watches its groups.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect

from loadtests.support.server import ServerProcess
from tests.browser.helpers import (
    ARTIFACTS,
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
    uncovered,
)
from tests.conftest import Shop
from tests.sale_helpers import auth, invariant
from tests.timing import seconds

pytestmark = pytest.mark.browser

GOOD_CARD = "4242 4242 4242 4242"
# Windows of a few seconds: the tests' servers allow a group window of one second (the product's shortest is 15 min).
SHORT_WINDOWS = {"GROUP_WINDOW_MIN_SECONDS": "1"}


# --- the shop, through the REST API --------------------------------------------------------------------------


def share_and_earn(shop: Shop) -> None:
    """The merchant runs share and earn, so a member's group link carries their ref= code."""
    response = httpx.put(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/referrals",
        json={"enabled": True, "refund_days": 0, "default": {"level1": {"rate_bp": 1000}}},
        headers=auth(shop.admin),
    )
    assert response.status_code == 200, response.text


def open_offer(shop: Shop, product_id: str, price: int, size: int, window_seconds: int) -> dict[str, Any]:
    """A group-buy offer of the product, open now, for signed-in shoppers (as the host)."""
    response = httpx.post(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/rooms/{shop.room_id}/sales",
        json={
            "product_id": product_id,
            "price": price,
            "quantity": 10,
            "per_user_limit": 1,
            "starts_at": int(time.time() * 1000),
            "duration_seconds": 600,
            "group": {"size": size, "window_seconds": window_seconds},
        },
        headers=auth(shop.host),
        timeout=seconds(10),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# --- pages ----------------------------------------------------------------------------------------------------


def viewer(pages: Pages, url: str) -> Page:
    """A shopper's phone on the room, connected."""
    page = pages.open(url, **PHONE)
    expect(page.locator("#stage")).to_have_attribute("data-connection", "open")
    return page


def pay(page: Page, amount: str) -> None:
    """At the checkout's payment step: pay with the sandbox's good card, see it paid, back to the show."""
    expect(page.locator("#checkout")).to_have_attribute("data-step", "hold")
    fill_shipping(page)
    page.fill("#card-number", GOOD_CARD)
    page.click("#pay")
    expect(page.locator("#checkout")).to_have_attribute("data-step", "done")
    expect(page.locator("#done-text")).to_contain_text(f"{amount} paid")


def back_to_show(page: Page) -> None:
    page.click("#checkout .step-done [data-close]")
    expect(page.locator("#checkout")).to_be_hidden()


def my_group(page: Page) -> Any:
    return page.locator("[data-testid=my-group]")


# --- the tests ---------------------------------------------------------------------------------------------------


def test_three_friends_fill_a_group_through_its_share_link(
    pages: Pages, server_factory: object, redis_url: str
) -> None:
    """The host sets up a group buy in the studio (group of 3, a leader's price); on phones a shopper opens a group and
    pays the leader's price, copies the group's link (with their ref= code), and two friends open it, join and pay the
    group price: the group fills with the third payment, all three see "Your group is complete!", and the studio
    counts one filled group of three paid members, three units sold, then ends the offer."""
    server: ServerProcess = server_factory(**SHORT_WINDOWS)  # type: ignore[operator]
    shop = demo_shop(server.base_url, server.ws_url, redis_url, "Group night")
    share_and_earn(shop)

    # The studio: a group buy of the sneakers ($59 solo), $39 in a group of 3, $35 for whoever opens a group.
    studio = pages.open(login_link(shop, "Maya", "host"), **DESKTOP)
    expect(studio.locator("#studio")).to_be_visible()
    expect(studio.locator("#sale-product option")).to_have_count(len(shop.products))
    studio.select_option("#sale-product", "sneaker")
    studio.check("#sale-group")
    expect(studio.locator("#sale-start")).to_have_text("Start group buy")
    studio.fill("#sale-price", "39")
    studio.fill("#sale-quantity", "30")
    studio.fill("#group-size", "3")
    studio.fill("#group-window", "5")
    studio.fill("#group-leader", "35")
    studio.click("#sale-start")
    expect(studio.locator("#toasts")).to_contain_text("Group buy set: Cloudrunner sneakers")
    offer = studio.locator("#group-offers li.offer-item")
    expect(offer).to_have_count(1)
    expect(offer.locator(".meta")).to_contain_text("for groups of 3 · leader $35.00 · solo $59.00 · 5 min to fill")
    sale_id = offer.get_attribute("data-sale-id")
    assert sale_id
    expect(studio.locator("#sales li")).to_have_count(0)  # not a flash sale

    # Ana on her phone: the group card shows the offer once it starts, the group price against the solo price.
    ana = viewer(pages, room_url(shop))
    ana.context.grant_permissions(["clipboard-read", "clipboard-write"])
    ana_email = new_email("ana")
    ana_name = ana_email.partition("@")[0]
    sign_in(ana, server.base_url, ana_email)
    card = ana.locator("#group-card")
    expect(card).to_be_visible()
    expect(card.locator("[data-testid=group-price]")).to_have_text("$39.00")
    expect(card.locator(".group-solo")).to_have_text("Solo $59.00")
    expect(card.locator(".group-leader")).to_have_text("Open a group and pay $35.00")
    expect(ana.locator("#card")).to_be_hidden()  # the group card presents the product
    opener = card.locator("[data-testid=group-open]")
    expect(opener).to_be_enabled(timeout=ms(20))  # the studio's countdown: 10 s
    assert uncovered(ana, "[data-testid=group-open]")

    # She opens a group and pays the leader's price.
    opener.click()
    pay(ana, "$35.00")
    expect(ana.locator("#done-title")).to_have_text("You're in!")
    back_to_show(ana)
    expect(my_group(ana)).to_have_attribute("data-state", "open")
    expect(my_group(ana).locator(".group-headline")).to_have_text("Your group · 1 of 3 joined")
    expect(my_group(ana).locator(".group-timer")).to_have_text(re.compile(r"^[45]:\d\d left$"))
    expect(opener).to_have_text("In a group")
    expect(opener).to_be_disabled()

    # Her group's link: this room, the group, and her share code.
    ana.click("[data-testid=group-share]")
    expect(ana.locator("#toasts")).to_contain_text("Group link copied")
    link = ana.evaluate("navigator.clipboard.readText()")
    parts = urlsplit(link)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{server.base_url}/room.html", link
    assert query["room"] == [shop.room_id], link
    group_id = query["group"][0]
    assert group_id.startswith(f"{sale_id}."), link
    assert re.fullmatch(r"[A-Za-z0-9_-]+", query["ref"][0]), link
    expect(my_group(ana)).to_have_attribute("data-group-id", group_id)

    # Bo opens the link as a guest: Ana's group, with a Join button; joining asks him to sign in, then to pay.
    bo = viewer(pages, link)
    invite = bo.locator("[data-testid=group-invite]")
    expect(invite).to_have_attribute("data-group-id", group_id)
    expect(invite.locator(".group-headline")).to_have_text(f"Join {ana_name}'s group")
    expect(invite.locator(".group-note")).to_contain_text("$39.00 each · 1 of 3 joined")
    expect(invite.locator(".group-avatar:not(.empty)")).to_have_text([ana_name[0].upper()])
    expect(invite.locator(".group-avatar.empty")).to_have_count(2)
    assert uncovered(bo, "[data-testid=invite-join]")
    bo.click("[data-testid=invite-join]")
    expect(bo.locator("#signin")).to_be_visible()
    bo_email = new_email("bo")
    send_code(bo, bo_email)
    enter_code(bo, inbox_code(server.base_url, bo_email))
    pay(bo, "$39.00")
    back_to_show(bo)
    expect(my_group(bo)).to_have_attribute("data-group-id", group_id)
    expect(my_group(bo).locator(".group-headline")).to_have_text("Your group · 2 of 3 joined")
    expect(invite).to_have_count(0)  # he is a member now

    # Ana sees Bo join without a reload; her card has two avatars and one empty place.
    expect(my_group(ana).locator(".group-headline")).to_have_text("Your group · 2 of 3 joined", timeout=ms(15))
    expect(my_group(ana).locator(".group-avatar:not(.empty)")).to_have_count(2)
    expect(my_group(ana).locator(".group-avatar.empty")).to_have_count(1)
    expect(ana.locator("#toasts")).to_contain_text("joined your group")
    screenshot(ana, "group-buy-forming.png")

    # The studio sees the group forming: two paid members, two units sold, one reserved for the empty place.
    group_row = studio.locator(f"li.offer-group[data-group-id='{group_id}']")
    expect(group_row).to_have_attribute("data-state", "open", timeout=ms(15))
    expect(group_row.locator(".offer-group-count")).to_have_text("2 of 3 joined · 2 paid", timeout=ms(15))
    expect(offer.locator("[data-count=reserved] b")).to_have_text("1", timeout=ms(15))

    # Cy opens the same link, joins and pays: the group fills.
    cy = viewer(pages, link)
    expect(cy.locator("[data-testid=group-invite] .group-note")).to_contain_text("2 of 3 joined")
    cy.click("[data-testid=invite-join]")
    cy_email = new_email("cy")
    send_code(cy, cy_email)
    enter_code(cy, inbox_code(server.base_url, cy_email))
    pay(cy, "$39.00")
    expect(cy.locator("#done-title")).to_have_text("Your group is complete!")
    back_to_show(cy)

    # Everyone sees it complete: the card's state and a toast.
    for page in (ana, bo, cy):
        expect(my_group(page)).to_have_attribute("data-state", "filled", timeout=ms(15))
        expect(my_group(page).locator(".group-headline")).to_have_text("Your group is complete!")
        expect(my_group(page)).to_have_attribute("data-order-status", "paid")
        expect(my_group(page).locator(".group-avatar:not(.empty)")).to_have_count(3)
    for page in (ana, bo):
        expect(page.locator("#toasts")).to_contain_text("Your group is complete!")
    screenshot(bo, "group-buy-complete.png")

    # The studio: one filled group of three paid members, three units sold, none reserved; then the host ends it.
    expect(group_row).to_have_attribute("data-state", "filled", timeout=ms(15))
    expect(group_row.locator(".offer-member")).to_have_count(3)
    expect(group_row.locator(".offer-member[data-paid=true]")).to_have_count(3)
    expect(offer.locator("[data-count=filled] b")).to_have_text("1", timeout=ms(15))
    expect(offer.locator("[data-count=sold] b")).to_have_text("3")
    expect(offer.locator("[data-count=reserved] b")).to_have_text("0")
    expect(offer.locator("[data-count=forming] b")).to_have_text("0")
    ARTIFACTS.mkdir(exist_ok=True)
    studio.locator("#group-buys").screenshot(path=str(ARTIFACTS / "studio-group-buys.png"))
    offer.get_by_role("button", name="End now").click()
    expect(offer.locator(".sale-status")).to_have_text("Ended", timeout=ms(15))
    expect(ana.locator("[data-testid=group-open]")).to_have_count(0, timeout=ms(15))  # an ended offer: no card offer
    invariant(shop, sale_id)


def test_a_group_that_does_not_fill_fails_and_refunds(pages: Pages, server_factory: object, redis_url: str) -> None:
    """A shopper opens a group that nobody joins and pays: when its window passes the group fails, the page says so
    ("Your group didn't fill in time: you've been refunded", in the card and a toast), and the order shows refunded;
    the offer's units are back on sale, so a new group can be opened."""
    server: ServerProcess = server_factory(**SHORT_WINDOWS)  # type: ignore[operator]
    shop = demo_shop(server.base_url, server.ws_url, redis_url, "Quiet night")
    pin(shop, "hoodie")
    sale = open_offer(shop, "hoodie", price=2900, size=2, window_seconds=6)

    dee = viewer(pages, room_url(shop))
    sign_in(dee, server.base_url, new_email("dee"))
    card = dee.locator("#group-card")
    expect(card.locator(".group-title")).to_have_text("Everyday hoodie")
    expect(card.locator("[data-testid=group-price]")).to_have_text("$29.00")
    opener = card.locator("[data-testid=group-open]")
    expect(opener).to_be_enabled()
    opener.click()
    pay(dee, "$29.00")
    back_to_show(dee)
    group = my_group(dee)
    expect(group).to_have_attribute("data-state", "open")
    expect(group.locator(".group-headline")).to_have_text("Your group · 1 of 2 joined")
    expect(group.locator(".group-timer")).to_have_text(re.compile(r"^(0:0[0-6] left|Closing…)$"))

    # The window passes: failed, refunded.
    expect(group).to_have_attribute("data-state", "failed", timeout=ms(15))
    expect(group.locator(".group-headline")).to_have_text("Your group didn't fill in time: you've been refunded")
    expect(dee.locator("#toasts")).to_contain_text("Your group didn't fill in time")
    expect(group).to_have_attribute("data-order-status", "refunded", timeout=ms(15))
    expect(group.locator("[data-testid=group-note]")).to_contain_text("$29.00 refunded")
    screenshot(dee, "group-buy-failed.png")

    # The units are back on sale: the shopper may open another group.
    expect(opener).to_have_text("Open a group")
    expect(opener).to_be_enabled()
    assert invariant(shop, sale["id"])["paid"] == 0


def test_group_card_fits_a_small_phone(pages: Pages, server_factory: object, redis_url: str) -> None:
    """On a 320 x 568 phone the group card, its open groups and the chat form all fit on the screen, and the Open and
    Join buttons can be tapped (nothing covers them)."""
    server: ServerProcess = server_factory(**SHORT_WINDOWS)  # type: ignore[operator]
    shop = demo_shop(server.base_url, server.ws_url, redis_url, "Small screens")
    pin(shop, "mug")
    sale = open_offer(shop, "mug", price=900, size=3, window_seconds=600)

    # Two shoppers open groups through the API; a third, on a small phone, sees them listed.
    for name in ("kim", "lee"):
        token = api_member(server.base_url, new_email(name))
        opened = httpx.post(
            f"{server.base_url}/api/sales/{sale['id']}/groups",
            json={},
            headers={**auth(token), "Idempotency-Key": f"open-{name}"},
        )
        assert opened.status_code == 201, opened.text
        order = opened.json().get("order", opened.json())
        paid = httpx.post(
            f"{server.base_url}/api/orders/{order['order_id']}/payment",
            json={"card_number": GOOD_CARD},
            headers={**auth(token), "Idempotency-Key": f"pay-{name}"},
            timeout=seconds(10),
        )
        assert paid.status_code == 200, paid.text

    small = {**PHONE, "viewport": {"width": 320, "height": 568}}
    page = pages.open(room_url(shop), **small)
    expect(page.locator("#stage")).to_have_attribute("data-connection", "open")
    rows = page.locator("[data-testid=open-groups] li")
    expect(rows).to_have_count(2, timeout=ms(15))
    expect(rows.first.locator(".group-row-text strong")).to_have_text("1 of 3 joined")
    assert uncovered(page, "[data-testid=group-open]")
    assert uncovered(page, "[data-testid=open-groups] li .group-join")
    assert uncovered(page, "#chat-input")
    screenshot(page, "group-buy-320.png")
