"""
The operator console in a real browser (headless Chromium through selenium)
against a real gateway (C{twistd -n ocpp}) and real chargers (C{ocpptw-sim}):
the fleet follows chargers connecting and disconnecting, a charger's page
shows frames live and its history, a command sent from a generated form
shows the charger's answer (and a CALLERROR explained), and a gateway with
C{ADMIN_API_TOKEN} asks for the token.
"""

from __future__ import annotations

import pytest

from tests.browser.support import (
    browser,
    gateway,
    lib_charger,
    page_errors,
    simulator,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    with gateway(tmp_path_factory.mktemp("console-gw")) as p:
        yield p


@pytest.fixture(scope="module")
def driver():
    with browser() as d:
        yield d


def rows(driver):
    """Identity -> state shown, read in one go (the table repaints as events come)."""
    return driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#fleet-rows tr')]"
        ".map(r => [r.dataset.charger, r.querySelector('.state').textContent]))")


def texts(driver, selector):
    return driver.execute_script(f"return [...document.querySelectorAll({selector!r})].map(e => e.textContent)")


def no_script_errors(driver):
    """No script error on the page (HTTP errors the test provoked are logged too, and are not script errors)."""
    errors = [e for e in page_errors(driver) if "Failed to load resource" not in e]
    assert not errors, errors


def test_the_fleet_follows_chargers_connecting_and_disconnecting(port, driver):
    from selenium.webdriver.common.by import By

    driver.get(f"http://127.0.0.1:{port}/console/")
    wait_for(lambda: driver.find_element(By.ID, "fleet").is_displayed(), what="fleet page")
    wait_for(lambda: driver.find_element(By.ID, "live-state").text == "live", what="stream open")
    assert "BRA1" not in rows(driver)
    with simulator(port, chargers=2, duration=60, prefix="BRA", rate=4):
        wait_for(lambda: rows(driver).get("BRA1") == "online" and rows(driver).get("BRA2") == "online",
                 what="both chargers online")
        assert driver.find_element(By.ID, "count-online").text == "2"
        # keyboard focus on a charger stays put while the table updates live
        link = driver.find_element(By.LINK_TEXT, "BRA1")
        driver.execute_script("arguments[0].focus()", link)
        seen = texts(driver, 'tr[data-charger="BRA1"] td:nth-of-type(4)')[0]
        wait_for(lambda: texts(driver, 'tr[data-charger="BRA1"] td:nth-of-type(4)')[0] != seen, what="last seen moves")
        assert driver.execute_script("return document.activeElement.textContent") == "BRA1"
        # search narrows the table
        driver.find_element(By.ID, "search").send_keys("BRA2")
        wait_for(lambda: list(rows(driver)) == ["BRA2"], what="search")
        driver.find_element(By.ID, "search").clear()
        driver.find_element(By.ID, "search").send_keys(" ")
    wait_for(lambda: rows(driver).get("BRA1") == "offline" and rows(driver).get("BRA2") == "offline",
             what="both chargers offline")
    assert "1:" in texts(driver, 'tr[data-charger="BRA1"] td:last-child')[0]  # the simulator's StatusNotification
    no_script_errors(driver)


def test_a_charger_page_shows_frames_live_and_sends_commands(port, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    with lib_charger(port, "BRB1"):
        driver.get(f"http://127.0.0.1:{port}/console/")
        wait_for(lambda: rows(driver).get("BRB1") == "online", what="charger online")
        driver.find_element(By.LINK_TEXT, "BRB1").click()
        wait_for(lambda: driver.find_element(By.ID, "charger").is_displayed(), what="charger page")
        assert driver.find_element(By.ID, "charger-title").text == "Charger BRB1"
        # the history: BootNotification with its answer, newest first
        wait_for(lambda: texts(driver, "#history li .answer"), what="history with answers")
        # frames appear live
        seen = len(texts(driver, "#frames > li"))
        wait_for(lambda: len(texts(driver, "#frames > li")) > seen, what="a live frame")
        # Reset from the generated form; the charger's CALLRESULT is shown
        Select(driver.find_element(By.ID, "action")).select_by_value("Reset")
        kind = driver.find_element(By.CSS_SELECTOR, "#fields select")
        label = driver.find_element(By.CSS_SELECTOR, f'label[for="{kind.get_attribute("id")}"]').text
        assert label.startswith("type") and "(required)" in label
        assert [o.text for o in Select(kind).options][1:] == ["Hard", "Soft"]
        driver.find_element(By.ID, "send").click()  # nothing chosen: not sent, the field is named
        wait_for(lambda: "type is required" in driver.find_element(By.ID, "command-result").text, what="required field")
        Select(kind).select_by_value("Soft")
        driver.find_element(By.ID, "send").click()
        result = driver.find_element(By.ID, "command-result")
        wait_for(lambda: "CALLRESULT" in result.text, what="Reset answered", shown=lambda: result.text)
        assert '"Accepted"' in result.text
        # the Reset and its answer show up among the live frames, paired
        wait_for(lambda: any("Reset" in t and "CALLRESULT" in t for t in texts(driver, "#frames > li")),
                 what="Reset live, with its answer")
        # a CALLERROR from the charger (its library does not implement GetLocalListVersion) is explained
        Select(driver.find_element(By.ID, "action")).select_by_value("GetLocalListVersion")
        driver.find_element(By.ID, "send").click()
        wait_for(lambda: "HTTP 502" in result.text, what="CALLERROR shown", shown=lambda: result.text)
        assert "The charger answered with an error: NotImplemented" in result.text
        # nested arrays and optional objects become the payload the schema asks for (valid: the gateway sends it)
        Select(driver.find_element(By.ID, "action")).select_by_value("SendLocalList")
        driver.find_element(By.NAME, "listVersion").send_keys("3")
        Select(driver.find_element(By.NAME, "updateType")).select_by_value("Full")
        driver.find_element(By.XPATH, "//button[text()='Add localAuthorizationList item']").click()
        driver.find_element(By.NAME, "localAuthorizationList[0].idTag").send_keys("TAG1")
        driver.find_element(By.XPATH, "//label[text()='include idTagInfo']").click()
        Select(driver.find_element(By.NAME, "localAuthorizationList[0].idTagInfo.status")).select_by_value("Accepted")
        driver.find_element(By.ID, "send").click()
        wait_for(lambda: "SendLocalList failed: HTTP 502" in result.text, what="SendLocalList sent", shown=lambda: result.text)
        sent = '{"listVersion":3,"localAuthorizationList":[{"idTag":"TAG1","idTagInfo":{"status":"Accepted"}}],"updateType":"Full"}'
        wait_for(lambda: any(sent in t for t in texts(driver, "#frames > li")), what="the payload as sent",
                 shown=lambda: texts(driver, "#frames > li")[:2])
        # a payload the schema refuses is not sent: 400, explained
        Select(driver.find_element(By.ID, "action")).select_by_value("ReserveNow")
        driver.find_element(By.NAME, "connectorId").send_keys("1")
        driver.find_element(By.NAME, "expiryDate").send_keys("tomorrow")
        driver.find_element(By.NAME, "idTag").send_keys("TAG1")
        driver.find_element(By.NAME, "reservationId").send_keys("9")
        driver.find_element(By.ID, "send").click()
        wait_for(lambda: "ReserveNow failed: HTTP 400" in result.text, what="invalid payload", shown=lambda: result.text)
        assert "not valid" in result.text and "expiryDate" in result.text
        # no answer within the wait: 504, explained
        Select(driver.find_element(By.ID, "action")).select_by_value("UnlockConnector")
        driver.find_element(By.NAME, "connectorId").send_keys("1")
        timeout = driver.find_element(By.ID, "call-timeout")
        timeout.clear()
        timeout.send_keys("1")
        driver.find_element(By.ID, "send").click()
        wait_for(lambda: "UnlockConnector failed: HTTP 504" in result.text, what="timeout", shown=lambda: result.text)
        assert "did not answer in time" in result.text
        # every action of the version has a form
        actions = [o.get_attribute("value") for o in Select(driver.find_element(By.ID, "action")).options]
        assert len(actions) == 26
        for action in actions:
            Select(driver.find_element(By.ID, "action")).select_by_value(action)
            assert driver.execute_script("return document.querySelector('#fields').children.length") == 1, action
    # the charger is gone: the same command is a 404, explained
    wait_for(lambda: driver.find_element(By.ID, "cp-state").text == "offline", what="charger offline")
    Select(driver.find_element(By.ID, "action")).select_by_value("ClearCache")
    driver.find_element(By.ID, "send").click()
    wait_for(lambda: "HTTP 404" in result.text, what="offline explained", shown=lambda: result.text)
    assert "not connected" in result.text
    # older history pages
    driver.find_element(By.ID, "history-newest").click()
    wait_for(lambda: "frames" in driver.find_element(By.ID, "history-status").text, what="history reloaded")
    no_script_errors(driver)


def test_a_token_protected_console_asks_for_the_token(tmp_path):
    from selenium.webdriver.common.by import By

    with gateway(tmp_path, ADMIN_API_TOKEN="correct-horse-battery") as port, browser() as driver:
        driver.get(f"http://127.0.0.1:{port}/console/")
        wait_for(lambda: driver.find_element(By.ID, "login").is_displayed(), what="sign-in prompt")
        assert not driver.find_element(By.ID, "fleet").is_displayed()
        token = driver.find_element(By.ID, "token")
        assert token.get_attribute("type") == "password"
        assert driver.find_element(By.CSS_SELECTOR, 'label[for="token"]').text == "Admin API token"
        token.send_keys("wrong")
        driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
        wait_for(lambda: "refused" in driver.find_element(By.ID, "login-error").text, what="wrong token refused")
        driver.find_element(By.ID, "token").send_keys("correct-horse-battery")
        driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
        wait_for(lambda: driver.find_element(By.ID, "fleet").is_displayed(), what="signed in")
        wait_for(lambda: driver.find_element(By.ID, "live-state").text == "live", what="stream with the token")
        assert driver.execute_script("return sessionStorage.getItem('ocpptw.adminToken')") == "correct-horse-battery"
        assert "correct-horse-battery" not in driver.current_url
        assert driver.get_cookies() == []
        driver.refresh()  # the tab keeps its token
        wait_for(lambda: driver.find_element(By.ID, "fleet").is_displayed(), what="still signed in")
        no_script_errors(driver)
