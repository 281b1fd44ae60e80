"""What the browser tests share: Chromium and its arguments, viewports, pages that report their errors, shops made
through the API, and the sign-in steps."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
from playwright.sync_api import Browser, BrowserContext, Page, expect
from websockets.sync.client import connect

from server.protocol import Role
from server.seed import DEMO_PRODUCTS
from tests.conftest import ROOT, Shop, mint
from tests.sale_helpers import auth
from tests.timing import seconds

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
ARTIFACTS = ROOT / "test-artifacts"
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
DESKTOP = {"viewport": {"width": 1440, "height": 900}}


def ms(value: float) -> float:
    """A nominal timeout in seconds, scaled (tests.timing), in the milliseconds Playwright counts in."""
    return seconds(value) * 1000


expect.set_options(timeout=ms(10))


class Pages:
    """Browser contexts (one per person) that report page errors and what the CSP refused, and close at the end of
    a test."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.contexts: list[BrowserContext] = []
        self.errors: list[str] = []

    def open(self, url: str, **options: object) -> Page:
        context = self.browser.new_context(**options)  # type: ignore[arg-type]
        self.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{url}: {error}"))
        page.on("console", lambda message: self._refused(url, message.text))
        page.goto(url)
        return page

    def _refused(self, url: str, text: str) -> None:
        """Chromium logs what the Content-Security-Policy refused to the console: each one is an error too."""
        if "Content Security Policy" in text:
            self.errors.append(f"{url}: {text}")

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def screenshot(page: Page, name: str, **options: Any) -> None:
    """The page as shown, in test-artifacts/ (docs/ takes the ones it shows from there, by hand, once looked at)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), **options)


def in_thread(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to the end (Playwright's sync API keeps an event loop busy in this thread)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coroutine).result()


# --- shops ---------------------------------------------------------------------------------------------


def demo_shop(base_url: str, ws_url: str, redis_url: str, title: str = "Sneaker drop night") -> Shop:
    """A fresh merchant with the demo shop's four products (with pictures) and a room."""
    from redis.asyncio import Redis

    from server.rooms.catalog import Catalog

    merchant_id = "m" + secrets.token_hex(4)

    async def create() -> None:
        redis = Redis.from_url(redis_url, decode_responses=True)
        try:
            await Catalog(redis).create_merchant(merchant_id, "Demo Shop")
        finally:
            await redis.aclose()

    in_thread(create())
    admin = mint(merchant_id, Role.ADMIN, "Admin")
    shop = Shop(base_url, ws_url, merchant_id, "", admin, mint(merchant_id, Role.HOST, "Maya"), "")
    with httpx.Client(base_url=base_url, headers=shop.headers(admin)) as client:
        room = client.post(f"/api/merchants/{merchant_id}/rooms", json={"title": title})
        room.raise_for_status()
        shop.room_id = room.json()["id"]
        for product in DEMO_PRODUCTS:
            client.post(
                f"/api/merchants/{merchant_id}/products", json={**product, "currency": "USD"}
            ).raise_for_status()
            shop.products.append(str(product["id"]))
    return shop


def login_link(shop: Shop, name: str = "Maya", role: str = "host") -> str:
    """A single-use studio login link for a new staff member of the shop, as its admin gets one (REST API)."""
    email = f"staff-{secrets.token_hex(4)}@example.com"
    with httpx.Client(base_url=shop.base_url, headers=shop.headers(shop.admin)) as client:
        added = client.post(
            f"/api/merchants/{shop.merchant_id}/staff", json={"email": email, "name": name, "role": role}
        )
        assert added.status_code == 201, added.text
        link = client.post(f"/api/merchants/{shop.merchant_id}/staff/{added.json()['user_id']}/login-link")
        assert link.status_code == 201, link.text
    return f"{shop.base_url}/studio.html?room={shop.room_id}#login={link.json()['ticket']}"


def inbox_code(base_url: str, email: str) -> str:
    """The newest sign-in code the sandbox messenger sent to this email (read through its REST inbox)."""
    messages = httpx.get(f"{base_url}/api/sandbox/inbox", params={"email": email}).json()["messages"]
    found = re.search(r"\b(\d{6})\b", messages[0]["text"])
    assert found, messages
    return found.group(1)


def new_email(who: str) -> str:
    return f"{who}-{secrets.token_hex(3)}@example.com"


def send_code(page: Page, email: str) -> None:
    """In an open sign-in dialog (viewer) or card (studio): ask for a code to `email`."""
    page.fill("#signin-destination", email)
    page.click("#signin-send button[type=submit]")
    expect(page.locator("#signin-sent")).to_contain_text(f"We sent a 6-digit code to {email}")


def enter_code(page: Page, code: str) -> None:
    page.fill("#signin-code", code)
    page.click("#signin-verify button[type=submit]")


def room_url(shop: Shop) -> str:
    return f"{shop.base_url}/room.html?room={shop.room_id}"


def room_command(shop: Shop, token: str, kind: str, **fields: Any) -> None:
    """One room command (pin, bag, chat...) as `token`'s holder, over a plain WebSocket; returns once acknowledged."""
    with connect(f"{shop.ws_url}/ws/rooms/{shop.room_id}") as socket:
        socket.send(orjson.dumps({"type": "auth", "token": token}).decode())
        socket.recv(timeout=seconds(5))  # the snapshot
        socket.send(orjson.dumps({"type": kind, "id": 1, **fields}).decode())
        while True:
            reply = orjson.loads(socket.recv(timeout=seconds(5)))
            if reply.get("id") == 1:
                assert reply["type"] == "ack", reply
                return


def pin(shop: Shop, product_id: str) -> None:
    """The host presents a product."""
    room_command(shop, shop.host, "product.pin", product_id=product_id)


def api_member(base_url: str, email: str, device: str | None = None) -> str:
    """A member's access token, signed in as a browser does: a guest (on `device`, when given) who signs in with
    the code the sandbox messenger sent."""
    guest = httpx.post(f"{base_url}/api/guest", json={"device": device} if device else {})
    assert guest.status_code == 201, guest.text
    sent = httpx.post(f"{base_url}/api/sign-in/code", json={"email": email})
    assert sent.status_code == 202, sent.text
    signed = httpx.post(
        f"{base_url}/api/sign-in",
        json={"email": email, "code": inbox_code(base_url, email)},
        headers=auth(guest.json()["token"]),
    )
    assert signed.status_code == 200, signed.text
    return str(signed.json()["token"])


def sign_in(page: Page, base_url: str, email: str) -> None:
    """Sign in from the room's header with a code read in the sandbox inbox."""
    page.click("#account")
    expect(page.locator("#signin")).to_be_visible()
    send_code(page, email)
    enter_code(page, inbox_code(base_url, email))
    expect(page.locator("#signin")).to_be_hidden()
    expect(page.locator("#account")).to_have_attribute("data-signed-in", "true")
    expect(page.locator("#stage")).to_have_attribute("data-connection", "open")


SHIP_TO = {"name": "Ana Buyer", "address": "1 Market Street, Springfield"}


def fill_shipping(page: Page, name: str = SHIP_TO["name"], address: str = SHIP_TO["address"]) -> None:
    """At the room's payment step: the shipping name and address, when the page asks for them (once per account:
    after that it shows the one saved, with Change)."""
    expect(page.locator("#checkout")).to_have_attribute("data-step", "hold")
    if page.locator("#ship").get_attribute("data-state") == "ask":
        page.fill("#ship-name", name)
        page.fill("#ship-address", address)


def uncovered(page: Page, selector: str) -> bool:
    """True when the element is on screen and a tap at its centre lands on it (nothing over it)."""
    return bool(
        page.evaluate(
            """(selector) => {
              const node = document.querySelector(selector);
              const box = node.getBoundingClientRect();
              const hit = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
              return box.width > 0 && box.top >= 0 && box.bottom <= innerHeight && (hit === node || node.contains(hit));
            }""",
            selector,
        )
    )
