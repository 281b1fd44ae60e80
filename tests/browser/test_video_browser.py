"""The live video's shape (docs/video.md, "The picture's shape") in real Chromium, against a real server process,
Redis, PostgreSQL and WebRTC: the studio films portrait by default with a guide for what phones show and says what it
publishes; viewers' phones at 390 x 844, 375 x 667 and 320 x 568 fill the screen with a portrait stream and letterbox
a landscape one; ending the show logs no console error on any page.

Each test's Chromium plays its own fake camera: a portrait (720 x 1280) or a landscape (1280 x 720) MJPEG of a
product scene, rendered by the same browser.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, expect

from loadtests.support.server import ServerProcess
from tests.browser.helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PHONE,
    Pages,
    demo_shop,
    login_link,
    ms,
    pin,
    room_url,
    screenshot,
)
from tests.conftest import ROOT, Shop

pytestmark = pytest.mark.browser

STUDIO = {"viewport": {"width": 1280, "height": 800}}
PHONES = {
    "390x844": PHONE,
    "375x667": {**PHONE, "viewport": {"width": 375, "height": 667}},
    "320x568": {**PHONE, "viewport": {"width": 320, "height": 568}},
}

# --- the cameras ----------------------------------------------------------------------------------------------

SCENE = """<!doctype html><html><head><style>
body { margin: 0; width: 100vw; height: 100vh; overflow: hidden; position: relative;
  background: linear-gradient(180deg, #f7dccf 0%, #eeb3a6 45%, #b9788c 75%, #5b3f63 100%); }
.shelf { position: absolute; left: 0; right: 0; top: 62vh; height: 2vh; background: #b07a5a; }
.row { position: absolute; left: 0; right: 0; top: 14vh; height: 48vh; display: flex; justify-content: center;
  align-items: flex-end; gap: 2vw; }
.row div { height: 100%; aspect-ratio: 1; }
.row svg { width: 100%; height: 100%; }
.row svg > rect:first-of-type, .row svg > circle:first-of-type { display: none; }
.caption { position: absolute; left: 0; right: 0; bottom: 8vh; text-align: center; color: #fff;
  font: 800 6vmin sans-serif; letter-spacing: .04em; }
</style></head><body>
<div class="shelf"></div><div class="row">ITEMS</div><div class="caption">LIVE NOW</div>
</body></html>"""


def render_camera(playwright: Playwright, path: Path, width: int, height: int, products: list[str]) -> Path:
    """A one-second loop (30 frames) of products on a shelf, the middle one bobbing, as an MJPEG file."""
    images = ROOT / "static" / "img"
    items = "".join(f"<div>{(images / f'{name}.svg').read_text()}</div>" for name in products)
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS[:3])
    try:
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_content(SCENE.replace("ITEMS", items))
        with open(path, "wb") as out:
            for index in range(30):
                lift = round(-2 * abs(15 - index) / 15 + 1, 3)  # -1 … 1 vh, back and forth
                page.evaluate(
                    "(lift) => { const items = document.querySelectorAll('.row div');"
                    " items[Math.floor(items.length / 2)].style.transform = `translateY(${lift}vh)`; }",
                    lift,
                )
                out.write(page.screenshot(type="jpeg", quality=85))
    finally:
        browser.close()
    return path


def camera_browser(playwright: Playwright, camera: Path) -> Browser:
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={camera}"]
    )


@pytest.fixture(scope="module")
def browser(playwright: Playwright, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Chromium whose camera films portrait, 720 x 1280 (as a phone held upright)."""
    camera = render_camera(playwright, tmp_path_factory.mktemp("camera") / "portrait.mjpeg", 720, 1280, ["sneaker"])
    launched = camera_browser(playwright, camera)
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def landscape_browser(playwright: Playwright, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """Chromium whose camera films landscape, 1280 x 720 (a webcam)."""
    camera = render_camera(
        playwright, tmp_path_factory.mktemp("camera") / "landscape.mjpeg", 1280, 720, ["mug", "sneaker", "lipstick"]
    )
    launched = camera_browser(playwright, camera)
    yield launched
    launched.close()


@pytest.fixture
def landscape_pages(landscape_browser: Browser) -> Iterator[Pages]:
    opened = Pages(landscape_browser)
    yield opened
    opened.close()
    assert opened.errors == [], opened.errors


# --- what the pages show -----------------------------------------------------------------------------------


class Console:
    """Every console error of the pages it opens (the `pages` fixture fails a test on page errors only)."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.errors: list[str] = []

    def open(self, url: str, name: str, **options: Any) -> Page:
        context = self.pages.browser.new_context(**options)
        self.pages.contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: self.pages.errors.append(f"{name}: {error}"))
        page.on("console", lambda message: self.seen(name, message))
        page.goto(url)
        return page

    def seen(self, name: str, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"{name}: {message.text} {message.location.get('url', '')}")


def picture(page: Page) -> dict[str, Any]:
    """The viewer's stage and video boxes, the video's fit, and the box its picture is drawn in (its content box)."""
    shown: dict[str, Any] = page.evaluate(
        """() => {
            const video = document.getElementById('video');
            const stage = document.getElementById('stage');
            const box = (rect) => ({x: rect.x, y: rect.y, width: rect.width, height: rect.height});
            const element = box(video.getBoundingClientRect());
            const fit = getComputedStyle(video).objectFit;
            const scales = [element.width / video.videoWidth, element.height / video.videoHeight];
            const scale = fit === 'cover' ? Math.max(...scales) : Math.min(...scales);
            return {
                stage: box(stage.getBoundingClientRect()), video: element, fit,
                content: {width: video.videoWidth * scale, height: video.videoHeight * scale},
                size: [video.videoWidth, video.videoHeight],
                orientation: stage.dataset.orientation, dataFit: stage.dataset.fit,
                background: getComputedStyle(video).backgroundColor,
            };
        }"""
    )
    return shown


def watching(console: Console, shop: Shop, size: str) -> Page:
    """A viewer on a phone of this size, once the video plays."""
    viewer = console.open(room_url(shop), f"viewer {size}", **PHONES[size])
    expect(viewer.locator("#stage")).to_have_attribute("data-playing", "true", timeout=ms(20))
    expect(viewer.locator("#stage")).to_have_attribute("data-orientation", re.compile("portrait|landscape"))
    return viewer


def go_live(studio: Page) -> None:
    studio.click("#go-live")
    expect(studio.locator("#status-pill")).to_have_attribute("data-state", "live", timeout=ms(20))
    expect(studio.locator("#camera-published")).to_have_text(re.compile(r"^Publishing \d+x\d+ at \d+ fps"))


def end_show(studio: Page, viewers: list[Page]) -> None:
    """The host ends the show (a second click confirms) and every viewer sees it ended."""
    studio.click("#end-show")
    studio.click("#end-show")
    expect(studio.locator("#status-pill")).to_have_attribute("data-state", "ended")
    expect(studio.locator("#camera-published")).to_be_hidden()
    for viewer in viewers:
        expect(viewer.locator("#stage")).to_have_attribute("data-stream", "offline")
        expect(viewer.locator("#stage")).to_have_attribute("data-status", "ended")


def near(a: float, b: float) -> bool:
    return abs(a - b) <= 1.5


# --- portrait --------------------------------------------------------------------------------------------------


def test_portrait_stream_fills_every_phone(pages: Pages, server: ServerProcess, redis_url: str) -> None:
    """The studio films portrait by default with the phones' guide, says what it captures and publishes; a portrait
    stream fills the screen of every phone size; ending the show logs no console error on the studio or a viewer."""
    shop = demo_shop(server.base_url, server.ws_url, redis_url)
    console = Console(pages)
    studio = console.open(login_link(shop), "studio", **STUDIO)

    # Portrait 720p is the default: a 9:16 preview, the lines of what a 19.5:9 phone keeps, and the camera's size.
    box = studio.locator("#preview-box")
    expect(box).to_have_attribute("data-camera", "on")
    expect(studio.get_by_label("Portrait 9:16")).to_be_checked()
    expect(studio.get_by_label("Resolution")).to_have_value("720")
    expect(box).to_have_attribute("data-orientation", "portrait")
    expect(box).to_have_attribute("data-fit", "cover")
    expect(studio.locator("#camera-captured")).to_have_text("Camera: 720x1280 at 30 fps.")
    expect(studio.locator("#camera-guide")).to_be_visible()
    expect(studio.locator("#camera-guide-note")).to_contain_text("a 390x844 phone shows the part inside the lines")
    frame = studio.locator("#camera-frame").bounding_box()
    guide = studio.locator("#camera-guide").bounding_box()
    assert frame and guide
    assert abs(frame["width"] / frame["height"] - 9 / 16) < 0.01, frame
    assert near(guide["height"], frame["height"]) and guide["width"] < frame["width"] * 0.85, (frame, guide)
    assert abs(guide["width"] / guide["height"] - 390 / 844) < 0.01, guide

    # Live: the shape can't change mid-show, and the studio says what it publishes.
    go_live(studio)
    expect(studio.get_by_label("Landscape 16:9")).to_be_disabled()
    expect(studio.get_by_label("Resolution")).to_be_disabled()
    pin(shop, "sneaker")

    viewers = []
    for size in PHONES:
        viewer = watching(console, shop, size)
        viewers.append(viewer)
        shown = picture(viewer)
        assert shown["orientation"] == "portrait" and shown["dataFit"] == "cover" and shown["fit"] == "cover", shown
        stage, video, content = shown["stage"], shown["video"], shown["content"]
        assert all(near(video[key], stage[key]) for key in ("x", "y", "width", "height")), shown
        # the picture covers the whole screen, and the screen keeps most of the picture (no sliver)
        assert content["width"] >= stage["width"] - 1 and content["height"] >= stage["height"] - 1, shown
        assert stage["width"] / content["width"] >= 0.75 and stage["height"] / content["height"] >= 0.75, shown
    screenshot(studio, "studio-camera.png")

    end_show(studio, viewers)
    expect(studio.get_by_label("Landscape 16:9")).to_be_enabled()
    assert console.errors == [], console.errors


# --- landscape -------------------------------------------------------------------------------------------------


def test_landscape_stream_is_letterboxed_on_every_phone(
    landscape_pages: Pages, server: ServerProcess, redis_url: str
) -> None:
    """A landscape webcam asked for portrait gives a 9:16 cut of its picture; chosen landscape, the studio's guide
    is a phone showing it letterboxed; every phone size shows the whole picture, letterboxed on dark; ending the
    show logs no console error on any page."""
    shop = demo_shop(server.base_url, server.ws_url, redis_url, title="Kitchen finds")
    console = Console(landscape_pages)
    studio = console.open(login_link(shop), "studio", **STUDIO)
    expect(studio.locator("#preview-box")).to_have_attribute("data-camera", "on")

    # Portrait by default even from a landscape webcam: the browser cuts the tallest 9:16 picture it can, never
    # scaling up, and the readout says so.
    expect(studio.locator("#camera-captured")).to_have_text(
        re.compile(r"^Camera: \d+x720 at 30 fps, the nearest it offers to 720x1280\.$")
    )
    captured = studio.locator("#camera-captured").text_content() or ""
    width = int(re.findall(r"(\d+)x720", captured)[0])
    assert abs(width / 720 - 9 / 16) < 0.01, captured

    # Landscape, chosen before going live: the picture is whole, and the guide is a phone showing it letterboxed.
    studio.get_by_label("Landscape 16:9").check()
    box = studio.locator("#preview-box")
    expect(box).to_have_attribute("data-orientation", "landscape")
    expect(box).to_have_attribute("data-fit", "contain")
    expect(studio.locator("#camera-captured")).to_have_text("Camera: 1280x720 at 30 fps.")
    expect(studio.locator("#camera-guide")).to_be_hidden()
    expect(studio.locator("#camera-phone")).to_be_visible()
    expect(studio.locator("#camera-guide-note")).to_contain_text("letterboxed")
    go_live(studio)
    pin(shop, "mug")
    screenshot(studio, "studio-landscape.png")

    viewers = []
    for size in PHONES:
        viewer = watching(console, shop, size)
        viewers.append(viewer)
        expect(viewer.locator("#stage")).to_have_attribute("data-fit", "contain")
        shown = picture(viewer)
        assert shown["orientation"] == "landscape" and shown["fit"] == "contain", shown
        stage, content = shown["stage"], shown["content"]
        # the whole picture across the screen's width, in a band shorter than the screen, on a dark background
        assert near(content["width"], stage["width"]), shown
        assert content["height"] < stage["height"] * 0.5, shown
        assert near(content["height"], stage["width"] * shown["size"][1] / shown["size"][0]), shown
        assert shown["background"] == "rgb(11, 11, 16)", shown  # --night
        if size == "390x844":
            expect(viewer.locator("#card-title")).to_be_visible()
            screenshot(viewer, "viewer-landscape.png")

    end_show(studio, viewers)
    assert console.errors == [], console.errors
