"""Browser tests: Playwright driving the system's Chromium (Debian's `chromium` package; never a downloaded
browser) against the live test server. They skip without Chromium unless SYNCPLANE_REQUIRE_SERVICES=1 (CI),
where a missing browser fails them."""

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import require_service

# Playwright's sync API runs an event loop in the test's thread; the ORM calls the tests make between
# browser steps are synchronous all the same.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    return os.environ.get("SYNCPLANE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser():
    executable = chromium_path()
    require_service("Chromium", executable is not None, "install Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900},
                                  timezone_id="Europe/Berlin")
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def screenshot():
    """Save a screenshot of the page under SYNCPLANE_SCREENSHOTS_DIR (`make screenshots` points it at
    docs/screenshots); without it they go to a temporary folder, so a test run leaves the repository alone."""
    folder = Path(os.environ.get("SYNCPLANE_SCREENSHOTS_DIR") or "var/screenshots")
    folder.mkdir(parents=True, exist_ok=True)

    def take(page, name: str) -> None:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=False)

    return take
