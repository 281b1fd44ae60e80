"""The viewer room and the host studio in real Chromium, against real server processes, Redis and WebRTC.

Chromium's fake camera plays a rendered product scene (an MJPEG file made by the same browser),
so the video the viewers check, and the screenshots saved under test-artifacts/, show a picture
rather than a test pattern.
"""

from __future__ import annotations

import math
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect
from websockets.sync.client import connect

from server.protocol import event
from tests.browser.helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DESKTOP,
    PHONE,
    Pages,
    demo_shop,
    enter_code,
    fill_shipping,
    in_thread,
    inbox_code,
    login_link,
    ms,
    new_email,
    room_url,
    screenshot,
    send_code,
)
from tests.conftest import ROOT, ServerProcess, Shop, publish_direct, start_server
from tests.timing import seconds

pytestmark = pytest.mark.browser

XSS = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


# --- the browser ---------------------------------------------------------------------------------


SCENE = """<!doctype html><html><head><style>
body { margin: 0; width: 540px; height: 960px; overflow: hidden;
  background: linear-gradient(180deg, #f7dccf 0%, #eeb3a6 42%, #b9788c 72%, #5b3f63 100%); }
.bokeh { position: absolute; border-radius: 50%; filter: blur(6px);
  background: radial-gradient(circle, rgb(255 255 255 / 75%), rgb(255 255 255 / 0%) 70%); }
.shelf { position: absolute; top: 170px; left: -20px; right: -20px; height: 14px; border-radius: 4px;
  background: linear-gradient(#c98f6b, #9c6748); box-shadow: 0 10px 20px rgb(80 30 40 / 25%); }
.prop { position: absolute; top: 50px; width: 130px; height: 130px; filter: blur(2.5px); opacity: .9; }
.prop svg > rect:first-of-type, .hero svg > rect:first-of-type, .prop svg > circle:first-of-type,
.hero svg > circle:first-of-type { display: none; }
.prop svg, .hero svg { width: 100%; height: 100%; }
.pedestal { position: absolute; left: 95px; top: 500px; width: 350px; height: 150px; border-radius: 50%;
  background: radial-gradient(ellipse at 50% 30%, #fff8f3, #e8c9bd 70%);
  box-shadow: 0 40px 60px rgb(60 20 40 / 35%); }
.shadow { position: absolute; left: 150px; top: 540px; width: 240px; height: 40px; border-radius: 50%;
  background: rgb(60 20 40 / 30%); filter: blur(8px); }
.hero { position: absolute; left: 40px; top: 200px; width: 460px; height: 460px; }
</style></head><body>
<div class="bokeh" style="left:40px;top:60px;width:120px;height:120px"></div>
<div class="bokeh" style="left:380px;top:20px;width:160px;height:160px"></div>
<div class="bokeh" style="left:300px;top:380px;width:70px;height:70px"></div>
<div class="bokeh" style="left:20px;top:420px;width:90px;height:90px"></div>
<div class="shelf"></div>
<div class="prop" style="left:30px">MUG</div><div class="prop" style="left:380px">LIPSTICK</div>
<div class="pedestal"></div><div class="shadow" id="shadow"></div>
<div class="hero" id="hero">SNEAKER</div>
</body></html>"""


@pytest.fixture(scope="module")
def camera_scene(playwright: Playwright, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A looping portrait video of a product on a pedestal (MJPEG), for Chromium's fake camera."""
    images = ROOT / "static" / "img"
    html = (
        SCENE.replace("SNEAKER", (images / "sneaker.svg").read_text())
        .replace("MUG", (images / "mug.svg").read_text())
        .replace("LIPSTICK", (images / "lipstick.svg").read_text())
    )
    path = tmp_path_factory.mktemp("camera") / "scene.mjpeg"
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS[:3])
    try:
        page = browser.new_page(viewport={"width": 540, "height": 960})
        page.set_content(html)
        frames = 45  # 1.5 s at the fake camera's 30 frames a second, then it loops
        with open(path, "wb") as out:
            for index in range(frames):
                phase = 2 * math.pi * index / frames
                page.evaluate(
                    """([lift, tilt, spread]) => {
                        document.getElementById('hero').style.transform = `translateY(${lift}px) rotate(${tilt}deg)`;
                        document.getElementById('shadow').style.transform = `scaleX(${spread})`;
                    }""",
                    [
                        round(-12 * math.sin(phase), 2),
                        round(2.5 * math.sin(phase), 2),
                        round(1 - 0.08 * math.sin(phase), 3),
                    ],
                )
                out.write(page.screenshot(type="jpeg", quality=85))
    finally:
        browser.close()
    return path


@pytest.fixture(scope="module")
def browser(playwright: Playwright, camera_scene: Path) -> Iterator[Browser]:
    args = [*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={camera_scene}"]
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
    yield launched
    launched.close()


def video_frames(page: Page) -> dict[str, float]:
    """Count the frames the viewer's <video> presents during up to 3 s (scaled), and how far its clock moved."""
    return page.evaluate(
        """(limit) => new Promise((resolve) => {
            const video = document.getElementById('video');
            const start = video.currentTime;
            let frames = 0;
            const done = () => resolve({frames, advanced: video.currentTime - start});
            const step = () => { frames += 1; if (frames >= 12) done(); else video.requestVideoFrameCallback(step); };
            video.requestVideoFrameCallback(step);
            setTimeout(done, limit);
        })""",
        ms(3),
    )


def say(page: Page, text: str) -> None:
    """Send a chat message from a page and wait until the room has it."""
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")
    expect(page.locator("#chat li .text").last).to_have_text(text)


def chat_texts(page: Page) -> list[str]:
    return page.locator("#chat li .text").all_text_contents()


# --- the whole show -------------------------------------------------------------------------------------


def test_whole_show(pages: Pages, server_factory: object, redis_url: str) -> None:
    """A host goes live and sells; two viewers watch, chat, like, buy; one pays, one's hold lapses and returns."""
    server: ServerProcess = server_factory(HOLD_SECONDS="6")  # type: ignore[operator]
    shop = demo_shop(server.base_url, server.ws_url, redis_url)
    whip = httpx.post(f"{server.base_url}/whip/{shop.room_id}")
    assert whip.status_code == 401, "this server does not serve WHIP: server/app.py must mount streaming.routes"

    # The host signs in with a single-use login link: the ticket leaves the address bar at once, and the session is
    # kept in this tab only.
    studio = pages.open(login_link(shop), **DESKTOP)
    expect(studio.locator("#studio")).to_be_visible()
    assert "login" not in studio.url
    kept = orjson.loads(studio.evaluate("sessionStorage.getItem('livecart.studio')"))
    assert kept["user"]["name"] == "Maya" and kept["user"]["roles"] == {shop.merchant_id: "host"}
    assert studio.evaluate("localStorage.getItem('livecart.studio')") is None
    expect(studio.locator("#room-meta")).to_contain_text("Maya (host)")
    expect(studio.locator("#preview-box")).to_have_attribute("data-camera", "on")
    studio.click("#bag-all")
    expect(studio.locator("#bag-note")).to_contain_text("4 of 4 products")
    studio.click("#go-live")
    expect(studio.locator("#status-pill")).to_have_attribute("data-state", "live", timeout=ms(20))
    studio.click("li.product-row[data-product-id=sneaker] .present-button")
    expect(studio.locator("li.product-row.pinned")).to_have_attribute("data-product-id", "sneaker")

    # Two viewers on phones see the video playing and the card.
    viewers = [pages.open(room_url(shop), **PHONE) for _ in range(2)]
    for viewer in viewers:
        viewer.context.grant_permissions(["clipboard-read", "clipboard-write"])
        expect(viewer.locator("#stage")).to_have_attribute("data-playing", "true", timeout=ms(20))
        expect(viewer.locator("#card-title")).to_have_text("Cloudrunner sneakers")
        expect(viewer.locator("#live-badge")).to_have_text("Live")
        expect(viewer.locator("#bag-count")).to_have_text("4")
    for viewer in viewers:
        shown = video_frames(viewer)
        assert shown["frames"] >= 12 and shown["advanced"] > 0.2, shown
    first, second = viewers
    expect(studio.locator("#stat-viewers")).to_have_text("2")  # the two viewers: the host is staff, not a viewer
    expect(first.locator("#viewers")).to_have_text("2")

    # Chat flows both ways.
    say(first, "Do they run true to size?")
    say(studio, "They do! Flash deal in ten seconds")
    say(second, "Love this colorway")
    lines = ["Do they run true to size?", "They do! Flash deal in ten seconds", "Love this colorway"]
    for page in (first, second, studio):
        expect(page.locator("#chat li .text")).to_have_text(lines)
    expect(first.locator("#chat li.staff .badge")).to_have_text("Host")

    # Hearts: taps are batched, and everyone else sees them float.
    for _ in range(5):
        second.click("#like")
    expect(first.locator("#likes")).to_have_text("5")
    expect(first.locator("#hearts .heart").first).to_be_attached()

    # Share copies the room's link.
    first.click("#share")
    expect(first.locator("#toasts")).to_contain_text("Link copied")
    assert first.evaluate("navigator.clipboard.readText()") == room_url(shop)

    # The second viewer signs in from the header, with a code sent to an email address; the room carries on.
    expect(second.locator("#account-name")).to_have_text("Sign in")
    second.click("#account")
    expect(second.locator("#signin")).to_be_visible()
    second_email = new_email("sam")
    send_code(second, second_email)
    enter_code(second, inbox_code(server.base_url, second_email))
    expect(second.locator("#signin")).to_be_hidden()
    expect(second.locator("#account")).to_have_attribute("data-signed-in", "true")
    expect(second.locator("#account-name")).to_have_text(second_email.partition("@")[0])
    expect(second.locator("#stage")).to_have_attribute("data-connection", "open")
    expect(second.locator("#chat li.mine .text")).to_have_text(["Love this colorway"])
    expect(studio.locator("#stat-viewers")).to_have_text("2")

    # A flash sale: a countdown on every screen, then Buy.
    studio.fill("#sale-price", "39")
    studio.fill("#sale-quantity", "10")
    studio.click("#sale-start")
    for viewer in viewers:
        expect(viewer.locator("#card")).to_have_attribute("data-sale", "scheduled")
        expect(viewer.locator("#card-timer")).to_contain_text("Starts in 0:")
        expect(viewer.locator("#card-price")).to_have_text("$39.00")
        expect(viewer.locator("#card-regular")).to_have_text("$59.00")
        expect(viewer.locator("#buy")).to_be_disabled()
    # The sale is for signed-in shoppers (the default): the guest is told so before tapping.
    expect(first.locator("#buy")).to_have_text("Sign in to buy", timeout=ms(15))
    expect(second.locator("#buy")).to_have_text("Buy")
    for viewer in viewers:
        expect(viewer.locator("#buy")).to_be_enabled()
        expect(viewer.locator("#card-timer")).to_contain_text("Ends in")
    for _ in range(6):
        first.click("#like")
    screenshot(first, "viewer.png")

    # The guest taps it: the sign-in dialog says why; the code is read in the dev inbox page its hint links to.
    first.click("#buy")
    expect(first.locator("#signin")).to_be_visible()
    expect(first.locator("#signin-reason")).to_contain_text("for signed-in shoppers")
    first_email = new_email("ana")
    send_code(first, first_email)
    screenshot(first, "viewer-sign-in.png")
    href = first.locator("#inbox-link").get_attribute("href")
    assert href == f"/inbox.html?email={first_email.replace('@', '%40')}", href
    inbox = pages.open(server.base_url + href, **PHONE)
    expect(inbox.locator("h1")).to_have_text("Sandbox inbox — development only")
    expect(inbox.locator("#inbox-address")).to_have_text(first_email)
    expect(inbox.locator("#messages .code")).to_have_count(1)
    code = inbox.locator("#messages .code").first.inner_text()
    assert re.fullmatch(r"\d{6}", code), code
    enter_code(first, "000000" if code != "000000" else "111111")
    expect(first.locator("#signin-error")).to_contain_text("That code isn't right")
    enter_code(first, code)
    expect(first.locator("#signin")).to_be_hidden()
    expect(first.locator("#account-name")).to_have_text(first_email.partition("@")[0])

    # Signed in, the purchase goes through by itself; the second buys too. Each gets a hold with its own countdown,
    # and stock falls on every screen.
    expect(first.locator("#checkout")).to_have_attribute("data-step", "hold")
    second.click("#buy")
    for viewer in viewers:
        expect(viewer.locator("#checkout")).to_have_attribute("data-step", "hold")
        expect(viewer.locator("#hold-clock")).to_contain_text("0:0")
    for viewer in viewers:
        expect(viewer.locator("#card-stock")).to_have_attribute("data-available", "8")
    expect(studio.locator("[data-testid=sale-available]")).to_have_text("8")
    screenshot(second, "viewer-hold.png")

    # The first pays with the sandbox's test card; the second sees someone just bought.
    fill_shipping(first)  # asked once: the first order of her account
    first.click("#pay")
    expect(first.locator("#checkout")).to_have_attribute("data-step", "done")
    expect(first.locator("#done-text")).to_contain_text("$39.00 paid")
    expect(second.locator("#toasts")).to_contain_text("just bought Cloudrunner sneakers")
    screenshot(first, "viewer-paid.png")

    # The second never pays: the hold lapses, the shopper is told in plain words, the unit comes back.
    expect(second.locator("#checkout")).to_have_attribute("data-step", "error", timeout=ms(10))
    expect(second.locator("#error-title")).to_have_text("Your reservation expired")
    expect(second.locator("#error-text")).to_contain_text("You were not charged")
    screenshot(second, "viewer-expired.png")
    for viewer in viewers:
        expect(viewer.locator("#card-stock")).to_have_attribute("data-available", "9")
        expect(viewer.locator("#card-stock-text")).to_have_text("9 left")
    expect(studio.locator("[data-testid=sale-available]")).to_have_text("9")
    expect(studio.locator("[data-testid=sale-sold]")).to_have_text("1")
    second.click("#checkout .sheet-head [data-close]")
    expect(second.locator("#checkout")).to_be_hidden()

    # One per buyer: the first buyer's card says so, instead of an active Buy.
    first.click("#checkout .sheet-head [data-close]")
    expect(first.locator("#buy")).to_have_text("Limit reached")
    expect(first.locator("#buy")).to_be_disabled()

    # The host's numbers.
    expect(studio.locator("#stat-orders")).to_have_text("1")
    expect(studio.locator("#stat-units")).to_have_text("1")
    expect(studio.locator("#stat-gmv")).to_have_text("$39.00")
    expect(studio.locator("#stat-conversion")).to_have_text("50.0%")  # one buyer of two viewers (the host isn't one)
    screenshot(studio, "studio.png")

    # A shopper signs out from the header: the session ends on the server, and the page carries on as a guest.
    signed_in = orjson.loads(first.evaluate("localStorage.getItem('livecart.session')"))
    first.click("#account")
    expect(first.locator("#signin-who")).to_have_text(first_email.partition("@")[0])
    first.click("#sign-out")
    expect(first.locator("#account-name")).to_have_text("Sign in")
    expect(first.locator("#stage")).to_have_attribute("data-connection", "open")
    refreshed = httpx.post(
        f"{server.base_url}/api/sessions/refresh", json={"refresh_token": signed_in["refresh_token"]}
    )
    assert refreshed.status_code == 401, refreshed.text

    # A viewer's markup is shown as the text it is, on every screen, and never runs.
    say(second, XSS)
    for page in (first, second, studio):
        expect(page.locator("#chat li .text")).to_have_text([*lines, XSS])
        assert page.evaluate("window.__pwned === undefined && !document.querySelector('#chat script, #chat img')")

    # The host ends the show: every viewer is told.
    studio.click("#end-show")
    studio.click("#end-show")
    expect(studio.locator("#status-pill")).to_have_attribute("data-state", "ended")
    for viewer in viewers:
        expect(viewer.locator("#ended")).to_be_visible()
        expect(viewer.locator("#stage")).to_have_attribute("data-stream", "offline")


# --- reconnecting ----------------------------------------------------------------------------------------


def _chat_as(shop: Shop, token: str, text: str) -> None:
    """Post a chat message through a plain WebSocket (the token in its first frame) and wait for its ack."""
    with connect(f"{shop.ws_url}/ws/rooms/{shop.room_id}") as socket:
        socket.send(orjson.dumps({"type": "auth", "token": token}).decode())
        socket.recv(timeout=seconds(5))  # the snapshot
        socket.send(orjson.dumps({"type": "chat.send", "id": 1, "text": text}).decode())
        while True:
            reply = orjson.loads(socket.recv(timeout=seconds(5)))
            if reply.get("id") == 1:
                assert reply["type"] == "ack", reply
                return


def test_viewer_reconnects_without_losing_its_place(
    pages: Pages, server_factory: object, redis_url: str, stores: dict[str, str], tmp_path: Path
) -> None:
    """The server restarts: the page says so, comes back by itself with since/epoch, and shows what it missed once."""
    server: ServerProcess = server_factory()  # type: ignore[operator]
    shop = demo_shop(server.base_url, server.ws_url, redis_url, "Restart show")
    viewer = pages.open(room_url(shop), **PHONE)
    expect(viewer.locator("#stage")).to_have_attribute("data-connection", "open")
    _chat_as(shop, shop.host, "before the restart")
    expect(viewer.locator("#chat li .text")).to_have_text(["before the restart"])

    server.stop(signal.SIGTERM)
    expect(viewer.locator("#connection")).to_be_visible()
    expect(viewer.locator("#connection")).to_contain_text("Reconnecting")
    expect(viewer.locator("#stage")).to_have_attribute("data-connection", "reconnecting")

    # Something happens while the viewer is away (straight into the room's history).
    missed = {"id": "m1", "user_id": "u_host", "name": "Host", "role": "host", "text": "said while you were away"}
    in_thread(publish_direct(redis_url, shop.room_id, [event("chat.message", message=missed)]))

    again = start_server(tmp_path, stores, port=server.port)
    try:
        expect(viewer.locator("#stage")).to_have_attribute("data-connection", "open", timeout=ms(20))
        expect(viewer.locator("#connection")).to_be_hidden()
        assert viewer.evaluate("window.livecart.socket.lastFirstFrame") == "recovered"
        expect(viewer.locator("#chat li .text")).to_have_text(["before the restart", "said while you were away"])
        _chat_as(shop, shop.host, "after the restart")
        lines = ["before the restart", "said while you were away", "after the restart"]
        expect(viewer.locator("#chat li .text")).to_have_text(lines)

        # A return the history cannot serve (another epoch): the page renders the fresh snapshot instead.
        viewer.evaluate("() => { const socket = window.livecart.socket; socket.epoch = 'gone'; socket._ws.close(); }")
        viewer.wait_for_function("() => window.livecart.socket.lastFirstFrame === 'snapshot'")
        expect(viewer.locator("#stage")).to_have_attribute("data-connection", "open")
        expect(viewer.locator("#chat li .text")).to_have_text(lines)
    finally:
        again.stop()


# --- the studio --------------------------------------------------------------------------------------------


def test_studio_moderates_chat(pages: Pages, server: ServerProcess, redis_url: str) -> None:
    """Delete, slow mode, block list and ban reach the viewer, who is told why a message didn't go out."""
    shop = demo_shop(server.base_url, server.ws_url, redis_url, "Moderation show")
    studio = pages.open(login_link(shop), **DESKTOP)
    viewer = pages.open(room_url(shop), **PHONE)
    expect(viewer.locator("#stage")).to_have_attribute("data-connection", "open")
    expect(studio.locator("#studio")).to_have_attribute("data-connection", "open")

    def attempt(text: str) -> None:
        viewer.fill("#chat-input", text)
        viewer.press("#chat-input", "Enter")

    say(viewer, "first!")
    say(viewer, "buy followers at spam.example")
    expect(studio.locator("#chat li .text")).to_have_text(["first!", "buy followers at spam.example"])
    studio.locator("#chat li", has_text="spam.example").get_by_role("button", name="Delete").click()
    expect(viewer.locator("#chat li .text")).to_have_text(["first!"])
    expect(studio.locator("#chat li .text")).to_have_text(["first!"])

    studio.fill("#blocklist-input", "Spam.example")
    studio.press("#blocklist-input", "Enter")
    expect(studio.locator("#blocklist .chip-word")).to_have_text(["spam.example\u00d7"])
    attempt("more spam.example")
    expect(viewer.locator("#chat li.notice")).to_have_text(
        ["Not sent: your message has a word this shop doesn't allow."]
    )

    studio.select_option("#slow-mode", "30")
    expect(viewer.locator("#slow-note")).to_have_text("Slow mode: one message every 30 s")
    say(viewer, "one")
    attempt("two")
    expect(viewer.locator("#chat li.notice").last).to_contain_text("Slow mode is on; wait")
    studio.select_option("#slow-mode", "0")
    expect(viewer.locator("#slow-note")).to_be_hidden()

    studio.locator("#chat li", has_text="first!").get_by_role("button", name="Mute 5 min").click()
    expect(studio.locator("#restricted")).to_contain_text("muted until")
    attempt("can I talk?")
    expect(viewer.locator("#chat li.notice").last).to_contain_text("You are muted for")
    studio.locator("#restricted").get_by_role("button", name="Unmute").click()
    expect(studio.locator("#restricted-block")).to_be_hidden()
    say(viewer, "thanks for unmuting")

    studio.locator("#chat li", has_text="first!").get_by_role("button", name="Ban").click()
    expect(studio.locator("#restricted")).to_contain_text("banned")
    attempt("am I banned?")
    expect(viewer.locator("#chat li.notice").last).to_have_text("You can't chat in this room.")
    assert "am I banned?" not in chat_texts(studio)


def test_names_and_titles_are_text(pages: Pages, server: ServerProcess, redis_url: str) -> None:
    """Markup in a product title, a chat name and a room title is shown as text on both pages, never run."""
    shop = demo_shop(server.base_url, server.ws_url, redis_url, "<i>Room</i>")
    title = '<img src=x onerror="window.__pwned = 3">Scarf'
    with httpx.Client(base_url=shop.base_url, headers=shop.headers(shop.admin)) as client:
        client.post(f"/api/merchants/{shop.merchant_id}/products", json={"id": "odd", "title": title, "price": 900})
    studio = pages.open(login_link(shop, "<b>Host</b>"), **DESKTOP)
    expect(studio.locator("li.product-row[data-product-id=odd] .title")).to_have_text(title)
    studio.locator("li.product-row[data-product-id=odd] .present-button").click()
    studio.fill("#chat-input", "hello")
    studio.press("#chat-input", "Enter")
    viewer = pages.open(room_url(shop), **PHONE)
    expect(viewer.locator("#card-title")).to_have_text(title)
    expect(viewer.locator("#room-title")).to_have_text("<i>Room</i>")
    expect(viewer.locator("#chat li .name")).to_have_text(["<b>Host</b>"])
    viewer.click("#bag-button")
    expect(viewer.locator("#bag-list li.pinned .title")).to_have_text(title)
    for page in (studio, viewer):
        assert page.evaluate(
            "window.__pwned === undefined && !document.querySelector('img[src=x], #chat b, #room-title i')"
        )


def test_studio_refuses_a_bad_login_link(pages: Pages, server: ServerProcess, redis_url: str) -> None:
    """A used or forged login link, and someone who is not on the shop's staff, get a clear message and no studio."""
    shop = demo_shop(server.base_url, server.ws_url, redis_url, "Closed show")
    link = login_link(shop)
    used = pages.open(link, **DESKTOP)
    expect(used.locator("#studio")).to_be_visible()

    # The same link again (another browser): it was used.
    studio = pages.open(link, **DESKTOP)
    expect(studio.locator("#signin-error")).to_contain_text("This login link can't be used")
    expect(studio.locator("#studio")).to_be_hidden()
    assert "login" not in studio.url
    assert studio.evaluate("sessionStorage.getItem('livecart.studio')") is None

    # A forged one.
    studio.goto("about:blank")
    studio.goto(f"{shop.base_url}/studio.html?room={shop.room_id}#login=forged-ticket-0123456789")
    expect(studio.locator("#signin-error")).to_contain_text("This login link can't be used")
    expect(studio.locator("#studio")).to_be_hidden()

    # A shopper who signs in with a code is not on this shop's staff: told so, and offered to sign out.
    email = new_email("shopper")
    send_code(studio, email)
    enter_code(studio, inbox_code(server.base_url, email))
    expect(studio.locator("#signin-error")).to_contain_text("You're not on the staff of this shop")
    expect(studio.locator("#studio")).to_be_hidden()
    studio.click("#signin-other")
    expect(studio.locator("#signin-destination")).to_be_visible()
    assert studio.evaluate("sessionStorage.getItem('livecart.studio')") is None

    # A fresh link works.
    studio.goto("about:blank")
    studio.goto(login_link(shop, "Kim"))
    expect(studio.locator("#studio")).to_be_visible()
    expect(studio.locator("#room-title")).to_have_text("Closed show")
    expect(studio.locator("#room-meta")).to_contain_text("Kim (host)")


def test_sessions_refresh_in_the_page(pages: Pages, server_factory: object, redis_url: str) -> None:
    """With short-lived access tokens, the page refreshes its session (one refresh for concurrent callers), and its
    room socket, closed when its token expires, comes back with a fresh one."""
    server: ServerProcess = server_factory(ACCESS_TOKEN_SECONDS="10")  # type: ignore[operator]
    shop = demo_shop(server.base_url, server.ws_url, redis_url, "Short tokens")
    viewer = pages.open(room_url(shop), **PHONE)
    expect(viewer.locator("#stage")).to_have_attribute("data-connection", "open")
    first = orjson.loads(viewer.evaluate("localStorage.getItem('livecart.session')"))

    # Three callers at once, each told their token was refused: one refresh, one new pair of tokens.
    tokens = viewer.evaluate(
        """(rejected) => Promise.all([1, 2, 3].map(() => window.livecart.session.token({rejected})))""",
        first["token"],
    )
    assert len(set(tokens)) == 1 and tokens[0], tokens
    kept = orjson.loads(viewer.evaluate("localStorage.getItem('livecart.session')"))
    assert kept["token"] == tokens[0] and kept["refresh_token"] != first["refresh_token"]
    assert kept["user"]["id"] == first["user"]["id"]
    # The session is alive: a second refresh among the three would have used the rotated refresh token again, which
    # signs the session out (and the next refresh would fail).
    assert viewer.evaluate("(rejected) => window.livecart.session.token({rejected})", tokens[0])
    assert orjson.loads(viewer.evaluate("localStorage.getItem('livecart.session')"))["refresh_token"] not in (
        first["refresh_token"],
        kept["refresh_token"],
    )

    # The socket's token expires: the server closes it (4500), the page comes back with a fresh token.
    viewer.wait_for_function("() => window.livecart.socket.reconnects > 0", timeout=ms(20))
    expect(viewer.locator("#stage")).to_have_attribute("data-connection", "open", timeout=ms(10))
    say(viewer, "still here")
    assert viewer.evaluate("window.livecart.session.user.id") == first["user"]["id"]
