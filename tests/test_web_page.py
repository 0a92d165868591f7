"""The live page in a real headless Chromium (Debian's `chromium` and `chromium-driver`, driven by selenium): fill
the form, press Generate, wait for the last step, and check that the page shows the texts the API returns for the
same seed, that every step can be scrubbed back to, and that a bad request shows the server's error.

Run as a script, the same code takes the README's screenshot with a trained model:

    python tests/test_web_page.py --model runs/e2e-tiny/model --output docs/watch-live.png
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import ServerThread, saved_web_model

pytest.importorskip("selenium")
pytest.importorskip("fastapi")

from textdiff.serving import DecodeService, ServerLimits, create_app


def chromium():
    """A headless Chromium through the system's chromedriver (no driver download: this machine is offline)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if binary is None or driver is None:
        message = "no chromium/chromedriver on PATH: apt install chromium chromium-driver"
        if os.environ.get("CI"):
            raise RuntimeError(message)  # CI installs them (.ci/run): a missing browser must fail there
        pytest.skip(message)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1360,1000", "--force-device-scale-factor=1"):  # fmt: skip
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)


def fill_form(browser, request: dict) -> None:
    """Set the page's inputs from an API request body (the fields the form has)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    def type_into(element_id: str, value) -> None:
        element = browser.find_element(By.ID, element_id)
        element.clear()
        element.send_keys(str(value))

    if request.get("mode") == "edit":
        browser.find_element(By.ID, "mode-edit").click()
        type_into("text", request["text"])
        browser.execute_script("document.getElementById('strength').value = arguments[0];", request["strength"])
    elif request.get("prompt"):
        type_into("prompt", request["prompt"])
    for key, element_id in (("seed", "seed"), ("num_samples", "samples"), ("steps", "steps"),
                            ("x0_temperature", "temperature")):  # fmt: skip
        if key in request:
            type_into(element_id, request[key])
    if "sampler" in request:
        Select(browser.find_element(By.ID, "sampler")).select_by_value(request["sampler"])
    controls = request.get("controls", {})
    for field, value in controls.get("field_value", {}).items():
        Select(browser.find_element(By.CSS_SELECTOR, f"#fields select[data-field='{field}']")).select_by_value(value)
    if "length" in controls:
        type_into("length", controls["length"])
    if "pos" in controls:
        type_into("pos", " ".join(controls["pos"]))
    if "mentions" in controls:
        type_into("mentions", controls["mentions"])


def run_page(browser, url: str, request: dict, screenshot: Path | None = None, at: float = 0.4) -> dict:
    """Open the page, fill it from `request`, press Generate and wait for the last step.

    With `screenshot`, save the page at step ⌈at·S⌉: while it decodes if the browser catches it there, else scrubbed
    back to that step with the slider once it is done. Returns the final texts, the frames (steps + the final
    text), the status line and where the screenshot was taken."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url + "/")
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    fill_form(browser, request)
    browser.find_element(By.ID, "generate").click()
    taken = None
    deadline = time.monotonic() + 120
    while (state := browser.find_element(By.TAG_NAME, "body").get_attribute("data-state")) != "done":
        if state == "error":
            return {"error": browser.find_element(By.ID, "error").text}
        step = browser.find_element(By.ID, "status").get_attribute("data-step")
        frames = browser.execute_script("return run.frames.length ? run.frames[0].num_steps : 0;")
        if screenshot and taken is None and step and step != "final" and frames and int(step) + 1 >= at * frames:
            browser.execute_script("window.scrollTo(0, 0);")
            browser.save_screenshot(str(screenshot))
            taken = f"mid-decode, step {int(step) + 1} of {frames}"
        assert time.monotonic() < deadline, "the page never reached its last step"
        time.sleep(0.01)
    texts = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#texts li")]
    frames = int(browser.find_element(By.ID, "slider").get_attribute("max")) + 1
    final_status = browser.find_element(By.ID, "status").text
    final_words = [[cell.text for cell in row.find_elements(By.CSS_SELECTOR, ".word")]
                   for row in browser.find_elements(By.CSS_SELECTOR, "#rows .row")]  # fmt: skip
    if screenshot and taken is None:
        step = max(0, round(at * (frames - 1)) - 1)
        browser.execute_script(
            "const s = document.getElementById('slider'); s.value = arguments[0];s.dispatchEvent(new Event('input'));",
            step,
        )
        browser.execute_script("window.scrollTo(0, 0);")
        browser.save_screenshot(str(screenshot))
        taken = f"scrubbed back to step {step + 1} of {frames - 1}"
    scrubbed = browser.find_element(By.ID, "status").text
    return {
        "texts": texts,
        "frames": frames,
        "status": final_status,
        "words": final_words,
        "scrubbed": scrubbed,
        "taken": taken,
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    directory = saved_web_model(tmp_path_factory.mktemp("web-page-model"))
    service = DecodeService.from_pretrained(str(directory), ServerLimits())
    with ServerThread(create_app(service)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def api_texts(url: str, request: dict) -> list[str]:
    from test_serving import post

    status, answer = post(url, "/api/generate", request)
    assert status == 200, answer
    return answer["texts"]


def test_the_page_shows_the_texts_the_api_returns(served, browser, tmp_path):
    request = {"prompt": "The Eagle", "seed": 5, "num_samples": 2, "steps": 15, "x0_temperature": 0.5,
               "controls": {"field_value": {"food": "Chinese"}}}  # fmt: skip
    shot = tmp_path / "page.png"
    page = run_page(browser, served, request, screenshot=shot)
    assert page["texts"] == api_texts(served, request)
    assert page["frames"] == 15 + 1 and page["status"].startswith("final text")
    assert all(row[:3] == ["[START]", "The", "Eagle"] for row in page["words"]) and len(page["words"]) == 2
    assert page["scrubbed"].startswith(("step", "final"))  # the slider reaches back into the trajectory
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_page_edits_and_scrubs(served, browser):
    request = {"mode": "edit", "text": "The Eagle serves Italian food .", "strength": 0.5, "seed": 3}
    page = run_page(browser, served, request)
    assert page["texts"] == api_texts(served, request)
    assert 1 < page["frames"] <= 20  # the steps below the edit's noise level, and the final text


def test_the_page_shows_the_servers_error(served, browser):
    page = run_page(browser, served, {"prompt": "The Zorblax", "seed": 1})
    assert "Zorblax" in page["error"] and "vocabulary" in page["error"]


def main() -> None:
    """The README's screenshot: serve a trained model and photograph the page mid-decode."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--output", default="docs/watch-live.png")
    parser.add_argument("--request", default='{"num_samples": 4, "seed": 3, "controls": {"mentions": "riverside"}}')
    parser.add_argument("--at", type=float, default=0.4, help="share of the steps at which to photograph")
    args = parser.parse_args()
    import json

    service = DecodeService.from_pretrained(args.model)
    with ServerThread(create_app(service)) as url:
        browser = chromium()
        try:
            page = run_page(browser, url, json.loads(args.request), Path(args.output), args.at)
        finally:
            browser.quit()
    print(f"{args.output}: {page['taken']}")
    for text in page.get("texts", [page.get("error")]):
        print(" ", text)


if __name__ == "__main__":
    main()
