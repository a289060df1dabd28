"""The admin pages of durable_objects, through Django's test client.

Objects are real (the embedded host on its background thread); every page reads them
through their live instance, and every action changes them there.
"""

import asyncio
import contextlib
import html
import time

import pytest
from asgiref.sync import async_to_sync
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from durable_objects.exceptions import CallTimeout, ObjectReset
from durable_objects.models import ObjectRecord
from durable_objects.runtime.lifecycle import get_host
from durable_objects.testing import is_active, run_in_durable_object
from tests.support.objects import Counter

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def url(view, record, **query):
    from urllib.parse import urlencode

    path = reverse(f"admin:durable_objects_objectrecord_{view}", args=[record.pk])
    return f"{path}?{urlencode(query)}" if query else path


def in_object(stub, fn):
    return async_to_sync(run_in_durable_object)(stub, fn)


def catalogued(stub):
    """Write the host's pending catalog rows now and return the object's row."""
    get_host().catalog.flush_sync()
    return ObjectRecord.objects.get(object_id=str(stub.id))


def make_object(name="admin-subject", entries=None, table_rows=()):
    stub = Counter.objects.get_by_name(name)

    def fill(instance, ctx):
        ctx.storage.put_many(entries if entries is not None else {"greeting": "hello"})
        ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT)")
        for body in table_rows:
            ctx.storage.sql.exec("INSERT INTO notes(body) VALUES (?)", body)

    in_object(stub, fill)
    return stub, catalogued(stub)


def stored(stub, key):
    return in_object(stub, lambda instance, ctx: ctx.storage.get(key, "<missing>"))


@pytest.fixture
def staff(django_user_model):
    """Make a staff user with the given ObjectRecord permissions; return a logged-in client."""

    def make(*codenames, username="staff"):
        user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
        for codename in codenames:
            user.user_permissions.add(Permission.objects.get(codename=f"{codename}_objectrecord"))
        client = Client()
        client.force_login(user)
        return client

    return make


# -- the list ----------------------------------------------------------------------------


def test_the_catalog_is_registered_in_the_admin(admin_client):
    response = admin_client.get(reverse("admin:index"))
    assert response.status_code == 200
    assert reverse("admin:durable_objects_objectrecord_changelist") in response.text


def test_list_shows_objects_with_their_columns(admin_client):
    _stub, record = make_object("listed")
    response = admin_client.get(reverse("admin:durable_objects_objectrecord_changelist"))
    assert response.status_code == 200
    page = response.text
    assert "listed" in page and "tests.Counter" in page
    assert record.object_id[:16] in page
    assert "active in this process" in page
    for column in ("created", "last active", "alarm", "size on disk", "sockets", "status"):
        assert column in page.lower()


def test_list_search_by_name_and_by_id_prefix(admin_client):
    _, apple = make_object("apple")
    _, banana = make_object("banana")
    changelist = reverse("admin:durable_objects_objectrecord_changelist")
    found = admin_client.get(changelist, {"q": "ppl"}).context["cl"].result_list
    assert [r.pk for r in found] == [apple.pk]
    found = admin_client.get(changelist, {"q": banana.object_id[:10]}).context["cl"].result_list
    assert [r.pk for r in found] == [banana.pk]


def test_list_filters_by_class_alarm_and_status(admin_client):
    from durable_objects.testing import evict

    _awake, awake_record = make_object("awake")
    asleep, asleep_record = make_object("asleep")
    async_to_sync(evict)(asleep)
    ObjectRecord.objects.filter(pk=asleep_record.pk).update(alarm_at="2030-01-01T00:00:00Z")
    ObjectRecord.objects.create(
        label="tests.Ledger",
        object_id="ab" * 32,
        created_at="2026-01-01T00:00:00Z",
        last_active_at="2026-01-01T00:00:00Z",
    )
    changelist = reverse("admin:durable_objects_objectrecord_changelist")

    def pks(**query):
        return {r.pk for r in admin_client.get(changelist, query).context["cl"].result_list}

    assert pks(label="tests.Counter") == {awake_record.pk, asleep_record.pk}
    assert pks(alarm="yes") == {asleep_record.pk}
    assert awake_record.pk in pks(alarm="no")
    assert pks(status="active") == {awake_record.pk}
    assert asleep_record.pk in pks(status="hibernated")
    assert awake_record.pk not in pks(status="hibernated")


def test_list_does_not_count_the_whole_catalog(admin_client):
    make_object("counted")
    response = admin_client.get(reverse("admin:durable_objects_objectrecord_changelist"))
    assert response.context["cl"].show_full_result_count is False
    assert not response.context["cl"].model_admin.has_add_permission(response.wsgi_request)


# -- the detail page ---------------------------------------------------------------------


def test_detail_shows_entries_tables_alarm_sockets_and_where(admin_client):
    _stub, record = make_object(
        "detailed", {"greeting": "hello", "count": 3, "blob": b"\x00\x01"}, ["first note"]
    )
    response = admin_client.get(url("change", record))
    assert response.status_code == 200
    page = response.text
    assert "Key-value entries (3)" in page
    assert "greeting" in page and "&quot;hello&quot;" in page
    assert "b&#x27;\\x00\\x01&#x27;" in page  # bytes shown as Python writes them
    assert "notes" in page and "1 rows" in page and "CREATE TABLE" in page
    assert "No alarm is set." in page
    assert "WebSockets (0 connected)" in page
    assert "active in this process" in page


def test_detail_paginates_entries_by_key(admin_client):
    entries = {f"key-{i:03d}": i for i in range(120)}
    _stub, record = make_object("paged", entries)
    first = admin_client.get(url("change", record))
    overview = first.context["overview"]
    assert [e["key"] for e in overview["kv"]] == [f"key-{i:03d}" for i in range(50)]
    assert overview["kv_next"] == "key-049"
    second = admin_client.get(url("change", record, kv_after="key-049")).context["overview"]
    assert second["kv"][0]["key"] == "key-050"
    last = admin_client.get(url("change", record, kv_after="key-099")).context["overview"]
    assert [e["key"] for e in last["kv"]][-1] == "key-119" and last["kv_next"] is None
    prefixed = admin_client.get(url("change", record, kv_prefix="key-11")).context["overview"]
    assert [e["key"] for e in prefixed["kv"]] == [f"key-11{i}" for i in range(10)]


def test_long_values_are_truncated_with_a_link_to_the_whole(admin_client):
    long_text = "x" * 5000
    _stub, record = make_object("long", {"long": long_text})
    page = admin_client.get(url("change", record)).text
    assert long_text not in page and "show all 5002 characters" in page
    whole = admin_client.get(url("kv_value", record, key="long"))
    assert whole.status_code == 200 and long_text in whole.text


def test_hostile_strings_are_shown_as_text(admin_client):
    stub, record = make_object(HOSTILE, {HOSTILE: HOSTILE}, [HOSTILE])

    def hostile_table(instance, ctx):
        ctx.storage.sql.exec(f'CREATE TABLE "{HOSTILE.replace(chr(34), "")}"(x)')

    in_object(stub, hostile_table)
    pages = [
        admin_client.get(reverse("admin:durable_objects_objectrecord_changelist")),
        admin_client.get(url("change", record)),
        admin_client.get(url("kv_value", record, key=HOSTILE)),
        admin_client.get(url("kv_edit", record, key=HOSTILE)),
        admin_client.get(url("kv_delete", record, key=HOSTILE)),
        admin_client.get(url("table", record, name="notes")),
        admin_client.post(url("console", record), {"sql": "SELECT body FROM notes"}),
    ]
    for response in pages:
        assert response.status_code == 200, response.request["PATH_INFO"]
        assert "<script>alert" not in response.text
        assert "<img src=x" not in response.text
    assert html.escape(HOSTILE) in pages[1].text or "&lt;script&gt;" in pages[1].text


def test_table_page_shows_schema_and_paginated_rows(admin_client):
    _stub, record = make_object("tabled", table_rows=[f"note {i}" for i in range(70)])
    first = admin_client.get(url("table", record, name="notes"))
    data = first.context["data"]
    assert data["count"] == 70 and len(data["rows"]) == 50
    assert [c["name"] for c in data["schema"]] == ["id", "body"]
    assert data["rows"][0] == [1, "note 0"]
    second = admin_client.get(url("table", record, name="notes", offset=50)).context["data"]
    assert second["rows"][0] == [51, "note 50"] and len(second["rows"]) == 20
    missing = admin_client.get(url("table", record, name="_do_kv"))
    assert missing.status_code == 404 and "no table or view named" in missing.text


# -- the console -------------------------------------------------------------------------


def test_console_runs_a_select(admin_client):
    _stub, record = make_object("queried", table_rows=["alpha", "beta"])
    response = admin_client.post(
        url("console", record), {"sql": "SELECT body FROM notes ORDER BY id"}
    )
    assert response.status_code == 200
    assert response.context["result"]["rows"] == [["alpha"], ["beta"]]


@pytest.mark.parametrize(
    ("sql", "refusal"),
    [
        ("INSERT INTO notes(body) VALUES ('evil')", "INSERT is not allowed"),
        ("UPDATE notes SET body = 'evil'", "UPDATE is not allowed"),
        ("DELETE FROM notes", "DELETE is not allowed"),
        ("DROP TABLE notes", "not allowed"),
        ("CREATE TABLE evil(x)", "the console is read-only"),
        ("ATTACH DATABASE '/tmp/evil.sqlite3' AS evil", "ATTACH and DETACH are not allowed"),
        ("PRAGMA query_only = OFF", "PRAGMA query_only is not allowed"),
        ("PRAGMA journal_mode = DELETE", "PRAGMA journal_mode is not allowed"),
        ("PRAGMA user_version = 7", "PRAGMA user_version is not allowed"),
        ("SELECT * FROM _do_kv", "internal table _do_kv"),
        ("BEGIN", "TRANSACTION is not allowed"),
        ("SELECT 1; DELETE FROM notes", "one statement at a time"),
        ("VACUUM", "not allowed"),
        ("SELECT zeroblob(100000000)", "string or blob too big"),
    ],
)
def test_console_refuses_anything_but_reading(admin_client, sql, refusal):
    stub, record = make_object("guarded", {"secret": 1}, ["kept"])
    before = in_object(stub, lambda i, ctx: ctx.storage.sql.exec("PRAGMA table_list").to_array())
    response = admin_client.post(url("console", record), {"sql": sql})
    assert response.status_code == 400
    assert refusal in html.unescape(response.text)
    rows = in_object(stub, lambda i, ctx: ctx.storage.sql.exec("SELECT body FROM notes").raw())
    assert rows == [("kept",)]
    assert stored(stub, "secret") == 1
    after = in_object(stub, lambda i, ctx: ctx.storage.sql.exec("PRAGMA table_list").to_array())
    assert after == before


def test_console_stops_a_runaway_query(admin_client, monkeypatch):
    from durable_objects.admin import console

    monkeypatch.setattr(console, "TIME_LIMIT", 0.2)
    _stub, record = make_object("runaway")
    sql = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
    response = admin_client.post(url("console", record), {"sql": sql})
    assert response.status_code == 400 and "was stopped" in response.text


# -- actions -----------------------------------------------------------------------------


def logged(record):
    return [e.get_change_message() for e in LogEntry.objects.filter(object_id=str(record.pk))]


def test_edit_an_entry_through_the_object(admin_client):
    stub, record = make_object("edited", {"greeting": "hello"})
    form = admin_client.get(url("kv_edit", record, key="greeting"))
    assert form.context["form"].initial == {"key": "greeting", "value": '"hello"'}
    response = admin_client.post(
        url("kv_edit", record), {"key": "greeting", "value": '{"to": ["ann", 2]}'}
    )
    assert response.status_code == 302 and response.url == url("change", record)
    assert stored(stub, "greeting") == {"to": ["ann", 2]}
    added = admin_client.post(url("kv_edit", record), {"key": "fresh", "value": "42"})
    assert added.status_code == 302 and stored(stub, "fresh") == 42
    assert logged(record) == [
        "Added key-value entry 'fresh'.",
        "Changed key-value entry 'greeting'.",
    ]


def test_edit_refuses_bad_json_and_keeps_the_input(admin_client):
    stub, record = make_object("bad-json", {"greeting": "hello"})
    response = admin_client.post(url("kv_edit", record), {"key": "greeting", "value": "{oops"})
    assert response.status_code == 200
    assert "not valid JSON" in response.text and "{oops" in response.text
    assert stored(stub, "greeting") == "hello"
    assert logged(record) == []


def test_edit_reports_a_value_the_object_refuses(admin_client, settings):
    _stub, record = make_object("too-big", {"greeting": "hello"})
    response = admin_client.post(url("kv_edit", record), {"key": "k" * 3000, "value": "1"})
    assert response.status_code == 200 and "MAX_KEY_SIZE" in response.text
    assert logged(record) == []


def test_delete_an_entry_after_confirming(admin_client):
    stub, record = make_object("pruned", {"doomed": 1, "kept": 2})
    confirm = admin_client.get(url("kv_delete", record, key="doomed"))
    assert confirm.status_code == 200 and "Yes, delete it" in confirm.text
    assert stored(stub, "doomed") == 1
    response = admin_client.post(url("kv_delete", record), {"key": "doomed"})
    assert response.status_code == 302
    assert stored(stub, "doomed") == "<missing>" and stored(stub, "kept") == 2
    assert logged(record) == ["Deleted key-value entry 'doomed'."]
    missing = admin_client.post(url("kv_delete", record), {"key": "doomed"}, follow=True)
    assert "There was no entry &#x27;doomed&#x27;; nothing was deleted." in missing.text
    assert logged(record) == ["Deleted key-value entry 'doomed'."]
    history = admin_client.get(url("history", record))
    assert history.status_code == 200 and "Deleted key-value entry" in html.unescape(history.text)


def test_evict_drops_the_live_instance(admin_client):
    stub, record = make_object("evicted")
    assert is_active(stub)
    response = admin_client.post(url("evict", record))
    assert response.status_code == 302
    for _ in range(200):
        if not is_active(stub):
            break
        time.sleep(0.01)
    assert not is_active(stub)
    assert stored(stub, "greeting") == "hello"  # storage stays; the next call wakes it
    assert logged(record) == ["Evicted the instance."]
    again = admin_client.post(url("evict", record), follow=True)
    assert "nothing to evict" in again.text or is_active(stub)


def test_delete_all_storage_after_confirming(admin_client):
    stub, record = make_object("wiped", {"a": 1, "b": 2}, ["row"])
    confirm = admin_client.get(url("delete_storage", record))
    assert confirm.status_code == 200 and "Yes, delete all storage" in confirm.text
    assert stored(stub, "a") == 1
    response = admin_client.post(url("delete_storage", record), follow=True)
    assert "Deleted 2 entries and 1 tables" in response.text
    assert stored(stub, "a") == "<missing>"
    tables = in_object(
        stub, lambda i, ctx: ctx.storage.sql.exec("SELECT name FROM sqlite_schema").raw()
    )
    assert [t for (t,) in tables if not t.startswith(("_do_", "sqlite_"))] == []
    assert logged(record) == ["Deleted all storage (entries, tables, alarm)."]
    default_delete = admin_client.get(url("delete", record))
    assert default_delete.url == url("delete_storage", record)


def test_an_unknown_or_malformed_object_number_is_a_404(admin_client):
    changelist = reverse("admin:durable_objects_objectrecord_changelist")
    assert admin_client.get(f"{changelist}999999/change/").status_code == 404
    assert admin_client.get(f"{changelist}not-a-number/change/").status_code == 404


def test_actions_refuse_get(admin_client):
    stub, record = make_object("posted")
    for name in ("alarm_run", "alarm_cancel", "evict"):
        assert admin_client.get(url(name, record)).status_code == 405
    assert is_active(stub)


# -- permissions and CSRF ----------------------------------------------------------------


def test_anonymous_users_are_sent_to_the_login_page(client):
    stub, record = make_object("private")
    pages = [
        reverse("admin:durable_objects_objectrecord_changelist"),
        url("change", record),
        url("kv_value", record, key="greeting"),
        url("console", record),
        url("table", record, name="notes"),
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 302 and "/login/" in response.url
    for name in ("evict", "delete_storage", "kv_delete", "alarm_cancel"):
        response = client.post(url(name, record), {"key": "greeting"})
        assert response.status_code == 302 and "/login/" in response.url
    assert stored(stub, "greeting") == "hello"


def test_staff_without_permission_sees_nothing(staff):
    client = staff()
    stub, record = make_object("hidden")
    assert client.get(reverse("admin:durable_objects_objectrecord_changelist")).status_code == 403
    for page in (url("change", record), url("console", record), url("kv_value", record, key="x")):
        assert client.get(page).status_code == 403
    assert client.post(url("kv_delete", record), {"key": "greeting"}).status_code == 403
    assert client.post(url("delete_storage", record)).status_code == 403
    assert stored(stub, "greeting") == "hello"


def test_view_permission_reads_but_changes_nothing(staff):
    client = staff("view")
    stub, record = make_object("read-only")
    detail = client.get(url("change", record))
    assert detail.status_code == 200 and "greeting" in detail.text
    assert "Evict the instance" not in detail.text and "Delete all storage" not in detail.text
    assert ">Edit<" not in detail.text and ">Delete<" not in detail.text
    assert client.post(url("console", record), {"sql": "SELECT 1"}).status_code == 403
    forbidden = [
        client.get(url("kv_edit", record, key="greeting")),
        client.post(url("kv_edit", record), {"key": "greeting", "value": "1"}),
        client.post(url("kv_delete", record), {"key": "greeting"}),
        client.post(url("evict", record)),
        client.post(url("alarm_cancel", record)),
        client.post(url("alarm_run", record)),
        client.post(url("delete_storage", record)),
    ]
    assert [r.status_code for r in forbidden] == [403] * len(forbidden)
    assert stored(stub, "greeting") == "hello" and is_active(stub)


def test_change_permission_edits_but_cannot_delete(staff):
    client = staff("view", "change")
    stub, record = make_object("editable")
    ok = client.post(url("kv_edit", record), {"key": "greeting", "value": '"hi"'})
    assert ok.status_code == 302 and stored(stub, "greeting") == "hi"
    assert client.post(url("kv_delete", record), {"key": "greeting"}).status_code == 403
    assert client.post(url("delete_storage", record)).status_code == 403
    assert stored(stub, "greeting") == "hi"


def test_full_permissions_can_do_everything(staff):
    client = staff("view", "change", "delete")
    stub, record = make_object("owned", {"greeting": "hello", "other": 1})
    detail = client.get(url("change", record))
    assert "Evict the instance" in detail.text and "Delete all storage" in detail.text
    assert client.post(url("kv_delete", record), {"key": "other"}).status_code == 302
    assert stored(stub, "other") == "<missing>"
    assert client.post(url("delete_storage", record)).status_code == 302
    assert stored(stub, "greeting") == "<missing>"


def test_every_form_needs_the_csrf_token(django_user_model):
    user = django_user_model.objects.create_superuser("root", password="pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    stub, record = make_object("csrf")
    posts = [
        (url("kv_edit", record), {"key": "greeting", "value": '"forged"'}),
        (url("kv_delete", record), {"key": "greeting"}),
        (url("console", record), {"sql": "SELECT 1"}),
        (url("alarm_run", record), {}),
        (url("alarm_cancel", record), {}),
        (url("evict", record), {}),
        (url("delete_storage", record), {}),
    ]
    for path, data in posts:
        assert client.post(path, data).status_code == 403, path
    assert stored(stub, "greeting") == "hello" and is_active(stub)
    form = client.get(url("kv_edit", record, key="greeting"))
    token = form.context["csrf_token"]
    ok = client.post(
        url("kv_edit", record),
        {"key": "greeting", "value": '"real"', "csrfmiddlewaretoken": str(token)},
    )
    assert ok.status_code == 302 and stored(stub, "greeting") == "real"


# -- an object that is busy --------------------------------------------------------------


def test_a_busy_object_gives_a_clear_message(admin_client, settings):
    stub, record = make_object("busy")
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "CALL_TIMEOUT": 0.3}
    stub, record = make_object("busy")  # the settings change restarted the host
    host = get_host()
    release = asyncio.Event()

    async def hold(instance, ctx):
        await asyncio.wait_for(release.wait(), 5)

    holding = asyncio.run_coroutine_threadsafe(run_in_durable_object(stub, hold), host.loop)
    try:
        detail = admin_client.get(url("change", record))
        assert detail.status_code == 503
        assert "The object is busy" in detail.text and detail.context["overview"] is None
        edit = admin_client.post(
            url("kv_edit", record), {"key": "greeting", "value": '"late"'}, follow=True
        )
        assert "busy" in edit.text and "late" in edit.text  # the input is kept
        # An evict waits its turn; past CALL_TIMEOUT the object counts as stuck and the
        # evict resets it (the held event's writes are lost), which the page says.
        evicted = admin_client.post(url("evict", record), follow=True)
        assert "it was reset" in evicted.text
    finally:
        host.loop.call_soon_threadsafe(release.set)
        with contextlib.suppress(CallTimeout, ObjectReset):  # the holding call's own end
            holding.result(5)
    assert logged(record) == ["Reset the stuck instance."]


# -- alarms ------------------------------------------------------------------------------


def make_alarmed(name, when=None, **options):
    from tests.support.objects_alarms import Alarmed

    stub = Alarmed.objects.get_by_name(name)
    if options:
        async_to_sync(stub.configure)(**options)
    async_to_sync(stub.arm)(when if when is not None else time.time() + 3600)
    return stub, catalogued(stub)


def test_detail_shows_the_alarm_and_the_list_filters_on_it(admin_client):
    when = time.time() + 3600
    _stub, record = make_alarmed("alarm-shown", when)
    assert record.alarm_at is not None and abs(record.alarm_at.timestamp() - when) < 1
    alarm = admin_client.get(url("change", record)).context["alarm"]
    assert abs(alarm["scheduled_at"] - when) < 0.001 and alarm["retry_count"] == 0
    assert alarm["last_error"] is None
    changelist = reverse("admin:durable_objects_objectrecord_changelist")
    found = admin_client.get(changelist, {"alarm": "yes"}).context["cl"].result_list
    assert [r.pk for r in found] == [record.pk]


def test_run_the_alarm_now(admin_client):
    stub, record = make_alarmed("alarm-run")
    response = admin_client.post(url("alarm_run", record), follow=True)
    assert "The alarm ran." in response.text
    assert len(async_to_sync(stub.fired)()) == 1
    assert async_to_sync(stub.alarm_time)() is None
    again = admin_client.post(url("alarm_run", record), follow=True)
    assert "no alarm set; nothing ran" in again.text
    assert logged(record) == ["Ran the alarm now."]


def test_a_failing_alarm_shows_its_error_and_retry_count(admin_client):
    _stub, record = make_alarmed("alarm-fails", fail_times=10)
    response = admin_client.post(url("alarm_run", record), follow=True)
    assert "The alarm ran and failed" in response.text and "failing on purpose" in response.text
    alarm = response.context["alarm"]
    assert alarm["retry_count"] == 1 and "failing on purpose" in alarm["last_error"]
    assert alarm["last_error_at_time"] is not None
    assert logged(record)[0].startswith("Ran the alarm now; it failed")


def test_cancel_the_alarm(admin_client):
    stub, record = make_alarmed("alarm-cancelled")
    response = admin_client.post(url("alarm_cancel", record), follow=True)
    assert "The alarm was cancelled." in response.text
    assert async_to_sync(stub.alarm_time)() is None
    assert async_to_sync(stub.fired)() == []
    assert logged(record) == ["Cancelled the alarm."]
    assert catalogued(stub).alarm_at is None
    again = admin_client.post(url("alarm_cancel", record), follow=True)
    assert "There was no alarm to cancel." in again.text
    assert logged(record) == ["Cancelled the alarm."]  # nothing changed, nothing logged


def test_delete_all_storage_removes_the_alarm_too(admin_client):
    stub, record = make_alarmed("alarm-wiped")
    admin_client.post(url("delete_storage", record))
    assert async_to_sync(stub.alarm_time)() is None


# -- sockets -----------------------------------------------------------------------------


async def test_detail_and_list_show_connected_sockets(admin_client):
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator

    from tests.support.asgi import application

    sockets = []
    for user, tag in (("ann", "red"), ("bob", "blue")):
        communicator = WebsocketCommunicator(
            application, f"/ws/room/admin-sockets/?user={user}&tag={tag}"
        )
        connected, _ = await communicator.connect()
        assert connected
        sockets.append(communicator)
    try:
        await sync_to_async(get_host().catalog.flush_sync)()
        record = await ObjectRecord.objects.aget(name="admin-sockets")
        assert record.socket_count == 2
        detail = await sync_to_async(admin_client.get)(url("change", record))
        assert "WebSockets (2 connected)" in detail.text
        shown = detail.context["overview"]["sockets"]
        assert sorted(s["tags"][0] for s in shown) == ["blue", "red"]
        assert any('"user": "ann"' in s["attachment"] for s in shown)
        listed = await sync_to_async(admin_client.get)(
            reverse("admin:durable_objects_objectrecord_changelist")
        )
        assert [r.socket_count for r in listed.context["cl"].result_list] == [2]
        await sockets.pop().disconnect()
        for _ in range(100):
            await sync_to_async(get_host().catalog.flush_sync)()
            record = await ObjectRecord.objects.aget(name="admin-sockets")
            if record.socket_count == 1:
                break
            await asyncio.sleep(0.02)
        assert record.socket_count == 1
    finally:
        for communicator in sockets:
            await communicator.disconnect()


def test_an_object_of_a_class_not_installed_is_listed_and_explained(admin_client):
    record = ObjectRecord.objects.create(
        label="gone.Missing",
        object_id="cd" * 32,
        name="orphan",
        created_at="2026-01-01T00:00:00Z",
        last_active_at="2026-01-01T00:00:00Z",
    )
    listed = admin_client.get(reverse("admin:durable_objects_objectrecord_changelist"))
    assert listed.status_code == 200 and "orphan" in listed.text
    detail = admin_client.get(url("change", record))
    assert detail.status_code == 400
    assert "The class gone.Missing is not installed in this process" in detail.text
    assert "Evict the instance" not in detail.text


def test_a_broken_view_is_listed_and_its_page_explains(admin_client):
    stub, record = make_object("broken-view")

    def break_view(instance, ctx):
        ctx.storage.sql.exec("CREATE TABLE base(x)")
        ctx.storage.sql.exec("CREATE VIEW shown AS SELECT x FROM base")
        ctx.storage.sql.exec("DROP TABLE base")

    in_object(stub, break_view)
    detail = admin_client.get(url("change", record))
    assert detail.status_code == 200 and "rows not countable" in detail.text
    page = admin_client.get(url("table", record, name="shown"))
    assert page.status_code == 404 and "no such table" in page.text
