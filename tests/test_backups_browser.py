"""Download database and upload in a real browser (Playwright, Debian's chromium).

The screenshots of the upload page and of the page after it (docs/images/admin-upload.png,
admin-database-replaced.png) are taken here, and saved with DO_SCREENSHOTS=1. The
fixtures are the admin browser tests' own.
"""

import re
import sqlite3

import pytest
from asgiref.sync import async_to_sync

from durable_objects.models import ObjectRecord
from durable_objects.runtime.lifecycle import get_host
from tests.support.browser import save_screenshot
from tests.support.objects_backup import Archive
from tests.test_admin_browser import (  # noqa: F401  (fixtures)
    browser,
    database_beside_playwright,
    live_server,
    off_loop,
    serve_admin_static,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_staff_user_downloads_a_database_and_uploads_another(
    live_server,  # noqa: F811
    admin_user,
    browser_context,
    tmp_path,
):
    source = Archive.objects.get_by_name("browser-source")
    target = Archive.objects.get_by_name("browser-target")

    def create():
        async_to_sync(source.add)("from the downloaded file", colour="green")
        async_to_sync(target.add)("to be replaced")
        get_host().catalog.flush_sync()
        return (
            ObjectRecord.objects.get(object_id=str(source.id)),
            ObjectRecord.objects.get(object_id=str(target.id)),
        )

    source_record, target_record = off_loop(create)
    page = browser_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    page = page.new_page()
    page.route(re.compile(r".*/static/.*"), serve_admin_static)
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", admin_user.username)
    page.fill("#id_password", "password")
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")

    page.goto(f"{live_server.url}/admin/durable_objects/objectrecord/{source_record.pk}/change/")
    with page.expect_download() as download_info:
        page.click("#do-download")
    downloaded = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(downloaded)
    assert downloaded.name == "tests.Archive-browser-source.sqlite3"
    with sqlite3.connect(downloaded) as conn:
        assert conn.execute("SELECT body FROM notes").fetchall() == [("from the downloaded file",)]
    conn.close()

    page.goto(f"{live_server.url}/admin/durable_objects/objectrecord/{target_record.pk}/change/")
    page.click("#do-upload")
    page.wait_for_selector("input[type=file]")
    page.set_input_files("input[type=file]", str(downloaded))
    save_screenshot(page, "admin-upload.png")
    page.click("input[type=submit][value='Replace the database']")
    page.wait_for_selector(".messagelist")
    assert "The database was replaced: 1 entry, 1 table." in page.inner_text(".messagelist")
    save_screenshot(page, "admin-database-replaced.png")
    assert off_loop(async_to_sync(target.notes)) == ["from the downloaded file"]
    assert off_loop(async_to_sync(target.entries)) == {"colour": "green"}
    assert page.js_errors == []
