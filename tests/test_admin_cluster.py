"""The admin in a cluster: pages served by one process, the object living in another.

A daphne process that cannot host (``CLUSTER_ROLE`` "client") serves the admin; a
``runobjects`` process holds the object. Reads and actions cross to the holder as
``AdminOperation`` events; a holder that stops answering gives a message, not a 500.
"""

import http.cookiejar
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.support.servers import REPO
from tests.test_cluster import make_cluster


@pytest.fixture
def cluster(tmp_path, redis_url):
    yield from make_cluster(tmp_path, redis_url)


class Browser:
    """Cookies and CSRF tokens for HTTP against the admin, with urllib alone."""

    def __init__(self, base):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect()
        )

    def get(self, path):
        return self._open(urllib.request.Request(self.base + path))

    def post(self, path, data, token_from):
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', token_from).group(1)
        body = urllib.parse.urlencode({**data, "csrfmiddlewaretoken": token}).encode()
        request = urllib.request.Request(self.base + path, data=body, method="POST")
        request.add_header("Referer", self.base + path)
        return self._open(request)

    def _open(self, request):
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read().decode(), response.headers
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(), error.headers


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def record_pk(db_path, name, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(db_path) as conn:
            row = conn.execute(
                "SELECT id FROM durable_objects_objectrecord WHERE name = ?", (name,)
            ).fetchone()
        if row:
            return row[0]
        time.sleep(0.1)
    raise AssertionError(f"no catalog row for {name!r}")


def test_admin_reads_and_changes_an_object_held_by_another_process(cluster, tmp_path):
    holder = cluster.runobjects()
    base, _ = cluster.daphne(role="client")
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "createsuperuser",
            "--noinput",
            "--username",
            "root",
            "--email",
            "root@example.com",
        ],
        cwd=REPO,
        env={**cluster.env, "DJANGO_SUPERUSER_PASSWORD": "pw"},
        check=True,
        capture_output=True,
    )
    with urllib.request.urlopen(f"{base}/tally/far-away/increment/", timeout=30) as response:
        assert response.status == 200
    pk = record_pk(tmp_path / "db.sqlite3", "far-away")

    browser = Browser(base)
    _, login, _ = browser.get("/admin/login/")
    status, _, headers = browser.post(
        "/admin/login/?next=/admin/",
        {"username": "root", "password": "pw", "next": "/admin/"},
        token_from=login,
    )
    assert status == 302 and headers["Location"] == "/admin/"

    detail_path = f"/admin/durable_objects/objectrecord/{pk}/change/"
    status, page, _ = browser.get(detail_path)
    assert status == 200
    assert "active in another process" in page
    assert "constructed" in page and ">value<" in page

    status, page, _ = browser.get(detail_path.replace("change/", "console/"))
    status, result, _ = browser.post(
        detail_path.replace("change/", "console/"),
        {"sql": "SELECT 40 + 2 AS answer"},
        token_from=page,
    )
    assert status == 200 and '<td><span class="do-value">42</span></td>' in result

    delete_path = detail_path.replace("change/", "kv-delete/")
    status, confirm, _ = browser.get(f"{delete_path}?key=value")
    assert status == 200 and "Yes, delete it" in confirm
    status, _, _ = browser.post(delete_path, {"key": "value"}, token_from=confirm)
    assert status == 302
    with urllib.request.urlopen(f"{base}/tally/far-away/", timeout=30) as response:
        state = response.read().decode()
    assert '"value": 0' in state and f'"pid": {holder.pid}' in state

    changelist = "/admin/durable_objects/objectrecord/"
    _, active, _ = browser.get(f"{changelist}?status=active")
    _, hibernated, _ = browser.get(f"{changelist}?status=hibernated")
    assert "far-away" in active and "active in another process" in active
    assert "far-away" not in hibernated

    status, page, _ = browser.get(detail_path)
    status, _, _ = browser.post(detail_path.replace("change/", "evict/"), {}, token_from=page)
    assert status == 302
    for _ in range(50):  # the holder drops the instance after the eviction's event
        with urllib.request.urlopen(f"{base}/tally/far-away/", timeout=30) as response:
            constructed = json.loads(response.read())["constructed"]
        if len(constructed) == 2:
            break
        time.sleep(0.1)
    assert constructed == [holder.pid, holder.pid]  # evicted, then constructed again

    os.kill(holder.pid, signal.SIGSTOP)  # the holder stops answering (make_cluster resumes it)
    status, page, _ = browser.get(detail_path)
    assert status == 503
    assert "The object&#x27;s host cannot be reached" in page
