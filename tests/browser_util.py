"""Headless Chromium for the browser tests (mgs-label's page and the web view), through
Debian's chromedriver; a machine without them fails the test loudly, unless MGS_NO_BROWSER=1
says to skip those tests on purpose."""

from __future__ import annotations

import shutil
from typing import Any

import pytest


def chromium(width: int, height: int, tests: str) -> Any:
    """A headless browser window of `width` x `height`; below 500 px wide (narrower than a
    desktop window can be) a phone's screen is emulated."""
    from selenium import webdriver

    driver_path = shutil.which("chromedriver")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if not driver_path or not binary:
        pytest.fail(f"chromium and chromedriver are needed for {tests}: apt-get install -y "
                    "chromium chromium-driver (scripts/test does), or set MGS_NO_BROWSER=1 to "
                    "skip them on purpose")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=driver_path))
    if width < 500:
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": True})
    return driver
