"""`genie serve` in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`, driven
by selenium; nothing is downloaded) loads the page, key presses step the shipped dream, the real game
toggles off, and the test takes the screenshot the README shows.

Set GENIE_SCREENSHOT_DIR=docs to write docs/serve.png (`make screenshots`); otherwise it goes to a
temporary directory. Skipped, saying why, where the browser or its driver is not installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
uvicorn = pytest.importorskip("uvicorn", reason="uvicorn is not installed (pip install 'genie-env[serve]')")
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip(f"no browser: install Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER} missing)",
                allow_module_level=True)  # fmt: skip

from genie_env.cli.serve import ServeArgs, build_app  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def server_url():
    """`genie serve`'s app (the shipped model and agent) on a free port, in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # the port is ours from here on: no race with another process
    server = uvicorn.Server(uvicorn.Config(build_app(ServeArgs()), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture()
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,820",
                 "--disable-gpu"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_key_presses_step_the_dream_in_a_real_browser(server_url, browser, tmp_path):
    browser.get(server_url)
    wait = WebDriverWait(browser, 30)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-status") == "ready")
    # the first frame may arrive after the page says ready: until then the <img> has no src at all
    wait.until(lambda d: (d.find_element(By.ID, "dream").get_attribute("src") or "").startswith("blob:"))
    run = browser.find_element(By.ID, "run")
    run.click()  # off: one step per key press, so the count is exact
    assert not run.is_selected()
    dream = browser.find_element(By.ID, "dream")
    body = browser.find_element(By.TAG_NAME, "body")
    settled = None  # the page ran at 15 steps/s until the click: wait for its last step's frame
    while (now := (body.get_attribute("data-step"), dream.get_attribute("data-step"))) != settled:
        settled = now
        time.sleep(0.3)
    start, first_src = int(settled[0]), dream.get_attribute("src")
    for n in range(start + 1, start + 9):
        body.send_keys(Keys.ARROW_RIGHT)
        wait.until(lambda d, n=n: d.find_element(By.ID, "dream").get_attribute("data-step") == str(n))
    assert dream.get_attribute("src") != first_src  # a new dream frame arrived for each press
    assert browser.find_element(By.ID, "action").text == "RIGHT (human)"
    assert "dB" in browser.find_element(By.ID, "psnr").text or "over" in browser.find_element(By.ID, "psnr").text
    assert browser.find_element(By.ID, "real-screen").is_displayed()
    assert not browser.find_element(By.ID, "error").text

    shot = Path(os.environ.get("GENIE_SCREENSHOT_DIR") or tmp_path) / "serve.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

    browser.find_element(By.ID, "show-real").click()  # the real game off: its screen hides
    body.send_keys(Keys.ARROW_LEFT)
    wait.until(lambda d: d.find_element(By.ID, "dream").get_attribute("data-step") == str(start + 9))
    assert not browser.find_element(By.ID, "real-screen").is_displayed()
    assert browser.find_element(By.ID, "action").text == "LEFT (human)"
