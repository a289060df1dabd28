"""The admin in a real browser: Playwright driving Debian's chromium against live_server.

pytest-django's ``live_server`` runs Django in a thread of this process, so the objects
the test creates and the ones the pages read live on one host. The screenshots of the
admin topic (docs/images/admin-*.png) are taken here, and saved with DO_SCREENSHOTS=1.

Playwright's sync API keeps an event loop marked as running in the main thread, so the
test talks to its objects from a worker thread (``off_loop``), where the host is the
usual background one; without that the host would bind itself to Playwright's loop.
"""

import mimetypes
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import django
import pytest
from asgiref.sync import async_to_sync

from durable_objects.models import ObjectRecord
from durable_objects.runtime.lifecycle import get_host
from durable_objects.testing import run_in_durable_object
from tests.support.browser import save_screenshot
from tests.support.objects import Counter
from tests.support.objects_alarms import Alarmed

pytestmark = pytest.mark.django_db(transaction=True)

ADMIN_STATIC = Path(django.__file__).parent / "contrib" / "admin" / "static"


@pytest.fixture
def live_server():
    """pytest-django's live server, for this test only, with a STATIC_URL.

    The test settings have no STATIC_URL, and the live server's static handler cannot
    start without one; the browser answers /static/ itself (serve_admin_static).
    """
    from django.test import override_settings
    from pytest_django.live_server_helper import LiveServer

    with override_settings(STATIC_URL="/static/"):
        server = LiveServer("localhost")
        yield server
        server.stop()


@pytest.fixture(scope="module")
def browser():
    """Chromium for this module only (it overrides the session's ``tests.support.browser`` one).

    Playwright's sync API marks an event loop as running in the main thread for as long
    as it is open; closed at the end of this module, it cannot make later tests' sync
    code (``async_to_sync``, the ORM) believe it runs inside a loop.
    """
    from playwright.sync_api import sync_playwright

    from tests.support.browser import CHROMIUM_ARGS, chromium_path

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True
        )
        yield instance
        instance.close()


@pytest.fixture(autouse=True, scope="module")
def database_beside_playwright():
    """Let the database fixtures run in the main thread, where Playwright's loop is."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def off_loop(fn, *args):
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def serve_admin_static(route):
    """Answer /static/... from Django's own admin files (the test settings serve none)."""
    relative = re.sub(r"^.*?/static/", "", route.request.url.split("?")[0])
    path = (ADMIN_STATIC / relative).resolve()
    if ADMIN_STATIC in path.parents and path.is_file():
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        route.fulfill(status=200, body=path.read_bytes(), content_type=kind)
    else:
        route.fulfill(status=404, body=b"")


def shot(page, name):
    save_screenshot(page, f"admin-{name}.png")


def test_staff_user_finds_an_object_reads_it_queries_it_and_deletes_a_key(
    live_server, admin_user, browser_context
):
    stub = Alarmed.objects.get_by_name("browser-room")

    def write(instance, ctx):
        ctx.storage.put("greeting", "Hello from inside the object")
        ctx.storage.put("visits", 3)
        ctx.storage.put("settings", {"theme": "dark", "limits": [10, 20]})
        ctx.storage.set_alarm(time.time() + 3600)
        ctx.storage.sql.exec(
            "CREATE TABLE messages(id INTEGER PRIMARY KEY, author TEXT, body TEXT)"
        )
        for author, body in [("ann", "hi"), ("bob", "<b>not bold</b>"), ("ann", "bye")]:
            ctx.storage.sql.exec("INSERT INTO messages(author, body) VALUES (?, ?)", author, body)

    def create():
        async_to_sync(run_in_durable_object)(stub, write)
        for other in ("lobby", "kitchen", "garden"):
            async_to_sync(Counter.objects.get_by_name(other).increment)()
        get_host().catalog.flush_sync()
        return ObjectRecord.objects.get(object_id=str(stub.id))

    record = off_loop(create)

    page = browser_context(viewport={"width": 1600, "height": 900}).new_page()
    page.route(re.compile(r".*/static/.*"), serve_admin_static)

    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", admin_user.username)
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")

    page.goto(f"{live_server.url}/admin/durable_objects/objectrecord/")
    page.evaluate("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
    page.reload()
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 4
    shot(page, "list")
    page.fill("#searchbar", "browser")
    page.press("#searchbar", "Enter")
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 1
    page.click("#result_list a:text('browser-room')")

    page.wait_for_selector("#do-kv-table")
    assert f"/objectrecord/{record.pk}/change/" in page.url
    row = page.locator("#do-kv-table tr", has_text="greeting")
    assert "Hello from inside the object" in row.inner_text()
    assert "active in this process" in page.inner_text("#do-where")
    assert page.inner_text("#do-alarm-time") != "not set"
    shot(page, "detail")

    page.click("text=Open the read-only SQL console")
    page.fill("#do-console textarea", "SELECT author, body FROM messages ORDER BY id")
    page.click("#do-console input[type=submit]")
    page.wait_for_selector("#do-console-result")
    cells = page.locator("#do-console-result tbody td").all_inner_texts()
    assert cells == ["ann", "hi", "bob", "<b>not bold</b>", "ann", "bye"]
    shot(page, "console")

    page.click("text=Back to the object")
    page.locator("#do-kv-table tr", has_text="greeting").locator("text=Delete").click()
    page.wait_for_selector("text=Yes, delete it")
    shot(page, "delete-entry")
    page.click("text=Yes, delete it")
    page.wait_for_selector(".messagelist")
    assert "Deleted the entry 'greeting'." in page.inner_text(".messagelist")
    assert page.locator("#do-kv-table tr", has_text="greeting").count() == 0

    async def read(instance, ctx):
        return ctx.storage.get("greeting", "<gone>"), ctx.storage.get("visits")

    assert off_loop(async_to_sync(run_in_durable_object), stub, read) == ("<gone>", 3)
    assert page.js_errors == []
