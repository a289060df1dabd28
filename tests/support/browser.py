"""A real browser for the tests: Playwright driving Debian's chromium (never its own).

``scripts/bootstrap --browser`` installs chromium when it is missing. The fixtures are
registered for every test directory by the root conftest.py. Tests using them are sync functions:
Playwright's sync API refuses to run inside an event loop.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags chromium tries to reach Google's hosts at every
# start, and this machine's closed network refuses them.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


# Where the docs' screenshots live; the browser tests write there only when asked.
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
SCREENSHOTS_VARIABLE = "DO_SCREENSHOTS"


def save_screenshot(page, filename):
    """Screenshot the whole page into docs/images/ if DO_SCREENSHOTS=1, else keep it nowhere."""
    if os.environ.get(SCREENSHOTS_VARIABLE, "") in ("", "0"):
        # Taken all the same (the page must render), so a plain test run leaves the work
        # tree as it was.
        page.screenshot(full_page=True)
        return
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_IMAGES / filename), full_page=True)


def chromium_path():
    path = CHROMIUM if os.path.isabs(CHROMIUM) else shutil.which(CHROMIUM)
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError(
            f"No chromium at {CHROMIUM!r}: run ./scripts/bootstrap --browser (installs "
            "Debian's chromium package) or set CHROMIUM."
        )
    return path


@pytest.fixture(scope="module")
def browser():
    """One chromium per test module, launched through Playwright with executable_path.

    Module scope, not session: while Playwright's sync API is started, the main thread
    counts as running an event loop, and the other modules' sync tests (async_to_sync,
    the ORM) would refuse to run.
    """
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="do-chromium-")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
        )
        yield instance
        instance.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser_context(browser):
    """A factory of fresh contexts (separate cookies, like two users); closed afterwards.

    Each page made from a context records its JavaScript console errors and uncaught
    exceptions in ``page.js_errors``.
    """
    contexts = []

    def make(**options):
        context = browser.new_context(**options)
        context.set_default_timeout(15_000)

        def track(page):
            page.js_errors = []
            page.on(
                "console",
                lambda message: message.type == "error" and page.js_errors.append(message.text),
            )
            page.on("pageerror", lambda error: page.js_errors.append(str(error)))

        context.on("page", track)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()
