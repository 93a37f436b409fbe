"""The scorecard and the class report in headless Chromium: no console errors, no network."""

import os
import shutil

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow
SCREENSHOTS = os.environ.get("GRADER_TEST_OUTPUT", os.path.join(ROOT, "test-output"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("chromium and chromedriver are not installed (./dev test installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1000,1600", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def visit(browser, path, shot):
    import json

    browser.get_log("browser"), browser.get_log("performance")  # start clean
    browser.get("file://" + path)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    requests = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if url.split(":", 1)[0] in ("http", "https", "ws", "wss", "ftp"):  # not file:, data:, chrome: internals
                requests.append(url)
    os.makedirs(SCREENSHOTS, exist_ok=True)
    browser.save_screenshot(os.path.join(SCREENSHOTS, shot))
    return errors, requests


def test_scorecard_in_chromium(browser, graded):
    from selenium.webdriver.common.by import By

    errors, requests = visit(browser, os.path.join(graded[2], "no_softmax", "scorecard.html"), "scorecard.png")
    assert errors == [] and requests == []
    assert len(browser.find_elements(By.CSS_SELECTOR, "#checks tbody tr")) == 5
    assert browser.find_elements(By.CSS_SELECTOR, "#curves svg polyline")
    assert browser.find_elements(By.CSS_SELECTOR, "#confusion tbody tr")
    assert browser.find_elements(By.CSS_SELECTOR, "#misclassified img")
    assert "differs" in browser.find_element(By.CSS_SELECTOR, "#model tr.differs").text
    assert browser.find_element(By.ID, "notebook-link").get_attribute("href").endswith("notebook.html")


def test_class_report_in_chromium_sorts_by_score(browser, graded):
    from selenium.webdriver.common.by import By

    errors, requests = visit(browser, os.path.join(graded[2], "index.html"), "index.png")
    assert errors == [] and requests == []
    assert browser.find_elements(By.CSS_SELECTOR, "#failures tbody tr")
    browser.find_element(By.CSS_SELECTOR, "#submissions th:nth-child(2)").click()
    scores = [float(td.get_attribute("data-value")) for td in browser.find_elements(By.CSS_SELECTOR, "#submissions tbody td:nth-child(2)")]
    assert scores == sorted(scores, reverse=True) and scores[0] == 100
