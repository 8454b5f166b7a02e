"""
Make the console's pictures in C{docs/}: the fleet, a charger with its
history and a Reset form, a command's answer, and the sign-in prompt.

    .venv/bin/python -m tests.browser.screenshots

Runs a gateway and three simulated chargers on loopback for about a minute.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.browser.support import browser, browser_missing, gateway, simulator, wait_for

DOCS = Path(__file__).resolve().parents[2] / "docs"


def main() -> int:
    missing = browser_missing()
    if missing:
        print(missing, file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp, gateway(Path(tmp)) as port, simulator(port, chargers=3, duration=120, rate=6), browser() as driver:
        base = f"http://127.0.0.1:{port}/console/"
        driver.get(base)
        wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#fleet-rows tr")) == 3, what="three chargers")
        time.sleep(3)  # let a few status notifications land
        driver.save_screenshot(str(DOCS / "console-fleet.png"))
        driver.find_element(By.LINK_TEXT, "SIM1").click()
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#history li"), what="history")
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#frames li"), what="live frames")
        Select(driver.find_element(By.ID, "action")).select_by_value("Reset")
        Select(driver.find_element(By.CSS_SELECTOR, "#fields select")).select_by_value("Soft")
        driver.find_element(By.ID, "send").click()
        wait_for(lambda: "CALLRESULT" in driver.find_element(By.ID, "command-result").text, what="Reset answered")
        time.sleep(1)
        driver.save_screenshot(str(DOCS / "console-charger.png"))
        driver.execute_script("document.getElementById('history-title').scrollIntoView()")
        time.sleep(0.5)
        driver.save_screenshot(str(DOCS / "console-history.png"))
        driver.execute_script("window.scrollTo(0, 0)")
        Select(driver.find_element(By.ID, "action")).select_by_value("SetChargingProfile")
        driver.find_element(By.ID, "send").click()
        driver.execute_script("document.getElementById('command-form').scrollIntoView()")
        driver.save_screenshot(str(DOCS / "console-form.png"))
    with tempfile.TemporaryDirectory() as tmp, gateway(Path(tmp), ADMIN_API_TOKEN="secret-token-for-pictures") as port, browser() as driver:
        driver.get(f"http://127.0.0.1:{port}/console/")
        wait_for(lambda: driver.find_element(By.ID, "login").is_displayed(), what="sign-in prompt")
        driver.save_screenshot(str(DOCS / "console-login.png"))
    print("wrote", ", ".join(sorted(p.name for p in DOCS.glob("console-*.png"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
