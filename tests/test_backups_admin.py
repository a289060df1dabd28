"""The object page's Download database and upload, through Django's test client."""

import io
import sqlite3

import pytest
from asgiref.sync import async_to_sync
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from durable_objects.backups import export_object
from durable_objects.models import ObjectRecord
from durable_objects.runtime.lifecycle import get_host
from tests.support.objects_backup import Archive

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def staff(django_user_model):
    def make(*codenames, username="staff", csrf=False):
        user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
        for codename in codenames:
            user.user_permissions.add(Permission.objects.get(codename=f"{codename}_objectrecord"))
        client = Client(enforce_csrf_checks=csrf)
        client.force_login(user)
        return client

    return make


def url(view, record):
    return reverse(f"admin:durable_objects_objectrecord_{view}", args=[record.pk])


def filled(name, *bodies):
    stub = Archive.objects.get_by_name(name)
    for body in bodies:
        async_to_sync(stub.add)(body, who=name)
    get_host().catalog.flush_sync()
    return stub, ObjectRecord.objects.get(object_id=str(stub.id))


def notes(stub):
    return async_to_sync(stub.notes)()


def exported_bytes(name, *bodies, tmp_path):
    stub, _ = filled(name, *bodies)
    return export_object(Archive, stub.id, tmp_path / f"{name}.sqlite3").path.read_bytes()


def test_download_sends_the_database_and_is_logged(staff, tmp_path):
    _, record = filled("downloaded", "one", "two")
    client = staff("view")
    detail = client.get(url("change", record)).content.decode()
    assert url("download", record) in detail
    assert url("upload", record) not in detail  # no change permission: no upload button

    response = client.get(url("download", record))
    assert response.status_code == 200
    assert 'filename="tests.Archive-downloaded.sqlite3"' in response["Content-Disposition"]
    path = tmp_path / "got.sqlite3"
    path.write_bytes(b"".join(response.streaming_content))
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT body FROM notes")] == ["one", "two"]
    conn.close()
    entry = LogEntry.objects.get(object_id=str(record.pk))
    assert entry.get_change_message().startswith("Downloaded the database (")


def test_download_needs_the_view_permission(staff):
    _, record = filled("hidden", "x")
    assert staff().get(url("download", record)).status_code == 403
    assert not LogEntry.objects.exists()


def test_upload_replaces_the_database_and_is_logged(staff, tmp_path):
    data = exported_bytes("uploaded-source", "from the file", tmp_path=tmp_path)
    stub, record = filled("upload-target", "before")
    client = staff("view", "change")
    assert url("upload", record) in client.get(url("change", record)).content.decode()
    assert client.get(url("upload", record)).status_code == 200
    upload = io.BytesIO(data)
    upload.name = "backup.sqlite3"

    response = client.post(url("upload", record), {"database": upload})

    assert response.status_code == 302
    assert notes(stub) == ["from the file"]
    entry = LogEntry.objects.get(object_id=str(record.pk))
    assert "Replaced the database by the uploaded file 'backup.sqlite3'" in (
        entry.get_change_message()
    )


def test_upload_needs_the_change_permission(staff, tmp_path):
    data = exported_bytes("perm-source", "intruder", tmp_path=tmp_path)
    stub, record = filled("perm-target", "mine")
    upload = io.BytesIO(data)
    upload.name = "x.sqlite3"
    assert staff("view").post(url("upload", record), {"database": upload}).status_code == 403
    assert notes(stub) == ["mine"]


def test_upload_without_the_csrf_token_is_refused(staff, tmp_path):
    data = exported_bytes("csrf-source", "forged", tmp_path=tmp_path)
    stub, record = filled("csrf-target", "mine")
    upload = io.BytesIO(data)
    upload.name = "x.sqlite3"
    client = staff("view", "change", csrf=True)
    assert client.post(url("upload", record), {"database": upload}).status_code == 403
    assert notes(stub) == ["mine"]


def test_upload_of_a_file_that_is_not_a_database_shows_why(staff):
    stub, record = filled("bad-upload", "mine")
    upload = io.BytesIO(b"hello, this is a text file\n" * 10)
    upload.name = "notes.txt"
    response = staff("view", "change").post(url("upload", record), {"database": upload})
    assert response.status_code == 400
    assert "not a SQLite database" in response.content.decode()
    assert "The database is unchanged." in response.content.decode()
    assert notes(stub) == ["mine"]
    assert not LogEntry.objects.exists()


def test_upload_over_max_import_size_is_refused_unread(staff, settings, tmp_path):
    data = exported_bytes("big-source", "big", tmp_path=tmp_path)
    stub, record = filled("big-target", "mine")
    settings.DURABLE_OBJECTS = {**settings.DURABLE_OBJECTS, "MAX_IMPORT_SIZE": 1024}
    upload = io.BytesIO(data + b"\0" * 200_000)
    upload.name = "big.sqlite3"
    response = staff("view", "change").post(url("upload", record), {"database": upload})
    assert response.status_code == 413
    assert "imports are limited to 1024 bytes" in response.content.decode()
    assert notes(stub) == ["mine"]
