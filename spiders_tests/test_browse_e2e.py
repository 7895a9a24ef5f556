"""The browse page and the API docs in a real headless Chromium (Debian's, driven by its
chromedriver)."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from PIL import Image
from scrapy.settings import Settings
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from contentcrawl.api.app import create_app
from contentcrawl.store.sqlite import SqliteStore
from spiders_tests.recorded_mirror import POSTER_PATH, seed_mirror

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# No first-run UI, no background traffic, no GPU in CI; every host but 127.0.0.1 fails to
# resolve, so remote posters are never fetched (the tests have no network to fetch from).
CHROMIUM_FLAGS = (
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1000",
)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed (apt-get install -y chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on a seeded SQLite mirror, served by uvicorn on 127.0.0.1; its base URL."""
    root = tmp_path_factory.mktemp("browse")
    poster = root / "images" / POSTER_PATH
    poster.parent.mkdir(parents=True)
    Image.new("RGB", (40, 60), (200, 30, 30)).save(poster, "JPEG")
    store = SqliteStore(root / "store.sqlite3")
    store.open()
    seed_mirror(store)
    app = create_app(store, Settings({"IMAGES_STORE": str(root / "images")}))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        WebDriverWait(None, 20, poll_frequency=0.05).until(lambda _: server.started)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    # Every request the page makes (DevTools' Network events), to find any that leaves the site.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    # The driver is Debian's: Selenium Manager never looks for (or downloads) one.
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def wait_for(browser: WebDriver, css: str) -> None:
    WebDriverWait(browser, 10).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def requested(browser: WebDriver) -> list[tuple[str, str]]:
    """(resource type, URL) of what the browser requested since the last call; data: and blob:
    URLs, made in the page, left out."""
    found = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            params = message["params"]
            if not params["request"]["url"].startswith(("data:", "blob:")):
                found.append((params.get("type", ""), params["request"]["url"]))
    return found


def search(browser: WebDriver, site: str, words: str, kind: str = "all") -> None:
    browser.get(f"{site}/")
    box = browser.find_element(By.ID, "q")
    box.send_keys(words)
    browser.find_element(By.CSS_SELECTOR, f"#kind option[value='{kind}']").click()
    browser.find_element(By.ID, "go").click()
    wait_for(browser, "#results-movies, .group, #no-results")


def test_search_open_a_movie_and_follow_a_person(browser: WebDriver, site: str) -> None:
    search(browser, site, "fight")
    results = browser.find_elements(By.CSS_SELECTOR, "#results-movies a.result")
    assert [link.text for link in results] == ["Fight Club"]
    results[0].click()
    wait_for(browser, "h1#title")
    assert browser.find_element(By.ID, "title").text == "Fight Club"
    poster = browser.find_element(By.ID, "image")
    # The downloaded poster, served from IMAGES_STORE and decoded by the browser.
    assert poster.get_attribute("src") == f"{site}/images/{POSTER_PATH}"
    assert browser.execute_script("return arguments[0].naturalWidth", poster) == 40
    cast = browser.find_element(By.ID, "cast")
    assert "Edward Norton" in cast.text  # listed, but not in the mirror: no link
    assert not cast.find_elements(By.LINK_TEXT, "Edward Norton")
    cast.find_element(By.LINK_TEXT, "Brad Pitt").click()
    wait_for(browser, "h1#title")
    assert browser.current_url == f"{site}/browse/people/287"
    assert browser.find_element(By.ID, "title").text == "Brad Pitt"
    assert "Shawnee, Oklahoma" in browser.find_element(By.CSS_SELECTOR, "dl.facts").text


def test_books_link_editions_works_and_authors(browser: WebDriver, site: str) -> None:
    search(browser, site, "dorsai", kind="books")
    browser.find_element(By.CSS_SELECTOR, "#results-books a.result").click()
    wait_for(browser, "h1#title")
    assert "Gordon R. Dickson" in browser.find_element(By.CSS_SELECTOR, "dl.facts").text
    browser.find_element(By.CSS_SELECTOR, "#work a").click()
    wait_for(browser, "#editions")
    assert browser.current_url == f"{site}/browse/works/OL155455W"
    browser.find_element(By.CSS_SELECTOR, "#authors a").click()
    wait_for(browser, "#works")
    assert browser.find_element(By.ID, "title").text == "Gordon R. Dickson"
    # A cover that was never downloaded points at the covers server.
    assert browser.find_element(By.ID, "image").get_attribute("data-local") == "false"


def test_unknown_record_page(browser: WebDriver, site: str) -> None:
    browser.get(f"{site}/browse/movies/9")
    assert browser.find_element(By.ID, "error").text == "404"
    assert "no movie 9 in the mirror" in browser.page_source


def test_the_api_docs_list_every_operation_with_no_request_off_the_site(
    browser: WebDriver, site: str
) -> None:
    with urllib.request.urlopen(f"{site}/openapi.json", timeout=5) as response:  # noqa: S310
        paths = set(json.loads(response.read())["paths"])
    requested(browser)

    browser.get(f"{site}/docs")
    wait_for(browser, ".opblock-summary-path")

    shown = browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    assert {operation.get_attribute("data-path") for operation in shown} == paths
    urls = [url for _, url in requested(browser)]
    assert f"{site}/openapi.json" in urls
    assert [url for url in urls if not url.startswith(f"{site}/")] == []


def test_the_redoc_page_renders_with_its_code_from_the_site(browser: WebDriver, site: str) -> None:
    requested(browser)

    browser.get(f"{site}/redoc")
    wait_for(browser, "[data-section-id^='operation/']")

    found = requested(browser)
    assert ("Fetch", f"{site}/openapi.json") in found
    # Redoc's "powered by" logo is the one thing it asks another host for; blocked, the
    # footer has no logo.
    assert [url for kind, url in found if kind != "Image" and not url.startswith(f"{site}/")] == []
