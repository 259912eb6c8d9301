"""Drives the web console in headless Chromium (selenium + chromium-driver), for
tests/grpc/console.rs: enters the API key, finds the collection listed, searches by a document
id at the first and the last budget of the slider, checks the hits, the stage statistics and
the bench plot, and saves a PNG screenshot of each step. Prints one JSON line of what it saw.

    python drive.py --url http://127.0.0.1:PORT --key KEY --collection C --doc-id ID --out DIR
"""

import argparse
import json
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--collection", required=True)
    p.add_argument("--doc-id", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--driver", default="/usr/bin/chromedriver")
    a = p.parse_args()

    opts = Options()
    opts.binary_location = a.chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1100"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(a.driver), options=opts)
    seen = {"screenshots": [], "budgets": [], "hits": [], "first_hit": []}
    try:
        wait = WebDriverWait(driver, 20)
        driver.get(a.url + "/")
        # The server has a key: the page asks for it.
        wait.until(lambda d: d.find_element(By.ID, "auth").is_displayed())
        shot(driver, a.out, "1-key.png", seen)
        driver.find_element(By.ID, "key").send_keys(a.key)
        driver.find_element(By.ID, "key-submit").click()
        row = f'#collections tbody tr[data-name="{a.collection}"]'
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
        assert not driver.find_element(By.ID, "auth").is_displayed(), "key form still shown"
        driver.find_element(By.CSS_SELECTOR, row).click()
        wait.until(lambda d: d.find_element(By.ID, "playground").is_displayed())
        shot(driver, a.out, "2-collections.png", seen)

        driver.find_element(By.ID, "query-id").send_keys(a.doc_id)
        slider = driver.find_element(By.ID, "budget")
        last = int(slider.get_attribute("max"))
        assert last >= 1, f"one budget on the slider ({last + 1})"
        for i, name in ((0, "3-first-budget.png"), (last, "4-last-budget.png")):
            driver.execute_script(
                "const s = arguments[0]; s.value = String(arguments[1]);"
                "s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change'));",
                slider, i)
            label = driver.find_element(By.ID, "budget-label").text
            wait.until(lambda d: d.find_element(By.ID, "hits").get_attribute("data-budget") == label)
            rows = driver.find_elements(By.CSS_SELECTOR, "#hits tbody tr")
            stages = driver.find_elements(By.CSS_SELECTOR, "#stages tbody tr")
            assert rows, f"no hits at {label}"
            assert stages, f"no stage statistics at {label}"
            seen["budgets"].append(label)
            seen["hits"].append(len(rows))
            seen["first_hit"].append(rows[0].find_elements(By.TAG_NAME, "td")[1].text)
            shot(driver, a.out, name, seen)
        # The bench plot, fetched with the key.
        wait.until(lambda d: d.execute_script(
            "const i = document.getElementById('plot-img'); return i && i.complete && i.naturalWidth > 0;"))
        seen["plot"] = True
        shot(driver, a.out, "5-plot.png", seen)
        # The key stays in the tab: sessionStorage, not a cookie.
        seen["cookies"] = len(driver.get_cookies())
    finally:
        driver.quit()
    print(json.dumps(seen))


def shot(driver, out, name, seen):
    path = os.path.join(out, name)
    if name == "5-plot.png":
        driver.execute_script("document.getElementById('plot').scrollIntoView();")
    assert driver.save_screenshot(path), path
    seen["screenshots"].append(path)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"console check failed: {e}", file=sys.stderr)
        sys.exit(1)
