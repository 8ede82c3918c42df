"""The Space in a real browser: headless Chromium loads the page served in-process, a mouse click on Generate
fills the gallery, and a screenshot of it is not blank.

Chromium is driven over the Chrome DevTools Protocol with the `websockets` client (a dev dependency).
Without a browser (`apt-get install chromium`, or CHROMIUM=/path/to/chrome) the test skips, except on CI.
"""

import base64
import io
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.spaces.test_space import TILE, load_app, save_tiny_export, served

websockets_client = pytest.importorskip(
    "websockets.sync.client",
    reason="the browser test drives Chromium with `websockets` (pip install websockets)",
)

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",  # root in a container has no user namespace for Chromium's sandbox
    "--disable-gpu",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1280,1400",
    "--remote-debugging-port=0",  # Chromium picks a port and writes it to DevToolsActivePort
]
TIMEOUT = 60


def find_browser() -> str | None:
    """CHROMIUM, else the first Chromium or Chrome on PATH."""
    candidates = [os.environ.get("CHROMIUM"), *BROWSER_NAMES]
    return next((path for name in candidates if name and (path := shutil.which(name))), None)


BROWSER = find_browser()
NO_BROWSER = "no Chromium or Chrome found (apt-get install chromium, or set CHROMIUM to the browser's path)"
# CI installs Chromium (.ci/run), so there a missing browser fails the test instead of skipping it.
pytestmark = pytest.mark.skipif(BROWSER is None and not os.environ.get("CI"), reason=NO_BROWSER)


class DevTools:
    """The few Chrome DevTools Protocol calls the test needs, over one page's WebSocket."""

    def __init__(self, connection: Any):
        self.connection = connection
        self.last_id = 0

    def send(self, method: str, **params: Any) -> dict:
        self.last_id += 1
        self.connection.send(json.dumps({"id": self.last_id, "method": method, "params": params}))
        while True:  # skip events and answers to nothing we asked
            message = json.loads(self.connection.recv(timeout=TIMEOUT))
            if message.get("id") == self.last_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = TIMEOUT) -> Any:
        """Poll `expression` until it is truthy; fail naming `what` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"Timed out after {timeout:.0f} s waiting for {what}.")

    def click(self, selector: str) -> None:
        """A real left click (mouse events at the element's centre), as a user would."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).scrollIntoView({{block: 'nearest'}})")
        left, top, right, bottom = self.box(selector)
        for event in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent",
                type=event,
                x=(left + right) / 2,
                y=(top + bottom) / 2,
                button="left",
                clickCount=1,
            )

    def box(self, selector: str) -> list[float]:
        """The first element matching `selector`: [left, top, right, bottom] in CSS pixels of the viewport."""
        return self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return [r.left, r.top, r.right, r.bottom]; })()"
        )

    def screenshot(self) -> Image.Image:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        return Image.open(io.BytesIO(base64.b64decode(data)))


@pytest.fixture
def page(tmp_path) -> Iterator[DevTools]:
    """A headless Chromium with a blank page, closed after the test."""
    assert BROWSER is not None, NO_BROWSER
    profile = tmp_path / "profile"
    browser = subprocess.Popen(
        [BROWSER, *BROWSER_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT
        while not (port_file.is_file() and port_file.read_text().strip()):
            assert browser.poll() is None, f"Chromium exited with {browser.returncode}"
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=TIMEOUT) as response:
            targets = json.load(response)
        page_url = next(target["webSocketDebuggerUrl"] for target in targets if target["type"] == "page")
        with websockets_client.connect(page_url, max_size=None, open_timeout=TIMEOUT) as connection:
            yield DevTools(connection)
    finally:
        browser.kill()
        browser.wait(timeout=TIMEOUT)


def test_generate_in_the_browser(page, tmp_path):
    app = load_app()
    demo = app.build_demo(save_tiny_export(tmp_path / "model", num_classes=10))
    with served(demo) as url:
        page.send("Page.navigate", url=url)
        page.wait_for("document.querySelector('#generate') !== null", "the Generate button")
        assert "No model loaded" not in page.evaluate("document.querySelector('#status').innerText")
        page.click("#generate")
        num_images = page.wait_for(
            "(() => { const images = [...document.querySelectorAll('#gallery img')];"
            " return images.length >= 16 && images.every(i => i.complete && i.naturalWidth > 0)"
            " && images.length; })()",
            "16 images in the gallery",
        )
        page.wait_for("document.querySelector('#timing').innerText.includes('ms')", "the timing")
        widths = page.evaluate("[...document.querySelectorAll('#gallery img')].map(i => i.naturalWidth)")
        gallery_box, first_image_box = (page.box(selector) for selector in ("#gallery", "#gallery img"))
        scale = page.evaluate("window.devicePixelRatio")
        screenshot = page.screenshot()
    path = tmp_path / "space.png"
    screenshot.save(path)
    print(f"screenshot: {path}")

    assert num_images >= 16 and set(widths) == {TILE}
    pixels = screenshot.convert("L")
    gallery, first_image = (
        np.asarray(pixels.crop([round(v * scale) for v in box]), dtype=np.float32)
        for box in (gallery_box, first_image_box)
    )
    assert gallery.size and gallery.std() > 20, f"the gallery looks blank (pixel std {gallery.std():.1f})"
    assert first_image.size and first_image.std() > 5, (
        f"the first image is flat (std {first_image.std():.1f})"
    )
