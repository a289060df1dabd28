"""The admin's schedules and queue: listed on the object page, cancelled and dropped there.

Through Django's test client against real objects (the embedded host); the actions need
the change permission and the CSRF token, refuse GET, and are logged like the others.
"""

import pytest
from asgiref.sync import async_to_sync
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.test import Client

from durable_objects.testing import run_in_durable_object
from tests.support.objects_schedules import Scheduled
from tests.test_admin import HOSTILE, catalogued, url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def slow_retries(settings):
    # A failing head task stays in the queue for the page to show, the tasks behind it too.
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "ALARM_RETRY_BASE": 3600.0}


def scheduled_object(name):
    stub = Scheduled.objects.get_by_name(name)

    def fill(obj, ctx):
        ctx.storage.put("fail_times", 1000)
        ctx.schedule(3600, "record", HOSTILE, id="hourly-report")
        ctx.schedule("0 9 * * 1", "record", "weekly", id="weekly", tz="Europe/Paris")
        ctx.enqueue("flaky", "stuck")  # fails, and waits an hour for its retry
        ctx.enqueue("record", "behind")

    async_to_sync(run_in_durable_object)(stub, fill)
    return stub, catalogued(stub)


def logged(record):
    return [e.get_change_message() for e in LogEntry.objects.filter(object_id=str(record.pk))]


def wait_for_retry(stub):
    import time

    deadline = time.monotonic() + 10
    while not (queue := async_to_sync(stub.queue)()) or not queue[0]["retry_count"]:
        assert time.monotonic() < deadline, queue
        time.sleep(0.05)
    return queue


def test_the_object_page_lists_schedules_and_queued_tasks(admin_client):
    stub, record = scheduled_object("admin-listed")
    wait_for_retry(stub)
    page = admin_client.get(url("change", record))
    listing = page.context["overview"]["schedules"]
    assert listing["count"] == 2 and listing["queue_count"] == 2
    assert [s["id"] for s in listing["rows"]] == ["hourly-report", "weekly"]
    assert [t["method"] for t in listing["queue"]] == ["flaky", "record"]
    assert "failing on purpose" in listing["queue"][0]["last_error"]
    assert "Europe/Paris" in page.text and "0 9 * * 1" in page.text
    assert HOSTILE not in page.text  # the arguments are escaped
    assert "&lt;script&gt;" in page.text
    assert page.text.count('value="Cancel"') == 2 and page.text.count('value="Drop"') == 2


def test_cancel_a_schedule_from_the_object_page(admin_client):
    stub, record = scheduled_object("admin-cancel")
    response = admin_client.post(url("schedule_cancel", record), {"id": "weekly"}, follow=True)
    assert "The schedule &#x27;weekly&#x27; was cancelled." in response.text
    assert [s["id"] for s in async_to_sync(stub.schedules)()] == ["hourly-report"]
    assert logged(record) == ["Cancelled schedule 'weekly' (record())."]
    again = admin_client.post(url("schedule_cancel", record), {"id": "weekly"}, follow=True)
    assert "There was no schedule &#x27;weekly&#x27;" in again.text
    assert len(logged(record)) == 1  # nothing changed, nothing logged


def test_drop_a_queued_task_and_the_next_one_runs(admin_client):
    stub, record = scheduled_object("admin-drop")
    head = wait_for_retry(stub)[0]
    response = admin_client.post(url("task_drop", record), {"seq": head["seq"]}, follow=True)
    assert f"The queued task {head['seq']} was dropped." in response.text
    assert logged(record) == [f"Dropped queued task {head['seq']} (flaky())."]
    import time

    deadline = time.monotonic() + 10
    while not async_to_sync(stub.runs)("behind"):  # the wake time moved to the next task
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert async_to_sync(stub.queue)() == []
    again = admin_client.post(url("task_drop", record), {"seq": head["seq"]}, follow=True)
    assert "is not queued; nothing was dropped" in again.text
    bad = admin_client.post(url("task_drop", record), {"seq": "x"}, follow=True)
    assert "No queued task number was given." in bad.text


def test_the_actions_refuse_get_need_change_permission_and_csrf(django_user_model):
    stub, record = scheduled_object("admin-guarded")
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_objectrecord"))
    client = Client()
    client.force_login(viewer)
    page = client.get(url("change", record))
    assert page.status_code == 200 and 'value="Cancel"' not in page.text
    assert client.post(url("schedule_cancel", record), {"id": "weekly"}).status_code == 403
    assert client.post(url("task_drop", record), {"seq": 1}).status_code == 403
    root = django_user_model.objects.create_superuser("root", password="pw")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(root)
    assert strict.post(url("schedule_cancel", record), {"id": "weekly"}).status_code == 403
    assert strict.post(url("task_drop", record), {"seq": 1}).status_code == 403
    assert strict.get(url("schedule_cancel", record)).status_code == 405
    assert strict.get(url("task_drop", record)).status_code == 405
    anonymous = Client().post(url("schedule_cancel", record), {"id": "weekly"})
    assert anonymous.status_code == 302 and "/login/" in anonymous.url
    assert len(async_to_sync(stub.schedules)()) == 2 and logged(record) == []
