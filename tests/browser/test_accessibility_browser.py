"""Accessibility and language in real Chromium, against a real server process, Redis and PostgreSQL.

Every page, at a phone's size and a desktop's, in the states a person meets it in, passes axe-core's WCAG 2 A and
AA rules (tests/browser/axe.py brings the engine from the npm registry); the controls are reached with Tab in the
order the page shows them, each with a visible focus ring. The viewer room speaks the browser's language: Simplified
Chinese for a zh browser, English for anything else.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from loadtests.support.server import ServerProcess
from tests.browser import axe
from tests.browser.helpers import (
    DESKTOP,
    PHONE,
    Pages,
    demo_shop,
    login_link,
    new_email,
    pin,
    room_command,
    room_url,
    screenshot,
    sign_in,
)
from tests.conftest import ROOT, Shop, host_starts, member, start_server
from tests.sale_helpers import auth, wait_until

pytestmark = pytest.mark.browser

SIZES = {"phone": PHONE, "desktop": DESKTOP}


# --- the server and its shops ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(stores: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server process whose giveaways may last a second (the draw page needs a drawn one)."""
    started = start_server(
        tmp_path_factory.mktemp("a11y"), {**stores, "GIVEAWAY_MIN_SECONDS": "1", "GIVEAWAY_CLOCK_MS": "50"}
    )
    yield started
    started.stop()


def flash_sale(shop: Shop, product_id: str) -> dict[str, Any]:
    """A flash deal on the product, open now for ten minutes (as the host)."""
    body = {
        "product_id": product_id,
        "price": 3900,
        "quantity": 50,
        "per_user_limit": 2,
        "starts_at": int(time.time() * 1000),
        "duration_seconds": 600,
    }
    response = host_starts(shop, "sales", body)
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.fixture(scope="module")
def live_shop(site: ServerProcess, redis_url: str) -> Shop:
    """The demo shop, running share and earn, its four products in the bag, presenting its sneakers with a live
    flash deal, a giveaway open and two chat messages in its room."""
    shop = demo_shop(site.base_url, site.ws_url, redis_url, "Sneaker drop night")
    programme = {"enabled": True, "refund_days": 0, "default": {"level1": {"rate_bp": 1000}}}
    shared = httpx.put(
        f"{shop.base_url}/api/merchants/{shop.merchant_id}/referrals", json=programme, headers=auth(shop.admin)
    )
    assert shared.status_code == 200, shared.text
    pin(shop, "sneaker")
    flash_sale(shop, "sneaker")
    room_command(shop, shop.host, "bag.set", product_ids=shop.products)
    room_command(shop, member(name="Mia"), "chat.send", text="Do they run true to size?")
    room_command(shop, shop.host, "chat.send", text="They do: take your usual size")
    giveaway = host_starts(shop, "giveaways", {"product_id": "mug", "winners": 1, "duration_seconds": 600})
    assert giveaway.status_code == 201, giveaway.text
    return shop


@pytest.fixture(scope="module")
def moments_shop(site: ServerProcess, redis_url: str) -> Shop:
    """A shop whose room runs an auction of its hoodie and a group-buy offer of its mug."""
    shop = demo_shop(site.base_url, site.ws_url, redis_url, "Auction night")
    auction = host_starts(shop, "auctions", {"product_id": "hoodie", "starting_bid": 2000, "duration_seconds": 600})
    assert auction.status_code == 201, auction.text
    group = {
        "product_id": "mug",
        "price": 900,
        "quantity": 30,
        "per_user_limit": 1,
        "starts_at": int(time.time() * 1000),
    }
    offer = host_starts(shop, "sales", {**group, "duration_seconds": 600, "group": {"size": 3, "window_seconds": 900}})
    assert offer.status_code == 201, offer.text
    return shop


@pytest.fixture(scope="module")
def drawn_giveaway(site: ServerProcess, redis_url: str) -> str:
    """The id of a giveaway that one member entered and that has been drawn."""
    shop = demo_shop(site.base_url, site.ws_url, redis_url, "Giveaway night")
    started = host_starts(shop, "giveaways", {"product_id": "mug", "winners": 1, "duration_seconds": 1})
    assert started.status_code == 201, started.text
    giveaway_id = str(started.json()["id"])
    entered = httpx.post(f"{site.base_url}/api/giveaways/{giveaway_id}/entries", headers=auth(member()))
    assert entered.status_code == 201, entered.text

    def drawn() -> bool:
        return bool(httpx.get(f"{site.base_url}/api/giveaways/{giveaway_id}").json()["state"] == "drawn")

    wait_until(drawn, 10)
    return giveaway_id


# --- axe -------------------------------------------------------------------------------------------------------


def audit(page: Page, where: str, found: list[str]) -> None:
    """Run axe on the page as it is now; note its report in `found` when it breaks a rule."""
    violations = axe.violations(page)
    if violations:
        found.append(axe.report(violations, where))


def passed(found: list[str]) -> None:
    assert not found, "\n\n".join(found)


def connected(page: Page) -> Page:
    expect(page.locator("#stage")).to_have_attribute("data-connection", "open")
    return page


@pytest.mark.parametrize("size", list(SIZES))
def test_plain_pages_pass_axe(pages: Pages, site: ServerProcess, drawn_giveaway: str, size: str) -> None:
    """The landing page, the sandbox inbox (with a message), "Check this draw" (a drawn giveaway), My earnings and My
    orders and messages (signed out) break no WCAG 2 A or AA rule."""
    found: list[str] = []
    base = site.base_url
    page = pages.open(f"{base}/", **SIZES[size])
    expect(page.locator("h1")).to_be_visible()
    audit(page, f"index.html ({size})", found)

    page.goto(f"{base}/draw.html?id={drawn_giveaway}")
    expect(page.locator("#draw")).to_have_attribute("data-state", "verified")
    audit(page, f"draw.html ({size})", found)

    page.goto(f"{base}/earnings.html")
    expect(page.locator("#earnings")).not_to_have_attribute("data-state", "loading")
    audit(page, f"earnings.html, signed out ({size})", found)

    page.goto(f"{base}/messages.html")
    expect(page.locator("#messages")).not_to_have_attribute("data-state", "loading")
    audit(page, f"messages.html, signed out ({size})", found)

    email = new_email("inbox")
    httpx.post(f"{base}/api/sign-in/code", json={"email": email})
    page.goto(f"{base}/inbox.html")
    page.fill("#inbox-to", email)
    page.click("#inbox-form button[type=submit]")
    expect(page.locator("#messages li")).to_have_count(1)
    audit(page, f"inbox.html ({size})", found)
    passed(found)


@pytest.mark.parametrize("size", list(SIZES))
def test_room_passes_axe(pages: Pages, live_shop: Shop, size: str) -> None:
    """The viewer room with a live deal and a giveaway, its bag and its sign-in card (a guest); then a member's room,
    checkout (reserved, then paid), share card and "Ask the seller" panel, and their My orders and messages and My
    earnings pages, break no WCAG 2 A or AA rule."""
    found: list[str] = []
    page = connected(pages.open(room_url(live_shop), **SIZES[size]))
    expect(page.locator("#card-deal")).to_be_visible()
    expect(page.locator("#giveaway-card")).to_be_visible()
    audit(page, f"room.html, a guest ({size})", found)
    page.click("#bag-button")
    expect(page.locator("#bag-list li")).to_have_count(4)
    audit(page, f"room.html's bag ({size})", found)
    page.keyboard.press("Escape")
    expect(page.locator("#bag-sheet")).to_be_hidden()
    page.click("#account")
    expect(page.locator("#signin")).to_be_visible()
    audit(page, f"room.html's sign-in card ({size})", found)
    page.keyboard.press("Escape")

    sign_in(page, live_shop.base_url, new_email("member"))
    audit(page, f"room.html, a member ({size})", found)
    page.click("#buy")
    expect(page.locator("#checkout")).to_have_attribute("data-step", "hold")
    audit(page, f"room.html's checkout, reserved ({size})", found)
    page.fill("#ship-name", "Ana Buyer")  # a first order: where it ships
    page.fill("#ship-address", "1 Main St, Springfield")
    page.click("#pay")
    expect(page.locator("#checkout")).to_have_attribute("data-step", "done")
    audit(page, f"room.html's checkout, paid ({size})", found)
    page.click("#checkout .step-done [data-close]")
    expect(page.locator("#checkout")).to_be_hidden()
    page.click("#share")
    expect(page.locator("#share-dialog")).to_be_visible()
    expect(page.locator("#share-qr")).to_be_visible()
    audit(page, f"room.html's share card ({size})", found)
    page.click("#share-close")
    page.click("#ask-button")
    expect(page.locator("#ask-thread")).to_have_attribute("data-state", "ready")
    page.fill("#ask-panel .thread-input", "Is the box included?")
    page.click("#ask-panel .thread-send")
    expect(page.locator("#ask-panel .thread-messages > li[data-side=buyer]")).to_contain_text("Is the box included?")
    audit(page, f"room.html's Ask the seller ({size})", found)

    page.goto(f"{live_shop.base_url}/messages.html")
    expect(page.locator("#order-list li")).not_to_have_count(0)
    audit(page, f"messages.html, a member with an order ({size})", found)
    page.goto(f"{live_shop.base_url}/earnings.html")
    expect(page.locator("#earnings")).not_to_have_attribute("data-state", "loading")
    audit(page, f"earnings.html, a member ({size})", found)
    passed(found)


@pytest.mark.parametrize("size", list(SIZES))
def test_auction_and_group_buy_pass_axe(pages: Pages, moments_shop: Shop, size: str) -> None:
    """The viewer room with an auction running and a group-buy offer, and the auction's Max bid sheet, break no
    WCAG 2 A or AA rule."""
    found: list[str] = []
    page = connected(pages.open(room_url(moments_shop), **SIZES[size]))
    expect(page.locator("#auction-card")).to_be_visible()
    expect(page.locator("#group-card")).to_be_visible()
    audit(page, f"room.html with an auction and a group buy ({size})", found)
    page.click("[data-testid=auction-max]")
    expect(page.locator("#max-bid-sheet")).to_be_visible()
    audit(page, f"room.html's Max bid ({size})", found)
    passed(found)


@pytest.mark.parametrize("size", list(SIZES))
def test_studio_passes_axe(pages: Pages, site: ServerProcess, live_shop: Shop, size: str) -> None:
    """The host studio, signed out and then signed in to a room with a flash deal, a giveaway, a presented product
    and chat (on a phone, each of its console's tabs), breaks no WCAG 2 A or AA rule."""
    found: list[str] = []
    page = pages.open(f"{site.base_url}/studio.html?room={live_shop.room_id}", **SIZES[size])
    expect(page.locator("#signin-destination")).to_be_visible()
    audit(page, f"studio.html, signed out ({size})", found)
    page.goto("about:blank")
    page.goto(login_link(live_shop))
    expect(page.locator("#studio")).to_be_visible()
    expect(page.locator("#studio")).to_have_attribute("data-connection", "open")
    expect(page.locator("#sales li")).not_to_have_count(0)
    expect(page.locator("#chat li")).to_have_count(2)
    audit(page, f"studio.html ({size})", found)
    if size == "phone":  # the phone's console: each section a tab away
        tabs = page.locator("#console-tabs [role=tab]:visible")
        expect(tabs).not_to_have_count(0)
        for index in range(tabs.count()):
            tab = tabs.nth(index)
            tab.click()
            expect(tab).to_have_attribute("aria-selected", "true")
            audit(page, f"studio.html's {tab.inner_text().strip()} tab ({size})", found)
    passed(found)


# --- the keyboard -----------------------------------------------------------------------------------------------

# A control's name for the walk: its id, else its tag, classes, test id and label (a card that redraws itself puts a
# new node in the old one's place: it is the same control).
KEY = """(node) => node.id ? `#${node.id}` : [
  node.tagName.toLowerCase(), ...node.classList, node.dataset.testid || '',
  (node.getAttribute('aria-label') || node.textContent || node.name || '').trim().slice(0, 40),
].join('|')"""

# Every control a person can use, in the page's order: what Tab must reach, one after the other.
CONTROLS = f"""() => {{
  const key = {KEY};
  const selector = 'a[href], button, input:not([type=hidden]), select, textarea, summary, [tabindex]';
  const shown = (node) => {{
    if (node.closest('[inert], [hidden]')) return false;
    if (node.disabled || Number(node.getAttribute('tabindex')) < 0) return false;
    const style = getComputedStyle(node);
    if (style.visibility === 'hidden' || style.display === 'none') return false;
    const box = node.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) return false;
    const details = node.parentElement?.closest('details');
    if (details && !details.open && node.parentElement !== details) return false;
    if (node.closest('dialog') && !node.closest('dialog').open) return false;
    if (node.type === 'radio' && !node.checked) {{  // Tab stops at a group's checked radio
      const group = document.querySelectorAll(`input[type=radio][name="${{node.name}}"]`);
      if (Array.from(group).some((other) => other.checked)) return false;
    }}
    return true;
  }};
  document.activeElement?.blur();
  window.__resting = new Map();
  const controls = Array.from(document.querySelectorAll(selector)).filter(shown);
  for (const node of controls) window.__resting.set(key(node), getComputedStyle(node).boxShadow);
  return controls.map(key);
}}"""

# The focused control: its name, position, and whether a focus ring shows (an outline, or a ring drawn with a
# box-shadow, that it does not have unfocused).
FOCUSED = f"""() => {{
  const key = {KEY};
  const node = document.activeElement;
  if (!node || node === document.body) return null;
  const style = getComputedStyle(node);
  const box = node.getBoundingClientRect();
  const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2;
  const ring = style.boxShadow !== 'none' && style.boxShadow !== window.__resting?.get(key(node));
  return {{key: key(node), top: box.top + scrollY, left: box.left + scrollX, right: box.right + scrollX,
    ring: outline || ring}};
}}"""


def tab_through(page: Page, where: str) -> list[dict[str, Any]]:
    """Press Tab from the top of the page until focus leaves it; every visible control must have been reached, in
    the page's order, each with a visible focus ring. Returns what was focused, in order."""
    expected: list[str] = page.evaluate(CONTROLS)
    reached: list[dict[str, Any]] = []
    for _ in range(len(expected) + 5):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused is None or (reached and focused["key"] == reached[0]["key"]):
            break
        reached.append(focused)
    keys = [item["key"] for item in reached]
    missed = [key for key in expected if key not in keys]
    assert not missed, f"{where}: Tab never reaches {missed}"
    assert [key for key in keys if key in expected] == expected, f"{where}: Tab's order is not the page's: {keys}"
    unringed = [item["key"] for item in reached if not item["ring"]]
    assert not unringed, f"{where}: no visible focus on {unringed}"
    return reached


def reading_order(reached: list[dict[str, Any]], where: str) -> None:
    """On a phone, each control Tab reaches is below the one before, beside it on its line, or at the top of a
    column to its right (the chat, then the buttons beside it)."""
    for before, after in itertools.pairwise(reached):
        same_line = abs(after["top"] - before["top"]) < 24
        next_column = after["left"] >= before["right"] - 1
        assert after["top"] >= before["top"] - 4 or same_line or next_column, (
            f"{where}: Tab goes up the page from {before['key']} to {after['key']}"
        )


@pytest.mark.parametrize("size", list(SIZES))
def test_every_control_is_reached_by_tab_in_order_with_a_visible_focus(
    pages: Pages, site: ServerProcess, live_shop: Shop, drawn_giveaway: str, size: str
) -> None:
    """On the landing page, the viewer room (a guest, with a deal and a giveaway), its sign-in card, the studio,
    My orders and messages and "Check this draw", Tab reaches every visible control in the page's order, each one
    showing where focus is."""
    base = site.base_url
    page = pages.open(f"{base}/", **SIZES[size])
    tab_through(page, f"index.html ({size})")

    page.goto(f"{base}/draw.html?id={drawn_giveaway}")
    expect(page.locator("#draw")).to_have_attribute("data-state", "verified")
    tab_through(page, f"draw.html ({size})")

    page.goto(f"{base}/messages.html")
    expect(page.locator("#messages")).not_to_have_attribute("data-state", "loading")
    tab_through(page, f"messages.html ({size})")

    page.goto(room_url(live_shop))
    connected(page)
    expect(page.locator("#giveaway-card")).to_be_visible()
    reached = tab_through(page, f"room.html ({size})")
    if size == "phone":
        reading_order(reached, f"room.html ({size})")
    page.click("#account")
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#signin-destination")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#signin-send button[type=submit]")).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.locator("#signin")).to_be_hidden()

    page.goto(login_link(live_shop))
    expect(page.locator("#studio")).to_have_attribute("data-connection", "open")
    tab_through(page, f"studio.html ({size})")


# --- the room's language ------------------------------------------------------------------------------------------

# Both languages' strings: the keys each has, and for each key the {variables} its forms name.
CATALOGS = """async () => {
  const variables = (entry) => {
    const forms = typeof entry === 'object' ? Object.values(entry) : [entry];
    const names = forms.flatMap((form) => Array.from(form.matchAll(/\\{(\\w+)\\}/g), (found) => found[1]));
    return Array.from(new Set(names)).sort();
  };
  const read = async (name) => {
    const strings = (await import(`/js/strings/${name}`)).default;
    return Object.fromEntries(Object.entries(strings).map(([key, entry]) => [key, variables(entry)]));
  };
  const plurals = (strings) => Object.entries(strings)
    .filter(([, entry]) => typeof entry === 'object' && !('one' in entry && 'other' in entry)).map(([key]) => key);
  const en = (await import('/js/strings/room.en.js')).default;
  return {en: await read('room.en.js'), zh: await read('room.zh.js'), badPlurals: plurals(en)};
}"""


def test_room_strings_are_the_same_in_both_languages(pages: Pages, site: ServerProcess) -> None:
    """The room's English and Chinese strings have the same keys, each naming the same {variables} (a plural string
    has its "one" and "other" forms in English); every data-i18n key of room.html is one of them."""
    page = pages.open(f"{site.base_url}/", **PHONE)
    catalogs = page.evaluate(CATALOGS)
    en, zh = catalogs["en"], catalogs["zh"]
    assert sorted(set(en) - set(zh)) == [] and sorted(set(zh) - set(en)) == []
    assert {key: (en[key], zh[key]) for key in en if en[key] != zh[key]} == {}
    assert catalogs["badPlurals"] == []
    html = (ROOT / "static" / "room.html").read_text()
    keys = set(re.findall(r'data-i18n(?:-[\w-]+)?="([\w.]+)"', html))
    assert keys and sorted(keys - set(en)) == []


def open_room(pages: Pages, shop: Shop, locale: str) -> Page:
    """A guest's phone on the room, its browser set to `locale` (navigator.languages and Accept-Language)."""
    return connected(pages.open(room_url(shop), locale=locale, **PHONE))


def test_the_room_speaks_the_browsers_language(pages: Pages, live_shop: Shop) -> None:
    """A browser set to Chinese (zh-CN) gets the room in Simplified Chinese: <html lang>, the chat's placeholder, the
    bag button's name, the Buy button and the sign-in card; one set to English (en-US), or to a language the room
    doesn't ship (fr-FR), gets English."""
    zh = open_room(pages, live_shop, "zh-CN")
    expect(zh.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(zh.locator("#chat-input")).to_have_attribute("placeholder", "说点好听的…")
    expect(zh.locator("#bag-button")).to_have_attribute("aria-label", "本场商品")
    expect(zh.locator("#card-deal")).to_have_text("限时秒杀")
    expect(zh.locator("#buy")).to_have_text("登录后购买")
    expect(zh.locator("#giveaway-card [data-testid=giveaway-enter]")).to_have_text("参与")
    untranslated = zh.evaluate(
        """() => Array.from(document.querySelectorAll('[data-i18n]'))
            .filter((node) => node.children.length || /^[a-z]+\\.[A-Za-z.]+$/.test(node.textContent))
            .map((node) => node.outerHTML.slice(0, 80))"""
    )
    assert untranslated == []
    screenshot(zh, "viewer-zh.png")
    zh.click("#account")
    expect(zh.locator("#signin-heading")).to_have_text("登录")
    expect(zh.locator("#signin-send button[type=submit]")).to_have_text("发送验证码")
    expect(zh.locator("#signin-destination")).to_be_focused()

    for locale in ("en-US", "fr-FR"):
        en = open_room(pages, live_shop, locale)
        expect(en.locator("html")).to_have_attribute("lang", "en")
        expect(en.locator("#chat-input")).to_have_attribute("placeholder", "Say something nice…")
        expect(en.locator("#bag-button")).to_have_attribute("aria-label", "Products in this show")
        expect(en.locator("#buy")).to_have_text("Sign in to buy")
        en.click("#account")
        expect(en.locator("#signin-heading")).to_have_text("Sign in")
        expect(en.locator("#signin-send button[type=submit]")).to_have_text("Send me a code")
