"""Headless Chromium for the report tests: Debian's chromium + chromium-driver, driven by Selenium.

Where any of them is missing the tests skip with the reason, except in CI (CI=true),
where `.ci/run` installs them and their absence is a failure.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI

CHROMEDRIVER = Path("/usr/bin/chromedriver")


def need(condition: bool, message: str) -> None:
    """Skips (fails in CI) with `message` unless `condition`."""
    if condition:
        return
    if IN_CI:
        pytest.fail(message + "; CI must have it", pytrace=False)
    pytest.skip(message)


def chromium() -> Iterator:
    """A headless Chromium (Selenium WebDriver) that records console and network logs; quits at the end."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        need(False, "selenium is not installed (pip install selenium)")
    binary = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)
    need(binary is not None, "chromium is not installed (apt-get install chromium)")
    need(CHROMEDRIVER.exists(), f"chromedriver not found at {CHROMEDRIVER} (apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1600"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield browser
    finally:
        browser.quit()


def assert_clean_and_offline(driver) -> None:
    """No SEVERE console entry, and nothing requested but data: and file: URLs (the page itself included)."""
    severe = [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
    assert not severe, severe
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            requests.append(message["params"]["request"]["url"])
    assert requests, "the performance log recorded no request at all (not even the page)"
    assert all(url.startswith(("data:", "file:")) for url in requests), [u[:80] for u in requests]
