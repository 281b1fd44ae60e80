"""LL-HLS in the viewer room (docs/video.md "HLS for the crowd") in real Chromium, against a real server process:
past WEBRTC_VIEWERS_PER_ROOM a viewer's page switches to HLS (hls.js) by itself, as it does when WebRTC cannot
connect; the product the host pins reaches an HLS viewer when the picture does, not before.

The host is an aiortc publisher (H.264 + Opus, `python -m streaming.client publish`) in its own process.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from loadtests.support.server import ServerProcess
from tests.browser.helpers import PHONE, Pages, demo_shop, ms, pin, room_url
from tests.conftest import ROOT, Shop, start_server

pytestmark = pytest.mark.browser

# The one console error the switch brings: Chromium logs every 4xx answer, and the cap's answer is a 409.
WEBRTC_FULL = "the server responded with a status of 409"
# A browser whose WebRTC can't connect: relay-only ICE with no TURN server gathers no candidate at all.
NO_WEBRTC = """
const Native = window.RTCPeerConnection;
window.RTCPeerConnection = function (config) { return new Native({ ...(config || {}), iceTransportPolicy: "relay" }); };
window.RTCPeerConnection.prototype = Native.prototype;
"""


@pytest.fixture(scope="module")
def capped(stores: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that takes one WebRTC viewer per room."""
    started = start_server(tmp_path_factory.mktemp("hls"), {**stores, "WEBRTC_VIEWERS_PER_ROOM": "1"})
    yield started
    started.stop()


class Publisher:
    """The host: an aiortc WHIP publisher (H.264 test pattern and a tone) in a subprocess."""

    def __init__(self, shop: Shop) -> None:
        command = [sys.executable, "-m", "streaming.client", "publish", f"{shop.base_url}/whip/{shop.room_id}"]
        command += ["--token", shop.host, "--codec", "video/H264", "--size", "640x360"]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class Console:
    """Console errors of the pages it opens, but for the 409 of a WebRTC room that is full."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.errors: list[str] = []

    def open(self, url: str, name: str, options: dict[str, Any], init_script: str = "") -> Page:
        context = self.pages.browser.new_context(**options)
        self.pages.contexts.append(context)
        if init_script:
            context.add_init_script(init_script)
        page = context.new_page()
        page.on("pageerror", lambda error: self.pages.errors.append(f"{name}: {error}"))
        page.on("console", lambda message: self.seen(name, message))
        page.goto(url)
        return page

    def seen(self, name: str, message: ConsoleMessage) -> None:
        if message.type == "error" and WEBRTC_FULL not in message.text:
            self.errors.append(f"{name}: {message.text} {message.location.get('url', '')}")


def playing(page: Page, transport: str) -> None:
    stage = page.locator("#stage")
    expect(stage).to_have_attribute("data-transport", transport, timeout=ms(20))
    expect(stage).to_have_attribute("data-playing", "true", timeout=ms(20))


def hls_state(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate(
        """() => {
            const player = window.livecart.viewing.hls;
            const video = document.getElementById('video');
            return {
                shown: player && player.programTime(), latency: player && player.latency(),
                time: video.currentTime, size: [video.videoWidth, video.videoHeight],
                audio: video.webkitAudioDecodedByteCount,
                released: window.livecart.held.released, waiting: window.livecart.held.events.length,
            };
        }"""
    )
    return state


def test_viewer_past_the_cap_switches_to_hls_and_sees_the_product_with_the_picture(
    pages: Pages, capped: ServerProcess, redis_url: str
) -> None:
    """The first viewer watches over WebRTC; the second is refused WebRTC (409 webrtc_full) and plays the LL-HLS
    stream in hls.js, picture and Opus sound, under 3 s behind; the product the host pins is held on the HLS page
    until its picture's program time passes the event's timestamp; no other console error."""
    shop = demo_shop(capped.base_url, capped.ws_url, redis_url)
    host = Publisher(shop)
    try:
        console = Console(pages)
        first = console.open(room_url(shop), "webrtc viewer", PHONE)
        playing(first, "webrtc")
        second = console.open(room_url(shop), "hls viewer", PHONE)
        playing(second, "hls")
        state = hls_state(second)
        assert state["size"] == [640, 360], state
        second.wait_for_function("() => window.livecart.viewing.hls.programTime() !== null", timeout=ms(10))
        start = hls_state(second)["time"]
        second.wait_for_function(f"() => document.getElementById('video').currentTime > {start} + 2", timeout=ms(15))
        assert hls_state(second)["audio"] > 0, "the Opus track in fMP4 did not decode"
        # How far the picture on screen is behind the server's receiving it (program time), in hls.js: under 3 s.
        behind = second.evaluate("() => Date.now() - window.livecart.viewing.hls.programTime()")
        print(f"hls.js plays {behind} ms behind the server's arrival of the picture")
        assert 0 < behind < ms(3), behind

        pin(shop, "sneaker")
        expect(first.locator("#card-title")).to_have_text("Cloudrunner sneakers")
        expect(second.locator("#card-title")).to_have_text("Cloudrunner sneakers")
        released = [entry for entry in hls_state(second)["released"] if entry["type"] == "product.pinned"]
        assert released, hls_state(second)
        entry = released[-1]
        assert entry["shown"] is not None and entry["shown"] >= entry["ts"], entry  # not before its picture
        assert entry["waited"] > 300, entry  # the HLS picture is behind: the card waited for it
        assert console.errors == [], console.errors
    finally:
        host.stop()


def test_viewer_whose_webrtc_cannot_connect_falls_back_to_hls(
    pages: Pages, capped: ServerProcess, redis_url: str
) -> None:
    """A browser whose WebRTC gathers no candidate (no UDP, no TURN) plays the HLS stream within a few seconds."""
    shop = demo_shop(capped.base_url, capped.ws_url, redis_url, title="No UDP here")
    host = Publisher(shop)
    try:
        console = Console(pages)
        viewer = console.open(room_url(shop), "viewer without webrtc", PHONE, NO_WEBRTC)
        playing(viewer, "hls")
        assert console.errors == [], console.errors
    finally:
        host.stop()


def test_vendored_hls_js_comes_with_its_licence() -> None:
    """hls.js is vendored as one file beside its Apache-2.0 licence."""
    vendor = ROOT / "static" / "vendor"
    assert (vendor / "hls.light.min.mjs").stat().st_size > 100_000
    assert "Apache License, Version 2.0" in (vendor / "hls.js.LICENSE").read_text()
