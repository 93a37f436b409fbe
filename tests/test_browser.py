"""The scorecard, the class report and the notebook in headless Chromium: no console errors,
no network, no Content-Security-Policy violation; the policy really blocks what it should."""

import os

import pytest

from conftest import ROOT, attempt, chromium

pytestmark = pytest.mark.slow
SCREENSHOTS = os.environ.get("GRADER_TEST_OUTPUT", os.path.join(ROOT, "test-output"))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory.mktemp("chromium"))
    yield driver
    driver.quit()


def visit(browser, path, shot):
    import json

    browser.get_log("browser"), browser.get_log("performance")  # start clean
    browser.get("file://" + path)
    log = browser.get_log("browser")
    errors = [e for e in log if e["level"] == "SEVERE" or "Content Security Policy" in e["message"]]
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

    errors, requests = visit(browser, os.path.join(attempt(graded[2], "no_softmax"), "scorecard.html"), "scorecard.png")
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
    browser.find_element(By.CSS_SELECTOR, "#submissions th:nth-child(4)").click()
    scores = [float(td.get_attribute("data-value")) for td in browser.find_elements(By.CSS_SELECTOR, "#submissions tbody td:nth-child(4)")]
    assert scores == sorted(scores, reverse=True) and scores[0] == 100


def test_notebook_in_chromium_renders_markdown_headings(browser, graded):
    from selenium.webdriver.common.by import By

    errors, requests = visit(browser, os.path.join(attempt(graded[2], "no_softmax"), "notebook.html"), "notebook.png")
    assert errors == [] and requests == []
    headings = [h.text for h in browser.find_elements(By.CSS_SELECTOR, ".notebook h2")]
    assert any(h.startswith("Model [WORK REQUIRED]") for h in headings) and any(h.startswith("Training") for h in headings)
    assert "<h2" not in browser.find_element(By.CSS_SELECTOR, ".notebook").text  # markup rendered, not shown as text
    assert browser.find_elements(By.CSS_SELECTOR, ".notebook .highlight span")


def test_the_policy_blocks_an_injected_script_and_remote_image(browser, graded, tmp_path):
    """A page with the grader's policy and something the policy must stop: an inline
    script that is not the report's own, and an image from the network."""
    from selenium.webdriver.common.by import By

    page = open(os.path.join(graded[2], "index.html"), encoding="utf-8").read()
    injected = '<script>document.title = "injected ran";</script><img id="remote" src="https://grader.invalid/x.png"></body>'
    path = tmp_path / "index.html"
    path.write_text(page.replace("</body>", injected), encoding="utf-8")
    errors, _ = visit(browser, str(path), "index-injected.png")  # DevTools lists the image's request, then its refusal
    violations = " ".join(e["message"] for e in errors if "Content Security Policy" in e["message"])
    assert browser.title != "injected ran" and "script-src" in violations and "img-src" in violations
    assert browser.execute_script("return document.getElementById('remote').naturalWidth") == 0
    browser.find_element(By.CSS_SELECTOR, "#submissions th:nth-child(4)").click()  # the report's own script still runs
    scores = [float(td.get_attribute("data-value")) for td in browser.find_elements(By.CSS_SELECTOR, "#submissions tbody td:nth-child(4)")]
    assert scores == sorted(scores, reverse=True)
