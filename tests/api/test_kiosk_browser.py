"""The kiosk page in a real headless Chromium: shows the basket, answers a prompt, updates live.

Needs Debian's ``chromium`` and ``chromium-driver`` packages (``/usr/bin/chromium``,
``/usr/bin/chromedriver``) and the ``selenium`` package. Without them the test
is skipped, unless ``CARTOS_REQUIRE_BROWSER`` is set (CI sets it), when it fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cartos.api.server import ApiServer
from cartos.api.store_view import StoreView
from cartos.basket.events import ItemAdded, PromptOpened
from tests.api.conftest import PROMPT_ID, recorded_prompt

CHROMIUM = os.environ.get("CARTOS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CARTOS_CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT_S = 10.0


def _missing_browser() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed"
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            return f"{path} not found (apt-get install chromium chromium-driver)"
    return None


@pytest.fixture()
def browser() -> Iterator[Any]:
    missing = _missing_browser()
    if missing is not None:
        if os.environ.get("CARTOS_REQUIRE_BROWSER"):
            pytest.fail(f"CARTOS_REQUIRE_BROWSER is set but {missing}")
        pytest.skip(f"headless browser unavailable: {missing}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",  # CI containers run as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1024,768",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def test_kiosk_shows_basket_answers_prompt_and_follows_live_updates(
    browser: Any, cart: StoreView, basket_path: Path
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # Every basket event re-renders the rows, so elements are looked up afresh each poll.
    wait = WebDriverWait(browser, WAIT_S, ignored_exceptions=[StaleElementReferenceException])

    def shows(css: str, text: str) -> None:
        def matches(driver: Any) -> bool:
            found = driver.find_elements(By.CSS_SELECTOR, css)
            return bool(found) and found[0].is_displayed() and found[0].text == text

        wait.until(matches, f"{css} never showed {text!r}")

    def attribute_is(css: str, name: str, value: str) -> None:
        wait.until(
            lambda d: d.find_element(By.CSS_SELECTOR, css).get_attribute(name) == value,
            f"{css} never had {name}={value!r}",
        )

    with ApiServer(cart, port=0) as server:
        browser.get(f"{server.url}/")

        shows('tr[data-sku="milk-1l"] .qty', "2")
        shows("#total", "2.58")
        attribute_is("#prompt", "data-prompt-id", PROMPT_ID)
        shows("#prompt-question", "Which milk did you add?")
        attribute_is("#connection", "data-state", "live")

        browser.find_element(By.CSS_SELECTOR, 'button[data-answer="soy milk"]').click()
        wait.until(lambda d: not d.find_element(By.ID, "prompt").is_displayed())
        assert recorded_prompt(basket_path, PROMPT_ID) == ("answered", "soy milk")

        # Changes made by the runtime reach the page over the event stream alone.
        cart.apply(ItemAdded("add-tea", "tea-20", qty=3, unit_price_cents=350))
        shows('tr[data-sku="tea-20"] .qty', "3")
        shows("#total", "13.08")

        cart.apply(PromptOpened("ask-bag", "p-bag", "Do you want a bag?", ("yes", "no")))
        attribute_is("#prompt", "data-prompt-id", "p-bag")
        shows("#prompt-question", "Do you want a bag?")

        cart.publish({"type": "health", "data": {"mode": "barcode_only", "sensors": {}}})
        shows("#health", "Please scan every item.")
        console = [entry for entry in browser.get_log("browser") if entry.get("level") == "SEVERE"]
        assert console == []
