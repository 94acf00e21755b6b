"""The result pages under /ui/, opened in a real headless Chromium (Debian's chromium
and chromedriver, driven by Selenium) against a running gateway and worker, as a
person would: the numbers shown are the JSON API's, pictures render and are not
blank, a running sweep's progress advances without reloading the page, the tables
work without JavaScript, and API keys keep each person to their own results.
Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest

from .helpers import post_job, wait_for_job, wait_until
from .test_datasets_sweeps import create_dataset, wait_for_sweep

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"

if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip(
        "the browser tests need Debian's chromium and chromium-driver (.ci/run installs them)",
        allow_module_level=True,
    )


def open_browser(javascript: bool = True):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1800",
    ):
        options.add_argument(flag)
    if not javascript:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


@pytest.fixture
def browser():
    driver = open_browser()
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def shows_a_picture(driver, element) -> bool:
    """The image loaded and what it shows on screen is not one flat colour."""
    import imagecodecs

    loaded = driver.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", element
    )
    if not loaded:
        return False
    pixels = imagecodecs.png_decode(element.screenshot_as_png)
    return float(np.asarray(pixels, dtype=np.float64).std()) > 5.0


def number_cells(driver, selector: str) -> dict[str, float | None]:
    """The numbers the cells under `selector` hold (their data-value), by data-key;
    cells holding text are left out."""
    from selenium.webdriver.common.by import By

    found: dict[str, float | None] = {}
    for cell in driver.find_elements(By.CSS_SELECTOR, selector):
        raw = cell.get_attribute("data-value")
        try:
            found[cell.get_attribute("data-key")] = None if raw == "None" else float(raw)
        except ValueError:
            continue
    return found


@pytest.fixture(scope="module")
def finished_sweep(service, phantoms):
    created = create_dataset(service.base_url, phantoms, data={"name": "pages"})
    dataset = created.json()
    sweep = httpx.post(
        f"{service.base_url}/v1/sweeps",
        json={
            "dataset": dataset["id"],
            "grid": ["zfp:rate=4", "zfp:tolerance=500", "sz3:tolerance=300"],
        },
        timeout=60,
    ).json()
    status = wait_for_sweep(service.base_url, sweep["id"])
    assert status["progress"]["state"] == "finished"
    return sweep


def test_the_sweep_page_shows_the_api_numbers_tables_and_figures(service, browser, finished_sweep):
    from selenium.webdriver.common.by import By

    sweep_url = finished_sweep["url"]
    browser.get(f"{service.base_url}/ui/sweeps/{finished_sweep['id']}")
    screenshot(browser, "sweep")
    cases = httpx.get(f"{sweep_url}/cases", timeout=30).json()["cases"]
    rows = browser.find_elements(By.CSS_SELECTOR, "#cases tbody tr")
    assert len(rows) == len(cases)
    by_job = {c["job_id"]: c for c in cases}
    for row in rows:
        case = by_job[row.get_attribute("data-job")]
        for key, value in number_cells(row, "td[data-key]").items():
            assert value == case[key], (key, value, case[key])  # every digit

    # The paper's tables: one pair per codec group, the baseline row first, each
    # setting's mean Dice as in the JSON tables.
    tables = httpx.get(f"{sweep_url}/tables", timeout=30).json()["settings"]
    paper = browser.find_elements(By.CSS_SELECTOR, "table.paper")
    assert len(paper) == 6  # fixed rate, tolerance, SZ3: compression and segmentation
    segmentation = paper[1]
    header = [th.text for th in segmentation.find_elements(By.CSS_SELECTOR, "thead th")]
    dice_column = header.index("Mean Dice")
    for tr in segmentation.find_elements(By.CSS_SELECTOR, "tbody tr"):
        row = next(r for r in tables if r["setting"] == tr.get_attribute("data-setting"))
        shown = tr.find_elements(By.TAG_NAME, "td")[dice_column].text
        assert shown == f"{row['dice_mean']:.5f}"

    figures = browser.find_elements(By.CSS_SELECTOR, ".figures img")
    assert {f.get_attribute("id") for f in figures} >= {"figure-fixed_rate", "figure-dice_vs_cr"}
    for figure in figures:
        assert shows_a_picture(browser, figure), figure.get_attribute("id")

    # Sorting: click "Dice" twice; the rows follow the numbers, then reversed.
    dice_header = browser.find_elements(By.CSS_SELECTOR, "#cases thead th")[5]
    for descending in (False, True):
        dice_header.click()
        shown = [
            float(v)
            for v in (
                td.get_attribute("data-value")
                for td in browser.find_elements(By.CSS_SELECTOR, "#cases td[data-key='dice']")
            )
        ]
        assert shown == sorted(shown, reverse=descending)


def test_the_tables_work_without_javascript(service, finished_sweep):
    from selenium.webdriver.common.by import By

    driver = open_browser(javascript=False)
    try:
        driver.get(f"{service.base_url}/ui/sweeps/{finished_sweep['id']}")
        screenshot(driver, "sweep-without-javascript")
        rows = driver.find_elements(By.CSS_SELECTOR, "#cases tbody tr")
        cases = httpx.get(f"{finished_sweep['url']}/cases", timeout=30).json()["cases"]
        assert len(rows) == len(cases)
        assert len(driver.find_elements(By.CSS_SELECTOR, "table.paper tbody tr")) >= 6
        # The job links are plain links.
        link = rows[1].find_element(By.CSS_SELECTOR, "a")
        link.click()
        assert "/ui/jobs/" in driver.current_url
        assert driver.find_element(By.ID, "state").text == "finished"
    finally:
        driver.quit()


def test_the_job_page_shows_metrics_pictures_and_downloads(service, browser, phantoms):
    from selenium.webdriver.common.by import By

    image, truth = phantoms[0]
    created = post_job(service.base_url, image, truth, codec="zfp:rate=2", agreement="true").json()
    job = wait_for_job(service.base_url, created["id"])
    assert job["state"] == "finished"
    browser.get(f"{service.base_url}/ui/jobs/{job['id']}")
    screenshot(browser, "job")
    for table, part in (
        ("#compression", "compression"),
        ("#segmentation", "segmentation"),
        ("#agreement", "agreement"),
        ("#stage-seconds", "stage_seconds"),
    ):
        shown = number_cells(browser, f"{table} td[data-key]")
        expected = {
            k: v for k, v in job[part].items() if isinstance(v, int | float) and v is not None
        }
        assert shown, table
        for key, value in shown.items():
            if key in expected:
                assert value == pytest.approx(expected[key], rel=1e-12, abs=0), (table, key)
    for view in ("axial", "coronal", "sagittal"):
        for kind in ("mask", "difference"):
            picture = browser.find_element(By.ID, f"{kind}-{view}")
            assert shows_a_picture(browser, picture), f"{kind}-{view}"
    # The downloads are the API's files.
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    for link, api in (("download-mask", "mask"), ("download-blob", "blob")):
        href = browser.find_element(By.ID, link).get_attribute("href")
        ours = httpx.get(href, cookies=cookies, timeout=30).content
        assert ours == httpx.get(f"{job['url']}/{api}", timeout=30).content
    csv_text = httpx.get(
        browser.find_element(By.ID, "download-csv").get_attribute("href"), timeout=30
    ).text
    header, values = csv_text.strip().split("\n")
    row = dict(zip(header.split(","), values.split(","), strict=True))
    assert float(row["segmentation.dice"]) == job["segmentation"]["dice"]
    assert float(row["agreement.dice"]) == job["agreement"]["dice"]


def test_a_plain_upload_shows_its_difference_too(service, browser, phantoms):
    """The original of an upload is not kept, but its difference projections are,
    written where it was compressed."""
    from selenium.webdriver.common.by import By

    image, _ = phantoms[1]
    job_id = post_job(service.base_url, image, codec="zfp:rate=4").json()["id"]
    assert wait_for_job(service.base_url, job_id)["state"] == "finished"
    browser.get(f"{service.base_url}/ui/jobs/{job_id}")
    for view in ("axial", "coronal", "sagittal"):
        for kind in ("mask", "difference"):
            assert shows_a_picture(browser, browser.find_element(By.ID, f"{kind}-{view}"))
    assert not browser.find_elements(By.ID, "no-difference")


def test_a_running_sweep_advances_without_reloading(private_stack, slow_phantom, browser):
    """No worker at first: the page shows 0 done; a worker starts, and the progress bar
    moves while the page stays the same page (a marker set in it survives)."""
    from selenium.webdriver.common.by import By

    stack = private_stack
    stack.start_gateway()
    dataset = create_dataset(stack.base_url, [slow_phantom]).json()
    grid = [f"zfp:rate={r}" for r in (1, 2, 3, 4, 6, 8, 12, 16)]
    sweep = httpx.post(
        f"{stack.base_url}/v1/sweeps", json={"dataset": dataset["id"], "grid": grid}, timeout=60
    ).json()
    browser.get(f"{stack.base_url}/ui/sweeps/{sweep['id']}")
    bar = browser.find_element(By.ID, "progress-bar")
    assert bar.get_attribute("value") == "0"
    browser.execute_script("window.stillTheSamePage = true")
    stack.start_worker()

    def advanced():
        try:
            same = browser.execute_script("return window.stillTheSamePage === true")
            value = float(browser.find_element(By.ID, "progress-bar").get_attribute("value"))
        except Exception:  # the page reloaded as the sweep ended: too late to tell
            return None
        return (same, value) if value > 0 else None

    same, value = wait_until(advanced, 120, "the progress bar to move", interval_s=0.2)
    screenshot(browser, "sweep-running")
    assert same, "the page reloaded to show progress"
    assert 0 < value < len(grid) + 1
    assert "jobs done" in browser.find_element(By.ID, "progress-text").text
    status = wait_for_sweep(stack.base_url, sweep["id"])
    assert status["progress"]["state"] == "finished"
    # Once it ends the page shows the finished sweep.
    wait_until(
        lambda: browser.find_element(By.ID, "progress-state").text == "finished",
        30,
        "the page to show the end",
    )


def test_the_tuning_page_and_the_index(service, browser, finished_sweep, phantoms):
    from selenium.webdriver.common.by import By

    dataset = httpx.get(f"{finished_sweep['links']['self']}", timeout=30).json()["dataset"]
    created = httpx.post(
        f"{service.base_url}/v1/tunings",
        json={"dataset": dataset, "codec": "zfp:rate", "range": [1, 4], "max_dice_loss": 0.01},
        timeout=60,
    ).json()
    tuning = wait_until(
        lambda: (
            t
            if (t := httpx.get(created["url"], timeout=30).json())["progress"]["state"]
            == "finished"
            else None
        ),
        300,
        "the tuning to end",
        interval_s=0.5,
    )
    browser.get(f"{service.base_url}/ui/tunings/{created['id']}")
    screenshot(browser, "tuning")
    answer = browser.find_element(By.ID, "answer").text
    if tuning["answer"]["state"] == "finished":
        assert tuning["answer"]["setting"] in answer
        shown = number_cells(browser, "#answer span[data-key]")
        assert shown["cr_pooled"] == tuning["answer"]["cr_pooled"]
    rows = browser.find_elements(By.CSS_SELECTOR, "#volumes tbody tr")
    assert len(rows) == len(tuning["volumes"])
    for row, search in zip(rows, tuning["volumes"], strict=True):
        steps = row.find_elements(By.CSS_SELECTOR, "ol.path li")
        assert [s.find_element(By.TAG_NAME, "a").text for s in steps] == [
            p["setting"] for p in search["path"]
        ]

    browser.get(f"{service.base_url}/ui/")
    screenshot(browser, "index")
    links = {a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "main a")}
    assert f"{service.base_url}/ui/sweeps/{finished_sweep['id']}" in links
    assert f"{service.base_url}/ui/tunings/{created['id']}" in links
    assert any("/ui/jobs/" in link for link in links)


def test_with_api_keys_a_person_signs_in_and_sees_only_their_own(service, phantoms):
    from selenium.webdriver.common.by import By

    keyed = service.start_gateway({"VESSELZIP_API_KEYS": "key-alice, key-bob"})
    alice, bob = {"X-API-Key": "key-alice"}, {"X-API-Key": "key-bob"}
    image, truth = phantoms[2]
    mine = post_job(keyed, image, truth, codec="zfp:rate=4", headers=alice).json()["id"]
    theirs = post_job(keyed, image, truth, codec="zfp:rate=8", headers=bob).json()["id"]
    wait_for_job(keyed, mine, headers=alice)
    wait_for_job(keyed, theirs, headers=bob)

    driver = open_browser()
    try:
        driver.get(f"{keyed}/ui/jobs/{mine}")
        assert "/ui/login" in driver.current_url  # not signed in
        form = driver.find_element(By.ID, "login")
        form.find_element(By.NAME, "api_key").send_keys("key-mallory")
        form.submit()
        assert "not one of this service's" in driver.find_element(By.ID, "error").text
        form = driver.find_element(By.ID, "login")
        form.find_element(By.NAME, "api_key").send_keys("key-alice")
        form.submit()
        wait_until(lambda: f"/ui/jobs/{mine}" in driver.current_url, 10, "the job page")
        assert driver.find_element(By.ID, "state").text == "finished"
        screenshot(driver, "signed-in-job")
        driver.get(f"{keyed}/ui/jobs/{theirs}")
        assert "another API key" in driver.find_element(By.ID, "error").text
        driver.get(f"{keyed}/ui/")
        links = {a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "main a")}
        assert f"{keyed}/ui/jobs/{mine}" in links and f"{keyed}/ui/jobs/{theirs}" not in links
        cookie = driver.get_cookie("vesselzip_key")
        assert cookie["httpOnly"] and cookie["path"] == "/ui"
        assert driver.execute_script("return document.cookie") == ""  # scripts cannot read it
        visited = driver.execute_script("return performance.getEntries().map(e => e.name)")
        assert not any("key-alice" in url for url in [driver.current_url, *visited])
    finally:
        driver.quit()
    logs = "".join(p.read_text(errors="replace") for p in service.workdir.glob("gateway-*.log"))
    assert "key-alice" not in logs
    # Without the cookie, the pages' downloads are closed too.
    refused = httpx.get(f"{keyed}/ui/jobs/{mine}/mask", timeout=10, follow_redirects=False)
    assert refused.status_code == 303 and "/ui/login" in refused.headers["location"]
